//! Golden files: igpt's reference numbers in a form any implementation can read, and the
//! verifier that compares a candidate against them.
//!
//! A golden file is a safetensors file (see SPEC "Golden files"). Two kinds exist:
//! - **model goldens** ([`model_golden`]): `input_ids`, `logits`, `loss`, `hidden_states.{l}`,
//!   `grad.{param}` and, after `K` AdamW steps, `adamw.losses` and `adamw.{param}` — the same
//!   names as the `transformers` fixtures, so either can be the reference for the other;
//! - **op goldens** ([`op_golden`]): one kernel's inputs (drawn from Philox, so a GPU test can
//!   regenerate them), an upstream gradient, the output and the gradients of every input (the
//!   sampler and the KV-cache decode step, which have no gradients: inputs and outputs).
//!
//! Each golden records the tolerance its numbers are held to ([`tolerance`], SPEC §7) and,
//! after AdamW steps, the per-element slack of every parameter (`slack.adamw.{param}`);
//! [`verify`](mod@verify) compares a candidate against it and explains the result.
//!
//! The conformance [`suite`] is a directory of goldens at every op's edge shapes and of every
//! model objective, with a `manifest.json`; [`suite_verify`] checks a port's whole directory.

use crate::admission;
use crate::autodiff::{Tape, Var};
use crate::error::{Error, Result};
use crate::io::safetensors::SafeTensors;
use crate::kernels::{Bf16, Precision, Simd};
use crate::model::{Config, Model, Objective, TokenBatch};
use crate::ops::attention::{attention_reference_forward, AttentionDims};
use crate::ops::{self, Kernels, Reference};
use crate::rng::Philox;
use crate::sample::{choose_token, sampling_uniform, SamplingSettings};
use crate::tensor::Tensor;
use crate::token::Token;
use crate::train::{train_step, AdamW, AdamWConfig, StepOptions};

pub mod suite;
pub mod suite_verify;
pub mod tolerance;
pub mod verify;

pub use suite::{suite_files, write_suite, write_suite_with, SuiteOptions, SuiteSize, MANIFEST};
pub use suite_verify::{verify_suite, FileOutcome, FileReport, SuiteReport};
pub use tolerance::{AdamWSlack, Kind, Tolerance, SLACK_PREFIX};
pub use verify::{verify, Report, TensorReport, Verdict};

/// Options of a model golden.
#[derive(Clone, Debug)]
pub struct GoldenOptions {
    /// AdamW steps to record (0 for none).
    pub steps: usize,
    pub lr: f64,
    pub adamw: AdamWConfig,
    /// The seed the model or tokens were drawn from, if any (recorded in the metadata).
    pub seed: Option<u64>,
}

fn build_mode() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Metadata every golden file carries: the version, the build, the precision of its products
/// and the tolerance (the class of its kind and precision at the computation's longest
/// reduction, `reduction` terms).
fn common_metadata(
    st: &mut SafeTensors,
    kind: Kind,
    reduction: usize,
    precision: Precision,
) -> Result<()> {
    let (tol, class) = Tolerance::for_golden(kind, precision, reduction);
    let tolerances = tol.to_json(class, reduction);
    st.metadata.push(("igpt_version".into(), env!("CARGO_PKG_VERSION").into()));
    st.metadata.push(("build".into(), build_mode().into()));
    st.metadata.push(("precision".into(), precision.name().into()));
    st.metadata.push(("tolerances".into(), tolerances.to_compact()?));
    Ok(())
}

/// The head `objective` reads (`score.weight` for classification, else `lm_head.weight`) if it
/// is all zero, as the paper initialises it. A golden of such a model has exactly zero logits
/// and trunk gradients, so it cannot tell a correct port from one that computes nothing;
/// `igpt golden` refuses it unless asked.
pub fn zero_head<'m>(model: &'m Model, objective: &Objective) -> Option<&'m str> {
    let head = match objective {
        Objective::Classify { .. } => "score.weight",
        _ => "lm_head.weight",
    };
    let p = model.param(head)?;
    p.data().iter().all(|&x| x == 0.0).then_some(head)
}

