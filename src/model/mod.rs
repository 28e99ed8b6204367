//! The Image GPT model: configuration, parameters under HF names, forward pass and objectives.
//!
//! A [`Model`] is a [`Config`] plus its parameters (f32, in the canonical HF order of
//! [`params`]). Everything a caller needs — a GPU variant computing reference numbers, the
//! trainer, the sampler — goes through four calls:
//! - [`Model::init`] (paper initialisation from Philox) or [`Model::load`] (an HF directory);
//! - [`Model::forward`]: logits and HF-style hidden states in eval mode;
//! - [`Model::loss_and_grads`]: one objective's loss and every parameter's gradient;
//! - [`Model::save`]: an HF directory `transformers` loads as is.
//!
//! ## Objectives (SPEC §10)
//! - **Autoregressive** (paper): an image `x₀…x_{n−1}` is fed as `[SOS, x₀, …, x_{n−2}]` and all
//!   `n` pixels are scored: mean cross-entropy over `B·n` positions.
//! - **HF shifted** (`labels = input_ids`): the ids are fed as given and position `t < T−1` is
//!   scored against `ids[t+1]`: mean over `B·(T−1)` positions.
//! - **BERT**: positions masked with probability 0.15 have their token embedding zeroed;
//!   attention is bidirectional; loss = mean over images (with ≥ 1 masked position) of the
//!   mean cross-entropy over that image's masked positions.
//! - **Classification**: `score(mean_t(ln_f output))`, mean cross-entropy against labels.

pub mod block;
pub mod config;
pub mod decode;
pub mod footprint;
pub mod forward;
pub mod hf;
pub mod params;

pub use config::{Activation, Config};
pub use forward::DropoutRng;
pub use params::{Layout, ParamSpec, Scheme};

use crate::autodiff::{Tape, Var};
use crate::error::{Error, Result};
use crate::io::npy::{read_npy, NpyArray, NpyData};
pub use crate::kernels::Precision;
use crate::ops::{self, Kernels};
use crate::rng::Philox;
use crate::tensor::{Float, Tensor};
use crate::token::Token;
use forward::ForwardInput;
use std::path::Path;

/// A batch of token ids `[batch, seq]`, validated against a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    pub ids: Vec<Token>,
    pub batch: usize,
    pub seq: usize,
}

impl TokenBatch {
    /// Validates ids of shape `[b, t]` against `config`: every id in `0..vocab_size`,
    /// `1 ≤ t ≤ n_positions`. `origin` names the source in errors.
    pub fn new(ids: Vec<Token>, b: usize, t: usize, config: &Config, origin: &str) -> Result<Self> {
        check_shape(ids.len(), b, t, config, origin)?;
        match ids.iter().position(|&id| id as usize >= config.vocab_size) {
            Some(i) => Err(outside_vocab(ids[i].into(), i, t, config, origin)),
            None => Ok(TokenBatch { ids, batch: b, seq: t }),
        }
    }

    /// [`TokenBatch::new`] from the int64 ids of a file (`.npy`, a golden tensor): the one place
    /// file integers become tokens, so a negative or too large id is an error, not a wrap.
    pub fn from_i64(
        ids: &[i64],
        b: usize,
        t: usize,
        config: &Config,
        origin: &str,
    ) -> Result<Self> {
        check_shape(ids.len(), b, t, config, origin)?;
        let token = |(i, &id): (usize, &i64)| {
            Token::try_from(id).map_err(|_| outside_vocab(id, i, t, config, origin))
        };
        let tokens = ids.iter().enumerate().map(token).collect::<Result<Vec<_>>>()?;
        TokenBatch::new(tokens, b, t, config, origin)
    }

    /// Reads a token file: `.npy` of int32 or int64, shape `[B, T]`, validated against `config`.
    pub fn read_npy(path: &Path, config: &Config) -> Result<TokenBatch> {
        let origin = path.display().to_string();
        let array = read_npy(path)?;
        let ids = match &array.data {
            NpyData::I32(_) | NpyData::I64(_) => array.data.to_i64().unwrap_or_default(),
            other => {
                let msg = format!("token ids must be int32 or int64, not {}", other.dtype_name());
                return Err(Error::format(&origin, msg));
            }
        };
        let &[b, t] = array.shape.as_slice() else {
            let msg = format!("token ids must be a 2-D array [B, T], got shape {:?}", array.shape);
            return Err(Error::format(&origin, msg));
        };
        TokenBatch::from_i64(&ids, b, t, config, &origin)
    }

