//! Linear-probe features: the paper's per-layer image representation (SPEC §10).
//!
//! For an image `x₀…x_{n−1}` and the HF hidden states `hˡ` (`[n, d]`, `h⁰…h^{L−1}` the inputs
//! of the blocks, `hᴸ` the `ln_f` output):
//! ```text
//! feature_l = (1/n) Σ_t ln_1^(l)(hˡ_t)    for l < L     ln_1^(l)(v) = v / sqrt(mean_j v_j² + ε) · g_l
//! feature_L = (1/n) Σ_t hᴸ_t                            (hᴸ is already ln_f's output)
//! ```
//! — the normalised input of block l under block l's own `ln_1` gain `g_l` and the config's
//! `ε`, averaged over all n positions. The normalised rows are read from the forward itself
//! (`ForwardVars::ln_1`, the output of the model's `rms_norm` inside `block::block`), not
//! recomputed; the position mean accumulates in f64, t = 0…n−1 in order, then rounds to f32.
//!
//! The input fed to the network depends on how the model was trained:
//! - [`FeatureInput::SosShifted`] (autoregressive models, the paper's): `[SOS, x₀, …, x_{n−2}]`
//!   with causal attention — what the model saw when it learned to predict every pixel;
//! - [`FeatureInput::Unmasked`] (BERT models): `x₀…x_{n−1}` as given, nothing masked, with
//!   bidirectional attention.
//!
//! Images go through the trunk in batches of `batch_size` (each forward is parallel inside), and
//! the pooling runs in parallel over images. The result depends on `batch_size` only through the
//! rounding of batched matrix products, never on the thread count.

use crate::autodiff::{Tape, Var};
use crate::error::{Error, Result};
use crate::model::forward::{trunk, ForwardInput};
use crate::model::{shift_right_with_sos, Model, TokenBatch};
use crate::tensor::Tensor;
use crate::token::Token;
use rayon::prelude::*;

/// What the network is fed when features are extracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureInput {
    /// `[SOS, x₀, …, x_{n−2}]`, causal attention (autoregressive models).
    SosShifted,
    /// `x₀…x_{n−1}` unmasked, bidirectional attention (BERT models).
    Unmasked,
}

/// How features are extracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureOptions {
    pub input: FeatureInput,
    /// Images per forward pass (memory grows with it).
    pub batch_size: usize,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        FeatureOptions { input: FeatureInput::SosShifted, batch_size: 64 }
    }
}

/// Every layer index the probe can read: `0..=L`.
pub fn all_layers(model: &Model) -> Vec<usize> {
    (0..=model.config.n_layer).collect()
}

/// The features of every image of `images` (`[N, n]` colour ids, `n ≥ 1`) at each of `layers`
/// (each `≤ L`): one `[N, d]` matrix per requested layer, in the order requested.
pub fn extract_features(
    model: &Model,
    images: &TokenBatch,
    layers: &[usize],
    opts: &FeatureOptions,
) -> Result<Vec<Tensor<f32>>> {
    check_request(model, images, layers, opts)?;
    let (n, t, d) = (images.batch, images.seq, model.config.n_embd);
    let mut features: Vec<Vec<f32>> = vec![Vec::with_capacity(n * d); layers.len()];
    for first in (0..n).step_by(opts.batch_size) {
        let b = opts.batch_size.min(n - first);
        let ids = &images.ids[first * t..(first + b) * t];
        for (out, pooled) in features.iter_mut().zip(batch_features(model, ids, b, t, layers, opts))
        {
            out.extend_from_slice(&pooled);
        }
    }
    Ok(features.into_iter().map(|f| Tensor::new(&[n, d], f)).collect())
}

/// Checks the layers, batch size and ids (images must be colours: SOS is not a pixel).
fn check_request(
    model: &Model,
    images: &TokenBatch,
    layers: &[usize],
    opts: &FeatureOptions,
) -> Result<()> {
    let c = &model.config;
    if layers.is_empty() {
        return Err(Error::invalid("no layer requested for feature extraction"));
    }
    if let Some(&l) = layers.iter().find(|&&l| l > c.n_layer) {
        return Err(Error::invalid(format!(
            "layer {l} does not exist: the model has layers 0..={} ({} = the ln_f output)",
            c.n_layer, c.n_layer
        )));
    }
    if opts.batch_size == 0 {
        return Err(Error::invalid("feature batch size must be at least 1"));
    }
    if images.batch == 0 || images.seq == 0 || images.seq > c.n_positions {
        return Err(Error::invalid(format!(
            "images of shape [{}, {}] do not fit a model with n_positions = {}",
            images.batch, images.seq, c.n_positions
        )));
    }
    if images.ids.len() != images.batch * images.seq {
        return Err(Error::invalid(format!(
            "{} ids for images of shape [{}, {}]",
            images.ids.len(),
            images.batch,
            images.seq
        )));
    }
    if let Some(i) = images.ids.iter().position(|&id| id >= c.sos()) {
        return Err(Error::invalid(format!(
            "token id {} of image {} at position {} is not a colour (0..{})",
            images.ids[i],
            i / images.seq,
            i % images.seq,
            c.sos()
        )));
    }
    Ok(())
}

/// The pooled features `[b·d]` at each of `layers` for one batch of `b` images of `t` ids.
fn batch_features(
    model: &Model,
    ids: &[Token],
    b: usize,
    t: usize,
    layers: &[usize],
    opts: &FeatureOptions,
) -> Vec<Vec<f32>> {
    let config = &model.config;
    let shifted;
    let (ids, causal) = match opts.input {
        FeatureInput::SosShifted => {
            shifted = shift_right_with_sos(ids, t, config.sos());
            (shifted.as_slice(), true)
        }
        FeatureInput::Unmasked => (ids, false),
    };
    let mut tape = Tape::<f32>::new();
    let p: Vec<Var> = model.params.iter().map(|x| tape.constant(x.clone())).collect();
    let kernels = model.kernels();
    let input = ForwardInput { ids, batch: b, seq: t, keep: None, causal, dropout: None, kernels };
    let fv = trunk(&mut tape, config, &model.layout, &p, &input);
    layers
        .iter()
        .map(|&l| {
            // Block l's ln_1 output, as the forward computed it; layer L is ln_f's output.
            let node = if l < config.n_layer { fv.ln_1[l] } else { fv.x };
            pool_images(tape.value(node).data(), b, t, config.n_embd)
        })
        .collect()
}

/// `[b·d]`: for each image, the mean over its `t` rows of `rows` (`[b·t, d]`), in f64, rows in
/// order, rounded to f32 at the end.
fn pool_images(rows: &[f32], b: usize, t: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; b * d];
    out.par_chunks_mut(d).enumerate().for_each(|(i, feature)| {
        let mut acc = vec![0.0f64; d];
        for row in rows[i * t * d..(i + 1) * t * d].chunks(d) {
            for (a, &x) in acc.iter_mut().zip(row) {
                *a += f64::from(x);
            }
        }
        for (f, a) in feature.iter_mut().zip(acc) {
            *f = (a / t as f64) as f32;
        }
    });
    out
}
