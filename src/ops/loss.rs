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

/// `exp(z − shift)` of every `z` in `row`, appended to `out`: a batch for
/// [`Float::exp_in_place`] once `out` holds every row's terms.
fn push_shifted<T: Float>(row: &[T], shift: T, out: &mut Vec<T>) {
    out.extend(row.iter().map(|&z| z - shift));
}

/// How many rows [`logsumexp_rows`] sums side by side.
pub const LSE_ROWS: usize = 8;

/// The largest entry of `row` (−∞ if empty), NaN skipped as by [`Float::max`]: eight running
/// maxima over interleaved entries, then one over those. A maximum does not depend on the order
/// it is taken in, so this is the left-to-right fold's value, found without its chain of
/// dependent steps. (The one order effect, which of `−0` and `+0` wins a tie, changes no later
/// value: `z − 0` and `0 + ln s` come out the same for either sign.)
fn row_max<T: Float>(row: &[T]) -> T {
    let minus_inf = T::from_f64(f64::NEG_INFINITY);
    let mut lanes = [minus_inf; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &z) in lanes.iter_mut().zip(chunk) {
            *m = m.max(z);
        }
    }
    let tail = chunks.remainder().iter().copied().fold(minus_inf, T::max);
    lanes.into_iter().fold(tail, T::max)
}

/// `lse[r] = log Σ_v exp(z[r, v])` for the `lse.len()` (at most [`LSE_ROWS`]) rows of `v`
/// logits in `rows`, each shifted by its maximum `m` for stability: `m + ln Σ_v exp(z − m)`.
/// `terms` is scratch space.
///
/// Each row's terms are summed from 0 in increasing `v` (SPEC §5.8), but the rows' sums advance
/// together, one step of every row per `v`. A single running sum is a chain of additions, each
/// waiting for the one before; eight independent chains keep the adder busy. Same sums, same
/// bits, several times fewer cycles: on the emoji preset (513 logits per row) this sum was the
/// largest part of the loss's forward.
pub fn logsumexp_rows<T: Float>(rows: &[T], v: usize, terms: &mut Vec<T>, lse: &mut [T]) {
    let n = lse.len();
    assert!(n <= LSE_ROWS && rows.len() == n * v, "logsumexp_rows: {n} rows of {v}");
    let mut m = [T::ZERO; LSE_ROWS];
    terms.clear();
    for (r, row) in rows.chunks_exact(v.max(1)).enumerate() {
        m[r] = row_max(row);
        push_shifted(row, m[r], terms);
    }
    T::exp_in_place(terms);
    // Rows past `n` sum zeros, so the loop below always has all its chains.
    terms.resize(LSE_ROWS * v, T::ZERO);
    let row: [&[T]; LSE_ROWS] = std::array::from_fn(|r| &terms[r * v..][..v]);
    let mut s = [T::ZERO; LSE_ROWS];
    for j in 0..v {
        for (sum, row) in s.iter_mut().zip(&row) {
            *sum += row[j];
        }
    }
    for (r, out) in lse.iter_mut().enumerate() {
        *out = m[r] + s[r].ln();
    }
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
    let mut lse = vec![T::ZERO; n];
    lse.par_chunks_mut(LSE_ROWS).enumerate().for_each_with(Vec::new(), |terms, (g, out)| {
        let rows = &zv.data()[g * LSE_ROWS * v..][..out.len() * v];
        logsumexp_rows(rows, v, terms, out);
    });
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
            let (c, t) = (dl * self.weights[r], self.targets[r]);
            // The softmax row: p_j = exp(z_j − lse).
            p.clear();
            push_shifted(z, self.lse[r], p);
            T::exp_in_place(p);
            // c·(p_j − [j = t]): c·p_j everywhere (p − 0 = p exactly), then the target's entry.
            let before = dz[t];
            if accumulate {
                dz.iter_mut().zip(p.iter()).for_each(|(g, &p)| *g += c * p);
            } else {
                dz.iter_mut().zip(p.iter()).for_each(|(g, &p)| *g = c * p);
            }
            let x = c * (p[t] - T::ONE);
            dz[t] = if accumulate { before + x } else { x };
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;

    /// SPEC §5.8's logsumexp of one row as written: the maximum folded left to right, then the
    /// terms `exp(z − m)` summed left to right.
    fn logsumexp_reference(row: &[f32]) -> f32 {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut terms: Vec<f32> = row.iter().map(|&z| z - m).collect();
        f32::exp_in_place(&mut terms);
        m + terms.iter().fold(0.0, |s, &t| s + t).ln()
    }

    #[test]
    fn rows_summed_side_by_side_give_the_left_to_right_sums_bit_for_bit() {
        let mut terms = Vec::new();
        for v in [1, 7, 8, 9, 64, 513] {
            for n in 1..=LSE_ROWS {
                let mut z = vec![0.0f32; n * v];
                Philox::new(5).fill_normal((v * 16 + n) as u64, 0.0, 3.0, &mut z);
                // Masked logits, and a row whose maximum is a tie of −0 and +0.
                z[0] = f32::NEG_INFINITY;
                if v >= 2 && n >= 2 {
                    z[v..2 * v].fill(-1.0);
                    z[v] = -0.0;
                    z[2 * v - 1] = 0.0;
                }
                let mut lse = vec![0.0; n];
                logsumexp_rows(&z, v, &mut terms, &mut lse);
                for (r, &got) in lse.iter().enumerate() {
                    let want = logsumexp_reference(&z[r * v..][..v]);
                    assert_eq!(got.to_bits(), want.to_bits(), "v {v}, n {n}, row {r}");
                }
            }
        }
    }

    #[test]
    fn a_nan_logit_makes_its_row_nan_and_no_other() {
        let mut z = vec![0.5f32; 3 * 9];
        z[9 + 4] = f32::NAN;
        let mut lse = vec![0.0; 3];
        logsumexp_rows(&z, 9, &mut Vec::new(), &mut lse);
        assert!(lse[1].is_nan());
        assert_eq!(lse[0].to_bits(), logsumexp_reference(&z[..9]).to_bits());
        assert_eq!(lse[2].to_bits(), lse[0].to_bits());
    }
}
