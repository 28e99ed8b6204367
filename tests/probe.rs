//! The linear probe: features against a hand computation, the logistic-regression solver against
//! closed forms and an independent Newton iteration, cross-validation folds against
//! scikit-learn, the whole protocol on the embedded digits against scikit-learn's figures
//! (`tests/fixtures/sklearn/probe_digits.json`), determinism across thread counts, and input
//! errors.

// The reference computations are deliberately plain index loops, the way the math is written.
#![allow(clippy::needless_range_loop)]

use igpt::model::{Config, Model, TokenBatch};
use igpt::probe::logistic::Objective;
use igpt::probe::{
    assign_folds, extract_features, log_grid, pixel_features, pixel_probe, probe, FeatureInput,
    FeatureOptions, FoldScheme, LbfgsOptions, LogisticRegression, ProbeOptions, Samples,
    Standardizer,
};
use igpt::rng::Philox;
use igpt::{Tensor, Token};
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Features

/// A 2-block model with every parameter random (gains near 1, biases non-zero), so that a wrong
/// gain, a missing bias or a wrong attention mask all change the features.
fn random_tiny_model() -> Model {
    let config = Config {
        vocab_size: 7,
        n_positions: 6,
        n_embd: 8,
        n_layer: 2,
        n_head: 2,
        ..Config::preset("tiny").unwrap()
    };
    let mut model = Model::init(config, 5).unwrap();
    let philox = Philox::new(77);
    for (i, (spec, p)) in model.specs.iter().zip(model.params.iter_mut()).enumerate() {
        let base = if spec.name.contains("ln_") { 1.0 } else { 0.0 };
        philox.fill_normal(i as u64, base, 0.4, p.data_mut());
    }
    model
}

/// The parameter `name` as f64.
fn param(model: &Model, name: &str) -> Vec<f64> {
    model.param(name).unwrap().data().iter().map(|&v| f64::from(v)).collect()
}

/// `x / sqrt(mean(x²) + ε) · g` of every row.
fn norm_rows(h: &[Vec<f64>], g: &[f64], eps: f64) -> Vec<Vec<f64>> {
    h.iter()
        .map(|row| {
            let s = (row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64 + eps).sqrt();
            row.iter().zip(g).map(|(v, g)| v / s * g).collect()
        })
        .collect()
}

/// `x · W + b` with `W` `[in, out]` row-major.
fn affine(x: &[Vec<f64>], w: &[f64], b: &[f64]) -> Vec<Vec<f64>> {
    let out = b.len();
    x.iter()
        .map(|row| {
            (0..out)
                .map(|j| {
                    b[j] + row.iter().enumerate().map(|(i, v)| v * w[i * out + j]).sum::<f64>()
                })
                .collect()
        })
        .collect()
}

fn mean_rows(x: &[Vec<f64>]) -> Vec<f64> {
    let d = x[0].len();
    (0..d).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / x.len() as f64).collect()
}

