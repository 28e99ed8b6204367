//! Sampling: turning next-token logits into tokens, reproducibly, and generating images.
//!
//! ## Choosing one token (specified exactly so a GPU variant draws the same tokens)
//! Given logits `z` over the `V − 1` colours, settings (temperature `τ`, top-k `k`, top-p `p`)
//! and one uniform `u ∈ [0, 1)`:
//! 1. `τ = 0` (or `k = 1`) is greedy: the first index of the maximum.
//! 2. Weights, in f64: `w_i = exp((z_i − max z) / τ)`.
//! 3. top-k: keep the `k` largest weights (ties: the lower index wins); others get weight 0.
//! 4. top-p: order the kept tokens by weight, descending (ties: lower index first), and keep the
//!    shortest prefix whose weight reaches `p · Σ w`; others get weight 0.
//! 5. Inverse CDF **in token order**: with `S = Σ w`, the token is the smallest `i` whose
//!    cumulative weight `C_i = Σ_{j ≤ i} w_j` satisfies `u·S < C_i` (a token of weight 0 is
//!    never chosen).
//!
//! The uniform for position `t` of sequence `b` is uniform `t` of Philox stream
//! `streams::SAMPLE + b` under the seed (`(u32 >> 8)·2⁻²⁴`, see `rng`), so every token of every
//! sequence has its own counter and sampling is independent of batching and threads.
//!
//! The paper samples with `τ = 1` and the full softmax (no top-k, no top-p): the defaults.

pub mod pictures;

use crate::error::{Error, Result};
use crate::model::decode::Decoder;
use crate::model::Model;
use crate::rng::{streams, Philox};
use crate::token::Token;

/// How logits become a token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingSettings {
    /// Temperature `τ ≥ 0`; 0 is greedy.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// Nucleus: keep the most likely tokens up to probability mass `p ∈ (0, 1]`.
    pub top_p: Option<f64>,
}

impl Default for SamplingSettings {
    /// The paper's: temperature 1, the full distribution.
    fn default() -> Self {
        SamplingSettings { temperature: 1.0, top_k: None, top_p: None }
    }
}

impl SamplingSettings {
    /// Rejects a negative or non-finite temperature, `k = 0`, and `p` outside (0, 1].
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::invalid(format!(
                "temperature must be a non-negative number, got {}",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(Error::invalid("top-k must be at least 1"));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::invalid(format!("top-p must lie in (0, 1], got {p}")));
            }
        }
        Ok(())
    }
}

/// The first index of the largest logit.
fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

/// Indices ordered by weight, descending; ties keep the lower index first.
fn by_weight_desc(w: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|&a, &b| w[b].total_cmp(&w[a]).then(a.cmp(&b)));
    order
}

/// Picks a token from `logits` with the uniform `u` (module doc, steps 1–5).
pub fn choose_token(logits: &[f32], s: &SamplingSettings, u: f32) -> usize {
    if s.temperature == 0.0 || s.top_k == Some(1) {
        return argmax(logits);
    }
    let m = logits[argmax(logits)];
    let mut w: Vec<f64> =
        logits.iter().map(|&z| ((f64::from(z) - f64::from(m)) / s.temperature).exp()).collect();
    let order = by_weight_desc(&w);
    if let Some(k) = s.top_k {
        order.iter().skip(k).for_each(|&i| w[i] = 0.0);
    }
    if let Some(p) = s.top_p {
        let target = p * w.iter().sum::<f64>();
        let mut acc = 0.0;
        for &i in &order {
            if acc >= target {
                w[i] = 0.0;
            }
            acc += w[i];
        }
    }
    let threshold = f64::from(u) * w.iter().sum::<f64>();
    let mut acc = 0.0;
    for (i, &wi) in w.iter().enumerate() {
        acc += wi;
        if threshold < acc {
            return i;
        }
    }
    // Unreachable for u < 1 (threshold < S); fall back to the last token of positive weight.
    w.iter().rposition(|&x| x > 0.0).unwrap_or(0)
}

