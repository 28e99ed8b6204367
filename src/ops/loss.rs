//! Softmax cross-entropy with integer targets: the training loss of every objective.
//!
//! For logits `z: [N, V]`, targets `t: [N]` and per-row weights `w: [N]`:
//! ```text
//! lse_n = log Σ_v exp(z[n, v])                    (computed as m + log Σ exp(z − m), m = max)
//! L     = Σ_n w_n · (lse_n − z[n, t_n])
//! ∂z[n, v] = ∂L · w_n · (softmax(z_n)_v − [v = t_n])
//! ```
//! The weights say which rows are scored and how they are averaged:
//! - mean over all rows (autoregressive): `w_n = 1/N`;
//! - mean over the scored rows of a mask (HF's shifted loss, BERT's masked positions pooled):
//!   `w_n = mask_n / Σ mask`;
//! - BERT's per-image mean: `w_n = mask_n / (count of masked positions in n's image) / B`.
//!
//! The forward saves `lse` per row; the backward recomputes the softmax from the logits.

use crate::autodiff::{Backward, Grads, Tape, Var};
use crate::tensor::{Float, Tensor};
use rayon::prelude::*;

/// `exp(z − shift)` of every `z` in `row`, into `out` (a row-long scratch buffer): a batch for
/// [`Float::exp_in_place`].
fn shifted_exps<T: Float>(row: &[T], shift: T, out: &mut Vec<T>) {
    out.clear();
    out.extend(row.iter().map(|&z| z - shift));
    T::exp_in_place(out);
}

/// `log Σ exp(row)`, shifted by the row maximum for stability; the terms `exp(z − m)` are
/// computed into `terms` (`shifted_exps`) and summed left to right.
pub fn logsumexp<T: Float>(row: &[T], terms: &mut Vec<T>) -> T {
    let m = row.iter().copied().fold(T::from_f64(f64::NEG_INFINITY), T::max);
    shifted_exps(row, m, terms);
    let mut s = T::ZERO;
    for &e in terms.iter() {
        s += e;
    }
    m + s.ln()
}

/// `L = Σ_n w_n · CE(z_n, t_n)` over the rows of `logits` (`[…, V]`, flattened to `[N, V]`).
///
/// # Panics
/// If a target is out of range or the lengths disagree (targets are validated upstream).
pub fn cross_entropy<T: Float>(
    tape: &mut Tape<T>,
    logits: Var,
    targets: &[usize],
    weights: &[T],
) -> Var {
    let zv = tape.value(logits);
    let (n, v) = (zv.rows(), zv.cols());
    assert_eq!(targets.len(), n, "cross_entropy: {} targets for {n} rows", targets.len());
    assert_eq!(weights.len(), n, "cross_entropy: {} weights for {n} rows", weights.len());
    let lse: Vec<T> = (0..n)
        .into_par_iter()
        .map_with(Vec::new(), |terms, r| logsumexp(&zv.data()[r * v..(r + 1) * v], terms))
        .collect();
    let mut loss = T::ZERO;
    for r in 0..n {
        assert!(targets[r] < v, "cross_entropy: target {} out of range 0..{v}", targets[r]);
        if weights[r] != T::ZERO {
            loss += weights[r] * (lse[r] - zv.data()[r * v + targets[r]]);
        }
    }
    let state =
        CrossEntropyBackward { logits, targets: targets.to_vec(), weights: weights.to_vec(), lse };
    tape.push_op(Tensor::scalar(loss), &[logits], state)
}

/// Mean cross-entropy over the rows where `mask` is true (all rows when `mask` is `None`).
///
/// # Panics
/// As [`cross_entropy`]; also if the mask scores no row.
pub fn cross_entropy_mean<T: Float>(
    tape: &mut Tape<T>,
    logits: Var,
    targets: &[usize],
    mask: Option<&[bool]>,
) -> Var {
    let n = targets.len();
    let scored: Vec<bool> = mask.map_or_else(|| vec![true; n], |m| m.to_vec());
    let count = scored.iter().filter(|&&s| s).count();
    assert!(count > 0, "cross_entropy_mean: no scored rows");
    let w = T::ONE / T::from_f64(count as f64);
    let weights: Vec<T> = scored.iter().map(|&s| if s { w } else { T::ZERO }).collect();
    cross_entropy(tape, logits, targets, &weights)
}

struct CrossEntropyBackward<T> {
    logits: Var,
    targets: Vec<usize>,
    weights: Vec<T>,
    lse: Vec<T>,
}

impl<T: Float> Backward<T> for CrossEntropyBackward<T> {
    fn backward(&self, tape: &Tape<T>, dl: &Tensor<T>, grads: &mut Grads<T>) {
        let zv = tape.value(self.logits);
        let v = zv.cols();
        let dl = dl.item();
        let Some(slot) = grads.slot(tape, self.logits) else { return };
        let accumulate = slot.accumulate;
        slot.buf.par_chunks_mut(v).enumerate().for_each_with(Vec::new(), |p, (r, dz)| {
            let z = &zv.data()[r * v..(r + 1) * v];
            let c = dl * self.weights[r];
            // The softmax row: p_j = exp(z_j − lse).
            shifted_exps(z, self.lse[r], p);
            for (j, (g, &p)) in dz.iter_mut().zip(p.iter()).enumerate() {
                let onehot = if j == self.targets[r] { T::ONE } else { T::ZERO };
                let x = c * (p - onehot);
                *g = if accumulate { *g + x } else { x };
            }
        });
    }
}
