//! k-fold cross-validation of the inverse penalty `C` over a grid (scikit-learn's
//! `LogisticRegressionCV` protocol).
//!
//! 1. Every training row gets a fold `0..k` ([`assign_folds`], three deterministic schemes).
//! 2. For each fold f, the rows outside f are fitted at every C of the grid in increasing order,
//!    each fit warm-started from the previous C's solution (scikit-learn's regularisation path);
//!    each fit is scored by its accuracy on the rows of f.
//! 3. The score of a C is the mean of its k fold accuracies; the chosen C is the first (smallest)
//!    C with the highest score.
//!
//! Folds run in parallel; each fit is itself deterministic, so the scores are bit-identical for
//! any thread count.

use super::lbfgs::LbfgsOptions;
use super::logistic::{LogisticRegression, Samples};
use crate::error::{Error, Result};
use crate::rng::Philox;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// How training rows are dealt into folds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoldScheme {
    /// scikit-learn's `StratifiedKFold(k, shuffle=False)` — what `LogisticRegressionCV(cv=k)`
    /// uses for classifiers: every fold gets about `1/k` of each class, in data order.
    Stratified,
    /// scikit-learn's `KFold(k)`: contiguous blocks in data order, the first `N mod k` folds one
    /// row longer.
    Contiguous,
    /// Contiguous blocks of a Philox permutation of the rows (Fisher–Yates, see
    /// [`philox_permutation`]).
    Shuffled { seed: u64 },
}

/// The fold (`0..k`) of every row of `y`. Needs `1 ≤ k ≤ N` (every fold non-empty).
pub fn assign_folds(y: &[usize], k: usize, scheme: FoldScheme) -> Result<Vec<usize>> {
    let n = y.len();
    if k < 2 || k > n {
        return Err(Error::invalid(format!(
            "cross-validation needs 2 ≤ folds ≤ training rows, got {k} folds for {n} rows"
        )));
    }
    Ok(match scheme {
        FoldScheme::Contiguous => contiguous(&(0..n).collect::<Vec<_>>(), k),
        FoldScheme::Shuffled { seed } => contiguous(&philox_permutation(n, seed), k),
        FoldScheme::Stratified => stratified(y, k),
    })
}

/// `order[i]` goes to the fold of position i when positions are cut into k contiguous blocks,
/// the first `N mod k` of size `⌊N/k⌋ + 1`, the rest `⌊N/k⌋`.
fn contiguous(order: &[usize], k: usize) -> Vec<usize> {
    let n = order.len();
    let mut folds = vec![0; n];
    let mut start = 0;
    for f in 0..k {
        let size = n / k + usize::from(f < n % k);
        for &row in &order[start..start + size] {
            folds[row] = f;
        }
        start += size;
    }
    folds
}

/// scikit-learn's `StratifiedKFold._make_test_folds` without shuffling: classes are numbered
/// by first appearance; the encoded labels are sorted and dealt round-robin, so fold f receives
/// `count(f, c)` = the number of class-c entries among sorted positions `f, f + k, f + 2k, …`;
/// then, within each class in data order, the first `count(0, c)` rows go to fold 0, the next
/// `count(1, c)` to fold 1, and so on.
fn stratified(y: &[usize], k: usize) -> Vec<usize> {
    let mut code_of = std::collections::BTreeMap::new();
    let encoded: Vec<usize> = y
        .iter()
        .map(|&label| {
            let next = code_of.len();
            *code_of.entry(label).or_insert(next)
        })
        .collect();
    let n_codes = code_of.len();
    let mut sorted = encoded.clone();
    sorted.sort_unstable();
    let mut count = vec![vec![0usize; n_codes]; k];
    for (i, &c) in sorted.iter().enumerate() {
        count[i % k][c] += 1;
    }
    // Deal each class's rows, in data order, to folds 0, 1, … by those counts.
    let mut fold_of_next = vec![0usize; n_codes];
    let mut used = vec![0usize; n_codes];
    encoded
        .iter()
        .map(|&c| {
            while used[c] == count[fold_of_next[c]][c] {
                fold_of_next[c] += 1;
                used[c] = 0;
            }
            used[c] += 1;
            fold_of_next[c]
        })
        .collect()
}

