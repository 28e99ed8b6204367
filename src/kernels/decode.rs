//! Attention for one new token per sequence against a key/value cache: the sampling kernel.
//!
//! When sampling, position `t` of each sequence needs only the last row of causal attention:
//! `o_t = softmax_j(q_t·k_j / sqrt(hd)) v_j` over `j = 0..=t`. The keys and values of earlier
//! positions do not change, so they are computed once and kept in a [`KvCache`] (one per layer).
//!
//! ## Cache layout
//! `k` and `v` are each `[B, H, capacity, hd]`, row-major: head `h` of sequence `b` keeps its
//! keys as a contiguous `[capacity, hd]` block whose first `len` rows are filled. A decode step
//! therefore reads two contiguous `len × hd` blocks per head.
//!
//! ## One step
//! The model computes `qkv: [B, 3d]` for the new position (the same `c_attn` output rows the
//! training graph uses, q | k | v with head `h` in columns `h·hd..(h+1)·hd` of each), then
//! [`KvCache::decode_step`] appends its `k`, `v` at position `len` and returns
//! `o: [B, d]` (heads merged) for the query against positions `0..len` (inclusive of itself):
//! ```text
//! s_j = q·k_j / sqrt(hd)      p_j = exp(s_j − max s) / Σ exp(s − max s)      o = Σ_j p_j v_j
//! ```
//! in f32 with `f32::exp`, dot products accumulated 8 lanes at a time and combined in a fixed
//! order. Heads are independent tasks, so the result is the same for any thread count. It equals
//! the last row of full causal attention to ≤ 1e-6 relative (tests/attention.rs).

use super::simd::{dot, load, store, LANES};
use crate::error::{Error, Result};
use rayon::prelude::*;
use wide::f32x8;