/// Features of one image at every layer 0..=L, in f64 with plain loops (SPEC §9 and §20.1).
fn hand_features(model: &Model, image: &[Token], input: FeatureInput) -> Vec<Vec<f64>> {
    let c = &model.config;
    let (d, t, nh) = (c.n_embd, image.len(), c.n_head);
    let hd = d / nh;
    let eps = c.layer_norm_epsilon;
    let (ids, causal): (Vec<Token>, bool) = match input {
        FeatureInput::SosShifted => {
            (std::iter::once(c.sos()).chain(image[..t - 1].iter().copied()).collect(), true)
        }
        FeatureInput::Unmasked => (image.to_vec(), false),
    };
    let (wte, wpe) =
        (param(model, "transformer.wte.weight"), param(model, "transformer.wpe.weight"));
    let mut h: Vec<Vec<f64>> = (0..t)
        .map(|p| (0..d).map(|j| wte[ids[p] as usize * d + j] + wpe[p * d + j]).collect())
        .collect();
    let mut features = Vec::new();
    for l in 0..c.n_layer {
        let w = |s: &str| param(model, &format!("transformer.h.{l}.{s}"));
        let x = norm_rows(&h, &w("ln_1.weight"), eps);
        features.push(mean_rows(&x));
        let qkv = affine(&x, &w("attn.c_attn.weight"), &w("attn.c_attn.bias"));
        let mut a = vec![vec![0.0; d]; t];
        for head in 0..nh {
            let col = |kind: usize, p: usize, j: usize| qkv[p][kind * d + head * hd + j];
            for i in 0..t {
                let visible = if causal { i + 1 } else { t };
                let s: Vec<f64> = (0..visible)
                    .map(|k| {
                        (0..hd).map(|j| col(0, i, j) * col(1, k, j)).sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for (k, sk) in s.iter().enumerate() {
                    for j in 0..hd {
                        a[i][head * hd + j] += (sk - m).exp() / z * col(2, k, j);
                    }
                }
            }
        }
        let a = affine(&a, &w("attn.c_proj.weight"), &w("attn.c_proj.bias"));
        h = h.iter().zip(&a).map(|(h, a)| h.iter().zip(a).map(|(x, y)| x + y).collect()).collect();
        let x = norm_rows(&h, &w("ln_2.weight"), eps);
        let m = affine(&x, &w("mlp.c_fc.weight"), &w("mlp.c_fc.bias"));
        let m: Vec<Vec<f64>> =
            m.iter().map(|r| r.iter().map(|&v| v / (1.0 + (-1.702 * v).exp())).collect()).collect();
        let m = affine(&m, &w("mlp.c_proj.weight"), &w("mlp.c_proj.bias"));
        h = h.iter().zip(&m).map(|(h, m)| h.iter().zip(m).map(|(x, y)| x + y).collect()).collect();
    }
    features.push(mean_rows(&norm_rows(&h, &param(model, "transformer.ln_f.weight"), eps)));
    features
}

/// `n` random images of `t` colours (ids below SOS).
fn random_images(model: &Model, n: usize, t: usize, seed: u64) -> TokenBatch {
    let colours = model.config.sos();
    let ids: Vec<Token> =
        (0..(n * t) as u64).map(|i| Philox::new(seed).u32_at(0, i) % colours).collect();
    TokenBatch::new(ids, n, t, &model.config, "test images").unwrap()
}

fn check_against_hand(input: FeatureInput) {
    let model = random_tiny_model();
    let images = random_images(&model, 5, 6, 3);
    let layers = [2, 0, 1]; // any order, L = 2 is the ln_f output
    let opts = FeatureOptions { input, batch_size: 2 };
    let features = extract_features(&model, &images, &layers, &opts).unwrap();
    assert_eq!(features.len(), 3);
    for i in 0..images.batch {
        let hand = hand_features(&model, &images.ids[i * 6..(i + 1) * 6], input);
        for (f, &l) in features.iter().zip(&layers) {
            assert_eq!(f.shape(), &[5, 8]);
            for (j, (&got, &want)) in f.data()[i * 8..(i + 1) * 8].iter().zip(&hand[l]).enumerate()
            {
                assert!(
                    (f64::from(got) - want).abs() < 2e-5,
                    "image {i} layer {l} [{j}]: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn sos_shifted_features_equal_a_hand_computation() {
    check_against_hand(FeatureInput::SosShifted);
}

#[test]
fn unmasked_features_use_bidirectional_attention_like_the_hand_computation() {
    check_against_hand(FeatureInput::Unmasked);
}

#[test]
fn features_are_bit_identical_for_1_and_2_threads_and_close_across_batch_sizes() {
    let model = random_tiny_model();
    let images = random_images(&model, 7, 6, 4);
    let run = |threads: usize, batch_size: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let opts = FeatureOptions { input: FeatureInput::SosShifted, batch_size };
        pool.install(|| extract_features(&model, &images, &[0, 1, 2], &opts).unwrap())
    };
    let one = run(1, 3);
    assert_eq!(one, run(2, 3));
    for (a, b) in one.iter().zip(run(2, 64)) {
        for (x, y) in a.data().iter().zip(b.data()) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}

#[test]
fn feature_requests_are_checked() {
    let model = random_tiny_model();
    let images = random_images(&model, 2, 6, 5);
    let opts = FeatureOptions::default();
    let err = |layers: &[usize], images: &TokenBatch, opts: &FeatureOptions| {
        extract_features(&model, images, layers, opts).unwrap_err().to_string()
    };
    assert!(err(&[3], &images, &opts).contains("layer 3 does not exist"));
    assert!(err(&[], &images, &opts).contains("no layer"));
    assert!(err(&[0], &images, &FeatureOptions { batch_size: 0, ..opts }).contains("batch size"));
    let mut with_sos = images.clone();
    with_sos.ids[7] = 6;
    assert!(err(&[0], &with_sos, &opts).contains("image 1 at position 1 is not a colour"));
}

// ---------------------------------------------------------------------------------------------
// Logistic regression

/// The default solver: it stops at ‖∇f‖∞ ≤ 1e-8 or when f stops decreasing beyond rounding, which
/// leaves gradients up to ~1e-7 and parameters accurate to ~1e-7 on these small problems.
fn solver() -> LbfgsOptions {
    LbfgsOptions::default()
}

/// Fits on every row of `x` (`[n, d]`).
fn fit(x: &[f64], d: usize, y: &[usize], k: usize, c: f64) -> LogisticRegression {
    let x = Tensor::new(&[y.len(), d], x.to_vec());
    let rows: Vec<usize> = (0..y.len()).collect();
    let samples = Samples::new(&x, y, &rows, k).unwrap();
    let (model, info) = LogisticRegression::fit(samples, c, None, &solver()).unwrap();
    assert!(info.converged(), "{info:?}");
    model
}

/// The binary logistic regression `min Σ log(1 + exp(−sᵢ(w·xᵢ + b))) + ‖w‖²/(2C)` (sᵢ = ±1) by
/// plain Newton on `(w, b)` — an independent solver to compare with.
fn binary_newton(x: &[f64], d: usize, y: &[usize], c: f64) -> Vec<f64> {
    let p = d + 1;
    let mut theta = vec![0.0; p];
    for _ in 0..100 {
        let (mut g, mut h) = (vec![0.0; p], vec![vec![0.0; p]; p]);
        for (i, &yi) in y.iter().enumerate() {
            let xi: Vec<f64> = x[i * d..(i + 1) * d].iter().copied().chain([1.0]).collect();
            let z: f64 = xi.iter().zip(&theta).map(|(a, b)| a * b).sum();
            let prob = 1.0 / (1.0 + (-z).exp());
            for a in 0..p {
                g[a] += (prob - yi as f64) * xi[a];
                for b in 0..p {
                    h[a][b] += prob * (1.0 - prob) * xi[a] * xi[b];
                }
            }
        }
        for a in 0..d {
            g[a] += theta[a] / c;
            h[a][a] += 1.0 / c;
        }
        let step = solve(h, g);
        theta.iter_mut().zip(&step).for_each(|(t, s)| *t -= s);
        if step.iter().all(|s| s.abs() < 1e-14) {
            break;
        }
    }
    theta
}

/// Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap();
        a.swap(col, piv);
        b.swap(col, piv);
        for r in col + 1..n {
            let f = a[r][col] / a[col][col];
            for k in col..n {
                a[r][k] -= f * a[col][k];
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        x[r] = (b[r] - (r + 1..n).map(|k| a[r][k] * x[k]).sum::<f64>()) / a[r][r];
    }
    x
}

/// A 1-D problem: non-separable (overlapping classes) or separable (a gap at 0).
fn one_d(separable: bool) -> (Vec<f64>, Vec<usize>) {
    let x: Vec<f64> = (0..40).map(|i| (i as f64 - 19.5) / 10.0).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if separable {
                usize::from(v > 0.0)
            } else {
                usize::from(v + 0.8 * ((i * 7 % 5) as f64 - 2.0) > 0.3)
            }
        })
        .collect();
    (x, y)
}

#[test]
fn binary_problems_match_an_independent_newton_solution() {
    for separable in [false, true] {
        let (x, y) = one_d(separable);
        for c in [0.01, 1.0, 100.0] {
            let m = fit(&x, 1, &y, 2, c);
            // Multinomial at C ≡ binary at 2C for w = w₁ − w₀ (the optimum has w₀ = −w₁).
            let newton = binary_newton(&x, 1, &y, 2.0 * c);
            let (w, b) = (m.weights[1] - m.weights[0], m.bias[1] - m.bias[0]);
            assert!((m.weights[0] + m.weights[1]).abs() < 1e-9, "w₀ = −w₁: {:?}", m.weights);
            let scale = 1.0 + newton[0].abs();
            assert!(
                (w - newton[0]).abs() < 1e-7 * scale,
                "separable {separable} C {c}: {w} vs {}",
                newton[0]
            );
            assert!(
                (b - newton[1]).abs() < 1e-7 * scale,
                "separable {separable} C {c}: {b} vs {}",
                newton[1]
            );
        }
    }
}

#[test]
fn a_one_dimensional_optimum_agrees_with_a_brute_force_grid_search() {
    // Binary 1-D: for each w on a fine grid the best b is found by ternary search; the
    // objective's minimum over the grid must sit where the solver's w is.
    let (x, y) = one_d(false);
    let c = 0.5;
    let m = fit(&x, 1, &y, 2, c);
    let w_solver = m.weights[1] - m.weights[0];
    let objective = |w: f64, b: f64| {
        let ce: f64 = x
            .iter()
            .zip(&y)
            .map(|(&xi, &yi)| {
                let z = w * xi + b;
                let s = if yi == 1 { 1.0 } else { -1.0 };
                (1.0 + (-s * z).exp()).ln()
            })
            .sum();
        ce + w * w / (2.0 * 2.0 * c)
    };
    let best_b = |w: f64| {
        let (mut lo, mut hi) = (-10.0, 10.0);
        for _ in 0..100 {
            let (m1, m2) = (lo + (hi - lo) / 3.0, hi - (hi - lo) / 3.0);
            if objective(w, m1) < objective(w, m2) {
                hi = m2
            } else {
                lo = m1
            }
        }
        0.5 * (lo + hi)
    };
    // A coarse grid (step 0.01 on [−10, 10]), then a fine one (step 1e-5) around its best point.
    let argmin = |ws: &mut dyn Iterator<Item = f64>| {
        ws.map(|w| (w, objective(w, best_b(w))))
            .fold((0.0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a })
            .0
    };
    let coarse = argmin(&mut (0..=2000).map(|i| i as f64 * 0.01 - 10.0));
    let w_grid = argmin(&mut (0..=2000).map(|i| coarse - 0.01 + i as f64 * 1e-5));
    assert!((w_solver - w_grid).abs() <= 1e-5, "solver {w_solver} vs grid {w_grid}");
    let b = m.bias[1] - m.bias[0];
    assert!(objective(w_solver, b) <= objective(w_grid, best_b(w_grid)) + 1e-12);
}

#[test]
fn constant_features_give_the_closed_form_class_frequencies() {
    // With no information in x, softmax(b) must equal the class frequencies: b_k − b_j = ln(n_k/n_j).
    let y = [0, 1, 1, 2, 2, 2, 2, 0, 1, 2];
    let x = vec![0.0; y.len() * 3];
    let m = fit(&x, 3, &y, 3, 1.0);
    assert!(m.weights.iter().all(|&w| w == 0.0));
    let counts = [2.0f64, 3.0, 5.0];
    for k in 1..3 {
        let want = (counts[k] / counts[0]).ln();
        assert!((m.bias[k] - m.bias[0] - want).abs() < 1e-7, "{:?}", m.bias);
    }
    assert!(m.bias.iter().sum::<f64>().abs() < 1e-12, "zero-sum bias: {:?}", m.bias);
}

/// A 3-class problem in 4 dimensions with overlapping Gaussian classes.
fn gaussian_problem(n: usize, d: usize, k: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
    let philox = Philox::new(seed);
    let y: Vec<usize> = (0..n as u64).map(|i| philox.u32_at(0, i) as usize % k).collect();
    let x = (0..n * d)
        .map(|i| f64::from(philox.normal_at(1, i as u64)) + 0.8 * ((y[i / d] + i % d) % k) as f64)
        .collect();
    (x, y)
}

#[test]
fn multinomial_optimum_has_zero_gradient_and_the_lowest_objective() {
    let (d, k) = (4, 3);
    let (x, y) = gaussian_problem(300, d, k, 9);
    let xt = Tensor::new(&[300, d], x.clone());
    let rows: Vec<usize> = (0..300).collect();
    let c = 0.3;
    let objective = Objective::new(Samples::new(&xt, &y, &rows, k).unwrap(), c).unwrap();
    // The objective matches a direct evaluation, and its gradient matches finite differences.
    let theta: Vec<f64> = (0..k * (d + 1)).map(|i| 0.1 * (i as f64 - 7.0)).collect();
    let (f, g) = objective.eval(&theta);
    let direct = {
        let (w, b) = theta.split_at(k * d);
        let ce: f64 = (0..300)
            .map(|i| {
                let z: Vec<f64> = (0..k)
                    .map(|c| b[c] + (0..d).map(|j| w[c * d + j] * x[i * d + j]).sum::<f64>())
                    .collect();
                z.iter().map(|v| v.exp()).sum::<f64>().ln() - z[y[i]]
            })
            .sum();
        ce / 300.0 + w.iter().map(|v| v * v).sum::<f64>() / (2.0 * c * 300.0)
    };
    assert!((f - direct).abs() < 1e-12, "{f} vs {direct}");
    for i in 0..theta.len() {
        let h = 1e-6;
        let (mut up, mut down) = (theta.clone(), theta.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (objective.eval(&up).0 - objective.eval(&down).0) / (2.0 * h);
        assert!((fd - g[i]).abs() < 1e-7, "∂f/∂θ[{i}]: {} vs {fd}", g[i]);
    }
    // At the solution: zero gradient, and no random perturbation lowers the objective.
    let m = fit(&x, d, &y, k, c);
    let opt: Vec<f64> = m.weights.iter().chain(&m.bias).copied().collect();
    let (f_opt, g_opt) = objective.eval(&opt);
    assert!(g_opt.iter().all(|v| v.abs() <= 1e-7), "{g_opt:?}");
    let philox = Philox::new(1);
    for trial in 0..20 {
        let moved: Vec<f64> = opt
            .iter()
            .enumerate()
            .map(|(i, &v)| v + 1e-3 * f64::from(philox.normal_at(trial, i as u64)))
            .collect();
        assert!(objective.eval(&moved).0 > f_opt);
    }
}

#[test]
fn absent_classes_get_no_parameters_and_are_never_predicted() {
    let (x, y) = gaussian_problem(120, 3, 3, 2);
    let (x, y): (Vec<f64>, Vec<usize>) = {
        let keep: Vec<usize> = (0..120).filter(|&i| y[i] != 1).collect();
        (
            keep.iter().flat_map(|&i| x[i * 3..i * 3 + 3].to_vec()).collect(),
            keep.iter().map(|&i| y[i]).collect(),
        )
    };
    let m = fit(&x, 3, &y, 4, 1.0);
    assert_eq!(m.classes, vec![0, 2]);
    assert_eq!((m.weights.len(), m.bias.len(), m.n_classes), (6, 2, 4));
    let xt = Tensor::new(&[y.len(), 3], x);
    assert!(m.predict(&xt).unwrap().iter().all(|&p| p == 0 || p == 2));
}

#[test]
fn standardisation_uses_population_std_and_keeps_constant_columns_finite() {
    let train =
        Tensor::new(&[4, 3], vec![1.0, 5.0, 2.0, 3.0, 5.0, 2.0, 5.0, 5.0, 2.0, 7.0, 5.0, 2.0]);
    let s = Standardizer::fit(&train).unwrap();
    assert_eq!(s.mean, vec![4.0, 5.0, 2.0]);
    assert_eq!(s.scale, vec![5f64.sqrt(), 1.0, 1.0]);
    let test = Tensor::new(&[1, 3], vec![4.0, 6.0, 2.0]);
    assert_eq!(s.apply(&test).unwrap().data(), &[0.0, 1.0, 0.0]);
    assert!(s.apply(&Tensor::new(&[1, 2], vec![0.0; 2])).is_err());
    assert!(Standardizer::fit(&Tensor::new(&[0, 3], vec![])).is_err());
    assert!(Standardizer::fit(&Tensor::new(&[1, 1], vec![f32::NAN])).is_err());
}

// ---------------------------------------------------------------------------------------------
// Cross-validation and the probe

#[test]
fn folds_match_scikit_learn() {
    let y = [3, 1, 1, 0, 3, 3, 1, 0, 0, 3, 1, 3, 2, 2, 1, 3, 0, 1, 3, 3, 2, 1];
    // StratifiedKFold(k).split(X, y) and KFold(5), scikit-learn 1.9.1.
    let strat3 = [0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 0, 1, 2, 1, 2, 2, 2, 2, 2, 2];
    let strat5 = [0, 0, 1, 0, 0, 1, 2, 1, 2, 1, 3, 2, 0, 1, 3, 2, 3, 4, 3, 4, 4, 4];
    let kfold5 = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4];
    assert_eq!(assign_folds(&y, 3, FoldScheme::Stratified).unwrap(), strat3);
    assert_eq!(assign_folds(&y, 5, FoldScheme::Stratified).unwrap(), strat5);
    assert_eq!(assign_folds(&y, 5, FoldScheme::Contiguous).unwrap(), kfold5);
    let shuffled = assign_folds(&y, 5, FoldScheme::Shuffled { seed: 3 }).unwrap();
    let mut sizes = [0; 5];
    shuffled.iter().for_each(|&f| sizes[f] += 1);
    assert_eq!(sizes, [5, 5, 4, 4, 4]);
    assert_eq!(shuffled, assign_folds(&y, 5, FoldScheme::Shuffled { seed: 3 }).unwrap());
    assert_ne!(shuffled, assign_folds(&y, 5, FoldScheme::Shuffled { seed: 4 }).unwrap());
    assert!(assign_folds(&y, 23, FoldScheme::Contiguous).is_err());
    assert!(assign_folds(&y, 1, FoldScheme::Contiguous).is_err());
}

#[test]
fn the_default_grid_is_numpys_logspace() {
    let numpy = [
        0.0001,
        0.000774263682681127,
        0.005994842503189409,
        0.046415888336127774,
        0.3593813663804626,
        2.782559402207126,
        21.54434690031882,
        166.81005372000558,
        1291.5496650148827,
        10000.0,
    ];
    for (a, b) in ProbeOptions::default().grid.iter().zip(numpy) {
        assert!((a - b).abs() <= 1e-15 * b, "{a} vs {b}");
    }
    assert_eq!(log_grid(0.0, 2.0, 3), vec![1.0, 10.0, 100.0]);
}

/// A probe problem as f32 features: `n_train` and `n_test` rows of a Gaussian problem.
fn probe_problem(
    n_train: usize,
    n_test: usize,
) -> (Tensor<f32>, Vec<usize>, Tensor<f32>, Vec<usize>) {
    let (d, k, n) = (6, 4, n_train + n_test);
    let (x, y) = gaussian_problem(n, d, k, 21);
    let x: Vec<f32> = x.iter().map(|&v| v as f32 * 3.0 + 1.0).collect();
    let train = Tensor::new(&[n_train, d], x[..n_train * d].to_vec());
    let test = Tensor::new(&[n_test, d], x[n_train * d..].to_vec());
    (train, y[..n_train].to_vec(), test, y[n_train..].to_vec())
}

#[test]
fn the_probe_is_deterministic_and_bit_identical_for_1_and_2_threads() {
    // 800 training rows: each fold trains on 640, three chunks of the parallel loss.
    let (train, train_y, test, test_y) = probe_problem(800, 200);
    let opts = ProbeOptions { grid: log_grid(-3.0, 3.0, 7), ..ProbeOptions::default() };
    let run = |threads: usize, scheme: FoldScheme| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let opts = ProbeOptions { scheme, ..opts.clone() };
        pool.install(|| probe(&train, &train_y, &test, &test_y, 4, &opts).unwrap())
    };
    for scheme in [FoldScheme::Stratified, FoldScheme::Shuffled { seed: 11 }] {
        let one = run(1, scheme);
        assert_eq!(one, run(1, scheme));
        assert_eq!(one, run(2, scheme));
        assert!(one.converged && one.cv.not_converged == 0);
        assert_eq!(one.c, opts.grid[one.cv.best]);
        assert!(
            one.accuracy > 0.5 && one.cv_accuracy > 0.5,
            "{} {}",
            one.accuracy,
            one.cv_accuracy
        );
        // The chosen C is the first best mean fold accuracy.
        let best = one.cv.mean_accuracy.iter().cloned().fold(0.0, f64::max);
        assert_eq!(one.cv.mean_accuracy.iter().position(|&s| s == best), Some(one.cv.best));
    }
}

#[test]
fn the_pixel_baseline_is_the_probe_on_pixel_values() {
    let (n, d) = (60, 5);
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let pixels: Vec<u8> = (0..n * d).map(|i| (labels[i / d] * 40 + (i * 37) % 50) as u8).collect();
    let split = 45;
    let opts = ProbeOptions { grid: log_grid(-2.0, 2.0, 3), ..ProbeOptions::default() };
    let r = pixel_probe(
        &pixels[..split * d],
        &labels[..split],
        &pixels[split * d..],
        &labels[split..],
        d,
        3,
        &opts,
    )
    .unwrap();
    let direct = probe(
        &pixel_features(&pixels[..split * d], d).unwrap(),
        &labels[..split],
        &pixel_features(&pixels[split * d..], d).unwrap(),
        &labels[split..],
        3,
        &opts,
    )
    .unwrap();
    assert_eq!(r, direct);
    assert!(pixel_features(&pixels[..7], 5).unwrap_err().to_string().contains("whole images"));
    assert!(pixel_features(&[], 5).is_err());
}

#[test]
fn bad_probe_inputs_get_clear_errors() {
    let (train, train_y, test, test_y) = probe_problem(300, 100);
    let opts = ProbeOptions::default();
    let err = |train: &Tensor<f32>,
               train_y: &[usize],
               test: &Tensor<f32>,
               test_y: &[usize],
               k: usize,
               opts: &ProbeOptions| {
        probe(train, train_y, test, test_y, k, opts).unwrap_err().to_string()
    };
    let mut bad_y = train_y.clone();
    bad_y[17] = 4;
    assert_eq!(
        err(&train, &bad_y, &test, &test_y, 4, &opts),
        "training label 4 of row 17 is not a class (0..4)"
    );
    let mut bad_x = test.clone();
    bad_x.data_mut()[6 * 2 + 3] = f32::NAN;
    assert_eq!(
        err(&train, &train_y, &bad_x, &test_y, 4, &opts),
        "test feature [2, 3] is NaN (features must be finite)"
    );
    assert!(err(&train, &train_y[1..], &test, &test_y, 4, &opts)
        .contains("300 feature rows but 299 labels"));
    let empty = Tensor::new(&[0, 6], vec![]);
    assert!(err(&train, &train_y, &empty, &[], 4, &opts).contains("the test split is empty"));
    let narrow = Tensor::new(&[1, 5], vec![0.0; 5]);
    assert!(err(&train, &train_y, &narrow, &[0], 4, &opts)
        .contains("5 columns, the training features 6"));
    assert!(err(&train, &train_y, &test, &test_y, 1, &opts).contains("at least 2 classes"));
    assert!(err(&train, &vec![2; 300], &test, &test_y, 4, &opts).contains("fewer than 2 classes"));
    let folds = ProbeOptions { folds: 301, ..opts.clone() };
    assert!(err(&train, &train_y, &test, &test_y, 4, &folds).contains("301 folds for 300 rows"));
    let grid = ProbeOptions { grid: vec![1.0, 0.1], ..opts.clone() };
    assert!(err(&train, &train_y, &test, &test_y, 4, &grid).contains("strictly increasing"));
    let grid = ProbeOptions { grid: vec![0.0], ..opts.clone() };
    assert!(err(&train, &train_y, &test, &test_y, 4, &grid).contains("positive finite"));
    let solver =
        ProbeOptions { solver: LbfgsOptions { gtol: f64::NAN, ..opts.solver }, ..opts.clone() };
    assert!(err(&train, &train_y, &test, &test_y, 4, &solver).contains("tolerances must be"));
}

#[test]
fn bad_solver_inputs_get_clear_errors() {
    let x = Tensor::new(&[3, 2], vec![0.0, 1.0, 2.0, f64::INFINITY, 4.0, 5.0]);
    let y = [0, 1, 2];
    let err = |rows: &[usize], k: usize| Samples::new(&x, &y, rows, k).unwrap_err().to_string();
    assert_eq!(err(&[0, 1], 3), "feature [1, 1] is not finite");
    assert_eq!(err(&[0, 2], 2), "label 2 of row 2 is not a class (0..2)");
    assert_eq!(err(&[3], 3), "row 3 is outside the 3 samples");
    assert!(err(&[], 3).contains("no training row"));
    assert!(Samples::new(&x, &y[..2], &[0], 3).unwrap_err().to_string().contains("for 2 labels"));
    let samples = Samples::new(&x, &y, &[0, 2], 3).unwrap();
    let fit = LogisticRegression::fit(samples, -1.0, None, &solver());
    assert!(fit.unwrap_err().to_string().contains("C must be positive"));
    let (m, _) = LogisticRegression::fit(samples, 1.0, None, &solver()).unwrap();
    let narrow = Tensor::new(&[1, 1], vec![0.0]);
    assert!(m.predict(&narrow).unwrap_err().to_string().contains("of 2 features"));
    let wide = Tensor::new(&[1, 2], vec![0.0, 0.0]);
    assert!(m.accuracy(&wide, &[0, 1]).unwrap_err().to_string().contains("2 labels for 1"));
}

// ---------------------------------------------------------------------------------------------
// The digits against scikit-learn

#[path = "common/sklearn.rs"]
mod sklearn;

/// The reference protocol's raw-pixel baseline on the embedded digits (C by 5-fold CV on the
/// first 1437 rows, tested on the last 360) against scikit-learn 1.9.1's
/// `StandardScaler` + `LogisticRegressionCV(Cs=10, cv=5, tol=1e-12)` on the same rows
/// (`sklearn/probe_digits.json`). Both solve the same strictly convex problems to convergence,
/// so everything must agree, up to the last digits of the solvers' stopping points:
/// measured, the folds, the grid, all 50 fold scores, C, the 360 test predictions and both
/// accuracies are identical, the refit's objective is 3e-12 (relative) above scikit-learn's
/// and its parameters differ by 2.9e-6 in relative norm. The bounds leave room for rounding
/// on another CPU (a prediction whose margin is ~1e-5 could flip), not for a different method.
#[test]
fn digits_pixel_baseline_matches_scikit_learn() {
    let digits = igpt::data::digits::digits().unwrap();
    let pixels = |set: &igpt::data::ImageSet| -> Vec<u8> {
        set.tokens.iter().map(|&t| u8::try_from(t).unwrap()).collect()
    };
    let labels = |set: &igpt::data::ImageSet| -> Vec<usize> {
        set.labels.iter().map(|&l| usize::from(l)).collect()
    };
    let (train_px, test_px) = (pixels(&digits.train), pixels(&digits.test));
    let (train_y, test_y) = (labels(&digits.train), labels(&digits.test));
    let start = Instant::now();
    let opts = ProbeOptions::default();
    let r = pixel_probe(&train_px, &train_y, &test_px, &test_y, 64, 10, &opts).unwrap();
    eprintln!(
        "digits pixels: test accuracy {:.4}, C {}, cv {:.4}, train {:.4}, {:.2} s",
        r.accuracy,
        r.c,
        r.cv_accuracy,
        r.train_accuracy,
        start.elapsed().as_secs_f64()
    );
    let sk = sklearn::read("probe_digits.json");
    let list = |key: &str| sklearn::numbers(sklearn::field(&sk, key));
    let (n_train, n_test) = (train_y.len() as f64, test_y.len() as f64);

    for (a, b) in r.grid.iter().zip(list("grid")) {
        assert!((a - b).abs() <= 1e-15 * b, "grid: {a} vs {b}");
    }
    let folds = assign_folds(&train_y, 5, FoldScheme::Stratified).unwrap();
    assert!(folds.iter().zip(list("folds")).all(|(&a, b)| a as f64 == b), "folds differ");
    // Each fold score within one held-out image (a fold holds 287 or 288).
    let sk_scores = list("fold_accuracy");
    for (f, row) in r.cv.fold_accuracy.iter().enumerate() {
        let size = folds.iter().filter(|&&x| x == f).count() as f64;
        for (g, &ours) in row.iter().enumerate() {
            let theirs = sk_scores[f * r.grid.len() + g];
            assert!(
                (ours - theirs).abs() <= 1.0 / size + 1e-12,
                "fold {f}, C {}: {ours} vs {theirs}",
                r.grid[g]
            );
        }
    }
    assert_eq!(r.c, sklearn::f64_of(&sk, "C"), "chosen C");
    assert!(r.converged);

    // The refit: igpt's optimum is as low as scikit-learn's, evaluated by the same objective
    // on the same standardised rows.
    let train = r.standardizer.apply(&pixel_features(&train_px, 64).unwrap()).unwrap();
    let test = r.standardizer.apply(&pixel_features(&test_px, 64).unwrap()).unwrap();
    let rows: Vec<usize> = (0..train_y.len()).collect();
    let objective =
        Objective::new(Samples::new(&train, &train_y, &rows, 10).unwrap(), r.c).unwrap();
    let ours: Vec<f64> = r.classifier.weights.iter().chain(&r.classifier.bias).copied().collect();
    let theirs: Vec<f64> = list("coef").into_iter().chain(list("intercept")).collect();
    let (f_ours, f_theirs) = (objective.eval(&ours).0, objective.eval(&theirs).0);
    let recorded = sklearn::f64_of(&sk, "objective");
    // Same standardisation and same objective as scikit-learn's (numpy's evaluation, in f64).
    assert!((f_theirs - recorded).abs() <= 1e-12 * recorded, "{f_theirs} vs {recorded}");
    assert!(f_ours <= f_theirs * (1.0 + 1e-10), "objective: igpt {f_ours} vs sklearn {f_theirs}");
    let diff: f64 = ours.iter().zip(&theirs).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = theirs.iter().map(|b| b * b).sum::<f64>().sqrt();
    assert!(diff <= 3e-5 * norm, "parameters: relative difference {:e}", diff / norm);

    let predicted = r.classifier.predict(&test).unwrap();
    let differ = predicted.iter().zip(list("test_predictions")).filter(|(&a, b)| a as f64 != *b);
    assert!(differ.count() <= 1, "test predictions differ from scikit-learn's");
    let test_acc = sklearn::f64_of(&sk, "test_accuracy");
    assert!((r.accuracy - test_acc).abs() <= 1.0 / n_test + 1e-12, "{} vs {test_acc}", r.accuracy);
    let train_acc = sklearn::f64_of(&sk, "train_accuracy");
    assert!((r.train_accuracy - train_acc).abs() <= 1.0 / n_train + 1e-12);
}
