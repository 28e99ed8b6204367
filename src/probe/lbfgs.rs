//! L-BFGS with a strong-Wolfe line search: the deterministic f64 minimiser behind the probe.
//!
//! Minimises a smooth `f: ℝⁿ → ℝ` given `f` and `∇f` (Nocedal & Wright, *Numerical
//! Optimization*, 2nd ed., Algorithms 7.4 and 3.5/3.6):
//! ```text
//! x₀ given;  g₀ = ∇f(x₀)
//! repeat k = 0, 1, …  until ‖g_k‖∞ ≤ gtol, or (f_k − f_{k+1}) ≤ ftol·max(|f_k|, |f_{k+1}|, 1),
//!                     or k = max_iter, or the line search finds no acceptable step:
//!     p_k = −H_k g_k          two-loop recursion over the last m pairs (s_i, y_i),
//!                             H⁰ = γ I with γ = sᵀy / yᵀy of the newest pair (p₀ = −g₀)
//!     α_k: strong Wolfe       f(x+αp) ≤ f(x) + c₁ α gᵀp  and  |∇f(x+αp)ᵀp| ≤ c₂ |gᵀp|
//!                             (c₁ = 1e-4, c₂ = 0.9; first trial α = 1, or min(1, 1/‖g₀‖₂) at k = 0)
//!     s = α p,  y = g_{k+1} − g_k;  keep the pair when sᵀy > 0
//! ```
//! The two tests that count as convergence are scipy's L-BFGS-B ones (`pgtol`, `factr·ε`) with
//! scikit-learn's settings: near the optimum of a well-conditioned problem the possible decrease
//! of f falls below its rounding error before ‖g‖∞ reaches a tight `gtol`, and the relative
//! reduction test (`ftol = 64 ε`) is what stops there.
//!
//! The line search brackets a step by doubling, then zooms with safeguarded cubic interpolation
//! (the trial is kept inside the middle 80 % of the bracket, else bisection).
//!
//! Why L-BFGS rather than Newton-CG for the probe: it needs only `f` and `∇f` (one pass over the
//! data per evaluation, no Hessian-vector products), its memory is `2m` vectors of the parameter
//! size, and with warm starts along the C path it converges in tens to a few hundred iterations
//! on standardised features — and it is what scikit-learn's `LogisticRegression` uses by default,
//! so the optimum it targets is the same. Every operation is serial over the parameter vector
//! (dot products left to right), so the iterates depend only on the values `f` returns: if the
//! objective is bit-reproducible, so is the whole run.

/// Stopping rules and memory of the minimiser.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LbfgsOptions {
    /// Converged when `max_i |∂f/∂x_i| ≤ gtol`.
    pub gtol: f64,
    /// Converged when an iteration reduces f by at most `ftol · max(|f|, 1)` (0 disables).
    pub ftol: f64,
    /// The most iterations (line searches) before giving up.
    pub max_iter: usize,
    /// Correction pairs kept (`m`).
    pub history: usize,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions { gtol: 1e-8, ftol: 64.0 * f64::EPSILON, max_iter: 1000, history: 10 }
    }
}

/// Where the minimiser stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsResult {
    pub x: Vec<f64>,
    pub f: f64,
    /// `max_i |∂f/∂x_i|` at `x`.
    pub grad_max: f64,
    pub iterations: usize,
    /// Objective evaluations, line searches included.
    pub evaluations: usize,
    pub termination: Termination,
}

/// Why the minimiser stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// `max_i |∂f/∂x_i| ≤ gtol`.
    Gradient,
    /// The last iteration reduced f by at most `ftol · max(|f|, 1)`.
    Reduction,
    /// The line search found no step satisfying the strong Wolfe conditions.
    LineSearch,
    /// `max_iter` iterations were made.
    MaxIter,
}

impl LbfgsResult {
    /// Stopped by the gradient or the relative-reduction test.
    pub fn converged(&self) -> bool {
        matches!(self.termination, Termination::Gradient | Termination::Reduction)
    }
}

