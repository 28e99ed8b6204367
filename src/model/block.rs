//! The transformer block, written once.
//!
//! ```text
//! x  = norm(h, ln_1)                                   (the probe's features read this, §20)
//! h  = h + dropout(attention(x · c_attn.W + c_attn.b) · attn.c_proj.W + attn.c_proj.b)
//! h' = h + dropout(act(norm(h, ln_2) · c_fc.W + c_fc.b) · mlp.c_proj.W + mlp.c_proj.b)
//! ```
//! [`block`] states this order of operations; *how* each step is computed is the business of a
//! [`BlockMath`]: the tape forward (`forward::trunk`: whole sequences, recorded for the
//! backward, dropout in training) and the KV-cache decoder (`decode`: one new row per sequence,
//! attention against the cache, weights packed for streaming). Probe features are the `ln_1`
//! outputs the tape forward returns, so they too come from this one definition.

use super::params::BlockParams;

/// One of a block's two norms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    Ln1,
    Ln2,
}

/// One of a block's four linear layers, in the order a block applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proj {
    CAttn,
    AttnCProj,
    CFc,
    MlpCProj,
}

/// One of a block's two residual branches (dropout sites `1 + 2l` and `2 + 2l`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Branch {
    Attention,
    Mlp,
}

impl Norm {
    /// The gain's parameter index.
    pub fn gain(self, w: &BlockParams) -> usize {
        match self {
            Norm::Ln1 => w.ln_1,
            Norm::Ln2 => w.ln_2,
        }
    }
}

impl Proj {
    /// The `(weight, bias)` parameter indices.
    pub fn params(self, w: &BlockParams) -> (usize, usize) {
        match self {
            Proj::CAttn => (w.c_attn_w, w.c_attn_b),
            Proj::AttnCProj => (w.attn_proj_w, w.attn_proj_b),
            Proj::CFc => (w.c_fc_w, w.c_fc_b),
            Proj::MlpCProj => (w.mlp_proj_w, w.mlp_proj_b),
        }
    }
}

impl Branch {
    /// The dropout site of this branch in block `l` (site 0 is the embeddings).
    pub fn dropout_site(self, l: usize) -> u64 {
        match self {
            Branch::Attention => 1 + 2 * l as u64,
            Branch::Mlp => 2 + 2 * l as u64,
        }
    }
}

/// The steps of a block, computed one way or another (see the module doc). `X` is an
/// activation: a tape node, or rows of numbers.
pub trait BlockMath {
    type X;
    /// `x / sqrt(mean(x²) + ε) · g` per row, with block `l`'s gain `which`.
    fn norm(&mut self, l: usize, which: Norm, x: &Self::X) -> Self::X;
    /// `x · W + b` with block `l`'s layer `which`.
    fn linear(&mut self, l: usize, which: Proj, x: &Self::X) -> Self::X;
    /// Multi-head attention of block `l` on `qkv = [q | k | v]`.
    fn attention(&mut self, l: usize, qkv: &Self::X) -> Self::X;
    /// The MLP's activation (the config's: quick_gelu or tanh GELU).
    fn activation(&mut self, x: &Self::X) -> Self::X;
    /// `h + dropout(delta)` for branch `which` of block `l`.
    fn residual(&mut self, l: usize, which: Branch, h: Self::X, delta: Self::X) -> Self::X;
}

/// What one block produces.
pub struct BlockOut<X> {
    /// The block's output `h'`, the next block's input.
    pub h: X,
    /// `norm(h, ln_1)`, the normalised input (what the linear probe pools).
    pub ln_1: X,
}

/// Block `l` applied to `h` (see the module doc).
pub fn block<M: BlockMath>(m: &mut M, l: usize, h: M::X) -> BlockOut<M::X> {
    let x = m.norm(l, Norm::Ln1, &h);
    let qkv = m.linear(l, Proj::CAttn, &x);
    let a = m.attention(l, &qkv);
    let a = m.linear(l, Proj::AttnCProj, &a);
    let h = m.residual(l, Branch::Attention, h, a);
    let y = m.norm(l, Norm::Ln2, &h);
    let f = m.linear(l, Proj::CFc, &y);
    let f = m.activation(&f);
    let f = m.linear(l, Proj::MlpCProj, &f);
    BlockOut { h: m.residual(l, Branch::Mlp, h, f), ln_1: x }
}
