//! The products of a linear layer in training (f32) whose left operand is an activation read
//! in place.
//!
//! A linear layer `Y = X·W + b` over `N` rows (`N` = batch × positions, thousands) needs
//! ```text
//! forward    Y = b + X·W       [N, out]  = [N, in] · [in, out]
//! backward  ∂X = ∂Y·Wᵀ         [N, in]   = [N, out]·[out, in]
//!           ∂W = Xᵀ·∂Y         [in, out] = [in, N]·[N, out]
//! ```
//! A general sgemm copies ("packs") both operands into its own layout on every call. In the
//! first two products one operand is a small weight matrix and the other an activation of `N`
//! rows, several MiB, read from memory once: packing it as well doubles its memory traffic (on
//! the digits model, an eighth of a training step). [`gemm_rows`] reads `A` (row-major) in
//! place and packs only `B` (`W` or `Wᵀ`) into 16-column panels (`skinny::pack_strided`). Each
//! parallel task owns `ROWS` rows of `C`; it walks the inner dimension in blocks of `KC`,
//! so that a panel's block (`KC × 16` floats, 8 KiB) stays in L1 while all of the task's rows
//! pass over it. The register tiles are `simd::tile_gemm_nn`'s 6 × 16.
//!
//! That only pays while the packed `B` stays in L2 next to the task's rows: from
//! [`MAX_B_FLOATS`] (1 MiB of panels, e.g. igpt-s's 512 × 512 and up) an sgemm, which also
//! blocks `A` for L2, is faster, and [`linear_product`] hands those products to `gemm`, as it
//! does `∂W` (measured both ways on the digits, small and igpt-s presets).
//!
//! Every element of `C` is `C₀ + Σ_p A_ip·B_pj` in increasing `p`, one fused multiply-add chain
//! (between blocks the partial sum is stored and reloaded in f32, which rounds nothing), with
//! `C₀` = 0, `b_j` or the old `C_ij`. The order depends only on the shapes, so the result is the
//! same for any number of threads. Tested against `tensor::gemm_reference`.
//!
//! bf16 products (`Operands::Bf16*`) take the same tasks and blocks: on the portable path the
//! same register kernel over rounded values, on the AVX512 path `dpbf16`'s kernel over bf16
//! pairs (`B` packed as pair panels, each task's block of `A` paired as it is read), with the
//! same sums (`bf16`, `dpbf16`).

use super::bf16::{round_bf16, round_in_place, round_into};
use super::dpbf16::{self, tile_product};
use super::simd::{prefetch, tile_gemm_nn};
use super::skinny::{pack_strided, panels_len, PANEL};
use super::Operands;
use crate::tensor::{gemm_new, gemm_start, new_parallel, new_parallel_rows, MatRef, Start};
use rayon::prelude::*;
use std::ops::Range;

/// Rows of `C` per task in [`gemm_rows`] (a multiple of both register tiles' rows, 6 and 8).
const ROWS: usize = 48;
/// Inner-dimension block of [`gemm_rows`]: a `KC × 16` panel block is 8 KiB, a quarter of L1.
const KC: usize = 128;

/// The inner-dimension block for `operands`' kernel: [`KC`], or twice that on `dpbf16`'s,
/// whose panel rows hold pairs, so that its block is the same 8 KiB of panel (128 pair rows).
/// Blocks of 128 there made its products 4–13 % slower (one thread, igpt-s shapes, three
/// alternating runs): each register tile's accumulators were loaded and stored twice as often
/// for the same work.
fn kc(operands: Operands) -> usize {
    match operands {
        Operands::Bf16Avx512 => 2 * KC,
        Operands::F32 | Operands::Bf16 => KC,
    }
}

/// The largest `B` (in floats, `k·n`) that [`gemm_rows`] takes: 1 MiB of panels. Also the
/// most that a slab of a larger (bf16) `B` packs at a time (`slab_rows`).
pub const MAX_B_FLOATS: usize = 1 << 18;

/// `C = start + A·B` (row-major `C`): [`gemm_rows`] when `A` is row-major and `B` holds fewer
/// than [`MAX_B_FLOATS`], else `tensor::gemm_start`.
///
/// # Panics
/// If the inner dimensions disagree or `c` is not `[A.rows, B.cols]`.
pub fn linear_product(a: MatRef<f32>, b: MatRef<f32>, start: Start<f32>, c: &mut [f32]) {
    assert_eq!(a.cols, b.rows, "linear_product: inner dimensions {} and {} differ", a.cols, b.rows);
    assert_eq!(c.len(), a.rows * b.cols, "linear_product: C must be [{}, {}]", a.rows, b.cols);
    if reads_in_place(a, b) {
        gemm_rows(a.data, b, start, c);
    } else {
        gemm_start(a, b, start, c);
    }
}

