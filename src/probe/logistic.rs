//! Multinomial logistic regression with scikit-learn's L2 parameterisation, fitted by L-BFGS.
//!
//! For samples `xᵢ ∈ ℝᴰ` with labels `yᵢ`, the classes present in the training rows (`K` of
//! them, in increasing label order) each get a weight row `w_k` and a bias `b_k`:
//! ```text
//! z_ik = w_k · xᵢ + b_k,      CEᵢ = log Σ_k exp(z_ik) − z_{i,yᵢ}
//! scikit-learn:   min  Σᵢ CEᵢ + ‖W‖² / (2C)          (the bias is not penalised)
//! minimised here: f = (1/N) Σᵢ CEᵢ + ‖W‖² / (2CN)     (the same minimiser, N = rows)
//! ∂f/∂w_k = (1/N) Σᵢ (p_ik − [yᵢ = k]) xᵢ + w_k / (CN),   ∂f/∂b_k = (1/N) Σᵢ (p_ik − [yᵢ = k])
//! ```
//! with `p_i = softmax(z_i)`. The mean form is scikit-learn's own (`LinearModelLoss` since 1.1),
//! so a gradient tolerance means the same thing at any N. The softmax is over-parameterised, but
//! the penalty fixes `W`, and the bias gradient sums to zero over classes, so from a zero (or
//! any zero-sum) start the bias stays zero-sum: the solution is unique. A class absent from the
//! training rows gets no parameters and is never predicted (its optimum is `b_k = −∞`), as in
//! scikit-learn, which fits on `np.unique(y)`.
//!
//! Everything is f64. The sum over samples runs in chunks of [`CHUNK_ROWS`] rows in parallel; the
//! chunk partials are added serially in chunk order, so `f` and `∇f` — and hence every L-BFGS
//! iterate — are bit-identical for any number of threads.

use super::lbfgs::{self, LbfgsOptions, LbfgsResult};
use crate::error::{Error, Result};
use crate::tensor::{gemm, MatRef, Tensor};
use rayon::prelude::*;

/// Samples per parallel chunk of the loss and gradient (fixed: it decides the summation order).
pub const CHUNK_ROWS: usize = 256;

/// A fitted classifier over the original label space `0..n_classes`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogisticRegression {
    pub n_features: usize,
    pub n_classes: usize,
    /// The labels that have parameters (present in the training rows), increasing.
    pub classes: Vec<usize>,
    /// `[classes.len(), n_features]`, row k for label `classes[k]`.
    pub weights: Vec<f64>,
    /// `[classes.len()]`.
    pub bias: Vec<f64>,
}

/// Training data for one fit: features `[N, D]`, labels, and which rows to use — checked.
#[derive(Clone, Copy, Debug)]
pub struct Samples<'a> {
    x: &'a Tensor<f64>,
    y: &'a [usize],
    rows: &'a [usize],
    n_classes: usize,
}

impl<'a> Samples<'a> {
    /// Rows `rows` (a cross-validation fold's training part, or all) of `x` with labels `y` in
    /// `0..n_classes`. Errors when the shapes disagree, a row index or label is out of range,
    /// no row is given, or a used feature is not finite.
    pub fn new(
        x: &'a Tensor<f64>,
        y: &'a [usize],
        rows: &'a [usize],
        n_classes: usize,
    ) -> Result<Samples<'a>> {
        let n = y.len();
        if x.shape().len() != 2 || x.rows() != n {
            let msg = format!("features of shape {:?} for {n} labels", x.shape());
            return Err(Error::invalid(msg));
        }
        if rows.is_empty() {
            return Err(Error::invalid("no training row for logistic regression"));
        }
        let d = x.cols();
        for &r in rows {
            if r >= n {
                return Err(Error::invalid(format!("row {r} is outside the {n} samples")));
            }
            if y[r] >= n_classes {
                let msg = format!("label {} of row {r} is not a class (0..{n_classes})", y[r]);
                return Err(Error::invalid(msg));
            }
            if let Some(j) = x.data()[r * d..(r + 1) * d].iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid(format!("feature [{r}, {j}] is not finite")));
            }
        }
        Ok(Samples { x, y, rows, n_classes })
    }
}

