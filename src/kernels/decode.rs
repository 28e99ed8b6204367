//! Attention for one new token per sequence against a key/value cache: the sampling kernel.
//!
//! When sampling, position `t` of each sequence needs only the last row of causal attention;
//! the keys and values of earlier positions do not change, so they are computed once and kept
//! in a [`KvCache`] (one per layer), in the layout `ops::decode` defines (keys transposed in
//! blocks of 8 positions, value rows padded to a multiple of 8).
//!
//! ## One step
//! The model computes `qkv: [B, 3d]` for the new position (the same `c_attn` output rows the
//! training graph uses: q | k | v, head `h` in columns `h·hd..(h+1)·hd` of each), then
//! [`KvCache::decode_step`] appends its `k`, `v` at position `len` and has the kernels it is
//! given (`Kernels::decode_attention`) compute `o: [B, d]` (heads merged) for the query against
//! positions `0..len` (inclusive of itself). The plain reference is
//! `ops::decode::decode_attention_reference`; [`decode_attention`] is f32's fast kernel
//! (`kernels::Simd`):
//! ```text
//! s_j = q·k_j / sqrt(hd)      p_j = exp(s_j − max s)      o = (Σ_j p_j v_j) / Σ_j p_j
//! ```
//! with the scores accumulated in f64 (in the order `c = 0, 1, …`), 8 positions at a time from
//! one block of keys, `exp` in f32 through `simd::exp2`, `Σ p` in f64, and the output in f32
//! within blocks of 64 positions whose partial sums are added in f64 — so the rounding error
//! grows neither with `hd`·|logits| nor with the sequence length. Heads are independent, so the
//! result is the same for any thread count. It equals the last row of full causal attention to
//! ≤ 1e-6 relative (tests/attention.rs).

use super::bf16::bf16_bits;
use super::pages::StreamBuffer;
use super::simd::{exp2, load, prefetch, store, Stored, LANES};
use super::Precision;
use crate::error::{Error, Result};
use crate::ops::decode::{round8, KvData, KvLayout, KvView, KEY_BLOCK};
use crate::ops::Kernels;
use rayon::prelude::*;
use std::f32::consts::LOG2_E;
use wide::{f32x8, f64x4};

/// Below this many multiply-adds per step (`B·H·len·hd`) heads run serially: rayon's task
/// overhead would exceed the work.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// Positions per f32 partial sum of the output; partial sums are added in f64.
const ACCUMULATE_BLOCK: usize = 64;

/// Value rows (or key columns) loads are prefetched ahead of their use.
const PREFETCH_ROWS: usize = 8;

/// Columns of the values summed in one pass (eight vectors of accumulators).
const WIDE_COLUMNS: usize = 64;

// A block of keys fills one vector's lanes.
const _: () = assert!(KEY_BLOCK == LANES);

/// Keys and values of the positions decoded so far, for one layer (layout: `ops::decode`), as
/// f32 or, for bf16 decoding, as bf16 values (`ops::decode::KvData`).
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Sizes and the number of positions cached.
    layout: KvLayout,
    capacity: usize,
    k: Store,
    v: Store,
}

/// The numbers of a cache. Every step reads the whole cache: huge pages make those reads
/// faster (`StreamBuffer`), and bf16 halves them.
#[derive(Clone, Debug)]
enum Store {
    F32(StreamBuffer<f32>),
    Bf16(StreamBuffer<u16>),
}

impl Store {
    fn zeroed(precision: Precision, n: usize) -> Store {
        match precision {
            Precision::F32 => Store::F32(StreamBuffer::zeroed(n)),
            Precision::Bf16 => Store::Bf16(StreamBuffer::zeroed(n)),
        }
    }

    /// Writes `src` from element `at` on (rounded to bf16 in a bf16 store).
    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Store::F32(x) => x[at..][..src.len()].copy_from_slice(src),
            Store::Bf16(x) => x[at..][..src.len()].iter_mut().zip(src).for_each(|(d, &s)| {
                *d = bf16_bits(s);
            }),
        }
    }

    fn data(&self) -> KvData<'_, f32> {
        match self {
            Store::F32(x) => KvData::Full(x),
            Store::Bf16(x) => KvData::Bf16(x),
        }
    }
}