    /// The ids as an int64 `.npy` array `[B, T]`.
    pub fn to_npy(&self) -> NpyArray {
        NpyArray {
            shape: vec![self.batch, self.seq],
            data: NpyData::I64(self.ids.iter().map(|&i| i64::from(i)).collect()),
        }
    }
}

/// Errors unless `len` ids make a non-empty `[batch, seq]` with `seq ≤ n_positions`.
fn check_shape(len: usize, batch: usize, seq: usize, config: &Config, origin: &str) -> Result<()> {
    let err = |msg: String| Err(Error::format(origin, msg));
    if batch == 0 || seq == 0 {
        return err(format!("token array [{batch}, {seq}] is empty"));
    }
    if seq > config.n_positions {
        return err(format!(
            "{seq} tokens per sequence exceed n_positions = {}",
            config.n_positions
        ));
    }
    if len != batch * seq {
        return err(format!("{len} ids for shape [{batch}, {seq}]"));
    }
    Ok(())
}

/// The error for id `id` at flat index `i` of rows of `seq` ids.
fn outside_vocab(id: i64, i: usize, seq: usize, config: &Config, origin: &str) -> Error {
    let (row, col, v) = (i / seq, i % seq, config.vocab_size);
    Error::format(origin, format!("token id {id} at [{row}, {col}] is outside 0..{v}"))
}

/// A training objective and its targets.
#[derive(Clone, Debug)]
pub enum Objective {
    /// The paper's: `ids` are image pixels; SOS is prepended and all pixels are scored.
    Autoregressive,
    /// HF's `labels = input_ids`: ids fed as given, position t scored against t + 1.
    HfShifted,
    /// BERT: `mask[i]` true where position i is masked (token embedding zeroed, scored).
    Bert { mask: Vec<bool> },
    /// Classification of each image into `labels[b]` through `score`.
    Classify { labels: Vec<usize> },
    /// The paper's fine-tuning loss: the autoregressive loss plus the classification loss of
    /// `score` on the same (SOS-shifted) forward pass.
    Joint { labels: Vec<usize> },
}

/// The BERT mask of one batch: position i of the batch is masked iff uniform i of `stream` < p.
pub fn bert_mask(philox: Philox, stream: u64, n: usize, p: f32) -> Vec<bool> {
    (0..n as u64).map(|i| philox.uniform_at(stream, i) < p).collect()
}

/// What [`Model::forward`] returns.
pub struct ForwardOutput {
    /// `[B, T, V−1]` next-token logits (causal models).
    pub logits: Option<Tensor<f32>>,
    /// `[B, num_labels]` classification logits (models with a `score` head).
    pub score: Option<Tensor<f32>>,
    /// HF `hidden_states`: `L + 1` tensors of `[B, T, d]` (empty unless asked for).
    pub hidden_states: Vec<Tensor<f32>>,
}

/// An ImageGPT model: configuration and parameters.
#[derive(Clone, Debug)]
pub struct Model {
    pub config: Config,
    pub layout: Layout,
    /// Names, shapes and initialisations of the parameters, in canonical order.
    pub specs: Vec<ParamSpec>,
    /// The parameters, in the same order.
    pub params: Vec<Tensor<f32>>,
    /// The arithmetic of the forward and backward products (not saved with the weights; f32
    /// unless the caller chooses bf16).
    pub precision: Precision,
}

impl Model {
    /// A model with the paper's initialisation, parameter `p` drawn from Philox stream `p` of
    /// `seed`. It has an `lm_head`, and a `score` head if `config.num_labels` is set.
    pub fn init(config: Config, seed: u64) -> Result<Model> {
        Model::init_with(config, seed, Scheme::Paper)
    }

