//! igpt — Image GPT from scratch.

pub mod args;
pub mod autodiff;
pub mod bench;
pub mod error;
pub mod golden;
pub mod io;
pub mod model;
pub mod ops;
pub mod probe;
pub mod rng;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use tensor::{Float, Tensor};
