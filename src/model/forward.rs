//! The ImageGPT forward pass on the tape, generic over the float type.
//!
//! ```text
//! h⁰ = dropout(wte[ids] + wpe[0..T])                         (a masked id's wte row is zero)
//! for each block l:
//!     qkv = norm(hˡ, ln_1) · c_attn.W + c_attn.b             [B, T, 3d]
//!     a   = attention(qkv)  (causal, or bidirectional for BERT)
//!     h   = hˡ + dropout(a · attn.c_proj.W + attn.c_proj.b)
//!     hˡ⁺¹ = h + dropout(quick_gelu(norm(h, ln_2) · c_fc.W + c_fc.b) · mlp.c_proj.W + mlp.c_proj.b)
//! x = norm(hᴸ, ln_f)
//! logits = x · lm_headᵀ                                       [B, T, V−1]
//! score  = mean_t(x) · scoreᵀ                                 [B, num_labels]
//! ```
//! HF's `hidden_states[l]` is `hˡ` for `l < L` and `x` (after `ln_f`) for `l = L`. The block
//! itself is `block::block`, shared with the KV-cache decoder; here it runs as ops on the tape.
//!
//! Dropout sites are numbered: 0 = embeddings, `1 + 2l` = block l's attention output,
//! `2 + 2l` = block l's MLP output. In training step `s` site `k` uses Philox stream
//! `streams::DROPOUT + s · 2²⁰ + k` of the run's seed (see SPEC).

use super::block::{block, BlockMath, Branch, Norm, Proj};
use super::config::{Activation, Config};
use super::params::Layout;
use crate::autodiff::{Tape, Var};
use crate::ops::{self, DropoutMask, Kernels};
use crate::rng::{streams, Philox};
use crate::tensor::Float;
use crate::token::Token;

/// Dropout randomness for one training step (absent in eval mode).
#[derive(Clone, Copy, Debug)]
pub struct DropoutRng {
    pub philox: Philox,
    pub step: u64,
}

/// The Philox streams of one step's dropout sites: `streams::DROPOUT + step · 2²⁰ + site`.
pub const DROPOUT_SITES_PER_STEP: u64 = 1 << 20;

/// What the forward pass reads: token ids `[batch, seq]`, options, and the kernels that compute
/// its hot ops (`ops::Reference` for the f64 gradient checks, `kernels::Simd` in f32).
pub struct ForwardInput<'a, T: Float> {
    pub ids: &'a [Token],
    pub batch: usize,
    pub seq: usize,
    /// Positions whose token embedding is zeroed (the BERT objective), `[batch·seq]`.
    pub keep: Option<&'a [bool]>,
    /// Causal attention (false only for BERT).
    pub causal: bool,
    /// Dropout randomness in training; `None` evaluates without dropout.
    pub dropout: Option<DropoutRng>,
    pub kernels: &'static dyn Kernels<T>,
}

/// The nodes of one forward pass.
pub struct ForwardVars {
    /// `hidden_states` as HF defines them: `L + 1` tensors of `[B, T, d]`.
    pub hidden: Vec<Var>,
    /// `norm(hˡ, ln_1)` of each block `l < L`, `[B, T, d]` (the probe's features).
    pub ln_1: Vec<Var>,
    /// The `ln_f` output `[B, T, d]` (the same node as `hidden[L]`).
    pub x: Var,
}

/// The block's steps as ops on the tape (see `block`).
struct TapeBlock<'t, 'a, T: Float> {
    tape: &'t mut Tape<T>,
    config: &'a Config,
    layout: &'a Layout,
    p: &'a [Var],
    input: &'a ForwardInput<'a, T>,
}

impl<T: Float> BlockMath for TapeBlock<'_, '_, T> {
    type X = Var;

    fn norm(&mut self, l: usize, which: Norm, x: &Var) -> Var {
        let g = self.p[which.gain(&self.layout.block(l))];
        ops::rms_norm(self.tape, self.input.kernels, *x, g, self.config.layer_norm_epsilon)
    }

    fn linear(&mut self, l: usize, which: Proj, x: &Var) -> Var {
        let (w, b) = which.params(&self.layout.block(l));
        ops::linear(self.tape, self.input.kernels, *x, self.p[w], Some(self.p[b]))
    }