/// The penalised objective of one fit on the classes present, in the mean form above.
pub struct Objective<'a> {
    samples: Samples<'a>,
    /// Label → compact class index (`usize::MAX` for an absent label).
    index: Vec<usize>,
    k: usize,
    c: f64,
}

impl<'a> Objective<'a> {
    /// The objective on `samples` with scikit-learn's inverse penalty strength `c > 0`.
    pub fn new(samples: Samples<'a>, c: f64) -> Result<Objective<'a>> {
        if !(c > 0.0 && c.is_finite()) {
            return Err(Error::invalid(format!("C must be positive and finite, got {c}")));
        }
        let mut present = vec![false; samples.n_classes];
        for &r in samples.rows {
            present[samples.y[r]] = true;
        }
        let mut index = vec![usize::MAX; samples.n_classes];
        let mut k = 0;
        for (label, _) in present.iter().enumerate().filter(|(_, &p)| p) {
            index[label] = k;
            k += 1;
        }
        Ok(Objective { samples, index, k, c })
    }

    /// Classes with parameters.
    pub fn n_present(&self) -> usize {
        self.k
    }

    /// Parameters: `K·D` weights (row-major) then `K` biases.
    pub fn n_params(&self) -> usize {
        self.k * (self.samples.x.cols() + 1)
    }

    /// `(f(θ), ∇f(θ))`.
    ///
    /// # Panics
    /// If `theta` does not hold [`Objective::n_params`] values.
    pub fn eval(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let (k, d) = (self.k, self.samples.x.cols());
        assert_eq!(theta.len(), self.n_params(), "Objective::eval: wrong parameter count");
        let rows = self.samples.rows;
        let partials: Vec<Vec<f64>> = rows
            .par_chunks(CHUNK_ROWS)
            .map(|chunk| self.chunk_loss_and_grad(theta, chunk))
            .collect();
        // Slot 0 is the summed cross-entropy, then K·D weight and K bias gradients.
        let mut total = vec![0.0; 1 + k * (d + 1)];
        for p in &partials {
            for (t, &v) in total.iter_mut().zip(p) {
                *t += v;
            }
        }
        let n = rows.len() as f64;
        let (w, cn) = (&theta[..k * d], self.c * n);
        let mut grad: Vec<f64> = total[1..].iter().map(|&g| g / n).collect();
        for (g, &wi) in grad[..k * d].iter_mut().zip(w) {
            *g += wi / cn;
        }
        let f = total[0] / n + lbfgs::dot(w, w) / (2.0 * cn);
        (f, grad)
    }

    /// `[Σ CE, Σ (p − onehot) xᵀ, Σ (p − onehot)]` over one chunk of rows.
    fn chunk_loss_and_grad(&self, theta: &[f64], chunk: &[usize]) -> Vec<f64> {
        let (k, d, m) = (self.k, self.samples.x.cols(), chunk.len());
        let xc = gather_rows(self.samples.x, chunk);
        let (w, b) = theta.split_at(k * d);
        let mut z = vec![0.0; m * k];
        gemm(1.0, MatRef::new(&xc, m, d), MatRef::new(w, k, d).t(), 0.0, &mut z);
        let mut out = vec![0.0; 1 + k * (d + 1)];
        for (i, zi) in z.chunks_mut(k).enumerate() {
            for (v, &bk) in zi.iter_mut().zip(b) {
                *v += bk;
            }
            let target = self.index[self.samples.y[chunk[i]]];
            let lse = log_sum_exp(zi);
            out[0] += lse - zi[target];
            // zi becomes the residual p − onehot.
            for v in zi.iter_mut() {
                *v = (*v - lse).exp();
            }
            zi[target] -= 1.0;
        }
        let (gw, gb) = out[1..].split_at_mut(k * d);
        gemm(1.0, MatRef::new(&z, m, k).t(), MatRef::new(&xc, m, d), 0.0, gw);
        for zi in z.chunks(k) {
            for (g, &r) in gb.iter_mut().zip(zi) {
                *g += r;
            }
        }
        out
    }

    /// The classifier for parameters `theta`.
    fn classifier(&self, theta: &[f64]) -> LogisticRegression {
        let d = self.samples.x.cols();
        let classes = (0..self.index.len()).filter(|&l| self.index[l] != usize::MAX).collect();
        LogisticRegression {
            n_features: d,
            n_classes: self.index.len(),
            classes,
            weights: theta[..self.k * d].to_vec(),
            bias: theta[self.k * d..].to_vec(),
        }
    }
}

/// `log Σ exp(zₖ)`, shifted by the maximum so nothing overflows.
fn log_sum_exp(z: &[f64]) -> f64 {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    m + z.iter().map(|&v| (v - m).exp()).sum::<f64>().ln()
}

/// Rows `rows` of `x`, contiguous.
fn gather_rows(x: &Tensor<f64>, rows: &[usize]) -> Vec<f64> {
    let d = x.cols();
    let mut out = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        out.extend_from_slice(&x.data()[r * d..(r + 1) * d]);
    }
    out
}

