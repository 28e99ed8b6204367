//! f32x8 building blocks of the fused kernels: a register-blocked tile product, a fast `2^x`,
//! 8×8 transposes and fixed-order horizontal sums.
//!
//! ## Tile product
//! [`tile_gemm`] computes `C[m×n] ← XᵀY` (or `+=`) with `X: [k×m]`, `Y: [k×n]` for the small
//! blocks FlashAttention works on (64×64 tiles, `k` = a head dimension or a tile width). Unlike
//! `sgemm` it packs nothing: the callers keep both operands as rows indexed by the inner
//! dimension `p` (`n` a multiple of 8), which is exactly the layout a register kernel streams.
//! The kernel holds an `MR × 8·NV` block of `C` in `MR·NV` AVX registers and, for each `p`,
//! loads `NV` vectors of `Y`'s row `p`, broadcasts `MR` consecutive scalars of `X`'s row `p`,
//! and issues `MR·NV` fused multiply-adds. With `MR = 6, NV = 2` that is 12
//! independent accumulators (enough to hide the 4-cycle FMA latency at 2 FMAs per cycle) and 8
//! loads per 12 FMAs, within the 16 ymm registers of AVX2.
//!
//! Every element of `C` is `C₀ + Σ_p X_pi·Y_pj` summed in increasing `p` — a fixed order, so the
//! result never depends on threads or on how the caller splits work. [`tile_gemm_nn`] is the
//! same kernel reading its left operand row-major (`C ← A·Y`).
//!
//! ## exp2
//! [`exp2`] evaluates `2^x = 2^n · 2^f` with `n = round(x)`, `f = x − n ∈ [−½, ½]`, `2^f` by the
//! degree-6 minimax polynomial of Cephes' `exp2f` (relative error ≤ 2e-7, tested below), and
//! `2^n` built directly in the exponent bits. Lanes below −127 (including −∞, the masked logits)
//! give exactly 0; NaN stays NaN. The softmax calls it with `x ≤ 0` only.

use crate::io::safetensors::bf16_to_f32;
use wide::{f32x8, u32x8};

/// Lanes per SIMD vector.
pub const LANES: usize = 8;

/// Loads 8 floats from the start of `src` (which must hold at least 8).
#[inline(always)]
pub fn load(src: &[f32]) -> f32x8 {
    let arr: [f32; LANES] = src[..LANES].try_into().expect("8 floats");
    f32x8::from(arr)
}

/// A number a kernel streams from memory and computes on as f32: `f32` itself, or a bf16 value
/// kept as `u16` (the high half of the f32's bits, see `bf16`), which widens exactly by a 16-bit
/// shift. Half the bytes is what a memory-bound kernel (decoding) gains from bf16.
pub trait Stored: Copy + Send + Sync {
    /// The first 8 elements of `src` as f32.
    fn load8(src: &[Self]) -> f32x8;
}

impl Stored for f32 {
    #[inline(always)]
    fn load8(src: &[f32]) -> f32x8 {
        load(src)
    }
}

impl Stored for u16 {
    #[inline(always)]
    fn load8(src: &[u16]) -> f32x8 {
        let a: [u16; LANES] = src[..LANES].try_into().expect("8 values");
        f32x8::from(a.map(bf16_to_f32))
    }
}

/// Stores 8 floats at the start of `dst`.
#[inline(always)]
pub fn store(dst: &mut [f32], v: f32x8) {
    dst[..LANES].copy_from_slice(&v.to_array());
}

/// Copies `src` into the start of `dst` with 8-float moves (then single floats), inline. For the
/// short rows that packing loops copy by the thousand (16 to 64 floats), `copy_from_slice`
/// compiles to a call to `memcpy`, whose set-up costs more than the copy.
#[inline(always)]
pub fn copy_short(dst: &mut [f32], src: &[f32]) {
    let dst = &mut dst[..src.len()];
    let mut d = dst.chunks_exact_mut(LANES);
    let mut s = src.chunks_exact(LANES);
    for (d, s) in (&mut d).zip(&mut s) {
        store(d, load(s));
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = s;
    }
}

/// Asks the CPU to start loading the cache line that holds `base[at]` into L1, so that a stream
/// read a little later finds it there. `at` may lie past the end of `base`: a prefetch reads
/// nothing and never faults. Does nothing on other architectures.
#[inline(always)]
pub fn prefetch<T>(base: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is only a hint to the cache; it neither reads into a register nor
    // faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(base.as_ptr().wrapping_add(at).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (base, at);
}