/// Sufficient-decrease and curvature constants of the strong Wolfe conditions.
const C1: f64 = 1e-4;
const C2: f64 = 0.9;
/// Trial steps per line search (bracketing and zoom together).
const MAX_LINE_EVALS: usize = 40;

/// Minimises `eval` (returning `(f(x), ∇f(x))`) from `x0`.
pub fn minimize<F>(mut eval: F, x0: Vec<f64>, opts: &LbfgsOptions) -> LbfgsResult
where
    F: FnMut(&[f64]) -> (f64, Vec<f64>),
{
    let mut x = x0;
    let (mut f, mut g) = eval(&x);
    let mut evaluations = 1;
    let mut pairs: Vec<Pair> = Vec::new();
    let mut iterations = 0;
    let termination = loop {
        if max_abs(&g) <= opts.gtol {
            break Termination::Gradient;
        }
        if iterations == opts.max_iter {
            break Termination::MaxIter;
        }
        let p = direction(&g, &pairs);
        let dg0 = dot(&g, &p);
        let alpha0 = if iterations == 0 { (1.0 / norm2(&g)).min(1.0) } else { 1.0 };
        let mut line = LineSearch { x: &x, p: &p, f0: f, dg0, evals: 0, eval: &mut eval };
        // A direction that is not a descent direction can only come from rounding.
        let step = if dg0 < 0.0 { line.search(alpha0) } else { None };
        evaluations += line.evals;
        let Some(step) = step else { break Termination::LineSearch };
        iterations += 1;
        let s: Vec<f64> = p.iter().map(|&pi| step.alpha * pi).collect();
        let y: Vec<f64> = step.g.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        // (With `history = 0` no pair is kept: steepest descent with Wolfe steps.)
        if sy > 0.0 && opts.history > 0 {
            if pairs.len() == opts.history {
                pairs.remove(0);
            }
            pairs.push(Pair { rho: 1.0 / sy, s, y });
        }
        let reduction = f - step.f;
        let small = reduction <= opts.ftol * f.abs().max(step.f.abs()).max(1.0);
        (x, f, g) = (step.x, step.f, step.g);
        if small && max_abs(&g) > opts.gtol {
            break Termination::Reduction;
        }
    };
    let grad_max = max_abs(&g);
    LbfgsResult { x, f, grad_max, iterations, evaluations, termination }
}

/// One correction pair with `ρ = 1 / sᵀy`.
struct Pair {
    rho: f64,
    s: Vec<f64>,
    y: Vec<f64>,
}

/// `−H g` by the two-loop recursion (newest pair last in `pairs`).
fn direction(g: &[f64], pairs: &[Pair]) -> Vec<f64> {
    let mut q = g.to_vec();
    let mut a = vec![0.0; pairs.len()];
    for (i, pair) in pairs.iter().enumerate().rev() {
        a[i] = pair.rho * dot(&pair.s, &q);
        axpy(-a[i], &pair.y, &mut q);
    }
    if let Some(last) = pairs.last() {
        let gamma = dot(&last.s, &last.y) / dot(&last.y, &last.y);
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for (i, pair) in pairs.iter().enumerate() {
        let b = pair.rho * dot(&pair.y, &q);
        axpy(a[i] - b, &pair.s, &mut q);
    }
    q.iter_mut().for_each(|v| *v = -*v);
    q
}

/// An accepted step: `x + α p` and its value and gradient.
struct Step {
    alpha: f64,
    x: Vec<f64>,
    f: f64,
    g: Vec<f64>,
}

/// `φ(α) = f(x + α p)` along one search direction, with `φ(0) = f0` and `φ'(0) = dg0 < 0`.
struct LineSearch<'a, F> {
    x: &'a [f64],
    p: &'a [f64],
    f0: f64,
    dg0: f64,
    evals: usize,
    eval: &'a mut F,
}

/// One trial of a line search: the step and `φ(α)`, `φ'(α)`.
struct Trial {
    step: Step,
    dg: f64,
}

