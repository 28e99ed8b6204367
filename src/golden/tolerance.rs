//! The tolerance policy (SPEC §7): the one rule that decides whether a candidate's tensor
//! agrees with a golden's, for every tensor of every golden.
//!
//! ## The rule
//! For a reference tensor `b` and the candidate's `a`, element `i` passes when
//! ```text
//! |a_i − b_i| ≤ atol + rtol · max_j |b_j| + slack_i
//! ```
//! and integer tensors (ids, labels, sampled tokens) must be equal. Without slack this is the
//! normwise bound `‖a − b‖∞ ≤ atol + rtol·‖b‖∞`.
//!
//! *Why the tensor's largest magnitude.* A correct port evaluates the same sums in another
//! order or another precision. The rounding error of a sum of `k` terms is about
//! `√k · u · Σ|terms|` (`u` the unit roundoff, 2⁻²⁴ for f32; Higham's probabilistic bound): it
//! follows the magnitudes summed, not the result, and in a tensor those magnitudes are set by
//! its large entries (every row of `∂wte` sums rows of the same `∂h`; every attention output
//! mixes the same values). Measured on a random-weight model with large attention weights
//! (`tests/golden.rs`), igpt's own f32 gradients are off from an f64 evaluation by up to
//! 2.2e-4 of the tensor's rms at small entries, but by at most 2e-5 of its largest entry. A
//! per-element relative bound fails correct ports at small entries; an rms-scaled bound fails
//! them where a tensor is heavy-tailed.
//!
//! *Why `rtol = 1e-4` for f32.* The longest reduction `k` of a golden's computation (recorded
//! in its metadata) gives a rounding error of about `√k · 2⁻²⁴` of the magnitudes; depth and
//! cancellation amplify it by a modest factor (the 2e-5 above, at `k = 512`). `1e-4` covers
//! `√k · 2⁻²⁴` with a margin of 6.5 up to `k = 2¹⁶`; beyond, `rtol` grows as `√k`
//! ([`Tolerance::f32`]). An error of 1e-3 in a tensor is ten times the allowance at its largest
//! entry, so it fails.
//!
//! *Why slack for AdamW.* Adam divides each gradient by its own running magnitude: step `t`
//! moves an element by `lr · m̂_t/(√v̂_t + ε)`, so a gradient error `δ` moves the update by up
//! to `lr · δ · (1 + C_t)/(√v̂_t + ε)` (`C_t` Adam's bound on `|m̂_t|/√v̂_t`,
//! [`crate::train::adamw::step_bound`]). Where the gradient is comparable to the error a
//! passing gradient may have (`δ_t = rtol · max_j √v̂_t,j`, the rule above applied to the
//! gradients' running magnitude) or to ε, the update's
//! direction is decided by rounding. The golden records, per element of every parameter after
//! its AdamW steps, the slack that this allows, capped at the most two updates can differ:
//! ```text
//! slack_i = lr · Σ_t min(2·C_t, rtol · (1 + C_t) · max_j √v̂_t,j / (√v̂_t,i + ε))
//! ```
//! (`v̂_t = v_t/(1 − β₂ᵗ)` after step `t`). It is a few `rtol·K·lr` for a typical element
//! (whose gradient is within a factor of ten of the largest) and reaches Adam's bound only where the gradient is at
//! the noise floor (the key part of `c_attn.bias`, whose true gradient is exactly zero; unused
//! rows of `wte`/`wpe`; any element whose gradient happens to be that small) — by computation,
//! not by name.
//!
//! A lower precision is another constructor with its own `rtol`; the rule stays. bf16 has two:
//! 1e-3 for one op ([`Tolerance::bf16`]) and two bf16 spacings for a whole model
//! ([`Tolerance::bf16_model`]), where a rounding that two correct ports flip differently moves
//! a value by a bf16 spacing and the difference carries through the layers (SPEC §21.5).

use crate::error::Result;
use crate::io::json::{parse_json, Json};
use crate::kernels::Precision;
use crate::train::adamw::{step_bound, AdamW};

/// Prefix of the reference tensors that hold per-element slack for another tensor:
/// `slack.NAME` widens the allowance of `NAME` and is not itself compared.
pub const SLACK_PREFIX: &str = "slack.";