/// Whether [`gemm_rows`] takes `A·B`: `A` row-major and `B` small (see the module doc).
fn reads_in_place(a: MatRef<f32>, b: MatRef<f32>) -> bool {
    a.cs == 1 && a.rs == a.cols && b.rows * b.cols < MAX_B_FLOATS
}

/// `bias + A·B` (or `A·B`) into a new buffer: [`gemm_rows_new`] when it takes the product,
/// else `tensor::gemm_new`.
///
/// # Panics
/// If the inner dimensions disagree or a bias is not `B.cols` long.
pub fn linear_product_new(a: MatRef<f32>, b: MatRef<f32>, bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(a.cols, b.rows, "linear_product: inner dimensions {} and {} differ", a.cols, b.rows);
    // Both paths check the bias length themselves.
    if reads_in_place(a, b) {
        return gemm_rows_new(a.data, a.rows, b, bias);
    }
    gemm_new(a, b, bias)
}

/// `C = start + A·B` for row-major `A: [m, k]`, any view `B: [k, n]`, row-major `C: [m, n]`.
///
/// # Panics
/// If `a` holds fewer than `m·k` floats, `c` is not `m·n` long, or a bias is not `n` long.
pub fn gemm_rows(a: &[f32], b: MatRef<f32>, start: Start<f32>, c: &mut [f32]) {
    rows_product(Lhs::InPlace(a), b, Operands::F32, start, c)
}

/// The left operand `A: [m, k]` of [`rows_product`].
#[derive(Clone, Copy)]
pub(super) enum Lhs<'a> {
    /// Row-major f32, read in place.
    InPlace(&'a [f32]),
    /// Any view, rounded to bf16 one task's block (`rows × kc`) at a time into a buffer that
    /// stays in cache (so no rounded copy of a whole activation is ever made).
    Bf16(MatRef<'a, f32>),
}

impl Lhs<'_> {
    /// Whether this holds an `[m, k]` operand (in place: at least `m·k` floats).
    fn fits(&self, m: usize, k: usize) -> bool {
        match self {
            Lhs::InPlace(a) => a.len() >= m * k,
            Lhs::Bf16(view) => (view.rows, view.cols) == (m, k),
        }
    }

    /// Rows `first..first + rows`, columns `kb..kb + kc`: a slice and its row stride — `A` itself,
    /// or `block` filled with the rounded values.
    fn block<'s>(
        &'s self,
        (first, rows): (usize, usize),
        (kb, kc): (usize, usize),
        k: usize,
        block: &'s mut Vec<f32>,
    ) -> (&'s [f32], usize) {
        match self {
            Lhs::InPlace(a) => (&a[first * k + kb..], k),
            Lhs::Bf16(view) => {
                block.resize(rows * kc, 0.0);
                let (data, rs, cs) = (view.data, view.rs, view.cs);
                if cs == 1 {
                    for (r, row) in block.chunks_exact_mut(kc).enumerate() {
                        round_into(row, &data[(first + r) * rs + kb..][..kc]);
                    }
                } else if rs == 1 {
                    // A transposed activation (∂W = xᵀ·∂y): row `kb + p` of the activation holds
                    // this block's column `p`, `rows` consecutive floats; round them 8 at a time.
                    let mut line = vec![0.0; rows];
                    for p in 0..kc {
                        round_into(&mut line, &data[first + (kb + p) * cs..][..rows]);
                        for (r, &x) in line.iter().enumerate() {
                            block[r * kc + p] = x;
                        }
                    }
                } else {
                    for p in 0..kc {
                        for r in 0..rows {
                            block[r * kc + p] = round_bf16(data[(first + r) * rs + (kb + p) * cs]);
                        }
                    }
                }
                (&block[..], kc)
            }
        }
    }

    /// The same block of a `Bf16` operand as bf16 pairs (`dpbf16::a_block`) in `pairs`;
    /// returns their strides `(row, step)`.
    fn pairs(
        &self,
        rows: (usize, usize),
        cols: (usize, usize),
        pairs: &mut Vec<u32>,
    ) -> (usize, usize) {
        let Lhs::Bf16(view) = self else { unreachable!("bf16 pairs of an f32 operand") };
        dpbf16::a_block(*view, rows, cols, pairs)
    }
}