/// The uniform of position `t` of sequence `b` under `seed`.
pub fn sampling_uniform(seed: u64, b: usize, t: usize) -> f32 {
    Philox::new(seed).uniform_at(streams::SAMPLE + b as u64, t as u64)
}

/// Completes each of `prompts` (colour tokens, possibly empty, possibly of different
/// lengths) to `len` tokens by autoregressive sampling with a key/value cache. All sequences
/// advance together: at position `t` sequence `b` is fed SOS (t = 0) or its token `t − 1`, and
/// its token `t` is kept from the prompt or sampled with uniform `t` of stream `SAMPLE + b`.
pub fn complete(
    model: &Model,
    prompts: &[Vec<Token>],
    len: usize,
    s: &SamplingSettings,
    seed: u64,
) -> Result<Vec<Vec<Token>>> {
    s.validate()?;
    if len > model.config.n_positions {
        return Err(Error::invalid(format!(
            "{len} tokens exceed n_positions = {}",
            model.config.n_positions
        )));
    }
    let colours = model.config.vocab_size - 1;
    if prompts.iter().any(|p| p.len() > len || p.iter().any(|&t| t as usize >= colours)) {
        return Err(Error::invalid(format!(
            "prompts must be at most {len} colour tokens (0..{colours})"
        )));
    }
    let mut seqs: Vec<Vec<Token>> = prompts.to_vec();
    if seqs.is_empty() {
        return Ok(seqs);
    }
    let mut decoder = Decoder::new(model, seqs.len())?;
    for t in 0..len {
        let inputs: Vec<Token> =
            seqs.iter().map(|q| if t == 0 { model.config.sos() } else { q[t - 1] }).collect();
        let logits = decoder.step(&inputs)?;
        for (b, q) in seqs.iter_mut().enumerate() {
            if q.len() == t {
                let row = &logits.data()[b * colours..(b + 1) * colours];
                // A colour index below `colours`, which a validated vocabulary fits in a Token.
                q.push(choose_token(row, s, sampling_uniform(seed, b, t)) as Token);
            }
        }
    }
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_ties() {
        let z = [0.5, 2.0, 2.0, -1.0];
        let greedy = SamplingSettings { temperature: 0.0, ..SamplingSettings::default() };
        assert_eq!(choose_token(&z, &greedy, 0.9), 1);
        let k1 = SamplingSettings { top_k: Some(1), ..SamplingSettings::default() };
        assert_eq!(choose_token(&z, &k1, 0.9), 1);
    }

    #[test]
    fn inverse_cdf_in_token_order() {
        // Equal logits: u in [i/4, (i+1)/4) picks token i.
        let z = [0.0f32; 4];
        let s = SamplingSettings::default();
        for (u, want) in [(0.0, 0), (0.24, 0), (0.25, 1), (0.6, 2), (0.99, 3)] {
            assert_eq!(choose_token(&z, &s, u), want, "u = {u}");
        }
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let z = [3.0f32, 0.0, 2.9, 1.0];
        let k2 = SamplingSettings { top_k: Some(2), ..SamplingSettings::default() };
        // Token 0 alone holds 48 % of the mass: p = 0.4 keeps it alone, p = 0.5 needs token 2 too.
        let p = SamplingSettings { top_p: Some(0.4), ..SamplingSettings::default() };
        let p2 = SamplingSettings { top_p: Some(0.5), ..SamplingSettings::default() };
        for i in 0..100 {
            let u = i as f32 / 100.0;
            assert!([0, 2].contains(&choose_token(&z, &k2, u)));
            assert_eq!(choose_token(&z, &p, u), 0);
            assert!([0, 2].contains(&choose_token(&z, &p2, u)));
        }
    }

    #[test]
    fn invalid_settings_are_rejected() {
        for s in [
            SamplingSettings { temperature: -1.0, ..SamplingSettings::default() },
            SamplingSettings { top_k: Some(0), ..SamplingSettings::default() },
            SamplingSettings { top_p: Some(0.0), ..SamplingSettings::default() },
            SamplingSettings { top_p: Some(1.5), ..SamplingSettings::default() },
        ] {
            assert!(s.validate().is_err(), "{s:?}");
        }
    }
}
