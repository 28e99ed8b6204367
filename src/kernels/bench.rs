//! Timing of the fused attention kernels, for `igpt bench attention`.
//!
//! [`bench_attention`] draws `qkv` and `∂o` from N(0, 1) (Philox), runs one warm-up forward and
//! backward, then times `reps` forward passes and `reps` forward+backward passes and reports
//! the median wall time of each. The times include allocating the outputs, as a training step
//! would.

use super::attention::{flash_attention_backward, flash_attention_forward};
use crate::bench::median_ms;
use crate::ops::AttentionDims;
use crate::rng::Philox;

/// One line of the attention benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionBench {
    /// `"fwd"` or `"fwd+bwd"`.
    pub pass: &'static str,
    /// Median wall time of one pass, in milliseconds.
    pub median_ms: f64,
}

/// Median times of the fused forward and forward+backward at `dims` (at least one rep each).
pub fn bench_attention(dims: AttentionDims, causal: bool, reps: usize) -> Vec<AttentionBench> {
    let philox = Philox::new(0);
    let mut qkv = vec![0.0f32; dims.batch * dims.seq * 3 * dims.d()];
    let mut dout = vec![0.0f32; dims.batch * dims.seq * dims.d()];
    philox.fill_normal(1, 0.0, 1.0, &mut qkv);
    philox.fill_normal(2, 0.0, 1.0, &mut dout);
    let forward = || flash_attention_forward(&qkv, dims, causal);
    let forward_backward = || {
        let f = forward();
        let mut dqkv = vec![0.0f32; qkv.len()];
        flash_attention_backward(&qkv, &f.out, &f.lse, &dout, dims, causal, &mut dqkv, false);
        dqkv
    };
    forward_backward();
    vec![
        AttentionBench { pass: "fwd", median_ms: median_ms(0, reps, || drop(forward())) },
        AttentionBench {
            pass: "fwd+bwd",
            median_ms: median_ms(0, reps, || drop(forward_backward())),
        },
    ]
}
