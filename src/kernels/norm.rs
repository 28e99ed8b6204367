//! The RMS norm's rows, eight lanes at a time: the fast twins of `ops::norm`'s
//! `rms_norm_rows_reference` and `rms_norm_backward_rows_reference`, **bit for bit**.
//!
//! The reference already sums in lanes (`ops::norm::lane_dot`: lane `l` adds the terms
//! `j ≡ l (mod 8)` in increasing `j`, then `((s₀+s₁)+(s₂+s₃))+((s₄+s₅)+(s₆+s₇))`), which is exactly
//! one `f32x8` accumulator, and every other step is element-wise. So these kernels do the same
//! roundings in the same order — a product, then a sum; never a fused multiply-add — and their
//! results equal the reference's exactly (tested below), so choosing them changes no trained
//! model. The scalar tail handles rows whose length is not a multiple of 8.

use super::simd::{load, store, LANES};
use wide::f32x8;

/// `ops::norm::lane_dot` (`Σ a_j·b_j`, or `Σ a_j·b_j·c_j`) with one vector of lanes.
fn lane_dot(a: &[f32], b: &[f32], c: Option<&[f32]>) -> f32 {
    let n8 = a.len() / LANES * LANES;
    let mut acc = f32x8::ZERO;
    for j in (0..n8).step_by(LANES) {
        let t = load(&a[j..]) * load(&b[j..]);
        acc += match c {
            Some(c) => t * load(&c[j..]),
            None => t,
        };
    }
    let mut s = acc.to_array();
    for j in n8..a.len() {
        let t = a[j] * b[j];
        s[j % LANES] += c.map_or(t, |c| t * c[j]);
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

/// The norm of rows of `x` (`[rows, n]`, `n = g.len()`): `s = sqrt(mean(x²) + ε)` into `rms`,
/// `y = x / s · g`.
pub fn rms_norm_rows(x: &[f32], g: &[f32], eps: f32, y: &mut [f32], rms: &mut [f32]) {
    let n = g.len();
    let n8 = n / LANES * LANES;
    for ((y, x), s_out) in y.chunks_mut(n).zip(x.chunks(n)).zip(rms.iter_mut()) {
        let s = (lane_dot(x, x, None) / n as f32 + eps).sqrt();
        *s_out = s;
        let sv = f32x8::splat(s);
        for j in (0..n8).step_by(LANES) {
            store(&mut y[j..], load(&x[j..]) / sv * load(&g[j..]));
        }
        for j in n8..n {
            y[j] = x[j] / s * g[j];
        }
    }
}

/// The norm's backward over rows of `x` with their saved `rms`: writes (or adds, with the flag)
/// `∂x_j = (1/s)·g_j·∂y_j − c·x_j`, `c = (1/s)³/n · Σ_i ∂y_i g_i x_i`, into `dx` if given, and
/// returns `Σ_rows ∂y_j · x_j / s`, rows in order.
pub fn rms_norm_backward_rows(
    x: &[f32],
    dy: &[f32],
    g: &[f32],
    rms: &[f32],
    mut dx: Option<(&mut [f32], bool)>,
) -> Vec<f32> {
    let n = g.len();
    let n8 = n / LANES * LANES;
    let inv_n = 1.0 / n as f32;
    let mut dg = vec![0.0; n];
    for (k, &s) in rms.iter().enumerate() {
        let (x, dy) = (&x[k * n..][..n], &dy[k * n..][..n]);
        let sv = f32x8::splat(s);
        for j in (0..n8).step_by(LANES) {
            let sum = load(&dg[j..]) + load(&dy[j..]) * load(&x[j..]) / sv;
            store(&mut dg[j..], sum);
        }
        for j in n8..n {
            dg[j] += dy[j] * x[j] / s;
        }
        let Some((dx, accumulate)) = &mut dx else { continue };
        let dx = &mut dx[k * n..][..n];
        let rs = 1.0 / s;
        let c = rs * rs * rs * inv_n * lane_dot(dy, g, Some(x));
        let (rsv, cv) = (f32x8::splat(rs), f32x8::splat(c));
        for j in (0..n8).step_by(LANES) {
            let v = rsv * load(&g[j..]) * load(&dy[j..]) - cv * load(&x[j..]);
            let v = if *accumulate { load(&dx[j..]) + v } else { v };
            store(&mut dx[j..], v);
        }
        for j in n8..n {
            let v = rs * g[j] * dy[j] - c * x[j];
            dx[j] = if *accumulate { dx[j] + v } else { v };
        }
    }
    dg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::norm::{rms_norm_backward_rows_reference, rms_norm_rows_reference};
    use crate::rng::Philox;

    fn normals(stream: u64, n: usize) -> Vec<f32> {
        let mut v = vec![0.0; n];
        Philox::new(3).fill_normal(stream, 0.0, 1.0, &mut v);
        v
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Forward and backward equal the references bit for bit, for rows of full vectors and
    /// with a scalar tail, writing and accumulating.
    #[test]
    fn rows_equal_the_reference_bit_for_bit() {
        for n in [8, 13, 128, 131] {
            let rows = 5;
            let (x, dy, g) = (normals(0, rows * n), normals(1, rows * n), normals(2, n));
            let (mut y, mut rms) = (vec![0.0; rows * n], vec![0.0; rows]);
            let (mut y_ref, mut rms_ref) = (y.clone(), rms.clone());
            rms_norm_rows(&x, &g, 1e-5, &mut y, &mut rms);
            rms_norm_rows_reference(&x, &g, 1e-5, &mut y_ref, &mut rms_ref);
            assert_eq!((bits(&y), bits(&rms)), (bits(&y_ref), bits(&rms_ref)), "forward, n = {n}");
            for accumulate in [false, true] {
                let (mut dx, mut dx_ref) = (normals(3, rows * n), normals(3, rows * n));
                let dg = rms_norm_backward_rows(&x, &dy, &g, &rms, Some((&mut dx, accumulate)));
                let dg_ref = rms_norm_backward_rows_reference(
                    &x,
                    &dy,
                    &g,
                    &rms,
                    Some((&mut dx_ref, accumulate)),
                );
                assert_eq!(bits(&dx), bits(&dx_ref), "∂x, n = {n}, accumulate {accumulate}");
                assert_eq!(bits(&dg), bits(&dg_ref), "∂g, n = {n}");
            }
        }
    }
}