impl KvCache {
    /// An empty f32 cache for `batch` sequences of up to `capacity` positions.
    ///
    /// # Errors
    /// If a size is zero or the cache would not fit in memory addressing.
    pub fn new(batch: usize, n_head: usize, head_dim: usize, capacity: usize) -> Result<Self> {
        Self::with_precision(batch, n_head, head_dim, capacity, Precision::F32)
    }

    /// An empty cache that stores keys and values in `precision`: bf16 rounds each number it
    /// is given to bf16 (what bf16's attention products do to their operands anyway).
    ///
    /// # Errors
    /// As [`KvCache::new`].
    pub fn with_precision(
        batch: usize,
        n_head: usize,
        head_dim: usize,
        capacity: usize,
        precision: Precision,
    ) -> Result<Self> {
        if batch == 0 || n_head == 0 || head_dim == 0 || capacity == 0 {
            return Err(Error::invalid(format!(
                "KV cache: sizes must be positive (batch {batch}, heads {n_head}, head dim \
                 {head_dim}, capacity {capacity})"
            )));
        }
        let (cap, hdp) = (round8(capacity), round8(head_dim));
        let n = [batch, n_head, hdp, cap]
            .iter()
            .try_fold(1usize, |acc, &x| acc.checked_mul(x))
            .filter(|&n| n <= isize::MAX as usize / 8)
            .ok_or_else(|| Error::invalid("KV cache: size overflows"))?;
        Ok(KvCache {
            layout: KvLayout { batch, n_head, head_dim, cap, len: 0 },
            capacity,
            k: Store::zeroed(precision, n),
            v: Store::zeroed(precision, n),
        })
    }

    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.layout.len
    }

    pub fn is_empty(&self) -> bool {
        self.layout.len == 0
    }

    /// The largest number of positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position (the memory is kept).
    pub fn clear(&mut self) {
        self.layout.len = 0;
    }

    /// The cached keys and values, for `Kernels::decode_attention`.
    pub fn view(&self) -> KvView<'_, f32> {
        KvView { layout: self.layout, keys: self.k.data(), values: self.v.data() }
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
        let l = self.layout;
        let (d, hd, hdp) = (l.d(), l.head_dim, l.hdp());
        if qkv.len() != l.batch * seq * 3 * d {
            return Err(Error::invalid(format!(
                "KV cache append: expected {} floats ([{}, {seq}, {}]), got {}",
                l.batch * seq * 3 * d,
                l.batch,
                3 * d,
                qkv.len()
            )));
        }
        if seq > self.capacity - l.len {
            return Err(Error::invalid(format!(
                "KV cache append: {} + {seq} positions exceed the capacity {}",
                l.len, self.capacity
            )));
        }
        let padding = [0.0; LANES];
        for b in 0..l.batch {
            for i in 0..seq {
                let row = &qkv[(b * seq + i) * 3 * d..][..3 * d];
                let t = l.len + i;
                for h in 0..l.n_head {
                    let bh = b * l.n_head + h;
                    for (c, &x) in row[d + h * hd..][..hd].iter().enumerate() {
                        self.k.write(l.key_index(bh, t, c), &[x]);
                    }
                    let at = l.value_index(bh, t, 0);
                    self.v.write(at, &row[2 * d + h * hd..][..hd]);
                    self.v.write(at + hd, &padding[..hdp - hd]);
                }
            }
        }
        self.layout.len += seq;
        Ok(())
    }

    /// Attention of the queries in `qkv_row: [B, 3d]` over the `len` cached positions, into
    /// `out: [B, d]`, computed by `kernels`.
    ///
    /// # Errors
    /// If the cache is empty or a slice has the wrong length.
    pub fn attend(
        &self,
        kernels: &dyn Kernels<f32>,
        qkv_row: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        let (batch, d) = (self.layout.batch, self.layout.d());
        if qkv_row.len() != batch * 3 * d || out.len() != batch * d {
            return Err(Error::invalid(format!(
                "KV cache attend: expected qkv [{batch}, {}] and out [{batch}, {d}], got {} and \
                 {} floats",
                3 * d,
                qkv_row.len(),
                out.len()
            )));
        }
        if self.is_empty() {
            return Err(Error::invalid("KV cache attend: the cache is empty"));
        }
        kernels.decode_attention(self.view(), qkv_row, out);
        Ok(())
    }

    /// Appends the new position's key and value, then attends to all cached positions: one
    /// sampling step of one layer. `qkv_row: [B, 3d]` → `out: [B, d]`.
    ///
    /// # Errors
    /// As [`KvCache::append`] and [`KvCache::attend`].
    pub fn decode_step(
        &mut self,
        kernels: &dyn Kernels<f32>,
        qkv_row: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        self.append(qkv_row)?;
        self.attend(kernels, qkv_row, out)
    }
}

