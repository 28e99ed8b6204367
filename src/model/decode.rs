//! Incremental decoding with a per-layer key/value cache: the sampler's forward pass.
//!
//! Sampling position `t` needs only the logits of the newest token. The keys and values of
//! earlier positions never change (attention is causal), so each layer keeps them in a
//! [`KvCache`] and a step costs `O(t·d)` for attention and `O(d²)` for the projections instead
//! of a whole forward pass. One step, for one new token per sequence (`[B]` ids at position `t`):
//! ```text
//! h = wte[id] + wpe[t]                                              [B, d]
//! for each block: qkv = norm(h, ln_1)·c_attn.W + c_attn.b; a = cache.decode_step(kernels, qkv)
//!                 h += a·attn.c_proj.W + b;  h += quick_gelu(norm(h, ln_2)·c_fc.W + b)·c_proj.W + b
//! logits = norm(h, ln_f)·lm_headᵀ                                   [B, V−1]
//! ```
//! — the same math as `forward`, row by row, so the logits equal the full forward pass's at
//! every position (≤ 1e-5 relative, tested). The block is `block::block`, the very function the
//! tape forward runs; `DecodeBlock` supplies its steps for one row per sequence.

use super::block::{block, BlockMath, Branch, Norm, Proj};
use super::config::Activation;
use super::{Model, Precision};
use crate::error::{Error, Result};
use crate::kernels::bf16::round_bf16;
use crate::kernels::pages::StreamBuffer;
use crate::kernels::skinny::{
    bf16_panels, pack_panels, panels_len, skinny_linear, PanelWeight, Panels,
};
use crate::kernels::KvCache;
use crate::ops::elementwise::gelu_tanh_scalar;
use crate::ops::Kernels;
use crate::tensor::Tensor;
use crate::token::Token;

/// A model and the caches of the sequences it is decoding.
pub struct Decoder<'a> {
    model: &'a Model,
    weights: PackedWeights,
    caches: Vec<KvCache>,
    batch: usize,
    pos: usize,
}

/// Where one matrix sits in [`PackedWeights::data`].
#[derive(Clone, Copy)]
struct Slot {
    offset: usize,
    d_in: usize,
    d_out: usize,
    /// Values its panels take.
    len: usize,
}

impl Slot {
    fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The decoder's copy of the weight matrices, packed into panels for streaming (see
/// `kernels::skinny`), in one buffer in the order a step reads them: per block `c_attn`,
/// `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj` (the order of `block::Proj`), then `lm_head`. It doubles the memory the weights
/// take while decoding, and buys reads at the speed of memory (batch 1 is bound by them).
struct PackedWeights {
    data: PanelData,
    /// `[c_attn, attn.c_proj, c_fc, mlp.c_proj]` of each block.
    blocks: Vec<[Slot; 4]>,
    lm_head: Slot,
    /// `lm_head` has no bias.
    zero_bias: Vec<f32>,
}

/// The panels of every matrix: f32, or bf16 for `Precision::Bf16` (half the bytes to stream).
enum PanelData {
    F32(StreamBuffer),
    Bf16(StreamBuffer<u16>),
}

impl PackedWeights {
    fn new(model: &Model) -> Self {
        let p = &model.params;
        // (tensor index, stored as [d_out, d_in] (nn.Linear) rather than [d_in, d_out])
        let mut order = Vec::new();
        for l in 0..model.config.n_layer {
            let w = model.layout.block(l);
            order.extend([w.c_attn_w, w.attn_proj_w, w.c_fc_w, w.mlp_proj_w].map(|i| (i, false)));
        }
        order.push((model.layout.lm_head().unwrap_or_default(), true));
        // Panels one cache line wide: 16 f32 or 32 bf16 columns (`skinny`).
        let width = match model.precision {
            Precision::F32 => <f32 as PanelWeight>::WIDTH,
            Precision::Bf16 => <u16 as PanelWeight>::WIDTH,
        };
        let mut slots = Vec::with_capacity(order.len());
        let mut offset = 0;
        for &(i, transposed) in &order {
            let (rows, cols) = (p[i].shape()[0], p[i].shape()[1]);
            let (d_in, d_out) = if transposed { (cols, rows) } else { (rows, cols) };
            let len = panels_len(d_in, d_out, width);
            slots.push(Slot { offset, d_in, d_out, len });
            offset += len;
        }
        let packed =
            order.iter().zip(&slots).map(|(&(i, transposed), s)| (p[i].data(), s, transposed));
        let data = match model.precision {
            Precision::F32 => {
                let mut data = StreamBuffer::zeroed(offset);
                for (w, s, transposed) in packed {
                    pack_panels(w, (s.d_in, s.d_out), transposed, width, &mut data[s.range()]);
                }
                PanelData::F32(data)
            }
            Precision::Bf16 => {
                // One matrix at a time through f32 panels, so the f32 copy of all the
                // weights never exists beside the bf16 one.
                let mut data = StreamBuffer::zeroed(offset);
                for (w, s, transposed) in packed {
                    let mut panels = vec![0.0; s.len];
                    pack_panels(w, (s.d_in, s.d_out), transposed, width, &mut panels);
                    bf16_panels(&panels, &mut data[s.range()]);
                }
                PanelData::Bf16(data)
            }
        };
        let lm_head = slots.pop().expect("lm_head slot");
        let blocks = slots.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
        PackedWeights { data, blocks, lm_head, zero_bias: vec![0.0; lm_head.d_out] }
    }