/// Below this many multiply-adds per step (`B·H·len·hd`) heads run serially: rayon's task
/// overhead would exceed the work.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// Keys and values of the positions decoded so far, for one layer (layout in the module doc).
#[derive(Clone, Debug)]
pub struct KvCache {
    batch: usize,
    n_head: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl KvCache {
    /// An empty cache for `batch` sequences of up to `capacity` positions.
    ///
    /// # Errors
    /// If a size is zero or the cache would not fit in memory addressing.
    pub fn new(batch: usize, n_head: usize, head_dim: usize, capacity: usize) -> Result<Self> {
        if batch == 0 || n_head == 0 || head_dim == 0 || capacity == 0 {
            return Err(Error::invalid(format!(
                "KV cache: sizes must be positive (batch {batch}, heads {n_head}, head dim \
                 {head_dim}, capacity {capacity})"
            )));
        }
        let n = [batch, n_head, head_dim, capacity]
            .iter()
            .try_fold(1usize, |acc, &x| acc.checked_mul(x))
            .filter(|&n| n <= isize::MAX as usize / 8)
            .ok_or_else(|| Error::invalid("KV cache: size overflows"))?;
        Ok(KvCache { batch, n_head, head_dim, capacity, len: 0, k: vec![0.0; n], v: vec![0.0; n] })
    }

    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The largest number of positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position (the memory is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The model width `d = H·hd`.
    fn d(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Offset of position `t` of head `h` of sequence `b` in `k` or `v`.
    fn offset(&self, b: usize, h: usize, t: usize) -> usize {
        ((b * self.n_head + h) * self.capacity + t) * self.head_dim
    }

    /// Appends one position per sequence: the `k` and `v` parts of `qkv_row: [B, 3d]`.
    ///
    /// # Errors
    /// If `qkv_row` is not `B·3d` long or the cache is full.
    pub fn append(&mut self, qkv_row: &[f32]) -> Result<()> {
        self.append_rows(qkv_row, 1)
    }

    /// Appends `seq` positions per sequence from `qkv: [B, seq, 3d]` (e.g. a prompt run through
    /// the full forward pass).
    ///
    /// # Errors
    /// If `qkv` is not `B·seq·3d` long or the positions do not fit.
    pub fn append_rows(&mut self, qkv: &[f32], seq: usize) -> Result<()> {
        let d = self.d();
        if qkv.len() != self.batch * seq * 3 * d {
            return Err(Error::invalid(format!(
                "KV cache append: expected {} floats ([{}, {seq}, {}]), got {}",
                self.batch * seq * 3 * d,
                self.batch,
                3 * d,
                qkv.len()
            )));
        }
        if seq > self.capacity - self.len {
            return Err(Error::invalid(format!(
                "KV cache append: {} + {seq} positions exceed the capacity {}",
                self.len, self.capacity
            )));
        }
        let hd = self.head_dim;
        for b in 0..self.batch {
            for t in 0..seq {
                let row = &qkv[(b * seq + t) * 3 * d..][..3 * d];
                for h in 0..self.n_head {
                    let dst = self.offset(b, h, self.len + t);
                    self.k[dst..dst + hd].copy_from_slice(&row[d + h * hd..][..hd]);
                    self.v[dst..dst + hd].copy_from_slice(&row[2 * d + h * hd..][..hd]);
                }
            }
        }
        self.len += seq;
        Ok(())
    }

    /// Attention of the queries in `qkv_row: [B, 3d]` over the `len` cached positions, into
    /// `out: [B, d]`.
    ///
    /// # Errors
    /// If the cache is empty or a slice has the wrong length.
    pub fn attend(&self, qkv_row: &[f32], out: &mut [f32]) -> Result<()> {
        let d = self.d();
        if qkv_row.len() != self.batch * 3 * d || out.len() != self.batch * d {
            return Err(Error::invalid(format!(
                "KV cache attend: expected qkv [{}, {}] and out [{}, {d}], got {} and {} floats",
                self.batch,
                3 * d,
                self.batch,
                qkv_row.len(),
                out.len()
            )));
        }
        if self.len == 0 {
            return Err(Error::invalid("KV cache attend: the cache is empty"));
        }
        // `out` is [B, H, hd]: chunk `bh` is head h of sequence b.
        let head = |(bh, o): (usize, &mut [f32])| {
            let (b, h) = (bh / self.n_head, bh % self.n_head);
            self.attend_head(&qkv_row[b * 3 * d + h * self.head_dim..][..self.head_dim], b, h, o)
        };
        if self.batch * d * self.len < PARALLEL_MIN_WORK {
            out.chunks_mut(self.head_dim).enumerate().for_each(head);
        } else {
            out.par_chunks_mut(self.head_dim).enumerate().for_each(head);
        }
        Ok(())
    }

    /// Appends the new position's key and value, then attends to all cached positions: one
    /// sampling step of one layer. `qkv_row: [B, 3d]` → `out: [B, d]`.
    ///
    /// # Errors
    /// As [`KvCache::append`] and [`KvCache::attend`].
    pub fn decode_step(&mut self, qkv_row: &[f32], out: &mut [f32]) -> Result<()> {
        self.append(qkv_row)?;
        self.attend(qkv_row, out)
    }

    /// One head: `o = softmax(q·Kᵀ / sqrt(hd)) V` over the cached rows.
    fn attend_head(&self, q: &[f32], b: usize, h: usize, o: &mut [f32]) {
        let (hd, len) = (self.head_dim, self.len);
        let keys = &self.k[self.offset(b, h, 0)..][..len * hd];
        let values = &self.v[self.offset(b, h, 0)..][..len * hd];
        let sqrt_hd = (hd as f32).sqrt();
        let mut p: Vec<f32> = keys.chunks_exact(hd).map(|k| dot(q, k) / sqrt_hd).collect();
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for x in p.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        o.fill(0.0);
        for (&pj, v) in p.iter().zip(values.chunks_exact(hd)) {
            axpy(pj, v, o);
        }
        o.iter_mut().for_each(|x| *x /= sum);
    }
}

/// `y += α·x`.
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let a = f32x8::splat(alpha);
    let mut y8 = y.chunks_exact_mut(LANES);
    let mut x8 = x.chunks_exact(LANES);
    for (yc, xc) in (&mut y8).zip(&mut x8) {
        store(yc, a.mul_add(load(xc), load(yc)));
    }
    for (yi, &xi) in y8.into_remainder().iter_mut().zip(x8.remainder()) {
        *yi = alpha.mul_add(xi, *yi);
    }
}
