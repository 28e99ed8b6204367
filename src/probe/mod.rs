//! The linear probe: how good are a generative model's features for classification?
//!
//! The representation half of iGPT (paper §3.2, SPEC §20.1): freeze the model, take the mean
//! over positions of a layer's normalised activations as an image's feature vector
//! ([`features`]), and fit a linear classifier on them. The accuracy of that classifier on held-out
//! images measures what the pixel-prediction objective taught the network; the paper finds it
//! peaks in the middle of the network.
//!
//! Protocol ([`probe`]), identical for every layer and for the raw-pixel baseline:
//! 1. standardise the features with the training split's mean and std ([`standardize`]);
//! 2. choose the L2 penalty `C` by k-fold cross-validation on the training split over a log grid
//!    ([`cv`]; by default scikit-learn's `LogisticRegressionCV(Cs=10, cv=5)`: 10 values
//!    `10^-4 … 10^4`, stratified folds);
//! 3. refit multinomial logistic regression ([`logistic`], solved by L-BFGS in f64, [`lbfgs`])
//!    on the whole training split at that C and report its accuracy on the test split.
//!
//! Every step is deterministic and independent of the rayon thread count.

pub mod cv;
pub mod features;
pub mod lbfgs;
pub mod logistic;
pub mod standardize;

pub use cv::{assign_folds, cross_validate, CvScores, FoldScheme};
pub use features::{all_layers, extract_features, FeatureInput, FeatureOptions};
pub use lbfgs::LbfgsOptions;
pub use logistic::{LogisticRegression, Samples};
pub use standardize::Standardizer;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `n` values `10^lo … 10^hi`, evenly spaced in the exponent (numpy's `logspace(lo, hi, n)`).
pub fn log_grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![10f64.powf(lo)],
        _ => {
            let step = (hi - lo) / (n - 1) as f64;
            (0..n)
                .map(|i| if i == n - 1 { hi } else { lo + i as f64 * step })
                .map(|e| 10f64.powf(e))
                .collect()
        }
    }
}

/// How the probe is run.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeOptions {
    /// Cross-validation folds (k).
    pub folds: usize,
    pub scheme: FoldScheme,
    /// Candidate values of C, strictly increasing.
    pub grid: Vec<f64>,
    pub solver: LbfgsOptions,
}

impl Default for ProbeOptions {
    /// 5 stratified folds, `log_grid(-4, 4, 10)`, L-BFGS to `‖∇f‖∞ ≤ 1e-6` within 1000 iterations.
    fn default() -> Self {
        ProbeOptions {
            folds: 5,
            scheme: FoldScheme::Stratified,
            grid: log_grid(-4.0, 4.0, 10),
            solver: LbfgsOptions::default(),
        }
    }
}

/// What a probe found.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// Accuracy on the test split of the classifier refitted at the chosen C.
    pub accuracy: f64,
    /// The chosen C.
    pub c: f64,
    /// Mean cross-validation accuracy at the chosen C.
    pub cv_accuracy: f64,
    /// Every cross-validation score, per fold and grid point (`cv.best` indexes `grid`).
    pub cv: CvScores,
    pub grid: Vec<f64>,
    /// Accuracy of the refitted classifier on its own training split.
    pub train_accuracy: f64,
    /// L-BFGS iterations of the refit, and whether it reached the gradient tolerance.
    pub iterations: usize,
    pub converged: bool,
    pub classifier: LogisticRegression,
    pub standardizer: Standardizer,
}

/// Runs the probe protocol: standardise on `train_x` (`[N, D]`), choose C by cross-validation
/// on the training split, refit, and score on `test_x` (`[M, D]`). Labels lie in `0..n_classes`.
pub fn probe(
    train_x: &Tensor<f32>,
    train_y: &[usize],
    test_x: &Tensor<f32>,
    test_y: &[usize],
    n_classes: usize,
    opts: &ProbeOptions,
) -> Result<ProbeResult> {
    check_options(opts)?;
    let d = check_split("training", train_x, train_y, n_classes, None)?;
    check_split("test", test_x, test_y, n_classes, Some(d))?;
    let mut seen = vec![false; n_classes];
    train_y.iter().for_each(|&l| seen[l] = true);
    if seen.iter().filter(|&&s| s).count() < 2 {
        return Err(Error::invalid("the training split holds fewer than 2 classes"));
    }
    let folds = assign_folds(train_y, opts.folds, opts.scheme)?;
    let standardizer = Standardizer::fit(train_x)?;
    let (train, test) = (standardizer.apply(train_x)?, standardizer.apply(test_x)?);
    let cv = cross_validate(&train, train_y, n_classes, &opts.grid, &folds, &opts.solver)?;
    let c = opts.grid[cv.best];
    let all_train: Vec<usize> = (0..train_y.len()).collect();
    let samples = Samples::new(&train, train_y, &all_train, n_classes)?;
    let (classifier, info) = LogisticRegression::fit(samples, c, None, &opts.solver)?;
    Ok(ProbeResult {
        accuracy: classifier.accuracy(&test, test_y)?,
        c,
        cv_accuracy: cv.mean_accuracy[cv.best],
        train_accuracy: classifier.accuracy(&train, train_y)?,
        iterations: info.iterations,
        converged: info.converged(),
        grid: opts.grid.clone(),
        cv,
        classifier,
        standardizer,
    })
}

