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
//! HF's `hidden_states[l]` is `hˡ` for `l < L` and `x` (after `ln_f`) for `l = L`.
//!
//! Dropout sites are numbered: 0 = embeddings, `1 + 2l` = block l's attention output,
//! `2 + 2l` = block l's MLP output. In training step `s` site `k` uses Philox stream
//! `streams::DROPOUT + s · 2²⁰ + k` of the run's seed (see SPEC).

use super::config::{Activation, Config};
use super::params::Layout;
use crate::autodiff::{Tape, Var};
use crate::ops::{self, DropoutMask};
use crate::rng::{streams, Philox};
use crate::tensor::Float;

/// Dropout randomness for one training step (absent in eval mode).
#[derive(Clone, Copy, Debug)]
pub struct DropoutRng {
    pub philox: Philox,
    pub step: u64,
}

/// The Philox streams of one step's dropout sites: `streams::DROPOUT + step · 2²⁰ + site`.
pub const DROPOUT_SITES_PER_STEP: u64 = 1 << 20;

/// What the forward pass reads: token ids `[batch, seq]` and options.
pub struct ForwardInput<'a> {
    pub ids: &'a [usize],
    pub batch: usize,
    pub seq: usize,
    /// Positions whose token embedding is zeroed (the BERT objective), `[batch·seq]`.
    pub keep: Option<&'a [bool]>,
    /// Causal attention (false only for BERT).
    pub causal: bool,
    /// Dropout randomness in training; `None` evaluates without dropout.
    pub dropout: Option<DropoutRng>,
}

/// The nodes of one forward pass.
pub struct ForwardVars {
    /// `hidden_states` as HF defines them: `L + 1` tensors of `[B, T, d]`.
    pub hidden: Vec<Var>,
    /// The `ln_f` output `[B, T, d]` (the same node as `hidden[L]`).
    pub x: Var,
}

/// A dropout of probability `p` at `site` (the identity in eval mode or for `p = 0`).
fn drop<T: Float>(tape: &mut Tape<T>, x: Var, p: f32, site: u64, rng: Option<DropoutRng>) -> Var {
    match rng {
        Some(r) if p > 0.0 => {
            let stream = streams::DROPOUT + r.step * DROPOUT_SITES_PER_STEP + site;
            ops::dropout(tape, x, DropoutMask { philox: r.philox, stream, p })
        }
        _ => x,
    }
}

/// Builds the trunk (embeddings, blocks, `ln_f`) on `tape` from parameter nodes `p`.
pub fn trunk<T: Float>(
    tape: &mut Tape<T>,
    config: &Config,
    layout: &Layout,
    p: &[Var],
    input: &ForwardInput,
) -> ForwardVars {
    let (b, t, d) = (input.batch, input.seq, config.n_embd);
    let positions: Vec<usize> = (0..b * t).map(|i| i % t).collect();
    let tok = ops::embedding(tape, p[Layout::WTE], input.ids, input.keep);
    let pos = ops::embedding(tape, p[Layout::WPE], &positions, None);
    let h0 = ops::add(tape, tok, pos);
    // From here on activations are [B, T, ·]: `linear` keeps leading axes, attention needs them.
    let h0 = ops::reshape(tape, h0, &[b, t, d]);
    let mut h = drop(tape, h0, config.embd_pdrop, 0, input.dropout);
    let mut hidden = Vec::with_capacity(config.n_layer + 1);
    let eps = config.layer_norm_epsilon;
    for l in 0..config.n_layer {
        hidden.push(h);
        let w = layout.block(l);
        let x = ops::rms_norm(tape, h, p[w.ln_1], eps);
        let qkv = ops::linear(tape, x, p[w.c_attn_w], Some(p[w.c_attn_b]));
        let a = ops::attention(tape, qkv, config.n_head, input.causal);
        let a = ops::linear(tape, a, p[w.attn_proj_w], Some(p[w.attn_proj_b]));
        let a = drop(tape, a, config.resid_pdrop, 1 + 2 * l as u64, input.dropout);
        h = ops::add(tape, h, a);
        let x = ops::rms_norm(tape, h, p[w.ln_2], eps);
        let m = ops::linear(tape, x, p[w.c_fc_w], Some(p[w.c_fc_b]));
        let m = match config.activation {
            Activation::QuickGelu => ops::quick_gelu(tape, m),
            Activation::GeluTanh => ops::gelu_tanh(tape, m),
        };
        let m = ops::linear(tape, m, p[w.mlp_proj_w], Some(p[w.mlp_proj_b]));
        let m = drop(tape, m, config.resid_pdrop, 2 + 2 * l as u64, input.dropout);
        h = ops::add(tape, h, m);
    }
    let x = ops::rms_norm(tape, h, p[layout.ln_f()], eps);
    hidden.push(x);
    ForwardVars { hidden, x }
}

/// Next-token logits `[B, T, V−1]` from the `ln_f` output.
pub fn lm_logits<T: Float>(
    tape: &mut Tape<T>,
    layout: &Layout,
    p: &[Var],
    fv: &ForwardVars,
) -> Var {
    let head = layout.lm_head().expect("lm_logits: the model has no lm_head");
    ops::linear_nt(tape, fv.x, p[head])
}

/// Classification logits `[B, num_labels]`: `score(mean_t(ln_f output))`.
pub fn score_logits<T: Float>(
    tape: &mut Tape<T>,
    layout: &Layout,
    p: &[Var],
    fv: &ForwardVars,
) -> Var {
    let head = layout.score().expect("score_logits: the model has no score head");
    let pooled = ops::mean_pool(tape, fv.x);
    ops::linear_nt(tape, pooled, p[head])
}
