//! The training loop: batches, objective, AdamW with warm-up + cosine, clipping, evaluation,
//! checkpoints, progress.
//!
//! ## One step `s`
//! 1. **Batch.** The training images are visited in epochs; epoch `e` is the Fisher–Yates
//!    permutation drawn from Philox stream `SHUFFLE + e`, and step `s` takes positions
//!    `s·B … s·B + B − 1` of the concatenated permutations. With `--flip`, the `i`-th sample
//!    drawn is mirrored when uniform `i` of stream `FLIP` is below ½.
//! 2. **Loss and gradients** of the objective (autoregressive or BERT, mask from stream
//!    `BERT_MASK + s`), with dropout from streams `DROPOUT + s·2²⁰ + site`. With gradient
//!    accumulation the batch is cut into equal micro-batches, processed in order, and their
//!    gradients averaged in that order.
//! 3. **Clip** to the global norm, **step** AdamW at `lr(s)` (see `schedule`). Steps 2–3 are
//!    [`super::step::train_step`], the one step the golden and the benchmark run too.
//!
//! Every random choice is a function of (seed, step), so the state after step `s` depends on
//! nothing else: a resumed run continues bit for bit, and the thread count changes nothing.

use super::adamw::{AdamW, AdamWConfig};
use super::checkpoint::{load_state, save_state, RunState, STATE_FILE};
use super::schedule::Schedule;
use super::step::{train_step, StepOptions, StepOutcome};
use crate::data::dataset::{ImageSet, Splits};
use crate::error::{Error, Result};
use crate::io::json::Json;
use crate::model::hf::WEIGHTS_FILE;
use crate::model::{bert_mask, DropoutRng, Model, Objective, Precision, TokenBatch};
use crate::rng::{streams, Philox};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The training objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainObjective {
    /// Next-pixel prediction with SOS prepended (the paper's default).
    Autoregressive,
    /// Masked-pixel prediction, 15 % of positions, bidirectional attention.
    Bert,
    /// Fine-tuning with the paper's joint loss: autoregressive + classification (`score`).
    Joint,
    /// Fine-tuning on the classification loss alone (what HF's classifier trains).
    Classify,
}

/// Everything that defines a run besides the model and the data.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// The `--data` specification (`digits`, `cifar10:PATH`, a folder), recorded so that
    /// `igpt probe` can find the data a run was trained on.
    pub data: String,
    /// The emoji vendors (`--vendors`), recorded when given so that probes read the same images.
    pub vendors: Option<Vec<String>>,
    /// The image side (`--image-size`), recorded when given.
    pub image_size: Option<usize>,
    pub steps: usize,
    /// Images per optimizer step.
    pub batch: usize,
    /// Micro-batches per step (gradient accumulation); `batch` must be divisible by it.
    pub accumulation: usize,
    pub lr: f64,
    /// The final learning rate of the cosine decay.
    pub min_lr: f64,
    pub warmup: usize,
    /// Global-norm clipping bound (`None`: no clipping).
    pub clip: Option<f64>,
    pub adamw: AdamWConfig,
    pub seed: u64,
    pub objective: TrainObjective,
    /// Random horizontal flips of training images.
    pub flip: bool,
    /// Evaluate the test loss every this many steps (and at the end).
    pub eval_every: usize,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Also keep a copy of the model every this many steps in `checkpoints/step-NNNNNN/`
    /// (0: none), for `igpt probe --checkpoints`. Not part of the recipe: it changes no weight.
    pub save_every: usize,
    /// At most this many images are used to estimate a loss over a split.
    pub eval_images: usize,
    /// Early stopping: end the run once this many evaluations in a row did not improve the
    /// test (validation) loss; `None` runs every step.
    pub patience: Option<usize>,
    /// The arithmetic of the products (`--precision`; recorded in the recipe when not f32).
    pub precision: Precision,
}

