//! Benchmarks: median wall-clock times, reported as one JSON object per line.
//!
//! Every benchmark runs its workload a few times to warm caches and thread pools, then times
//! `reps` runs and reports the **median** (robust to the noise of a shared machine). The
//! `igpt bench …` command prints the records; performance targets live here, never in tests.

use crate::error::Result;
use crate::model::{Config, DropoutRng, Model, Objective, Precision, TokenBatch};
use crate::ops::AttentionDims;
use crate::palette::{fit_kmeans, KMeansOptions, KMeansResult};
use crate::rng::Philox;
use crate::sample::{complete, SamplingSettings};
use crate::tensor::{gemm, MatRef};
use crate::token::Token;
use crate::train::{train_step, AdamW, AdamWConfig, StepOptions};
use std::time::Instant;

/// The median of `reps` timed runs of `f` (after `warmup` untimed ones), in milliseconds.
pub fn median_ms(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(times)
}

/// The median of `values` (the mean of the middle two for an even count); the one median of
/// every benchmark.
///
/// # Panics
/// If `values` is empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        0.5 * (values[mid - 1] + values[mid])
    }
}

/// One sgemm measurement: `C[m, n] = A[m, k] · B[k, n]` in f32.
#[derive(Clone, Debug)]
pub struct SgemmBench {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub median_ms: f64,
    pub gflops: f64,
}

impl SgemmBench {
    /// `{"bench":"sgemm","m":…,"n":…,"k":…,"median_ms":…,"gflops":…}`
    pub fn json(&self) -> String {
        format!(
            "{{\"bench\":\"sgemm\",\"m\":{},\"n\":{},\"k\":{},\"median_ms\":{:.3},\"gflops\":{:.2}}}",
            self.m, self.n, self.k, self.median_ms, self.gflops
        )
    }
}

/// Times [`gemm`] on random `m×k` and `k×n` matrices (2·m·n·k flops per run).
pub fn bench_sgemm(m: usize, n: usize, k: usize, reps: usize) -> SgemmBench {
    let philox = Philox::new(0);
    let mut a = vec![0.0f32; m * k];
    let mut b = vec![0.0f32; k * n];
    philox.fill_normal(1, 0.0, 1.0, &mut a);
    philox.fill_normal(2, 0.0, 1.0, &mut b);
    let mut c = vec![0.0f32; m * n];
    let ms = median_ms(2, reps, || {
        gemm(1.0, MatRef::new(&a, m, k), MatRef::new(&b, k, n), 0.0, &mut c);
    });
    let gflops = 2.0 * (m * n * k) as f64 / (ms * 1e-3) / 1e9;
    SgemmBench { m, n, k, median_ms: ms, gflops }
}

// ---------------------------------------------------------------------------------------------
// Attention (`igpt bench attention`): [`bench_attention`] draws `qkv` and `∂o` from N(0, 1)
// (Philox), runs one warm-up forward and backward, then times `reps` forward passes and `reps`
// forward+backward passes of the fused kernels of a precision (`Kernels::attention_forward` and
// `attention_backward`, as the tape calls them). The times include allocating the outputs, as a
// training step would.

/// One line of the attention benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionBench {
    /// The shape and mask measured, and the arithmetic of the products (`--precision`).
    pub dims: AttentionDims,
    pub causal: bool,
    pub precision: Precision,
    /// `"fwd"` or `"fwd+bwd"`.
    pub pass: &'static str,
    /// Median wall time of one pass, in milliseconds.
    pub median_ms: f64,
}

impl AttentionBench {
    /// The JSON line `igpt bench attention` prints.
    pub fn json(&self) -> String {
        let d = self.dims;
        format!(
            "{{\"bench\":\"attention\",\"pass\":\"{}\",\"B\":{},\"H\":{},\"T\":{},\"D\":{},\"causal\":{},\"precision\":\"{}\",\"kernels\":\"{}\",\"median_ms\":{:.3}}}",
            self.pass,
            d.batch,
            d.n_head,
            d.seq,
            d.head_dim,
            self.causal,
            self.precision.name(),
            self.precision.kernels().name(),
            self.median_ms
        )
    }
}

