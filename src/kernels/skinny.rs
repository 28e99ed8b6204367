//! `Y = X·W + b` for a few rows of `X`: the projections of one decoding step.
//!
//! During sampling each step multiplies `B` rows (one per sequence, `B` small) by every weight
//! matrix. That is memory-bound: at batch 1 the cost is reading `W` once, so the kernel must
//! read it at the speed of memory. Three things decide that speed:
//! - **one contiguous stream per thread.** Row-major `W` read a strip of columns at a time
//!   jumps a whole row (`4·d_out` bytes) per load, defeating the hardware prefetcher and the
//!   TLB. So `W` is repacked once, before decoding, into **panels** as wide as one 64-byte cache
//!   line ([`PanelWeight::WIDTH`]: 16 f32 or 32 bf16 columns): panel `p` holds
//!   `W[0..d_in, wp..wp+w]` as a contiguous `[d_in, w]` block (the last one zero-padded), and
//!   every task walks its panels one after the other, front to back. One stream per core
//!   matters: reading two panels side by side (two streams) measured 17 GB/s on one core of the
//!   CI machine, one stream of whole lines 26–29 GB/s;
//! - **huge pages.** The decoder keeps the panels in a [`StreamBuffer`](super::pages::StreamBuffer)
//!   (2 MiB pages where Linux allows), so a stream crosses a page 512 times less often;
//! - **prefetching.** Each loop asks for the line it will read `AHEAD` rows later, so the
//!   next lines are on their way while the current one is multiplied.
//!
//! The arithmetic, per output element, in this order (fused multiply-adds):
//! ```text
//! Y[r, j] = b[j] + Σ_i X[r, i] · W[i, j]          i = 0, 1, …, d_in − 1
//! ```
//! A panel's accumulators (`R` rows × `w/8` vectors of 8 columns, at most eight) stay in
//! registers while `i` runs. Columns are split into fixed groups of `COLUMNS_PER_TASK` (128) run
//! in parallel; every output element is the same sum in the same order whatever the thread
//! count. Tested against `tensor::gemm_reference`.

use super::bf16::{bf16_bits, round_bf16};
use super::simd::{load, prefetch, store, transpose, Stored, LANES};
use super::Operands;
use rayon::prelude::*;
use wide::f32x8;

/// Columns per panel of f32 values: two vectors, one 64-byte cache line per row of the panel.
/// The training products (`gemm`, `dpbf16`) use the same panels.
pub const PANEL: usize = 2 * LANES;

/// Rows of a panel (64-byte lines) that loads are prefetched ahead of their use: 2 KiB, about
/// what hides the latency of memory at the rate the kernel consumes lines.
const AHEAD: usize = 32;

/// Columns per parallel task: 8 f32 panels or 4 bf16 ones.
const COLUMNS_PER_TASK: usize = 128;

/// Accumulator vectors one call of [`one_panel`] keeps in registers (of the 16 AVX2 has).
const ACCUMULATORS: usize = 8;

/// Vectors in the widest panel row (bf16's 32 columns).
const MAX_VECTORS: usize = 4;

/// A weight matrix `W: [d_in, d_out]` packed into panels (see the module doc), of f32 values
/// or of bf16 ones (`u16`: the high half of the f32 bits, see `bf16`).
#[derive(Clone, Copy, Debug)]
pub struct Panels<'a, W = f32> {
    /// `d_out.div_ceil(w)` panels of `[d_in, w]`, one after the other (`w = W::WIDTH`).
    pub data: &'a [W],
    pub d_in: usize,
    pub d_out: usize,
}

/// What a panel holds: f32 weights, or bf16 ones (`u16`), which halve the bytes a decoding step
/// streams from memory, the cost that bounds it.
pub trait PanelWeight: Stored {
    /// What the product's operands are: with bf16, `x` is rounded too and the sums flush
    /// subnormals (`bf16`).
    const OPERANDS: Operands;
    /// Columns per panel: one 64-byte cache line per row.
    const WIDTH: usize;
}

impl PanelWeight for f32 {
    const OPERANDS: Operands = Operands::F32;
    const WIDTH: usize = PANEL;
}

impl PanelWeight for u16 {
    const OPERANDS: Operands = Operands::Bf16;
    const WIDTH: usize = 2 * PANEL;
}

