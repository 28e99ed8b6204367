//! igpt — Image GPT ("Generative Pretraining from Pixels", Chen et al., ICML 2020) from
//! scratch, as teaching code, as the golden reference GPU variants are verified against, and
//! for small-scale CPU training.
//!
//! ## The pipeline
//! ```text
//!  image ──palette──▶ tokens ──model (tape + ops + kernels)──▶ next-pixel logits ──┬─▶ loss ──train──▶ weights
//!  (PNG/JPEG)  k-means colours,     wte+wpe → L blocks (norm, attention, MLP)      ├─▶ sample / complete
//!              Pillow resize        → ln_f → lm_head                               └─▶ features ──probe──▶ accuracy
//! ```
//!
//! ## Modules, in layers
//! Each layer imports only from the layers above it in this table (tests aside), so the crate
//! can be read top to bottom.
//!
//! | layer | module | what it holds |
//! |---|---|---|
//! | 0 | [`error`], [`rng`], [`args`], [`memory`], [`admission`] | errors, Philox4x32-10, argument parsing, the opt-in caching allocator, the memory budget checked before allocating |
//! | 0 | [`tensor`] | `Tensor<T>` (row-major), the `Float` trait (f32 / f64 arithmetic), deterministic tiled sgemm |
//! | 0 | [`token`] | `Token`, the one integer type of a pixel's token from quantize to sample |
//! | 1 | [`autodiff`] | the tape (Wengert list), `Var`, `Backward`, the finite-difference checker |
//! | 1 | [`io`] | JSON, `.npy`, safetensors, gzip, tar — strict, fuzzed |
//! | 2 | [`ops`] | the differentiable ops, forward and backward side by side; `ops::Kernels`, the dispatch trait whose defaults are the plain references |
//! | 3 | [`kernels`] | `kernels::Simd`, f32's fast implementation of `ops::Kernels`, and the other SIMD kernels (KV-cache decode, k-means scans), each beside or naming its reference |
//! | 4 | [`model`] | configuration (HF keys), parameters (HF names), the one block, forward, objectives, decoding |
//! | 5 | [`palette`] | k-means, quantize, Pillow-exact resize, image decoding; `RgbImage`, the one RGB image type (upscale, grids, PNG) |
//! | 6 | [`data`], [`sample`], [`plot`] | the embedded digits, CIFAR-10, image folders, the emoji package; sampling and completion, with their pictures; line plots drawn on an `RgbImage` |
//! | 7 | [`probe`], [`train`] | linear probe; the training step, trainer, checkpoints, pictures |
//! | 8 | [`golden`], [`bench`](mod@bench), [`fuzzing`] | golden files and verification; every benchmark; every fuzz target (each file reader's entry point and the properties it checks) |
//!
//! `SPEC.md` in the repository gives the exact math, layouts, file formats, RNG and tolerances.

pub mod admission;
pub mod args;
pub mod autodiff;
pub mod bench;
pub mod data;
pub mod error;
pub mod fuzzing;
pub mod golden;
pub mod io;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod ops;
pub mod palette;
pub mod plot;
pub mod probe;
pub mod rng;
pub mod sample;
pub mod tensor;
pub mod token;
pub mod train;

pub use error::{Error, Result};
pub use tensor::{Float, Tensor};
pub use token::Token;