/// f32's fast `Kernels::decode_attention` (the module doc's step): the query of each
/// sequence's row `qkv: [B, 3d]` against the cached positions, into `out: [B, d]`.
pub fn decode_attention(cache: KvView<'_, f32>, qkv: &[f32], out: &mut [f32]) {
    let l = cache.layout;
    let (d, hd) = (l.d(), l.head_dim);
    // `out` is [B, H, hd]: chunk `bh` is head h of sequence b.
    let head = |(bh, o): (usize, &mut [f32])| {
        let (b, h) = (bh / l.n_head, bh % l.n_head);
        attend_head(cache, &qkv[b * 3 * d + h * hd..][..hd], bh, o)
    };
    if l.batch * d * l.len < PARALLEL_MIN_WORK {
        out.chunks_mut(hd).enumerate().for_each(head);
    } else {
        out.par_chunks_mut(hd).enumerate().for_each(head);
    }
}

/// One head (`bh = b·H + h`): `o = softmax(q·Kᵀ / sqrt(hd)) V` over the cached rows, from
/// keys and values stored as f32 or bf16 (both widen to the same f32s the sums take).
fn attend_head(cache: KvView<'_, f32>, q: &[f32], bh: usize, o: &mut [f32]) {
    let l = cache.layout;
    let keys = l.key_index(bh, 0, 0)..l.key_index(bh, 0, 0) + l.cap * l.head_dim;
    let values = l.value_index(bh, 0, 0)..l.value_index(bh, l.len, 0);
    match (cache.keys, cache.values) {
        (KvData::Full(k), KvData::Full(v)) => attend(l, q, &k[keys], &v[values], o),
        (KvData::Bf16(k), KvData::Bf16(v)) => attend(l, q, &k[keys], &v[values], o),
        (KvData::Full(k), KvData::Bf16(v)) => attend(l, q, &k[keys], &v[values], o),
        (KvData::Bf16(k), KvData::Full(v)) => attend(l, q, &k[keys], &v[values], o),
    }
}

/// [`attend_head`] on one head's key blocks `[cap/8, hd, 8]` and value rows `[len, hdp]`.
fn attend<K: Stored, V: Stored>(
    l: KvLayout,
    q: &[f32],
    k_blocks: &[K],
    values: &[V],
    o: &mut [f32],
) {
    let (hd, hdp, len) = (l.head_dim, l.hdp(), l.len);
    let mut s = vec![0.0f64; round8(len)];
    scores(q, k_blocks, &mut s);
    s.truncate(len);
    let sqrt_hd = (hd as f64).sqrt();
    s.iter_mut().for_each(|x| *x /= sqrt_hd);
    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // s − max ≤ 0 rounded to f32 loses nothing that matters: the largest weights have the
    // smallest arguments.
    let mut p: Vec<f32> = s.iter().map(|&x| (x - max) as f32).collect();
    exp_in_place(&mut p);
    let sum: f64 = p.iter().map(|&x| f64::from(x)).sum();
    let mut total = vec![0.0f64; hdp];
    let blocks = p.chunks(ACCUMULATE_BLOCK).zip(values.chunks(ACCUMULATE_BLOCK * hdp));
    for (p_block, v_block) in blocks {
        // Up to 64 columns per pass, so each value row is read as one contiguous run.
        let mut c = 0;
        while c + WIDE_COLUMNS <= hdp {
            add_weighted_sum::<V, { WIDE_COLUMNS / LANES }>(p_block, v_block, hdp, c, &mut total);
            c += WIDE_COLUMNS;
        }
        while c < hdp {
            add_weighted_sum::<V, 1>(p_block, v_block, hdp, c, &mut total);
            c += LANES;
        }
    }
    for (o, t) in o.iter_mut().zip(&total) {
        *o = (t / sum) as f32;
    }
}

