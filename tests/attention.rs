//! The fused attention kernels against the materialised reference, a finite-difference check of
//! the fused op itself, the KV-cache decode kernel, thread-count bit identity and long sequences.
//!
//! Tolerances (relative norm `‖a − b‖/‖b‖`, reference evaluated in f64 on the same f32 inputs):
//! forward ≤ 1e-5, gradients ≤ 1e-4, decode ≤ 1e-6 (its plain f32 default, `Reference`, ≤ 1e-5).

use igpt::autodiff::check::rel_norm_diff;
use igpt::autodiff::Tape;
use igpt::bench::bench_attention;
use igpt::kernels::attention::{
    backward_workspace_floats, flash_attention_backward, flash_attention_forward,
    forward_workspace_floats,
};
use igpt::kernels::bf16::round_bf16;
use igpt::kernels::Operands::F32;
use igpt::kernels::{KvCache, Precision, Simd};
use igpt::ops::attention::{attention_reference_backward, attention_reference_forward};
use igpt::ops::{self, AttentionDims, Kernels, Reference};
use igpt::rng::Philox;
use igpt::Tensor;
use proptest::prelude::*;

fn normal(n: usize, seed: u64, stream: u64, std: f32) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    Philox::new(seed).fill_normal(stream, 0.0, std, &mut v);
    v
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

/// Random `qkv` and `∂o` for `dims`; `std` sets the logit scale (std² · sqrt(hd) per logit).
fn inputs(dims: AttentionDims, seed: u64, std: f32) -> (Vec<f32>, Vec<f32>) {
    let qkv = normal(dims.batch * dims.seq * 3 * dims.d(), seed, 1, std);
    let dout = normal(dims.batch * dims.seq * dims.d(), seed, 2, 1.0);
    (qkv, dout)
}

/// `∂qkv` from the fused backward (written into a fresh buffer).
fn fused_backward(
    qkv: &[f32],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    dims: AttentionDims,
    causal: bool,
) -> Vec<f32> {
    let mut dqkv = vec![f32::NAN; qkv.len()];
    flash_attention_backward(qkv, out, lse, dout, dims, causal, F32, &mut dqkv, false);
    dqkv
}

/// Fused forward and backward vs the f64 reference: (output error, gradient error).
fn fused_vs_reference(dims: AttentionDims, causal: bool, seed: u64) -> (f64, f64) {
    let (qkv, dout) = inputs(dims, seed, 1.0);
    let fwd = flash_attention_forward(&qkv, dims, causal);
    let dqkv = fused_backward(&qkv, &fwd.out, &fwd.lse, &dout, dims, causal);
    let qkv64 = to_f64(&qkv);
    let (out64, probs) = attention_reference_forward(&qkv64, dims, causal);
    let dqkv64 = attention_reference_backward(&qkv64, &probs, &to_f64(&dout), dims);
    (rel_norm_diff(&to_f64(&fwd.out), &out64), rel_norm_diff(&to_f64(&dqkv), &dqkv64))
}

fn assert_fused_matches(dims: AttentionDims, causal: bool, seed: u64) {
    let (e_out, e_grad) = fused_vs_reference(dims, causal, seed);
    assert!(e_out <= 1e-5, "{dims:?} causal {causal}: output error {e_out:e}");
    assert!(e_grad <= 1e-4, "{dims:?} causal {causal}: gradient error {e_grad:e}");
}

fn dims(batch: usize, seq: usize, n_head: usize, head_dim: usize) -> AttentionDims {
    AttentionDims { batch, seq, n_head, head_dim }
}

/// Sequence lengths around the 64-row tiles: 1, primes, exact and off-by-one multiples.
fn seq_len() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![1usize, 2, 3, 7, 13, 31, 63, 64, 65, 97, 127, 128, 131, 200])
}

