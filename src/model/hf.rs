//! HuggingFace model directories, both ways: `config.json` + `model.safetensors`.
//!
//! Loading is strict: every parameter the configuration implies must be present with exactly
//! its shape and a float dtype (F32, F16 or BF16, converted to f32); any other tensor is an
//! error, except the non-parameter buffers `transformer.h.N.attn.bias` and
//! `transformer.h.N.attn.masked_bias` that older `transformers` versions saved, which are
//! ignored. A checkpoint without `lm_head.weight` is accepted only for a classification model
//! (HF's `ImageGPTForImageClassification` has none). Saving writes the same layout, tensors in
//! the safetensors reference order, so `transformers` loads the directory as is.

use super::config::Config;
use super::params::{param_specs, Layout};
use super::{Model, Precision};
use crate::error::{Error, Result};
use crate::io::json::{parse_json, write_json};
use crate::io::read_bytes;
use crate::io::safetensors::SafeTensors;
use crate::tensor::Tensor;
use std::path::Path;

/// The configuration file of a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file of a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// True for the causal-mask buffers older checkpoints stored next to the parameters.
fn is_legacy_buffer(name: &str) -> bool {
    name.starts_with("transformer.h.")
        && (name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias"))
}

/// Reads `dir/config.json`.
pub fn load_config(dir: &Path) -> Result<Config> {
    let path = dir.join(CONFIG_FILE);
    config_from_bytes(&read_bytes(&path)?, &path.display().to_string())
}

/// Parses `config.json` contents; `origin` names the file in errors.
fn config_from_bytes(bytes: &[u8], origin: &str) -> Result<Config> {
    Config::from_json(&parse_json(bytes, origin)?, origin)
}

impl Model {
    /// Loads an HF model directory (`config.json` + `model.safetensors`).
    pub fn load(dir: &Path) -> Result<Model> {
        let config = load_config(dir)?;
        let path = dir.join(WEIGHTS_FILE);
        // `read` frees the file's bytes once parsed: at most two copies of the weights live.
        let file = SafeTensors::read(&path)?;
        Model::from_safetensors(config, &file, &path.display().to_string())
    }

    /// A model from the contents of a directory's `config.json` and `model.safetensors` (what
    /// [`Model::load`] reads, e.g. taken from an archive); the names are used in errors.
    pub fn from_file_bytes(
        config: &[u8],
        config_name: &str,
        weights: &[u8],
        weights_name: &str,
    ) -> Result<Model> {
        let config = config_from_bytes(config, config_name)?;
        Model::from_weights_bytes(config, weights, weights_name)
    }

    /// A model of `config` from `model.safetensors` contents.
    fn from_weights_bytes(config: Config, weights: &[u8], origin: &str) -> Result<Model> {
        Model::from_safetensors(config, &SafeTensors::parse(weights, origin)?, origin)
    }

    /// Builds a model of `config` from the tensors of `file` (see the module doc for the rules).
    pub fn from_safetensors(config: Config, file: &SafeTensors, origin: &str) -> Result<Model> {
        let lm_head = file.get("lm_head.weight").is_some() || config.num_labels.is_none();
        let specs = param_specs(&config, lm_head);
        for (name, _) in &file.tensors {
            if !is_legacy_buffer(name) && !specs.iter().any(|s| &s.name == name) {
                return Err(Error::format(
                    origin,
                    format!("unexpected tensor '{name}' for this config"),
                ));
            }
        }
        let mut params = Vec::with_capacity(specs.len());
        for spec in &specs {
            let (shape, data) = file.get_f32(&spec.name)?;
            if shape != spec.shape {
                let msg = format!(
                    "tensor '{}' has shape {shape:?}, expected {:?}",
                    spec.name, spec.shape
                );
                return Err(Error::format(origin, msg));
            }
            if let Some(i) = data.iter().position(|x| !x.is_finite()) {
                return Err(Error::format(
                    origin,
                    format!("tensor '{}' holds a non-finite value at {i}", spec.name),
                ));
            }
            params.push(Tensor::new(&shape, data));
        }
        let layout =
            Layout { n_layer: config.n_layer, lm_head, score: config.num_labels.is_some() };
        Ok(Model { config, layout, specs, params, precision: Precision::F32 })
    }

    /// The parameters as a safetensors collection under their HF names.
    pub fn to_safetensors(&self) -> Result<SafeTensors> {
        let mut st = SafeTensors::new();
        for (spec, p) in self.specs.iter().zip(&self.params) {
            st.push_f32(&spec.name, p.shape(), p.data())?;
        }
        st.metadata.push(("format".into(), "pt".into()));
        Ok(st)
    }

    /// Saves an HF model directory (created if needed); each file is written atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.to_safetensors()?.write(&dir.join(WEIGHTS_FILE))?;
        write_json(&dir.join(CONFIG_FILE), &self.config.to_json())
    }
}
