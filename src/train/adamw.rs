//! AdamW (Loshchilov & Hutter), with the exact arithmetic of `torch.optim.AdamW`
//! (single-tensor path, `foreach=False`), so a step here matches a PyTorch step.
//!
//! At step `t = 1, 2, …`, for every parameter `p` with gradient `g` (element-wise, f32):
//! ```text
//! p ← p · (1 − lr·λ)                          decoupled weight decay (scalar in f64, then f32)
//! m ← m + (1 − β₁)·(g − m)                    torch's lerp, i.e. β₁·m + (1 − β₁)·g
//! v ← v·β₂ + (1 − β₂)·g·g
//! p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//! The scalars `1 − lr·λ`, `lr/(1 − β₁ᵗ)` and `√(1 − β₂ᵗ)` are computed in f64 and rounded to
//! f32, as PyTorch does with Python floats. The paper uses β₁ = 0.9, β₂ = 0.95 (0.999 gave loss
//! spikes), ε = 1e-8 and no weight decay.

use crate::tensor::Tensor;
use rayon::prelude::*;

/// AdamW's hyper-parameters (the learning rate is passed to each step: schedules change it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// The paper's: β₁ 0.9, β₂ 0.95, ε 1e-8, no weight decay.
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// AdamW state: the step count and the two moment estimates of every parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Steps taken so far.
    pub step: u64,
    /// First moments `m`, one per parameter.
    pub m: Vec<Tensor<f32>>,
    /// Second moments `v`, one per parameter.
    pub v: Vec<Tensor<f32>>,
}

/// Elements per parallel task (each element is updated independently).
const CHUNK: usize = 1 << 14;

impl AdamW {
    /// Zero moments for parameters of the given shapes.
    pub fn new(config: AdamWConfig, params: &[Tensor<f32>]) -> Self {
        let zeros = || params.iter().map(|p| Tensor::zeros(p.shape())).collect();
        AdamW { config, step: 0, m: zeros(), v: zeros() }
    }

    /// One step with learning rate `lr` over `params` and their `grads` (same order and shapes).
    ///
    /// # Panics
    /// If the lists or shapes disagree with the state.
    pub fn step(&mut self, params: &mut [Tensor<f32>], grads: &[Tensor<f32>], lr: f64) {
        assert!(
            params.len() == self.m.len() && grads.len() == self.m.len(),
            "AdamW: parameter count"
        );
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let decay = (1.0 - lr * c.weight_decay) as f32;
        let step_size = (lr / (1.0 - c.beta1.powi(t))) as f32;
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt() as f32;
        let (one_minus_b1, b2, one_minus_b2, eps) =
            ((1.0 - c.beta1) as f32, c.beta2 as f32, (1.0 - c.beta2) as f32, c.eps as f32);
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            assert_eq!(p.shape(), g.shape(), "AdamW: gradient shape");
            let g = g.data();
            p.data_mut()
                .par_chunks_mut(CHUNK)
                .zip(m.data_mut().par_chunks_mut(CHUNK))
                .zip(v.data_mut().par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(k, ((p, m), v))| {
                    for j in 0..p.len() {
                        let gi = g[k * CHUNK + j];
                        p[j] *= decay;
                        m[j] += one_minus_b1 * (gi - m[j]);
                        v[j] = v[j] * b2 + one_minus_b2 * gi * gi;
                        let denom = v[j].sqrt() / bc2_sqrt + eps;
                        p[j] += -step_size * m[j] / denom;
                    }
                });
        }
    }
}

/// The most one step can move an element, in units of lr, beyond weight decay: Adam's bound
/// on `|m̂_t| / sqrt(v̂_t)`. With `β₁² < β₂`, Cauchy–Schwarz gives
/// `(1−β₁)/(1−β₁ᵗ) · sqrt((1−β₂ᵗ)/(1−β₂)) · sqrt(Σ_{j<t} (β₁²/β₂)ʲ)` (1.0 at t = 1 and 2 for the
/// paper's β's).
pub fn step_bound(config: &AdamWConfig, t: i32) -> f64 {
    let (b1, b2) = (config.beta1, config.beta2);
    let r: f64 = (0..t).map(|j| (b1 * b1 / b2).powi(j)).sum();
    (1.0 - b1) / (1.0 - b1.powi(t)) * ((1.0 - b2.powi(t)) / (1.0 - b2)).sqrt() * r.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step from zero moments moves every weight by `lr·sign(g)` (up to ε), the Adam
    /// signature, and decays weights by `1 − lr·λ`.
    #[test]
    fn first_step_is_lr_times_sign() {
        let mut p = vec![Tensor::new(&[3], vec![1.0, -2.0, 0.5])];
        let g = vec![Tensor::new(&[3], vec![0.3, -4.0, 0.0])];
        let config = AdamWConfig { weight_decay: 0.1, ..AdamWConfig::default() };
        let mut opt = AdamW::new(config, &p);
        opt.step(&mut p, &g, 0.01);
        let expect = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) + 0.01, 0.5 * (1.0 - 0.001)];
        for (a, b) in p[0].data().iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert_eq!(opt.step, 1);
    }
}