/// The sum of the 8 lanes, in a fixed pairwise order (not `reduce_add`, whose order is the
/// crate's business).
#[inline(always)]
pub fn hsum(v: f32x8) -> f32 {
    let a = v.to_array();
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

/// `a·b`, eight lanes at a time, lanes and tail combined in a fixed order.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = f32x8::ZERO;
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        acc = load(x).mul_add(load(y), acc);
    }
    hsum(acc) + tail
}

/// `2^x` per lane for `x ≤ 127`; `x < −127` (and −∞) → 0, NaN → NaN. See the module doc.
#[inline(always)]
pub fn exp2(x: f32x8) -> f32x8 {
    // Cephes exp2f: 2^f ≈ 1 + f·P(f) on [−½, ½].
    const P: [f32; 6] = [
        1.535_336_2e-4,
        1.339_887_4e-3,
        9.618_438e-3,
        5.550_332_5e-2,
        2.402_264_8e-1,
        6.931_472e-1,
    ];
    // vmaxps returns its second operand when either is NaN, so NaN passes through.
    let x = f32x8::splat(-127.0).fast_max(x);
    let n = x.round_ties_even();
    let f = x - n;
    let mut poly = f32x8::splat(P[0]);
    for &c in &P[1..] {
        poly = poly.mul_add(f, f32x8::splat(c));
    }
    let two_f = poly.mul_add(f, f32x8::ONE);
    // n + 2²³ + 127 holds the biased exponent n + 127 ∈ [0, 254] in its low mantissa bits;
    // shifting left by 23 moves it into the exponent field (and the 2²³ bits out of the word).
    // n = −127 gives the bit pattern 0, i.e. 2^n = 0.
    let biased: u32x8 = (n + f32x8::splat(8_388_608.0 + 127.0)).to_bits();
    two_f * f32x8::from_bits(biased << 23)
}

/// `dst[j·ld_dst + i] = src[i·ld_src + j]` for `i < rows`, `j < cols` (both multiples of 8), by
/// 8×8 register transposes.
///
/// # Panics
/// If `rows` or `cols` is not a multiple of 8 or a view reaches outside its slice.
pub fn transpose(
    src: &[f32],
    ld_src: usize,
    (rows, cols): (usize, usize),
    dst: &mut [f32],
    ld_dst: usize,
) {
    assert!(rows % LANES == 0 && cols % LANES == 0, "transpose: {rows}x{cols} not in 8x8 blocks");
    if rows == 0 || cols == 0 {
        return;
    }
    assert!((rows - 1) * ld_src + cols <= src.len(), "transpose: source too small");
    assert!((cols - 1) * ld_dst + rows <= dst.len(), "transpose: destination too small");
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for i in (0..rows).step_by(LANES) {
        for j in (0..cols).step_by(LANES) {
            // SAFETY: rows i..i+8 < rows and columns j..j+8 < cols of `src`, and the transposed
            // positions in `dst`, are inside the slices (asserted above); `dst` is a `&mut`.
            unsafe {
                let block: [f32x8; LANES] =
                    std::array::from_fn(|r| load_ptr(s.add((i + r) * ld_src + j)));
                for (r, v) in f32x8::transpose(block).into_iter().enumerate() {
                    d.add((j + r) * ld_dst + i)
                        .cast::<[f32; LANES]>()
                        .write_unaligned(v.to_array());
                }
            }
        }
    }
}

/// `C ← XᵀY` (`accumulate = false`) or `C ← C + XᵀY` (`accumulate = true`), for `C: [m, n]`.
///
/// Both operands are stored with the inner dimension `k` as their rows: `X: [k, m]` with row
/// stride `ldx` and `Y: [k, n]` with row stride `ldy`, so `C_ij = Σ_p X[p, i]·Y[p, j]`. Row `i` of
/// `C` is `c[i·ldc ..][..n]`. `n` must be a multiple of 8 (callers pad to it).
///
/// Why this one form: for every product of the attention kernels one can choose which operand
/// plays `X` and whether to compute `C` or `Cᵀ` so that both operands are rows the kernel has
/// packed anyway. Then the register kernel reads `X[p, i..i+MR]` (contiguous scalars it
/// broadcasts) and `Y[p, j..j+8·NV]` (contiguous vectors) — no strided access at all.
///
/// # Panics
/// If `n` is not a multiple of 8 or a view reaches outside its slice.
#[allow(clippy::too_many_arguments)]
pub fn tile_gemm(
    (m, n, k): (usize, usize, usize),
    x: &[f32],
    ldx: usize,
    y: &[f32],
    ldy: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    assert!(n % LANES == 0, "tile_gemm: n = {n} is not a multiple of {LANES}");
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "tile_gemm: C too small");
    if k == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    assert!((k - 1) * ldx + m <= x.len(), "tile_gemm: X too small");
    assert!((k - 1) * ldy + n <= y.len(), "tile_gemm: Y too small");
    let ops = Operands {
        x: x.as_ptr(),
        x_row: 1,
        x_step: ldx,
        y: y.as_ptr(),
        ldy,
        c: c.as_mut_ptr(),
        ldc,
        k,
    };
    // SAFETY: the asserts above bound every index the kernels touch (rows i < m, columns j < n,
    // inner p < k of X, Y and C); `c` is a `&mut`, so it aliases neither operand.
    unsafe { run::<true>(&ops, m, n, accumulate) }
}