/// [`gemm_rows`] with `operands` as given: f32, or rounded to bf16 (`A` block by block, `B` as
/// it is packed) with each task flushing subnormals (`bf16`).
///
/// Tasks own `ROWS` rows of `C`, or fewer when `C` has few rows ([`task_rows`]). The cut
/// changes which task computes an element, never its sum.
pub(super) fn rows_product(
    a: Lhs,
    b: MatRef<f32>,
    operands: Operands,
    start: Start<f32>,
    c: &mut [f32],
) {
    let (k, n) = (b.rows, b.cols);
    if n == 0 {
        return;
    }
    let m = c.len() / n;
    assert!(c.len() == m * n && a.fits(m, k), "gemm_rows: sizes disagree");
    let slab = slab_rows(k, n, kc(operands));
    let mut packed = Packed::new(b.row_range(0..k.min(slab)), operands);
    let mut first = 0;
    loop {
        let inner = first..k.min(first + slab);
        let start = if first == 0 { start } else { Start::Accumulate };
        if first > 0 {
            packed.fill(b.row_range(inner.clone()));
        }
        slab_product(a, (k, inner.clone()), (&packed, n), start, c);
        if inner.end >= k {
            return;
        }
        first = inner.end;
    }
}

/// Rows of `B` packed at a time by [`rows_product`] with blocks of `kc`: all of them while the
/// panels stay within [`MAX_B_FLOATS`], else slabs of as many whole blocks as fit in it. Only bf16
/// meets such `B`s (f32 hands them to `gemm`): `∂W = xᵀ·∂y`'s `∂y` has a row per token, and packing
/// it whole would put a rounded copy of it on top of the step's peak memory (measured: digits bf16
/// training 15 MB above f32's; with slabs, level with it). Each slab costs two hand-offs to rayon
/// (packing it, then the tasks), so slabs should not be small either: slabs of a quarter of this
/// size (one `KC` block of a 384-wide `∂y`) made the digits and emoji presets' `∂W` products about
/// 8 % slower (fastest of 40 calls, on `vdpbf16ps`).
fn slab_rows(k: usize, n: usize, kc: usize) -> usize {
    let padded = n.div_ceil(PANEL) * PANEL;
    if k * padded <= MAX_B_FLOATS {
        return k.max(1);
    }
    (MAX_B_FLOATS / padded / kc).max(1) * kc
}

/// `C = start + A[:, inner]·B[inner, :]` into `C: [m, n]`, with `panels` holding `B`'s rows
/// `inner`, packed (for its operands' kernel); `k` is `A`'s full inner length. Every element's
/// chain continues where the previous slab left it (stored in `C` as f32, which rounds nothing).
fn slab_product(
    a: Lhs,
    (k, inner): (usize, Range<usize>),
    (panels, n): (&Packed, usize),
    start: Start<f32>,
    c: &mut [f32],
) {
    let rows = task_rows(c.len() / n, panels.operands);
    c.par_chunks_mut(rows * n).enumerate().for_each(|(t, chunk)| {
        panels.operands.run(|| {
            let fresh = start.fill(chunk, n);
            rows_task(a, t * rows, (k, inner.clone()), panels, (n, fresh), chunk);
        })
    });
}

/// The fewest tasks [`rows_product`] cuts a product into (enough to keep a few threads busy).
const MIN_TASKS: usize = 8;

/// Rows of `C` per task of [`rows_product`] for `m` rows: [`ROWS`], or fewer (a multiple of the
/// register tile's rows: 6 in f32's kernel, 8 in `dpbf16`'s) where that leaves fewer than
/// [`MIN_TASKS`] tasks — `∂W = xᵀ·∂y` has as many rows as the layer has inputs (128 on the
/// digits and emoji presets). Smaller tasks re-read the packed panels more often, but write
/// straight into `C`: no task holds a copy of its block. (With 6-row multiples, `dpbf16`'s
/// 128-row `∂W` ran in tasks of 18 rows: an 8, 8, 2 split of register tiles, and 18-value
/// columns of `xᵀ` paired 16 + 2 at a time.)
fn task_rows(m: usize, operands: Operands) -> usize {
    let tile = match operands {
        Operands::Bf16Avx512 => dpbf16::MR,
        Operands::F32 | Operands::Bf16 => 6,
    };
    m.div_ceil(MIN_TASKS).next_multiple_of(tile).clamp(tile, ROWS)
}