/// Panels of bf16 values from f32 panels (each rounded, `bf16::round_bf16`).
pub fn bf16_panels(panels: &[f32], dst: &mut [u16]) {
    let pairs = dst.par_chunks_mut(1 << 14).zip(panels.par_chunks(1 << 14));
    pairs.for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &x)| *d = bf16_bits(x)));
}

/// Values that [`pack_panels`] writes for a `[d_in, d_out]` matrix in panels of `width`
/// columns.
pub fn panels_len(d_in: usize, d_out: usize, width: usize) -> usize {
    d_out.div_ceil(width) * width * d_in
}

/// Packs `W: [d_in, d_out]` into panels of `width` columns in `dst` (`panels_len(d_in, d_out,
/// width)` floats). `w` is row-major `[d_in, d_out]` (HF Conv1D), or `[d_out, d_in]` (HF
/// `nn.Linear`) if `transposed`.
///
/// # Panics
/// If a slice is shorter than the sizes say, or `width` is not a multiple of 8.
pub fn pack_panels(
    w: &[f32],
    (d_in, d_out): (usize, usize),
    transposed: bool,
    width: usize,
    dst: &mut [f32],
) {
    let strides = if transposed { (1, d_in) } else { (d_out, 1) };
    pack_strided(w, (d_in, d_out), strides, width, dst);
}

/// Packs the `[d_in, d_out]` matrix whose element `(i, j)` is `w[i·rs + j·cs]` into panels of
/// `width` columns in `dst` (`panels_len(d_in, d_out, width)` floats): any view of a matrix,
/// transposed or not.
///
/// # Panics
/// If a slice is shorter than the sizes say, or `width` is not a multiple of 8.
pub fn pack_strided(
    w: &[f32],
    (d_in, d_out): (usize, usize),
    (rs, cs): (usize, usize),
    width: usize,
    dst: &mut [f32],
) {
    assert!(width > 0 && width.is_multiple_of(LANES), "pack_strided: width {width}");
    assert!(dst.len() >= panels_len(d_in, d_out, width));
    if d_in == 0 || d_out == 0 {
        return;
    }
    assert!((d_in - 1) * rs + (d_out - 1) * cs < w.len(), "pack_strided: view outside w");
    let n_panels = d_out.div_ceil(width);
    // Panels are independent: packed in parallel (a training step packs every weight twice).
    let panels = dst[..n_panels * d_in * width].par_chunks_exact_mut(d_in * width);
    panels.enumerate().for_each(|(p, panel)| pack_panel(w, (d_in, d_out), (rs, cs), p, panel));
}

/// Panel `p` of [`pack_strided`] (`panel` is `[d_in, w]`): columns `wp..wp+w` of the view.
fn pack_panel(
    w: &[f32],
    (d_in, d_out): (usize, usize),
    (rs, cs): (usize, usize),
    p: usize,
    panel: &mut [f32],
) {
    let width = panel.len() / d_in;
    let j0 = p * width;
    let whole = j0 + width <= d_out;
    if whole && cs == 1 {
        // A row-major view: each row of the panel is `width` consecutive floats.
        for (i, row) in panel.chunks_exact_mut(width).enumerate() {
            row.copy_from_slice(&w[i * rs + j0..][..width]);
        }
        return;
    }
    let mut first_gathered = 0;
    if whole && rs == 1 {
        // A transposed view: the panel is the transpose of `width` contiguous source rows,
        // done in 8×8 register blocks instead of gathering one float per cache line.
        first_gathered = d_in / LANES * LANES;
        transpose(&w[j0 * cs..], cs, (width, first_gathered), panel, width);
    }
    for (i, row) in panel.chunks_exact_mut(width).enumerate().skip(first_gathered) {
        for (c, v) in row.iter_mut().enumerate() {
            let j = j0 + c;
            *v = if j < d_out { w[i * rs + j * cs] } else { 0.0 };
        }
    }
}

