//! Memory footprints of a model's work, from its configuration: the estimates that
//! `crate::admission` checks against the budget (formulas and their derivation in the module
//! doc there and in SPEC §8).

use super::Config;
use crate::admission::F32;

/// The weights of `c`: `4N`.
pub fn weights(c: &Config) -> f64 {
    F32 * c.n_params(true) as f64
}

/// Floats the tape keeps per token of a forward pass: `L(12d + 2f + H) + 5d + 2V`.
fn activations_per_token(c: &Config) -> f64 {
    let (d, f, h) = (c.n_embd as f64, c.inner() as f64, c.n_head as f64);
    c.n_layer as f64 * (12.0 * d + 2.0 * f + h) + 5.0 * d + 2.0 * c.vocab_size as f64
}

/// A forward pass of `batch × seq` tokens: `4N + 4·B·T·a`.
pub fn forward(c: &Config, batch: usize, seq: usize) -> f64 {
    weights(c) + F32 * tokens(batch, seq) * activations_per_token(c)
}

/// A training step (or a gradient) on `batch × seq` tokens: `16N + 5·B·T·a`.
pub fn training(c: &Config, batch: usize, seq: usize) -> f64 {
    4.0 * weights(c) + 1.25 * F32 * tokens(batch, seq) * activations_per_token(c)
}

/// A model golden of `batch × seq` tokens: training plus its outputs, held twice.
pub fn golden(c: &Config, batch: usize, seq: usize) -> f64 {
    let outputs = (c.n_layer + 1) as f64 * c.n_embd as f64 + c.vocab_size as f64;
    training(c, batch, seq) + 2.0 * (weights(c) + F32 * tokens(batch, seq) * outputs)
}

/// Decoding `n` sequences of `len` tokens with the KV cache: `8N + 8·n·(L·P·d + T)` (the
/// weights and the decoder's packed copy of them, keys and values, the tokens).
pub fn decoding(c: &Config, n: usize, len: usize) -> f64 {
    let cache = c.n_layer as f64 * c.n_positions as f64 * c.n_embd as f64;
    2.0 * weights(c) + 8.0 * n as f64 * (cache + len as f64)
}

fn tokens(batch: usize, seq: usize) -> f64 {
    batch as f64 * seq as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_follow_the_documented_formulas() {
        let c = Config::preset("digits").unwrap();
        let n = c.n_params(true) as f64;
        // digits: L 4, d 128, f 512, H 4, V 18.
        let a = 4.0 * (12.0 * 128.0 + 2.0 * 512.0 + 4.0) + 5.0 * 128.0 + 2.0 * 18.0;
        assert_eq!(weights(&c), 4.0 * n);
        assert_eq!(forward(&c, 2, 64), 4.0 * n + 4.0 * 128.0 * a);
        assert_eq!(training(&c, 2, 64), 16.0 * n + 5.0 * 128.0 * a);
        assert_eq!(decoding(&c, 3, 64), 8.0 * n + 24.0 * (4.0 * 64.0 * 128.0 + 64.0));
        // The 16 G-parameter config: 64 GiB of weights, refused on a 24 GiB budget.
        let big =
            Config { n_embd: 8192, n_layer: 20, n_head: 64, ..Config::preset("small").unwrap() };
        assert!(weights(&big) > 60.0 * 1024f64.powi(3));
    }
}
