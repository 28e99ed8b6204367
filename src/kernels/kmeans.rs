//! The distance scans of k-means (`palette::kmeans`), SIMD over eight points or centres, each
//! beside its plain scalar twin.
//!
//! One formula everywhere, so that every path gives the same bits: the squared distance of a
//! point `x` to a centre `μ` over `c ≤ 3` channels is
//! ```text
//! d = (x₀−μ₀)²;  d = d + (x₁−μ₁)²;  d = d + (x₂−μ₂)²      (f32, channel 0 first, no FMA)
//! ```
//! - `sq_dist` is the definition; `sq_dist8` computes it for eight points at once.
//! - `scan_all` finds the nearest and second-nearest of `k` centres, eight centres per step,
//!   and `scan_all_reference` is its plain loop (tested equal, bit for bit, including ties).
//! - `fixed_sum` is igpt's fixed-order sum of f32 values (eight f32 lanes, then the lanes in
//!   f64 in order, then the tail in f64), which makes every k-means potential and inertia
//!   independent of the thread count.

use wide::{f32x8, u32x8};

/// Most channels a point may have (RGB).
pub(crate) const MAX_C: usize = 3;

/// Squared distance between two points: the definition, and the scalar twin of the SIMD scans.
pub(crate) fn sq_dist(x: &[f32], mu: &[f32]) -> f32 {
    let mut d = (x[0] - mu[0]) * (x[0] - mu[0]);
    for ch in 1..x.len() {
        d += (x[ch] - mu[ch]) * (x[ch] - mu[ch]);
    }
    d
}

pub(crate) fn load8(s: &[f32]) -> f32x8 {
    f32x8::new(s[..8].try_into().expect("8 lanes"))
}

/// Squared distances of the eight points starting at `i` (channel slices `xs`) to `mu`.
pub(crate) fn sq_dist8(xs: &[&[f32]], i: usize, mu: &[f32]) -> f32x8 {
    let diff = |ch: usize| load8(&xs[ch][i..]) - f32x8::splat(mu[ch]);
    let mut d = diff(0) * diff(0);
    for ch in 1..xs.len() {
        let e = diff(ch);
        d += e * e;
    }
    d
}

/// igpt's fixed-order sum of f32 values: eight f32 lane accumulators over whole blocks of eight,
/// the lanes added in f64 in lane order, then the leftover values in f64. `value8(i)` gives the
/// values at `i..i+8` and `value(i)` the value at `i`.
pub(crate) fn fixed_sum(
    len: usize,
    value8: impl Fn(usize) -> f32x8,
    value: impl Fn(usize) -> f32,
) -> f64 {
    let whole = len / 8 * 8;
    let mut lanes = f32x8::splat(0.0);
    for i in (0..whole).step_by(8) {
        lanes += value8(i);
    }
    let mut sum: f64 = lanes.to_array().iter().map(|&v| f64::from(v)).sum();
    for i in whole..len {
        sum += f64::from(value(i));
    }
    sum
}

/// Sum of `w` in the fixed order of [`fixed_sum`].
pub(crate) fn chunk_sum(w: &[f32]) -> f64 {
    fixed_sum(w.len(), |i| load8(&w[i..]), |i| w[i])
}

/// Centres channel-major (like the points of `palette::kmeans`), for scanning eight centres at
/// a time.
pub(crate) struct Centers {
    pub(crate) k: usize,
    pub(crate) c: usize,
    /// Row-major `k × c` (the public layout).
    pub(crate) rows: Vec<f32>,
    /// Channel-major copy: channel `ch` of centre `j` at `cols[ch * k + j]`.
    cols: Vec<f32>,
}

impl Centers {
    pub(crate) fn new(rows: Vec<f32>, c: usize) -> Self {
        let k = rows.len() / c;
        let mut cols = vec![0.0; rows.len()];
        for j in 0..k {
            for ch in 0..c {
                cols[ch * k + j] = rows[j * c + ch];
            }
        }
        Centers { k, c, rows, cols }
    }

    pub(crate) fn row(&self, j: usize) -> &[f32] {
        &self.rows[j * self.c..(j + 1) * self.c]
    }
}