/// `y[rows, d_out] = x[rows, d_in] · W + bias[d_out]` (row-major `x`, `y`; `W` in panels).
///
/// # Panics
/// If the slices are shorter than the sizes say.
pub fn skinny_linear<W: PanelWeight>(
    x: &[f32],
    rows: usize,
    w: Panels<'_, W>,
    bias: &[f32],
    y: &mut [f32],
) {
    let (d_in, d_out) = (w.d_in, w.d_out);
    assert!(
        x.len() >= rows * d_in
            && w.data.len() >= panels_len(d_in, d_out, W::WIDTH)
            && bias.len() >= d_out
            && y.len() >= rows * d_out
    );
    if rows == 0 {
        return;
    }
    let rounded: Vec<f32>;
    let x = match W::OPERANDS {
        Operands::F32 => x,
        Operands::Bf16 | Operands::Bf16Avx512 => {
            rounded = x[..rows * d_in].iter().map(|&v| round_bf16(v)).collect();
            &rounded
        }
    };
    let n_panels = d_out.div_ceil(W::WIDTH);
    let per_task = COLUMNS_PER_TASK / W::WIDTH;
    let groups: Vec<(usize, Vec<f32>)> = (0..n_panels.div_ceil(per_task))
        .into_par_iter()
        .map(|g| {
            let p0 = g * per_task;
            let p1 = (p0 + per_task).min(n_panels);
            (p0 * W::WIDTH, W::OPERANDS.run(|| panel_group(x, rows, w, bias, p0, p1)))
        })
        .collect();
    for (c0, part) in groups {
        let stride = part.len() / rows;
        let width = stride.min(d_out - c0);
        for r in 0..rows {
            y[r * d_out + c0..][..width].copy_from_slice(&part[r * stride..][..width]);
        }
    }
}

/// Panels `p0..p1` for every row, one panel after the other (one stream):
/// `[rows, (p1 − p0)·w]` (padding columns included).
fn panel_group<W: PanelWeight>(
    x: &[f32],
    rows: usize,
    w: Panels<'_, W>,
    bias: &[f32],
    p0: usize,
    p1: usize,
) -> Vec<f32> {
    let (d_in, pw) = (w.d_in, W::WIDTH);
    let width = (p1 - p0) * pw;
    // The bias of this group's columns, zero-padded to whole panels.
    let mut b = vec![0.0; width];
    let real = w.d_out.min(p1 * pw) - p0 * pw;
    b[..real].copy_from_slice(&bias[p0 * pw..][..real]);
    let mut out = vec![0.0; rows * width];
    for p in p0..p1 {
        let c = (p - p0) * pw;
        let panel = &w.data[p * d_in * pw..][..d_in * pw];
        let mut r0 = 0;
        while r0 < rows {
            // As many rows as fill the accumulators: 4 rows of f32, 2 of bf16.
            let group = (rows - r0).min(ACCUMULATORS / (pw / LANES));
            let xs = &x[r0 * d_in..(r0 + group) * d_in];
            let dst = &mut out[r0 * width + c..];
            match group {
                1 => one_panel::<W, 1>(xs, panel, &b[c..], dst, width),
                2 => one_panel::<W, 2>(xs, panel, &b[c..], dst, width),
                3 => one_panel::<W, 3>(xs, panel, &b[c..], dst, width),
                _ => one_panel::<W, 4>(xs, panel, &b[c..], dst, width),
            }
            r0 += group;
        }
    }
    out
}

