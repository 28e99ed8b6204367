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
//! so the work is ≈ half of the bidirectional case; on a diagonal tile the products also skip
//! the quarter where queries `0..32` meet keys `32..64`. Exponentials run in base 2 with the scale
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
//! Five tile products per tile pair (the forward has two), through `simd::tile_gemm`, which
//! computes `XᵀY` from two operands stored with the inner dimension as rows (one uses its
//! row-major twin `tile_gemm_nn`). The operands are packed once per call, head or tile in the
//! orientation each product needs:
//!
//! | product | X `[inner, m]` | Y `[inner, n]` | C |
//! |---|---|---|---|
//! | forward `Sᵀ` | `Kᵀ` tile `[hd, keys]` | `Qᵀ` tile `[hd, queries]` | `Sᵀ [keys, queries]` |
//! | forward `Oᵀ += Vᵀ Pᵀ` | `V` tile `[keys, hd]` | `Pᵀ [keys, queries]` | `Oᵀ [hd, queries]` |
//! | `S` | `Qᵀ` tile | `Kᵀ` tile | `S [queries, keys]` |
//! | `dV += Pᵀ dO` | `P [queries, keys]` | `dO` rows `[queries, hd]` | `dV [keys, hd]` |
//! | `dP = dO Vᵀ` | `dOᵀ` tile | `Vᵀ` tile | `dP [queries, keys]` |
//! | `dK += dSᵀ Q` | `dS [queries, keys]` | `Q` rows | `dK [keys, hd]` |
//! | `dQ += dS K` | `dS` read row-wise (`simd::tile_gemm_nn`) | `K` rows | `dQ [queries, hd]` |
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
//! The products read one head's rows of `Q`, `K`, `V` and `dO` as views with a row stride
//! (`HeadRows`). Where the shapes need no padding (`hd` a multiple of 8, `T` of 64) and the
//! operands are f32, those views are the inputs themselves: head `h`'s `q` rows are columns
//! `h·hd ..` of `qkv`, row stride `3d`. Otherwise the inputs are first copied, row by row, into
//! zero-padded per-head blocks `[T', hdp]` (`T'` = `T` rounded up to 64), rounded there for
//! bf16. Reading in place computes the same products of the same values in the same order and
//! saves the copy: on the emoji preset's shape (`B, H, T, hd` = 32, 4, 256, 32, one thread,
//! medians of five alternating runs) the forward went from 11.8 to 10.8 ms, forward and backward
//! from 34.3 to 32.4 ms.
//!
//! The forward keeps every head's `Kᵀ` tiles (`T'·hdp` floats per head) and, if packed, its
//! `Q`, `K`, `V` rows (`3·T'·hdp`); the backward every head's `D` and, if packed, its `Q`, `K`,
//! `V`, `dO` rows, plus, per head in flight, `Qᵀ`, `dOᵀ`, `dQ` (`3·T'·hdp`) and one key tile of
//! `Kᵀ`, `Vᵀ`. Everything else is 64-row tiles. No `T×T` buffer exists;
//! [`forward_workspace_floats`] and [`backward_workspace_floats`] state the totals when packed
//! (an upper bound otherwise). These buffers live in per-thread workspaces reused across calls
//! (64-byte aligned; at most 64 MiB kept per thread), so a training step does not page-fault
//! megabytes of fresh memory in every attention call.
//!
//! Head dimensions that are not a multiple of 8 are zero-padded to one (`hdp`): zero columns add
//! nothing to `q·k` and produce output columns that are dropped.

use super::bf16::{round_bf16, round_in_place};
use super::simd::{copy_short, dot, exp2, load, store, tile_gemm, tile_gemm_nn, transpose, LANES};
use super::{dpbf16, Operands};
use crate::ops::AttentionDims;
use rayon::prelude::*;
use std::cell::RefCell;
use std::f32::consts::{LN_2, LOG2_E};
use std::thread::LocalKey;
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
    /// What the products multiply: f32 values, or values rounded to bf16 (see `bf16`).
    operands: Operands,
    /// Whether the head rows are read where they are, in `qkv` and `∂o`, instead of packed.
    in_place: bool,
}