/// `C ← A·Y` or `C ← C + A·Y` with `A: [m, k]` row-major (row stride `lda`), `Y: [k, n]`
/// (row stride `ldy`), `C: [m, n]` (row stride `ldc`); the same kernel as [`tile_gemm`], for the
/// one product whose left operand is naturally row-major (`dQ = dS K` in the backward).
///
/// # Panics
/// If `n` is not a multiple of 8 or a view reaches outside its slice.
#[allow(clippy::too_many_arguments)]
pub fn tile_gemm_nn(
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    y: &[f32],
    ldy: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    assert!(n % LANES == 0, "tile_gemm_nn: n = {n} is not a multiple of {LANES}");
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "tile_gemm_nn: C too small");
    if k == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    assert!((m - 1) * lda + k <= a.len(), "tile_gemm_nn: A too small");
    assert!((k - 1) * ldy + n <= y.len(), "tile_gemm_nn: Y too small");
    let ops = Operands {
        x: a.as_ptr(),
        x_row: lda,
        x_step: 1,
        y: y.as_ptr(),
        ldy,
        c: c.as_mut_ptr(),
        ldc,
        k,
    };
    // SAFETY: as in `tile_gemm`, with A's rows i < m and columns p < k asserted above.
    unsafe { run::<false>(&ops, m, n, accumulate) }
}

/// Raw views of the three operands (bounds already checked). The left operand's element
/// `(i, p)` is at `x + i·x_row + p·x_step`.
struct Operands {
    x: *const f32,
    x_row: usize,
    x_step: usize,
    y: *const f32,
    ldy: usize,
    c: *mut f32,
    ldc: usize,
    k: usize,
}

/// Picks the panel width: 16 columns (two vectors) when `n` allows, else 8.
/// `UNIT_ROW` says `x_row == 1`, which lets the kernel address `X` with constant offsets.
unsafe fn run<const UNIT_ROW: bool>(ops: &Operands, m: usize, n: usize, accumulate: bool) {
    if n.is_multiple_of(2 * LANES) {
        tile_gemm_nv::<2, UNIT_ROW>(ops, m, n, accumulate)
    } else {
        tile_gemm_nv::<1, UNIT_ROW>(ops, m, n, accumulate)
    }
}

/// Sweeps `C` in column panels of `8·NV`, each panel in row blocks of 6 (then 4, 2, 1).
unsafe fn tile_gemm_nv<const NV: usize, const UNIT_ROW: bool>(
    ops: &Operands,
    m: usize,
    n: usize,
    accumulate: bool,
) {
    for j in (0..n).step_by(LANES * NV) {
        let mut i = 0;
        while i + 6 <= m {
            micro::<6, NV, UNIT_ROW>(ops, i, j, accumulate);
            i += 6;
        }
        if i + 4 <= m {
            micro::<4, NV, UNIT_ROW>(ops, i, j, accumulate);
            i += 4;
        }
        if i + 2 <= m {
            micro::<2, NV, UNIT_ROW>(ops, i, j, accumulate);
            i += 2;
        }
        if i < m {
            micro::<1, NV, UNIT_ROW>(ops, i, j, accumulate);
        }
    }
}