/// The head dims the model uses, plus awkward ones that exercise zero padding.
fn head_dim() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![8usize, 16, 32, 64, 96, 128, 1, 5, 12, 20])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn fused_matches_reference(
        b in 1usize..3, t in seq_len(), h in 1usize..4, hd in head_dim(), causal: bool, seed: u64,
    ) {
        assert_fused_matches(dims(b, t, h, hd), causal, seed);
    }
}

#[test]
fn fused_matches_reference_at_long_lengths() {
    for (t, hd, causal) in [(1023, 64, true), (1025, 32, false), (1025, 128, true)] {
        assert_fused_matches(dims(1, t, 2, hd), causal, t as u64);
    }
}

#[test]
fn fused_matches_reference_with_peaked_softmax() {
    // Logits of std ≈ 9·sqrt(hd)/sqrt(hd)... large enough that most rows are nearly one-hot,
    // which stresses the running-maximum rescaling of the online softmax.
    for causal in [false, true] {
        let d = dims(2, 150, 2, 32);
        let (qkv, dout) = inputs(d, 5, 3.0);
        let fwd = flash_attention_forward(&qkv, d, causal);
        let dqkv = fused_backward(&qkv, &fwd.out, &fwd.lse, &dout, d, causal);
        let qkv64 = to_f64(&qkv);
        let (out64, probs) = attention_reference_forward(&qkv64, d, causal);
        let dqkv64 = attention_reference_backward(&qkv64, &probs, &to_f64(&dout), d);
        assert!(rel_norm_diff(&to_f64(&fwd.out), &out64) <= 1e-5);
        assert!(rel_norm_diff(&to_f64(&dqkv), &dqkv64) <= 1e-4);
    }
}

/// `Σ ḡ ∘ attention(qkv)` evaluated in f64 from the fused f32 output.
fn phi(qkv: &[f32], gbar: &[f32], d: AttentionDims, causal: bool) -> f64 {
    let out = flash_attention_forward(qkv, d, causal).out;
    out.iter().zip(gbar).map(|(&o, &g)| f64::from(o) * f64::from(g)).sum()
}

/// Finite differences of the fused op itself, on the tape (`ops::attention` on a `Tape<f32>`).
///
/// The kernel exists only in f32, so the differences are taken around it: inputs are multiples
/// of 2⁻¹² and the step is h = 2⁻⁶, so every `x ± h`, `x ± 2h` is exact in f32 and the
/// 4th-order stencil `(−φ(x+2h) + 8φ(x+h) − 8φ(x−h) + φ(x−2h)) / 12h` has truncation error
/// ~h⁴ ≈ 6e-8. What limits it is f32 rounding of φ (≈1e-7 relative) amplified by 1/h: about
/// 1e-5 of the gradient's scale. Hence the tolerance: max element error ≤ 2e-3 of the
/// gradient's largest entry, and relative norm ≤ 5e-4 — far below a wrong factor or a
/// missing term (errors of order 1), above the noise (measured ≈ 1e-5 … 1e-4).
#[test]
fn fused_op_matches_finite_differences() {
    let h = 1.0f32 / 64.0;
    for (d, causal) in
        [(dims(2, 5, 2, 3), true), (dims(1, 70, 2, 8), false), (dims(1, 70, 1, 8), true)]
    {
        let n = d.batch * d.seq * 3 * d.d();
        let qkv: Vec<f32> =
            normal(n, 3, 1, 1.0).iter().map(|x| (x * 4096.0).round() / 4096.0).collect();
        let gbar = normal(d.batch * d.seq * d.d(), 3, 2, 1.0);
        let mut tape = Tape::<f32>::new();
        let x = tape.param(Tensor::new(&[d.batch, d.seq, 3 * d.d()], qkv.clone()));
        let y = ops::attention(&mut tape, &Simd, x, d.n_head, causal);
        let grads = tape.backward_with(y, Tensor::new(tape.shape(y), gbar.clone()));
        let analytic = to_f64(grads.get(x).expect("gradient").data());
        // Every element for the small case, a spread subset of the 70-row ones.
        let step = if n < 200 { 1 } else { 7 };
        let mut num = Vec::new();
        let mut ana = Vec::new();
        for j in (0..n).step_by(step) {
            let at = |dx: f32| {
                let mut p = qkv.clone();
                p[j] += dx;
                phi(&p, &gbar, d, causal)
            };
            let fd =
                (-at(2.0 * h) + 8.0 * at(h) - 8.0 * at(-h) + at(-2.0 * h)) / (12.0 * f64::from(h));
            num.push(fd);
            ana.push(analytic[j]);
        }
        let scale = num.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let max_err = ana.iter().zip(&num).map(|(a, n)| (a - n).abs()).fold(0.0, f64::max) / scale;
        let norm_err = rel_norm_diff(&ana, &num);
        assert!(
            max_err <= 2e-3 && norm_err <= 5e-4,
            "{d:?} causal {causal}: max {max_err:e}, norm {norm_err:e}"
        );
    }
}