impl LogisticRegression {
    /// Fits on `samples` with inverse penalty `c`, starting from `warm` (parameters of a fit on
    /// the same classes, e.g. at the previous C of a path) or from zero.
    pub fn fit(
        samples: Samples,
        c: f64,
        warm: Option<&LogisticRegression>,
        opts: &LbfgsOptions,
    ) -> Result<(LogisticRegression, LbfgsResult)> {
        let objective = Objective::new(samples, c)?;
        let theta0 = match warm {
            Some(m) if m.weights.len() + m.bias.len() == objective.n_params() => {
                [m.weights.as_slice(), m.bias.as_slice()].concat()
            }
            _ => vec![0.0; objective.n_params()],
        };
        let result = lbfgs::minimize(|t| objective.eval(t), theta0, opts);
        Ok((objective.classifier(&result.x), result))
    }

    /// The logits `[classes.len()]` of one row of `n_features` values.
    fn decision(&self, row: &[f64]) -> Vec<f64> {
        self.weights
            .chunks(self.n_features)
            .zip(&self.bias)
            .map(|(w, &b)| lbfgs::dot(w, row) + b)
            .collect()
    }

    /// The predicted label of one row (the first largest logit wins ties).
    fn predict_row(&self, row: &[f64]) -> usize {
        let z = self.decision(row);
        let best = (1..z.len()).fold(0, |b, k| if z[k] > z[b] { k } else { b });
        self.classes[best]
    }

    /// The predicted label of every row of `x` (`[M, n_features]`, standardised like the
    /// training features).
    pub fn predict(&self, x: &Tensor<f64>) -> Result<Vec<usize>> {
        if x.shape().len() != 2 || x.cols() != self.n_features {
            return Err(Error::invalid(format!(
                "features of shape {:?} for a classifier of {} features",
                x.shape(),
                self.n_features
            )));
        }
        Ok(x.data().par_chunks(self.n_features).map(|row| self.predict_row(row)).collect())
    }

    /// The fraction of rows of `x` predicted as their label in `y`.
    pub fn accuracy(&self, x: &Tensor<f64>, y: &[usize]) -> Result<f64> {
        let predicted = self.predict(x)?;
        if y.len() != predicted.len() || y.is_empty() {
            let msg = format!("{} labels for {} feature rows", y.len(), predicted.len());
            return Err(Error::invalid(msg));
        }
        let correct = predicted.iter().zip(y).filter(|(p, l)| p == l).count();
        Ok(correct as f64 / y.len() as f64)
    }

    /// The accuracy on rows `rows` of validated samples (a cross-validation fold).
    pub(super) fn accuracy_on(&self, x: &Tensor<f64>, y: &[usize], rows: &[usize]) -> f64 {
        let d = self.n_features;
        let correct: Vec<bool> = rows
            .par_iter()
            .map(|&r| self.predict_row(&x.data()[r * d..(r + 1) * d]) == y[r])
            .collect();
        correct.iter().filter(|&&c| c).count() as f64 / rows.len() as f64
    }
}
