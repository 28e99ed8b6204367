//! The differentiable ops, one file per family, forward and backward side by side.
//!
//! Every op is a function `op(tape, inputs…) -> Var` that computes its output, then records a
//! small struct implementing [`crate::autodiff::Backward`] holding exactly what its backward
//! needs. All ops are generic over [`crate::tensor::Float`], so the gradient checks run this same
//! code in f64. The ops with hot inner loops (`linear`, `linear_nt`, `quick_gelu`, `rms_norm`,
//! `attention`)
//! also take a [`Kernels`] value, the dispatch trait of `kernels.rs`: its default methods are the
//! plain references ([`Reference`]); `crate::kernels::Simd` is f32's fast implementation.
//!
//! | op | file | used for |
//! |---|---|---|
//! | `linear`, `linear_nt`, `matmul` | `linear.rs` | `c_attn`, `c_proj`, `c_fc`; `lm_head`, `score` |
//! | `add`, `scale`, `reshape`, `quick_gelu`, `gelu_tanh` | `elementwise.rs` | residuals, views, the MLP activation |
//! | `rms_norm` | `norm.rs` | `ln_1`, `ln_2`, `ln_f` |
//! | `embedding` | `embedding.rs` | `wte`, `wpe` |
//! | `cross_entropy` | `loss.rs` | every objective's loss |
//! | `mean_pool` | `pool.rs` | classification head, linear probe |
//! | `attention` | `attention.rs` | the model's attention (materialised reference; FlashAttention in `kernels::Simd`) |
//! | `dropout` | `dropout.rs` | `embd_pdrop`, `attn_pdrop`, `resid_pdrop` |
//! | the `Kernels` trait, `Reference` | `kernels.rs` | which code computes the hot loops above |
//!
//! Two more of the trait's references are loops outside the tape: attention of one query
//! against a key/value cache (`decode.rs`, the sampler's step) and the nearest-centre scan of
//! k-means (`nearest.rs`, palette fitting).

pub mod attention;
pub mod decode;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod kernels;
pub mod linear;
pub mod loss;
pub mod nearest;
pub mod norm;
pub mod pool;

pub use attention::{attention, AttentionDims};
pub use dropout::{dropout, residual_dropout, DropoutMask};
pub use elementwise::{add, gelu_tanh, quick_gelu, reshape, scale};
pub use embedding::embedding;
pub use kernels::{AttentionForward, Kernels, Reference};
pub use linear::{linear, linear_nt, matmul};
pub use loss::{cross_entropy, cross_entropy_mean};
pub use norm::rms_norm;
pub use pool::mean_pool;