#[test]
fn the_tape_op_runs_the_kernels_it_is_given() {
    let d = dims(2, 9, 2, 8);
    let (qkv, _) = inputs(d, 7, 1.0);
    let shape = [d.batch, d.seq, 3 * d.d()];
    let mut t32 = Tape::<f32>::new();
    let x32 = t32.constant(Tensor::new(&shape, qkv.clone()));
    let y32 = ops::attention(&mut t32, &Simd, x32, d.n_head, true);
    let r32 = ops::attention(&mut t32, &Reference, x32, d.n_head, true);
    let mut t64 = Tape::<f64>::new();
    let x64 = t64.constant(Tensor::new(&shape, to_f64(&qkv)));
    let y64 = ops::attention(&mut t64, &Reference, x64, d.n_head, true);
    let fused = flash_attention_forward(&qkv, d, true).out;
    assert_eq!(t32.value(y32).data(), &fused[..]);
    assert_eq!(t32.value(r32).data(), &attention_reference_forward(&qkv, d, true).0[..]);
    let (reference, _) = attention_reference_forward(&to_f64(&qkv), d, true);
    assert_eq!(t64.value(y64).data(), &reference[..]);
}

/// Decoding position by position equals each row of full causal attention (f64 reference),
/// including long sequences and peaked softmaxes (input std 2: logits of std ≈ 4); so does the
/// trait's plain default, `Reference`, reading the same cache.
#[test]
fn decode_matches_rows_of_causal_attention() {
    let short = [(1, 1, 1, 8, 1.0), (3, 37, 2, 16, 1.0), (2, 70, 3, 12, 2.0), (1, 20, 1, 5, 1.0)];
    let long = [(2, 130, 2, 64, 2.0), (1, 1025, 2, 64, 1.0), (1, 1023, 1, 128, 2.0)];
    for (b, t, h, hd, std) in short.into_iter().chain(long) {
        let d = dims(b, t, h, hd);
        let (qkv, _) = inputs(d, t as u64, std);
        let (reference, _) = attention_reference_forward(&to_f64(&qkv), d, true);
        let width = d.d();
        let mut cache = KvCache::new(b, h, hd, t).expect("cache");
        let mut row = vec![0.0f32; b * 3 * width];
        let mut out = vec![0.0f32; b * width];
        let mut plain = vec![0.0f32; b * width];
        for pos in 0..t {
            for s in 0..b {
                row[s * 3 * width..][..3 * width]
                    .copy_from_slice(&qkv[(s * t + pos) * 3 * width..][..3 * width]);
            }
            cache.decode_step(&Simd, &row, &mut out).expect("decode");
            let want: Vec<f64> =
                (0..b).flat_map(|s| reference[(s * t + pos) * width..][..width].to_vec()).collect();
            let err = rel_norm_diff(&to_f64(&out), &want);
            assert!(err <= 1e-6, "{d:?} position {pos}: error {err:e}");
            if pos % 64 == 0 || pos == t - 1 {
                // The trait's default on the same cache: plain f32 sums, as accurate as the
                // materialised f32 reference (SPEC §18.8), so held to the fused forward's bound.
                cache.attend(&Reference, &row, &mut plain).expect("reference");
                let err = rel_norm_diff(&to_f64(&plain), &want);
                assert!(err <= 1e-5, "{d:?} position {pos}: reference error {err:e}");
            }
        }
        assert!(cache.append(&row).is_err(), "a full cache must refuse another position");
    }
}

