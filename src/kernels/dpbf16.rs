//! The bf16 products on `vdpbf16ps` (AVX512-BF16): the same bits as the portable bf16 path,
//! from an instruction that does twice the multiply-adds of an f32 FMA per cycle.
//!
//! `vdpbf16ps acc, a, b` treats each 32-bit lane of `a` and `b` as a pair of bf16 values
//! (element `2i` in the low half, `2i + 1` in the high half) and computes, per lane,
//! ```text
//! acc ← (acc + a[2i+1]·b[2i+1]) + a[2i]·b[2i]      two f32 additions, each rounded to nearest even,
//!                                                  subnormal inputs read as 0, results flushed
//! ```
//! A product of two bf16 values is exact in f32, so each step is the fused multiply-add of the
//! portable path (`bf16`) — if the pairs are formed so that the *high* half holds the earlier
//! element. A pair here is therefore `(high, low) = (x_p, x_{p+1})` for even `p`: the hardware
//! then adds `p` before `p + 1`, and the chain runs in increasing `p` exactly as
//! `bf16::product_reference` defines it. (Checked on this CPU: a Zen 4 agrees with that
//! sequential definition on 3.2 million random lanes, subnormals and infinities included.)
//! When the inner length is odd the last pair is padded with `−0` in `A` and `+0` in `B`: the
//! padded product is `−0`, and `x + (−0) = x` for every `x`, `+0` included, so the padding
//! changes no bit.
//!
//! Layout: `B` is packed into 16-column panels as in `gemm`, but each panel row is a *pair* of
//! `B`'s rows, 16 dwords (one zmm); `A`'s block holds pairs too, and the kernel broadcasts one
//! dword per row and step. The register block is [`MR`] rows × two panels (32 columns): 16
//! independent accumulators hide the instruction's latency (6 cycles). Operands are rounded
//! and paired by `vcvtne2ps2bf16`, which rounds exactly as `bf16::round_bf16` (tested on every
//! class of float), then one shuffle (two rows' values side by side) or one rotation (a row's
//! consecutive values, whose natural order puts the earlier one low).
//!
//! Where it sits: `gemm::rows_product` (linear layers) and the attention kernel's tile
//! products ([`tile_gemm`], [`tile_gemm_nn`], twins of `simd`'s) run on these kernels when
//! their operands are `Operands::Bf16Avx512`, which `kernels::Bf16::native` picks when the CPU
//! has the instructions ([`available`]). The portable path stays the definition and runs
//! everywhere; the tests here and in `bf16` check the two against each other bit for bit.

use super::bf16::round_bf16;
use super::simd;
use super::skinny::PANEL;
use crate::tensor::MatRef;
use rayon::prelude::*;
use std::cell::RefCell;

/// Rows of the register block (with two panels, 16 accumulators: measured best of 6, 8, 12, 14).
pub const MR: usize = 8;

/// Whether this CPU runs this module's kernels (AVX512-F, -BW and -BF16).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The pair `(x, y)` of two values already rounded to bf16: `x`'s high 16 bits above `y`'s.
#[inline(always)]
fn pair(x: f32, y: f32) -> u32 {
    (x.to_bits() & 0xffff_0000) | (y.to_bits() >> 16)
}

/// The low half of a padding pair in `A`: `−0` in bf16 (see the module doc). `B`'s is `+0`.
const A_PAD: u32 = 0x8000;

/// Panics unless the CPU runs the instructions this module's kernels use.
fn require() {
    assert!(available(), "vdpbf16ps kernel called on a CPU without AVX512-BF16");
}

/// Dwords that [`pack_b`] writes for a `[k, n]` matrix: `k.div_ceil(2)` pair rows per panel.
pub fn pairs_len(k: usize, n: usize) -> usize {
    k.div_ceil(2) * n.div_ceil(PANEL) * PANEL
}