/// Raw-pixel features: `pixels` holds `values_per_image` values per image (any fixed order,
/// e.g. row-major RGB); each becomes one f32 column. The raw-pixel baseline is [`probe`] on these
/// (it standardises them like any feature).
pub fn pixel_features(pixels: &[u8], values_per_image: usize) -> Result<Tensor<f32>> {
    if values_per_image == 0 || pixels.is_empty() || !pixels.len().is_multiple_of(values_per_image)
    {
        return Err(Error::invalid(format!(
            "{} pixel values do not form whole images of {values_per_image} values",
            pixels.len()
        )));
    }
    let n = pixels.len() / values_per_image;
    Ok(Tensor::new(&[n, values_per_image], pixels.iter().map(|&p| f32::from(p)).collect()))
}

/// The raw-pixel baseline: [`probe`] on [`pixel_features`] of both splits.
pub fn pixel_probe(
    train_pixels: &[u8],
    train_y: &[usize],
    test_pixels: &[u8],
    test_y: &[usize],
    values_per_image: usize,
    n_classes: usize,
    opts: &ProbeOptions,
) -> Result<ProbeResult> {
    let train = pixel_features(train_pixels, values_per_image)?;
    let test = pixel_features(test_pixels, values_per_image)?;
    probe(&train, train_y, &test, test_y, n_classes, opts)
}

/// Checks the grid and solver settings.
fn check_options(opts: &ProbeOptions) -> Result<()> {
    let g = &opts.grid;
    if g.is_empty() || g.iter().any(|&c| !(c > 0.0 && c.is_finite())) {
        return Err(Error::invalid(format!("the C grid must hold positive finite values: {g:?}")));
    }
    if g.windows(2).any(|w| w[1] <= w[0]) {
        return Err(Error::invalid(format!("the C grid must be strictly increasing: {g:?}")));
    }
    let s = &opts.solver;
    if !(s.gtol >= 0.0 && s.gtol.is_finite() && s.ftol >= 0.0 && s.ftol.is_finite()) {
        return Err(Error::invalid(format!(
            "solver tolerances must be finite and ≥ 0, got gtol {} and ftol {}",
            s.gtol, s.ftol
        )));
    }
    Ok(())
}

/// Checks one split: a non-empty `[N, D]` matrix of finite values (D equal to `d` if given),
/// N labels in `0..n_classes`. Returns D.
fn check_split(
    name: &str,
    x: &Tensor<f32>,
    y: &[usize],
    n_classes: usize,
    d: Option<usize>,
) -> Result<usize> {
    if n_classes < 2 {
        return Err(Error::invalid(format!("a probe needs at least 2 classes, got {n_classes}")));
    }
    let &[n, cols] = x.shape() else {
        return Err(Error::invalid(format!(
            "{name} features must be a matrix [N, D], got shape {:?}",
            x.shape()
        )));
    };
    if n == 0 || cols == 0 {
        return Err(Error::invalid(format!("the {name} split is empty: features [{n}, {cols}]")));
    }
    if n != y.len() {
        return Err(Error::invalid(format!(
            "the {name} split has {n} feature rows but {} labels",
            y.len()
        )));
    }
    if let Some(d) = d.filter(|&d| d != cols) {
        return Err(Error::invalid(format!(
            "{name} features have {cols} columns, the training features {d}"
        )));
    }
    if let Some(i) = x.data().iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "{name} feature [{}, {}] is {} (features must be finite)",
            i / cols,
            i % cols,
            x.data()[i]
        )));
    }
    if let Some(i) = y.iter().position(|&l| l >= n_classes) {
        return Err(Error::invalid(format!(
            "{name} label {} of row {i} is not a class (0..{n_classes})",
            y[i]
        )));
    }
    Ok(cols)
}