impl TrainConfig {
    /// The recipe of the main job on the digits: batch 64, lr 3e-3 with 100 warm-up steps,
    /// cosine to 0 over 1000 steps, clipping at 1.
    pub fn digits_default() -> TrainConfig {
        TrainConfig {
            data: "digits".into(),
            vendors: None,
            image_size: None,
            steps: 1000,
            batch: 64,
            accumulation: 1,
            lr: 3e-3,
            min_lr: 0.0,
            warmup: 100,
            clip: Some(1.0),
            adamw: AdamWConfig::default(),
            seed: 0,
            objective: TrainObjective::Autoregressive,
            flip: false,
            eval_every: 100,
            checkpoint_every: 250,
            save_every: 0,
            eval_images: 10_000,
            patience: None,
            precision: Precision::F32,
        }
    }

    /// The recipe `igpt train` uses for `--data spec`: the emoji recipe for `emoji:…`, else the
    /// digits recipe.
    pub fn for_data(spec: &str) -> TrainConfig {
        if spec.starts_with("emoji:") {
            TrainConfig::emoji_default()
        } else {
            TrainConfig::digits_default()
        }
    }

    /// The recipe of the emoji job (with the `emoji` preset): batch 32, lr 2e-3 with 100
    /// warm-up steps, cosine decay over 1200 steps — 12.5 epochs of the 3,064 training emoji,
    /// about 12 minutes on 2 cores.
    pub fn emoji_default() -> TrainConfig {
        TrainConfig {
            data: "emoji".into(),
            steps: 1200,
            batch: 32,
            lr: 2e-3,
            eval_every: 200,
            checkpoint_every: 400,
            ..TrainConfig::digits_default()
        }
    }

    /// Checks the values a user can set.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.steps == 0
            || self.batch == 0
            || self.eval_every == 0
            || self.checkpoint_every == 0
            || self.eval_images == 0
        {
            return bad(
                "steps, batch, eval-every, checkpoint-every and eval-images must be positive"
                    .into(),
            );
        }
        if self.accumulation == 0 || !self.batch.is_multiple_of(self.accumulation) {
            return bad(format!(
                "batch {} is not divisible into {} micro-batches",
                self.batch, self.accumulation
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad(format!(
                "learning rates must satisfy 0 <= min-lr <= lr, lr > 0 (lr {}, min-lr {})",
                self.lr, self.min_lr
            ));
        }
        if self.clip.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return bad("--clip must be positive".into());
        }
        let a = &self.adamw;
        let valid = (0.0..1.0).contains(&a.beta1)
            && (0.0..1.0).contains(&a.beta2)
            && a.eps > 0.0
            && a.weight_decay >= 0.0;
        if !valid {
            return bad("AdamW needs 0 <= beta < 1, eps > 0, weight decay >= 0".into());
        }
        Ok(())
    }

    /// The configuration as compact JSON (recorded in checkpoints and compared on resume).
    pub fn to_json(&self) -> Result<String> {
        let objective = match self.objective {
            TrainObjective::Autoregressive => "autoregressive",
            TrainObjective::Bert => "bert",
            TrainObjective::Joint => "joint",
            TrainObjective::Classify => "classify",
        };
        let mut members: Vec<(String, Json)> = vec![("data".into(), self.data.as_str().into())];
        if let Some(v) = &self.vendors {
            members.push((
                "vendors".into(),
                Json::Array(v.iter().map(|v| v.as_str().into()).collect()),
            ));
        }
        if let Some(s) = self.image_size {
            members.push(("image_size".into(), s.into()));
        }
        members.extend([
            ("steps".into(), self.steps.into()),
            ("batch".into(), self.batch.into()),
            ("accumulation".into(), self.accumulation.into()),
            ("lr".into(), self.lr.into()),
            ("min_lr".into(), self.min_lr.into()),
            ("warmup".into(), self.warmup.into()),
            ("clip".into(), self.clip.map_or(Json::Null, Json::from)),
            ("beta1".into(), self.adamw.beta1.into()),
            ("beta2".into(), self.adamw.beta2.into()),
            ("eps".into(), self.adamw.eps.into()),
            ("weight_decay".into(), self.adamw.weight_decay.into()),
            ("seed".into(), Json::String(self.seed.to_string())),
            ("objective".into(), objective.into()),
            ("flip".into(), self.flip.into()),
            ("patience".into(), self.patience.map_or(Json::Null, Json::from)),
        ]);
        // Runs written before bf16 existed have no entry: they are f32, and resume as such.
        if self.precision != Precision::F32 {
            members.push(("precision".into(), self.precision.name().into()));
        }
        Json::Object(members).to_compact()
    }

