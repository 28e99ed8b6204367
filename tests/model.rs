//! The model: presets and parameter counts, configuration files, initialisation, input
//! validation, and f64 gradient checks of the whole network under every objective.

use igpt::autodiff::check::{check_gradients, Graph, Tolerances};
use igpt::autodiff::{Tape, Var};
use igpt::io::json::{parse_json, Json};
use igpt::model::{bert_mask, Config, DropoutRng, Model, Objective, TokenBatch};
use igpt::ops::Reference;
use igpt::rng::Philox;
use igpt::{Float, Tensor, Token};

#[test]
fn published_parameter_counts_without_biases() {
    // TF original, no biases: L(12d² + 2d) + d(2·512 + n_ctx + 2).
    for (name, count) in
        [("igpt-s", 76_571_648u64), ("igpt-m", 455_157_760), ("igpt-l", 1_362_250_752)]
    {
        assert_eq!(Config::preset(name).unwrap().n_params(false), count, "{name}");
    }
}

#[test]
fn every_preset_is_valid_and_counts_match_allocation_for_small_ones() {
    for name in ["digits", "emoji", "tiny", "small", "igpt-s", "igpt-m", "igpt-l", "igpt-xl"] {
        let c = Config::preset(name).unwrap();
        if let Err(e) = c.validate(name) {
            // Only memory may refuse a preset (igpt-xl's 25 GiB of weights on a small machine).
            assert!(e.to_string().contains("of memory, more than"), "{name}: {e}");
        }
        if c.n_params(true) < 5_000_000 {
            let m = Model::init(c.clone(), 0).unwrap();
            assert_eq!(m.n_params() as u64, c.n_params(true), "{name}");
        }
    }
    // The counts SPEC §9 gives for the two recipes' presets.
    assert_eq!(Config::preset("digits").unwrap().n_params(true), 804_864);
    assert_eq!(Config::preset("emoji").unwrap().n_params(true), 956_160);
    assert!(Config::preset("igpt-xxl").unwrap_err().to_string().contains("unknown config preset"));
}

#[test]
fn config_json_round_trips_with_hf_keys() {
    let mut c = Config::preset("small").unwrap();
    c.n_inner = Some(300);
    c.resid_pdrop = 0.1;
    let json = c.to_json();
    assert_eq!(json.get("model_type").and_then(Json::as_str), Some("imagegpt"));
    let text = json.to_pretty().unwrap();
    let back = Config::from_json(&parse_json(text.as_bytes(), "t").unwrap(), "t").unwrap();
    assert_eq!(back, c);
}

fn config_error(json: &str) -> String {
    let j = parse_json(json.as_bytes(), "config.json").unwrap();
    Config::from_json(&j, "config.json").unwrap_err().to_string()
}