/// What a model golden's `objective` metadata says its loss computes. The joint objective has
/// no golden (it is the sum of two that have).
fn objective_meaning(objective: &Objective) -> Result<&'static str> {
    Ok(match objective {
        Objective::HfShifted => {
            "hf_shifted: mean over b and t < T-1 of CE(logits[b,t], input_ids[b,t+1])"
        }
        Objective::Autoregressive => {
            "autoregressive: the network reads [SOS, input_ids[b,0..T-1]]; mean over b, t of CE(logits[b,t], input_ids[b,t])"
        }
        Objective::Bert { .. } => {
            "bert: wte rows of positions with bert_mask = 1 zeroed, bidirectional attention; per image the mean CE over its masked positions, averaged over images with one"
        }
        Objective::Classify { .. } => "classification: mean CE of score(mean_t ln_f) vs labels",
        Objective::Joint { .. } => {
            return Err(Error::invalid("the joint objective has no model golden"))
        }
    })
}

/// The integer inputs of `objective` beside `input_ids`: `labels [B]` or `bert_mask [B, T]`.
fn push_objective_inputs(
    st: &mut SafeTensors,
    batch: &TokenBatch,
    objective: &Objective,
) -> Result<()> {
    match objective {
        Objective::Classify { labels } => {
            let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
            st.push_i64("labels", &[labels.len()], &labels)
        }
        Objective::Bert { mask } => {
            let mask: Vec<i64> = mask.iter().map(|&m| i64::from(m)).collect();
            st.push_i64("bert_mask", &[batch.batch, batch.seq], &mask)
        }
        _ => Ok(()),
    }
}

/// The model golden of `batch` under `objective` (any but the joint one): the logits and
/// hidden states of the forward pass the loss reads (the ids as given for the HF shifted and
/// classification objectives, SOS-shifted for the autoregressive one, masked and bidirectional
/// for BERT), the loss, every gradient and, with `opts.steps`, the AdamW record.
pub fn model_golden(
    model: &Model,
    batch: &TokenBatch,
    objective: &Objective,
    opts: &GoldenOptions,
) -> Result<SafeTensors> {
    let objective_name = objective_meaning(objective)?;
    let mut st = SafeTensors::new();
    let ids: Vec<i64> = batch.ids.iter().map(|&i| i as i64).collect();
    st.push_i64("input_ids", &[batch.batch, batch.seq], &ids)?;
    push_objective_inputs(&mut st, batch, objective)?;
    let out = model.forward_for(batch, objective, true)?;
    let logits = out.score.or(out.logits).ok_or_else(|| Error::invalid("the model has no head"))?;
    st.push_f32("logits", logits.shape(), logits.data())?;
    for (l, h) in out.hidden_states.iter().enumerate() {
        st.push_f32(&format!("hidden_states.{l}"), h.shape(), h.data())?;
    }
    let (loss, grads) = model.loss_and_grads(batch, objective, None)?;
    st.push_f32("loss", &[1], &[loss])?;
    for (spec, g) in model.specs.iter().zip(&grads) {
        st.push_f32(&format!("grad.{}", spec.name), g.shape(), g.data())?;
    }
    if opts.steps > 0 {
        adamw_golden(model, batch, objective, opts, &mut st)?;
    }
    st.metadata.push(("kind".into(), "model".into()));
    st.metadata.push(("objective".into(), objective_name.into()));
    st.metadata.push(("config".into(), model.config.to_json().to_compact()?));
    st.metadata.push(("seed".into(), opts.seed.map_or("none".into(), |s| s.to_string())));
    common_metadata(&mut st, Kind::Model, model_reduction(model, batch), model.precision)?;
    Ok(st)
}