    fn attention(&mut self, _l: usize, qkv: &Var) -> Var {
        let input = self.input;
        ops::attention(self.tape, input.kernels, *qkv, self.config.n_head, input.causal)
    }

    fn activation(&mut self, x: &Var) -> Var {
        match self.config.activation {
            Activation::QuickGelu => ops::quick_gelu(self.tape, self.input.kernels, *x),
            Activation::GeluTanh => ops::gelu_tanh(self.tape, *x),
        }
    }

    fn residual(&mut self, l: usize, which: Branch, h: Var, delta: Var) -> Var {
        let site = which.dropout_site(l);
        match mask(self.config.resid_pdrop, site, self.input.dropout) {
            Some(mask) => ops::residual_dropout(self.tape, h, delta, mask),
            None => ops::add(self.tape, h, delta),
        }
    }
}

/// A dropout of probability `p` at `site` (the identity in eval mode or for `p = 0`).
fn drop<T: Float>(tape: &mut Tape<T>, x: Var, p: f32, site: u64, rng: Option<DropoutRng>) -> Var {
    match mask(p, site, rng) {
        Some(mask) => ops::dropout(tape, x, mask),
        None => x,
    }
}

/// The mask of a dropout of probability `p` at `site`, or `None` where it is the identity (eval
/// mode, `p = 0`).
fn mask(p: f32, site: u64, rng: Option<DropoutRng>) -> Option<DropoutMask> {
    let r = rng.filter(|_| p > 0.0)?;
    let stream = streams::DROPOUT + r.step * DROPOUT_SITES_PER_STEP + site;
    Some(DropoutMask { philox: r.philox, stream, p })
}

/// Builds the trunk (embeddings, blocks, `ln_f`) on `tape` from parameter nodes `p`.
pub fn trunk<T: Float>(
    tape: &mut Tape<T>,
    config: &Config,
    layout: &Layout,
    p: &[Var],
    input: &ForwardInput<T>,
) -> ForwardVars {
    let (b, t, d) = (input.batch, input.seq, config.n_embd);
    let positions: Vec<usize> = (0..b * t).map(|i| i % t).collect();
    // The embedding op indexes rows with usize, as it does for positions.
    let rows: Vec<usize> = input.ids.iter().map(|&id| id as usize).collect();
    let tok = ops::embedding(tape, p[Layout::WTE], &rows, input.keep);
    let pos = ops::embedding(tape, p[Layout::WPE], &positions, None);
    let h0 = ops::add(tape, tok, pos);
    // From here on activations are [B, T, ·]: `linear` keeps leading axes, attention needs them.
    let h0 = ops::reshape(tape, h0, &[b, t, d]);
    let mut h = drop(tape, h0, config.embd_pdrop, 0, input.dropout);
    let mut hidden = Vec::with_capacity(config.n_layer + 1);
    let mut ln_1 = Vec::with_capacity(config.n_layer);
    let mut math = TapeBlock { tape, config, layout, p, input };
    for l in 0..config.n_layer {
        hidden.push(h);
        let out = block(&mut math, l, h);
        ln_1.push(out.ln_1);
        h = out.h;
    }
    let x = ops::rms_norm(tape, input.kernels, h, p[layout.ln_f()], config.layer_norm_epsilon);
    hidden.push(x);
    ForwardVars { hidden, ln_1, x }
}

/// The heads on the `ln_f` output, each present only if the model has it: next-token logits
/// `lm_head(x)` `[B, T, V−1]`, and classification logits `score(mean_t x)` `[B, num_labels]`.
pub fn heads<T: Float>(
    tape: &mut Tape<T>,
    layout: &Layout,
    p: &[Var],
    fv: &ForwardVars,
    kernels: &'static dyn Kernels<T>,
) -> (Option<Var>, Option<Var>) {
    let logits = layout.lm_head().map(|h| ops::linear_nt(tape, kernels, fv.x, p[h]));
    let score = layout.score().map(|h| {
        let pooled = ops::mean_pool(tape, fv.x);
        ops::linear_nt(tape, kernels, pooled, p[h])
    });
    (logits, score)
}
