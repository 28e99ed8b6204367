//! One training step — forward, loss, backward, clip, AdamW — written once.
//!
//! The trainer (`igpt train`), the AdamW part of a model golden (`igpt golden --steps`) and the
//! training benchmark (`igpt bench train`) all call [`train_step`]; what differs between them is
//! stated in [`StepOptions`], never in a second copy of the step:
//!
//! | caller | micro-batches | clipping | dropout | learning rate |
//! |---|---|---|---|---|
//! | `igpt train` | `--accumulation` | `--clip` (1.0 by default) | the config's, streams of (seed, step) | the schedule's `lr(s)` |
//! | `igpt golden --steps K` | 1 | none | none | constant `--lr`, same batch every step |
//! | `igpt bench train` | 1 | 1.0 (the trainer's default) | the config's (presets: 0) | constant |
//!
//! ## The step, for a batch of `B` sequences cut into `A` equal micro-batches
//! ```text
//! for k in 0..A:  (ℓ_k, g_k) = loss and gradients of micro-batch k        (in order k = 0, 1, …)
//! ℓ = (Σ_k ℓ_k) / A          g = (Σ_k g_k) · (1/A)                       (summed in order k)
//! n = ‖g‖₂ over all parameters (f64, canonical order);  g ← g · min(1, clip / n)
//! AdamW(params, g, lr)                                   only if ℓ and n are finite
//! ```
//! A non-finite loss or norm leaves the parameters and AdamW's moments untouched: the caller
//! decides what a diverged step means (the trainer stops with an error naming the last good
//! checkpoint).

use super::adamw::AdamW;
use super::schedule::{clip_global_norm, global_norm};
use crate::error::Result;
use crate::model::{DropoutRng, Model, Objective, TokenBatch};
use crate::tensor::Tensor;

/// What a step does besides forward, backward and AdamW (see the module doc's table).
#[derive(Clone, Copy, Debug)]
pub struct StepOptions {
    /// Micro-batches per step (gradient accumulation); the batch must divide into them.
    pub accumulation: usize,
    /// Global-norm clipping bound (`None`: no clipping).
    pub clip: Option<f64>,
    /// Dropout streams (`None`: eval-mode forward, no dropout at all).
    pub dropout: Option<DropoutRng>,
}

impl StepOptions {
    /// The step a golden records: one micro-batch, no clipping, no dropout.
    pub fn golden() -> StepOptions {
        StepOptions { accumulation: 1, clip: None, dropout: None }
    }
}

/// What one step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    /// Mean loss (nats per token) before the update.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Whether AdamW was applied (`false` when the loss or the norm is not finite).
    pub applied: bool,
}

/// One training step on `batch` under `objective` at learning rate `lr` (see the module doc).
///
/// # Errors
/// If the model rejects the batch (tokens or labels out of range, a sequence too long).
pub fn train_step(
    model: &mut Model,
    opt: &mut AdamW,
    batch: &TokenBatch,
    objective: &Objective,
    lr: f64,
    opts: &StepOptions,
) -> Result<StepOutcome> {
    let (loss, mut grads) = accumulated_grads(model, batch, objective, opts)?;
    let grad_norm = match opts.clip {
        Some(c) => clip_global_norm(&mut grads, c),
        None => global_norm(&grads),
    };
    let applied = loss.is_finite() && grad_norm.is_finite();
    if applied {
        opt.step(&mut model.params, &grads, lr);
    }
    Ok(StepOutcome { loss, grad_norm, applied })
}

/// Mean loss and averaged gradients over the micro-batches, in order.
fn accumulated_grads(
    model: &Model,
    batch: &TokenBatch,
    objective: &Objective,
    opts: &StepOptions,
) -> Result<(f64, Vec<Tensor<f32>>)> {
    let parts = opts.accumulation.max(1);
    let micro = batch.batch / parts;
    let mut total_loss = 0.0;
    let mut sum: Option<Vec<Tensor<f32>>> = None;
    for k in 0..parts {
        let (loss, grads) = if parts == 1 {
            model.loss_and_grads(batch, objective, opts.dropout)?
        } else {
            let rows = k * micro..(k + 1) * micro;
            let obj = micro_objective(objective, rows.clone(), batch.seq);
            model.loss_and_grads(&micro_batch(batch, rows), &obj, opts.dropout)?
        };
        total_loss += f64::from(loss);
        sum = Some(match sum {
            None => grads,
            Some(mut acc) => {
                for (a, g) in acc.iter_mut().zip(&grads) {
                    a.data_mut().iter_mut().zip(g.data()).for_each(|(x, y)| *x += y);
                }
                acc
            }
        });
    }
    let mut grads = sum.unwrap_or_default();
    if parts > 1 {
        let inv = 1.0 / parts as f32;
        grads.iter_mut().for_each(|g| g.data_mut().iter_mut().for_each(|x| *x *= inv));
    }
    Ok((total_loss / parts as f64, grads))
}