/// The longest reduction of a model golden's computation: the weight gradients sum over the
/// `B·T` rows, the MLP over `n_inner`, the log-sum-exp over the `V − 1` colours.
fn model_reduction(model: &Model, batch: &TokenBatch) -> usize {
    let c = &model.config;
    (batch.batch * batch.seq).max(c.inner()).max(c.vocab_size - 1).max(c.n_embd)
}

/// `adamw.losses` (the loss before each step), `adamw.{param}` after `opts.steps` steps and
/// `slack.adamw.{param}`, the slack the policy allows each element (see [`tolerance`]).
fn adamw_golden(
    model: &Model,
    batch: &TokenBatch,
    objective: &Objective,
    opts: &GoldenOptions,
    st: &mut SafeTensors,
) -> Result<()> {
    let mut m = model.clone();
    let mut opt = AdamW::new(opts.adamw, &m.params);
    let mut losses = Vec::with_capacity(opts.steps);
    let mut slack = AdamWSlack::new(m.params.iter().map(Tensor::len));
    let (tol, _) =
        Tolerance::for_golden(Kind::Model, model.precision, model_reduction(model, batch));
    for k in 0..opts.steps {
        let out = train_step(&mut m, &mut opt, batch, objective, opts.lr, &StepOptions::golden())?;
        if !out.applied {
            return Err(Error::invalid(format!(
                "AdamW step {}: the loss is {} (gradient norm {}); no golden written",
                k + 1,
                out.loss,
                out.grad_norm
            )));
        }
        losses.push(out.loss as f32);
        slack.add_step(&opt, opts.lr, &tol);
    }
    st.push_f32("adamw.losses", &[opts.steps], &losses)?;
    for (spec, p) in m.specs.iter().zip(&m.params) {
        st.push_f32(&format!("adamw.{}", spec.name), p.shape(), p.data())?;
    }
    for (spec, s) in m.specs.iter().zip(slack.per_param()) {
        st.push_f32(&format!("{SLACK_PREFIX}adamw.{}", spec.name), &spec.shape, &s)?;
    }
    let c = opts.adamw;
    for (k, v) in [
        ("adamw_lr", opts.lr),
        ("adamw_beta1", c.beta1),
        ("adamw_beta2", c.beta2),
        ("adamw_eps", c.eps),
        ("adamw_weight_decay", c.weight_decay),
    ] {
        st.metadata.push((k.into(), v.to_string()));
    }
    Ok(())
}

/// Random ids `[b, t]`, row-major, from Philox stream 0 of `seed`: id `i` is
/// `word_i mod (V − 1)` (a colour), except that with `sos_first` the first column is SOS, as
/// an input fed as given starts (the autoregressive and BERT objectives score the ids
/// themselves, which must then all be colours).
pub fn random_tokens(
    config: &Config,
    b: usize,
    t: usize,
    seed: u64,
    sos_first: bool,
) -> Result<TokenBatch> {
    let philox = Philox::new(seed);
    let colours = config.sos();
    let ids: Vec<Token> = (0..(b * t) as u64)
        .map(|i| {
            if sos_first && (i as usize).is_multiple_of(t.max(1)) {
                config.sos()
            } else {
                philox.u32_at(0, i) % colours
            }
        })
        .collect();
    TokenBatch::new(ids, b, t, config, "random tokens")
}

/// The kernels an op golden can be made for.
pub const GOLDEN_OPS: &[&str] = &[
    "linear",
    "norm",
    "quick_gelu",
    "gelu_tanh",
    "attention",
    "attention_bidirectional",
    "cross_entropy",
    "embedding",
    "sample",
    "decode",
];

/// `n` normals of standard deviation `std` from Philox stream `stream` of `seed`.
fn normals(seed: u64, stream: u64, std: f32, shape: &[usize]) -> Tensor<f32> {
    let mut v = vec![0.0; shape.iter().product()];
    Philox::new(seed).fill_normal(stream, 0.0, std, &mut v);
    Tensor::new(shape, v)
}

