//! Attention for one new token per sequence against a key/value cache, defined by plain loops.
//!
//! When sampling, position `t` of each sequence needs only the last row of causal attention
//! (`attention.rs`): for each head,
//! ```text
//! s_j = q·k_j / sqrt(hd)   (j = 0..=t)      o = softmax_j(s) · V = Σ_j p_j v_j
//! ```
//! The keys and values of earlier positions do not change, so the decoder keeps them in a
//! cache (`kernels::KvCache`, one per layer) and a step reads them through a [`KvView`].
//! [`decode_attention_reference`] is the default of `Kernels::decode_attention`; f32's
//! `kernels::Simd` runs the streaming kernel of `kernels::decode` instead.
//!
//! ## Cache layout
//! Per sequence `b` and head `h` (`bh = b·H + h`, blocks in `b`-major, `h`-minor order), with
//! `cap` the capacity rounded up to a multiple of [`KEY_BLOCK`] = 8 and `hdp` = `hd` rounded up
//! to a multiple of 8:
//! - keys **transposed in blocks of 8 positions**, `k: [B, H, cap/8, hd, 8]`: column `c` of the
//!   key at position `t` is `k[((bh·cap/8 + t/8)·hd + c)·8 + t mod 8]`. The 8 positions of a
//!   block sit in the lanes of one SIMD vector per column, so a kernel computes 8 scores at once
//!   without horizontal sums, and a block (`hd × 8` floats) is contiguous;
//! - values row-major, `v: [B, H, cap, hdp]`: `v[(bh·cap + t)·hdp + c]`, rows zero-padded to
//!   `hdp`.
//!
//! Positions `len..cap` are never read. The layout is the fast kernel's choice; the reference
//! reads it through [`KvView::key`] and [`KvView::value`], so it does not depend on it.

use super::attention::softmax_in_place;
use crate::io::safetensors::bf16_to_f32;
use crate::tensor::Float;

/// Positions per block of transposed keys (see the module doc).
pub const KEY_BLOCK: usize = 8;

/// `n` rounded up to a multiple of 8.
pub fn round8(n: usize) -> usize {
    n.div_ceil(KEY_BLOCK) * KEY_BLOCK
}

/// The sizes of a key/value cache and where each number sits in it (module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    pub batch: usize,
    pub n_head: usize,
    pub head_dim: usize,
    /// Room for this many positions: a multiple of 8.
    pub cap: usize,
    /// Positions cached (`len ≤ cap`).
    pub len: usize,
}

impl KvLayout {
    /// The model width `d = H·hd`.
    pub fn d(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// `head_dim` rounded up to a multiple of 8: the length of a value row.
    pub fn hdp(&self) -> usize {
        round8(self.head_dim)
    }

    /// Where column `c` of the key at position `t` of head `bh` sits.
    pub fn key_index(&self, bh: usize, t: usize, c: usize) -> usize {
        ((bh * self.cap / KEY_BLOCK + t / KEY_BLOCK) * self.head_dim + c) * KEY_BLOCK
            + t % KEY_BLOCK
    }

    /// Where column `c` of the value at position `t` of head `bh` sits.
    pub fn value_index(&self, bh: usize, t: usize, c: usize) -> usize {
        (bh * self.cap + t) * self.hdp() + c
    }
}

/// The cached keys and values of one layer, read-only, in the layout of [`KvLayout`].
#[derive(Clone, Copy, Debug)]
pub struct KvView<'a, T> {
    pub layout: KvLayout,
    pub keys: KvData<'a, T>,
    pub values: KvData<'a, T>,
}

/// Cached numbers as stored: in the kernels' own float type, or as bf16 values (`u16`, the
/// high half of an f32's bits). bf16 decoding rounds keys and values to bf16 before its
/// products anyway (SPEC §21), so a bf16 cache holds the very same values in half the bytes
/// that every decoding step reads.
#[derive(Clone, Copy, Debug)]
pub enum KvData<'a, T> {
    Full(&'a [T]),
    Bf16(&'a [u16]),
}

impl<T: Float> KvData<'_, T> {
    /// Element `i` as a `T` (a bf16 value widens exactly: its bits are an f32's high half).
    pub fn get(&self, i: usize) -> T {
        match self {
            KvData::Full(x) => x[i],
            KvData::Bf16(x) => T::from_f32(bf16_to_f32(x[i])),
        }
    }
}

