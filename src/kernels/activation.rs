//! quick_gelu, eight lanes at a time: the fast twin of `ops::elementwise::quick_gelu_scalar`.
//!
//! `quick_gelu(x) = x·σ(1.702x)` with `σ(z) = 1/(1 + e^{−z}) = 1/(1 + 2^{−z·log₂e})`, using the
//! `exp2` of [`super::simd`] (relative error ≤ 2e-7). The exponent is clamped to ≤ 126 so very
//! negative inputs give `σ ≈ 1e-38` instead of overflowing; the result then rounds to the same
//! `±0`-ish value as the scalar definition. The derivative is
//! `s + 1.702·x·s·(1 − s)`, `s = σ(1.702x)`. Both agree with the scalar f32 reference to 2e-6
//! relative (tested below); the scalar tail handles lengths that are not multiples of 8.

use super::simd::{exp2, load, store, LANES};
use crate::ops::elementwise::{quick_gelu_grad, quick_gelu_scalar, QUICK_GELU_ALPHA};
use wide::f32x8;

/// `σ(1.702x)` per lane.
#[inline(always)]
fn sigmoid_alpha(x: f32x8) -> f32x8 {
    let k = f32x8::splat(-(QUICK_GELU_ALPHA * std::f64::consts::LOG2_E) as f32);
    let t = (x * k).fast_min(f32x8::splat(126.0));
    f32x8::ONE / (f32x8::ONE + exp2(t))
}

/// `y = quick_gelu(x)` element-wise.
pub fn quick_gelu_forward(x: &[f32], y: &mut [f32]) {
    let n8 = x.len() / LANES * LANES;
    for i in (0..n8).step_by(LANES) {
        let v = load(&x[i..]);
        store(&mut y[i..], v * sigmoid_alpha(v));
    }
    for i in n8..x.len() {
        y[i] = quick_gelu_scalar(x[i]);
    }
}

/// `dx (+)= dy · quick_gelu'(x)` element-wise (`accumulate` adds instead of writing).
pub fn quick_gelu_backward(x: &[f32], dy: &[f32], dx: &mut [f32], accumulate: bool) {
    let alpha = f32x8::splat(QUICK_GELU_ALPHA as f32);
    let n8 = x.len() / LANES * LANES;
    for i in (0..n8).step_by(LANES) {
        let v = load(&x[i..]);
        let s = sigmoid_alpha(v);
        let d = load(&dy[i..]) * (s + alpha * v * s * (f32x8::ONE - s));
        let d = if accumulate { load(&dx[i..]) + d } else { d };
        store(&mut dx[i..], d);
    }
    for i in n8..x.len() {
        let d = dy[i] * quick_gelu_grad(x[i]);
        dx[i] = if accumulate { dx[i] + d } else { d };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;

    fn inputs(n: usize) -> Vec<f32> {
        let mut x = vec![0.0; n];
        Philox::new(5).fill_normal(0, 0.0, 4.0, &mut x);
        x.extend([0.0, -0.0, 100.0, -100.0, 1e-30, -60.0, 60.0]);
        x
    }

    #[test]
    fn forward_matches_the_scalar_definition() {
        let x = inputs(1001);
        let mut y = vec![0.0; x.len()];
        quick_gelu_forward(&x, &mut y);
        for (a, b) in x.iter().zip(&y) {
            let want = quick_gelu_scalar(*a);
            assert!((b - want).abs() <= 2e-6 * want.abs() + 1e-30, "x {a}: {b} vs {want}");
        }
    }

    #[test]
    fn backward_matches_the_scalar_definition() {
        let x = inputs(1001);
        let dy: Vec<f32> = x.iter().map(|v| 0.5 - v.sin()).collect();
        let mut dx = vec![1.0; x.len()];
        quick_gelu_backward(&x, &dy, &mut dx, true);
        for i in 0..x.len() {
            let want = 1.0 + dy[i] * quick_gelu_grad(x[i]);
            assert!(
                (dx[i] - want).abs() <= 2e-6 * (1.0 + want.abs()),
                "x {}: {} vs {want}",
                x[i],
                dx[i]
            );
        }
    }
}
