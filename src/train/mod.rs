//! Training: the optimizer (and, as the training issue lands, schedules, the trainer and
//! checkpoints).

pub mod adamw;

pub use adamw::{AdamW, AdamWConfig};
