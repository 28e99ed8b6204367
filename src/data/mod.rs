//! Data: the embedded UCI digits, CIFAR-10 binaries, image folders and the emoji package, all
//! turned into quantised image sets with a train/test split.

pub mod dataset;
pub mod digits;
pub mod emoji;
pub mod sources;

pub use dataset::{ImageSet, Splits};
pub use sources::{check_data_options, load_data, DataOptions, EMOJI_DEFAULT_SIZE};
