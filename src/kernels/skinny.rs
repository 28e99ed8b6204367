//! `Y = X·W + b` for a few rows of `X`: the projections of one decoding step.
//!
//! During sampling each step multiplies `B` rows (one per sequence, `B` small) by every weight
//! matrix. That is memory-bound: the cost is reading `W` once. A general GEMM packs (copies)
//! `W` before multiplying, which doubles the traffic; this kernel reads `W` in place:
//! ```text
//! Y[r, :] = b + Σ_i X[r, i] · W[i, :]          (i = 0, 1, … in order, fused multiply-adds)
//! ```
//! For one row and a matrix that fits in cache, `W` is streamed row by row. Otherwise `W` is
//! walked in strips of 16 columns (one cache line per row of the strip) and each load serves up
//! to 4 rows of `X`, whose accumulators stay in registers. Both paths sum in the same order, so
//! they agree bit for bit. Columns are split into fixed blocks of [`COLS_PER_TASK`] run in
//! parallel; every output element is the same sum in the same order whatever the thread count.
//! Tested against `tensor::gemm_reference`.

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
pub fn skinny_linear(
    x: &[f32],
    rows: usize,
    w: &[f32],
    d_in: usize,
    d_out: usize,
    bias: &[f32],
    y: &mut [f32],
) {
    assert!(
        x.len() >= rows * d_in
            && w.len() >= d_in * d_out
            && bias.len() >= d_out
            && y.len() >= rows * d_out
    );
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
            y[r * d_out + c0..r * d_out + c0 + width]
                .copy_from_slice(&part[r * width..(r + 1) * width]);
        }
    }
}

/// Columns `c0 .. c0 + bias.len()` of the output for every row: `[rows, width]`.
fn column_block(
    x: &[f32],
    rows: usize,
    w: &[f32],
    d_in: usize,
    d_out: usize,
    bias: &[f32],
    c0: usize,
) -> Vec<f32> {
    let width = bias.len();
    if rows == 1 && d_in * d_out < STREAM_ROWS_BELOW {
        return single_row(x, w, d_in, d_out, bias, c0);
    }
    let mut out = vec![0.0; rows * width];
    let mut r0 = 0;
    while r0 < rows {
        // Up to 4 rows at a time: 4 rows × 16 columns of accumulators fill 8 registers.
        let group = (rows - r0).min(4);
        let xs = &x[r0 * d_in..(r0 + group) * d_in];
        let dst = &mut out[r0 * width..(r0 + group) * width];
        match group {
            1 => row_group::<1>(xs, w, d_in, d_out, bias, c0, dst),
            2 => row_group::<2>(xs, w, d_in, d_out, bias, c0, dst),
            3 => row_group::<3>(xs, w, d_in, d_out, bias, c0, dst),
            _ => row_group::<4>(xs, w, d_in, d_out, bias, c0, dst),
        }
        r0 += group;
    }
    out
}

/// One row: walk `W` row by row (contiguous reads), accumulating `x[i]·W[i, block]` into the
/// output in order `i = 0, 1, …` — the same sums as [`row_group`], in the same order.
fn single_row(
    x: &[f32],
    w: &[f32],
    d_in: usize,
    d_out: usize,
    bias: &[f32],
    c0: usize,
) -> Vec<f32> {
    let width = bias.len();
    let mut out = bias.to_vec();
    let vec_end = width / LANES * LANES;
    for (i, &xi) in x[..d_in].iter().enumerate() {
        let row = &w[i * d_out + c0..i * d_out + c0 + width];
        let xv = f32x8::splat(xi);
        for j in (0..vec_end).step_by(LANES) {
            let v = xv.mul_add(load(&row[j..]), load(&out[j..]));
            store(&mut out[j..], v);
        }
        for j in vec_end..width {
            out[j] = xi.mul_add(row[j], out[j]);
        }
    }
    out
}

/// For a single row, matrices below this many elements (2 MiB, about what stays in a core's
/// cache) are streamed row by row; larger ones, read from memory, go faster in strips
/// (measured with `igpt bench sample`: `small` 490 vs 300 tok/s, `igpt-s` 41 vs 34 tok/s).
const STREAM_ROWS_BELOW: usize = 1 << 19;

/// Columns per strip: two vectors, one 64-byte cache line of `W`.
const STRIP: usize = 2 * LANES;

/// `R` rows of the block: for every 16-column strip, `2R` accumulators start at the bias and
/// take `x[r, i]·W[i, strip]` for `i = 0, 1, …` — two loads of `W` per `2R` fused multiply-adds.
#[allow(clippy::too_many_arguments)]
fn row_group<const R: usize>(
    x: &[f32],
    w: &[f32],
    d_in: usize,
    d_out: usize,
    bias: &[f32],
    c0: usize,
    out: &mut [f32],
) {
    let width = bias.len();
    let strip_end = width / STRIP * STRIP;
    for j in (0..strip_end).step_by(STRIP) {
        let mut acc = [[load(&bias[j..]), load(&bias[j + LANES..])]; R];
        for i in 0..d_in {
            let row = &w[i * d_out + c0 + j..];
            let (w0, w1) = (load(row), load(&row[LANES..]));
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = f32x8::splat(x[r * d_in + i]);
                a[0] = xv.mul_add(w0, a[0]);
                a[1] = xv.mul_add(w1, a[1]);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            store(&mut out[r * width + j..], a[0]);
            store(&mut out[r * width + j + LANES..], a[1]);
        }
    }
    for j in strip_end..width {
        for r in 0..R {
            let mut a = bias[j];
            for i in 0..d_in {
                a = x[r * d_in + i].mul_add(w[i * d_out + c0 + j], a);
            }
            out[r * width + j] = a;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;
    use crate::tensor::{gemm_reference, MatRef};

    #[test]
    fn matches_the_reference_gemm_and_is_thread_independent() {
        for (rows, d_in, d_out) in
            [(1, 7, 3), (3, 64, 300), (8, 33, 517), (2, 128, 1536), (1, 512, 1100), (5, 9, 40)]
        {
            let p = Philox::new(2);
            let (mut x, mut w, mut b) =
                (vec![0.0; rows * d_in], vec![0.0; d_in * d_out], vec![0.0; d_out]);
            p.fill_normal(0, 0.0, 1.0, &mut x);
            p.fill_normal(1, 0.0, 1.0, &mut w);
            p.fill_normal(2, 0.0, 1.0, &mut b);
            let mut want: Vec<f32> = (0..rows).flat_map(|_| b.iter().copied()).collect();
            gemm_reference(
                1.0,
                MatRef::new(&x, rows, d_in),
                MatRef::new(&w, d_in, d_out),
                1.0,
                &mut want,
            );
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut y = vec![f32::NAN; rows * d_out];
                pool.install(|| skinny_linear(&x, rows, &w, d_in, d_out, &b, &mut y));
                y
            };
            let y = run(1);
            assert_eq!(y, run(2));
            for (a, e) in y.iter().zip(&want) {
                assert!(
                    (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "{rows}x{d_in}x{d_out}: {a} vs {e}"
                );
            }
        }
    }
}