/// A permutation of `0..n` by Fisher–Yates driven by Philox(`seed`) stream 0: for
/// `i = n−1 … 1`, draw `j` uniform in `0..=i` and swap positions i and j. `j` comes from the
/// next 32-bit word `u` of the stream by rejection: words with `u ≥ 2³² − (2³² mod (i+1))` are
/// skipped, otherwise `j = u mod (i + 1)` — exactly uniform.
pub fn philox_permutation(n: usize, seed: u64) -> Vec<usize> {
    let philox = Philox::new(seed);
    let mut word = 0u64;
    let mut next_u32 = || {
        let u = philox.u32_at(0, word);
        word += 1;
        u
    };
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let bound = (i + 1) as u64;
        let limit = (1u64 << 32) - (1u64 << 32) % bound;
        let j = loop {
            let u = u64::from(next_u32());
            if u < limit {
                break (u % bound) as usize;
            }
        };
        perm.swap(i, j);
    }
    perm
}

/// The scores of a cross-validation run.
#[derive(Clone, Debug, PartialEq)]
pub struct CvScores {
    /// `fold_accuracy[f][g]`: accuracy on fold f of the fit at grid point g.
    pub fold_accuracy: Vec<Vec<f64>>,
    /// Mean over folds, per grid point.
    pub mean_accuracy: Vec<f64>,
    /// Index of the chosen C: the first maximum of `mean_accuracy`.
    pub best: usize,
    /// Fits (of the `k · grid` made) that stopped before reaching the gradient tolerance.
    pub not_converged: usize,
}

/// Cross-validates the grid `cs` (positive, increasing) on standardised `x` `[N, D]` with labels
/// `y` in `0..n_classes`, rows dealt by `folds` (from [`assign_folds`]).
pub fn cross_validate(
    x: &Tensor<f64>,
    y: &[usize],
    n_classes: usize,
    cs: &[f64],
    folds: &[usize],
    solver: &LbfgsOptions,
) -> Result<CvScores> {
    let k = folds.iter().max().map_or(0, |&f| f + 1);
    if folds.len() != y.len() || cs.is_empty() || (0..k).any(|f| !folds.contains(&f)) {
        return Err(Error::invalid(format!(
            "cross-validation needs one fold per row ({} for {} rows), every fold 0..{k} \
             non-empty, and a non-empty grid",
            folds.len(),
            y.len()
        )));
    }
    let per_fold: Vec<(Vec<f64>, usize)> = (0..k)
        .into_par_iter()
        .map(|f| {
            let train: Vec<usize> = (0..y.len()).filter(|&r| folds[r] != f).collect();
            let held_out: Vec<usize> = (0..y.len()).filter(|&r| folds[r] == f).collect();
            let samples = Samples::new(x, y, &train, n_classes)?;
            let mut warm: Option<LogisticRegression> = None;
            let mut not_converged = 0;
            let mut scores = Vec::with_capacity(cs.len());
            for &c in cs {
                let (model, info) = LogisticRegression::fit(samples, c, warm.as_ref(), solver)?;
                not_converged += usize::from(!info.converged());
                scores.push(model.accuracy_on(x, y, &held_out));
                warm = Some(model);
            }
            Ok((scores, not_converged))
        })
        .collect::<Result<_>>()?;
    let mean_accuracy: Vec<f64> =
        (0..cs.len()).map(|g| per_fold.iter().map(|(s, _)| s[g]).sum::<f64>() / k as f64).collect();
    let best =
        (1..cs.len()).fold(0, |b, g| if mean_accuracy[g] > mean_accuracy[b] { g } else { b });
    Ok(CvScores {
        not_converged: per_fold.iter().map(|(_, n)| n).sum(),
        fold_accuracy: per_fold.into_iter().map(|(s, _)| s).collect(),
        mean_accuracy,
        best,
    })
}