/// The sequences `rows` of `batch`.
fn micro_batch(batch: &TokenBatch, rows: std::ops::Range<usize>) -> TokenBatch {
    let t = batch.seq;
    TokenBatch { ids: batch.ids[rows.start * t..rows.end * t].to_vec(), batch: rows.len(), seq: t }
}

/// The part of `objective` that belongs to the sequences `rows` (of `seq` tokens each).
fn micro_objective(objective: &Objective, rows: std::ops::Range<usize>, seq: usize) -> Objective {
    match objective {
        Objective::Bert { mask } => {
            Objective::Bert { mask: mask[rows.start * seq..rows.end * seq].to_vec() }
        }
        Objective::Joint { labels } => Objective::Joint { labels: labels[rows].to_vec() },
        Objective::Classify { labels } => Objective::Classify { labels: labels[rows].to_vec() },
        Objective::Autoregressive | Objective::HfShifted => objective.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;
    use crate::train::AdamWConfig;
    use crate::Token;

    /// A 2-layer model with a random (non-zero) head, and a batch of four sequences.
    fn model_and_batch() -> (Model, TokenBatch) {
        let mut config = Config::preset("digits").unwrap();
        config.n_layer = 2;
        let mut model = Model::init(config, 3).unwrap();
        for p in model.params.iter_mut() {
            let n = p.data().len();
            p.data_mut()
                .iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x += 0.01 * ((i % 7) as f32 - 3.0) / n as f32);
        }
        let ids: Vec<Token> = (0..4 * 16).map(|i| i * 5 % 17).collect();
        let batch = TokenBatch::new(ids, 4, 16, &model.config, "test").unwrap();
        (model, batch)
    }

    #[test]
    fn accumulation_averages_the_micro_batches_in_order() {
        let (model, batch) = model_and_batch();
        let whole =
            accumulated_grads(&model, &batch, &Objective::Autoregressive, &StepOptions::golden());
        let halves = StepOptions { accumulation: 2, ..StepOptions::golden() };
        let (loss2, grads2) =
            accumulated_grads(&model, &batch, &Objective::Autoregressive, &halves).unwrap();
        let (loss1, grads1) = whole.unwrap();
        let first = model
            .loss_and_grads(&micro_batch(&batch, 0..2), &Objective::Autoregressive, None)
            .unwrap();
        let second = model
            .loss_and_grads(&micro_batch(&batch, 2..4), &Objective::Autoregressive, None)
            .unwrap();
        assert_eq!(loss2, (f64::from(first.0) + f64::from(second.0)) / 2.0);
        assert!((loss1 - loss2).abs() < 1e-6, "{loss1} vs {loss2}");
        for ((a, b), (g1, g2)) in grads1.iter().zip(&grads2).zip(first.1.iter().zip(&second.1)) {
            for ((x, y), (u, v)) in
                a.data().iter().zip(b.data()).zip(g1.data().iter().zip(g2.data()))
            {
                assert_eq!(*y, (u + v) * 0.5);
                assert!((x - y).abs() <= 1e-5 + 1e-3 * x.abs());
            }
        }
    }

    #[test]
    fn clipping_bounds_the_update_and_a_non_finite_step_changes_nothing() {
        let (mut model, batch) = model_and_batch();
        let mut opt = AdamW::new(AdamWConfig::default(), &model.params);
        let clip = StepOptions { clip: Some(1e-3), ..StepOptions::golden() };
        let out = train_step(&mut model, &mut opt, &batch, &Objective::Autoregressive, 1e-3, &clip)
            .unwrap();
        assert!(out.applied && out.grad_norm > 1e-3 && opt.step == 1);
        model.params[0].data_mut()[0] = f32::NAN;
        let (params_before, opt_before) = (model.params.clone(), opt.clone());
        let out = train_step(&mut model, &mut opt, &batch, &Objective::Autoregressive, 1e-3, &clip);
        assert!(!out.as_ref().unwrap().applied && out.unwrap().loss.is_nan());
        let bits = |ps: &[Tensor<f32>]| -> Vec<u32> {
            ps.iter().flat_map(|p| p.data().iter().map(|x| x.to_bits())).collect()
        };
        assert_eq!(bits(&model.params), bits(&params_before), "parameters untouched");
        assert_eq!(opt, opt_before, "moments and step count untouched");
    }
}