impl Geometry {
    fn new(dims: AttentionDims, operands: Operands) -> Self {
        Geometry {
            operands,
            batch: dims.batch,
            n_head: dims.n_head,
            seq: dims.seq,
            hd: dims.head_dim,
            hdp: round8(dims.head_dim),
            d: dims.d(),
            nt: dims.seq.div_ceil(BLOCK),
            // Packing would add no zero padding (`hd` a multiple of 8, `T` of BLOCK) and round
            // nothing (f32 operands): the products then read the same values in the same order.
            in_place: !operands.is_bf16()
                && dims.head_dim.is_multiple_of(LANES)
                && dims.seq.is_multiple_of(BLOCK),
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

    /// Whether the products' operands are rounded to bf16.
    fn bf16(&self) -> bool {
        self.operands.is_bf16()
    }

    /// Rounds a tile's operand to bf16 if the products take bf16.
    fn round(&self, xs: &mut [f32]) {
        if self.bf16() {
            xs.iter_mut().for_each(|x| *x = round_bf16(*x));
        }
    }

    /// `simd::tile_gemm`, or on the AVX512 bf16 path its `vdpbf16ps` twin (the same bits).
    #[allow(clippy::too_many_arguments)]
    fn tile_gemm(
        &self,
        dims: (usize, usize, usize),
        x: &[f32],
        ldx: usize,
        y: &[f32],
        ldy: usize,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        match self.operands {
            Operands::Bf16Avx512 => dpbf16::tile_gemm(dims, x, ldx, y, ldy, c, ldc, accumulate),
            _ => tile_gemm(dims, x, ldx, y, ldy, c, ldc, accumulate),
        }
    }

    /// `simd::tile_gemm_nn`, or its `vdpbf16ps` twin, as [`Geometry::tile_gemm`].
    #[allow(clippy::too_many_arguments)]
    fn tile_gemm_nn(
        &self,
        dims: (usize, usize, usize),
        a: &[f32],
        lda: usize,
        y: &[f32],
        ldy: usize,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        match self.operands {
            Operands::Bf16Avx512 => dpbf16::tile_gemm_nn(dims, a, lda, y, ldy, c, ldc, accumulate),
            _ => tile_gemm_nn(dims, a, lda, y, ldy, c, ldc, accumulate),
        }
    }

    /// `1 / sqrt(hd)`, the logit scale.
    fn inv_sqrt_hd(&self) -> f32 {
        1.0 / (self.hd as f32).sqrt()
    }
}

thread_local! {
    /// Per-thread memory reused across calls (each grows to the largest size used, up to
    /// `RETAIN_MAX`): `CALL_WORKSPACE` holds the packed inputs of a whole call (on the calling
    /// thread), `TASK_WORKSPACE` the buffers of one task (forward query tile or backward head).
    /// Tasks never start parallel work while they hold `TASK_WORKSPACE`.
    static CALL_WORKSPACE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static TASK_WORKSPACE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Workspace slices start on a 64-byte boundary (16 floats), so that 32-byte vector loads of
/// rows whose lengths are multiples of 8 never straddle a cache line.
const ALIGN: usize = 16;

/// The largest workspace a thread keeps between calls (64 MiB). Bigger requests get fresh
/// memory each time; their page faults are small next to the O(T²) work of such calls.
const RETAIN_MAX: usize = 16 << 20;

/// Runs `f` on `len` floats of one of this thread's workspaces (contents unspecified: callers
/// overwrite what they read). A nested use on the same thread — possible when a rayon thread
/// waiting inside one attention call steals a task of another — gets fresh memory instead.
fn with_workspace<R>(
    which: &'static LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let aligned = |buf: &mut [f32]| {
        let offset = buf.as_ptr().align_offset(ALIGN * 4).min(ALIGN);
        f(&mut buf[offset..offset + len])
    };
    if len + ALIGN > RETAIN_MAX {
        return aligned(&mut vec![0.0; len + ALIGN]);
    }
    which.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len + ALIGN {
                buf.resize(len + ALIGN, 0.0);
            }
            aligned(&mut buf)
        }
        Err(_) => aligned(&mut vec![0.0; len + ALIGN]),
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
            copy_short(dst, src);
        }
    }
}

/// Copies column blocks of every row of `src: [B, T, width]` into per-head rows: part `p`
/// (columns `parts[p] + h·hd ..` for head `h`) goes to `dst: [parts, B·H, nt·BLOCK, hdp]`,
/// zero past `T` and past `hd`.
///
/// One task per (batch element, tile) reads its rows front to back — far friendlier to the
/// prefetchers than gathering one head's column block down the rows.
fn pack_heads(src: &[f32], width: usize, parts: &[usize], g: &Geometry, dst: &mut [f32]) {
    let head_len = g.nt * BLOCK * g.hdp;
    let part_len = g.batch * g.n_head * head_len;
    assert_eq!(dst.len(), parts.len() * part_len, "pack_heads: destination size");
    let out = DisjointOut::new(dst);
    (0..g.batch * g.nt).into_par_iter().for_each(|task| {
        let (b, tile) = (task / g.nt, task % g.nt);
        let zeros = vec![0.0; g.hdp];
        for t in tile * BLOCK..(tile + 1) * BLOCK {
            for (p, &col) in parts.iter().enumerate() {
                for h in 0..g.n_head {
                    let at = p * part_len + (b * g.n_head + h) * head_len + t * g.hdp;
                    // SAFETY: row t of head (b, h) of every part belongs to this task alone.
                    unsafe {
                        if t < g.seq {
                            let row = &src[(b * g.seq + t) * width + col + h * g.hd..][..g.hd];
                            out.put(at, row, false);
                            if g.hdp > g.hd {
                                out.put(at + g.hd, &zeros[g.hd..], false);
                            }
                        } else {
                            out.put(at, &zeros, false);
                        }
                    }
                }
            }
        }
    });
}

/// One head's rows of `Q`, `K`, `V` or `dO`: row `t` (`hdp` values) starts at `data[t·ld]`.
#[derive(Clone, Copy)]
struct HeadRows<'a> {
    data: &'a [f32],
    ld: usize,
}

impl<'a> HeadRows<'a> {
    /// Row `t` and the rows after it (an operand view with row stride `ld`).
    fn from(self, t: usize) -> &'a [f32] {
        &self.data[t * self.ld..]
    }

    /// 64-row tile `i` transposed into `tile: [hdp, BLOCK]`.
    fn transpose_tile(self, hdp: usize, i: usize, tile: &mut [f32]) {
        transpose(self.from(i * BLOCK), self.ld, (BLOCK, hdp), tile, BLOCK);
    }
}

