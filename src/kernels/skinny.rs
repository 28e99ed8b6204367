//! `Y = X·W + b` for a few rows of `X`: the projections of one decoding step.
//!
//! During sampling each step multiplies `B` rows (one per sequence, `B` small) by every weight
//! matrix. That is memory-bound: at batch 1 the cost is reading `W` once, so the kernel must
//! read it at the speed of memory. Three things decide that speed:
//! - **contiguous streams.** Row-major `W` read a strip of columns at a time jumps a whole row
//!   (`4·d_out` bytes) per load, defeating the hardware prefetcher and the TLB. So `W` is
//!   repacked once, before decoding, into **panels** of [`PANEL`] = 16 columns: panel `p` holds
//!   `W[0..d_in, 16p..16p+16]` as a contiguous `[d_in, 16]` block (the last one zero-padded),
//!   and every task walks whole panels front to back;
//! - **huge pages.** The decoder keeps the panels in a [`StreamBuffer`](super::pages::StreamBuffer)
//!   (2 MiB pages where Linux allows), so a stream crosses a page 512 times less often;
//! - **prefetching.** Each loop asks for the line it will read `AHEAD` rows later, so the
//!   next lines are on their way while the current one is multiplied.
//!
//! The arithmetic, per output element, in this order (fused multiply-adds):
//! ```text
//! Y[r, j] = b[j] + Σ_i X[r, i] · W[i, j]          i = 0, 1, …, d_in − 1
//! ```
//! A panel's `2R` accumulators (`R ≤ 4` rows × two vectors of 8 columns) stay in registers while
//! `i` runs; one row at a time takes two panels at once, so four independent chains hide the
//! latency of the multiply-add. Panels are split into fixed groups of `PANELS_PER_TASK` run in
//! parallel; every output element is the same sum in the same order whatever the thread count.
//! Tested against `tensor::gemm_reference`.

use super::bf16::{bf16_bits, round_bf16};
use super::simd::{load, prefetch, store, transpose, Stored, LANES};
use super::Operands;
use rayon::prelude::*;
use wide::f32x8;

/// Columns per panel: two vectors, one 64-byte cache line per row of the panel.
pub const PANEL: usize = 2 * LANES;

/// Rows of a panel (64-byte lines) that loads are prefetched ahead of their use: 2 KiB, about
/// what hides the latency of memory at the rate the kernel consumes lines.
const AHEAD: usize = 32;

/// Panels per parallel task (128 columns).
const PANELS_PER_TASK: usize = 8;

/// A weight matrix `W: [d_in, d_out]` packed into panels (see the module doc), of f32 values
/// or of bf16 ones (`u16`: the high half of the f32 bits, see `bf16`).
#[derive(Clone, Copy, Debug)]
pub struct Panels<'a, W = f32> {
    /// `d_out.div_ceil(16)` panels of `[d_in, 16]`, one after the other.
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
}

impl PanelWeight for f32 {
    const OPERANDS: Operands = Operands::F32;
}

impl PanelWeight for u16 {
    const OPERANDS: Operands = Operands::Bf16;
}

/// Panels of bf16 values from f32 panels (each rounded, `bf16::round_bf16`).
pub fn bf16_panels(panels: &[f32], dst: &mut [u16]) {
    let pairs = dst.par_chunks_mut(1 << 14).zip(panels.par_chunks(1 << 14));
    pairs.for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &x)| *d = bf16_bits(x)));
}

/// Floats that [`pack_panels`] writes for a `[d_in, d_out]` matrix.
pub fn panels_len(d_in: usize, d_out: usize) -> usize {
    d_out.div_ceil(PANEL) * PANEL * d_in
}

/// Packs `W: [d_in, d_out]` into panels in `dst` (`panels_len(d_in, d_out)` floats). `w` is
/// row-major `[d_in, d_out]` (HF Conv1D), or `[d_out, d_in]` (HF `nn.Linear`) if `transposed`.
///
/// # Panics
/// If a slice is shorter than the sizes say.
pub fn pack_panels(w: &[f32], d_in: usize, d_out: usize, transposed: bool, dst: &mut [f32]) {
    let strides = if transposed { (1, d_in) } else { (d_out, 1) };
    pack_strided(w, (d_in, d_out), strides, dst);
}

