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
//! ## Modules
//! | module | what it holds |
//! |---|---|
//! | [`tensor`] | `Tensor<T>` (row-major), the `Float` trait (f32 / f64), deterministic tiled sgemm |
//! | [`autodiff`] | the tape (Wengert list), `Var`, `Backward`, the finite-difference checker |
//! | [`ops`] | the differentiable ops, forward and backward side by side |
//! | [`kernels`] | SIMD kernels (fused attention, KV-cache decode, quick_gelu) and their tests |
//! | [`model`] | configuration (HF keys), parameters (HF names), forward, objectives, decoding |
//! | [`palette`] | k-means, quantize / dequantize, Pillow-exact resize, images, palette files |
//! | [`data`] | the embedded digits, CIFAR-10 binaries, image folders, the emoji package |
//! | [`train`] | AdamW, schedule, trainer, checkpoints, pictures |
//! | [`sample`] | reproducible sampling and image completion |
//! | [`probe`] | linear-probe features and logistic regression |
//! | [`golden`] | golden files and verification of a candidate |
//! | [`io`] | JSON, `.npy`, safetensors, gzip, tar — strict, fuzzed |
//! | [`fuzzing`] | every fuzz target: each file reader's entry point and the properties it checks |
//! | [`rng`] | Philox4x32-10, the counter-based generator behind every random draw |
//! | [`memory`] | an opt-in global allocator that reuses large blocks across training steps |
//! | [`plot`], [`bench`](mod@bench), [`args`] | pictures, benchmarks, command-line parsing |
//!
//! `SPEC.md` in the repository gives the exact math, layouts, file formats, RNG and tolerances.

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
pub mod train;

pub use error::{Error, Result};
pub use tensor::{Float, Tensor};