impl<F: FnMut(&[f64]) -> (f64, Vec<f64>)> LineSearch<'_, F> {
    fn trial(&mut self, alpha: f64) -> Trial {
        let x: Vec<f64> = self.x.iter().zip(self.p).map(|(&xi, &pi)| xi + alpha * pi).collect();
        let (f, g) = (self.eval)(&x);
        self.evals += 1;
        let dg = dot(&g, self.p);
        Trial { step: Step { alpha, x, f, g }, dg }
    }

    fn sufficient_decrease(&self, t: &Trial) -> bool {
        t.step.f <= self.f0 + C1 * t.step.alpha * self.dg0
    }

    fn curvature(&self, t: &Trial) -> bool {
        t.dg.abs() <= -C2 * self.dg0
    }

    /// Algorithm 3.5: grow the step until a bracket of strong-Wolfe points is found, then zoom.
    /// `None` when no step decreases `f` (at the limits of precision).
    fn search(&mut self, alpha0: f64) -> Option<Step> {
        let mut prev: Option<Trial> = None;
        let mut alpha = alpha0;
        while self.evals < MAX_LINE_EVALS {
            let t = self.trial(alpha);
            if !t.step.f.is_finite() {
                // Overshot into overflow: shrink towards the last good point.
                alpha = prev.as_ref().map_or(0.0, |p| p.step.alpha) * 0.5 + alpha * 0.5;
                continue;
            }
            let worse = prev.as_ref().is_some_and(|p| t.step.f >= p.step.f);
            if !self.sufficient_decrease(&t) || worse {
                return self.zoom(prev, t);
            }
            if self.curvature(&t) {
                return Some(t.step);
            }
            if t.dg >= 0.0 {
                let hi = match prev {
                    Some(p) => p,
                    None => self.origin(),
                };
                return self.zoom(Some(t), hi);
            }
            alpha = 2.0 * t.step.alpha;
            prev = Some(t);
        }
        prev.map(|p| p.step)
    }

    /// Algorithm 3.6: shrink the bracket between `lo` (the best point so far satisfying
    /// sufficient decrease; `None` is α = 0) and `hi` until a strong-Wolfe point is found.
    fn zoom(&mut self, mut lo: Option<Trial>, mut hi: Trial) -> Option<Step> {
        while self.evals < MAX_LINE_EVALS {
            let (a_lo, f_lo, dg_lo) =
                lo.as_ref().map_or((0.0, self.f0, self.dg0), |t| (t.step.alpha, t.step.f, t.dg));
            let a_hi = hi.step.alpha;
            if (a_hi - a_lo).abs() <= 1e-16 * a_lo.abs().max(a_hi.abs()) {
                break;
            }
            let alpha = interpolate(a_lo, f_lo, dg_lo, a_hi, hi.step.f, hi.dg);
            let t = self.trial(alpha);
            if !self.sufficient_decrease(&t) || t.step.f >= f_lo {
                hi = t;
                continue;
            }
            if self.curvature(&t) {
                return Some(t.step);
            }
            if t.dg * (a_hi - a_lo) >= 0.0 {
                hi = match lo.take() {
                    Some(l) => l,
                    None => self.origin(),
                };
            }
            lo = Some(t);
        }
        // Out of trials: the best point found still decreases f sufficiently.
        lo.map(|t| t.step)
    }

    /// The trial at α = 0 as a bracket end (never evaluated: its values are known). Only a
    /// bracket's `hi` end is ever the origin, and `hi` is never returned, so `x` and `g` stay empty.
    fn origin(&self) -> Trial {
        let step = Step { alpha: 0.0, x: Vec::new(), f: self.f0, g: Vec::new() };
        Trial { step, dg: self.dg0 }
    }
}

/// The minimiser of the cubic through `(a, fa, da)` and `(b, fb, db)` (N&W eq. 3.59), kept in
/// the middle 80 % of `[a, b]`; bisection when the cubic has no usable minimiser.
fn interpolate(a: f64, fa: f64, da: f64, b: f64, fb: f64, db: f64) -> f64 {
    let (lo, hi) = (a.min(b), a.max(b));
    let margin = 0.1 * (hi - lo);
    let d1 = da + db - 3.0 * (fa - fb) / (a - b);
    let disc = d1 * d1 - da * db;
    let mid = 0.5 * (a + b);
    if !disc.is_finite() || disc < 0.0 || !fa.is_finite() || !fb.is_finite() || !db.is_finite() {
        return mid;
    }
    let d2 = (b - a).signum() * disc.sqrt();
    let t = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2);
    if t.is_finite() && t >= lo + margin && t <= hi - margin {
        t
    } else {
        mid
    }
}