/// `rtol` of the f32 class at reductions of up to 2¹⁶ terms.
pub const F32_RTOL: f64 = 1e-4;

/// Reduction length up to which a class's `rtol` ([`F32_RTOL`], [`BF16_RTOL`]) holds; beyond,
/// `rtol` grows as `√k`.
const FLAT_REDUCTION: f64 = 65536.0;

/// `rtol` of the bf16 class (a bf16 candidate against a bf16 op golden, SPEC §21.5).
pub const BF16_RTOL: f64 = 1e-3;

/// `rtol` of the bf16 model class: two bf16 spacings, 2·2⁻⁸ (SPEC §21.5: in a whole model, a
/// bf16 rounding that two correct ports flip differently moves a value by one bf16 spacing,
/// and the discrepancy carries on through the layers).
pub const BF16_MODEL_RTOL: f64 = 2.0 / 256.0;

/// What a golden holds, which picks its class in bf16: one op, or a whole model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Op,
    Model,
}

/// The allowance of one comparison: `atol + rtol · max_j |b_j|` for every element of `b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// The f32 class for a computation whose longest reduction has `reduction` terms:
    /// `rtol = 1e-4 · max(1, sqrt(reduction / 2¹⁶))`, `atol = 0`.
    pub fn f32(reduction: usize) -> Tolerance {
        Tolerance::class(F32_RTOL, reduction)
    }

    /// The bf16 class of op goldens (SPEC §21.5): `rtol = 1e-3 · max(1, sqrt(reduction / 2¹⁶))`,
    /// `atol = 0`.
    pub fn bf16(reduction: usize) -> Tolerance {
        Tolerance::class(BF16_RTOL, reduction)
    }

    /// The bf16 class of model goldens (SPEC §21.5): `rtol = 2⁻⁷ · max(1, sqrt(reduction /
    /// 2¹⁶))`, `atol = 0`.
    pub fn bf16_model(reduction: usize) -> Tolerance {
        Tolerance::class(BF16_MODEL_RTOL, reduction)
    }

    /// A precision's class: `rtol` up to 2¹⁶-term reductions, growing as `√k` beyond (the
    /// rounding error of a longer sum grows so), `atol = 0`.
    fn class(rtol: f64, reduction: usize) -> Tolerance {
        let growth = (reduction as f64 / FLAT_REDUCTION).sqrt().max(1.0);
        Tolerance { rtol: rtol * growth, atol: 0.0 }
    }

    /// The class of a golden of `kind` computed in `precision`, and its name as the golden
    /// records it (`f32`, `bf16`, `bf16-model`).
    pub fn for_golden(
        kind: Kind,
        precision: Precision,
        reduction: usize,
    ) -> (Tolerance, &'static str) {
        match (precision, kind) {
            (Precision::F32, _) => (Tolerance::f32(reduction), "f32"),
            (Precision::Bf16, Kind::Op) => (Tolerance::bf16(reduction), "bf16"),
            (Precision::Bf16, Kind::Model) => (Tolerance::bf16_model(reduction), "bf16-model"),
        }
    }

    /// The longest reduction a golden's `tolerances` metadata records (1 if none).
    pub fn recorded_reduction(text: Option<&str>, origin: &str) -> Result<usize> {
        let Some(text) = text else { return Ok(1) };
        let json = parse_json(text.as_bytes(), &format!("{origin} (tolerances metadata)"))?;
        Ok(json.get("reduction").and_then(Json::as_f64).map_or(1, |r| r.max(1.0) as usize))
    }

    /// The scale errors are measured against: the tensor's largest magnitude `max_j |b_j|`
    /// (0 for an empty tensor; NaN is ignored).
    pub fn scale(reference: &[f64]) -> f64 {
        reference.iter().fold(0.0, |m, b| m.max(b.abs()))
    }

    /// How far a candidate element may lie from its reference in a tensor of `scale`, before
    /// any slack.
    pub fn allowance(&self, scale: f64) -> f64 {
        self.atol + self.rtol * scale
    }

    /// The `tolerances` metadata of a golden: `{"class", "reduction", "rtol", "atol"}`.
    pub fn to_json(&self, class: &str, reduction: usize) -> Json {
        Json::Object(vec![
            ("class".into(), class.into()),
            ("reduction".into(), reduction.into()),
            ("rtol".into(), self.rtol.into()),
            ("atol".into(), self.atol.into()),
        ])
    }

    /// The tolerance a golden records in its `tolerances` metadata; a golden without one is
    /// held to the f32 class at short reductions.
    pub fn from_metadata(text: Option<&str>, origin: &str) -> Result<Tolerance> {
        let default = Tolerance::f32(1);
        let Some(text) = text else { return Ok(default) };
        let json = parse_json(text.as_bytes(), &format!("{origin} (tolerances metadata)"))?;
        let num = |k: &str, d: f64| json.get(k).and_then(Json::as_f64).unwrap_or(d);
        Ok(Tolerance { rtol: num("rtol", default.rtol), atol: num("atol", default.atol) })
    }
}

