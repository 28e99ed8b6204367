//! Incremental decoding with a per-layer key/value cache: the sampler's forward pass.
//!
//! Sampling position `t` needs only the logits of the newest token. The keys and values of
//! earlier positions never change (attention is causal), so each layer keeps them in a
//! [`KvCache`] and a step costs `O(t·d)` for attention and `O(d²)` for the projections instead
//! of a whole forward pass. One step, for one new token per sequence (`[B]` ids at position `t`):
//! ```text
//! h = wte[id] + wpe[t]                                              [B, d]
//! for each block: qkv = norm(h, ln_1)·c_attn.W + c_attn.b; a = cache.decode_step(qkv)
//!                 h += a·attn.c_proj.W + b;  h += quick_gelu(norm(h, ln_2)·c_fc.W + b)·c_proj.W + b
//! logits = norm(h, ln_f)·lm_headᵀ                                   [B, V−1]
//! ```
//! — the same math as `forward`, row by row, so the logits equal the full forward pass's at
//! every position (≤ 1e-5 relative, tested).

use super::config::Activation;
use super::Model;
use crate::error::{Error, Result};
use crate::kernels::KvCache;
use crate::ops::elementwise::gelu_tanh_scalar;
use crate::ops::norm::rms;
use crate::tensor::{gemm, Float, MatRef, Tensor};

/// A model and the caches of the sequences it is decoding.
pub struct Decoder<'a> {
    model: &'a Model,
    caches: Vec<KvCache>,
    batch: usize,
    pos: usize,
}

/// `y = x·W + b` for `x: [rows, d_in]`, `W: [d_in, d_out]` (Conv1D layout).
fn linear_rows(x: &[f32], rows: usize, w: &Tensor<f32>, b: &Tensor<f32>) -> Vec<f32> {
    let (d_in, d_out) = (w.shape()[0], w.shape()[1]);
    let mut y: Vec<f32> = b.data().iter().copied().cycle().take(rows * d_out).collect();
    gemm(1.0, MatRef::new(x, rows, d_in), MatRef::new(w.data(), d_in, d_out), 1.0, &mut y);
    y
}

/// `x / sqrt(mean(x²) + ε) · g` for every row.
fn norm_rows(x: &[f32], g: &Tensor<f32>, eps: f64) -> Vec<f32> {
    let d = g.len();
    let eps = eps as f32;
    x.chunks(d)
        .flat_map(|row| {
            let s = rms(row, eps);
            row.iter().zip(g.data()).map(move |(&v, &gi)| v / s * gi)
        })
        .collect()
}

impl<'a> Decoder<'a> {
    /// A decoder for `batch` sequences of up to `n_positions` tokens.
    pub fn new(model: &'a Model, batch: usize) -> Result<Self> {
        if model.layout.lm_head().is_none() {
            return Err(Error::invalid("decoding needs a model with an lm_head"));
        }
        let c = &model.config;
        let caches = (0..c.n_layer)
            .map(|_| KvCache::new(batch, c.n_head, c.head_dim(), c.n_positions))
            .collect::<Result<_>>()?;
        Ok(Decoder { model, caches, batch, pos: 0 })
    }

    /// Positions decoded so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Feeds token `ids[b]` to sequence `b` at the next position; returns the logits `[B, V−1]`
    /// for the position after it.
    pub fn step(&mut self, ids: &[usize]) -> Result<Tensor<f32>> {
        let (m, c) = (self.model, &self.model.config);
        let (b, d) = (self.batch, c.n_embd);
        if ids.len() != b || self.pos >= c.n_positions {
            return Err(Error::invalid(format!(
                "decode step: {} ids for {b} sequences at position {}",
                ids.len(),
                self.pos
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i >= c.vocab_size) {
            return Err(Error::invalid(format!(
                "decode step: token id {bad} outside 0..{}",
                c.vocab_size
            )));
        }
        let p = &m.params;
        let (wte, wpe) = (p[super::Layout::WTE].data(), p[super::Layout::WPE].data());
        let pos = self.pos;
        let mut h: Vec<f32> = ids
            .iter()
            .flat_map(|&id| (0..d).map(move |j| wte[id * d + j] + wpe[pos * d + j]))
            .collect();
        for (l, cache) in self.caches.iter_mut().enumerate() {
            let w = m.layout.block(l);
            let x = norm_rows(&h, &p[w.ln_1], c.layer_norm_epsilon);
            let qkv = linear_rows(&x, b, &p[w.c_attn_w], &p[w.c_attn_b]);
            let mut a = vec![0.0; b * d];
            cache.decode_step(&qkv, &mut a)?;
            let a = linear_rows(&a, b, &p[w.attn_proj_w], &p[w.attn_proj_b]);
            h.iter_mut().zip(&a).for_each(|(hi, ai)| *hi += ai);
            let x = norm_rows(&h, &p[w.ln_2], c.layer_norm_epsilon);
            let mut f = linear_rows(&x, b, &p[w.c_fc_w], &p[w.c_fc_b]);
            match c.activation {
                Activation::QuickGelu => {
                    let pre = f.clone();
                    f32::quick_gelu_chunk(&pre, &mut f);
                }
                Activation::GeluTanh => f.iter_mut().for_each(|v| *v = gelu_tanh_scalar(*v)),
            }
            let f = linear_rows(&f, b, &p[w.mlp_proj_w], &p[w.mlp_proj_b]);
            h.iter_mut().zip(&f).for_each(|(hi, fi)| *hi += fi);
        }
        let x = norm_rows(&h, &p[m.layout.ln_f()], c.layer_norm_epsilon);
        let head = &p[m.layout.lm_head().unwrap_or_default()];
        let v = head.shape()[0];
        let mut logits = vec![0.0; b * v];
        gemm(1.0, MatRef::new(&x, b, d), MatRef::new(head.data(), v, d).t(), 0.0, &mut logits);
        self.pos += 1;
        Ok(Tensor::new(&[b, v], logits))
    }
}