/// A bf16 cache stores what it is given rounded to bf16, in half the bytes: decoding from it
/// gives the same bits as decoding from an f32 cache given the rounded rows, with the fast
/// kernel and with the trait's plain default (uneven head sizes included).
#[test]
fn a_bf16_cache_decodes_the_bits_of_an_f32_cache_of_rounded_values() {
    for (b, t, h, hd) in [(2, 45, 3, 12), (1, 130, 2, 64), (3, 9, 1, 5)] {
        let d = dims(b, t, h, hd);
        let (qkv, _) = inputs(d, 40 + t as u64, 2.0);
        let rounded: Vec<f32> = qkv.iter().map(|&x| round_bf16(x)).collect();
        let w = 3 * d.d();
        let mut half = KvCache::with_precision(b, h, hd, t, Precision::Bf16).expect("cache");
        let mut full = KvCache::new(b, h, hd, t).expect("cache");
        let (mut o_half, mut o_full) = (vec![0.0; b * d.d()], vec![0.0; b * d.d()]);
        for pos in 0..t {
            let row = |x: &[f32]| -> Vec<f32> {
                (0..b).flat_map(|s| x[(s * t + pos) * w..][..w].to_vec()).collect()
            };
            let (q_row, r_row) = (row(&rounded), row(&qkv));
            // The bf16 cache rounds the raw row itself; the query is rounded by the caller.
            half.append(&r_row).expect("append");
            full.append(&q_row).expect("append");
            for kernels in [&Simd as &dyn Kernels<f32>, &Reference] {
                half.attend(kernels, &q_row, &mut o_half).expect("attend");
                full.attend(kernels, &q_row, &mut o_full).expect("attend");
                assert_eq!(bits(&o_half), bits(&o_full), "{d:?} position {pos}");
            }
        }
    }
}