    fn schedule(&self) -> Schedule {
        Schedule { peak: self.lr, min: self.min_lr, warmup: self.warmup, total: self.steps }
    }
}

/// One line of the training log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    pub step: usize,
    pub lr: f64,
    /// Mean training loss (nats per token) since the previous row.
    pub train_loss: f64,
    pub test_loss: Option<f64>,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub seconds: f64,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainReport {
    pub steps: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub test_nats_per_token: f64,
    pub train_nats_per_token: f64,
    pub log: Vec<LogRow>,
}

/// Progress reported to the caller after each logged step.
pub struct Progress<'a> {
    pub row: &'a LogRow,
    pub total_steps: usize,
    /// Estimated seconds to the end.
    pub eta: f64,
}

/// The order in which training images are visited: epoch permutations from Philox.
pub struct BatchOrder {
    philox: Philox,
    n: usize,
    epoch: usize,
    perm: Vec<usize>,
}

impl BatchOrder {
    pub fn new(seed: u64, n: usize) -> Self {
        let mut order =
            BatchOrder { philox: Philox::new(seed), n, epoch: usize::MAX, perm: Vec::new() };
        order.load_epoch(0);
        order
    }

    /// Fisher–Yates: for i = n−1 … 1, swap i with j = (64-bit word pair i) mod (i + 1).
    fn load_epoch(&mut self, epoch: usize) {
        if self.epoch == epoch {
            return;
        }
        let stream = streams::SHUFFLE + epoch as u64;
        self.perm = (0..self.n).collect();
        for i in (1..self.n).rev() {
            let w = u64::from(self.philox.u32_at(stream, 2 * i as u64))
                | (u64::from(self.philox.u32_at(stream, 2 * i as u64 + 1)) << 32);
            self.perm.swap(i, (w % (i as u64 + 1)) as usize);
        }
        self.epoch = epoch;
    }

    /// The image index at overall position `pos` (epoch `pos / n`, place `pos % n`).
    pub fn at(&mut self, pos: usize) -> usize {
        self.load_epoch(pos / self.n);
        self.perm[pos % self.n]
    }
}

/// The training images of step `step`: `(image index, flipped)` for positions `step·B …`.
fn step_samples(order: &mut BatchOrder, cfg: &TrainConfig, step: usize) -> Vec<(usize, bool)> {
    let philox = Philox::new(cfg.seed);
    (step * cfg.batch..(step + 1) * cfg.batch)
        .map(|pos| (order.at(pos), cfg.flip && philox.uniform_at(streams::FLIP, pos as u64) < 0.5))
        .collect()
}

/// A batch of images: their tokens and class labels.
struct Batch {
    tokens: TokenBatch,
    labels: Vec<usize>,
}

/// The batch of the given samples of `set`.
fn gather(
    set: &ImageSet,
    samples: &[(usize, bool)],
    config: &crate::model::Config,
) -> Result<Batch> {
    let t = set.seq_len();
    let mut ids = Vec::with_capacity(samples.len() * t);
    for &(i, flip) in samples {
        if flip {
            ids.extend(set.flipped(i));
        } else {
            ids.extend_from_slice(set.image(i));
        }
    }
    let labels = samples.iter().map(|&(i, _)| usize::from(set.labels[i])).collect();
    Ok(Batch { tokens: TokenBatch::new(ids, samples.len(), t, config, "training data")?, labels })
}

/// The objective of one (micro-)batch; BERT masks come from `mask_stream`.
fn objective_for(cfg: &TrainConfig, batch: &Batch, mask_stream: u64) -> Objective {
    match cfg.objective {
        TrainObjective::Autoregressive => Objective::Autoregressive,
        TrainObjective::Bert => Objective::Bert {
            mask: bert_mask(Philox::new(cfg.seed), mask_stream, batch.tokens.ids.len(), 0.15),
        },
        TrainObjective::Joint => Objective::Joint { labels: batch.labels.clone() },
        TrainObjective::Classify => Objective::Classify { labels: batch.labels.clone() },
    }
}