/// Nearest and second-nearest centre of `x` by brute force: `(index, d², second d²)`, ties to
/// the lowest index. SIMD over eight centres at a time, then a scalar tail.
pub(crate) fn scan_all(x: &[f32], ctr: &Centers) -> (usize, f32, f32) {
    let k = ctr.k;
    let whole = k / 8 * 8;
    let mut xs = [f32x8::splat(0.0); MAX_C];
    for (s, &v) in xs.iter_mut().zip(x) {
        *s = f32x8::splat(v);
    }
    let mut d1 = f32x8::splat(f32::INFINITY);
    let mut d2 = f32x8::splat(f32::INFINITY);
    let mut i1 = u32x8::splat(0);
    let mut idx = u32x8::new([0, 1, 2, 3, 4, 5, 6, 7]);
    for j in (0..whole).step_by(8) {
        let diff = |ch: usize| xs[ch] - load8(&ctr.cols[ch * k + j..]);
        let mut d = diff(0) * diff(0);
        for ch in 1..x.len() {
            let e = diff(ch);
            d += e * e;
        }
        let closer = d.simd_lt(d1);
        d2 = closer.select(d1, d2.fast_min(d));
        d1 = closer.select(d, d1);
        i1 = closer.select(idx, i1);
        idx += u32x8::splat(8);
    }
    let (d1, d2, i1) = (d1.to_array(), d2.to_array(), i1.to_array());
    // Combine the lanes: the best is the smallest d1 with the lowest index; the second best is
    // the smallest of every other candidate value.
    let mut best = (f32::INFINITY, usize::MAX, f32::INFINITY);
    let consider = |d: f32, j: usize, best: &mut (f32, usize, f32)| {
        if d < best.0 || (d == best.0 && j < best.1) {
            best.2 = best.0;
            best.0 = d;
            best.1 = j;
        } else {
            best.2 = best.2.min(d);
        }
    };
    for lane in 0..8 {
        if whole > 0 {
            consider(d1[lane], i1[lane] as usize, &mut best);
            best.2 = best.2.min(d2[lane]);
        }
    }
    for j in whole..k {
        consider(sq_dist(x, ctr.row(j)), j, &mut best);
    }
    (best.1, best.0, best.2)
}

/// The plain twin of [`scan_all`]: every centre in index order, keeping the nearest (ties to the
/// lowest index) and the smallest distance among the others. Only the tests run it (they hold
/// [`scan_all`] to it bit for bit); it is here so the definition sits beside the kernel.
#[cfg(test)]
pub(crate) fn scan_all_reference(x: &[f32], ctr: &Centers) -> (usize, f32, f32) {
    let mut best = (usize::MAX, f32::INFINITY, f32::INFINITY);
    for j in 0..ctr.k {
        let d = sq_dist(x, ctr.row(j));
        if d < best.1 {
            best = (j, d, best.1);
        } else {
            best.2 = best.2.min(d);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;

    /// `n` values on a coarse grid, so that equal distances (ties) are common.
    fn grid_values(philox: &Philox, stream: u64, n: usize) -> Vec<f32> {
        (0..n as u64).map(|i| (philox.u32_at(stream, i) % 5) as f32 * 0.25 - 0.5).collect()
    }

    #[test]
    fn the_simd_scan_equals_its_plain_twin_bit_for_bit() {
        let philox = Philox::new(7);
        for (case, (k, c)) in
            [(1, 3), (7, 3), (8, 1), (13, 3), (64, 3), (517, 1)].into_iter().enumerate()
        {
            let ctr = Centers::new(grid_values(&philox, 2 * case as u64, k * c), c);
            let points = grid_values(&philox, 2 * case as u64 + 1, 50 * c);
            for x in points.chunks(c) {
                let (fast, plain) = (scan_all(x, &ctr), scan_all_reference(x, &ctr));
                assert_eq!(fast.0, plain.0, "k {k}, c {c}, x {x:?}");
                assert_eq!(fast.1.to_bits(), plain.1.to_bits());
                assert_eq!(fast.2.to_bits(), plain.2.to_bits());
            }
        }
    }

    #[test]
    fn eight_point_distances_equal_the_definition() {
        let philox = Philox::new(8);
        let xs: Vec<Vec<f32>> = (0..3).map(|ch| grid_values(&philox, ch, 16)).collect();
        let slices: Vec<&[f32]> = xs.iter().map(|v| v.as_slice()).collect();
        let mu = [0.25, -0.5, 0.0];
        for i in [0, 8] {
            let d8 = sq_dist8(&slices, i, &mu).to_array();
            for (lane, d) in d8.iter().enumerate() {
                let x: Vec<f32> = xs.iter().map(|v| v[i + lane]).collect();
                assert_eq!(d.to_bits(), sq_dist(&x, &mu).to_bits());
            }
        }
        let w: Vec<f32> = (0..21).map(|i| i as f32 * 0.1).collect();
        let plain = w[..16].chunks(8).fold([0.0f32; 8], |mut acc, blk| {
            acc.iter_mut().zip(blk).for_each(|(a, v)| *a += v);
            acc
        });
        let want = plain.iter().map(|&v| f64::from(v)).sum::<f64>()
            + w[16..].iter().map(|&v| f64::from(v)).sum::<f64>();
        assert_eq!(chunk_sum(&w), want);
    }
}