/// Packs the `[d_in, d_out]` matrix whose element `(i, j)` is `w[i·rs + j·cs]` into panels in
/// `dst` (`panels_len(d_in, d_out)` floats): any view of a matrix, transposed or not.
///
/// # Panics
/// If a slice is shorter than the sizes say.
pub fn pack_strided(
    w: &[f32],
    (d_in, d_out): (usize, usize),
    (rs, cs): (usize, usize),
    dst: &mut [f32],
) {
    assert!(dst.len() >= panels_len(d_in, d_out));
    if d_in == 0 || d_out == 0 {
        return;
    }
    assert!((d_in - 1) * rs + (d_out - 1) * cs < w.len(), "pack_strided: view outside w");
    let n_panels = d_out.div_ceil(PANEL);
    // Panels are independent: packed in parallel (a training step packs every weight twice).
    let panels = dst[..n_panels * d_in * PANEL].par_chunks_exact_mut(d_in * PANEL);
    panels.enumerate().for_each(|(p, panel)| pack_panel(w, (d_in, d_out), (rs, cs), p, panel));
}

/// Panel `p` of [`pack_strided`]: columns `16p..16p+16` of the view as `[d_in, 16]`.
fn pack_panel(
    w: &[f32],
    (d_in, d_out): (usize, usize),
    (rs, cs): (usize, usize),
    p: usize,
    panel: &mut [f32],
) {
    let j0 = p * PANEL;
    let whole = j0 + PANEL <= d_out;
    if whole && cs == 1 {
        // A row-major view: each row of the panel is 16 consecutive floats.
        for (i, row) in panel.chunks_exact_mut(PANEL).enumerate() {
            row.copy_from_slice(&w[i * rs + j0..][..PANEL]);
        }
        return;
    }
    let mut first_gathered = 0;
    if whole && rs == 1 {
        // A transposed view: the panel is the transpose of 16 contiguous source rows, done in
        // 8×8 register blocks instead of gathering one float per cache line.
        first_gathered = d_in / LANES * LANES;
        transpose(&w[j0 * cs..], cs, (PANEL, first_gathered), panel, PANEL);
    }
    for (i, row) in panel.chunks_exact_mut(PANEL).enumerate().skip(first_gathered) {
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
            && w.data.len() >= panels_len(d_in, d_out)
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
    let n_panels = d_out.div_ceil(PANEL);
    let groups: Vec<(usize, Vec<f32>)> = (0..n_panels.div_ceil(PANELS_PER_TASK))
        .into_par_iter()
        .map(|g| {
            let p0 = g * PANELS_PER_TASK;
            let p1 = (p0 + PANELS_PER_TASK).min(n_panels);
            (p0 * PANEL, W::OPERANDS.run(|| panel_group(x, rows, w, bias, p0, p1)))
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

/// Panels `p0..p1` for every row: `[rows, (p1 − p0)·16]` (padding columns included).
fn panel_group<W: PanelWeight>(
    x: &[f32],
    rows: usize,
    w: Panels<'_, W>,
    bias: &[f32],
    p0: usize,
    p1: usize,
) -> Vec<f32> {
    let d_in = w.d_in;
    let width = (p1 - p0) * PANEL;
    // The bias of this group's columns, zero-padded to whole panels.
    let mut b = vec![0.0; width];
    let real = w.d_out.min(p1 * PANEL) - p0 * PANEL;
    b[..real].copy_from_slice(&bias[p0 * PANEL..][..real]);
    let mut out = vec![0.0; rows * width];
    let panel = |p: usize| &w.data[p * d_in * PANEL..][..d_in * PANEL];
    let mut p = p0;
    while p < p1 {
        let c = (p - p0) * PANEL;
        if rows == 1 && p + 1 < p1 {
            two_panels_one_row(&x[..d_in], panel(p), panel(p + 1), &b[c..], &mut out[c..]);
            p += 2;
            continue;
        }
        let mut r0 = 0;
        while r0 < rows {
            // Up to 4 rows at a time: 4 rows × 16 columns of accumulators fill 8 registers.
            let group = (rows - r0).min(4);
            let xs = &x[r0 * d_in..(r0 + group) * d_in];
            let dst = &mut out[r0 * width + c..];
            match group {
                1 => one_panel::<W, 1>(xs, panel(p), &b[c..], dst, width),
                2 => one_panel::<W, 2>(xs, panel(p), &b[c..], dst, width),
                3 => one_panel::<W, 3>(xs, panel(p), &b[c..], dst, width),
                _ => one_panel::<W, 4>(xs, panel(p), &b[c..], dst, width),
            }
            r0 += group;
        }
        p += 1;
    }
    out
}

/// `R` rows × one panel: `2R` accumulators start at the bias and take `x[r, i]·W[i, panel]` for
/// `i = 0, 1, …`; row `r` of the result goes to `out[r·stride ..][..16]`.
fn one_panel<W: PanelWeight, const R: usize>(
    x: &[f32],
    panel: &[W],
    bias: &[f32],
    out: &mut [f32],
    stride: usize,
) {
    let d_in = x.len() / R;
    let mut acc = [[load(bias), load(&bias[LANES..])]; R];
    for (i, row) in panel.chunks_exact(PANEL).enumerate() {
        prefetch(panel, (i + AHEAD) * PANEL);
        let (w0, w1) = (W::load8(row), W::load8(&row[LANES..]));
        for (r, a) in acc.iter_mut().enumerate() {
            let xv = f32x8::splat(x[r * d_in + i]);
            a[0] = xv.mul_add(w0, a[0]);
            a[1] = xv.mul_add(w1, a[1]);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        store(&mut out[r * stride..], a[0]);
        store(&mut out[r * stride + LANES..], a[1]);
    }
}

/// One row × two adjacent panels: four independent accumulator chains, the same sums as
/// [`one_panel`] in the same order. `out` receives the 32 columns.
fn two_panels_one_row<W: PanelWeight>(
    x: &[f32],
    left: &[W],
    right: &[W],
    bias: &[f32],
    out: &mut [f32],
) {
    let mut acc = [0, 1, 2, 3].map(|v| load(&bias[v * LANES..]));
    let rows = x.iter().zip(left.chunks_exact(PANEL)).zip(right.chunks_exact(PANEL));
    for (i, ((&xi, l), r)) in rows.enumerate() {
        prefetch(left, (i + AHEAD) * PANEL);
        prefetch(right, (i + AHEAD) * PANEL);
        let xv = f32x8::splat(xi);
        acc[0] = xv.mul_add(W::load8(l), acc[0]);
        acc[1] = xv.mul_add(W::load8(&l[LANES..]), acc[1]);
        acc[2] = xv.mul_add(W::load8(r), acc[2]);
        acc[3] = xv.mul_add(W::load8(&r[LANES..]), acc[3]);
    }
    for (v, a) in acc.iter().enumerate() {
        store(&mut out[v * LANES..], *a);
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
            let mut packed = vec![0.0; panels_len(d_in, d_out)];
            pack_panels(&w, d_in, d_out, false, &mut packed);
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
        let (d_in, d_out) = (5, 19);
        let w: Vec<f32> = (0..d_in * d_out).map(|v| v as f32).collect();
        let wt: Vec<f32> =
            (0..d_out).flat_map(|j| (0..d_in).map(move |i| (i * d_out + j) as f32)).collect();
        let (mut a, mut b) =
            (vec![1.0; panels_len(d_in, d_out)], vec![2.0; panels_len(d_in, d_out)]);
        pack_panels(&w, d_in, d_out, false, &mut a);
        pack_panels(&wt, d_in, d_out, true, &mut b);
        assert_eq!(a, b);
        // Panel 1, row 2, column 3 is W[2, 19]: padding, zero. Column 2 is W[2, 18].
        assert_eq!(a[(d_in + 2) * PANEL + 3], 0.0);
        assert_eq!(a[(d_in + 2) * PANEL + 2], (2 * d_out + 18) as f32);
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
            let mut packed = vec![0.0; panels_len(d_in, d_out)];
            pack_panels(&w, d_in, d_out, false, &mut packed);
            let mut half = vec![0u16; packed.len()];
            bf16_panels(&packed, &mut half);
            let mut got = vec![f32::NAN; rows * d_out];
            skinny_linear(&x, rows, Panels { data: &half, d_in, d_out }, &b, &mut got);
            assert_eq!(got, want, "{rows}x{d_in}x{d_out}");
        }
    }
}