/// Mean loss (nats per token) over up to `max_images` images of `set`, in eval mode.
pub fn evaluate(
    model: &Model,
    set: &ImageSet,
    cfg: &TrainConfig,
    max_images: usize,
) -> Result<f64> {
    let n = set.len().min(max_images);
    if n == 0 {
        return Err(Error::invalid("cannot evaluate on an empty split"));
    }
    let (mut weighted, mut count) = (0.0, 0usize);
    for (chunk, start) in (0..n).step_by(cfg.batch).enumerate() {
        let samples: Vec<(usize, bool)> =
            (start..(start + cfg.batch).min(n)).map(|i| (i, false)).collect();
        let batch = gather(set, &samples, &model.config)?;
        // Evaluation masks live far above any training step's.
        let objective = objective_for(cfg, &batch, streams::BERT_MASK + (1 << 40) + chunk as u64);
        let loss = model.loss(&batch.tokens, &objective)?;
        weighted += f64::from(loss) * samples.len() as f64;
        count += samples.len();
    }
    Ok(weighted / count as f64)
}

/// Called with the model, the run directory and the log after each checkpoint.
pub type CheckpointHook<'a> = dyn Fn(&Model, &Path, &[LogRow]) -> Result<()> + 'a;

/// A training run writing into `out`.
pub struct Trainer<'a> {
    pub data: &'a Splits,
    pub cfg: TrainConfig,
    pub out: PathBuf,
    /// Called after the model files are written at each checkpoint (e.g. to draw pictures).
    pub on_checkpoint: Option<&'a CheckpointHook<'a>>,
    /// Told, in a line, about work between logged steps that takes a while (evaluations).
    pub on_phase: Option<&'a dyn Fn(&str)>,
}