/// `b + A·B` (or `A·B` without a bias) into a new row-major `[m, n]` buffer: [`gemm_rows`]
/// for a forward pass. Each task writes its rows' starting values just before multiplying into
/// them, so the buffer is never zeroed in a separate pass over memory.
///
/// # Panics
/// If `a` holds fewer than `m·k` floats or a bias is not `n` long.
pub fn gemm_rows_new(a: &[f32], m: usize, b: MatRef<f32>, bias: Option<&[f32]>) -> Vec<f32> {
    rows_product_new(Lhs::InPlace(a), m, b, Operands::F32, bias)
}

/// [`gemm_rows_new`] with `operands` as given (bf16's forward: `A` any view). When `B` is
/// packed in slabs (bf16 only), `C` must hold its sums between slabs, so it is zeroed first.
///
/// # Panics
/// If `a` does not fit `[m, B.rows]` or a bias is not `B.cols` long.
pub(super) fn rows_product_new(
    a: Lhs,
    m: usize,
    b: MatRef<f32>,
    operands: Operands,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (k, n) = (b.rows, b.cols);
    // Checked here for a clear message; the tasks copy the bias into every row.
    assert!(bias.is_none_or(|b| b.len() == n), "gemm_rows_new: bias must have {n} entries");
    assert!(a.fits(m, k), "gemm_rows_new: A does not fit [{m}, {k}]");
    let start = bias.map_or(Start::Zero, Start::Bias);
    if n == 0 {
        return Vec::new();
    }
    if slab_rows(k, n, kc(operands)) < k {
        let mut c = vec![0.0; m * n];
        rows_product(a, b, operands, start, &mut c);
        return c;
    }
    let panels = Packed::new(b, operands);
    let rows = task_rows(m, operands);
    // Each task's rows start as the bias (the chains continue from it) or are written by the
    // first block of the product (`fresh`).
    let task = |fresh: bool| {
        move |first: usize, chunk: &mut [f32]| {
            operands.run(|| rows_task(a, first / n, (k, 0..k), &panels, (n, fresh), chunk))
        }
    };
    match bias {
        Some(bias) => new_parallel_rows(m * n, rows * n, bias, task(false)),
        None => new_parallel(m * n, rows * n, task(true)),
    }
}

/// `B` (some of its rows) packed for the register kernel of `operands`. [`Packed::fill`]
/// reuses the buffer, so the slabs of a tall `B` are packed into memory already mapped.
struct Packed {
    operands: Operands,
    panels: Panels,
    /// `B`'s rows held.
    rows: usize,
}

/// The values of a [`Packed`], in the layout its operands' register kernel reads.
enum Panels {
    /// 16-column panels of f32 values (`simd::tile_gemm_nn`), rounded to bf16 on the portable
    /// bf16 path.
    Floats(Vec<f32>),
    /// 16-column panels of bf16 pairs (`dpbf16::tile_product`), on the AVX512 bf16 path.
    Pairs(Vec<u32>),
}

impl Packed {
    fn new(b: MatRef<f32>, operands: Operands) -> Packed {
        let panels = match operands {
            Operands::Bf16Avx512 => Panels::Pairs(Vec::new()),
            Operands::F32 | Operands::Bf16 => Panels::Floats(Vec::new()),
        };
        let mut packed = Packed { operands, panels, rows: 0 };
        packed.fill(b);
        packed
    }

    fn fill(&mut self, b: MatRef<f32>) {
        self.rows = b.rows;
        match &mut self.panels {
            Panels::Pairs(pairs) => {
                pairs.resize(dpbf16::pairs_len(b.rows, b.cols), 0);
                dpbf16::pack_b(b, pairs);
            }
            Panels::Floats(floats) => {
                floats.resize(panels_len(b.rows, b.cols, PANEL), 0.0);
                pack_strided(b.data, (b.rows, b.cols), (b.rs, b.cs), PANEL, floats);
                if self.operands == Operands::Bf16 {
                    round_in_place(floats);
                }
            }
        }
    }
}

