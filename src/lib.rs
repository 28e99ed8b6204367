//! igpt — Image GPT from scratch.

pub mod args;
pub mod autodiff;
pub mod bench;
pub mod data;
pub mod error;
pub mod golden;
pub mod io;
pub mod kernels;
pub mod model;
pub mod ops;
pub mod palette;
pub mod plot;
pub mod probe;
pub mod rng;
pub mod sample;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use tensor::{Float, Tensor};