impl<T: Float> KvView<'_, T> {
    /// Column `c` of the key at position `t` of head `bh`.
    pub fn key(&self, bh: usize, t: usize, c: usize) -> T {
        self.keys.get(self.layout.key_index(bh, t, c))
    }

    /// Column `c` of the value at position `t` of head `bh`.
    pub fn value(&self, bh: usize, t: usize, c: usize) -> T {
        self.values.get(self.layout.value_index(bh, t, c))
    }
}

/// The query of each sequence's new row `qkv: [B, 3d]` (columns `0..d`, head `h` in
/// `h·hd..(h+1)·hd`) against the `len` cached positions, into `out: [B, d]` (heads merged).
/// The row's own key and value are read from the cache, where the decoder appended them.
pub fn decode_attention_reference<T: Float>(cache: KvView<'_, T>, qkv: &[T], out: &mut [T]) {
    let KvLayout { batch, n_head, head_dim: hd, len, .. } = cache.layout;
    let d = cache.layout.d();
    let sqrt_hd = T::from_f64(hd as f64).sqrt();
    for b in 0..batch {
        for h in 0..n_head {
            let bh = b * n_head + h;
            let q = &qkv[b * 3 * d + h * hd..][..hd];
            let mut p: Vec<T> = (0..len)
                .map(|t| {
                    let mut s = T::ZERO;
                    for (c, &qc) in q.iter().enumerate() {
                        s += qc * cache.key(bh, t, c);
                    }
                    s / sqrt_hd
                })
                .collect();
            softmax_in_place(&mut p);
            for (c, o) in out[b * d + h * hd..][..hd].iter_mut().enumerate() {
                let mut sum = T::ZERO;
                for (t, &pt) in p.iter().enumerate() {
                    sum += pt * cache.value(bh, t, c);
                }
                *o = sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::attention::attention_reference_forward;
    use crate::ops::AttentionDims;
    use crate::rng::Philox;

    /// Filling a cache in the layout with every row of `qkv: [B, T, 3d]` and attending with the
    /// last row's query gives the last row of causal attention.
    #[test]
    fn the_reference_is_the_last_row_of_causal_attention() {
        let dims = AttentionDims { batch: 2, seq: 11, n_head: 3, head_dim: 5 };
        let (t, hd, d) = (dims.seq, dims.head_dim, dims.d());
        let philox = Philox::new(3);
        let qkv: Vec<f64> =
            (0..2 * t * 3 * d).map(|i| f64::from(philox.normal_at(0, i as u64))).collect();
        let layout = KvLayout { batch: 2, n_head: 3, head_dim: hd, cap: round8(t), len: t };
        let size = 2 * 3 * layout.cap * layout.hdp();
        let (mut keys, mut values) = (vec![0.0; size], vec![0.0; size]);
        for b in 0..2 {
            for pos in 0..t {
                let row = &qkv[(b * t + pos) * 3 * d..][..3 * d];
                for h in 0..3 {
                    for c in 0..hd {
                        keys[layout.key_index(b * 3 + h, pos, c)] = row[d + h * hd + c];
                        values[layout.value_index(b * 3 + h, pos, c)] = row[2 * d + h * hd + c];
                    }
                }
            }
        }
        let last: Vec<f64> =
            (0..2).flat_map(|b| qkv[(b * t + t - 1) * 3 * d..][..3 * d].to_vec()).collect();
        let mut out = vec![0.0; 2 * d];
        let view = KvView { layout, keys: KvData::Full(&keys), values: KvData::Full(&values) };
        decode_attention_reference(view, &last, &mut out);
        let (full, _) = attention_reference_forward(&qkv, dims, true);
        for b in 0..2 {
            for (o, f) in out[b * d..][..d].iter().zip(&full[(b * t + t - 1) * d..][..d]) {
                assert!((o - f).abs() <= 1e-12, "{o} vs {f}");
            }
        }
    }
}