/// Where a call finds every head's rows of one part (`Q`, `K`, `V` of `qkv`, or `dO`).
#[derive(Clone, Copy)]
enum Part<'a> {
    /// Columns `col + h·hd ..` of `src: [B, T, width]`, read in place
    /// (`Geometry::in_place`).
    InPlace { src: &'a [f32], width: usize, col: usize },
    /// The packed copy `[B·H, nt·BLOCK, hdp]` made by [`pack_heads`].
    Packed(&'a [f32]),
}

impl<'a> Part<'a> {
    /// The rows of head `bh = b·H + h`.
    fn head(self, g: &Geometry, bh: usize) -> HeadRows<'a> {
        match self {
            Part::InPlace { src, width, col } => {
                let (b, h) = (bh / g.n_head, bh % g.n_head);
                HeadRows { data: &src[b * g.seq * width + col + h * g.hd..], ld: width }
            }
            Part::Packed(rows) => {
                let head_len = g.nt * BLOCK * g.hdp;
                HeadRows { data: &rows[bh * head_len..][..head_len], ld: g.hdp }
            }
        }
    }
}

/// The parts of `src: [B, T, width]` starting at columns `cols`: read in place, or packed into
/// `ws` (rounded to bf16 if the products take bf16), which must then hold
/// `cols.len()·B·H·nt·BLOCK·hdp` floats.
fn head_parts<'a, const N: usize>(
    src: &'a [f32],
    width: usize,
    cols: [usize; N],
    g: &Geometry,
    ws: &'a mut [f32],
) -> [Part<'a>; N] {
    if g.in_place {
        return cols.map(|col| Part::InPlace { src, width, col });
    }
    pack_heads(src, width, &cols, g, ws);
    if g.bf16() {
        round_in_place(ws);
    }
    let part_len = ws.len() / N;
    let ws: &'a [f32] = ws;
    std::array::from_fn(|p| Part::Packed(&ws[p * part_len..][..part_len]))
}