/// `R` rows × one panel: `R·w/8` accumulators start at the bias and take `x[r, i]·W[i, panel]`
/// for `i = 0, 1, …`; row `r` of the result goes to `out[r·stride ..][..w]`.
fn one_panel<W: PanelWeight, const R: usize>(
    x: &[f32],
    panel: &[W],
    bias: &[f32],
    out: &mut [f32],
    stride: usize,
) {
    let (d_in, vectors) = (x.len() / R, W::WIDTH / LANES);
    let mut acc = [[f32x8::ZERO; MAX_VECTORS]; R];
    for a in &mut acc {
        for (v, a) in a.iter_mut().enumerate().take(vectors) {
            *a = load(&bias[v * LANES..]);
        }
    }
    for (i, row) in panel.chunks_exact(W::WIDTH).enumerate() {
        prefetch(panel, (i + AHEAD) * W::WIDTH);
        for (r, a) in acc.iter_mut().enumerate() {
            let xv = f32x8::splat(x[r * d_in + i]);
            for (v, a) in a.iter_mut().enumerate().take(vectors) {
                *a = xv.mul_add(W::load8(&row[v * LANES..]), *a);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (v, a) in a.iter().enumerate().take(vectors) {
            store(&mut out[r * stride + v * LANES..], *a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;
    use crate::tensor::{gemm_reference, MatRef, Start};

    #[test]
    fn matches_the_reference_gemm_and_is_thread_independent() {
        for (rows, d_in, d_out) in [
            (1, 7, 3),
            (3, 64, 300),
            (8, 33, 517),
            (2, 128, 1536),
            (1, 512, 1100),
            (5, 9, 40),
            (1, 16, 48),
        ] {
            let p = Philox::new(2);
            let (mut x, mut w, mut b) =
                (vec![0.0; rows * d_in], vec![0.0; d_in * d_out], vec![0.0; d_out]);
            p.fill_normal(0, 0.0, 1.0, &mut x);
            p.fill_normal(1, 0.0, 1.0, &mut w);
            p.fill_normal(2, 0.0, 1.0, &mut b);
            let mut want: Vec<f32> = (0..rows).flat_map(|_| b.iter().copied()).collect();
            gemm_reference(
                1.0,
                MatRef::new(&x, rows, d_in),
                MatRef::new(&w, d_in, d_out),
                1.0,
                &mut want,
            );
            let mut packed = vec![0.0; panels_len(d_in, d_out, PANEL)];
            pack_panels(&w, (d_in, d_out), false, PANEL, &mut packed);
            let panels = Panels { data: &packed, d_in, d_out };
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut y = vec![f32::NAN; rows * d_out];
                pool.install(|| skinny_linear(&x, rows, panels, &b, &mut y));
                y
            };
            let y = run(1);
            assert_eq!(y, run(2));
            for (a, e) in y.iter().zip(&want) {
                assert!(
                    (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "{rows}x{d_in}x{d_out}: {a} vs {e}"
                );
            }
        }
    }

    #[test]
    fn packing_a_transposed_matrix_gives_the_same_panels() {
        // d_in = 21: 8×8 register transposes for rows 0..16 of whole panels, gathers after.
        let (d_in, d_out) = (21, 70);
        let w: Vec<f32> = (0..d_in * d_out).map(|v| v as f32).collect();
        let wt: Vec<f32> =
            (0..d_out).flat_map(|j| (0..d_in).map(move |i| (i * d_out + j) as f32)).collect();
        for width in [PANEL, <u16 as PanelWeight>::WIDTH] {
            let len = panels_len(d_in, d_out, width);
            let (mut a, mut b) = (vec![1.0; len], vec![2.0; len]);
            pack_panels(&w, (d_in, d_out), false, width, &mut a);
            pack_panels(&wt, (d_in, d_out), true, width, &mut b);
            assert_eq!(a, b, "width {width}");
            // W[i, j] is in panel j / width, at row i, column j % width.
            let at = |i: usize, j: usize| a[((j / width) * d_in + i) * width + j % width];
            for (i, j) in [(0, 0), (2, 3), (7, width), (20, 69)] {
                assert_eq!(at(i, j), (i * d_out + j) as f32, "width {width}: W[{i}, {j}]");
            }
            // Column 70 is the last panel's padding.
            assert_eq!(at(2, d_out), 0.0, "width {width}");
        }
    }

    #[test]
    fn bf16_panels_compute_the_bf16_product_bit_for_bit() {
        // The decoder's bf16 projections are §21's products: b + Σ_i bf16(x_i)·bf16(W_ij).
        for (rows, d_in, d_out) in [(1, 64, 300), (3, 33, 517), (5, 128, 40)] {
            let p = Philox::new(4);
            let (mut x, mut w, mut b) =
                (vec![0.0; rows * d_in], vec![0.0; d_in * d_out], vec![0.0; d_out]);
            p.fill_normal(0, 0.0, 1.0, &mut x);
            p.fill_normal(1, 0.0, 1.0, &mut w);
            p.fill_normal(2, 0.0, 1.0, &mut b);
            let mut want = vec![0.0; rows * d_out];
            let (xm, wm) = (MatRef::new(&x, rows, d_in), MatRef::new(&w, d_in, d_out));
            crate::kernels::bf16::product_reference(xm, wm, Start::Bias(&b), &mut want);
            let width = <u16 as PanelWeight>::WIDTH;
            let mut packed = vec![0.0; panels_len(d_in, d_out, width)];
            pack_panels(&w, (d_in, d_out), false, width, &mut packed);
            let mut half = vec![0u16; packed.len()];
            bf16_panels(&packed, &mut half);
            let mut got = vec![f32::NAN; rows * d_out];
            skinny_linear(&x, rows, Panels { data: &half, d_in, d_out }, &b, &mut got);
            assert_eq!(got, want, "{rows}x{d_in}x{d_out}");
        }
    }
}