impl Trainer<'_> {
    /// Runs to `cfg.steps`, starting from `model` or, with `resume`, from the checkpoint in
    /// `out`. `progress` is called after every logged step.
    pub fn run(
        &self,
        model: Model,
        resume: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<TrainReport> {
        self.cfg.validate()?;
        let cfg = &self.cfg;
        let train = &self.data.train;
        if train.is_empty() || self.data.test.is_empty() {
            return Err(Error::invalid("the training and test splits must both hold images"));
        }
        if train.seq_len() > model.config.n_positions {
            return Err(Error::invalid(format!(
                "images of {} tokens exceed n_positions = {}",
                train.seq_len(),
                model.config.n_positions
            )));
        }
        std::fs::create_dir_all(&self.out).map_err(|e| Error::io(&self.out, e))?;
        // The run owns its directory: what a killed predecessor was writing is garbage.
        for file in [STATE_FILE, WEIGHTS_FILE] {
            crate::io::remove_temporaries(&self.out.join(file))?;
        }
        let cfg_json = cfg.to_json()?;
        let mut model = model;
        model.precision = cfg.precision;
        let opt = AdamW::new(cfg.adamw, &model.params);
        let mut state = RunState { model, opt, step: 0 };
        let mut log = Vec::new();
        if resume {
            if !self.out.join(STATE_FILE).exists() {
                return Err(Error::invalid(format!(
                    "--resume: no {} in {}",
                    STATE_FILE,
                    self.out.display()
                )));
            }
            // The loaded state keeps `state`'s model, precision included.
            state = load_state(&self.out, state, &cfg_json)?;
            log = read_log(&self.out.join(LOG_FILE))?
                .into_iter()
                .filter(|r| r.step <= state.step)
                .collect();
        }
        // The step of the newest checkpoint on disk (a resumed run starts from one).
        let mut last_checkpoint = resume.then_some(state.step);
        let schedule = cfg.schedule();
        let mut order = BatchOrder::new(cfg.seed, train.len());
        let start = Instant::now();
        let first_step = state.step;
        let seconds_before = log.last().map_or(0.0, |r: &LogRow| r.seconds);
        let tokens_per_step = (cfg.batch * train.seq_len()) as f64;
        let (mut since_loss, mut since_steps, mut since) = (0.0, 0usize, Instant::now());
        while state.step < cfg.steps {
            let s = state.step;
            let batch = gather(train, &step_samples(&mut order, cfg, s), &state.model.config)?;
            let objective = objective_for(cfg, &batch, streams::BERT_MASK + s as u64);
            let lr = schedule.lr(s);
            let options = StepOptions {
                accumulation: cfg.accumulation,
                clip: cfg.clip,
                dropout: Some(DropoutRng { philox: Philox::new(cfg.seed), step: s as u64 }),
            };
            let RunState { model, opt, .. } = &mut state;
            let out = train_step(model, opt, &batch.tokens, &objective, lr, &options)?;
            if !out.applied {
                return Err(self.diverged(s, &out, last_checkpoint));
            }
            let (loss, norm) = (out.loss, out.grad_norm);
            state.step += 1;
            (since_loss, since_steps) = (since_loss + loss, since_steps + 1);
            let done = state.step == cfg.steps;
            let eval_now = state.step.is_multiple_of(cfg.eval_every) || done;
            if eval_now || since.elapsed().as_secs_f64() >= 1.0 {
                // Speed and ETA count training steps only, not the evaluation below.
                let elapsed = since.elapsed().as_secs_f64().max(1e-9);
                let test_loss = if eval_now {
                    Some(self.evaluate(&state.model, &self.data.test, "test")?)
                } else {
                    None
                };
                let row = LogRow {
                    step: state.step,
                    lr,
                    train_loss: since_loss / since_steps as f64,
                    test_loss,
                    grad_norm: norm,
                    tokens_per_s: tokens_per_step * since_steps as f64 / elapsed,
                    seconds: seconds_before + start.elapsed().as_secs_f64(),
                };
                let eta = (cfg.steps - state.step) as f64 * elapsed / since_steps as f64;
                progress(&Progress { row: &row, total_steps: cfg.steps, eta });
                log.push(row);
                (since_loss, since_steps, since) = (0.0, 0, Instant::now());
            }
            let stop_early = cfg.patience.is_some_and(|p| evals_without_improvement(&log) >= p);
            if state.step.is_multiple_of(cfg.checkpoint_every) || done || stop_early {
                self.checkpoint(&state, &cfg_json, &log)?;
                last_checkpoint = Some(state.step);
            }
            if cfg.save_every > 0 && state.step.is_multiple_of(cfg.save_every) {
                state.model.save(&kept_checkpoint_dir(&self.out, state.step))?;
            }
            if stop_early {
                break;
            }
        }
        if state.step == first_step {
            // Resumed with no step left: the run may have been killed between writing the
            // state and the exports of its last checkpoint, so write them all again.
            self.checkpoint(&state, &cfg_json, &log)?;
        }
        let steps_run = (state.step - first_step) as f64;
        let tokens_per_s = steps_run * tokens_per_step / start.elapsed().as_secs_f64().max(1e-9);
        let seconds = seconds_before + start.elapsed().as_secs_f64();
        // The last step evaluated the test loss, unless the run had no step left to take.
        let last_test = log.last().filter(|r| r.step == state.step).and_then(|r| r.test_loss);
        let test_nats_per_token = match last_test {
            Some(t) => t,
            None => self.evaluate(&state.model, &self.data.test, "test")?,
        };
        Ok(TrainReport {
            steps: state.step,
            seconds,
            tokens_per_s,
            test_nats_per_token,
            train_nats_per_token: self.evaluate(&state.model, train, "training")?,
            log,
        })
    }

    /// [`evaluate`] on up to `eval_images` images of `set`, announced to `on_phase`.
    /// The error of a step whose loss or gradient norm is not finite (nothing was applied).
    fn diverged(&self, s: usize, out: &StepOutcome, last_checkpoint: Option<usize>) -> Error {
        let kept = match last_checkpoint {
            Some(step) => {
                format!("the last good checkpoint (step {step}) is in {}", self.out.display())
            }
            None => "no checkpoint was written yet".to_string(),
        };
        Error::invalid(format!(
            "step {}: the loss is {} (gradient norm {}); training stopped, nothing of this step was applied; {kept}",
            s + 1,
            out.loss,
            out.grad_norm
        ))
    }

    fn evaluate(&self, model: &Model, set: &ImageSet, name: &str) -> Result<f64> {
        if let Some(say) = self.on_phase {
            say(&format!("evaluating on {} {name} images", set.len().min(self.cfg.eval_images)));
        }
        evaluate(model, set, &self.cfg, self.cfg.eval_images)
    }

    /// Writes the log, the resumable state and the HF model files; then the caller's hook.
    /// The log goes first: a run killed before its state is written resumes from the previous
    /// state and drops the log's later rows, so no row is ever missing.
    fn checkpoint(&self, state: &RunState, cfg_json: &str, log: &[LogRow]) -> Result<()> {
        write_log(&self.out.join(LOG_FILE), log)?;
        save_state(&self.out, state, cfg_json)?;
        state.model.save(&self.out)?;
        if let Some(hook) = self.on_checkpoint {
            hook(&state.model, &self.out, log)?;
        }
        Ok(())
    }
}