/// Floats [`head_parts`] packs `parts` parts into (0 when it reads them in place).
fn packed_floats(g: &Geometry, parts: usize) -> usize {
    if g.in_place {
        0
    } else {
        parts * g.batch * g.n_head * g.nt * BLOCK * g.hdp
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

/// One head's forward operands: `Q`, `V` rows (`nt·BLOCK` of them), `Kᵀ` tiles
/// `[nt, hdp, BLOCK]`.
struct ForwardHead<'a> {
    q: HeadRows<'a>,
    k_t: &'a [f32],
    v: HeadRows<'a>,
}

/// Fused attention forward: `o: [B, T, d]` and the per-row logsumexp from `qkv: [B, T, 3d]`.
///
/// # Panics
/// If `qkv.len()` is not `B·T·3d`.
pub fn flash_attention_forward(qkv: &[f32], dims: AttentionDims, causal: bool) -> FlashForward {
    flash_forward(qkv, dims, causal, Operands::F32)
}

/// [`flash_attention_forward`] with the products' operands as given: with bf16, `Q`, `K`, `V`
/// are rounded once packed and each tile of `P` before `P V` (the row sums `l` use `P`
/// unrounded), every task flushing subnormals.
///
/// # Panics
/// If `qkv.len()` is not `B·T·3d`.
pub fn flash_forward(
    qkv: &[f32],
    dims: AttentionDims,
    causal: bool,
    operands: Operands,
) -> FlashForward {
    forward_on(qkv, &Geometry::new(dims, operands), causal)
}

/// [`flash_forward`] on the sizes (and the choice of packing) in `g`.
fn forward_on(qkv: &[f32], g: &Geometry, causal: bool) -> FlashForward {
    assert_eq!(qkv.len(), g.batch * g.seq * 3 * g.d, "flash forward: qkv size for {g:?}");
    let mut out = vec![0.0; g.batch * g.seq * g.d];
    let mut lse = vec![0.0; g.batch * g.n_head * g.seq];
    if g.is_empty() {
        return FlashForward { out, lse };
    }
    let n_heads = g.batch * g.n_head;
    let head_len = g.nt * BLOCK * g.hdp;
    // Workspace: the Kᵀ tiles of every head, then (if packed) their Q, K, V rows.
    with_workspace(&CALL_WORKSPACE, n_heads * head_len + packed_floats(g, 3), |ws| {
        let (k_t, rows) = ws.split_at_mut(n_heads * head_len);
        let [q, k, v] = head_parts(qkv, 3 * g.d, [0, g.d, 2 * g.d], g, rows);
        let tiles = k_t.par_chunks_mut(g.hdp * BLOCK).enumerate();
        tiles.for_each(|(i, tile)| k.head(g, i / g.nt).transpose_tile(g.hdp, i % g.nt, tile));
        let k_t: &[f32] = k_t;
        let (o_out, lse_out) = (DisjointOut::new(&mut out), DisjointOut::new(&mut lse));
        (0..n_heads * g.nt).into_par_iter().for_each(|task| {
            let (bh, qt) = (task / g.nt, task % g.nt);
            let head = ForwardHead {
                q: q.head(g, bh),
                k_t: &k_t[bh * head_len..][..head_len],
                v: v.head(g, bh),
            };
            g.operands.run(|| forward_tile(&head, g, bh, qt, causal, &o_out, &lse_out));
        });
    });
    FlashForward { out, lse }
}

/// Half a tile. On the causal diagonal, queries `0..HALF` of a tile see only keys `0..HALF`:
/// the products skip that all-masked quarter.
const HALF: usize = BLOCK / 2;

/// One query tile `qt` of head `bh`: writes its rows of `o` and `lse`.
fn forward_tile(
    x: &ForwardHead,
    g: &Geometry,
    bh: usize,
    qt: usize,
    causal: bool,
    o_out: &DisjointOut,
    lse_out: &DisjointOut,
) {
    let (hdp, rows) = (g.hdp, g.tile_rows(qt));
    // Queries sit in vector lanes: rp = rows rounded up to 8 (the extra lanes are zero queries).
    let rp = round8(rows);
    let sizes = [hdp * rp, BLOCK * rp, hdp * rp, rp * hdp, rp, rp];
    with_workspace(&TASK_WORKSPACE, sizes.iter().sum(), |ws| {
        let [q_t, s_t, o_t, o, m2, l] = split_parts(ws, sizes);
        transpose(x.q.from(qt * BLOCK), x.q.ld, (rp, hdp), q_t, rp);
        o_t.fill(0.0);
        m2.fill(f32::NEG_INFINITY);
        l.fill(0.0);
        let mut stats = RowStats { m2, l };
        let key_tiles = if causal { qt + 1 } else { g.nt };
        for kt in 0..key_tiles {
            attend_key_tile(x, g, (qt, rows, rp), kt, causal, q_t, s_t, o_t, &mut stats);
        }
        // o = Oᵀ / l, transposed back into rows; L = (m₂ + log₂ l)·ln 2.
        for q in (0..rp).step_by(LANES) {
            let l = load(&stats.l[q..]);
            for o in o_t.chunks_exact_mut(rp) {
                let normalised = load(&o[q..]) / l;
                store(&mut o[q..], normalised);
            }
        }
        transpose(o_t, rp, (hdp, rp), o, hdp);
        let (b, h) = (bh / g.n_head, bh % g.n_head);
        for (i, o_row) in o.chunks_exact(hdp).take(rows).enumerate() {
            let t = qt * BLOCK + i;
            let lse = (stats.m2[i] + stats.l[i].log2()) * LN_2;
            // SAFETY: row t of head (b, h) belongs to this task alone.
            unsafe {
                o_out.put(g.out_offset(b, h) + t * g.d, &o_row[..g.hd], false);
                lse_out.put(bh * g.seq + t, &[lse], false);
            }
        }
    })
}

/// Folds key tile `kt` into query tile `qt` (`rows` queries in `rp` lanes): `Sᵀ = K Qᵀ`, the
/// online-softmax update, `Oᵀ += Vᵀ Pᵀ`.
#[allow(clippy::too_many_arguments)]
fn attend_key_tile(
    x: &ForwardHead,
    g: &Geometry,
    (qt, rows, rp): (usize, usize, usize),
    kt: usize,
    causal: bool,
    q_t: &[f32],
    s_t: &mut [f32],
    o_t: &mut [f32],
    stats: &mut RowStats,
) {
    let (hdp, c0) = (g.hdp, kt * BLOCK);
    let diagonal = causal && kt == qt;
    // Keys these queries can see at all: the tile (or what the sequence has of it), and, on
    // the causal diagonal, none past the last query.
    let keys = if diagonal { rows } else { g.tile_rows(kt) };
    let split = diagonal && rows > HALF;
    let k_t = &x.k_t[kt * hdp * BLOCK..][..hdp * BLOCK];
    if split {
        g.tile_gemm((HALF, rp, hdp), k_t, BLOCK, q_t, rp, s_t, rp, false);
        // Keys HALF.. against query lanes HALF.. only.
        let (k_lower, q_right) = (&k_t[HALF..], &q_t[HALF..]);
        let s_lower = &mut s_t[HALF * rp + HALF..];
        g.tile_gemm((keys - HALF, rp - HALF, hdp), k_lower, BLOCK, q_right, rp, s_lower, rp, false);
    } else {
        g.tile_gemm((keys, rp, hdp), k_t, BLOCK, q_t, rp, s_t, rp, false);
    }
    if diagonal {
        // Key c0 + j is hidden from queries c0 + i < c0 + j, i.e. lanes i < j. This also
        // covers the quarter a split product skipped.
        for (j, row) in s_t.chunks_exact_mut(rp).take(keys).enumerate() {
            row[..j.min(rp)].fill(f32::NEG_INFINITY);
        }
    }
    stats.update(&mut s_t[..keys * rp], o_t, LOG2_E * g.inv_sqrt_hd());
    g.round(&mut s_t[..keys * rp]);
    let (v, ldv) = (x.v.from(c0), x.v.ld);
    if split {
        // Query lanes 0..HALF see keys 0..HALF only.
        g.tile_gemm((hdp, HALF, HALF), v, ldv, s_t, rp, o_t, rp, true);
        g.tile_gemm((hdp, rp - HALF, keys), v, ldv, &s_t[HALF..], rp, &mut o_t[HALF..], rp, true);
    } else {
        g.tile_gemm((hdp, rp, keys), v, ldv, s_t, rp, o_t, rp, true);
    }
}

/// The online-softmax state of up to 64 queries, one per vector lane.
struct RowStats<'a> {
    /// Running maximum of `x·c` (base-2 units), per query (starts at −∞).
    m2: &'a mut [f32],
    /// Running sum of `2^(x·c − m₂)`, per query (starts at 0).
    l: &'a mut [f32],
}

