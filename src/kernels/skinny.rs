//! `Y = X·W + b` for a few rows of `X`: the projections of one decoding step.
//!
//! During sampling each step multiplies `B` rows (one per sequence, `B` small) by every weight
//! matrix. That is memory-bound: the cost is reading `W` once. A general GEMM packs (copies)
//! `W` before multiplying, which doubles the traffic; this kernel streams `W` row by row
//! instead:
//! ```text
//! Y[r, :] = b + Σ_i X[r, i] · W[i, :]          (i = 0, 1, … in order, 8 columns per FMA)
//! ```
//! Each row of `W` is loaded once and used for all `B` rows of `X`. Columns are split into
//! fixed blocks of [`COLS_PER_TASK`] run in parallel; every output element is the same sum in
//! the same order whatever the thread count. Tested against `tensor::gemm`.

use super::simd::{load, store, LANES};
use rayon::prelude::*;
use wide::f32x8;

/// Columns of `W` per parallel task (a multiple of 8).
pub const COLS_PER_TASK: usize = 256;

/// `y[rows, d_out] = x[rows, d_in] · w[d_in, d_out] + bias[d_out]` (row-major, `w` in the Conv1D
/// layout).
///
/// # Panics
/// If the slices are shorter than the sizes say.
pub fn skinny_linear(x: &[f32], rows: usize, w: &[f32], d_in: usize, d_out: usize, bias: &[f32], y: &mut [f32]) {
    assert!(x.len() >= rows * d_in && w.len() >= d_in * d_out && bias.len() >= d_out && y.len() >= rows * d_out);
    let blocks: Vec<(usize, Vec<f32>)> = (0..d_out.div_ceil(COLS_PER_TASK))
        .into_par_iter()
        .map(|blk| {
            let c0 = blk * COLS_PER_TASK;
            let width = COLS_PER_TASK.min(d_out - c0);
            (c0, column_block(x, rows, w, d_in, d_out, &bias[c0..c0 + width], c0))
        })
        .collect();
    for (c0, part) in blocks {
        let width = part.len() / rows.max(1);
        for r in 0..rows {
            y[r * d_out + c0..r * d_out + c0 + width].copy_from_slice(&part[r * width..(r + 1) * width]);
        }
    }
}

/// Columns `c0 .. c0 + bias.len()` of the output for every row: `[rows, width]`.
fn column_block(x: &[f32], rows: usize, w: &[f32], d_in: usize, d_out: usize, bias: &[f32], c0: usize) -> Vec<f32> {
    let width = bias.len();
    let mut acc: Vec<f32> = (0..rows).flat_map(|_| bias.iter().copied()).collect();
    let vec_end = width / LANES * LANES;
    for i in 0..d_in {
        let w_row = &w[i * d_out + c0..i * d_out + c0 + width];
        for r in 0..rows {
            let xi = x[r * d_in + i];
            let xv = f32x8::splat(xi);
            let out = &mut acc[r * width..(r + 1) * width];
            for j in (0..vec_end).step_by(LANES) {
                let v = xv.mul_add(load(&w_row[j..]), load(&out[j..]));
                store(&mut out[j..], v);
            }
            for j in vec_end..width {
                out[j] = xi.mul_add(w_row[j], out[j]);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;
    use crate::tensor::{gemm_reference, MatRef};

    #[test]
    fn matches_the_reference_gemm_and_is_thread_independent() {
        for (rows, d_in, d_out) in [(1, 7, 3), (3, 64, 300), (8, 33, 517), (2, 128, 1536)] {
            let p = Philox::new(2);
            let (mut x, mut w, mut b) = (vec![0.0; rows * d_in], vec![0.0; d_in * d_out], vec![0.0; d_out]);
            p.fill_normal(0, 0.0, 1.0, &mut x);
            p.fill_normal(1, 0.0, 1.0, &mut w);
            p.fill_normal(2, 0.0, 1.0, &mut b);
            let mut want: Vec<f32> = (0..rows).flat_map(|_| b.iter().copied()).collect();
            gemm_reference(1.0, MatRef::new(&x, rows, d_in), MatRef::new(&w, d_in, d_out), 1.0, &mut want);
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut y = vec![f32::NAN; rows * d_out];
                pool.install(|| skinny_linear(&x, rows, &w, d_in, d_out, &b, &mut y));
                y
            };
            let y = run(1);
            assert_eq!(y, run(2));
            for (a, e) in y.iter().zip(&want) {
                assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "{rows}x{d_in}x{d_out}: {a} vs {e}");
            }
        }
    }
}