/// `n` integers in `0..bound`: word `i` of stream `stream`, modulo `bound`.
fn integers(seed: u64, stream: u64, n: usize, bound: usize) -> Vec<usize> {
    let p = Philox::new(seed);
    (0..n as u64).map(|i| p.u32_at(stream, i) as usize % bound).collect()
}

/// The `--shape` that `op` takes.
fn op_shape_names(op: &str) -> Result<&'static str> {
    Ok(match op {
        "linear" => "N,IN,OUT",
        "norm" | "quick_gelu" | "gelu_tanh" => "N,D",
        "attention" | "attention_bidirectional" | "decode" => "B,H,T,D",
        "cross_entropy" | "sample" => "N,V",
        "embedding" => "V,D,N",
        other => {
            return Err(Error::invalid(format!(
                "unknown --op '{other}' (known: {})",
                GOLDEN_OPS.join(", ")
            )))
        }
    })
}

/// Elements of the inputs, output and (attention) probabilities of `op` on a checked `shape`.
fn op_elements(op: &str, shape: &[usize]) -> f64 {
    let s: Vec<f64> = shape.iter().map(|&x| x as f64).collect();
    match op {
        "linear" => s[0] * s[1] + s[1] * s[2] + s[2] + s[0] * s[2],
        "attention" | "attention_bidirectional" | "decode" => {
            let (b, h, t, d) = (s[0], s[1], s[2], s[3]);
            4.0 * b * t * h * d + b * h * t * t
        }
        "embedding" => s[0] * s[1] + s[2] * s[1] + s[2],
        // norm and the activations: input and output; cross_entropy, sample: logits and one id per row.
        _ => 2.0 * s[0] * s[1] + s[0],
    }
}

/// The longest reduction of `op` on a checked `shape` (forward or backward): linear sums over
/// `IN` (y), `OUT` (∂x) and `N` (∂w, ∂b); norm over `D` and `N` (∂g); attention and the decode
/// step over `T` and the head width; cross_entropy over `V` and the `N` rows of the mean;
/// embedding's ∂table over the `N` ids; sampling's softmax over `V`. The activations have none.
fn op_reduction(op: &str, shape: &[usize]) -> usize {
    match op {
        "quick_gelu" | "gelu_tanh" => 1,
        "attention" | "attention_bidirectional" | "decode" => shape[2].max(shape[3]),
        "embedding" => shape[2],
        "sample" => shape[1],
        // linear, norm, cross_entropy: every size is a reduction of the forward or backward.
        _ => shape.iter().copied().max().unwrap_or(1),
    }
}

/// Checks `op`, that `shape` has its positive sizes, and that the golden fits in memory: each
/// element of its inputs, output and probabilities is held about four times (value, gradient,
/// safetensors copy, file bytes), so the estimate is 16 bytes per element.
fn check_op(op: &str, shape: &[usize]) -> Result<()> {
    let want = op_shape_names(op)?;
    if shape.len() != want.split(',').count() || shape.contains(&0) {
        return Err(Error::invalid(format!(
            "--op {op} needs --shape {want} (positive), got {shape:?}"
        )));
    }
    let joined: Vec<String> = shape.iter().map(usize::to_string).collect();
    let what = format!("--op {op} --shape {}", joined.join(","));
    admission::admit(&what, 16.0 * op_elements(op, shape))
}