impl RowStats<'_> {
    /// Folds one key tile into the state. `s_t: [keys, rp]` holds the raw products `x = q·k`
    /// (−∞ where masked) and is overwritten with `p = 2^(x·c − m₂')`; `o_t: [hdp, rp]` (the
    /// unnormalised `Oᵀ`) is rescaled by `α = 2^(m₂ − m₂')`.
    ///
    /// Every query sees key 0, so after the first tile `m₂` is finite and `α`, `p` are never
    /// `2^(−∞ + ∞)`.
    fn update(&mut self, s_t: &mut [f32], o_t: &mut [f32], c: f32) {
        let rp = self.l.len();
        let cv = f32x8::splat(c);
        for q in (0..rp).step_by(LANES) {
            let m_old = load(&self.m2[q..]);
            let m_new = m_old.max(column_max(s_t, rp, q) * cv);
            let alpha = exp2(m_old - m_new);
            let l = load(&self.l[q..]).mul_add(alpha, exp_column(s_t, rp, q, cv, -m_new));
            store(&mut self.l[q..], l);
            store(&mut self.m2[q..], m_new);
            // Rescaling by exactly 1 changes nothing: skip it once the maxima have settled.
            if !alpha.simd_eq(f32x8::ONE).all() {
                for o in o_t.chunks_exact_mut(rp) {
                    let scaled = load(&o[q..]) * alpha;
                    store(&mut o[q..], scaled);
                }
            }
        }
    }
}

/// `p = 2^(x·c − m₂)` in place for the 8 lanes at column `q` of every row of `s_t: [keys, rp]`;
/// returns `Σ p` summed in two chains (even and odd keys) added last.
fn exp_column(s_t: &mut [f32], rp: usize, q: usize, c: f32x8, neg_m: f32x8) -> f32x8 {
    let mut sum = [f32x8::ZERO; 2];
    let mut pairs = s_t.chunks_exact_mut(2 * rp);
    for pair in &mut pairs {
        for (k, acc) in sum.iter_mut().enumerate() {
            let x = &mut pair[k * rp + q..];
            let p = exp2(load(x).mul_add(c, neg_m));
            store(x, p);
            *acc += p;
        }
    }
    for row in pairs.into_remainder().chunks_exact_mut(rp) {
        let p = exp2(load(&row[q..]).mul_add(c, neg_m));
        store(&mut row[q..], p);
        sum[0] += p;
    }
    sum[0] + sum[1]
}

/// The maximum over the rows of `s_t: [keys, rp]` of the 8 lanes at column `q`, in two chains.
/// NaN propagates (`fast_max` returns its argument when either is NaN).
fn column_max(s_t: &[f32], rp: usize, q: usize) -> f32x8 {
    let mut mx = [f32x8::splat(f32::NEG_INFINITY); 2];
    let mut pairs = s_t.chunks_exact(2 * rp);
    for pair in &mut pairs {
        mx[0] = mx[0].fast_max(load(&pair[q..]));
        mx[1] = mx[1].fast_max(load(&pair[rp + q..]));
    }
    for row in pairs.remainder().chunks_exact(rp) {
        mx[0] = mx[0].fast_max(load(&row[q..]));
    }
    mx[0].fast_max(mx[1])
}

/// `D[bh, t] = Σ_c o[b, t, h·hd + c] · ∂o[b, t, h·hd + c]` into `delta: [B·H, nt·BLOCK]` (0 past
/// `T`); one task per (batch element, tile), reading rows front to back.
fn row_dots(out: &[f32], dout: &[f32], g: &Geometry, delta: &mut [f32]) {
    let tp = g.nt * BLOCK;
    let dst = DisjointOut::new(delta);
    (0..g.batch * g.nt).into_par_iter().for_each(|task| {
        let (b, tile) = (task / g.nt, task % g.nt);
        for t in tile * BLOCK..(tile + 1) * BLOCK {
            for h in 0..g.n_head {
                let d = if t < g.seq {
                    let at = g.out_offset(b, h) + t * g.d;
                    dot(&out[at..][..g.hd], &dout[at..][..g.hd])
                } else {
                    0.0
                };
                // SAFETY: entry (b·H + h, t) belongs to this task alone.
                unsafe { dst.put((b * g.n_head + h) * tp + t, &[d], false) };
            }
        }
    });
}

/// Fused attention backward: writes (or, with `accumulate`, adds) `∂qkv: [B, T, 3d]` into
/// `dqkv`, from `qkv`, the forward's `out` and `lse`, and `∂o: [B, T, d]`, the products'
/// operands as given: with bf16, `Q`, `K`, `V` and `dO` are rounded once packed, each
/// recomputed tile of `P` once computed (it then also enters `dS`), and each tile of `dS`
/// before its products; `D = rowsum(dO ∘ O)` stays f32.
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
    operands: Operands,
    dqkv: &mut [f32],
    accumulate: bool,
) {
    let g = Geometry::new(dims, operands);
    backward_on((qkv, out, lse, dout), &g, causal, dqkv, accumulate);
}

