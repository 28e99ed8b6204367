//! Benchmarks: median wall-clock times, reported as one JSON object per line.
//!
//! Every benchmark runs its workload a few times to warm caches and thread pools, then times
//! `reps` runs and reports the **median** (robust to the noise of a shared machine). The
//! `igpt bench …` command prints the records; performance targets live here, never in tests.

use crate::rng::Philox;
use crate::tensor::{gemm, MatRef};
use std::time::Instant;

/// The median of `reps` timed runs of `f` (after `warmup` untimed ones), in milliseconds.
pub fn median_ms(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    if times.len() % 2 == 1 {
        times[mid]
    } else {
        0.5 * (times[mid - 1] + times[mid])
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
