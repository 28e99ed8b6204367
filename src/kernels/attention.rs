//! Fused multi-head attention, FlashAttention-2 style: forward and backward in O(T) memory.
//!
//! Same layout and math as the materialised reference (`ops::attention`): `qkv: [B, T, 3d]` →
//! `o: [B, T, d]`, head `h` owning columns `h·hd .. (h+1)·hd` of q, k and v, and per head
//! ```text
//! S_ij = q_i·k_j / sqrt(hd)     (−∞ for j > i when causal)
//! P = softmax_j(S)      O = P V      L_i = ln Σ_j exp(S_ij)    (the logsumexp, saved)
//! ```
//! The difference is that no `T×T` matrix ever exists. Queries and keys are cut into tiles of
//! [`BLOCK`] = 64 rows; one task owns one query tile of one head and walks the key tiles left to
//! right keeping, per query row, the running maximum `m`, the running sum `l` and an unnormalised
//! output row (the *online softmax*):
//! ```text
//! for each key tile:  S = Q_tile K_tileᵀ / sqrt(hd)            (64×64, in L1)
//!                     m' = max(m, max_j S_ij)   α = exp(m − m')
//!                     P  = exp(S − m')          l = α l + Σ_j P_ij     O = α O + P V_tile
//! finally:            O /= l        L = m + ln l
//! ```
//! In causal mode key tiles entirely right of the diagonal are skipped (they would be all −∞),
//! so the work is ≈ half of the bidirectional case. Exponentials run in base 2 with the scale
//! folded in: `exp(S_ij − m) = 2^(x_ij·c − m₂)` with `x = q·k`, `c = log₂e / sqrt(hd)` and `m₂`
//! the running maximum of `x·c` (see `simd::exp2`).
//!
//! The backward recomputes `P` tile by tile from the saved `L` instead of storing it:
//! ```text
//! D_i = Σ_c dO_ic O_ic                      (once per row)
//! for each key tile j (dK_j, dV_j accumulate in L1):
//!     for each query tile i (i ≥ j when causal):
//!         P = exp(Q_i K_jᵀ / sqrt(hd) − L_i)     dV_j += Pᵀ dO_i
//!         dP = dO_i V_jᵀ      dS = P ∘ (dP − D_i) / sqrt(hd)
//!         dK_j += dSᵀ Q_i     dQ_i += dS K_j
//! ```
//! Five tile products per tile pair (the forward has two), all through `simd::tile_gemm`, which
//! computes `XᵀY` from two operands stored with the inner dimension as rows. For each product
//! the operands are packed (once per head or tile) in the orientation that form needs:
//!
//! | product | X `[inner, m]` | Y `[inner, n]` | C |
//! |---|---|---|---|
//! | forward `Sᵀ` | `Kᵀ` tile `[hd, keys]` | `Qᵀ` tile `[hd, queries]` | `Sᵀ [keys, queries]` |
//! | forward `Oᵀ += Vᵀ Pᵀ` | `V` tile `[keys, hd]` | `Pᵀ [keys, queries]` | `Oᵀ [hd, queries]` |
//! | `S` | `Qᵀ` tile | `Kᵀ` tile | `S [queries, keys]` |
//! | `dV += Pᵀ dO` | `P [queries, keys]` | `dO` rows `[queries, hd]` | `dV [keys, hd]` |
//! | `dP = dO Vᵀ` | `dOᵀ` tile | `Vᵀ` tile | `dP [queries, keys]` |
//! | `dK += dSᵀ Q` | `dS [queries, keys]` | `Q` rows | `dK [keys, hd]` |
//! | `dQ += dS K` | `dSᵀ [keys, queries]` (8×8 transposes) | `K` rows | `dQ [queries, hd]` |
//!
//! The forward works on `Sᵀ` so that the softmax statistics of 8 queries sit in the 8 lanes of
//! a vector: the maxima and sums over keys are plain vertical operations, never horizontal.
//!
//! ## Parallelism and determinism
//! The forward runs one rayon task per (batch, head, query tile); each task's result depends on
//! its inputs only. The backward runs one task per (batch, head): inside it `dQ_i` accumulates
//! over key tiles and `dK_j`, `dV_j` over query tiles, always in increasing tile order. No float
//! is ever summed across tasks, so results are bit-identical for any number of threads.
//!
//! ## Memory
//! The forward packs every head's `Kᵀ` and `V` (`2·T·hdp` floats per head); the backward packs,
//! per head in flight, `Qᵀ`, `Q`, `dO`, `dOᵀ` and `dQ` (`5·T·hdp`) plus one key tile of each of
//! `Kᵀ`, `K`, `Vᵀ`. Everything else is 64-row tiles. No `T×T` buffer exists;
//! [`forward_workspace_floats`] and [`backward_workspace_floats`] state the totals. The packed
//! copies live in a per-thread workspace reused across calls, so a training step does not
//! page-fault megabytes of fresh memory in every attention call.
//!
//! Head dimensions that are not a multiple of 8 are zero-padded to one (`hdp`): zero columns add
//! nothing to `q·k` and produce output columns that are dropped.

