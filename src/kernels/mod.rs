//! Hand-vectorised f32 kernels: the fast twins of plain reference ops.
//!
//! Each kernel here computes the same function as a readable reference elsewhere in the crate
//! and is tested against it; the reference stays the definition.
//!
//! | module | kernel | reference twin |
//! |---|---|---|
//! | `activation` | quick_gelu forward/backward | `ops::elementwise::quick_gelu_scalar` |
//! | `attention` | FlashAttention-2 forward/backward, O(T) memory | `ops::attention::attention_reference` |
//! | `decode` | one-query attention over a [`KvCache`] (sampling) | the last row of causal attention |
//! | `gemm` | the products of a linear layer in training, activations read in place | `tensor::gemm` |
//! | `skinny` | `X·W + b` for a few rows (decoding), streaming `W` | `tensor::gemm` |
//! | `simd` | f32x8 tile product, `exp2`, prefetch | `tensor::gemm`, `f64::exp2` |
//! | `pages` | 2 MiB-aligned, huge-page buffers for the decoder's streams | `Vec<f32>` |
//! | `kmeans` | nearest and second-nearest of k centres, 8 at a time (palette fits) | `kmeans::scan_all_reference`, `kmeans::sq_dist` |
//!
//! The SIMD code uses `wide::f32x8`, which maps onto AVX2+FMA under the repository's
//! `.cargo/config.toml` (`-C target-cpu=x86-64-v3`) and onto two SSE halves otherwise.

pub mod activation;
pub mod attention;
pub mod decode;
pub mod gemm;
pub mod kmeans;
pub mod pages;
pub mod simd;
pub mod skinny;

pub use attention::{flash_attention_backward, flash_attention_forward, FlashForward, BLOCK};
pub use decode::KvCache;
