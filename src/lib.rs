//! igpt — Image GPT from scratch.

pub mod error;
pub mod io;
pub mod palette;
pub mod rng;

pub use error::{Error, Result};
