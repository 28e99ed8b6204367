//! The model configuration: HuggingFace `ImageGPTConfig` keys, presets, validation, sizes.
//!
//! `config.json` is read and written with HF's key names so that a directory igpt saves loads in
//! `transformers` and vice versa. Settings igpt does not implement (tied embeddings, cross
//! attention, unscaled or layer-scaled attention, other activations) are **rejected** with a
//! clear error rather than silently ignored, and sizes are bounded, the weights by the memory
//! available, before anything is allocated.

use crate::admission;
use crate::error::{Error, Result};
use crate::io::json::Json;
use crate::token::Token;

/// The MLP activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x·σ(1.702x)` — iGPT's (HF `"quick_gelu"`).
    QuickGelu,
    /// GPT-2's tanh approximation (HF `"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
}

impl Activation {
    fn hf_name(self) -> &'static str {
        match self {
            Activation::QuickGelu => "quick_gelu",
            Activation::GeluTanh => "gelu_new",
        }
    }
}

/// An ImageGPT configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Colours + 1 (the last id, `vocab_size − 1`, is the start-of-sequence token SOS).
    pub vocab_size: usize,
    /// The longest sequence (1024 for 32×32 images).
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// The MLP width; HF's `null` means `4·n_embd`.
    pub n_inner: Option<usize>,
    pub activation: Activation,
    pub layer_norm_epsilon: f64,
    pub resid_pdrop: f32,
    pub embd_pdrop: f32,
    pub attn_pdrop: f32,
    /// HF's `initializer_range` (kept for round trips; igpt initialises as the paper, see `init`).
    pub initializer_range: f64,
    /// Classes of the classification head (`score`), if the model has one.
    pub num_labels: Option<usize>,
}

/// Upper bounds of each size: far beyond any published iGPT, small enough that sizes derived
/// from them cannot overflow. What a configuration may ask for in all is bounded by memory
/// (`crate::admission`): its weights must fit.
const MAX_VOCAB: usize = 1 << 20;
const MAX_POSITIONS: usize = 1 << 16;
const MAX_EMBD: usize = 1 << 15;
const MAX_LAYERS: usize = 1024;
const MAX_LABELS: usize = 1 << 16;

// Every id of a valid vocabulary (at most `MAX_VOCAB − 1`) must be a `Token`.
const _: () = assert!(MAX_VOCAB - 1 <= Token::MAX as usize);

impl Config {
    /// The MLP width: `n_inner` or `4·n_embd`.
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// The head width `n_embd / n_head`.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// The id of the start-of-sequence token: `vocab_size − 1`.
    pub fn sos(&self) -> Token {
        // A validated vocabulary fits a `Token` (checked at compile time above).
        (self.vocab_size - 1) as Token
    }

    /// A named preset: `digits`, `tiny`, `small`, `igpt-s`, `igpt-m`, `igpt-l`, `igpt-xl`.
    pub fn preset(name: &str) -> Result<Config> {
        let base = |vocab_size, n_positions, n_embd, n_layer, n_head| Config {
            vocab_size,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            n_inner: None,
            activation: Activation::QuickGelu,
            layer_norm_epsilon: 1e-5,
            resid_pdrop: 0.0,
            embd_pdrop: 0.0,
            attn_pdrop: 0.0,
            initializer_range: 0.02,
            num_labels: None,
        };
        let c = match name {
            // 8×8 digits, 17 grey levels + SOS.
            "digits" => base(18, 64, 128, 4, 4),
            // 16×16 colour emoji, 512 colours + SOS (the emoji recipe of `igpt train`).
            "emoji" => base(513, 256, 128, 4, 4),
            "tiny" => base(513, 1024, 64, 2, 2),
            "small" => base(513, 1024, 256, 8, 8),
            "igpt-s" => base(513, 1024, 512, 24, 8),
            "igpt-m" => base(513, 1024, 1024, 36, 8),
            "igpt-l" => base(513, 1024, 1536, 48, 16),
            // 64×64 inputs; the head count was not published (16 heads of 192 is assumed).
            "igpt-xl" => base(513, 4096, 3072, 60, 16),
            other => {
                return Err(Error::invalid(format!(
                    "unknown config preset '{other}' (known: digits, emoji, tiny, small, igpt-s, igpt-m, igpt-l, igpt-xl)"
                )))
            }
        };
        Ok(c)
    }