/// Packs `B: [k, n]` (any view) into panels of pairs in `dst` (`pairs_len(k, n)` dwords):
/// panel `p` holds `[k.div_ceil(2), 16]` dwords, pair row `q` being rows `2q` and `2q + 1` of
/// columns `16p..16p+16`, rounded to bf16; padding columns, and an odd last row's partner, are
/// `+0`. Panels are packed in parallel.
///
/// # Panics
/// If the CPU lacks the instructions or `dst` is too short.
pub fn pack_b(b: MatRef<f32>, dst: &mut [u32]) {
    require();
    let (k, n) = (b.rows, b.cols);
    let per_panel = k.div_ceil(2) * PANEL;
    assert!(dst.len() >= pairs_len(k, n), "pack_b: destination too small");
    if k == 0 || n == 0 {
        return;
    }
    let panels = dst[..pairs_len(k, n)].par_chunks_exact_mut(per_panel);
    panels.enumerate().for_each(|(p, panel)| pack_b_panel(b, p * PANEL, panel));
}

/// Panel of [`pack_b`] whose first column is `j0`.
fn pack_b_panel(b: MatRef<f32>, j0: usize, panel: &mut [u32]) {
    let (k, width) = (b.rows, PANEL.min(b.cols - j0));
    if b.cs == 1 {
        // Row-major: each pair row joins 16 (or `width`) consecutive floats of two rows.
        // SAFETY: the CPU has the instructions (`pack_b` required them).
        unsafe { x86::pair_panel(b.data, b.rs, (k, j0, width), panel) };
    } else if b.rs == 1 {
        // Transposed (`Wᵀ`): column `j` of `B` is row `j` of `W`, pairs along it.
        let mut line = vec![0; k.div_ceil(2)];
        for c in 0..width {
            // SAFETY: as above.
            unsafe { x86::row_pairs(&b.data[(j0 + c) * b.cs..][..k], &mut line) };
            for (q, &d) in line.iter().enumerate() {
                panel[q * PANEL + c] = d;
            }
        }
        panel.chunks_exact_mut(PANEL).for_each(|row| row[width..].fill(0));
    } else {
        for (q, out) in panel.chunks_exact_mut(PANEL).enumerate() {
            for (c, d) in out.iter_mut().enumerate() {
                let at = |p: usize| match p < k && c < width {
                    true => round_bf16(b.at(p, j0 + c)),
                    false => 0.0,
                };
                *d = pair(at(2 * q), at(2 * q + 1));
            }
        }
    }
}

/// The rows of `a: [m, k]` (row stride `lda`) as pairs of consecutive values into
/// `out: [m, k.div_ceil(2)]`, an odd last value paired with `−0`.
fn a_rows_pairs(a: &[f32], lda: usize, (m, k): (usize, usize), out: &mut Vec<u32>) {
    require();
    let q = k.div_ceil(2);
    out.resize(m * q, 0);
    for (i, out) in out.chunks_exact_mut(q).enumerate() {
        // SAFETY: the CPU has the instructions (required above).
        unsafe { x86::row_pairs(&a[i * lda..][..k], out) };
        if k % 2 == 1 {
            out[q - 1] = out[q - 1] & 0xffff_0000 | A_PAD;
        }
    }
}

/// Rows `first..first + rows`, columns `kb..kb + kc` of `A` (any view) as pairs in `pairs`;
/// returns where pair `(r, s)` is: `pairs[r·row + s·step]` as `(row, step)`. An odd last
/// column is paired with `−0`.
///
/// # Panics
/// If the CPU lacks the instructions or the block lies outside `A`.
pub fn a_block(
    a: MatRef<f32>,
    (first, rows): (usize, usize),
    (kb, kc): (usize, usize),
    pairs: &mut Vec<u32>,
) -> (usize, usize) {
    require();
    assert!(first + rows <= a.rows && kb + kc <= a.cols, "a_block: block outside A");
    let q = kc.div_ceil(2);
    pairs.resize(rows * q, 0);
    if rows == 0 || kc == 0 {
        return (q, 1);
    }
    let (data, rs, cs) = (a.data, a.rs, a.cs);
    if cs == 1 {
        a_rows_pairs(&data[first * rs + kb..], rs, (rows, kc), pairs);
        (q, 1)
    } else if rs == 1 {
        // A transposed activation (∂W = xᵀ·∂y): columns `kb + 2s`, `kb + 2s + 1` of `A` are
        // rows of the activation, `rows` consecutive floats each; their pairs go to `s·rows..`.
        pair_rows(&data[first + kb * cs..], cs, (kc, rows), A_PAD, pairs);
        (1, rows)
    } else {
        for (r, out) in pairs.chunks_exact_mut(q).enumerate() {
            for (s, d) in out.iter_mut().enumerate() {
                let x = round_bf16(a.at(first + r, kb + 2 * s));
                *d = match 2 * s + 1 < kc {
                    true => pair(x, round_bf16(a.at(first + r, kb + 2 * s + 1))),
                    false => x.to_bits() & 0xffff_0000 | A_PAD,
                };
            }
        }
        (q, 1)
    }
}

