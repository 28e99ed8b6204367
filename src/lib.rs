//! igpt — Image GPT from scratch.

pub mod autodiff;
pub mod error;
pub mod kernels;
pub mod ops;
pub mod rng;
pub mod tensor;

pub use error::{Error, Result};
pub use tensor::{Float, Tensor};