    /// [`Model::init`] under either initialisation scheme ([`Scheme::Random`] for
    /// conformance goldens: no parameter is a constant).
    pub fn init_with(config: Config, seed: u64, scheme: Scheme) -> Result<Model> {
        config.validate("config")?;
        let specs = params::param_specs(&config, true);
        let params =
            specs.iter().enumerate().map(|(i, s)| params::init_param(s, i, seed, scheme)).collect();
        let layout =
            Layout { n_layer: config.n_layer, lm_head: true, score: config.num_labels.is_some() };
        Ok(Model { config, layout, specs, params, precision: Precision::F32 })
    }

    /// The parameter called `name` (HF name), if the model has it.
    pub fn param(&self, name: &str) -> Option<&Tensor<f32>> {
        self.specs.iter().position(|s| s.name == name).map(|i| &self.params[i])
    }

    /// Total number of parameters.
    pub fn n_params(&self) -> usize {
        self.params.iter().map(|p| p.len()).sum()
    }

    /// Builds the trunk and heads on `tape` for `batch` fed as given.
    fn heads<T: Float>(
        &self,
        tape: &mut Tape<T>,
        p: &[Var],
        input: &ForwardInput<T>,
    ) -> (forward::ForwardVars, Option<Var>, Option<Var>) {
        let fv = forward::trunk(tape, &self.config, &self.layout, p, input);
        let (logits, score) = forward::heads(tape, &self.layout, p, &fv, input.kernels);
        (fv, logits, score)
    }

    /// Eval-mode forward (no dropout) of `batch` fed as given (HF semantics: no SOS is added).
    pub fn forward(&self, batch: &TokenBatch, hidden_states: bool) -> ForwardOutput {
        self.forward_reading(batch, &NetworkInput::default(), hidden_states)
    }

    /// Eval-mode forward of what `objective`'s loss reads: the SOS-shifted ids for the
    /// autoregressive objectives, the BERT mask and bidirectional attention for BERT, the ids
    /// as given otherwise (so its logits are the ones the loss scores).
    pub fn forward_for(
        &self,
        batch: &TokenBatch,
        objective: &Objective,
        hidden_states: bool,
    ) -> Result<ForwardOutput> {
        let input = self.network_input(batch, objective)?;
        Ok(self.forward_reading(batch, &input, hidden_states))
    }

    fn forward_reading(
        &self,
        batch: &TokenBatch,
        read: &NetworkInput,
        hidden_states: bool,
    ) -> ForwardOutput {
        let mut tape = Tape::<f32>::new();
        let p: Vec<Var> = self.params.iter().map(|x| tape.constant(x.clone())).collect();
        let input = read.forward_input(batch, None, self.kernels());
        let (fv, logits, score) = self.heads(&mut tape, &p, &input);
        let d = self.config.n_embd;
        let hidden = if hidden_states {
            fv.hidden
                .iter()
                .map(|&h| tape.value(h).clone().reshape(&[batch.batch, batch.seq, d]))
                .collect()
        } else {
            Vec::new()
        };
        ForwardOutput {
            logits: logits.map(|v| tape.take_value(v)),
            score: score.map(|v| tape.take_value(v)),
            hidden_states: hidden,
        }
    }

