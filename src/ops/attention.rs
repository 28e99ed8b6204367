//! Multi-head self-attention, materialised: the plain reference every faster kernel is tested
//! against.
//!
//! ## Layout
//! The input is the output of `c_attn`, `qkv: [B, T, 3d]`: columns `0..d` are the queries,
//! `d..2d` the keys, `2d..3d` the values, and head `h` owns columns `h·hd .. (h+1)·hd` of each
//! (`hd = d / H`). The output `o: [B, T, d]` has head `h` in columns `h·hd .. (h+1)·hd` — the
//! "merged heads" layout `c_proj` expects. No copies are made to split heads: each head is a
//! strided matrix view.
//!
//! ## Math, per batch element and head (`Q, K, V, O: [T, hd]`)
//! ```text
//! S = Q Kᵀ / sqrt(hd)                       (divided, as HF does, not multiplied by 1/sqrt(hd))
//! S_ij = −∞ where j > i                    (causal; the BERT objective uses no mask)
//! P = softmax_j(S)     O = P V
//! ```
//! Backward, given `∂O`:
//! ```text
//! ∂V = Pᵀ ∂O        ∂P = ∂O Vᵀ        ∂S_ij = P_ij (∂P_ij − Σ_k P_ik ∂P_ik)
//! ∂Q = ∂S K / sqrt(hd)                ∂K = ∂Sᵀ Q / sqrt(hd)
//! ```
//! This version keeps `P` (`B·H·T²` numbers) for the backward; that is what makes it simple
//! and what makes it the reference rather than the kernel for long sequences.
//!
//! [`attention`], the op the model uses, runs whichever [`Kernels`] it is given: this reference
//! is the trait's default, and f32's `kernels::Simd` runs the fused O(T)-memory kernel of
//! `kernels::attention` instead.

use super::kernels::{AttentionForward, Kernels};
use crate::autodiff::{Backward, Grads, Tape, Var};
use crate::tensor::{gemm, gemm_ld, Float, MatRef, Tensor};

/// The sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    pub batch: usize,
    pub seq: usize,
    pub n_head: usize,
    pub head_dim: usize,
}

impl AttentionDims {
    /// `d = n_head · head_dim`, the model width.
    pub fn d(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// The dims of a `qkv: [B, T, 3d]` tensor split into `n_head` heads.
    ///
    /// # Panics
    /// If the shape is not `[B, T, 3d]` with `d` divisible by `n_head`.
    pub fn of_qkv(shape: &[usize], n_head: usize) -> Self {
        assert_eq!(shape.len(), 3, "attention: qkv must be [B, T, 3d], got {shape:?}");
        assert!(
            n_head > 0 && shape[2].is_multiple_of(3 * n_head),
            "attention: {shape:?} with {n_head} heads"
        );
        AttentionDims { batch: shape[0], seq: shape[1], n_head, head_dim: shape[2] / (3 * n_head) }
    }

    /// Offset of head `h`'s query block (`part` 0), key block (1) or value block (2) of batch `b`.
    fn qkv_offset(&self, b: usize, h: usize, part: usize) -> usize {
        b * self.seq * 3 * self.d() + part * self.d() + h * self.head_dim
    }
}

/// Head `h`'s `[T, hd]` view of part `part` (0 = Q, 1 = K, 2 = V) of batch element `b`.
fn head_view<'a, T>(
    qkv: &'a [T],
    dims: &AttentionDims,
    b: usize,
    h: usize,
    part: usize,
) -> MatRef<'a, T> {
    let off = dims.qkv_offset(b, h, part);
    MatRef::strided(&qkv[off..], dims.seq, dims.head_dim, 3 * dims.d(), 1)
}

/// Reference forward: returns `o: [B, T, d]` and the probabilities `P: [B, H, T, T]`.
pub fn attention_reference_forward<T: Float>(
    qkv: &[T],
    dims: AttentionDims,
    causal: bool,
) -> (Vec<T>, Vec<T>) {
    let (t, hd, d) = (dims.seq, dims.head_dim, dims.d());
    let mut out = vec![T::ZERO; dims.batch * t * d];
    let mut probs = vec![T::ZERO; dims.batch * dims.n_head * t * t];
    let sqrt_hd = T::from_f64(hd as f64).sqrt();
    for b in 0..dims.batch {
        for h in 0..dims.n_head {
            let p = &mut probs[(b * dims.n_head + h) * t * t..][..t * t];
            let q = head_view(qkv, &dims, b, h, 0);
            let k = head_view(qkv, &dims, b, h, 1);
            gemm(T::ONE, q, k.t(), T::ZERO, p);
            for (i, row) in p.chunks_mut(t).enumerate() {
                let visible = if causal { i + 1 } else { t };
                row[..visible].iter_mut().for_each(|s| *s /= sqrt_hd);
                softmax_in_place(&mut row[..visible]);
                row[visible..].fill(T::ZERO);
            }
            let v = head_view(qkv, &dims, b, h, 2);
            let o = &mut out[b * t * d + h * hd..];
            gemm_ld(T::ONE, MatRef::new(p, t, t), v, T::ZERO, o, d);
        }
    }
    (out, probs)
}

