//! igpt — Image GPT from scratch.

pub mod error;

pub use error::{Error, Result};
