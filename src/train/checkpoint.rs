//! Checkpoints: everything needed to resume a run bit for bit, in one atomically written file.
//!
//! A run directory is an HF model directory (`config.json`, `model.safetensors`, and
//! `preprocessor_config.json` for the palette) plus `trainer_state.safetensors`, which holds
//! **all** resumable state in a single file: the parameters (`param.{name}`), AdamW's moments
//! (`adam_m.{name}`, `adam_v.{name}`) and, in the metadata, the step, the model configuration
//! and the training configuration. Because every random draw is a function of (seed, step) —
//! data order, flips, dropout, BERT masks — nothing else is needed to continue exactly where
//! the run stopped.
//!
//! The file is written to a temporary name, synced, and renamed over the old one
//! (`io::write_atomic`), so a crash at any moment leaves either the previous checkpoint or the
//! new one, never a torn file. Resuming reads only this file; the HF files are exports.

use super::adamw::AdamW;
use crate::error::{Error, Result};
use crate::io::safetensors::SafeTensors;
use crate::model::Model;
use crate::tensor::Tensor;
use std::path::Path;

/// The resumable-state file inside a run directory.
pub const STATE_FILE: &str = "trainer_state.safetensors";

/// A model, its optimizer and the number of steps taken.
#[derive(Clone, Debug)]
pub struct RunState {
    pub model: Model,
    pub opt: AdamW,
    /// Steps completed.
    pub step: usize,
}

/// Writes `state` to `dir/trainer_state.safetensors` atomically; `train_config` (JSON) is
/// recorded so a resume can check it continues the same run.
pub fn save_state(dir: &Path, state: &RunState, train_config: &str) -> Result<()> {
    state_to_safetensors(state, train_config)?.write(&dir.join(STATE_FILE))
}

/// The contents of `trainer_state.safetensors` for `state` (see the module doc).
pub fn state_to_safetensors(state: &RunState, train_config: &str) -> Result<SafeTensors> {
    let mut st = SafeTensors::new();
    let m = &state.model;
    for (prefix, tensors) in
        [("param", &m.params), ("adam_m", &state.opt.m), ("adam_v", &state.opt.v)]
    {
        for (spec, t) in m.specs.iter().zip(tensors.iter()) {
            st.push_f32(&format!("{prefix}.{}", spec.name), t.shape(), t.data())?;
        }
    }
    st.metadata.push(("step".into(), state.step.to_string()));
    st.metadata.push(("adam_step".into(), state.opt.step.to_string()));
    st.metadata.push(("model_config".into(), m.config.to_json().to_compact()?));
    st.metadata.push(("train_config".into(), train_config.into()));
    st.metadata.push(("igpt_version".into(), env!("CARGO_PKG_VERSION").into()));
    Ok(st)
}

/// Restores a run from `dir/trainer_state.safetensors` into `fresh` (a model of the same
/// configuration and an optimizer with the same hyper-parameters). Fails if the recorded
/// training configuration differs from `train_config`.
pub fn load_state(dir: &Path, fresh: RunState, train_config: &str) -> Result<RunState> {
    let path = dir.join(STATE_FILE);
    restore_state(&SafeTensors::read(&path)?, &path.display().to_string(), fresh, train_config)
}

/// [`load_state`] from the parsed file; `origin` names it in errors.
pub fn restore_state(
    st: &SafeTensors,
    origin: &str,
    fresh: RunState,
    train_config: &str,
) -> Result<RunState> {
    let meta = |k: &str| {
        st.get_metadata(k)
            .ok_or_else(|| Error::format(origin, format!("metadata '{k}' is missing")))
    };
    if meta("train_config")? != train_config {
        let msg = format!(
            "was written by a run with different settings; resume with the same flags\n  saved:   {}\n  now:     {train_config}",
            meta("train_config")?
        );
        return Err(Error::format(origin, msg));
    }
    if meta("model_config")? != fresh.model.config.to_json().to_compact()? {
        return Err(Error::format(origin, "holds a model of a different configuration"));
    }
    let number = |k: &str| -> Result<usize> {
        meta(k)?
            .parse()
            .map_err(|_| Error::format(origin, format!("metadata '{k}' is not a number")))
    };
    let RunState { mut model, mut opt, .. } = fresh;
    for (prefix, tensors) in
        [("param", &mut model.params), ("adam_m", &mut opt.m), ("adam_v", &mut opt.v)]
    {
        for (spec, t) in model.specs.iter().zip(tensors.iter_mut()) {
            let (shape, data) = st.get_f32(&format!("{prefix}.{}", spec.name))?;
            if shape != spec.shape {
                return Err(Error::format(
                    origin,
                    format!(
                        "{prefix}.{} has shape {shape:?}, expected {:?}",
                        spec.name, spec.shape
                    ),
                ));
            }
            *t = Tensor::new(&shape, data);
        }
    }
    opt.step = number("adam_step")? as u64;
    Ok(RunState { model, opt, step: number("step")? })
}