/// Median times of the fused forward and forward+backward at `dims` in `precision` (at least
/// one rep each).
pub fn bench_attention(
    dims: AttentionDims,
    causal: bool,
    precision: Precision,
    reps: usize,
) -> Vec<AttentionBench> {
    let philox = Philox::new(0);
    let mut qkv = vec![0.0f32; dims.batch * dims.seq * 3 * dims.d()];
    let mut dout = vec![0.0f32; dims.batch * dims.seq * dims.d()];
    philox.fill_normal(1, 0.0, 1.0, &mut qkv);
    philox.fill_normal(2, 0.0, 1.0, &mut dout);
    let kernels = precision.kernels();
    let forward = || kernels.attention_forward(&qkv, dims, causal);
    let forward_backward = || {
        let f = forward();
        let mut dqkv = vec![0.0f32; qkv.len()];
        kernels.attention_backward(&qkv, &f.out, &f.saved, &dout, dims, causal, &mut dqkv, false);
        dqkv
    };
    forward_backward();
    let line = |pass, median_ms| AttentionBench { dims, causal, precision, pass, median_ms };
    vec![
        line("fwd", median_ms(0, reps, || drop(forward()))),
        line("fwd+bwd", median_ms(0, reps, || drop(forward_backward()))),
    ]
}

// ---------------------------------------------------------------------------------------------
// k-means (`igpt bench kmeans`): whole palette fits on the same points.

/// Timings of repeated fits on the same points.
#[derive(Clone, Debug)]
pub struct KMeansBench {
    pub n: usize,
    pub k: usize,
    pub threads: usize,
    pub reps: usize,
    /// Median wall-clock seconds of a whole fit, of the k-means++ part and of the Lloyd part.
    pub seconds: f64,
    pub init_seconds: f64,
    pub lloyd_seconds: f64,
    /// Inertia and iterations of the first run (all runs are identical by determinism).
    pub inertia: f64,
    pub iterations: usize,
}

/// Fits `reps` times (≥ 1) and reports median timings, for the `bench kmeans` JSON line.
pub fn bench_kmeans(
    points: &[f32],
    c: usize,
    k: usize,
    reps: usize,
    opts: &KMeansOptions,
) -> Result<KMeansBench> {
    let n = points.len() / c.max(1);
    let mut runs = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let r = fit_kmeans(points, n, c, k, opts)?;
        runs.push((t.elapsed().as_secs_f64(), r));
    }
    let median_of = |f: &dyn Fn(&(f64, KMeansResult)) -> f64| median(runs.iter().map(f).collect());
    Ok(KMeansBench {
        n,
        k,
        threads: rayon::current_num_threads(),
        reps: runs.len(),
        seconds: median_of(&|r| r.0),
        init_seconds: median_of(&|r| r.1.init_seconds),
        lloyd_seconds: median_of(&|r| r.1.lloyd_seconds),
        inertia: runs[0].1.inertia,
        iterations: runs[0].1.iterations,
    })
}

/// One training-step measurement: `train::train_step` (forward, backward, clipping, AdamW) on
/// random tokens — the step `igpt train` runs.
#[derive(Clone, Debug)]
pub struct TrainBench {
    pub config: String,
    pub batch: usize,
    pub seq: usize,
    /// `resid_pdrop` (= `embd_pdrop`) of the timed model.
    pub dropout: f32,
    pub precision: Precision,
    pub median_ms: f64,
    pub tokens_per_s: f64,
    /// Model FLOPs per second: `(6·N + 12·L·T·d)` per token, `N` the non-embedding parameters.
    pub gflops: f64,
}

impl TrainBench {
    /// `{"bench":"train","config":…,"batch":…,"seq":…,"dropout":…,"precision":…,"kernels":…,"tokens_per_s":…,"ms_per_step":…,"gflops":…}`
    pub fn json(&self) -> String {
        format!(
            "{{\"bench\":\"train\",\"config\":\"{}\",\"batch\":{},\"seq\":{},\"dropout\":{},\"precision\":\"{}\",\"kernels\":\"{}\",\"tokens_per_s\":{:.1},\"ms_per_step\":{:.2},\"gflops\":{:.2}}}",
            self.config,
            self.batch,
            self.seq,
            self.dropout,
            self.precision.name(),
            self.precision.kernels().name(),
            self.tokens_per_s,
            self.median_ms,
            self.gflops
        )
    }
}