/// The AdamW slack of every parameter, accumulated step by step (see the module doc).
#[derive(Clone, Debug)]
pub struct AdamWSlack {
    slack: Vec<Vec<f64>>,
}

impl AdamWSlack {
    /// Zero slack for parameters of these sizes.
    pub fn new(sizes: impl IntoIterator<Item = usize>) -> AdamWSlack {
        AdamWSlack { slack: sizes.into_iter().map(|n| vec![0.0; n]).collect() }
    }

    /// Adds the share of the step `opt` has just taken at learning rate `lr`.
    pub fn add_step(&mut self, opt: &AdamW, lr: f64, tol: &Tolerance) {
        let c = opt.config;
        let t = opt.step as i32;
        let bound = step_bound(&c, t);
        let correction = 1.0 - c.beta2.powi(t);
        for (slack, v) in self.slack.iter_mut().zip(&opt.v) {
            let root: Vec<f64> =
                v.data().iter().map(|&v| (f64::from(v) / correction).sqrt()).collect();
            let error = tol.allowance(Tolerance::scale(&root));
            for (s, &r) in slack.iter_mut().zip(&root) {
                let sensitivity = (1.0 + bound) * error / (r + c.eps);
                *s += lr * sensitivity.min(2.0 * bound);
            }
        }
    }

    /// The slack of each parameter, in the order given to [`AdamWSlack::new`].
    pub fn per_param(&self) -> impl Iterator<Item = Vec<f32>> + '_ {
        self.slack.iter().map(|s| s.iter().map(|&x| x as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;
    use crate::train::adamw::AdamWConfig;

    #[test]
    fn f32_rtol_grows_as_the_root_of_long_reductions() {
        assert_eq!(Tolerance::f32(1).rtol, 1e-4);
        assert_eq!(Tolerance::f32(65536).rtol, 1e-4);
        assert!((Tolerance::f32(4 * 65536).rtol - 2e-4).abs() < 1e-12);
    }

    #[test]
    fn allowance_is_relative_to_the_largest_magnitude() {
        let tol = Tolerance { rtol: 1e-4, atol: 1e-6 };
        let scale = Tolerance::scale(&[3.0, -4.0, 0.0, f64::NAN]);
        assert_eq!(scale, 4.0);
        assert_eq!(tol.allowance(scale), 1e-6 + 4e-4);
    }

    /// The largest gradient gets `2·rtol·lr` per step; a gradient at the noise floor (here
    /// exactly zero while others are not) gets Adam's bound on two updates' difference.
    #[test]
    fn slack_is_small_where_the_gradient_is_resolved() {
        let p = vec![Tensor::new(&[3], vec![0.0f32; 3])];
        let mut opt = AdamW::new(AdamWConfig::default(), &p);
        let mut slack = AdamWSlack::new([3]);
        let g = vec![Tensor::new(&[3], vec![1e-2f32, -1e-2, 0.0])];
        let mut params = p.clone();
        let tol = Tolerance::f32(1);
        opt.step(&mut params, &g, 1e-3);
        slack.add_step(&opt, 1e-3, &tol);
        let s: Vec<f32> = slack.per_param().next().unwrap();
        assert!((s[0] as f64 - 2.0 * 1e-4 * 1e-3).abs() < 1e-10, "{s:?}");
        assert!((s[2] as f64 - 2.0 * 1e-3).abs() < 1e-9, "{s:?}");
    }
}