/// `Σ aᵢ bᵢ`, left to right.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0, |s, (x, y)| s + x * y)
}

fn norm2(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `max |aᵢ|` (NaN counts as infinite, so it never passes a tolerance).
pub fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m: f64, &x| if x.is_nan() { f64::INFINITY } else { m.max(x.abs()) })
}

/// `y ← y + α x`.
fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosenbrock(x: &[f64]) -> (f64, Vec<f64>) {
        let (a, b) = (x[0], x[1]);
        let f = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
        let g = vec![-2.0 * (1.0 - a) - 400.0 * a * (b - a * a), 200.0 * (b - a * a)];
        (f, g)
    }

    #[test]
    fn minimises_rosenbrock_from_the_classic_start() {
        let opts = LbfgsOptions { gtol: 1e-10, ftol: 0.0, max_iter: 500, history: 10 };
        let r = minimize(rosenbrock, vec![-1.2, 1.0], &opts);
        assert_eq!(r.termination, Termination::Gradient, "{r:?}");
        assert!((r.x[0] - 1.0).abs() < 1e-8 && (r.x[1] - 1.0).abs() < 1e-8, "{r:?}");
    }

    #[test]
    fn minimises_an_ill_conditioned_quadratic_exactly() {
        // f = ½ Σ λᵢ (xᵢ − i)² with λ from 1 to 1e4: minimum at xᵢ = i. (scipy's L-BFGS-B, m = 10,
        // needs about 500 iterations for ‖g‖∞ ≤ 1e-6 here, as this implementation does.)
        let lambda: Vec<f64> = (0..20).map(|i| 10f64.powf(4.0 * i as f64 / 19.0)).collect();
        let eval = |x: &[f64]| {
            let r: Vec<f64> = x.iter().enumerate().map(|(i, &v)| v - i as f64).collect();
            let f = 0.5 * r.iter().zip(&lambda).map(|(r, l)| l * r * r).sum::<f64>();
            (f, r.iter().zip(&lambda).map(|(r, l)| l * r).collect())
        };
        let opts = LbfgsOptions { gtol: 1e-9, ftol: 0.0, max_iter: 5000, history: 10 };
        let r = minimize(eval, vec![0.0; 20], &opts);
        assert_eq!(r.termination, Termination::Gradient, "{r:?}");
        for (i, &v) in r.x.iter().enumerate() {
            assert!((v - i as f64).abs() <= 1e-9, "x[{i}] = {v}");
        }
    }

    #[test]
    fn starting_at_the_optimum_takes_no_iteration() {
        let r = minimize(rosenbrock, vec![1.0, 1.0], &LbfgsOptions::default());
        assert_eq!(r.termination, Termination::Gradient);
        assert_eq!((r.iterations, r.evaluations), (0, 1));
    }

    #[test]
    fn the_iteration_limit_is_respected() {
        let opts = LbfgsOptions { max_iter: 3, ..LbfgsOptions::default() };
        let r = minimize(rosenbrock, vec![-1.2, 1.0], &opts);
        assert_eq!((r.termination, r.iterations), (Termination::MaxIter, 3));
        assert!(!r.converged() && r.f < 24.2, "{r:?}");
    }

    #[test]
    fn interpolation_stays_inside_the_bracket() {
        // φ(α) = (α − 0.3)² on [0, 1]: the cubic through the ends finds 0.3 exactly.
        let t = interpolate(0.0, 0.09, -0.6, 1.0, 0.49, 1.4);
        assert!((t - 0.3).abs() < 1e-12, "{t}");
        // A minimiser outside the middle 80 % falls back to bisection.
        let t = interpolate(0.0, 0.0, -1e-9, 1.0, 1.0, 2.0);
        assert_eq!(t, 0.5);
    }
}