/// `C += A[:, inner]·B[inner, :]` for one task's rows `first..`: `c` is `[rows, n]`, `panels`
/// hold `B`'s rows `inner`, `k` is `A`'s full inner length. `fresh`: `C` holds no values yet,
/// so the first block writes it (`C = A·B`).
fn rows_task(
    a: Lhs,
    first: usize,
    (k, inner): (usize, Range<usize>),
    panels: &Packed,
    (n, fresh): (usize, bool),
    c: &mut [f32],
) {
    let rows = c.len() / n;
    let full = n / PANEL;
    if fresh && inner.is_empty() {
        // No block to write C: an empty sum is zero.
        c.fill(0.0);
    }
    let block_len = kc(panels.operands);
    if let Lhs::InPlace(a) = a {
        prefetch_next_task(a, (first + rows, rows), (k, inner.start), block_len);
    }
    // The last, partial panel (if any) works on a 16-column copy of its columns.
    let mut edge = Edge::gather(c, n, full * PANEL);
    let (mut block, mut pairs) = (Vec::new(), Vec::new());
    let (len, pair_rows) = (panels.rows, panels.rows.div_ceil(2));
    for kb in inner.clone().step_by(block_len) {
        let kc = block_len.min(inner.end - kb);
        let accumulate = !(fresh && kb == inner.start);
        let at = kb - inner.start;
        match &panels.panels {
            Panels::Pairs(packed) => {
                let strides = a.pairs((first, rows), (kb, kc), &mut pairs);
                let q = kc.div_ceil(2);
                let mut p = 0;
                while p < n.div_ceil(PANEL) {
                    // Two whole panels at a time where there are two (the wider register block).
                    let w = if p + 1 < full { 2 } else { 1 };
                    let panel = &packed[(p * pair_rows + at / 2) * PANEL..];
                    let b = (panel, pair_rows * PANEL, PANEL);
                    let (dst, ldc) = panel_of_c(p, full, (c, n), &mut edge);
                    tile_product((rows, q, w), &pairs, strides, b, dst, ldc, accumulate);
                    p += w;
                }
            }
            Panels::Floats(packed) => {
                let (a_block, lda) = a.block((first, rows), (kb, kc), k, &mut block);
                for p in 0..n.div_ceil(PANEL) {
                    let panel = &packed[(p * len + at) * PANEL..];
                    let (dst, ldc) = panel_of_c(p, full, (c, n), &mut edge);
                    let dims = (rows, PANEL, kc);
                    tile_gemm_nn(dims, a_block, lda, panel, PANEL, dst, ldc, accumulate);
                }
            }
        }
    }
    edge.scatter(c, n, full * PANEL);
}

/// Where panel `p` of a task's `C: [rows, n]` is written, and its row stride: in `C`, or in the
/// 16-column copy of the last, partial panel (`p == full`).
fn panel_of_c<'c>(
    p: usize,
    full: usize,
    (c, n): (&'c mut [f32], usize),
    edge: &'c mut Edge,
) -> (&'c mut [f32], usize) {
    if p < full {
        (&mut c[p * PANEL..], n)
    } else {
        (&mut edge[..], PANEL)
    }
}

/// Asks for the next task's block of `A` (rows `first..first + rows`, the first `block_len` columns
/// from `kb`) to be brought into L1 while this task computes: rayon hands a thread consecutive
/// tasks, so that block is most often the next one this thread multiplies, and reading an
/// activation's rows from memory is what kept the register kernel waiting at the start of each task
/// (emoji products with `k` = 128: 2–4 % faster, measured). A prefetch past the end of `A` reads
/// nothing.
fn prefetch_next_task(
    a: &[f32],
    (first, rows): (usize, usize),
    (k, kb): (usize, usize),
    block_len: usize,
) {
    let kc = block_len.min(k - kb);
    for r in first..first + rows {
        for p in (0..kc).step_by(PANEL) {
            prefetch(a, r * k + kb + p);
        }
    }
}

/// A 16-column copy of the columns `j0..n` of a `[rows, n]` block (`n − j0 < 16`), zero-padded,
/// for the register kernel, which always writes whole panels.
struct Edge(Vec<f32>);

impl Edge {
    fn gather(c: &[f32], n: usize, j0: usize) -> Edge {
        if j0 == n {
            return Edge(Vec::new());
        }
        let rows = c.len() / n;
        let mut e = vec![0.0; rows * PANEL];
        for r in 0..rows {
            e[r * PANEL..][..n - j0].copy_from_slice(&c[r * n + j0..(r + 1) * n]);
        }
        Edge(e)
    }