    /// Checks that every size is positive, consistent and bounded, and that the weights fit in
    /// memory now (see `crate::admission`). `origin` names the source.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |msg: String| Err(Error::format(origin, msg));
        let bounded = [
            ("vocab_size", self.vocab_size, 2, MAX_VOCAB),
            ("n_positions", self.n_positions, 1, MAX_POSITIONS),
            ("n_embd", self.n_embd, 1, MAX_EMBD),
            ("n_layer", self.n_layer, 1, MAX_LAYERS),
            ("n_head", self.n_head, 1, MAX_EMBD),
            ("n_inner", self.inner(), 1, 8 * MAX_EMBD),
            ("num_labels", self.num_labels.unwrap_or(1), 1, MAX_LABELS),
        ];
        for (key, v, lo, hi) in bounded {
            if v < lo || v > hi {
                return bad(format!("{key} = {v} is outside {lo}..={hi}"));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return bad(format!(
                "n_embd = {} is not divisible by n_head = {}",
                self.n_embd, self.n_head
            ));
        }
        for (key, p) in [
            ("resid_pdrop", self.resid_pdrop),
            ("embd_pdrop", self.embd_pdrop),
            ("attn_pdrop", self.attn_pdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{key} = {p} is outside [0, 1)"));
            }
        }
        if !(self.layer_norm_epsilon > 0.0 && self.layer_norm_epsilon < 1.0) {
            return bad(format!(
                "layer_norm_epsilon = {} is outside (0, 1)",
                self.layer_norm_epsilon
            ));
        }
        let what = format!("a model of {} parameters (its weights alone)", self.n_params(true));
        admission::admit(&what, super::footprint::weights(self))
            .map_err(|e| Error::format(origin, e.to_string()))
    }

    /// The number of parameters, counted from the shapes (nothing is allocated). With
    /// `biases = false` this is the TF original's count: `L(12d² + 2d) + d(2·512 + n_ctx + 2)`
    /// for the published models.
    pub fn n_params(&self, biases: bool) -> u64 {
        let (d, f, l) = (self.n_embd as u64, self.inner() as u64, self.n_layer as u64);
        let per_block = 2 * d + 3 * d * d + d * d + 2 * d * f;
        let block_biases = if biases { 3 * d + d + f + d } else { 0 };
        let embeddings = (self.vocab_size as u64 + self.n_positions as u64) * d;
        let head = (self.vocab_size as u64 - 1) * d + self.num_labels.map_or(0, |k| k as u64 * d);
        l * (per_block + block_biases) + embeddings + d + head
    }

    /// Reads a configuration from HF `config.json` contents. Unsupported settings are errors.
    pub fn from_json(json: &Json, origin: &str) -> Result<Config> {
        let r = JsonReader { json, origin };
        r.reject_unsupported()?;
        let activation = match r.str_or("activation_function", "quick_gelu")? {
            "quick_gelu" => Activation::QuickGelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            other => {
                return Err(Error::format(
                    origin,
                    format!(
                        "activation_function '{other}' is not supported (quick_gelu, gelu_new)"
                    ),
                ))
            }
        };
        let n_inner = match json.get("n_inner") {
            None | Some(Json::Null) => None,
            Some(_) => Some(r.usize("n_inner")?),
        };
        let num_labels = match json.get("architectures").and_then(|a| a.as_array()) {
            Some(a) if a.iter().any(|x| x.as_str() == Some("ImageGPTForImageClassification")) => {
                Some(r.num_labels()?)
            }
            _ => None,
        };
        let config = Config {
            vocab_size: r.usize_or("vocab_size", 513)?,
            n_positions: r.usize_or("n_positions", 1024)?,
            n_embd: r.usize_or("n_embd", 512)?,
            n_layer: r.usize_or("n_layer", 24)?,
            n_head: r.usize_or("n_head", 8)?,
            n_inner,
            activation,
            layer_norm_epsilon: r.f64_or("layer_norm_epsilon", 1e-5)?,
            resid_pdrop: r.f64_or("resid_pdrop", 0.1)? as f32,
            embd_pdrop: r.f64_or("embd_pdrop", 0.1)? as f32,
            attn_pdrop: r.f64_or("attn_pdrop", 0.1)? as f32,
            initializer_range: r.f64_or("initializer_range", 0.02)?,
            num_labels,
        };
        config.validate(origin)?;
        Ok(config)
    }

