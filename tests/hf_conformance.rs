//! Conformance with HuggingFace `transformers`' ImageGPT, from fixtures `transformers` itself
//! produced (`tests/fixtures/make_hf_fixtures.py`; versions in `tests/fixtures/README.md`).
//!
//! For small random models with non-zero biases and odd shapes: logits and hidden states
//! (rtol 1e-4, atol 1e-5), the loss (1e-5 relative), every parameter gradient (1e-4 relative
//! norm), and the losses of 5 AdamW steps (1e-5 relative).

use igpt::io::safetensors::SafeTensors;
use igpt::model::{Model, Objective, TokenBatch};
use igpt::train::{AdamW, AdamWConfig};
use igpt::Tensor;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf").join(name)
}

struct Case {
    model: Model,
    expected: SafeTensors,
    batch: TokenBatch,
}

fn load(name: &str) -> Case {
    let dir = fixture(name);
    let model = Model::load(&dir).unwrap();
    let expected = SafeTensors::read(&dir.join("expected.safetensors")).unwrap();
    let (shape, ids) = expected.get_i64("input_ids").unwrap();
    let batch = TokenBatch::new(&ids, shape[0], shape[1], &model.config, "input_ids").unwrap();
    Case { model, expected, batch }
}

fn expected(case: &Case, name: &str) -> Tensor<f32> {
    let (shape, data) = case.expected.get_f32(name).unwrap();
    Tensor::new(&shape, data)
}

/// `|a − b| ≤ atol + rtol·|b|` everywhere.
fn assert_close(what: &str, a: &Tensor<f32>, b: &Tensor<f32>, rtol: f32, atol: f32) {
    assert_eq!(a.shape(), b.shape(), "{what}: shape");
    for (i, (x, y)) in a.data().iter().zip(b.data()).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}[{i}]: igpt {x} vs transformers {y}"
        );
    }
}

fn rel_norm(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt();
    num / den.max(1e-30)
}

fn metadata_f64(case: &Case, key: &str) -> f64 {
    case.expected.get_metadata(key).unwrap().parse().unwrap()
}

fn objective(case: &Case) -> Objective {
    match case.expected.get_i64("labels") {
        Ok((_, labels)) => {
            Objective::Classify { labels: labels.iter().map(|&l| l as usize).collect() }
        }
        Err(_) => Objective::HfShifted,
    }
}

fn check_forward(name: &str) {
    let case = load(name);
    let out = case.model.forward(&case.batch, true);
    // A classification model's `[B, num_labels]` logits are stored under `logits` too.
    let logits = out.score.or(out.logits).unwrap();
    assert_close(&format!("{name} logits"), &logits, &expected(&case, "logits"), 1e-4, 1e-5);
    assert_eq!(out.hidden_states.len(), case.model.config.n_layer + 1);
    for (l, h) in out.hidden_states.iter().enumerate() {
        let key = format!("hidden_states.{l}");
        assert_close(&format!("{name} {key}"), h, &expected(&case, &key), 1e-4, 1e-5);
    }
}

fn check_loss_and_grads(name: &str) {
    let case = load(name);
    let (loss, grads) = case.model.loss_and_grads(&case.batch, &objective(&case), None).unwrap();
    let want = expected(&case, "loss").data()[0];
    assert!(
        ((loss - want) / want).abs() <= 1e-5,
        "{name} loss: igpt {loss} vs transformers {want}"
    );
    for (spec, g) in case.model.specs.iter().zip(&grads) {
        let want = expected(&case, &format!("grad.{}", spec.name));
        let err = rel_norm(g.data(), want.data());
        assert!(err <= 1e-4, "{name} grad.{}: relative norm error {err:e}", spec.name);
    }
}

fn check_adamw(name: &str) {
    let mut case = load(name);
    let config = AdamWConfig {
        beta1: metadata_f64(&case, "adamw_beta1"),
        beta2: metadata_f64(&case, "adamw_beta2"),
        eps: metadata_f64(&case, "adamw_eps"),
        weight_decay: metadata_f64(&case, "adamw_weight_decay"),
    };
    let lr = metadata_f64(&case, "adamw_lr");
    let want = expected(&case, "adamw.losses");
    let objective = objective(&case);
    let mut opt = AdamW::new(config, &case.model.params);
    for (step, &want_loss) in want.data().iter().enumerate() {
        let (loss, grads) = case.model.loss_and_grads(&case.batch, &objective, None).unwrap();
        let err = ((loss - want_loss) / want_loss).abs();
        assert!(
            err <= 1e-5,
            "{name} AdamW loss before step {}: igpt {loss} vs {want_loss}",
            step + 1
        );
        opt.step(&mut case.model.params, &grads, lr);
    }
}

#[test]
fn causal_model_a_forward_matches_transformers() {
    check_forward("hf_a");
}

#[test]
fn causal_model_b_with_n_inner_forward_matches_transformers() {
    check_forward("hf_b");
}

#[test]
fn classification_model_forward_matches_transformers() {
    check_forward("hf_c");
}

#[test]
fn causal_model_a_loss_and_gradients_match_transformers() {
    check_loss_and_grads("hf_a");
}

#[test]
fn causal_model_b_loss_and_gradients_match_transformers() {
    check_loss_and_grads("hf_b");
}

#[test]
fn classification_loss_and_gradients_match_transformers() {
    check_loss_and_grads("hf_c");
}

#[test]
fn adamw_steps_match_torch_without_weight_decay() {
    check_adamw("hf_a");
}

#[test]
fn adamw_steps_match_torch_with_weight_decay() {
    check_adamw("hf_b");
    check_adamw("hf_c");
}

#[test]
fn legacy_checkpoint_buffers_are_ignored() {
    let legacy = Model::load(&fixture("hf_a_legacy")).unwrap();
    let case = load("hf_a");
    assert_eq!(legacy.params, case.model.params);
}

#[test]
fn saved_directory_reloads_identically() {
    let case = load("hf_b");
    let dir = std::env::temp_dir().join(format!("igpt-hf-roundtrip-{}", std::process::id()));
    case.model.save(&dir).unwrap();
    let back = Model::load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(back.config, case.model.config);
    assert_eq!(back.params, case.model.params);
}