use super::simd::{exp2, load, store, tile_gemm, transpose, LANES};
use crate::ops::AttentionDims;
use rayon::prelude::*;
use std::cell::RefCell;
use std::f32::consts::{LN_2, LOG2_E};
use wide::f32x8;

/// Rows of a query tile and of a key tile.
pub const BLOCK: usize = 64;

/// `n` rounded up to a multiple of 8.
fn round8(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// Sizes derived from [`AttentionDims`] that every loop needs.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    n_head: usize,
    seq: usize,
    hd: usize,
    /// `hd` rounded up to a multiple of 8.
    hdp: usize,
    /// `d = n_head · hd`.
    d: usize,
    /// Number of tiles: `ceil(T / BLOCK)`.
    nt: usize,
}

impl Geometry {
    fn new(dims: AttentionDims) -> Self {
        Geometry {
            batch: dims.batch,
            n_head: dims.n_head,
            seq: dims.seq,
            hd: dims.head_dim,
            hdp: round8(dims.head_dim),
            d: dims.d(),
            nt: dims.seq.div_ceil(BLOCK),
        }
    }

    /// Whether there is nothing to compute (some size is zero).
    fn is_empty(&self) -> bool {
        self.batch == 0 || self.n_head == 0 || self.seq == 0 || self.hd == 0
    }

    /// Offset in `qkv` of head `h`'s part (0 = q, 1 = k, 2 = v) of batch element `b`, row 0.
    fn qkv_offset(&self, b: usize, h: usize, part: usize) -> usize {
        b * self.seq * 3 * self.d + part * self.d + h * self.hd
    }

    /// Offset in `o` or `∂o` (`[B, T, d]`) of head `h` of batch element `b`, row 0.
    fn out_offset(&self, b: usize, h: usize) -> usize {
        b * self.seq * self.d + h * self.hd
    }

    /// Rows in tile `tile` (`BLOCK`, or fewer in the last tile).
    fn tile_rows(&self, tile: usize) -> usize {
        BLOCK.min(self.seq - tile * BLOCK)
    }

    /// `1 / sqrt(hd)`, the logit scale.
    fn inv_sqrt_hd(&self) -> f32 {
        1.0 / (self.hd as f32).sqrt()
    }
}

/// Where one head's rows live in a `[B, T, width]` buffer: `T` rows of `hd` floats at
/// `offset + t·stride`.
#[derive(Clone, Copy)]
struct HeadRows<'a> {
    src: &'a [f32],
    offset: usize,
    stride: usize,
}

impl HeadRows<'_> {
    fn row(&self, t: usize, hd: usize) -> &[f32] {
        &self.src[self.offset + t * self.stride..][..hd]
    }
}

/// Rows `first..first+n` of a head into `dst: [n, hdp]`; rows past `T` and columns past `hd`
/// are written as zeros.
fn pack_rows(rows: HeadRows, first: usize, n: usize, g: &Geometry, dst: &mut [f32]) {
    for (i, d) in dst.chunks_exact_mut(g.hdp).take(n).enumerate() {
        if first + i < g.seq {
            d[..g.hd].copy_from_slice(rows.row(first + i, g.hd));
            d[g.hd..].fill(0.0);
        } else {
            d.fill(0.0);
        }
    }
}

/// The same rows transposed into `dst: [hdp, ld]`, `dst[c·ld + i] = row first+i, column c`;
/// zeros past `T`, past `hd`, and in columns `n..ld`.
fn pack_transposed(
    rows: HeadRows,
    first: usize,
    n: usize,
    ld: usize,
    g: &Geometry,
    dst: &mut [f32],
) {
    dst[..g.hdp * ld].fill(0.0);
    for i in 0..n.min(g.seq.saturating_sub(first)) {
        for (c, &x) in rows.row(first + i, g.hd).iter().enumerate() {
            dst[c * ld + i] = x;
        }
    }
}

