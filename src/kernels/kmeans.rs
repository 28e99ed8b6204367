//! The distance kernels of k-means (`palette::kmeans`), SIMD over eight points or centres.
//!
//! Each computes the definitions of `ops::nearest` — the squared distance `sq_dist` (f32,
//! channel 0 first, no FMA) and the scan `nearest_two_reference` — with the same bits:
//! - [`nearest_two`] finds the nearest and second-nearest of `k` centres, eight centres per
//!   step: `kernels::Simd`'s `Kernels::nearest_two` (tested equal to the reference bit for bit,
//!   including ties);
//! - `sq_dist8` computes `sq_dist` for eight points at once (k-means++ potentials);
//! - `fixed_sum` is igpt's fixed-order sum of f32 values (eight f32 lanes, then the lanes in
//!   f64 in order, then the tail in f64), which makes every k-means potential and inertia
//!   independent of the thread count.

use crate::ops::nearest::{sq_dist, Centers};
use wide::{f32x8, u32x8};

/// Most channels a point may have (RGB).
pub(crate) const MAX_C: usize = 3;

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

/// Nearest and second-nearest centre of `x` by brute force: `(index, d², second d²)`, ties to
/// the lowest index. SIMD over eight centres at a time, then a scalar tail; the same bits as
/// its plain twin `ops::nearest::nearest_two_reference`.
pub fn nearest_two(x: &[f32], ctr: &Centers) -> (usize, f32, f32) {
    let k = ctr.k;
    let whole = k / 8 * 8;
    let mut xs = [f32x8::splat(0.0); MAX_C];
    let mut cols: [&[f32]; MAX_C] = [&[]; MAX_C];
    for (ch, (s, &v)) in xs.iter_mut().zip(x).enumerate() {
        *s = f32x8::splat(v);
        cols[ch] = ctr.channel(ch);
    }
    let mut d1 = f32x8::splat(f32::INFINITY);
    let mut d2 = f32x8::splat(f32::INFINITY);
    let mut i1 = u32x8::splat(0);
    let mut idx = u32x8::new([0, 1, 2, 3, 4, 5, 6, 7]);
    for j in (0..whole).step_by(8) {
        let diff = |ch: usize| xs[ch] - load8(&cols[ch][j..]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::nearest::nearest_two_reference;
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
                let (fast, plain) = (nearest_two(x, &ctr), nearest_two_reference(x, &ctr));
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
