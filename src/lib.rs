//! igpt — Image GPT from scratch.

pub mod error;
pub mod io;

pub use error::{Error, Result};