/// `C ← A·B` (`accumulate = false`) or `C ← C + A·B` for `C: [m, 16·w]` (row stride `ldc`),
/// `A` as `m` rows of `q` pairs (pair `(r, s)` at `a[r·row + s·step]`, [`a_block`]'s layout)
/// and `B` as `w` (1 or 2) panel blocks of `q` pair rows of 16 dwords, `panel` dwords apart,
/// pair row `s` at `s·ldb` ([`pack_b`]'s layout: `ldb` = 16).
///
/// # Panics
/// If `w` is not 1 or 2, a slice is shorter than the sizes say, or the CPU lacks the
/// instructions ([`available`]).
#[allow(clippy::too_many_arguments)]
pub fn tile_product(
    (m, q, w): (usize, usize, usize),
    a: &[u32],
    (row, step): (usize, usize),
    (b, panel, ldb): (&[u32], usize, usize),
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    assert!(w == 1 || w == 2, "tile_product: {w} panels");
    if m == 0 {
        return;
    }
    require();
    assert!((m - 1) * ldc + w * PANEL <= c.len(), "tile_product: C too small");
    if q == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..w * PANEL].fill(0.0));
        }
        return;
    }
    assert!((m - 1) * row + (q - 1) * step < a.len(), "tile_product: A too small");
    assert!((w - 1) * panel + (q - 1) * ldb + PANEL <= b.len(), "tile_product: B too small");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the instructions (asserted), and the asserts above bound every index
    // the kernel touches: pairs (r, s) of A for r < m, s < q, rows r < m of C (16·w floats)
    // and q pair rows of each of B's w panels.
    unsafe {
        let (a, b, c) = ((a.as_ptr(), row, step), (b.as_ptr(), panel, ldb), c.as_mut_ptr());
        match w {
            1 => x86::sweep::<1>(m, q, a, b, c, ldc, accumulate),
            _ => x86::sweep::<2>(m, q, a, b, c, ldc, accumulate),
        }
    }
}