    /// The kernels this model's forward and backward run on: `kernels::Simd` in f32,
    /// `kernels::Bf16` in bf16 (see [`Model::precision`]).
    pub fn kernels(&self) -> &'static dyn Kernels<f32> {
        self.precision.kernels()
    }

    /// Builds `objective`'s loss on `tape` over parameter nodes `p` (any float type, so the whole
    /// model can be gradient-checked in f64 on `ops::Reference`), its hot ops run by `kernels`.
    pub fn loss_graph<T: Float>(
        &self,
        tape: &mut Tape<T>,
        p: &[Var],
        batch: &TokenBatch,
        objective: &Objective,
        dropout: Option<DropoutRng>,
        kernels: &'static dyn Kernels<T>,
    ) -> Result<Var> {
        let (b, t) = (batch.batch, batch.seq);
        let v = self.config.vocab_size - 1;
        let read = self.network_input(batch, objective)?;
        let input = read.forward_input(batch, dropout, kernels);
        match objective {
            Objective::Autoregressive => {
                let targets = checked_targets(&batch.ids, v)?;
                let (_, logits, _) = self.heads(tape, p, &input);
                Ok(ops::cross_entropy_mean(tape, lm(logits)?, &targets, None))
            }
            Objective::HfShifted => {
                if t < 2 {
                    return Err(Error::invalid(
                        "the HF shifted loss needs at least 2 tokens per sequence",
                    ));
                }
                let (_, logits, _) = self.heads(tape, p, &input);
                // Row (b, t) is scored against ids[b, t + 1]; the last position of each row is not.
                let scored: Vec<bool> = (0..b * t).map(|i| i % t < t - 1).collect();
                let next: Vec<Token> =
                    (0..b * t).map(|i| if i % t < t - 1 { batch.ids[i + 1] } else { 0 }).collect();
                let targets = checked_targets(&next, v)?;
                Ok(ops::cross_entropy_mean(tape, lm(logits)?, &targets, Some(&scored)))
            }
            Objective::Bert { mask } => {
                let targets = checked_targets(&batch.ids, v)?;
                let weights = bert_weights::<T>(mask, b, t)?;
                let (_, logits, _) = self.heads(tape, p, &input);
                Ok(ops::cross_entropy(tape, lm(logits)?, &targets, &weights))
            }
            Objective::Joint { labels } => {
                self.check_labels(labels, b)?;
                let targets = checked_targets(&batch.ids, v)?;
                let (_, logits, score) = self.heads(tape, p, &input);
                let score = score.ok_or_else(|| Error::invalid("the model has no score head"))?;
                let gen = ops::cross_entropy_mean(tape, lm(logits)?, &targets, None);
                let clf = ops::cross_entropy_mean(tape, score, labels, None);
                Ok(ops::add(tape, gen, clf))
            }
            Objective::Classify { labels } => {
                self.check_labels(labels, b)?;
                let (_, _, score) = self.heads(tape, p, &input);
                let score = score.ok_or_else(|| Error::invalid("the model has no score head"))?;
                Ok(ops::cross_entropy_mean(tape, score, labels, None))
            }
        }
    }

    /// What the network reads under `objective`: the ids (SOS-shifted for the autoregressive
    /// objectives) and the BERT keep-mask (attention is causal for everything but BERT).
    fn network_input(&self, batch: &TokenBatch, objective: &Objective) -> Result<NetworkInput> {
        let (b, t) = (batch.batch, batch.seq);
        let shifted = match objective {
            Objective::Autoregressive | Objective::Joint { .. } => {
                Some(shift_right_with_sos(&batch.ids, t, self.config.sos()))
            }
            _ => None,
        };
        let keep = match objective {
            Objective::Bert { mask } if mask.len() == b * t => {
                Some(mask.iter().map(|m| !m).collect())
            }
            Objective::Bert { mask } => {
                let msg = format!("BERT mask of {} for {} positions", mask.len(), b * t);
                return Err(Error::invalid(msg));
            }
            _ => None,
        };
        Ok(NetworkInput { shifted, keep })
    }

    /// Errors unless the model has a classification head and `labels` are `b` classes of it.
    fn check_labels(&self, labels: &[usize], b: usize) -> Result<()> {
        let k = self
            .config
            .num_labels
            .ok_or_else(|| Error::invalid("the model has no classification head"))?;
        if labels.len() != b || labels.iter().any(|&l| l >= k) {
            return Err(Error::invalid(format!("need {b} labels in 0..{k}, got {labels:?}")));
        }
        Ok(())
    }

    /// Adds a zero-initialised classification head `score.weight [k, d]` (no bias), as the
    /// paper initialises it; a model that already has one keeps it if it has `k` classes.
    pub fn add_score_head(&mut self, k: usize) -> Result<()> {
        if self.layout.score {
            return match self.config.num_labels {
                Some(n) if n == k => Ok(()),
                n => Err(Error::invalid(format!(
                    "the model's score head has {n:?} classes, not {k}"
                ))),
            };
        }
        self.config.num_labels = Some(k);
        self.config.validate("score head")?;
        let d = self.config.n_embd;
        self.specs.push(ParamSpec {
            name: "score.weight".into(),
            shape: vec![k, d],
            init: params::Init::Zeros,
        });
        self.params.push(Tensor::zeros(&[k, d]));
        self.layout.score = true;
        Ok(())
    }

    /// The loss of `objective` on `batch` in eval mode, without gradients (nothing is recorded
    /// for a backward pass).
    pub fn loss(&self, batch: &TokenBatch, objective: &Objective) -> Result<f32> {
        let mut tape = Tape::<f32>::new();
        let p: Vec<Var> = self.params.iter().map(|x| tape.constant(x.clone())).collect();
        let loss = self.loss_graph(&mut tape, &p, batch, objective, None, self.kernels())?;
        Ok(tape.value(loss).item())
    }

    /// The loss of `objective` on `batch` and the gradient of every parameter (canonical order).
    /// `dropout` enables training-mode dropout; `None` is eval mode.
    pub fn loss_and_grads(
        &self,
        batch: &TokenBatch,
        objective: &Objective,
        dropout: Option<DropoutRng>,
    ) -> Result<(f32, Vec<Tensor<f32>>)> {
        let mut tape = Tape::<f32>::new();
        let p: Vec<Var> = self.params.iter().map(|x| tape.param(x.clone())).collect();
        let loss = self.loss_graph(&mut tape, &p, batch, objective, dropout, self.kernels())?;
        let value = tape.value(loss).item();
        let mut grads = tape.backward(loss);
        let g = p
            .iter()
            .zip(&self.params)
            .map(|(&v, x)| grads.take(v).unwrap_or_else(|| Tensor::zeros(x.shape())))
            .collect();
        Ok((value, g))
    }
}

