//! The learning-rate schedule and gradient clipping.
//!
//! **Schedule** (the paper's): linear warm-up from 0, then cosine decay to `min_lr`:
//! ```text
//! lr(s) = peak · (s + 1) / warmup                                  for s < warmup
//! lr(s) = min + ½(peak − min)(1 + cos(π · (s − warmup) / (S − warmup)))   otherwise
//! ```
//! for step `s = 0 … S−1` (the rate used *by* step `s`).
//!
//! **Global-norm clipping**: with `n = sqrt(Σ_params Σ g²)` (accumulated in f64 in the canonical
//! parameter order), every gradient is scaled by `min(1, clip / n)`.

use crate::tensor::Tensor;

/// Warm-up then cosine decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub peak: f64,
    pub min: f64,
    pub warmup: usize,
    pub total: usize,
}

impl Schedule {
    /// The learning rate used by step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        self.min + 0.5 * (self.peak - self.min) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// The global L2 norm of all gradients (f64, canonical order).
pub fn global_norm(grads: &[Tensor<f32>]) -> f64 {
    let mut ss = 0.0f64;
    for g in grads {
        for &x in g.data() {
            ss += f64::from(x) * f64::from(x);
        }
    }
    ss.sqrt()
}

/// Scales all gradients so their global norm is at most `clip`; returns the norm before clipping.
pub fn clip_global_norm(grads: &mut [Tensor<f32>], clip: f64) -> f64 {
    let norm = global_norm(grads);
    if norm > clip {
        let scale = (clip / norm) as f32;
        for g in grads.iter_mut() {
            g.data_mut().iter_mut().for_each(|x| *x *= scale);
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_min() {
        let s = Schedule { peak: 1.0, min: 0.1, warmup: 10, total: 110 };
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.55).abs() < 1e-12);
        assert!((s.lr(110) - 0.1).abs() < 1e-12);
        assert!((1..110).all(|i| i < 10 || s.lr(i) <= s.lr(i - 1)));
    }

    #[test]
    fn clipping_scales_to_the_bound() {
        let mut g = vec![Tensor::new(&[2], vec![3.0, 0.0]), Tensor::new(&[1], vec![4.0])];
        assert_eq!(clip_global_norm(&mut g, 1.0), 5.0);
        assert!((global_norm(&g) - 1.0).abs() < 1e-6);
        assert_eq!(clip_global_norm(&mut g, 10.0) as f32, global_norm(&g) as f32);
    }
}
