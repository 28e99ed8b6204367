//! Data sets: the embedded UCI handwritten digits and the readers that turn them into images.

pub mod gzip;
