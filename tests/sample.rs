//! Sampling: cached decoding equals the full forward pass, sampled frequencies follow the
//! distribution, greedy limits, reproducibility across threads, and kept prompt tokens.

use igpt::model::decode::Decoder;
use igpt::model::{Config, Model, Precision, TokenBatch};
use igpt::rng::Philox;
use igpt::sample::{choose_token, complete, SamplingSettings};
use igpt::{Tensor, Token};

/// A small random model (every parameter random so logits are far from uniform).
fn model() -> Model {
    model_of_width(48, 3)
}

/// As [`model`], `n_embd` wide with `n_head` heads.
fn model_of_width(n_embd: usize, n_head: usize) -> Model {
    let mut c = Config::preset("digits").unwrap();
    (c.n_embd, c.n_layer, c.n_head, c.n_positions) = (n_embd, 2, n_head, 40);
    let mut m = Model::init(c, 4).unwrap();
    for (i, p) in m.params.iter_mut().enumerate() {
        let mut v = vec![0.0; p.len()];
        Philox::new(8).fill_normal(i as u64, 0.0, 0.3, &mut v);
        if m.specs[i].name.contains("ln_") {
            v.iter_mut().for_each(|x| *x += 1.0);
        }
        *p = Tensor::new(p.shape(), v);
    }
    m
}

#[test]
fn cached_logits_equal_the_full_forward_at_every_position() {
    // Batches of 1, 3 and 6 rows take each of the decoder's projection paths; width 20 (head
    // dim 5, c_attn 60 columns) pads both the value rows of the cache and the weight panels.
    for (n_embd, n_head, b) in [(48, 3, 3), (20, 4, 1), (20, 4, 6)] {
        cached_logits_match(&model_of_width(n_embd, n_head), b);
    }
}

#[test]
fn bf16_cached_logits_stay_within_bf16_rounding_of_the_bf16_forward() {
    // SPEC §21.2: decoding rounds the same operands as the forward except the attention
    // probabilities, so the two agree to bf16 rounding, not to f32's 1e-5.
    let mut m = model_of_width(48, 3);
    m.precision = Precision::Bf16;
    let (b, t) = (2, 40);
    let ids: Vec<Token> =
        (0..b * t).map(|i| if i % t == 0 { 17 } else { (i * 5 % 17) as Token }).collect();
    let batch = TokenBatch::new(ids.clone(), b, t, &m.config, "t").unwrap();
    let full = m.forward(&batch, false).logits.unwrap();
    let v = full.cols();
    let mut dec = Decoder::new(&m, b).unwrap();
    let (mut err, mut norm) = (0f64, 0f64);
    for pos in 0..t {
        let step: Vec<Token> = (0..b).map(|s| ids[s * t + pos]).collect();
        let logits = dec.step(&step).unwrap();
        for s in 0..b {
            let want = &full.data()[(s * t + pos) * v..(s * t + pos + 1) * v];
            for (g, w) in logits.data()[s * v..(s + 1) * v].iter().zip(want) {
                (err, norm) = (err + f64::from(g - w).powi(2), norm + f64::from(*w).powi(2));
            }
        }
    }
    let relative = (err / norm).sqrt();
    assert!(relative > 0.0 && relative < 4.0 / 256.0, "relative error {relative}");
}

fn cached_logits_match(m: &Model, b: usize) {
    let t = 40;
    let ids: Vec<Token> =
        (0..b * t).map(|i| if i % t == 0 { 17 } else { (i * 7 % 17) as Token }).collect();
    let batch = TokenBatch::new(ids.clone(), b, t, &m.config, "t").unwrap();
    let full = m.forward(&batch, false).logits.unwrap();
    let v = full.cols();
    let mut dec = Decoder::new(m, b).unwrap();
    for pos in 0..t {
        let step: Vec<Token> = (0..b).map(|s| ids[s * t + pos]).collect();
        let logits = dec.step(&step).unwrap();
        for s in 0..b {
            let want = &full.data()[(s * t + pos) * v..(s * t + pos + 1) * v];
            let got = &logits.data()[s * v..(s + 1) * v];
            let scale = want.iter().fold(0f32, |a, x| a.max(x.abs()));
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 1e-5 * scale, "pos {pos} seq {s}: {g} vs {w}");
            }
        }
    }
    assert!(dec.step(&vec![0; b]).is_err(), "past n_positions");
}

#[test]
fn sampled_frequencies_follow_the_distribution() {
    // Chi-square goodness of fit over 5 tokens with 20,000 draws (4 degrees of freedom; the
    // 99.9 % quantile is 18.47).
    let z = [1.0f32, 0.0, -1.0, 2.0, 0.5];
    let s = SamplingSettings::default();
    let total: f64 = z.iter().map(|&x| f64::from(x).exp()).sum();
    let mut counts = [0usize; 5];
    let n = 20_000;
    for i in 0..n {
        counts[choose_token(&z, &s, Philox::new(3).uniform_at(0, i))] += 1;
    }
    let chi2: f64 = (0..5)
        .map(|k| {
            let expected = n as f64 * f64::from(z[k]).exp() / total;
            (counts[k] as f64 - expected).powi(2) / expected
        })
        .sum();
    assert!(chi2 < 18.47, "chi-square {chi2}, counts {counts:?}");
}

#[test]
fn low_temperature_and_top_k_1_equal_greedy() {
    let m = model();
    let greedy = SamplingSettings { temperature: 0.0, ..SamplingSettings::default() };
    let cold = SamplingSettings { temperature: 1e-6, ..SamplingSettings::default() };
    let k1 = SamplingSettings { top_k: Some(1), ..SamplingSettings::default() };
    let prompts = vec![Vec::new(); 2];
    let g = complete(&m, &prompts, 30, &greedy, 1).unwrap();
    assert_eq!(g, complete(&m, &prompts, 30, &cold, 2).unwrap());
    assert_eq!(g, complete(&m, &prompts, 30, &k1, 3).unwrap());
}

#[test]
fn same_seed_same_images_for_1_and_2_threads() {
    let m = model();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            complete(&m, &vec![Vec::new(); 4], 40, &SamplingSettings::default(), 9).unwrap()
        })
    };
    let a = run(1);
    assert_eq!(a, run(2));
    assert_ne!(
        a,
        complete(&m, &vec![Vec::new(); 4], 40, &SamplingSettings::default(), 10).unwrap()
    );
}

#[test]
fn completions_keep_the_prompt_and_are_independent_of_batching() {
    let m = model();
    let prompt: Vec<Token> = (0..20).map(|i| i % 17).collect();
    let s = SamplingSettings::default();
    let together = complete(&m, &[prompt.clone(), Vec::new()], 40, &s, 5).unwrap();
    assert_eq!(together[0][..20], prompt[..]);
    // Sequence b uses stream SAMPLE + b, so sequence 0 is the same alone.
    let alone = complete(&m, &[prompt], 40, &s, 5).unwrap();
    assert_eq!(together[0], alone[0]);
}

#[test]
fn invalid_requests_are_errors() {
    let m = model();
    let s = SamplingSettings::default();
    assert!(complete(&m, &[vec![0; 41]], 41, &s, 0).is_err());
    assert!(complete(&m, &[vec![17]], 10, &s, 0).is_err(), "SOS is not a colour");
    let bad = SamplingSettings { top_p: Some(1.5), ..s };
    assert!(complete(&m, &[vec![]], 10, &bad, 0).unwrap_err().to_string().contains("top-p"));
}