#[test]
fn unsupported_or_absurd_configs_are_rejected_before_allocating() {
    let base = r#""vocab_size": 17, "n_positions": 16, "n_embd": 8, "n_head": 2"#;
    let cases = [
        (format!("{{{base}, \"n_layer\": 1000000000}}"), "n_layer = 1000000000 is outside"),
        (format!("{{{base}, \"n_layer\": 2, \"tie_word_embeddings\": true}}"), "tie_word_embeddings"),
        (format!("{{{base}, \"n_layer\": 2, \"scale_attn_weights\": false}}"), "scale_attn_weights"),
        (format!("{{{base}, \"n_layer\": 2, \"activation_function\": \"relu\"}}"), "relu"),
        (format!("{{{base}, \"n_layer\": 2, \"model_type\": \"gpt2\"}}"), "gpt2"),
        (format!("{{{base}, \"n_layer\": -1}}"), "non-negative integer"),
        (format!("{{{base}, \"n_layer\": 2.5}}"), "non-negative integer"),
        (r#"{"vocab_size": 17, "n_positions": 16, "n_embd": 9, "n_head": 2, "n_layer": 1}"#.into(), "divisible"),
        (format!("{{{base}, \"n_layer\": 2, \"attn_pdrop\": 1.5}}"), "attn_pdrop"),
        (r#"{"vocab_size": 1000000, "n_positions": 65536, "n_embd": 32768, "n_head": 8, "n_layer": 1024}"#.into(), "of memory, more than the"),
    ];
    for (json, want) in cases {
        let err = config_error(&json);
        assert!(err.contains(want) && err.starts_with("config.json"), "{json}: {err}");
    }
}

#[test]
fn init_follows_the_paper_and_is_reproducible() {
    let c = Config::preset("digits").unwrap();
    let a = Model::init(c.clone(), 7).unwrap();
    assert_eq!(a.params, Model::init(c.clone(), 7).unwrap().params);
    assert_ne!(a.params, Model::init(c, 8).unwrap().params);
    let std = |name: &str| {
        let x = a.param(name).unwrap().data();
        (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    };
    assert!((std("transformer.wte.weight") - 0.02).abs() < 0.002);
    assert!((std("transformer.wpe.weight") - 0.01).abs() < 0.001);
    assert!((std("transformer.h.0.attn.c_attn.weight") - 1.0 / 128f64.sqrt()).abs() < 0.005);
    assert!((std("transformer.h.0.attn.c_proj.weight") - 1.0 / 512f64.sqrt()).abs() < 0.003);
    assert_eq!(std("lm_head.weight"), 0.0);
    assert_eq!(std("transformer.h.3.mlp.c_fc.bias"), 0.0);
    assert!(a.param("transformer.ln_f.weight").unwrap().data().iter().all(|&g| g == 1.0));
}

#[test]
fn token_batches_are_validated() {
    let c = Config::preset("digits").unwrap();
    let err = |ids: &[i64], b, t| {
        TokenBatch::from_i64(ids, b, t, &c, "tokens.npy").unwrap_err().to_string()
    };
    assert!(err(&[0, 18], 1, 2).contains("token id 18 at [0, 1] is outside 0..18"));
    assert!(err(&[-1, 0], 1, 2).contains("token id -1"));
    assert!(err(&vec![0; 65], 1, 65).contains("exceed n_positions = 64"));
    assert!(err(&[0, 1, 2], 2, 2).contains("3 ids for shape [2, 2]"));
    assert!(err(&[], 0, 4).contains("empty"));
    // Tokens already in memory are checked against the vocabulary the same way.
    let e = TokenBatch::new(vec![0, 18], 1, 2, &c, "t").unwrap_err().to_string();
    assert!(e.contains("token id 18 at [0, 1] is outside 0..18"), "{e}");
}

#[test]
fn sos_is_never_a_target() {
    let m = Model::init(Config::preset("digits").unwrap(), 0).unwrap();
    let batch = TokenBatch::new(vec![3, 17, 4], 1, 3, &m.config, "t").unwrap();
    let err = m.loss_and_grads(&batch, &Objective::Autoregressive, None).unwrap_err();
    assert!(err.to_string().contains("not a colour"), "{err}");
}

#[test]
fn autoregressive_loss_at_init_is_uniform() {
    // lm_head starts at zero, so every prediction is uniform over the 17 grey levels.
    let m = Model::init(Config::preset("digits").unwrap(), 0).unwrap();
    let ids: Vec<Token> = (0..128).map(|i| i % 17).collect();
    let batch = TokenBatch::new(ids, 2, 64, &m.config, "t").unwrap();
    let (loss, _) = m.loss_and_grads(&batch, &Objective::Autoregressive, None).unwrap();
    assert!((loss - 17f32.ln()).abs() < 1e-5, "{loss}");
}

#[test]
fn dropout_is_reproducible_and_only_in_training() {
    let mut c = Config::preset("digits").unwrap();
    (c.resid_pdrop, c.embd_pdrop) = (0.1, 0.1);
    let mut m = Model::init(c, 0).unwrap();
    let n = m.params.len();
    m.params[n - 1] = random_like(&m.params[n - 1], 5);
    let ids: Vec<Token> = (0..64).map(|i| i % 17).collect();
    let batch = TokenBatch::new(ids, 1, 64, &m.config, "t").unwrap();
    let rng = |step| Some(DropoutRng { philox: Philox::new(1), step });
    let loss = |d| m.loss_and_grads(&batch, &Objective::Autoregressive, d).unwrap().0;
    assert_eq!(loss(rng(3)), loss(rng(3)));
    assert_ne!(loss(rng(3)), loss(rng(4)));
    assert_ne!(loss(rng(3)), loss(None));
}

fn random_like(t: &Tensor<f32>, stream: u64) -> Tensor<f32> {
    let mut v = vec![0.0; t.len()];
    Philox::new(99).fill_normal(stream, 0.0, 0.3, &mut v);
    Tensor::new(t.shape(), v)
}

/// The whole model's loss as a graph of its parameters, for the f64 gradient checker.
struct WholeModel {
    model: Model,
    batch: TokenBatch,
    objective: Objective,
}

impl Graph for WholeModel {
    fn build<T: Float>(&self, tape: &mut Tape<T>, p: &[Var]) -> Var {
        self.model.loss_graph(tape, p, &self.batch, &self.objective, None, &Reference).unwrap()
    }
}

/// A tiny model with every parameter random (biases and heads included) so no gradient is
/// trivially zero.
fn tiny_model(num_labels: Option<usize>) -> Model {
    let mut c = Config::preset("digits").unwrap();
    (c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head, c.n_inner) =
        (7, 5, 6, 2, 2, Some(10));
    c.num_labels = num_labels;
    let mut m = Model::init(c, 3).unwrap();
    for (i, p) in m.params.iter_mut().enumerate() {
        let mut r = random_like(p, i as u64);
        if p.shape().len() == 1 && p.len() == 6 && m.specs[i].name.contains("ln") {
            r.data_mut().iter_mut().for_each(|g| *g += 1.0);
        }
        *p = r;
    }
    m
}

fn check_model(model: Model, ids: &[Token], b: usize, t: usize, objective: Objective) {
    let batch = TokenBatch::new(ids.to_vec(), b, t, &model.config, "t").unwrap();
    let inputs: Vec<Tensor<f64>> = model.params.iter().map(|p| p.cast()).collect();
    let graph = WholeModel { model, batch, objective };
    let tol = Tolerances::default();
    check_gradients(&graph, &inputs, 1, &tol).assert_within(&tol);
}

const IDS: [Token; 10] = [6, 1, 5, 0, 2, 3, 3, 4, 1, 0];

#[test]
fn whole_model_gradients_autoregressive() {
    check_model(tiny_model(None), &[1, 5, 0, 2, 4, 3, 3, 4, 1, 0], 2, 5, Objective::Autoregressive);
}

#[test]
fn whole_model_gradients_hf_shifted() {
    check_model(tiny_model(None), &IDS, 2, 5, Objective::HfShifted);
}

#[test]
fn whole_model_gradients_bert() {
    let mask = vec![true, false, false, true, false, false, true, true, false, false];
    check_model(tiny_model(None), &[1, 5, 0, 2, 4, 3, 3, 4, 1, 0], 2, 5, Objective::Bert { mask });
}

#[test]
fn whole_model_gradients_classification() {
    check_model(tiny_model(Some(3)), &IDS, 2, 5, Objective::Classify { labels: vec![2, 0] });
}

#[test]
fn bert_mask_rate_is_fifteen_percent() {
    let mask = bert_mask(Philox::new(4), 0, 100_000, 0.15);
    let rate = mask.iter().filter(|&&m| m).count() as f64 / mask.len() as f64;
    assert!((rate - 0.15).abs() < 0.005, "{rate}");
}

#[test]
fn whole_model_gradients_joint_fine_tuning_loss() {
    let ids = [1, 5, 0, 2, 4, 3, 3, 4, 1, 0];
    check_model(tiny_model(Some(3)), &ids, 2, 5, Objective::Joint { labels: vec![1, 2] });
}

#[test]
fn a_score_head_is_added_zero_initialised() {
    let mut m = Model::init(Config::preset("digits").unwrap(), 0).unwrap();
    m.add_score_head(10).unwrap();
    assert_eq!(m.param("score.weight").unwrap().shape(), [10, 128]);
    assert!(m.param("score.weight").unwrap().data().iter().all(|&w| w == 0.0));
    assert!(m.add_score_head(3).is_err(), "a different class count is refused");
    let json = m.config.to_json().to_compact().unwrap();
    assert!(json.contains("ImageGPTForImageClassification"), "{json}");
}
