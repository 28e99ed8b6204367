//! Training: AdamW, the learning-rate schedule and clipping, checkpoints, and the trainer.

pub mod adamw;
pub mod checkpoint;
pub mod pictures;
pub mod schedule;
pub mod step;
pub mod trainer;

pub use adamw::{AdamW, AdamWConfig};
pub use step::{train_step, StepOptions, StepOutcome};
pub use trainer::{TrainConfig, TrainObjective, TrainReport, Trainer};