thread_local! {
    /// The pairs of the two operands of the attention twins below (reused across calls).
    static TILE_PAIRS: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `simd::tile_gemm` (`C ← XᵀY` or `C += XᵀY`, `X: [k, m]`, `Y: [k, n]` with the inner
/// dimension as rows) on `vdpbf16ps`, for operands already rounded to bf16 (the attention
/// tiles): the same bits. `X` is paired row `2s` with row `2s + 1`, as `Y` is (`tile_pairs`).
///
/// # Panics
/// As `simd::tile_gemm`, or if the CPU lacks the instructions.
#[allow(clippy::too_many_arguments)]
pub fn tile_gemm(
    dims: (usize, usize, usize),
    x: &[f32],
    ldx: usize,
    y: &[f32],
    ldy: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    tile_pairs(dims, Left::Transposed(x, ldx), (y, ldy), (c, ldc), accumulate)
}

/// `simd::tile_gemm_nn` (`C ← A·Y` or `C += A·Y`, `A: [m, k]` row-major) on `vdpbf16ps`, as
/// [`tile_gemm`]: `A`'s rows are paired along themselves.
///
/// # Panics
/// As `simd::tile_gemm_nn`, or if the CPU lacks the instructions.
#[allow(clippy::too_many_arguments)]
pub fn tile_gemm_nn(
    dims: (usize, usize, usize),
    a: &[f32],
    lda: usize,
    y: &[f32],
    ldy: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    tile_pairs(dims, Left::RowMajor(a, lda), (y, ldy), (c, ldc), accumulate)
}

/// The left operand of [`tile_pairs`] with its row stride: `X: [k, m]` (the product is `XᵀY`,
/// `simd::tile_gemm`) or `A: [m, k]` (`A·Y`, `simd::tile_gemm_nn`).
#[derive(Clone, Copy)]
enum Left<'a> {
    Transposed(&'a [f32], usize),
    RowMajor(&'a [f32], usize),
}

/// `C (+)= Left·Y` for `C: [m, n]`: the columns up to the last multiple of 16 on `vdpbf16ps`
/// (both operands paired into this thread's scratch), the rest (8 at most) — or all of a
/// product too small for a panel — on `simd`'s kernel for that left operand, whose chains are
/// these.
fn tile_pairs(
    (m, n, k): (usize, usize, usize),
    left: Left,
    (y, ldy): (&[f32], usize),
    (c, ldc): (&mut [f32], usize),
    accumulate: bool,
) {
    let on_simd = |(m, n, k), y: &[f32], c: &mut [f32]| match left {
        Left::Transposed(x, ldx) => simd::tile_gemm((m, n, k), x, ldx, y, ldy, c, ldc, accumulate),
        Left::RowMajor(a, lda) => simd::tile_gemm_nn((m, n, k), a, lda, y, ldy, c, ldc, accumulate),
    };
    let wide = n / PANEL * PANEL;
    if wide == 0 || m == 0 || k == 0 {
        return on_simd((m, n, k), y, c);
    }
    if wide < n {
        on_simd((m, n - wide, k), &y[wide..], &mut c[wide..]);
    }
    TILE_PAIRS.with_borrow_mut(|(ap, yp)| {
        let q = k.div_ceil(2);
        let strides = match left {
            Left::Transposed(x, ldx) => {
                pair_rows(x, ldx, (k, m), A_PAD, ap);
                (1, m)
            }
            Left::RowMajor(a, lda) => {
                a_rows_pairs(a, lda, (m, k), ap);
                (q, 1)
            }
        };
        pair_rows(y, ldy, (k, wide), 0, yp);
        tile_columns((m, q, wide), (&ap[..], strides), (&yp[..], wide), c, ldc, accumulate);
    })
}

/// Rows `2s` and `2s + 1` of `x: [k, width]` (row stride `ld`) paired into `out: [q, width]`,
/// an odd last row with `pad`.
fn pair_rows(x: &[f32], ld: usize, (k, width): (usize, usize), pad: u32, out: &mut Vec<u32>) {
    require();
    out.resize(k.div_ceil(2) * width, 0);
    for (s, out) in out.chunks_exact_mut(width).enumerate() {
        let y = (2 * s + 1 < k).then(|| &x[(2 * s + 1) * ld..][..width]);
        // SAFETY: the CPU has the instructions (required above).
        unsafe { x86::vertical_pairs(&x[2 * s * ld..][..width], y, pad, out) };
    }
}

/// `C[:, 0..wide] (+)= A·B` over `B`'s pairs `[q, wide]` (row stride `wide`), two 16-column
/// panels at a time.
fn tile_columns(
    (m, q, wide): (usize, usize, usize),
    (a, strides): (&[u32], (usize, usize)),
    (b, ldb): (&[u32], usize),
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let mut j = 0;
    while j < wide {
        let w = if j + 2 * PANEL <= wide { 2 } else { 1 };
        tile_product((m, q, w), a, strides, (&b[j..], PANEL, ldb), &mut c[j..], ldc, accumulate);
        j += w * PANEL;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::MR;
    use std::arch::x86_64::*;

    /// `A`'s pairs: the start, and the strides of a row and of a step (dwords).
    pub(super) type PairsA = (*const u32, usize, usize);

    /// Row blocks of [`MR`], then of 8, 4, 2 and 1 for the rest; `W` panels (`b`: the first,
    /// the stride between panels and the stride between pair rows).
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn sweep<const W: usize>(
        m: usize,
        q: usize,
        (a, row, step): PairsA,
        b: (*const u32, usize, usize),
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut i = 0;
        while i + MR <= m {
            micro::<MR, W>(q, (a.add(i * row), row, step), b, c.add(i * ldc), ldc, accumulate);
            i += MR;
        }
        for rows in [8, 4, 2, 1] {
            if i + rows <= m {
                let (a, c) = ((a.add(i * row), row, step), c.add(i * ldc));
                match rows {
                    8 => micro::<8, W>(q, a, b, c, ldc, accumulate),
                    4 => micro::<4, W>(q, a, b, c, ldc, accumulate),
                    2 => micro::<2, W>(q, a, b, c, ldc, accumulate),
                    _ => micro::<1, W>(q, a, b, c, ldc, accumulate),
                }
                i += rows;
            }
        }
    }

    /// `R` rows × `16·W` columns: for each pair row `s`, `W` loads of `B` and, per row, a
    /// broadcast of `A`'s pair and `W` `vdpbf16ps`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn micro<const R: usize, const W: usize>(
        q: usize,
        (a, row, step): PairsA,
        (b, panel, ldb): (*const u32, usize, usize),
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); W]; R];
        if accumulate {
            for (r, x) in acc.iter_mut().enumerate() {
                for (v, x) in x.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(c.add(r * ldc + 16 * v));
                }
            }
        }
        for s in 0..q {
            let mut bv = [_mm512_setzero_si512(); W];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_si512(b.add(v * panel + s * ldb).cast());
            }
            let a_s = a.add(s * step);
            for (r, x) in acc.iter_mut().enumerate() {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a_s.add(r * row) as i32));
                for (x, &bv) in x.iter_mut().zip(&bv) {
                    *x = _mm512_dpbf16_ps(*x, av, std::mem::transmute::<__m512i, __m512bh>(bv));
                }
            }
        }
        for (r, x) in acc.iter().enumerate() {
            for (v, x) in x.iter().enumerate() {
                _mm512_storeu_ps(c.add(r * ldc + 16 * v), *x);
            }
        }
    }

    /// A mask of the first `n` (≤ 16) lanes.
    fn first(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// The word shuffle that turns `vcvtne2ps2bf16(x, y)` (16 words of `y`, then 16 of `x`)
    /// into pairs: word 2j of the result takes word j (y's value), word 2j + 1 word 16 + j (x's).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn interleave() -> __m512i {
        _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20,
            4, 19, 3, 18, 2, 17, 1, 16, 0,
        )
    }

    /// `out[j] = (bf16(x[j]), bf16(y[j]))` — `x` in the high half — for `j < out.len()`, or
    /// `(bf16(x[j]), pad)` without `y`; 16 at a time, `vcvtne2ps2bf16` then one word shuffle.
    /// `x` and `y` hold at least `out.len()` floats.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
    pub(super) unsafe fn vertical_pairs(x: &[f32], y: Option<&[f32]>, pad: u32, out: &mut [u32]) {
        let n = out.len();
        assert!(x.len() >= n && y.is_none_or(|y| y.len() >= n), "vertical_pairs: short rows");
        let interleave = interleave();
        for j in (0..n).step_by(16) {
            let mask = first((n - j).min(16));
            let xv = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(j));
            let pairs = match y {
                Some(y) => {
                    let yv = _mm512_maskz_loadu_ps(mask, y.as_ptr().add(j));
                    let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(xv, yv));
                    _mm512_permutexvar_epi16(interleave, both)
                }
                None => {
                    let high: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(xv));
                    let high = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(high));
                    _mm512_or_si512(high, _mm512_set1_epi32(pad as i32))
                }
            };
            _mm512_mask_storeu_epi32(out.as_mut_ptr().add(j).cast(), mask, pairs);
        }
    }

    /// [`super::pack_b`]'s panel of a row-major `B` (`data`, row stride `rs`, `k` rows) from
    /// column `j0`, `width ≤ 16` columns: pair row `q` is [`vertical_pairs`] of rows `2q` and
    /// `2q + 1` (`+0` for a missing odd row and past `width`). The whole panel in one call, so
    /// that the shuffle's indices and the mask are set up once per panel rather than once per
    /// pair row, as calling `vertical_pairs` for each row did (`pack_b` was ≈ 6 % of a digits
    /// bf16 step, `perf`).
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
    pub(super) unsafe fn pair_panel(
        data: &[f32],
        rs: usize,
        (k, j0, width): (usize, usize, usize),
        panel: &mut [u32],
    ) {
        let q = k.div_ceil(2);
        assert!(width <= 16 && panel.len() >= q * 16, "pair_panel: panel too small");
        assert!(k == 0 || (k - 1) * rs + j0 + width <= data.len(), "pair_panel: B too small");
        let interleave = interleave();
        let mask = first(width);
        let at = data.as_ptr().add(j0);
        for (s, out) in panel.chunks_exact_mut(16).take(q).enumerate() {
            let x = _mm512_maskz_loadu_ps(mask, at.add(2 * s * rs));
            let y = match 2 * s + 1 < k {
                true => _mm512_maskz_loadu_ps(mask, at.add((2 * s + 1) * rs)),
                false => _mm512_setzero_ps(),
            };
            let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(x, y));
            let pairs = _mm512_permutexvar_epi16(interleave, both);
            _mm512_storeu_si512(out.as_mut_ptr().cast(), pairs);
        }
    }

    /// Consecutive values as pairs: `out[s] = (bf16(x[2s]), bf16(x[2s + 1]))`, an odd last one
    /// paired with `+0`; `out` holds `x.len().div_ceil(2)` dwords. 32 values at a time:
    /// `vcvtne2ps2bf16` gives the pairs with the earlier value in the low half, and a 16-bit
    /// rotation of each dword swaps the halves.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
    pub(super) unsafe fn row_pairs(x: &[f32], out: &mut [u32]) {
        let n = x.len();
        assert!(out.len() >= n.div_ceil(2), "row_pairs: output too short");
        for j in (0..n).step_by(32) {
            let rest = n - j;
            let lo = _mm512_maskz_loadu_ps(first(rest.min(16)), x.as_ptr().add(j));
            let hi = _mm512_maskz_loadu_ps(
                first(rest.saturating_sub(16).min(16)),
                x.as_ptr().add(j + 16),
            );
            let pairs: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            let pairs = _mm512_rol_epi32::<16>(pairs);
            let mask = first(rest.div_ceil(2).min(16));
            _mm512_mask_storeu_epi32(out.as_mut_ptr().add(j / 2).cast(), mask, pairs);
        }
    }
}