/// [`flash_attention_backward`] on the sizes (and the choice of packing) in `g`.
fn backward_on(
    (qkv, out, lse, dout): (&[f32], &[f32], &[f32], &[f32]),
    g: &Geometry,
    causal: bool,
    dqkv: &mut [f32],
    accumulate: bool,
) {
    assert_eq!(qkv.len(), g.batch * g.seq * 3 * g.d, "flash backward: qkv size for {g:?}");
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
    let n_heads = g.batch * g.n_head;
    let tp = g.nt * BLOCK;
    // Workspace: D, then (if packed) the Q, K, V and dO rows of every head.
    let (qkv_len, do_len) = (packed_floats(g, 3), packed_floats(g, 1));
    with_workspace(&CALL_WORKSPACE, n_heads * tp + qkv_len + do_len, |ws| {
        let (delta, rows) = ws.split_at_mut(n_heads * tp);
        let (qkv_rows, do_rows) = rows.split_at_mut(qkv_len);
        let [q, k, v] = head_parts(qkv, 3 * g.d, [0, g.d, 2 * g.d], g, qkv_rows);
        let [d_o] = head_parts(dout, g.d, [0], g, do_rows);
        row_dots(out, dout, g, delta);
        let delta: &[f32] = delta;
        let dst = DisjointOut::new(dqkv);
        (0..n_heads).into_par_iter().for_each(|bh| {
            let inputs = BackwardHead {
                q: q.head(g, bh),
                k: k.head(g, bh),
                v: v.head(g, bh),
                d_o: d_o.head(g, bh),
                delta: &delta[bh * tp..][..tp],
                lse: &lse[bh * g.seq..][..g.seq],
            };
            with_workspace(&TASK_WORKSPACE, HeadBuffers::floats(g), |ws| {
                let mut bufs = HeadBuffers::split(ws, g);
                g.operands
                    .run(|| backward_head(&inputs, &mut bufs, g, bh, causal, &dst, accumulate));
            })
        });
    });
}

/// One head's backward inputs: `Q`, `K`, `V`, `dO` rows (`nt·BLOCK` of them), `D` per row
/// (`[nt·BLOCK]`) and the forward's logsumexp (`[T]`).
struct BackwardHead<'a> {
    q: HeadRows<'a>,
    k: HeadRows<'a>,
    v: HeadRows<'a>,
    d_o: HeadRows<'a>,
    delta: &'a [f32],
    lse: &'a [f32],
}

/// One head's working memory in the backward, carved out of the thread's task workspace.
struct HeadBuffers<'a> {
    /// `Qᵀ` and `dOᵀ` tiles `[nt, hdp, BLOCK]`.
    q_t: &'a mut [f32],
    do_t: &'a mut [f32],
    /// The `dQ` accumulator `[nt·BLOCK, hdp]`.
    dq: &'a mut [f32],
    /// `L_i · log₂e` per query row: the logsumexp in the base-2 units of `simd::exp2`.
    lse2: &'a mut [f32],
    /// One key tile of `Kᵀ`, `Vᵀ` `[hdp, BLOCK]`.
    k_t: &'a mut [f32],
    v_t: &'a mut [f32],
    /// 64×64 tiles: `P`, `dP` then `dS`; and the `dK`, `dV` accumulators `[BLOCK, hdp]`.
    p: &'a mut [f32],
    ds: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
}

impl<'a> HeadBuffers<'a> {
    /// The sizes of the buffers above, in field order.
    fn sizes(g: &Geometry) -> [usize; 10] {
        let (rows, tile, sq) = (g.nt * BLOCK * g.hdp, BLOCK * g.hdp, BLOCK * BLOCK);
        [rows, rows, rows, g.nt * BLOCK, tile, tile, sq, sq, tile, tile]
    }

    fn floats(g: &Geometry) -> usize {
        Self::sizes(g).iter().sum()
    }