/// `s[j] = Σ_c q[c]·k_j[c]` in f64 (summed in increasing `c`) for `j < s.len()` (a multiple of
/// 8), from keys in blocks of 8 (`[hd, 8]` each); 32 positions (four blocks) at a time.
fn scores<K: Stored>(q: &[f32], k_blocks: &[K], s: &mut [f64]) {
    let hd = q.len();
    let block = hd * LANES;
    let mut groups = s.chunks_exact_mut(4 * LANES);
    let mut first_block = 0;
    for group in &mut groups {
        let keys = &k_blocks[first_block * block..][..4 * block];
        let next = (first_block + 4) * block;
        let mut acc = [f64x4::ZERO; 8];
        for (c, &qc) in q.iter().enumerate() {
            // The next group, 8 KiB for hd = 64: two cache lines per column.
            prefetch(k_blocks, next + c * 4 * LANES);
            prefetch(k_blocks, next + c * 4 * LANES + 2 * LANES);
            let qv = f64x4::splat(f64::from(qc));
            for (blk, a) in acc.chunks_exact_mut(2).enumerate() {
                let [lo, hi] = widen(K::load8(&keys[blk * block + c * LANES..]));
                a[0] = qv.mul_add(lo, a[0]);
                a[1] = qv.mul_add(hi, a[1]);
            }
        }
        for (out, a) in group.chunks_exact_mut(4).zip(acc) {
            out.copy_from_slice(&a.to_array());
        }
        first_block += 4;
    }
    for out in groups.into_remainder().chunks_exact_mut(LANES) {
        let keys = &k_blocks[first_block * block..][..block];
        let mut acc = [f64x4::ZERO; 2];
        for (c, &qc) in q.iter().enumerate() {
            let qv = f64x4::splat(f64::from(qc));
            let [lo, hi] = widen(K::load8(&keys[c * LANES..]));
            acc[0] = qv.mul_add(lo, acc[0]);
            acc[1] = qv.mul_add(hi, acc[1]);
        }
        for (o, a) in out.chunks_exact_mut(4).zip(acc) {
            o.copy_from_slice(&a.to_array());
        }
        first_block += 1;
    }
}

/// The 8 lanes of `x` widened to f64, lanes 0–3 and 4–7.
#[inline(always)]
fn widen(x: f32x8) -> [f64x4; 2] {
    let a = x.to_array().map(f64::from);
    [f64x4::from([a[0], a[1], a[2], a[3]]), f64x4::from([a[4], a[5], a[6], a[7]])]
}

/// `total[c .. c + 8·NV] += Σ_j p[j]·v[j·hdp + c .. + 8·NV]` over one block of positions: one
/// f32 sum per column in the order `j = 0, 1, …` (the `NV` vectors are independent chains),
/// added to `total` in f64.
fn add_weighted_sum<V: Stored, const NV: usize>(
    p: &[f32],
    v: &[V],
    hdp: usize,
    c: usize,
    total: &mut [f64],
) {
    let mut acc = [f32x8::ZERO; NV];
    for (j, &pj) in p.iter().enumerate() {
        let pv = f32x8::splat(pj);
        let row = &v[j * hdp + c..];
        for line in (0..NV * LANES).step_by(2 * LANES) {
            prefetch(v, (j + PREFETCH_ROWS) * hdp + c + line);
        }
        for (k, a) in acc.iter_mut().enumerate() {
            *a = pv.mul_add(V::load8(&row[k * LANES..]), *a);
        }
    }
    for (k, a) in acc.iter().enumerate() {
        let t = &mut total[c + k * LANES..][..LANES];
        t.iter_mut().zip(a.to_array()).for_each(|(t, x)| *t += f64::from(x));
    }
}

/// `x ← exp(x)` (vectorised through `simd::exp2`, relative error ≤ 2e-7).
fn exp_in_place(x: &mut [f32]) {
    let log2e = f32x8::splat(LOG2_E);
    let mut chunks = x.chunks_exact_mut(LANES);
    for ch in &mut chunks {
        store(ch, exp2(load(ch) * log2e));
    }
    for v in chunks.into_remainder() {
        *v = v.exp();
    }
}