/// Other targets have no `vdpbf16ps`: [`available`] is false there, so [`require`] stops every
/// caller before these.
#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    pub(super) unsafe fn vertical_pairs(_: &[f32], _: Option<&[f32]>, _: u32, _: &mut [u32]) {
        unreachable!("vdpbf16ps kernels need x86-64")
    }

    pub(super) unsafe fn row_pairs(_: &[f32], _: &mut [u32]) {
        unreachable!("vdpbf16ps kernels need x86-64")
    }

    pub(super) unsafe fn pair_panel(_: &[f32], _: usize, _: (usize, usize, usize), _: &mut [u32]) {
        unreachable!("vdpbf16ps kernels need x86-64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::bf16::tests::SPECIAL_BITS;
    use crate::rng::Philox;

    /// `bf16::tests::SPECIAL_BITS` as floats, then `n` random words.
    fn awkward_floats(n: usize) -> Vec<f32> {
        let philox = Philox::new(5);
        let random = (0..n as u64).map(|i| philox.u32_at(0, i));
        SPECIAL_BITS.into_iter().chain(random).map(f32::from_bits).collect()
    }

    /// The definition of a pair (see the module doc), with `pad` for a missing low half.
    fn pair_of(x: f32, y: Option<f32>, pad: u32) -> u32 {
        let high = round_bf16(x).to_bits() & 0xffff_0000;
        high | y.map_or(pad, |y| round_bf16(y).to_bits() >> 16)
    }

    /// `vcvtne2ps2bf16` rounds as `bf16::round_bf16` does, bit for bit, on every class of
    /// input; odd lengths and lengths that leave a partial vector come out right.
    #[test]
    fn hardware_rounding_and_pairing_is_the_definition() {
        if !available() {
            return;
        }
        let x = awkward_floats(1 << 16);
        for n in [1, 15, 16, 17, 31, 32, 33, 1000, x.len() - 1] {
            let (xs, ys) = (&x[..n], &x[x.len() - n..]);
            let mut got = vec![7; n];
            // SAFETY: the CPU has the instructions (checked above).
            unsafe { x86::vertical_pairs(xs, Some(ys), 0, &mut got) };
            let want: Vec<u32> = (0..n).map(|j| pair_of(xs[j], Some(ys[j]), 0)).collect();
            assert_eq!(got, want, "vertical, {n}");
            // SAFETY: as above.
            unsafe { x86::vertical_pairs(xs, None, A_PAD, &mut got) };
            let want: Vec<u32> = (0..n).map(|j| pair_of(xs[j], None, A_PAD)).collect();
            assert_eq!(got, want, "vertical with padding, {n}");
            let mut got = vec![7; n.div_ceil(2) + 1];
            // SAFETY: as above.
            unsafe { x86::row_pairs(xs, &mut got) };
            let want: Vec<u32> = (0..n.div_ceil(2))
                .map(|s| pair_of(xs[2 * s], xs.get(2 * s + 1).copied(), 0))
                .collect();
            assert_eq!(got[..want.len()], want, "along a row, {n}");
            assert_eq!(got[want.len()], 7, "row_pairs writes only its pairs");
        }
    }

    /// `pack_b` and `a_block` on every layout (row-major, transposed, strided), odd sizes
    /// and a partial panel, against the definition element by element.
    #[test]
    fn packing_is_the_definition_on_every_layout() {
        if !available() {
            return;
        }
        let data = awkward_floats(4000);
        let (rows, cols) = (13, 37);
        let views = [
            MatRef::new(&data[..rows * cols], rows, cols),
            MatRef::new(&data[..rows * cols], cols, rows).t(),
            MatRef::strided(&data, rows, cols, 2 * cols, 2),
        ];
        for (v, m) in views.into_iter().enumerate() {
            let mut b = vec![7; pairs_len(rows, cols)];
            pack_b(m, &mut b);
            let q_rows = rows.div_ceil(2);
            for p in 0..cols.div_ceil(PANEL) {
                for q in 0..q_rows {
                    for c in 0..PANEL {
                        let j = p * PANEL + c;
                        let at = |i: usize| (i < rows && j < cols).then(|| m.at(i, j));
                        let want = pair_of(
                            at(2 * q).unwrap_or(0.0),
                            Some(at(2 * q + 1).unwrap_or(0.0)),
                            0,
                        );
                        let got = b[(p * q_rows + q) * PANEL + c];
                        assert_eq!(got, want, "layout {v}: B panel {p} pair row {q} column {c}");
                    }
                }
            }
            let (first, kb, kc) = (3, 4, 9);
            let mut a = Vec::new();
            let (row, step) = a_block(m, (first, rows - first), (kb, kc), &mut a);
            for r in 0..rows - first {
                for s in 0..kc.div_ceil(2) {
                    let y = (2 * s + 1 < kc).then(|| m.at(first + r, kb + 2 * s + 1));
                    let want = pair_of(m.at(first + r, kb + 2 * s), y, A_PAD);
                    assert_eq!(a[r * row + s * step], want, "layout {v}: A pair ({r}, {s})");
                }
            }
        }
    }
}
