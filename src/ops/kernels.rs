//! The dispatch trait: the hot inner loops of the ops, each with its plain reference.
//!
//! An op (`ops::linear`, `ops::attention`, `ops::quick_gelu`, `ops::rms_norm`) builds its node
//! on the tape and hands the arithmetic to a [`Kernels`] value it is given; the KV-cache decoder
//! (`model::decode`) and palette fitting (`palette::kmeans`) run their loops through it too. The
//! trait's default methods *are* the references — plain loops and `tensor::gemm`, readable and
//! exact in f64 — so [`Reference`] implements it with nothing but defaults. Faster
//! implementations override some methods and are tested against the defaults: `kernels::Simd`
//! (f32: packed GEMM tiles, FlashAttention, SIMD activation, the streaming decode kernel, the
//! eight-centre k-means scan) and `kernels::Bf16` (bf16 products) today; a GPU port reads this
//! trait as the list of kernels to write.
//!
//! | method | computes | reference (default) |
//! |---|---|---|
//! | [`Kernels::linear_product`] | `C = start + A·B` (a linear layer's three products) | `tensor::gemm_start` |
//! | [`Kernels::linear_product_new`] | `bias + A·B` into a new buffer | `tensor::gemm_new` |
//! | [`Kernels::quick_gelu`] | `y = x·σ(1.702x)` | `elementwise::quick_gelu_scalar` |
//! | [`Kernels::quick_gelu_backward`] | `∂x (+)= ∂y·quick_gelu'(x)` | `elementwise::quick_gelu_grad` |
//! | [`Kernels::rms_norm_rows`] | `y = x / sqrt(mean x² + ε) · g` per row (`ln_1`, `ln_2`, `ln_f`) | `norm::rms_norm_rows_reference` |
//! | [`Kernels::rms_norm_backward_rows`] | `∂x` and the rows' share of `∂g` | `norm::rms_norm_backward_rows_reference` |
//! | [`Kernels::attention_forward`] | `o = softmax(QKᵀ/√hd)·V` per head | `attention::attention_reference_forward` (keeps `P`) |
//! | [`Kernels::attention_backward`] | `∂qkv` from `∂o` | `attention::attention_reference_backward` |
//! | [`Kernels::decode_attention`] | one query per sequence against a KV cache (sampling) | `decode::decode_attention_reference` |
//! | [`Kernels::nearest_two`] | nearest and second-nearest of `k` centres (k-means, f32) | `nearest::nearest_two_reference` |
//!
//! What a forward saves for its backward is the implementation's business
//! ([`AttentionForward::saved`]: the probabilities `P` for the reference, the row logsumexps
//! for FlashAttention), so a backward must be run by the same kernels as its forward; the ops
//! keep the kernels they were given in their tape nodes.

use super::attention::{attention_reference_backward, attention_reference_forward, AttentionDims};
use super::decode::{decode_attention_reference, KvView};
use super::elementwise::{quick_gelu_grad, quick_gelu_scalar};
use super::nearest::{nearest_two_reference, Centers};
use super::norm::{rms_norm_backward_rows_reference, rms_norm_rows_reference};
use crate::autodiff::GradSlot;
use crate::tensor::{gemm_new, gemm_start, Float, MatRef, Start};

/// The output of an attention forward and what its backward needs besides `qkv` and `o`.
pub struct AttentionForward<T> {
    /// `o: [B, T, d]`, heads merged.
    pub out: Vec<T>,
    /// Implementation-defined (see the module doc).
    pub saved: Vec<T>,
}

/// The kernels of the hot ops (see the module doc); every default method is the reference.
pub trait Kernels<T: Float>: Sync {
    /// A short name for messages and benchmarks.
    fn name(&self) -> &'static str;

    /// `C = start + A·B` with `C` row-major `[A.rows, B.cols]`: the products of a linear layer
    /// (forward, `∂x = ∂y·Wᵀ`, `∂W = xᵀ·∂y`).
    fn linear_product(&self, a: MatRef<T>, b: MatRef<T>, start: Start<T>, c: &mut [T]) {
        gemm_start(a, b, start, c)
    }