    fn scatter(&self, c: &mut [f32], n: usize, j0: usize) {
        for (r, row) in self.0.chunks_exact(PANEL).enumerate() {
            c[r * n + j0..(r + 1) * n].copy_from_slice(&row[..n - j0]);
        }
    }
}

impl std::ops::Deref for Edge {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Edge {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Start<'_, f32> {
    /// Sets rows of `n` columns to the starting values (an accumulation keeps them); `true`
    /// for `Zero`, whose rows are left as they are: the first block of the product writes them
    /// instead of adding to them (the same sums: each chain starts at 0 either way).
    fn fill(&self, rows: &mut [f32], n: usize) -> bool {
        match self {
            Start::Zero => return true,
            Start::Accumulate => {}
            Start::Bias(b) => rows.chunks_exact_mut(n).for_each(|r| r.copy_from_slice(b)),
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;
    use crate::tensor::gemm_reference;

    fn normal(stream: u64, n: usize) -> Vec<f32> {
        let mut v = vec![0.0; n];
        Philox::new(3).fill_normal(stream, 0.0, 1.0, &mut v);
        v
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{what}[{i}]: {g} vs {w}");
        }
    }

    /// Shapes that leave partial register tiles, partial panels, several KC blocks and more
    /// than one task.
    const SHAPES: [(usize, usize, usize); 5] =
        [(1, 1, 1), (7, 17, 5), (50, 40, 130), (97, 33, 300), (130, 70, 129)];

    #[test]
    fn row_products_match_the_reference_for_every_start_and_layout() {
        for (m, n, k) in SHAPES {
            let a = normal(1, m * k);
            let w = normal(2, k * n);
            let bias = normal(3, n);
            let c0 = normal(4, m * n);
            for transposed in [false, true] {
                // B = W ([k, n] row-major) or the transpose of an [n, k] matrix.
                let b = if transposed { MatRef::new(&w, n, k).t() } else { MatRef::new(&w, k, n) };
                let a_m = MatRef::new(&a, m, k);
                let mut want = c0.clone();
                gemm_reference(1.0, a_m, b, 1.0, &mut want);
                let mut got = c0.clone();
                gemm_rows(&a, b, Start::Accumulate, &mut got);
                close(&got, &want, "accumulate");

                let mut want = vec![0.0; m * n];
                gemm_reference(1.0, a_m, b, 0.0, &mut want);
                let mut got = vec![f32::NAN; m * n];
                gemm_rows(&a, b, Start::Zero, &mut got);
                close(&got, &want, "zero");
                let mut onto_zeros = vec![0.0; m * n];
                gemm_rows(&a, b, Start::Accumulate, &mut onto_zeros);
                assert_eq!(got, onto_zeros, "Zero writes what accumulating onto zeros gives");
                assert_eq!(gemm_rows_new(&a, m, b, None), got, "new buffer, no bias");

                let with_bias: Vec<f32> =
                    want.iter().enumerate().map(|(i, v)| v + bias[i % n]).collect();
                let got = gemm_rows_new(&a, m, b, Some(&bias));
                close(&got, &with_bias, "bias");
            }
        }
    }

    #[test]
    fn linear_product_routes_every_layout_to_the_same_product() {
        // Row-major A (read in place), a transposed A and a large B (both to `gemm`).
        let (m, k) = (37, 24);
        for n in [40, MAX_B_FLOATS / k + 1] {
            let (a, w) = (normal(5, m * k), normal(6, k * n));
            let b = MatRef::new(&w, k, n);
            let mut want = vec![0.0; m * n];
            gemm_reference(1.0, MatRef::new(&a, m, k), b, 0.0, &mut want);
            let mut got = vec![f32::NAN; m * n];
            linear_product(MatRef::new(&a, m, k), b, Start::Zero, &mut got);
            close(&got, &want, "row-major A");
            let a_t: Vec<f32> = (0..k * m).map(|e| a[(e % m) * k + e / m]).collect();
            let mut got = vec![f32::NAN; m * n];
            linear_product(MatRef::new(&a_t, k, m).t(), b, Start::Zero, &mut got);
            close(&got, &want, "transposed A");
            close(&linear_product_new(MatRef::new(&a, m, k), b, None), &want, "new buffer");
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (m, n, k) = (200, 70, 300);
        let (a, w) = (normal(8, m * k), normal(9, k * n));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| gemm_rows_new(&a, m, MatRef::new(&w, k, n), None))
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(3));
    }
}