/// `row ← softmax(row)`, shifted by the maximum.
pub fn softmax_in_place<T: Float>(row: &mut [T]) {
    let m = row.iter().copied().fold(T::from_f64(f64::NEG_INFINITY), T::max);
    let mut sum = T::ZERO;
    for s in row.iter_mut() {
        *s = (*s - m).exp();
        sum += *s;
    }
    row.iter_mut().for_each(|s| *s /= sum);
}

/// Reference backward: `∂qkv: [B, T, 3d]` from `qkv`, the saved `P` and `∂o: [B, T, d]`.
pub fn attention_reference_backward<T: Float>(
    qkv: &[T],
    probs: &[T],
    dout: &[T],
    dims: AttentionDims,
) -> Vec<T> {
    let (t, hd, d) = (dims.seq, dims.head_dim, dims.d());
    let mut dqkv = vec![T::ZERO; dims.batch * t * 3 * d];
    let mut ds = vec![T::ZERO; t * t];
    let inv_sqrt_hd = T::ONE / T::from_f64(hd as f64).sqrt();
    for b in 0..dims.batch {
        for h in 0..dims.n_head {
            let p = MatRef::new(&probs[(b * dims.n_head + h) * t * t..][..t * t], t, t);
            let d_o = MatRef::strided(&dout[b * t * d + h * hd..], t, hd, d, 1);
            let q = head_view(qkv, &dims, b, h, 0);
            let k = head_view(qkv, &dims, b, h, 1);
            let v = head_view(qkv, &dims, b, h, 2);
            // ∂V = Pᵀ ∂O
            gemm_ld(T::ONE, p.t(), d_o, T::ZERO, &mut dqkv[dims.qkv_offset(b, h, 2)..], 3 * d);
            // ∂P = ∂O Vᵀ, then ∂S = P ∘ (∂P − rowsum(P ∘ ∂P)) in place.
            gemm(T::ONE, d_o, v.t(), T::ZERO, &mut ds);
            let p_data = &probs[(b * dims.n_head + h) * t * t..][..t * t];
            for (ds_row, p_row) in ds.chunks_mut(t).zip(p_data.chunks(t)) {
                let mut dot = T::ZERO;
                for (&g, &pj) in ds_row.iter().zip(p_row) {
                    dot += g * pj;
                }
                for (g, &pj) in ds_row.iter_mut().zip(p_row) {
                    *g = pj * (*g - dot);
                }
            }
            let ds_m = MatRef::new(&ds, t, t);
            gemm_ld(inv_sqrt_hd, ds_m, k, T::ZERO, &mut dqkv[dims.qkv_offset(b, h, 0)..], 3 * d);
            gemm_ld(
                inv_sqrt_hd,
                ds_m.t(),
                q,
                T::ZERO,
                &mut dqkv[dims.qkv_offset(b, h, 1)..],
                3 * d,
            );
        }
    }
    dqkv
}

/// Multi-head self-attention on the tape, the op the model calls: `qkv: [B, T, 3d]` →
/// `o: [B, T, d]`, causal or bidirectional, computed by `k`: the materialised reference above
/// ([`Reference`](super::kernels::Reference), the f64 gradient checks), or f32's fused O(T)-memory
/// FlashAttention (`kernels::Simd`). Both compute the same function; tests/attention.rs holds
/// them to 1e-5 (output) and 1e-4 (gradients).
///
/// # Panics
/// If `qkv` is not `[B, T, 3d]` with `d` divisible by `n_head`.
pub fn attention<T: Float>(
    tape: &mut Tape<T>,
    k: &'static dyn Kernels<T>,
    qkv: Var,
    n_head: usize,
    causal: bool,
) -> Var {
    let dims = AttentionDims::of_qkv(tape.shape(qkv), n_head);
    let AttentionForward { out, saved } = k.attention_forward(tape.value(qkv).data(), dims, causal);
    let value = Tensor::new(&[dims.batch, dims.seq, dims.d()], out);
    // The backward reads `o` from this op's own node (FlashAttention needs it).
    let out = tape.next_var();
    tape.push_op(value, &[qkv], AttentionBackward { qkv, dims, causal, out, saved, k })
}

struct AttentionBackward<T: Float> {
    qkv: Var,
    dims: AttentionDims,
    causal: bool,
    /// This op's own output node.
    out: Var,
    saved: Vec<T>,
    k: &'static dyn Kernels<T>,
}

impl<T: Float> Backward<T> for AttentionBackward<T> {
    fn backward(&self, tape: &Tape<T>, dout: &Tensor<T>, grads: &mut Grads<T>) {
        let qkv = tape.value(self.qkv).data();
        if let Some(slot) = grads.slot(tape, self.qkv) {
            let out = tape.value(self.out).data();
            self.k.attention_backward(
                qkv,
                out,
                &self.saved,
                dout.data(),
                self.dims,
                self.causal,
                slot.buf,
                slot.accumulate,
            );
        }
    }
}