    /// `bias + A·B` (or `A·B`) into a new row-major `[A.rows, B.cols]` buffer.
    fn linear_product_new(&self, a: MatRef<T>, b: MatRef<T>, bias: Option<&[T]>) -> Vec<T> {
        gemm_new(a, b, bias)
    }

    /// `y = quick_gelu(x)` element-wise (`x` and `y` of equal length).
    fn quick_gelu(&self, x: &[T], y: &mut [T]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = quick_gelu_scalar(v);
        }
    }

    /// `∂x = ∂y · quick_gelu'(x)`, or `∂x += …` when `accumulate`.
    fn quick_gelu_backward(&self, x: &[T], dy: &[T], dx: &mut [T], accumulate: bool) {
        for ((o, &xi), &g) in dx.iter_mut().zip(x).zip(dy) {
            let d = g * quick_gelu_grad(xi);
            *o = if accumulate { *o + d } else { d };
        }
    }

    /// The norm of rows of `x` (`[rows, n]`, `n = g.len()`): each row's
    /// `s = sqrt(mean(x²) + ε)` into `rms`, and `y = x / s · g`.
    fn rms_norm_rows(&self, x: &[T], g: &[T], eps: T, y: &mut [T], rms: &mut [T]) {
        rms_norm_rows_reference(x, g, eps, y, rms)
    }

    /// The norm's backward over rows of `x` with their saved `rms`: writes (or adds, with the
    /// flag) `∂x` into `dx` if given; returns these rows' share of `∂g`, `Σ_rows ∂y·x/s`.
    fn rms_norm_backward_rows(
        &self,
        x: &[T],
        dy: &[T],
        g: &[T],
        rms: &[T],
        dx: Option<(&mut [T], bool)>,
    ) -> Vec<T> {
        rms_norm_backward_rows_reference(x, dy, g, rms, dx)
    }

    /// Multi-head attention of `qkv: [B, T, 3d]` (causal or bidirectional).
    fn attention_forward(
        &self,
        qkv: &[T],
        dims: AttentionDims,
        causal: bool,
    ) -> AttentionForward<T> {
        let (out, probs) = attention_reference_forward(qkv, dims, causal);
        AttentionForward { out, saved: probs }
    }

    /// `∂qkv = …` (or `+= …` when `accumulate`) from `qkv`, this forward's `out` and `saved`,
    /// and `∂o`. (The reference ignores `out` and `causal`: its saved probabilities are already
    /// zero above the diagonal.)
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        qkv: &[T],
        _out: &[T],
        saved: &[T],
        dout: &[T],
        dims: AttentionDims,
        _causal: bool,
        dqkv: &mut [T],
        accumulate: bool,
    ) {
        let grad = attention_reference_backward(qkv, saved, dout, dims);
        GradSlot { buf: dqkv, accumulate }.put_all(&grad);
    }

    /// Attention of the query in each sequence's new row `qkv: [B, 3d]` over the positions in
    /// `cache` (the row's own key and value already appended), into `out: [B, d]`: the last row
    /// of causal attention, without recomputing the others.
    fn decode_attention(&self, cache: KvView<'_, T>, qkv: &[T], out: &mut [T]) {
        decode_attention_reference(cache, qkv, out)
    }

    /// Nearest and second-nearest of the `centers` to the point `x`: `(index, d², second d²)`,
    /// ties to the lowest index, distances exactly `nearest::sq_dist`.
    ///
    /// f32 for every `T`, and in this trait rather than a trait of its own: k-means clusters
    /// pixels, which are f32 whatever a model computes in, and `Float` has neither `min` nor
    /// infinity to write the scan over `T` — while one trait keeps one list of the kernels a
    /// port writes, and lets palette fitting take its kernels like every other caller.
    fn nearest_two(&self, x: &[f32], centers: &Centers) -> (usize, f32, f32) {
        nearest_two_reference(x, centers)
    }
}

/// The plain references of every kernel, for any float type (f64 for the gradient checks).
#[derive(Clone, Copy, Debug, Default)]
pub struct Reference;

impl<T: Float> Kernels<T> for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }
}
