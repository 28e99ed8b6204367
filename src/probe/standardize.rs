//! Feature standardisation (scikit-learn's `StandardScaler`), fitted on the training split only.
//!
//! For column j over the N training rows, in f64:
//! ```text
//! μ_j = (1/N) Σᵢ x_ij          σ_j = sqrt((1/N) Σᵢ (x_ij − μ_j)²)     (population std, ddof 0)
//! s_j = σ_j, or 1 when the column is constant on the training rows
//! x'_ij = (x_ij − μ_j) / s_j   (applied to training and test rows alike)
//! ```
//! A constant column (every training value equal — tested exactly, not by a threshold) thus
//! becomes 0 on the training rows and `x − μ` on test rows, as in scikit-learn, instead of a
//! division by zero. Sums run over rows in fixed blocks combined in block order
//! ([`sum_rows_fixed_order`]), so the statistics do not depend on the thread count.

use crate::error::{Error, Result};
use crate::tensor::{sum_rows_fixed_order, Tensor};
use rayon::prelude::*;

/// Per-column shift and scale learned from a training matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    /// The population standard deviation, or 1 for a constant column.
    pub scale: Vec<f64>,
}

impl Standardizer {
    /// The statistics of the rows of `x`: a non-empty `[N, D]` matrix of finite values.
    pub fn fit(x: &Tensor<f32>) -> Result<Standardizer> {
        let (n, d) = (x.rows(), x.cols());
        if x.shape().len() != 2 || n == 0 || d == 0 || !x.all_finite() {
            return Err(Error::invalid(format!(
                "standardisation needs a non-empty matrix of finite values, got shape {:?}",
                x.shape()
            )));
        }
        let row = |r: usize| &x.data()[r * d..(r + 1) * d];
        let sums = sum_rows_fixed_order(n, d, |r, acc: &mut [f64]| {
            for (a, &v) in acc.iter_mut().zip(row(r)) {
                *a += f64::from(v);
            }
        });
        let mean: Vec<f64> = sums.iter().map(|s| s / n as f64).collect();
        let squares = sum_rows_fixed_order(n, d, |r, acc: &mut [f64]| {
            for ((a, &v), m) in acc.iter_mut().zip(row(r)).zip(&mean) {
                let c = f64::from(v) - m;
                *a += c * c;
            }
        });
        let first = row(0);
        let scale = (0..d)
            .map(|j| {
                let constant = (1..n).all(|r| x.data()[r * d + j] == first[j]);
                if constant {
                    1.0
                } else {
                    (squares[j] / n as f64).sqrt()
                }
            })
            .collect();
        Ok(Standardizer { mean, scale })
    }

    /// `(x − μ) / s` for every row of `x` (`[M, D]` with the fitted D), in f64.
    pub fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f64>> {
        let d = self.mean.len();
        if x.shape().len() != 2 || x.cols() != d {
            let msg =
                format!("features of shape {:?} for a standardiser of {d} columns", x.shape());
            return Err(Error::invalid(msg));
        }
        let mut out = vec![0.0; x.len()];
        out.par_chunks_mut(d).zip(x.data().par_chunks(d)).for_each(|(o, row)| {
            for (j, (o, &v)) in o.iter_mut().zip(row).enumerate() {
                *o = (f64::from(v) - self.mean[j]) / self.scale[j];
            }
        });
        Ok(Tensor::new(&[x.rows(), d], out))
    }
}