#[test]
fn decode_rejects_bad_sizes() {
    assert!(KvCache::new(0, 1, 8, 4).is_err());
    let mut cache = KvCache::new(2, 2, 4, 3).expect("cache");
    let mut out = vec![0.0; 16];
    assert!(cache.attend(&Simd, &[0.0; 48], &mut out).is_err(), "empty cache");
    assert!(cache.append(&[0.0; 47]).is_err());
    assert!(cache.append_rows(&[0.0; 48 * 4], 4).is_err(), "past capacity");
    cache.append_rows(&[0.0; 48 * 2], 2).expect("prompt");
    assert_eq!(cache.len(), 2);
    assert!(cache.attend(&Simd, &[0.0; 48], &mut out[..15]).is_err());
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool").install(f)
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn bit_identical_for_one_and_two_threads() {
    for causal in [true, false] {
        let d = dims(2, 300, 3, 32);
        let (qkv, dout) = inputs(d, 11, 1.0);
        let run = || {
            let f = flash_attention_forward(&qkv, d, causal);
            let g = fused_backward(&qkv, &f.out, &f.lse, &dout, d, causal);
            (bits(&f.out), bits(&f.lse), bits(&g))
        };
        assert_eq!(in_pool(1, run), in_pool(2, run), "causal {causal}");
    }
    let d = dims(4, 200, 4, 64);
    let (qkv, _) = inputs(d, 12, 1.0);
    let decode = || {
        let mut cache = KvCache::new(4, 4, 64, 200).expect("cache");
        let w = 3 * d.d();
        let rows: Vec<f32> =
            (0..4).flat_map(|s| qkv[(s * 200 + 199) * w..][..w].to_vec()).collect();
        let prompt: Vec<f32> =
            (0..4).flat_map(|s| qkv[s * 200 * w..][..199 * w].to_vec()).collect();
        cache.append_rows(&prompt, 199).expect("prompt");
        let mut out = vec![0.0; 4 * d.d()];
        cache.decode_step(&Simd, &rows, &mut out).expect("decode");
        bits(&out)
    };
    assert_eq!(in_pool(1, decode), in_pool(2, decode));
}

/// T = 4096 runs in linear memory: the workspace formula is linear in T (and far below one
/// T×T matrix), and sampled rows agree with the O(T) decode kernel.
#[test]
fn long_sequence_forward_in_linear_memory() {
    let d = dims(1, 4096, 1, 64);
    let t2 = d.seq * d.seq;
    for ws in [forward_workspace_floats(d), backward_workspace_floats(d)] {
        assert!(ws < t2 / 4, "workspace {ws} floats vs T² = {t2}");
    }
    let doubled = dims(1, 8192, 1, 64);
    assert!(forward_workspace_floats(doubled) <= 2 * forward_workspace_floats(d) + 64 * 64 * 4);
    assert!(backward_workspace_floats(doubled) <= 2 * backward_workspace_floats(d) + 64 * 64 * 4);

    let (qkv, _) = inputs(d, 13, 1.0);
    let out = flash_attention_forward(&qkv, d, true).out;
    let mut cache = KvCache::new(1, 1, 64, d.seq).expect("cache");
    let w = 3 * d.d();
    let mut o = vec![0.0; d.d()];
    for pos in 0..d.seq {
        cache.decode_step(&Simd, &qkv[pos * w..][..w], &mut o).expect("decode");
        if pos % 1000 == 0 || pos == d.seq - 1 {
            let err = rel_norm_diff(&to_f64(&out[pos * d.d()..][..d.d()]), &to_f64(&o));
            assert!(err <= 1e-5, "row {pos}: {err:e}");
        }
    }
}

#[test]
fn backward_accumulates_when_asked() {
    let d = dims(2, 70, 2, 16);
    let (qkv, dout) = inputs(d, 21, 1.0);
    let f = flash_attention_forward(&qkv, d, true);
    let fresh = fused_backward(&qkv, &f.out, &f.lse, &dout, d, true);
    let mut acc = vec![1.0f32; qkv.len()];
    flash_attention_backward(&qkv, &f.out, &f.lse, &dout, d, true, F32, &mut acc, true);
    for (a, g) in acc.iter().zip(&fresh) {
        assert_eq!(*a, 1.0 + g);
    }
}

#[test]
fn empty_shapes_and_nan_inputs() {
    for d in [dims(0, 5, 2, 8), dims(2, 0, 2, 8)] {
        let f = flash_attention_forward(&[], d, true);
        assert!(f.out.is_empty() && f.lse.is_empty());
        let mut g: Vec<f32> = Vec::new();
        flash_attention_backward(&[], &[], &[], &[], d, true, F32, &mut g, false);
    }
    // A NaN input must show up in the output, not vanish.
    let d = dims(1, 10, 1, 8);
    let (mut qkv, _) = inputs(d, 22, 1.0);
    qkv[3 * d.d() * 4 + d.d()] = f32::NAN; // a key component at position 4
    let out = flash_attention_forward(&qkv, d, false).out;
    assert!(out.iter().all(|x| x.is_nan()), "every query sees key 4");
    let causal = flash_attention_forward(&qkv, d, true).out;
    assert!(causal[..4 * d.d()].iter().all(|x| x.is_finite()), "rows 0..4 do not see key 4");
    assert!(causal[4 * d.d()..].iter().all(|x| x.is_nan()));
}

/// Timings, not a check: `cargo test --release --test attention bench -- --ignored --nocapture`
/// prints the lines `igpt bench attention` will print, for the two shapes.
#[test]
#[ignore]
fn bench_attention_shapes() {
    for (b, h, t, hd) in [(1, 8, 1024, 64), (4, 8, 1024, 32)] {
        for r in bench_attention(dims(b, t, h, hd), true, Precision::F32, 21) {
            println!("{}", r.json());
        }
    }
}