/// FLOPs of one training token: `6·N` for the matrix products of the non-embedding parameters
/// `N` (forward 2, backward 4) plus `12·L·T·d` for attention's two `T×T` products.
pub fn train_flops_per_token(config: &Config, seq: usize) -> f64 {
    let d = config.n_embd as f64;
    let embeddings = ((config.vocab_size + config.n_positions) * config.n_embd) as f64;
    let n = config.n_params(true) as f64 - embeddings;
    6.0 * n + 12.0 * config.n_layer as f64 * seq as f64 * d
}

/// Times full training steps of a freshly initialised `config` model on random colour tokens.
pub fn bench_train(
    name: &str,
    config: Config,
    (batch, seq): (usize, usize),
    precision: Precision,
    reps: usize,
) -> Result<TrainBench> {
    let mut model = Model::init(config, 0)?;
    model.precision = precision;
    let colours = model.config.sos();
    let philox = Philox::new(1);
    let ids: Vec<Token> =
        (0..(batch * seq) as u64).map(|i| philox.u32_at(0, i) % colours).collect();
    let tokens = TokenBatch::new(ids, batch, seq, &model.config, "random tokens")?;
    let mut opt = AdamW::new(AdamWConfig::default(), &model.params);
    // The trainer's step with its default clipping and the config's dropout (0 in the presets).
    let dropout = Some(DropoutRng { philox: Philox::new(0), step: 0 });
    let options = StepOptions { accumulation: 1, clip: Some(1.0), dropout };
    let objective = Objective::Autoregressive;
    let mut failure = None;
    let ms = median_ms(1, reps, || {
        if let Err(e) = train_step(&mut model, &mut opt, &tokens, &objective, 1e-4, &options) {
            failure = Some(e);
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let tokens_per_s = (batch * seq) as f64 / (ms * 1e-3);
    let gflops = tokens_per_s * train_flops_per_token(&model.config, seq) / 1e9;
    let dropout = model.config.resid_pdrop;
    let config = name.into();
    Ok(TrainBench { config, batch, seq, dropout, precision, median_ms: ms, tokens_per_s, gflops })
}

/// One sampling measurement: tokens per second of cached autoregressive sampling.
#[derive(Clone, Debug)]
pub struct SampleBench {
    pub config: String,
    pub batch: usize,
    pub tokens: usize,
    pub precision: Precision,
    pub tokens_per_s: f64,
}

impl SampleBench {
    /// `{"bench":"sample","config":…,"batch":…,"tokens":…,"precision":…,"kernels":…,"tokens_per_s":…}`
    /// (tokens per second summed over the batch).
    pub fn json(&self) -> String {
        format!(
            "{{\"bench\":\"sample\",\"config\":\"{}\",\"batch\":{},\"tokens\":{},\"precision\":\"{}\",\"kernels\":\"{}\",\"tokens_per_s\":{:.1}}}",
            self.config,
            self.batch,
            self.tokens,
            self.precision.name(),
            self.precision.kernels().name(),
            self.tokens_per_s
        )
    }
}

/// Times sampling `tokens` tokens for `batch` sequences from a randomly initialised `config`
/// model (speed does not depend on the weights): one warm-up run of 8 tokens, then the median
/// of `reps` runs. Each run includes the decoder's set-up (packing the weights, the caches).
pub fn bench_sample(
    name: &str,
    config: Config,
    (batch, tokens): (usize, usize),
    precision: Precision,
    reps: usize,
) -> Result<SampleBench> {
    let mut model = Model::init(config, 0)?;
    model.precision = precision;
    let settings = SamplingSettings::default();
    let prompts = vec![Vec::new(); batch];
    complete(&model, &prompts, tokens.min(8), &settings, 0)?;
    let mut outcome = Ok(());
    let ms = median_ms(0, reps, || {
        if outcome.is_ok() {
            outcome = complete(&model, &prompts, tokens, &settings, 0).map(drop);
        }
    });
    outcome?;
    let tokens_per_s = (batch * tokens) as f64 / (ms * 1e-3);
    Ok(SampleBench { config: name.into(), batch, tokens, precision, tokens_per_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let mut calls = 0;
        let ms = median_ms(1, 3, || calls += 1);
        assert_eq!(calls, 4);
        assert!(ms >= 0.0);
    }

    #[test]
    fn sgemm_record_is_one_json_line() {
        let r = bench_sgemm(8, 8, 8, 1);
        let line = r.json();
        assert!(line.starts_with("{\"bench\":\"sgemm\",\"m\":8,") && !line.contains('\n'));
    }
}