/// How many evaluations since the one with the lowest test loss (0 if the last is the best).
fn evals_without_improvement(log: &[LogRow]) -> usize {
    let tests: Vec<f64> = log.iter().filter_map(|r| r.test_loss).collect();
    let best = tests.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
    tests.len().saturating_sub(best + 1)
}

/// Where `--save-every` keeps the model of step `step`: `out/checkpoints/step-NNNNNN`.
pub fn kept_checkpoint_dir(out: &Path, step: usize) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step:06}"))
}

/// The CSV log inside a run directory.
pub const LOG_FILE: &str = "log.csv";
const LOG_HEADER: &str =
    "step,lr,train_nats,train_bits,test_nats,test_bits,grad_norm,tokens_per_s,seconds";

fn write_log(path: &Path, log: &[LogRow]) -> Result<()> {
    let bits = std::f64::consts::LN_2;
    let mut text = format!("{LOG_HEADER}\n");
    for r in log {
        let (tn, tb) = r.test_loss.map_or((String::new(), String::new()), |t| {
            (format!("{t:.6}"), format!("{:.6}", t / bits))
        });
        text.push_str(&format!(
            "{},{:.6e},{:.6},{:.6},{tn},{tb},{:.4},{:.1},{:.3}\n",
            r.step,
            r.lr,
            r.train_loss,
            r.train_loss / bits,
            r.grad_norm,
            r.tokens_per_s,
            r.seconds
        ));
    }
    crate::io::write_atomic(path, text.as_bytes())
}

fn read_log(path: &Path) -> Result<Vec<LogRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let origin = path.display().to_string();
    let text = String::from_utf8(crate::io::read_bytes(path)?)
        .map_err(|_| Error::format(&origin, "not UTF-8"))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let num = |k: usize| -> Result<f64> {
            f.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::format(&origin, format!("line {}: bad field {k}", i + 1)))
        };
        if f.len() != 9 {
            return Err(Error::format(
                &origin,
                format!("line {}: {} fields, expected 9", i + 1, f.len()),
            ));
        }
        rows.push(LogRow {
            step: num(0)? as usize,
            lr: num(1)?,
            train_loss: num(2)?,
            test_loss: if f[4].is_empty() { None } else { Some(num(4)?) },
            grad_norm: num(6)?,
            tokens_per_s: num(7)?,
            seconds: num(8)?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: usize, test: Option<f64>) -> LogRow {
        LogRow {
            step,
            lr: 0.0,
            train_loss: 1.0,
            test_loss: test,
            grad_norm: 0.0,
            tokens_per_s: 0.0,
            seconds: 0.0,
        }
    }

    #[test]
    fn early_stopping_counts_evaluations_since_the_best() {
        let log = [
            row(1, Some(2.0)),
            row(2, None),
            row(3, Some(1.5)),
            row(4, Some(1.6)),
            row(5, Some(1.5)),
        ];
        assert_eq!(evals_without_improvement(&log), 2, "a tie does not count as an improvement");
        assert_eq!(evals_without_improvement(&log[..3]), 0);
        assert_eq!(evals_without_improvement(&[]), 0);
    }
}