    /// The HF `config.json` contents for this configuration.
    pub fn to_json(&self) -> Json {
        let arch = if self.num_labels.is_some() {
            "ImageGPTForImageClassification"
        } else {
            "ImageGPTForCausalImageModeling"
        };
        let mut members: Vec<(String, Json)> = vec![
            ("activation_function".into(), self.activation.hf_name().into()),
            ("architectures".into(), Json::Array(vec![arch.into()])),
            ("attn_pdrop".into(), self.attn_pdrop.into()),
            ("embd_pdrop".into(), self.embd_pdrop.into()),
            ("initializer_range".into(), self.initializer_range.into()),
            ("layer_norm_epsilon".into(), self.layer_norm_epsilon.into()),
            ("model_type".into(), "imagegpt".into()),
            ("n_embd".into(), self.n_embd.into()),
            ("n_head".into(), self.n_head.into()),
            ("n_inner".into(), self.n_inner.map_or(Json::Null, Json::from)),
            ("n_layer".into(), self.n_layer.into()),
            ("n_positions".into(), self.n_positions.into()),
            ("reorder_and_upcast_attn".into(), false.into()),
            ("resid_pdrop".into(), self.resid_pdrop.into()),
            ("scale_attn_by_inverse_layer_idx".into(), false.into()),
            ("scale_attn_weights".into(), true.into()),
            ("tie_word_embeddings".into(), false.into()),
            ("vocab_size".into(), self.vocab_size.into()),
        ];
        if let Some(k) = self.num_labels {
            let id2label = (0..k).map(|i| (i.to_string(), format!("LABEL_{i}").into())).collect();
            let label2id = (0..k).map(|i| (format!("LABEL_{i}"), i.into())).collect();
            members.push(("id2label".into(), Json::Object(id2label)));
            members.push(("label2id".into(), Json::Object(label2id)));
        }
        Json::Object(members)
    }
}

/// Typed, error-reporting access to the members of a `config.json`.
struct JsonReader<'a> {
    json: &'a Json,
    origin: &'a str,
}

impl JsonReader<'_> {
    fn err(&self, msg: String) -> Error {
        Error::format(self.origin, msg)
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.json.get(key).ok_or_else(|| self.err(format!("missing key '{key}'")))?;
        v.as_usize()
            .ok_or_else(|| self.err(format!("'{key}' must be a non-negative integer, got {v:?}")))
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.json.get(key).is_none() {
            return Ok(default);
        }
        self.usize(key)
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.json.get(key) {
            None => Ok(default),
            Some(v) => {
                v.as_f64().ok_or_else(|| self.err(format!("'{key}' must be a number, got {v:?}")))
            }
        }
    }

    fn str_or<'b>(&'b self, key: &str, default: &'b str) -> Result<&'b str> {
        match self.json.get(key) {
            None => Ok(default),
            Some(v) => {
                v.as_str().ok_or_else(|| self.err(format!("'{key}' must be a string, got {v:?}")))
            }
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.json.get(key) {
            None | Some(Json::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(format!("'{key}' must be true or false, got {v:?}"))),
        }
    }

    /// `num_labels`, or the size of `id2label` as HF derives it.
    fn num_labels(&self) -> Result<usize> {
        if self.json.get("num_labels").is_some() {
            return self.usize("num_labels");
        }
        match self.json.get("id2label").and_then(|m| m.as_object()) {
            Some(m) if !m.is_empty() => Ok(m.len()),
            _ => Ok(2),
        }
    }

    /// Errors for HF settings that change the math in ways igpt does not implement.
    fn reject_unsupported(&self) -> Result<()> {
        if let Some(t) = self.json.get("model_type").and_then(|v| v.as_str()) {
            if t != "imagegpt" {
                return Err(self.err(format!("model_type '{t}' is not 'imagegpt'")));
            }
        }
        let must = [
            ("scale_attn_weights", true),
            ("scale_attn_by_inverse_layer_idx", false),
            ("reorder_and_upcast_attn", false),
            ("tie_word_embeddings", false),
            ("add_cross_attention", false),
        ];
        for (key, supported) in must {
            if self.bool_or(key, supported)? != supported {
                return Err(self.err(format!(
                    "{key} = {} is not supported by igpt (only {supported})",
                    !supported
                )));
            }
        }
        Ok(())
    }
}
