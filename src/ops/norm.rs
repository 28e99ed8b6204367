//! The iGPT norm: RMS normalisation with a gain, applied to each row (`ln_1`, `ln_2`, `ln_f`).
//!
//! For a row `x ∈ ℝⁿ` with gain `g ∈ ℝⁿ`:
//! ```text
//! s  = sqrt(mean_j x_j² + ε)                (ε = layer_norm_epsilon = 1e-5),  r = 1/s
//! y_j = (x_j / s) · g_j
//! ```
//! evaluated in that order (divide, then multiply), as HF does, so f32 results round alike.
//! There is **no mean subtraction and no bias** — this is what both the TF original and HF's
//! `ImageGPTLayerNorm` compute (the TF docstring saying "mean = 0" is wrong).
//!
//! Backward, with `∂y` the upstream gradient of the row:
//! ```text
//! ∂g_j = Σ_rows ∂y_j · x_j · r
//! ∂x_j = r · g_j · ∂y_j  −  (r³ / n) · x_j · Σ_i ∂y_i · g_i · x_i
//! ```
//! (the second term is `∂r/∂x_j = −r³ x_j / n` times `Σ_i ∂y_i g_i x_i`). The per-row `s` is
//! saved by the forward; the backward needs nothing else but `x` and `g`.
//!
//! (transformers 4.x multiplied by `self.weight.data`, which detached the gain so that its
//! gradient was never computed; transformers 5.x multiplies by the parameter itself, as the TF
//! original and igpt do, and the conformance fixtures check the gain gradients.)

use crate::autodiff::{Backward, Grads, Tape, Var};
use crate::tensor::{sum_rows_fixed_order, Float, Tensor};
use rayon::prelude::*;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// `sqrt(mean(x²) + eps)` of one row, the sum of squares in [`lane_dot`]'s order.
pub fn rms<T: Float>(row: &[T], eps: T) -> T {
    (lane_dot(row, row, None) / T::from_f64(row.len() as f64) + eps).sqrt()
}

/// `Σ_j a_j·b_j` (or `Σ_j a_j·b_j·c_j`) in a fixed order that vectorises: 8 partial sums, lane
/// `l` adding the terms `j ≡ l (mod 8)` in increasing `j`, then combined pairwise as
/// `((s₀+s₁)+(s₂+s₃))+((s₄+s₅)+(s₆+s₇))`.
///
/// Why not left to right: one chain of dependent additions waits 4 cycles per element, so a
/// row of 128 would take 512 cycles; eight lanes are one SIMD add per 8 elements.
pub fn lane_dot<T: Float>(a: &[T], b: &[T], c: Option<&[T]>) -> T {
    let mut acc = [T::ZERO; 8];
    for (j, (&x, &y)) in a.iter().zip(b).enumerate() {
        let term = match c {
            Some(c) => x * y * c[j],
            None => x * y,
        };
        acc[j % 8] += term;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// `y = x / sqrt(mean(x²) + eps) · g` over the last axis of `x`; `g` is `[n]`.
///
/// # Panics
/// If `g`'s length differs from `x`'s last axis.
pub fn rms_norm<T: Float>(tape: &mut Tape<T>, x: Var, g: Var, eps: f64) -> Var {
    let (xv, gv) = (tape.value(x), tape.value(g));
    let n = xv.cols();
    assert_eq!(gv.len(), n, "rms_norm: gain {:?} does not fit x {:?}", gv.shape(), xv.shape());
    let eps = T::from_f64(eps);
    let mut y = vec![T::ZERO; xv.len()];
    let mut rms_rows = vec![T::ZERO; xv.rows()];
    y.par_chunks_mut(n * ROWS_PER_TASK)
        .zip(rms_rows.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(task, (y_rows, s_rows))| {
            for (k, (y_row, s)) in y_rows.chunks_mut(n).zip(s_rows.iter_mut()).enumerate() {
                let row = task * ROWS_PER_TASK + k;
                let x_row = &xv.data()[row * n..(row + 1) * n];
                *s = rms(x_row, eps);
                for ((o, &xj), &gj) in y_row.iter_mut().zip(x_row).zip(gv.data()) {
                    *o = xj / *s * gj;
                }
            }
        });
    let value = Tensor::new(xv.shape(), y);
    tape.push_op(value, &[x, g], RmsNormBackward { x, g, rms: rms_rows })
}

struct RmsNormBackward<T> {
    x: Var,
    g: Var,
    /// `s = sqrt(mean(x²) + ε)` of every row, saved by the forward.
    rms: Vec<T>,
}

impl<T: Float> Backward<T> for RmsNormBackward<T> {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        let (xv, gv) = (tape.value(self.x), tape.value(self.g).data());
        let n = xv.cols();
        let row = |r: usize| (&xv.data()[r * n..(r + 1) * n], &dy.data()[r * n..(r + 1) * n]);
        if let Some(slot) = grads.slot(tape, self.x) {
            let inv_n = T::ONE / T::from_f64(n as f64);
            let accumulate = slot.accumulate;
            slot.buf.par_chunks_mut(n * ROWS_PER_TASK).enumerate().for_each(|(task, dx_rows)| {
                for (k, dx) in dx_rows.chunks_mut(n).enumerate() {
                    let r = task * ROWS_PER_TASK + k;
                    let (x, dy) = row(r);
                    let rs = T::ONE / self.rms[r];
                    let c = rs * rs * rs * inv_n * lane_dot(dy, gv, Some(x));
                    for j in 0..n {
                        let v = rs * gv[j] * dy[j] - c * x[j];
                        dx[j] = if accumulate { dx[j] + v } else { v };
                    }
                }
            });
        }
        if let Some(mut slot) = grads.slot(tape, self.g) {
            let dg = sum_rows_fixed_order(xv.rows(), n, |r, acc| {
                let (x, dy) = row(r);
                for j in 0..n {
                    acc[j] += dy[j] * x[j] / self.rms[r];
                }
            });
            slot.put_all(&dg);
        }
    }
}