/// Inputs of an op golden: (name, tensor, needs gradient).
type OpInputs = Vec<(&'static str, Tensor<f32>, bool)>;

/// The sampling golden: `logits [N, V]` (normals, std 2, stream 0) and, for row `i` drawn with
/// the uniform of sequence `i`, position 0 (`sampling_uniform(seed, i, 0)`), the tokens chosen
/// under four settings.
fn sample_golden(shape: &[usize], seed: u64) -> Result<SafeTensors> {
    let (n, v) = (shape[0], shape[1]);
    let logits = normals(seed, 0, 2.0, shape);
    let mut st = SafeTensors::new();
    st.push_f32("logits", shape, logits.data())?;
    let uniforms: Vec<f32> = (0..n).map(|i| sampling_uniform(seed, i, 0)).collect();
    st.push_f32("uniforms", &[n], &uniforms)?;
    let base = SamplingSettings::default();
    let settings = [
        ("tokens", base),
        ("tokens.temperature_0.7", SamplingSettings { temperature: 0.7, ..base }),
        ("tokens.top_k_5", SamplingSettings { top_k: Some(5), ..base }),
        ("tokens.top_p_0.9", SamplingSettings { top_p: Some(0.9), ..base }),
    ];
    for (name, s) in settings {
        let tokens: Vec<i64> = (0..n)
            .map(|i| choose_token(&logits.data()[i * v..(i + 1) * v], &s, uniforms[i]) as i64)
            .collect();
        st.push_i64(name, &[n], &tokens)?;
    }
    op_metadata(&mut st, "sample", shape, seed, Precision::F32)?;
    Ok(st)
}

/// The KV-cache decode step's golden (SPEC §13.2, §18.7): `qkv [B, T, 3HD]` (normals, stream
/// 0) holds the `T − 1` cached positions and the new one, and `y [B, HD]` is the attention
/// output of the new token at position `T − 1`: row `T − 1` of causal attention over `qkv`,
/// from the plain materialised reference. The cache's layout is the port's own; only what it
/// computes is fixed.
fn decode_golden(shape: &[usize], seed: u64) -> Result<SafeTensors> {
    let (b, n_head, t, head_dim) = (shape[0], shape[1], shape[2], shape[3]);
    let d = n_head * head_dim;
    let qkv = normals(seed, 0, 1.0, &[b, t, 3 * d]);
    let dims = AttentionDims { batch: b, seq: t, n_head, head_dim };
    let (o, _) = attention_reference_forward(qkv.data(), dims, true);
    let last: Vec<f32> = o.chunks(t * d).flat_map(|seq| seq[(t - 1) * d..].to_vec()).collect();
    let mut st = SafeTensors::new();
    st.push_f32("qkv", qkv.shape(), qkv.data())?;
    st.push_f32("y", &[b, d], &last)?;
    op_metadata(&mut st, "decode", shape, seed, Precision::F32)?;
    Ok(st)
}

/// The metadata of an op golden: its kind, op, shape and seed, then [`common_metadata`].
fn op_metadata(
    st: &mut SafeTensors,
    op: &str,
    shape: &[usize],
    seed: u64,
    precision: Precision,
) -> Result<()> {
    let joined: Vec<String> = shape.iter().map(usize::to_string).collect();
    st.metadata.push(("kind".into(), "op".into()));
    st.metadata.push(("op".into(), op.into()));
    st.metadata.push(("shape".into(), joined.join(",")));
    st.metadata.push(("seed".into(), seed.to_string()));
    common_metadata(st, Kind::Op, op_reduction(op, shape), precision)
}

/// The op golden of kernel `op` on `shape` with inputs from `seed` (layout in SPEC), its
/// products in `precision` (`linear` and `attention`; the other ops have none, and `sample`
/// and `decode` are f32 goldens whatever `precision` says).
pub fn op_golden(
    op: &str,
    shape: &[usize],
    seed: u64,
    precision: Precision,
) -> Result<SafeTensors> {
    check_op(op, shape)?;
    match op {
        "sample" => return sample_golden(shape, seed),
        "decode" => return decode_golden(shape, seed),
        _ => {}
    }
    let mut tape = Tape::<f32>::new();
    let mut st = SafeTensors::new();
    let (inputs, ints): (OpInputs, Vec<(&str, Vec<usize>)>) = match op {
        "linear" => {
            let (n, i, o) = (shape[0], shape[1], shape[2]);
            let w_std = 1.0 / (i as f32).sqrt();
            (
                vec![
                    ("x", normals(seed, 0, 1.0, &[n, i]), true),
                    ("w", normals(seed, 1, w_std, &[i, o]), true),
                    ("b", normals(seed, 2, 0.1, &[o]), true),
                ],
                vec![],
            )
        }
        "norm" => {
            let mut g = normals(seed, 1, 0.1, &[shape[1]]);
            g.data_mut().iter_mut().for_each(|x| *x += 1.0);
            (vec![("x", normals(seed, 0, 1.0, shape), true), ("g", g, true)], vec![])
        }
        "quick_gelu" | "gelu_tanh" => (vec![("x", normals(seed, 0, 2.0, shape), true)], vec![]),
        "attention" | "attention_bidirectional" => {
            let d = shape[1] * shape[3];
            (vec![("qkv", normals(seed, 0, 1.0, &[shape[0], shape[2], 3 * d]), true)], vec![])
        }
        "cross_entropy" => (
            vec![("logits", normals(seed, 0, 2.0, shape), true)],
            vec![("targets", integers(seed, 4, shape[0], shape[1]))],
        ),
        // embedding, the last op check_op knows.
        _ => (
            vec![("table", normals(seed, 0, 1.0, &shape[..2]), true)],
            vec![("ids", integers(seed, 4, shape[2], shape[0]))],
        ),
    };
    let vars: Vec<Var> = inputs.iter().map(|(_, t, _)| tape.param(t.clone())).collect();
    // f32 attention goldens come from the materialised reference, bf16 ones from the kernels
    // that define bf16's rounding (SPEC §21.2).
    let (products, attention): (&dyn Kernels<f32>, &dyn Kernels<f32>) = match precision {
        Precision::F32 => (&Simd, &Reference),
        Precision::Bf16 => (&Bf16::PORTABLE, &Bf16::PORTABLE),
    };
    let ints_of = |name: &str| {
        ints.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_slice()).unwrap_or(&[])
    };
    let y = match op {
        "linear" => ops::linear(&mut tape, products, vars[0], vars[1], Some(vars[2])),
        "norm" => ops::rms_norm(&mut tape, &Reference, vars[0], vars[1], 1e-5),
        "quick_gelu" => ops::quick_gelu(&mut tape, &Simd, vars[0]),
        "gelu_tanh" => ops::gelu_tanh(&mut tape, vars[0]),
        "attention" => ops::attention(&mut tape, attention, vars[0], shape[1], true),
        "attention_bidirectional" => ops::attention(&mut tape, attention, vars[0], shape[1], false),
        "cross_entropy" => ops::cross_entropy_mean(&mut tape, vars[0], ints_of("targets"), None),
        _ => ops::embedding(&mut tape, vars[0], ints_of("ids"), None),
    };
    // The upstream gradient: normals from stream 3 (1 for a scalar loss).
    let dy = if tape.value(y).len() == 1 {
        Tensor::new(tape.shape(y), vec![1.0])
    } else {
        normals(seed, 3, 1.0, tape.shape(y))
    };
    let grads = tape.backward_with(y, dy.clone());
    for ((name, t, _), _) in inputs.iter().zip(&vars) {
        st.push_f32(name, t.shape(), t.data())?;
    }
    for (name, v) in &ints {
        st.push_i64(name, &[v.len()], &v.iter().map(|&x| x as i64).collect::<Vec<_>>())?;
    }
    st.push_f32("dy", dy.shape(), dy.data())?;
    st.push_f32("y", tape.shape(y), tape.value(y).data())?;
    for ((name, t, _), v) in inputs.iter().zip(&vars) {
        let g = grads.get(*v).cloned().unwrap_or_else(|| Tensor::zeros(t.shape()));
        st.push_f32(&format!("grad.{name}"), g.shape(), g.data())?;
    }
    op_metadata(&mut st, op, shape, seed, precision)?;
    Ok(st)
}