/// The register block: `C[i..i+MR, j..j+8·NV] (+)= Σ_p X(i..i+MR, p) · Y[p, j..j+8·NV]`.
#[inline(always)]
unsafe fn micro<const MR: usize, const NV: usize, const UNIT_ROW: bool>(
    ops: &Operands,
    i: usize,
    j: usize,
    accumulate: bool,
) {
    let x_row = if UNIT_ROW { 1 } else { ops.x_row };
    let c = ops.c.add(i * ops.ldc + j);
    let mut acc = [[f32x8::ZERO; NV]; MR];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                *x = load_ptr(c.add(r * ops.ldc + v * LANES));
            }
        }
    }
    let mut xp = ops.x.add(i * x_row);
    let mut yp = ops.y.add(j);
    for _ in 0..ops.k {
        let mut yv = [f32x8::ZERO; NV];
        for (v, y) in yv.iter_mut().enumerate() {
            *y = load_ptr(yp.add(v * LANES));
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let xv = f32x8::splat(*xp.add(r * x_row));
            for (a, &y) in row.iter_mut().zip(&yv) {
                *a = xv.mul_add(y, *a);
            }
        }
        xp = xp.add(ops.x_step);
        yp = yp.add(ops.ldy);
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, &x) in row.iter().enumerate() {
            c.add(r * ops.ldc + v * LANES).cast::<[f32; LANES]>().write_unaligned(x.to_array());
        }
    }
}

#[inline(always)]
unsafe fn load_ptr(p: *const f32) -> f32x8 {
    f32x8::from(p.cast::<[f32; LANES]>().read_unaligned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;

    #[test]
    fn exp2_relative_error_is_below_2e_7() {
        let mut worst = 0.0f64;
        // Every 1/4096 step over the softmax's whole range, plus offsets that hit odd mantissas.
        let xs: Vec<f32> = (0..=127 * 4096 * 2)
            .map(|i| -(i as f32) / 8192.0 - (i % 7) as f32 * 1.3e-5)
            .filter(|&x| x >= -126.0)
            .collect();
        for chunk in xs.chunks_exact(LANES) {
            let y = exp2(load(chunk)).to_array();
            for (&x, &y) in chunk.iter().zip(&y) {
                let exact = f64::from(x).exp2();
                worst = worst.max((f64::from(y) - exact).abs() / exact);
            }
        }
        assert!(worst < 2e-7, "max relative error {worst:e}");
    }

    #[test]
    fn exp2_special_values() {
        let x = f32x8::from([0.0, -1.0, 3.0, -127.0, -200.0, f32::NEG_INFINITY, f32::NAN, -0.5]);
        let y = exp2(x).to_array();
        assert_eq!(&y[..6], &[1.0, 0.5, 8.0, 0.0, 0.0, 0.0]);
        assert!(y[6].is_nan());
        assert!((y[7] - 0.5f32.sqrt()).abs() < 1e-7);
    }

    /// `XᵀY` in f64, `X: [k, m]`, `Y: [k, n]`.
    fn naive(m: usize, n: usize, k: usize, x: &[f32], y: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 =
                    (0..k).map(|p| f64::from(x[p * m + i]) * f64::from(y[p * n + j])).sum();
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn transpose_swaps_indices() {
        let src: Vec<f32> = (0..16 * 24).map(|i| i as f32).collect();
        let mut dst = vec![0.0; 24 * 16];
        transpose(&src, 24, (16, 24), &mut dst, 16);
        for i in 0..16 {
            for j in 0..24 {
                assert_eq!(dst[j * 16 + i], src[i * 24 + j]);
            }
        }
    }

    #[test]
    fn tile_gemm_matches_naive_for_odd_shapes() {
        let philox = Philox::new(9);
        for (m, n, k) in [(1, 8, 1), (5, 16, 3), (13, 24, 7), (64, 64, 64), (11, 40, 96)] {
            let mut x = vec![0.0f32; k * m];
            let mut y = vec![0.0f32; k * n];
            philox.fill_normal(1, 0.0, 1.0, &mut x);
            philox.fill_normal(2, 0.0, 1.0, &mut y);
            let want = naive(m, n, k, &x, &y);
            let mut c = vec![f32::NAN; m * n];
            tile_gemm((m, n, k), &x, m, &y, n, &mut c, n, false);
            let mut c2 = want.clone();
            tile_gemm((m, n, k), &x, m, &y, n, &mut c2, n, true);
            // The same product with the left operand stored row-major.
            let a: Vec<f32> = (0..m * k).map(|e| x[(e % k) * m + e / k]).collect();
            let mut c3 = vec![f32::NAN; m * n];
            tile_gemm_nn((m, n, k), &a, k, &y, n, &mut c3, n, false);
            assert_eq!(c3, c, "row-major A gives the same sums in the same order");
            for ((a, w), b) in c.iter().zip(&want).zip(&c2) {
                assert!((a - w).abs() < 1e-4, "{m}x{n}x{k}: {a} vs {w}");
                assert!((b - 2.0 * w).abs() < 2e-4, "accumulate {m}x{n}x{k}: {b} vs 2·{w}");
            }
        }
    }
}
