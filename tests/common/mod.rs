//! Test helpers shared by several test files: random tensors, a tiny two-block transformer, a
//! golden file's tensor perturbed on purpose, and a suite verified under its recorded tolerances.
#![allow(dead_code)]

use igpt::autodiff::check::Graph;
use igpt::autodiff::{Tape, Var};
use igpt::golden::{verify_suite, SuiteReport, Tolerance};
use igpt::io::safetensors::SafeTensors;
use igpt::ops::{self, Reference};
use igpt::rng::Philox;
use igpt::{Float, Tensor};
use std::path::Path;

/// A tensor of normals with standard deviation `std`, drawn from Philox stream `stream`.
pub fn normal(shape: &[usize], seed: u64, stream: u64, std: f32) -> Tensor<f64> {
    let mut v = vec![0.0f32; shape.iter().product()];
    Philox::new(seed).fill_normal(stream, 0.0, std, &mut v);
    Tensor::new(shape, v.iter().map(|&x| f64::from(x)).collect())
}

/// A norm gain: 1 + a little noise.
fn gain(d: usize, seed: u64, stream: u64) -> Tensor<f64> {
    let mut g = normal(&[d], seed, stream, 0.2);
    g.data_mut().iter_mut().for_each(|x| *x += 1.0);
    g
}

/// The parameters of a tiny two-block iGPT built from the ops above.
pub struct TinyTransformer {
    ids: Vec<usize>,
    targets: Vec<usize>,
    batch: usize,
    seq: usize,
    n_head: usize,
}

/// Inputs order: wte, wpe, then per block [ln_1, c_attn.w, c_attn.b, attn.c_proj.w,
/// attn.c_proj.b, ln_2, c_fc.w, c_fc.b, mlp.c_proj.w, mlp.c_proj.b], then ln_f, lm_head.
const PER_BLOCK: usize = 10;

impl Graph for TinyTransformer {
    fn build<T: Float>(&self, tape: &mut Tape<T>, p: &[Var]) -> Var {
        let d = tape.shape(p[0])[1];
        let positions: Vec<usize> = (0..self.batch * self.seq).map(|i| i % self.seq).collect();
        let tok = ops::embedding(tape, p[0], &self.ids, None);
        let pos = ops::embedding(tape, p[1], &positions, None);
        let mut h = ops::add(tape, tok, pos);
        for blk in 0..2 {
            let w = &p[2 + blk * PER_BLOCK..2 + (blk + 1) * PER_BLOCK];
            let x = ops::rms_norm(tape, &Reference, h, w[0], 1e-5);
            let qkv = ops::linear(tape, &Reference, x, w[1], Some(w[2]));
            let qkv = ops::reshape(tape, qkv, &[self.batch, self.seq, 3 * d]);
            let a = ops::attention(tape, &Reference, qkv, self.n_head, true);
            let a = ops::reshape(tape, a, &[self.batch * self.seq, d]);
            let a = ops::linear(tape, &Reference, a, w[3], Some(w[4]));
            h = ops::add(tape, h, a);
            let x = ops::rms_norm(tape, &Reference, h, w[5], 1e-5);
            let m = ops::linear(tape, &Reference, x, w[6], Some(w[7]));
            let m = ops::quick_gelu(tape, &Reference, m);
            let m = ops::linear(tape, &Reference, m, w[8], Some(w[9]));
            h = ops::add(tape, h, m);
        }
        let n = p.len();
        let x = ops::rms_norm(tape, &Reference, h, p[n - 2], 1e-5);
        let logits = ops::linear_nt(tape, &Reference, x, p[n - 1]);
        ops::cross_entropy_mean(tape, logits, &self.targets, None)
    }
}

/// A tiny two-block transformer over `vocab` tokens of width `d` and its random parameters.
pub fn tiny_transformer(
    vocab: usize,
    d: usize,
    batch: usize,
    seq: usize,
    n_head: usize,
    seed: u64,
) -> (TinyTransformer, Vec<Tensor<f64>>) {
    let philox = Philox::new(seed);
    let n = (batch * seq) as u64;
    let ids: Vec<usize> = (0..n).map(|i| philox.u32_at(1, i) as usize % vocab).collect();
    let targets: Vec<usize> = (0..n).map(|i| philox.u32_at(2, i) as usize % (vocab - 1)).collect();
    let mut inputs = vec![normal(&[vocab, d], seed, 10, 0.5), normal(&[seq, d], seed, 11, 0.5)];
    for blk in 0..2u64 {
        let s = 20 + 20 * blk;
        inputs.extend([
            gain(d, seed, s),
            normal(&[d, 3 * d], seed, s + 1, 0.4),
            normal(&[3 * d], seed, s + 2, 0.1),
            normal(&[d, d], seed, s + 3, 0.4),
            normal(&[d], seed, s + 4, 0.1),
            gain(d, seed, s + 5),
            normal(&[d, 4 * d], seed, s + 6, 0.4),
            normal(&[4 * d], seed, s + 7, 0.1),
            normal(&[4 * d, d], seed, s + 8, 0.4),
            normal(&[d], seed, s + 9, 0.1),
        ]);
    }
    inputs.extend([gain(d, seed, 90), normal(&[vocab - 1, d], seed, 91, 0.5)]);
    (TinyTransformer { ids, targets, batch, seq, n_head }, inputs)
}

/// A suite's files against `candidates`, each under the tolerance its golden records, as
/// `igpt verify --suite` holds them by default.
pub fn verify_recorded(suite: &Path, candidates: &Path) -> SuiteReport {
    let recorded = |reference: &SafeTensors, origin: &str| {
        Tolerance::from_metadata(reference.get_metadata("tolerances"), origin)
    };
    verify_suite(suite, candidates, &recorded).unwrap()
}

/// Tensor `name` of the safetensors file at `path` scaled by `1 + rel`, in place (a candidate
/// made wrong on purpose).
pub fn perturb(path: &Path, name: &str, rel: f32) {
    let mut st = SafeTensors::read(path).unwrap();
    let (shape, mut v) = st.get_f32(name).unwrap();
    v.iter_mut().for_each(|x| *x *= 1.0 + rel);
    let mut out = SafeTensors::new();
    for (n, view) in &st.tensors {
        if n == name {
            out.push_f32(n, &shape, &v).unwrap();
        } else {
            out.push(n, view.clone()).unwrap();
        }
    }
    st.tensors = out.tensors;
    st.write(path).unwrap();
}