thread_local! {
    /// Per-thread memory for packed operands, reused across calls (it grows to the largest size
    /// used and is never shrunk).
    static WORKSPACE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's workspace (contents unspecified: callers overwrite
/// what they read). A nested call on the same thread — possible when a rayon thread waiting
/// inside one attention call steals a task of another — gets fresh memory instead.
fn with_workspace<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    WORKSPACE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// An output buffer that parallel tasks fill at disjoint positions (each task owns the cells of
/// its rows and head), so the tasks can write results in place instead of returning them.
struct DisjointOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks only write through `put`, at positions no other task writes (see its contract).
unsafe impl Send for DisjointOut {}
unsafe impl Sync for DisjointOut {}

impl DisjointOut {
    fn new(buf: &mut [f32]) -> Self {
        DisjointOut { ptr: buf.as_mut_ptr(), len: buf.len() }
    }

    /// Writes (or, with `accumulate`, adds) `src` at `start`.
    ///
    /// # Safety
    /// No other task may access `start..start + src.len()` while the buffer is shared.
    unsafe fn put(&self, start: usize, src: &[f32], accumulate: bool) {
        assert!(start + src.len() <= self.len, "DisjointOut: write past the end");
        let dst = std::slice::from_raw_parts_mut(self.ptr.add(start), src.len());
        if accumulate {
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// The result of [`flash_attention_forward`].
#[derive(Clone, Debug)]
pub struct FlashForward {
    /// The attention output `o: [B, T, d]` (heads merged).
    pub out: Vec<f32>,
    /// The logsumexp of each query row's logits, `L_i = ln Σ_j exp(S_ij)`: `[B, H, T]`.
    pub lse: Vec<f32>,
}

/// Fused attention forward: `o: [B, T, d]` and the per-row logsumexp from `qkv: [B, T, 3d]`.
///
/// # Panics
/// If `qkv.len()` is not `B·T·3d`.
pub fn flash_attention_forward(qkv: &[f32], dims: AttentionDims, causal: bool) -> FlashForward {
    let g = Geometry::new(dims);
    assert_eq!(qkv.len(), g.batch * g.seq * 3 * g.d, "flash forward: qkv size for {dims:?}");
    let mut out = vec![0.0; g.batch * g.seq * g.d];
    let mut lse = vec![0.0; g.batch * g.n_head * g.seq];
    if g.is_empty() {
        return FlashForward { out, lse };
    }
    let n_heads = g.batch * g.n_head;
    // Per head: Kᵀ tiles [nt, hdp, BLOCK], then V rows [nt·BLOCK, hdp].
    let per_head = 2 * g.nt * BLOCK * g.hdp;
    with_workspace(n_heads * per_head, |packed| {
        packed.par_chunks_mut(per_head).enumerate().for_each(|(bh, kv)| {
            let (b, h) = (bh / g.n_head, bh % g.n_head);
            let (k_t, v) = kv.split_at_mut(g.nt * BLOCK * g.hdp);
            let keys = HeadRows { src: qkv, offset: g.qkv_offset(b, h, 1), stride: 3 * g.d };
            let values = HeadRows { src: qkv, offset: g.qkv_offset(b, h, 2), stride: 3 * g.d };
            for (kt, tile) in k_t.chunks_exact_mut(g.hdp * BLOCK).enumerate() {
                pack_transposed(keys, kt * BLOCK, BLOCK, BLOCK, &g, tile);
            }
            pack_rows(values, 0, g.nt * BLOCK, &g, v);
        });
        let packed: &[f32] = packed;
        let (o_out, lse_out) = (DisjointOut::new(&mut out), DisjointOut::new(&mut lse));
        (0..n_heads * g.nt).into_par_iter().for_each(|task| {
            let (bh, qt) = (task / g.nt, task % g.nt);
            let kv = &packed[bh * per_head..][..per_head];
            forward_tile(qkv, &g, kv, bh, qt, causal, &o_out, &lse_out);
        });
    });
    FlashForward { out, lse }
}

/// One query tile `qt` of head `bh`: writes its rows of `o` and `lse`.
#[allow(clippy::too_many_arguments)]
fn forward_tile(
    qkv: &[f32],
    g: &Geometry,
    kv: &[f32],
    bh: usize,
    qt: usize,
    causal: bool,
    o_out: &DisjointOut,
    lse_out: &DisjointOut,
) {
    let (b, h) = (bh / g.n_head, bh % g.n_head);
    let (hd, hdp, r0, rows) = (g.hd, g.hdp, qt * BLOCK, g.tile_rows(qt));
    // Queries sit in vector lanes: rp = rows rounded up to 8 (the extra lanes are zero queries).
    let rp = round8(rows);
    let (k_t, v) = kv.split_at(g.nt * BLOCK * hdp);
    let mut q_t = vec![0.0; hdp * rp];
    let queries = HeadRows { src: qkv, offset: g.qkv_offset(b, h, 0), stride: 3 * g.d };
    pack_transposed(queries, r0, rows, rp, g, &mut q_t);
    let mut s_t = vec![0.0; BLOCK * rp];
    let mut o_t = vec![0.0; hdp * rp];
    let mut stats = RowStats::new(rp);
    let c = LOG2_E * g.inv_sqrt_hd();
    let key_tiles = if causal { qt + 1 } else { g.nt };
    for kt in 0..key_tiles {
        let c0 = kt * BLOCK;
        // Keys this tile's queries can see at all: the tile (or what the sequence has of it),
        // and, on the causal diagonal, none past the last query.
        let mut keys = g.tile_rows(kt);
        if causal {
            keys = keys.min(r0 + rows - c0);
        }
        let k_tile = &k_t[kt * hdp * BLOCK..][..hdp * BLOCK];
        tile_gemm((keys, rp, hdp), k_tile, BLOCK, &q_t, rp, &mut s_t, rp, false);
        if causal && kt == qt {
            // Key c0 + j is hidden from queries r0 + i < c0 + j, i.e. lanes i < j (c0 = r0).
            for (j, row) in s_t.chunks_exact_mut(rp).take(keys).enumerate() {
                row[..j.min(rp)].fill(f32::NEG_INFINITY);
            }
        }
        stats.update(&mut s_t[..keys * rp], &mut o_t, c);
        let v_tile = &v[c0 * hdp..][..keys * hdp];
        tile_gemm((hdp, rp, keys), v_tile, hdp, &s_t, rp, &mut o_t, rp, true);
    }
    // o = Oᵀ / l, transposed back into rows; L = (m₂ + log₂ l)·ln 2.
    let mut o_row = vec![0.0; hd];
    for i in 0..rows {
        let l = stats.l[i];
        for (ch, o) in o_row.iter_mut().enumerate() {
            *o = o_t[ch * rp + i] / l;
        }
        let t = r0 + i;
        // SAFETY: row t of head (b, h) belongs to this task alone.
        unsafe {
            o_out.put(g.out_offset(b, h) + t * g.d, &o_row, false);
            lse_out.put(bh * g.seq + t, &[(stats.m2[i] + l.log2()) * LN_2], false);
        }
    }
}

/// The online-softmax state of up to 64 queries, one per vector lane.
struct RowStats {
    /// Running maximum of `x·c` (base-2 units), per query.
    m2: Vec<f32>,
    /// Running sum of `2^(x·c − m₂)`, per query.
    l: Vec<f32>,
}

impl RowStats {
    fn new(rp: usize) -> Self {
        RowStats { m2: vec![f32::NEG_INFINITY; rp], l: vec![0.0; rp] }
    }

    /// Folds one key tile into the state. `s_t: [keys, rp]` holds the raw products `x = q·k`
    /// (−∞ where masked) and is overwritten with `p = 2^(x·c − m₂')`; `o_t: [hdp, rp]` (the
    /// unnormalised `Oᵀ`) is rescaled by `α = 2^(m₂ − m₂')`.
    ///
    /// Every query sees key 0, so after the first tile `m₂` is finite and `α`, `p` are never
    /// `2^(−∞ + ∞)`.
    fn update(&mut self, s_t: &mut [f32], o_t: &mut [f32], c: f32) {
        let rp = self.l.len();
        let keys = s_t.len() / rp;
        let cv = f32x8::splat(c);
        for q in (0..rp).step_by(LANES) {
            // Maximum over keys, in four independent chains (max is exact: order is irrelevant).
            let mut mx = [f32x8::splat(f32::NEG_INFINITY); 4];
            for j in 0..keys {
                mx[j % 4] = mx[j % 4].max(load(&s_t[j * rp + q..]));
            }
            let row_max = mx[0].max(mx[1]).max(mx[2].max(mx[3]));
            let m_old = load(&self.m2[q..]);
            let m_new = m_old.max(row_max * cv);
            let alpha = exp2(m_old - m_new);
            // Σ_j p_j in four partial sums combined in a fixed order.
            let mut sum = [f32x8::ZERO; 4];
            for j in 0..keys {
                let s = &mut s_t[j * rp + q..];
                let p = exp2(load(s).mul_add(cv, -m_new));
                store(s, p);
                sum[j % 4] += p;
            }
            let tile_sum = (sum[0] + sum[1]) + (sum[2] + sum[3]);
            let l = load(&self.l[q..]).mul_add(alpha, tile_sum);
            store(&mut self.l[q..], l);
            store(&mut self.m2[q..], m_new);
            for o in o_t.chunks_exact_mut(rp) {
                let scaled = load(&o[q..]) * alpha;
                store(&mut o[q..], scaled);
            }
        }
    }
}

/// Fused attention backward: writes (or, with `accumulate`, adds) `∂qkv: [B, T, 3d]` into
/// `dqkv`, from `qkv`, the forward's `out` and `lse`, and `∂o: [B, T, d]`.
///
/// # Panics
/// If a slice length does not match `dims`.
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_backward(
    qkv: &[f32],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    dims: AttentionDims,
    causal: bool,
    dqkv: &mut [f32],
    accumulate: bool,
) {
    let g = Geometry::new(dims);
    assert_eq!(qkv.len(), g.batch * g.seq * 3 * g.d, "flash backward: qkv size for {dims:?}");
    assert_eq!(dqkv.len(), qkv.len(), "flash backward: dqkv size");
    assert_eq!(out.len(), g.batch * g.seq * g.d, "flash backward: out size");
    assert_eq!(dout.len(), out.len(), "flash backward: dout size");
    assert_eq!(lse.len(), g.batch * g.n_head * g.seq, "flash backward: lse size");
    if g.is_empty() {
        if !accumulate {
            dqkv.fill(0.0);
        }
        return;
    }
    let dst = DisjointOut::new(dqkv);
    (0..g.batch * g.n_head).into_par_iter().for_each(|bh| {
        with_workspace(HeadBuffers::floats(&g), |ws| {
            let mut bufs = HeadBuffers::split(ws, &g);
            let (b, h) = (bh / g.n_head, bh % g.n_head);
            bufs.pack_query_side(qkv, out, &lse[bh * g.seq..][..g.seq], dout, &g, b, h);
            backward_head(&mut bufs, qkv, &g, b, h, causal, &dst, accumulate);
        })
    });
}

/// One head's working memory in the backward, carved out of the thread's workspace.
struct HeadBuffers<'a> {
    /// `Qᵀ` tiles `[nt, hdp, BLOCK]`, `Q` rows `[nt·BLOCK, hdp]`.
    q_t: &'a mut [f32],
    q: &'a mut [f32],
    /// `dOᵀ` tiles and `dO` rows, same shapes.
    do_t: &'a mut [f32],
    d_o: &'a mut [f32],
    /// The `dQ` accumulator `[nt·BLOCK, hdp]`.
    dq: &'a mut [f32],
    /// `D_i = Σ_c dO_ic O_ic` and `L_i·log₂e` per query row.
    delta: &'a mut [f32],
    lse2: &'a mut [f32],
    /// One key tile: `Kᵀ`, `Vᵀ` `[hdp, BLOCK]`, `K` `[BLOCK, hdp]`.
    k_t: &'a mut [f32],
    v_t: &'a mut [f32],
    k: &'a mut [f32],
    /// 64×64 tiles: `P`, `dP` then `dS`, `dSᵀ`; and the `dK`, `dV` accumulators `[BLOCK, hdp]`.
    p: &'a mut [f32],
    ds: &'a mut [f32],
    ds_t: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
}

impl<'a> HeadBuffers<'a> {
    /// The sizes of the buffers above, in order.
    fn sizes(g: &Geometry) -> [usize; 15] {
        let (rows, tile, sq) = (g.nt * BLOCK * g.hdp, BLOCK * g.hdp, BLOCK * BLOCK);
        let per_row = g.nt * BLOCK;
        [rows, rows, rows, rows, rows, per_row, per_row, tile, tile, tile, sq, sq, sq, tile, tile]
    }

    fn floats(g: &Geometry) -> usize {
        Self::sizes(g).iter().sum()
    }

    fn split(ws: &'a mut [f32], g: &Geometry) -> Self {
        let [q_t, q, do_t, d_o, dq, delta, lse2, k_t, v_t, k, p, ds, ds_t, dk, dv] =
            split_parts(ws, Self::sizes(g));
        HeadBuffers { q_t, q, do_t, d_o, dq, delta, lse2, k_t, v_t, k, p, ds, ds_t, dk, dv }
    }

    /// Packs the per-query operands of head (b, h), computes `D` and `L·log₂e`, zeroes `dQ`.
    #[allow(clippy::too_many_arguments)]
    fn pack_query_side(
        &mut self,
        qkv: &[f32],
        out: &[f32],
        lse: &[f32],
        dout: &[f32],
        g: &Geometry,
        b: usize,
        h: usize,
    ) {
        let queries = HeadRows { src: qkv, offset: g.qkv_offset(b, h, 0), stride: 3 * g.d };
        let grads = HeadRows { src: dout, offset: g.out_offset(b, h), stride: g.d };
        let outputs = HeadRows { src: out, offset: g.out_offset(b, h), stride: g.d };
        let tile = g.hdp * BLOCK;
        for qt in 0..g.nt {
            pack_transposed(queries, qt * BLOCK, BLOCK, BLOCK, g, &mut self.q_t[qt * tile..]);
            pack_transposed(grads, qt * BLOCK, BLOCK, BLOCK, g, &mut self.do_t[qt * tile..]);
        }
        pack_rows(queries, 0, g.nt * BLOCK, g, self.q);
        pack_rows(grads, 0, g.nt * BLOCK, g, self.d_o);
        self.dq.fill(0.0);
        self.delta.fill(0.0);
        self.lse2.fill(0.0);
        for (t, (delta, lse2)) in self.delta.iter_mut().zip(self.lse2.iter_mut()).enumerate() {
            if t < g.seq {
                let (o, d_o) = (outputs.row(t, g.hd), grads.row(t, g.hd));
                *delta = o.iter().zip(d_o).fold(0.0, |acc, (&o, &d)| o.mul_add(d, acc));
                *lse2 = lse[t] * LOG2_E;
            }
        }
    }
}

/// Cuts `ws` into consecutive parts of the given sizes.
fn split_parts<const N: usize>(mut ws: &mut [f32], sizes: [usize; N]) -> [&mut [f32]; N] {
    sizes.map(|n| {
        let (part, rest) = std::mem::take(&mut ws).split_at_mut(n);
        ws = rest;
        part
    })
}

/// One head's backward (see the module doc), writing its columns of `∂qkv` through `dst`.
#[allow(clippy::too_many_arguments)]
fn backward_head(
    x: &mut HeadBuffers,
    qkv: &[f32],
    g: &Geometry,
    b: usize,
    h: usize,
    causal: bool,
    dst: &DisjointOut,
    accumulate: bool,
) {
    let hdp = g.hdp;
    let c = LOG2_E * g.inv_sqrt_hd();
    let scale = f32x8::splat(g.inv_sqrt_hd());
    let stride = 3 * g.d;
    let key_rows = HeadRows { src: qkv, offset: g.qkv_offset(b, h, 1), stride };
    let value_rows = HeadRows { src: qkv, offset: g.qkv_offset(b, h, 2), stride };
    for kt in 0..g.nt {
        let c0 = kt * BLOCK;
        let keys = g.tile_rows(kt);
        // Key columns of the 64-wide tiles are padded to a multiple of 8 (masked to P = 0).
        let kp = round8(keys);
        pack_transposed(key_rows, c0, keys, BLOCK, g, x.k_t);
        pack_transposed(value_rows, c0, keys, BLOCK, g, x.v_t);
        pack_rows(key_rows, c0, BLOCK, g, x.k);
        let first_qt = if causal { kt } else { 0 };
        for qt in first_qt..g.nt {
            let (r0, rows, first) = (qt * BLOCK, g.tile_rows(qt), qt == first_qt);
            let q_t = &x.q_t[qt * hdp * BLOCK..][..hdp * BLOCK];
            let do_t = &x.do_t[qt * hdp * BLOCK..][..hdp * BLOCK];
            let q = &x.q[r0 * hdp..][..rows * hdp];
            let d_o = &x.d_o[r0 * hdp..][..rows * hdp];
            // P = 2^(x·c − L·log₂e), then 0 where masked.
            tile_gemm((rows, kp, hdp), q_t, BLOCK, x.k_t, BLOCK, x.p, BLOCK, false);
            for (i, p_row) in x.p.chunks_exact_mut(BLOCK).take(rows).enumerate() {
                let neg_lse = f32x8::splat(-x.lse2[r0 + i]);
                for ch in p_row[..kp].chunks_exact_mut(LANES) {
                    store(ch, exp2(load(ch).mul_add(f32x8::splat(c), neg_lse)));
                }
                // Causal: query r0 + i sees keys up to itself (r0 ≥ c0 on these tiles).
                let visible = if causal { keys.min(r0 + i + 1 - c0) } else { keys };
                p_row[visible..kp].fill(0.0);
            }
            // dV_j += Pᵀ dO_i
            tile_gemm((keys, hdp, rows), x.p, BLOCK, d_o, hdp, x.dv, hdp, !first);
            // dP = dO_i V_jᵀ, then dS = P ∘ (dP − D) / sqrt(hd) in place.
            tile_gemm((rows, kp, hdp), do_t, BLOCK, x.v_t, BLOCK, x.ds, BLOCK, false);
            let p_rows = x.p.chunks_exact(BLOCK);
            for (i, (ds_row, p_row)) in
                x.ds.chunks_exact_mut(BLOCK).zip(p_rows).take(rows).enumerate()
            {
                let delta = f32x8::splat(x.delta[r0 + i]);
                for (d, p) in ds_row[..kp].chunks_exact_mut(LANES).zip(p_row.chunks_exact(LANES)) {
                    store(d, load(p) * (load(d) - delta) * scale);
                }
            }
            // dK_j += dSᵀ Q_i      dQ_i += dS K_j   (dS transposed so keys are its rows)
            tile_gemm((keys, hdp, rows), x.ds, BLOCK, q, hdp, x.dk, hdp, !first);
            transpose(x.ds, BLOCK, (round8(rows), kp), x.ds_t, BLOCK);
            let dq = &mut x.dq[r0 * hdp..][..rows * hdp];
            tile_gemm((rows, hdp, keys), x.ds_t, BLOCK, x.k, hdp, dq, hdp, true);
        }
        for j in 0..keys {
            let t = (b * g.seq + c0 + j) * stride + h * g.hd;
            // SAFETY: the ∂k and ∂v columns of head (b, h) belong to this task alone.
            unsafe {
                dst.put(t + g.d, &x.dk[j * hdp..][..g.hd], accumulate);
                dst.put(t + 2 * g.d, &x.dv[j * hdp..][..g.hd], accumulate);
            }
        }
    }
    for t in 0..g.seq {
        // SAFETY: the ∂q columns of head (b, h) belong to this task alone.
        unsafe {
            dst.put((b * g.seq + t) * stride + h * g.hd, &x.dq[t * hdp..][..g.hd], accumulate)
        };
    }
}

/// Floats the forward allocates besides its outputs `o` and `lse`: the packed `Kᵀ` and `V` of
/// every head plus, per query-tile task, `Qᵀ`, `Sᵀ`, `Oᵀ` and the row statistics (counted as if
/// all tasks ran at once). Linear in `T`: no `T×T` buffer exists.
pub fn forward_workspace_floats(dims: AttentionDims) -> usize {
    let g = Geometry::new(dims);
    let per_tile = 2 * g.hdp * BLOCK + BLOCK * BLOCK + 2 * BLOCK + g.hd;
    g.batch * g.n_head * (2 * g.nt * BLOCK * g.hdp + g.nt * per_tile)
}

/// Floats the backward allocates besides its output `∂qkv`: one head's buffers per task (see
/// `HeadBuffers`), counted as if all `B·H` tasks ran at once. Linear in `T`.
pub fn backward_workspace_floats(dims: AttentionDims) -> usize {
    let g = Geometry::new(dims);
    g.batch * g.n_head * HeadBuffers::floats(&g)
}
