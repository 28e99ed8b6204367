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

use super::kernels::Kernels;
use crate::autodiff::{Backward, Grads, Tape, Var};
use crate::tensor::{add_in_order, new_parallel_with, Float, Tensor, ROW_SUM_BLOCK};
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
pub fn rms_norm<T: Float>(
    tape: &mut Tape<T>,
    k: &'static dyn Kernels<T>,
    x: Var,
    g: Var,
    eps: f64,
) -> Var {
    let (xv, gv) = (tape.value(x), tape.value(g));
    let n = xv.cols();
    assert_eq!(gv.len(), n, "rms_norm: gain {:?} does not fit x {:?}", gv.shape(), xv.shape());
    let eps = T::from_f64(eps);
    let xs = xv.data();
    let mut rms_rows = vec![T::ZERO; xv.rows()];
    // Tasks of ROWS_PER_TASK rows, each normalised by `k`.
    let side = (&mut rms_rows[..], ROWS_PER_TASK);
    let y = new_parallel_with(xs.len(), n * ROWS_PER_TASK, side, |first, y_rows, s_rows| {
        k.rms_norm_rows(&xs[first..][..y_rows.len()], gv.data(), eps, y_rows, s_rows)
    });
    let value = Tensor::new(xv.shape(), y);
    tape.push_op(value, &[x, g], RmsNormBackward { x, g, rms: rms_rows, k })
}

/// The plain forward of rows of `x` (`[rows, n]`, `n = g.len()`): `s_r = sqrt(mean(x_r²) + ε)`
/// into `rms`, then `y_rj = x_rj / s_r · g_j` (the default of `Kernels::rms_norm_rows`).
pub fn rms_norm_rows_reference<T: Float>(x: &[T], g: &[T], eps: T, y: &mut [T], rms_out: &mut [T]) {
    let n = g.len();
    for ((y_row, x_row), s) in y.chunks_mut(n).zip(x.chunks(n)).zip(rms_out.iter_mut()) {
        *s = rms(x_row, eps);
        for ((o, &xj), &gj) in y_row.iter_mut().zip(x_row).zip(g) {
            *o = xj / *s * gj;
        }
    }
}

struct RmsNormBackward<T: Float> {
    x: Var,
    g: Var,
    /// `s = sqrt(mean(x²) + ε)` of every row, saved by the forward.
    rms: Vec<T>,
    k: &'static dyn Kernels<T>,
}

impl<T: Float> Backward<T> for RmsNormBackward<T> {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        let xv = tape.value(self.x);
        let n = xv.cols();
        let (x, dy, g) = (xv.data(), dy.data(), tape.value(self.g).data());
        // One pass over x and ∂y: each block of rows writes its rows of ∂x and returns its
        // share of ∂g (blocks as in `sum_rows_fixed_order`, so ∂g is that function's sum).
        let partials: Vec<Vec<T>> = match grads.slot(tape, self.x) {
            Some(slot) => {
                let accumulate = slot.accumulate;
                slot.buf
                    .par_chunks_mut(ROW_SUM_BLOCK * n)
                    .enumerate()
                    .map(|(b, dx)| self.block(x, dy, g, b, Some((dx, accumulate))))
                    .collect()
            }
            None => (0..xv.rows().div_ceil(ROW_SUM_BLOCK))
                .into_par_iter()
                .map(|b| self.block(x, dy, g, b, None))
                .collect(),
        };
        if let Some(mut slot) = grads.slot(tape, self.g) {
            slot.put_all(&add_in_order(&partials, n));
        }
    }
}

impl<T: Float> RmsNormBackward<T> {
    /// Rows `ROW_SUM_BLOCK·b ..` of the backward, computed by the kernels: writes (or adds)
    /// their `∂x` into `dx` if given and returns `Σ_rows ∂y_j · x_j / s` over them.
    fn block(&self, x: &[T], dy: &[T], g: &[T], b: usize, dx: Option<(&mut [T], bool)>) -> Vec<T> {
        let n = g.len();
        let r0 = b * ROW_SUM_BLOCK;
        let rows = ROW_SUM_BLOCK.min(x.len() / n - r0);
        let span = r0 * n..(r0 + rows) * n;
        let rms = &self.rms[r0..r0 + rows];
        self.k.rms_norm_backward_rows(&x[span.clone()], &dy[span], g, rms, dx)
    }
}

/// The plain backward of rows of `x` (the default of `Kernels::rms_norm_backward_rows`): writes
/// (or, with `accumulate`, adds) `∂x` into `dx` if given and returns `Σ_rows ∂y_j · x_j / s`,
/// rows in order.
pub fn rms_norm_backward_rows_reference<T: Float>(
    x: &[T],
    dy: &[T],
    g: &[T],
    rms: &[T],
    mut dx: Option<(&mut [T], bool)>,
) -> Vec<T> {
    let n = g.len();
    let inv_n = T::ONE / T::from_f64(n as f64);
    let mut dg = vec![T::ZERO; n];
    for (k, &s) in rms.iter().enumerate() {
        let (x, dy) = (&x[k * n..][..n], &dy[k * n..][..n]);
        for j in 0..n {
            dg[j] += dy[j] * x[j] / s;
        }
        let Some((dx, accumulate)) = &mut dx else { continue };
        let dx = &mut dx[k * n..][..n];
        let rs = T::ONE / s;
        let c = rs * rs * rs * inv_n * lane_dot(dy, g, Some(x));
        for j in 0..n {
            let v = rs * g[j] * dy[j] - c * x[j];
            dx[j] = if *accumulate { dx[j] + v } else { v };
        }
    }
    dg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_dot_adds_in_its_documented_order() {
        let a: Vec<f32> = (0..19).map(|i| 1.0 + (i as f32) * 0.37).collect();
        let b: Vec<f32> = (0..19).map(|i| 0.5 - (i as f32) * 0.11).collect();
        let mut lane = [0.0f32; 8];
        for j in 0..19 {
            lane[j % 8] += a[j] * b[j];
        }
        let want = ((lane[0] + lane[1]) + (lane[2] + lane[3]))
            + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
        assert_eq!(lane_dot(&a, &b, None).to_bits(), want.to_bits());
        let ones = vec![1.0f32; 19];
        assert_eq!(lane_dot(&a, &ones, Some(&b)).to_bits(), want.to_bits());
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        assert!((f64::from(want) - exact).abs() < 1e-5);
    }
}