    fn split(ws: &'a mut [f32], g: &Geometry) -> Self {
        let [q_t, do_t, dq, lse2, k_t, v_t, p, ds, dk, dv] = split_parts(ws, Self::sizes(g));
        HeadBuffers { q_t, do_t, dq, lse2, k_t, v_t, p, ds, dk, dv }
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
fn backward_head(
    x: &BackwardHead,
    buf: &mut HeadBuffers,
    g: &Geometry,
    bh: usize,
    causal: bool,
    dst: &DisjointOut,
    accumulate: bool,
) {
    let hdp = g.hdp;
    for (rows, tiles) in [(x.q, &mut *buf.q_t), (x.d_o, &mut *buf.do_t)] {
        let tiles = tiles.chunks_exact_mut(hdp * BLOCK).enumerate();
        tiles.for_each(|(i, tile)| rows.transpose_tile(hdp, i, tile));
    }
    buf.dq.fill(0.0);
    buf.lse2.fill(0.0);
    buf.lse2.iter_mut().zip(x.lse).for_each(|(l2, &l)| *l2 = l * LOG2_E);
    for kt in 0..g.nt {
        let (c0, keys) = (kt * BLOCK, g.tile_rows(kt));
        x.k.transpose_tile(hdp, kt, buf.k_t);
        x.v.transpose_tile(hdp, kt, buf.v_t);
        let first_qt = if causal { kt } else { 0 };
        for qt in first_qt..g.nt {
            tile_pair_backward(x, buf, g, (kt, qt), causal, qt == first_qt);
        }
        write_rows(dst, g, bh, 1, c0, keys, buf.dk, accumulate);
        write_rows(dst, g, bh, 2, c0, keys, buf.dv, accumulate);
    }
    write_rows(dst, g, bh, 0, 0, g.seq, buf.dq, accumulate);
}

/// Key tile `kt` × query tile `qt` of the backward: recomputes `P`, adds this pair's terms to
/// `dV_kt`, `dK_kt` (written instead when `first`) and `dQ_qt`.
///
/// On the causal diagonal with more than `HALF` queries the products skip the quarter where
/// queries `0..HALF` meet keys `HALF..` (all masked); `P` and `dS` are zero there.
fn tile_pair_backward(
    x: &BackwardHead,
    buf: &mut HeadBuffers,
    g: &Geometry,
    (kt, qt): (usize, usize),
    causal: bool,
    first: bool,
) {
    let hdp = g.hdp;
    let (c0, keys, r0, rows) = (kt * BLOCK, g.tile_rows(kt), qt * BLOCK, g.tile_rows(qt));
    // Key columns of the 64-wide tiles are padded to a multiple of 8 (masked to P = 0).
    let kp = round8(keys);
    let split = causal && kt == qt && rows > HALF;
    let q_t = &buf.q_t[qt * hdp * BLOCK..][..hdp * BLOCK];
    let do_t = &buf.do_t[qt * hdp * BLOCK..][..hdp * BLOCK];
    let (q, ldq) = (x.q.from(r0), x.q.ld);
    let (d_o, ld_do) = (x.d_o.from(r0), x.d_o.ld);
    let (k, ldk) = (x.k.from(c0), x.k.ld);
    let h = HALF;
    // Columns computed in row i: all, or the first HALF in the skipped quarter's rows.
    let cols = |i: usize| if split && i < h { h } else { kp };
    // S = Q_i K_jᵀ, then P = 2^(x·c − L·log₂e), 0 where masked.
    if split {
        g.tile_gemm((h, h, hdp), q_t, BLOCK, buf.k_t, BLOCK, buf.p, BLOCK, false);
        let lower = &mut buf.p[h * BLOCK..];
        g.tile_gemm((rows - h, kp, hdp), &q_t[h..], BLOCK, buf.k_t, BLOCK, lower, BLOCK, false);
    } else {
        g.tile_gemm((rows, kp, hdp), q_t, BLOCK, buf.k_t, BLOCK, buf.p, BLOCK, false);
    }
    let c = f32x8::splat(LOG2_E * g.inv_sqrt_hd());
    for (i, p_row) in buf.p.chunks_exact_mut(BLOCK).take(rows).enumerate() {
        let neg_lse = f32x8::splat(-buf.lse2[r0 + i]);
        for ch in p_row[..cols(i)].chunks_exact_mut(LANES) {
            store(ch, exp2(load(ch).mul_add(c, neg_lse)));
        }
        // Causal: query r0 + i sees keys up to itself (r0 ≥ c0 on these tiles).
        let visible = if causal { keys.min(r0 + i + 1 - c0) } else { keys };
        p_row[visible..kp].fill(0.0);
    }
    g.round(&mut buf.p[..rows * BLOCK]);
    // dV_j += Pᵀ dO_i   (in the split, keys HALF.. meet only queries HALF..)
    if split {
        g.tile_gemm((h, hdp, rows), buf.p, BLOCK, d_o, ld_do, buf.dv, hdp, !first);
        let (p, dv) = (&buf.p[h * BLOCK + h..], &mut buf.dv[h * hdp..]);
        let d_o = &d_o[h * ld_do..];
        g.tile_gemm((keys - h, hdp, rows - h), p, BLOCK, d_o, ld_do, dv, hdp, !first);
    } else {
        g.tile_gemm((keys, hdp, rows), buf.p, BLOCK, d_o, ld_do, buf.dv, hdp, !first);
    }
    // dP = dO_i V_jᵀ, then dS = P ∘ (dP − D) / sqrt(hd) in place.
    if split {
        g.tile_gemm((h, h, hdp), do_t, BLOCK, buf.v_t, BLOCK, buf.ds, BLOCK, false);
        let lower = &mut buf.ds[h * BLOCK..];
        g.tile_gemm((rows - h, kp, hdp), &do_t[h..], BLOCK, buf.v_t, BLOCK, lower, BLOCK, false);
    } else {
        g.tile_gemm((rows, kp, hdp), do_t, BLOCK, buf.v_t, BLOCK, buf.ds, BLOCK, false);
    }
    let scale = f32x8::splat(g.inv_sqrt_hd());
    let ds_rows = buf.ds.chunks_exact_mut(BLOCK).zip(buf.p.chunks_exact(BLOCK)).take(rows);
    for (i, (ds_row, p_row)) in ds_rows.enumerate() {
        let delta = f32x8::splat(x.delta[r0 + i]);
        let (computed, skipped) = ds_row[..kp].split_at_mut(cols(i));
        for (d, p) in computed.chunks_exact_mut(LANES).zip(p_row.chunks_exact(LANES)) {
            store(d, load(p) * (load(d) - delta) * scale);
        }
        skipped.fill(0.0);
    }
    g.round(&mut buf.ds[..rows * BLOCK]);
    // dK_j += dSᵀ Q_i
    if split {
        g.tile_gemm((h, hdp, rows), buf.ds, BLOCK, q, ldq, buf.dk, hdp, !first);
        let (ds, dk) = (&buf.ds[h * BLOCK + h..], &mut buf.dk[h * hdp..]);
        g.tile_gemm((keys - h, hdp, rows - h), ds, BLOCK, &q[h * ldq..], ldq, dk, hdp, !first);
    } else {
        g.tile_gemm((keys, hdp, rows), buf.ds, BLOCK, q, ldq, buf.dk, hdp, !first);
    }
    // dQ_i += dS K_j   (dS row-major: the one product through `tile_gemm_nn`)
    let dq = &mut buf.dq[r0 * hdp..][..rows * hdp];
    if split {
        g.tile_gemm_nn((h, hdp, h), buf.ds, BLOCK, k, ldk, dq, hdp, true);
        let lower = &mut dq[h * hdp..];
        let ds_lower = &buf.ds[h * BLOCK..];
        g.tile_gemm_nn((rows - h, hdp, keys), ds_lower, BLOCK, k, ldk, lower, hdp, true);
    } else {
        g.tile_gemm_nn((rows, hdp, keys), buf.ds, BLOCK, k, ldk, dq, hdp, true);
    }
}

/// Writes `n` padded rows `src: [n, hdp]` as rows `first..first+n` of part `part` (0 = ∂q,
/// 1 = ∂k, 2 = ∂v) of head `bh` in `∂qkv: [B, T, 3d]`.
#[allow(clippy::too_many_arguments)]
fn write_rows(
    dst: &DisjointOut,
    g: &Geometry,
    bh: usize,
    part: usize,
    first: usize,
    n: usize,
    src: &[f32],
    accumulate: bool,
) {
    let (b, h) = (bh / g.n_head, bh % g.n_head);
    for (i, row) in src.chunks_exact(g.hdp).take(n).enumerate() {
        let at = g.qkv_offset(b, h, part) + (first + i) * 3 * g.d;
        // SAFETY: head (b, h)'s columns of part `part` belong to this task alone.
        unsafe { dst.put(at, &row[..g.hd], accumulate) };
    }
}

/// Floats the forward allocates besides its outputs `o` and `lse`: the packed `Q`, `K`, `V`
/// rows and `Kᵀ` tiles of every head, plus, per query-tile task, `Qᵀ`, `Sᵀ`, `Oᵀ` and the row
/// statistics (counted as if all tasks ran at once). Linear in `T`: no `T×T` buffer exists.
pub fn forward_workspace_floats(dims: AttentionDims) -> usize {
    let g = Geometry::new(dims, Operands::F32);
    let per_tile = 3 * g.hdp * BLOCK + BLOCK * BLOCK + 2 * BLOCK;
    g.batch * g.n_head * (4 * g.nt * BLOCK * g.hdp + g.nt * per_tile)
}

/// Floats the backward allocates besides its output `∂qkv`: the packed `Q`, `K`, `V`, `dO` rows
/// and `D` of every head, plus one task's buffers (see `HeadBuffers`) per head, counted as if all
/// `B·H` tasks ran at once. Linear in `T`.
pub fn backward_workspace_floats(dims: AttentionDims) -> usize {
    let g = Geometry::new(dims, Operands::F32);
    let shared = 4 * g.nt * BLOCK * g.hdp + g.nt * BLOCK;
    g.batch * g.n_head * (shared + HeadBuffers::floats(&g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;

    fn normal(stream: u64, n: usize) -> Vec<f32> {
        let mut v = vec![0.0; n];
        Philox::new(11).fill_normal(stream, 0.0, 1.0, &mut v);
        v
    }

    /// Rows read in place and rows packed first give the same bits, forward and backward.
    #[test]
    fn reading_rows_in_place_matches_packing_them_bit_for_bit() {
        let dims = AttentionDims { batch: 2, seq: 128, n_head: 3, head_dim: 16 };
        let in_place = Geometry::new(dims, Operands::F32);
        assert!(in_place.in_place);
        let packed = Geometry { in_place: false, ..in_place };
        let (n, d) = (dims.batch * dims.seq, dims.d());
        let (qkv, dout) = (normal(1, n * 3 * d), normal(2, n * d));
        for causal in [true, false] {
            let [a, b] = [in_place, packed].map(|g| forward_on(&qkv, &g, causal));
            assert_eq!((&a.out, &a.lse), (&b.out, &b.lse), "forward, causal {causal}");
            let [da, db] = [in_place, packed].map(|g| {
                let mut dqkv = vec![0.0; qkv.len()];
                backward_on((&qkv, &a.out, &a.lse, &dout), &g, causal, &mut dqkv, false);
                dqkv
            });
            assert_eq!(da, db, "backward, causal {causal}");
        }
    }
}