    /// `y = x·W + b` for `x: [rows, d_in]`.
    fn linear(&self, x: &[f32], rows: usize, w: Slot, b: &[f32]) -> Vec<f32> {
        let (d_in, d_out, range) = (w.d_in, w.d_out, w.range());
        let mut y = vec![0.0; rows * d_out];
        match &self.data {
            PanelData::F32(data) => {
                let panels = Panels { data: &data[range], d_in, d_out };
                skinny_linear(x, rows, panels, b, &mut y)
            }
            PanelData::Bf16(data) => {
                let panels = Panels { data: &data[range], d_in, d_out };
                skinny_linear(x, rows, panels, b, &mut y)
            }
        }
        y
    }
}

/// `x / sqrt(mean(x²) + ε) · g` for every row, by `kernels` (the same kernel as the tape's norm).
fn norm_rows(kernels: &dyn Kernels<f32>, x: &[f32], g: &Tensor<f32>, eps: f64) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    let mut rms = vec![0.0; x.len() / g.len()];
    kernels.rms_norm_rows(x, g.data(), eps as f32, &mut y, &mut rms);
    y
}

/// The block's steps for one new row per sequence (see `block`): weights read from the packed
/// copy, attention against the layer's cache.
struct DecodeBlock<'d> {
    model: &'d Model,
    weights: &'d PackedWeights,
    caches: &'d mut [KvCache],
    batch: usize,
    /// The first error of a cache (checked after the blocks; `step` rules it out beforehand).
    failure: Option<Error>,
}

impl BlockMath for DecodeBlock<'_> {
    type X = Vec<f32>;

    fn norm(&mut self, l: usize, which: Norm, x: &Vec<f32>) -> Vec<f32> {
        let gain = &self.model.params[which.gain(&self.model.layout.block(l))];
        norm_rows(self.model.kernels(), x, gain, self.model.config.layer_norm_epsilon)
    }

    fn linear(&mut self, l: usize, which: Proj, x: &Vec<f32>) -> Vec<f32> {
        let (_, bias) = which.params(&self.model.layout.block(l));
        let slot = self.weights.blocks[l][which as usize];
        self.weights.linear(x, self.batch, slot, self.model.params[bias].data())
    }

    /// Attention against the layer's cache by the model's kernels (`Kernels::decode_attention`).
    /// In bf16 the new row's `q`, `k`, `v` are rounded (the cache stores `k` and `v` as bf16);
    /// the attention's own arithmetic stays f32's.
    fn attention(&mut self, l: usize, qkv: &Vec<f32>) -> Vec<f32> {
        let mut a = vec![0.0; self.batch * self.model.config.n_embd];
        let rounded: Vec<f32>;
        let qkv = match self.model.precision {
            Precision::F32 => qkv,
            Precision::Bf16 => {
                rounded = qkv.iter().map(|&x| round_bf16(x)).collect();
                &rounded
            }
        };
        if let Err(e) = self.caches[l].decode_step(self.model.kernels(), qkv, &mut a) {
            self.failure.get_or_insert(e);
        }
        a
    }

    fn activation(&mut self, x: &Vec<f32>) -> Vec<f32> {
        match self.model.config.activation {
            Activation::QuickGelu => {
                let mut y = vec![0.0; x.len()];
                self.model.kernels().quick_gelu(x, &mut y);
                y
            }
            Activation::GeluTanh => x.iter().map(|&v| gelu_tanh_scalar(v)).collect(),
        }
    }

    fn residual(
        &mut self,
        _l: usize,
        _which: Branch,
        mut h: Vec<f32>,
        delta: Vec<f32>,
    ) -> Vec<f32> {
        h.iter_mut().zip(&delta).for_each(|(hi, di)| *hi += di);
        h
    }
}

impl<'a> Decoder<'a> {
    /// A decoder for `batch` sequences of up to `n_positions` tokens.
    pub fn new(model: &'a Model, batch: usize) -> Result<Self> {
        if model.layout.lm_head().is_none() {
            return Err(Error::invalid("decoding needs a model with an lm_head"));
        }
        let c = &model.config;
        // A bf16 model's cache keeps bf16 keys and values: the values its products take.
        let precision = model.precision;
        let caches = (0..c.n_layer)
            .map(|_| {
                KvCache::with_precision(batch, c.n_head, c.head_dim(), c.n_positions, precision)
            })
            .collect::<Result<_>>()?;
        Ok(Decoder { model, weights: PackedWeights::new(model), caches, batch, pos: 0 })
    }

    /// Positions decoded so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Feeds token `ids[b]` to sequence `b` at the next position; returns the logits `[B, V−1]`
    /// for the position after it.
    pub fn step(&mut self, ids: &[Token]) -> Result<Tensor<f32>> {
        let (m, c) = (self.model, &self.model.config);
        let (b, d) = (self.batch, c.n_embd);
        if ids.len() != b || self.pos >= c.n_positions {
            return Err(Error::invalid(format!(
                "decode step: {} ids for {b} sequences at position {}",
                ids.len(),
                self.pos
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= c.vocab_size) {
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
            .flat_map(|&id| (0..d).map(move |j| wte[id as usize * d + j] + wpe[pos * d + j]))
            .collect();
        let mut math = DecodeBlock {
            model: m,
            weights: &self.weights,
            caches: &mut self.caches,
            batch: b,
            failure: None,
        };
        for l in 0..c.n_layer {
            h = block(&mut math, l, h).h;
        }
        if let Some(e) = math.failure {
            return Err(e);
        }
        let pw = &self.weights;
        let x = norm_rows(m.kernels(), &h, &p[m.layout.ln_f()], c.layer_norm_epsilon);
        let logits = pw.linear(&x, b, pw.lm_head, &pw.zero_bias);
        let v = pw.lm_head.d_out;
        self.pos += 1;
        Ok(Tensor::new(&[b, v], logits))
    }
}