/// What an objective feeds the network besides the batch (see [`Model::network_input`]);
/// the default reads the ids as given, causally.
#[derive(Default)]
struct NetworkInput {
    /// The SOS-shifted ids, for the autoregressive objectives.
    shifted: Option<Vec<Token>>,
    /// BERT's keep-mask (false where a position is masked); attention is then bidirectional.
    keep: Option<Vec<bool>>,
}

impl NetworkInput {
    fn forward_input<'a, T: Float>(
        &'a self,
        batch: &'a TokenBatch,
        dropout: Option<DropoutRng>,
        kernels: &'static dyn Kernels<T>,
    ) -> ForwardInput<'a, T> {
        ForwardInput {
            ids: self.shifted.as_deref().unwrap_or(&batch.ids),
            batch: batch.batch,
            seq: batch.seq,
            keep: self.keep.as_deref(),
            causal: self.keep.is_none(),
            dropout,
            kernels,
        }
    }
}

/// The logits node, or an error for a model without an `lm_head`.
fn lm(logits: Option<Var>) -> Result<Var> {
    logits.ok_or_else(|| {
        Error::invalid("the model has no lm_head (a classification-only checkpoint)")
    })
}

/// `[SOS, x₀, …, x_{T−2}]` for every row of `ids` (rows of length `t`).
pub fn shift_right_with_sos(ids: &[Token], t: usize, sos: Token) -> Vec<Token> {
    ids.chunks(t).flat_map(|row| std::iter::once(sos).chain(row[..t - 1].iter().copied())).collect()
}

/// Targets must be colours (`< V−1`): SOS is never a prediction target. They come back as the
/// class indices the cross-entropy op reads.
fn checked_targets(ids: &[Token], n_colours: usize) -> Result<Vec<usize>> {
    let targets: Vec<usize> = ids.iter().map(|&id| id as usize).collect();
    match targets.iter().position(|&id| id >= n_colours) {
        Some(i) => Err(Error::invalid(format!(
            "target id {} at position {i} is not a colour (0..{n_colours})",
            ids[i]
        ))),
        None => Ok(targets),
    }
}

/// BERT weights: `1 / (masked count of the image) / (images with a masked position)`.
fn bert_weights<T: Float>(mask: &[bool], b: usize, t: usize) -> Result<Vec<T>> {
    let counts: Vec<usize> = mask.chunks(t).map(|row| row.iter().filter(|&&m| m).count()).collect();
    let images = counts.iter().filter(|&&c| c > 0).count();
    if images == 0 {
        return Err(Error::invalid("the BERT mask masks no position"));
    }
    let mut w = vec![T::ZERO; b * t];
    for (i, &m) in mask.iter().enumerate() {
        if m {
            w[i] = T::ONE / T::from_f64((counts[i / t] * images) as f64);
        }
    }
    Ok(w)
}
