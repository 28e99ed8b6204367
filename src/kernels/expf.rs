//! `exp` of f32 slices, bit for bit glibc's `expf` (x86-64 with FMA), in SIMD lanes.
//!
//! The cross-entropy's softmax takes `exp` of every logit twice a step (the forward's
//! logsumexp, the backward's probabilities): on the emoji preset, 8 million calls of the C
//! library's `expf`, one value at a time. glibc's `expf` (since 2.28; from Arm's
//! optimized-routines) is a short branch-free formula in f64 for all but extreme inputs, so the
//! same arithmetic on eight lanes gives the same bits, about three times faster:
//! ```text
//! z  = x·32/ln 2                    k = round(z): kd = fma(32/ln 2, x, 1.5·2⁵²), ki = bits(kd)
//! r  = fma(32/ln 2, x, −k)          ∈ [−½, ½], one rounding
//! s  = 2^(k/32)                     = bits⁻¹(T[k mod 32] + (k ≪ 47))   (T: 32 entries, below)
//! y  = s·fma(fma(C₀, r, C₁), r², fma(C₂, r, 1))
//! exp(x) = (f32) y
//! ```
//! Every multiply-add is fused exactly where glibc's `__expf_fma` fuses (read from its
//! disassembly); blocks holding an input with `|x| ≥ 88` or a NaN go through glibc's special
//! cases one value at a time (0 for −∞, ∞ above ln 2¹²⁸, 0 below ln 2⁻¹⁵⁰, the smallest
//! subnormal just above that, `x + x` for NaN and +∞).
//!
//! So on Linux/x86-64 with FMA the result equals `f32::exp` — on all 2³² inputs, checked once;
//! the tests check a sweep. Elsewhere it is still this formula (error below 1 ulp), the same on
//! every platform. Without AVX2 and FMA the lanes run one at a time (`f64::mul_add` is always
//! fused).

/// `32/ln 2` (glibc's `__exp2f_data.invln2_scaled`). These constants are those of Arm's
/// optimized-routines (`exp2f_data.c`, MIT licence), which glibc ships.
const INV_LN2_N: f64 = f64::from_bits(0x4047_1547_652b_82fe);
/// `1.5·2⁵²`: adding it rounds to an integer in the low mantissa bits.
const SHIFT: f64 = f64::from_bits(0x4338_0000_0000_0000);
/// The polynomial for `2^(r/32)` (`poly_scaled`): `C₀r³ + C₁r² + C₂r + 1`.
const C: [f64; 3] = [
    f64::from_bits(0x3ebc_6af8_4b91_2394),
    f64::from_bits(0x3f2e_bfce_50fa_c4f3),
    f64::from_bits(0x3f96_2e42_ff0c_52d6),
];
/// `T[i] = bits(2^(i/32)) − (i ≪ 47)`: adding `k ≪ 47` to `T[k mod 32]` gives `2^(k/32)`.
const T: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];

/// The top 12 bits of `x`'s magnitude from which glibc leaves the main formula (`|x| ≥ 88`).
const SPECIAL_TOP: u32 = 0x42a;

/// Elements checked for glibc's special cases at a time by [`exp_in_place`].
const BLOCK: usize = 64;

/// Replaces every element of `xs` by its `exp` (see the module doc).
pub fn exp_in_place(xs: &mut [f32]) {
    for block in xs.chunks_mut(BLOCK) {
        // The largest magnitude's bits (a max over the block, which vectorises).
        let widest = block.iter().fold(0, |m, x| m.max(x.to_bits() & 0x7fff_ffff));
        if widest >> 20 >= SPECIAL_TOP {
            block.iter_mut().for_each(|x| *x = exp(*x));
            continue;
        }
        let mut lanes = block.chunks_exact_mut(8);
        for c in lanes.by_ref() {
            let a: &mut [f32; 8] = c.try_into().expect("8 lanes");
            *a = main_formula_x8(a);
        }
        for x in lanes.into_remainder() {
            *x = main_formula(*x);
        }
    }
}

/// glibc's `expf` of one value, special cases included.
pub fn exp(x: f32) -> f32 {
    if top12(x) >= SPECIAL_TOP {
        special(x)
    } else {
        main_formula(x)
    }
}

/// The top 12 bits of `|x|`'s representation (exponent and first mantissa bits).
#[inline(always)]
fn top12(x: f32) -> u32 {
    (x.to_bits() >> 20) & 0x7ff
}

/// glibc's cases for `|x| ≥ 88` and NaN.
fn special(x: f32) -> f32 {
    if x == f32::NEG_INFINITY {
        0.0
    } else if top12(x) >= 0x7f8 {
        // +∞ or NaN.
        x + x
    } else if x > f32::from_bits(0x42b1_7217) {
        // Above ln(2¹²⁸): overflow.
        f32::INFINITY
    } else if x < f32::from_bits(0xc2cf_f1b4) {
        // Below ln(2⁻¹⁵⁰): underflow to 0.
        0.0
    } else if x < f32::from_bits(0xc2ce_8ecf) {
        // Below ln(2⁻¹⁴⁹): glibc returns 0x1.4p-75² rounded, the smallest subnormal.
        f32::from_bits(1)
    } else {
        main_formula(x)
    }
}

/// glibc's formula for `|x| < 88` (no special cases).
#[inline(always)]
fn main_formula(x: f32) -> f32 {
    let xd = f64::from(x);
    let kd = INV_LN2_N.mul_add(xd, SHIFT);
    let ki = kd.to_bits();
    let kd = kd - SHIFT;
    let r = INV_LN2_N.mul_add(xd, -kd);
    let t = T[(ki % 32) as usize].wrapping_add(ki << 47);
    let s = f64::from_bits(t);
    let z = C[0].mul_add(r, C[1]);
    let r2 = r * r;
    let y = C[2].mul_add(r, 1.0);
    let y = z.mul_add(r2, y);
    (y * s) as f32
}

/// [`main_formula`] on eight lanes, one at a time (without AVX2 and FMA).
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
fn main_formula_x8(x: &[f32; 8]) -> [f32; 8] {
    x.map(main_formula)
}

/// [`main_formula`] on eight lanes with AVX2 and FMA (the table read by a gather).
#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
#[inline(always)]
fn main_formula_x8(x: &[f32; 8]) -> [f32; 8] {
    use std::arch::x86_64::*;
    // SAFETY: the target features are enabled at compile time (cfg above); the gather reads
    // T[k mod 32], inside the table.
    unsafe {
        let v = _mm256_loadu_ps(x.as_ptr());
        let halves = [_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)];
        let inv = _mm256_set1_pd(INV_LN2_N);
        let shift = _mm256_set1_pd(SHIFT);
        let out = halves.map(|h| {
            let xd = _mm256_cvtps_pd(h);
            let kd = _mm256_fmadd_pd(inv, xd, shift);
            let ki = _mm256_castpd_si256(kd);
            let kd = _mm256_sub_pd(kd, shift);
            let r = _mm256_fmsub_pd(inv, xd, kd);
            let idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
            let tab = _mm256_i64gather_epi64::<8>(T.as_ptr().cast(), idx);
            let t = _mm256_add_epi64(tab, _mm256_slli_epi64::<47>(ki));
            let s = _mm256_castsi256_pd(t);
            let z = _mm256_fmadd_pd(_mm256_set1_pd(C[0]), r, _mm256_set1_pd(C[1]));
            let r2 = _mm256_mul_pd(r, r);
            let y = _mm256_fmadd_pd(_mm256_set1_pd(C[2]), r, _mm256_set1_pd(1.0));
            let y = _mm256_fmadd_pd(z, r2, y);
            _mm256_cvtpd_ps(_mm256_mul_pd(y, s))
        });
        let mut o = [0.0f32; 8];
        _mm256_storeu_ps(o.as_mut_ptr(), _mm256_set_m128(out[1], out[0]));
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs around every special-case boundary, the extremes and ordinary values.
    fn edge_inputs() -> Vec<f32> {
        let mut x = vec![0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, f32::MIN_POSITIVE, f32::MAX];
        x.extend([f32::MIN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 88.0, -88.0]);
        for b in [0x42b1_7217u32, 0xc2cf_f1b4, 0xc2ce_8ecf, 0x42b0_0000, 0xc2b0_0000] {
            x.extend([b - 1, b, b + 1].map(f32::from_bits));
        }
        x
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// The table holds `2^(i/32)` (less `i ≪ 47`) to within an ulp of f64.
    #[test]
    fn table_holds_powers_of_two() {
        for (i, &t) in T.iter().enumerate() {
            let got = f64::from_bits(t + ((i as u64) << 47));
            let want = (i as f64 / 32.0).exp2();
            assert!((got - want).abs() <= f64::EPSILON * want, "T[{i}]");
        }
    }

    /// The slice version (eight lanes, blocks with and without special values) equals the
    /// scalar formula bit for bit.
    #[test]
    fn slices_equal_the_scalar_formula() {
        let mut x: Vec<f32> = (0..1000).map(|i| (i as f32 - 700.0) * 0.173).collect();
        x.extend(edge_inputs());
        x.extend((0..200).map(|i| -(i as f32) * 0.01));
        let mut got = x.clone();
        exp_in_place(&mut got);
        for (&x, &y) in x.iter().zip(&got) {
            assert!(same(y, exp(x)), "exp({x:e}): {y:e} against {:e}", exp(x));
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(exp(-103.5), f32::from_bits(1));
        assert_eq!(exp(-104.0), 0.0);
        let rel = |x: f32| ((f64::from(exp(x)) - f64::from(x).exp()) / f64::from(x).exp()).abs();
        assert!((-80..80).all(|i| rel(i as f32 * 1.01) < 1.2e-7), "within an ulp of exp");
    }

    /// Where the C library is glibc ≥ 2.28 on x86-64 with FMA, `f32::exp` is the `expf` this
    /// module ports: they agree on every 61st bit pattern (70 million inputs, all signs and
    /// exponents) and the edge cases. (Checked once on all 2³² inputs: no difference.)
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    #[cfg(target_feature = "fma")]
    #[test]
    fn equals_glibc_expf() {
        use rayon::prelude::*;
        if glibc_version() < (2, 28) {
            return;
        }
        let last = u32::MAX / 61;
        let bad: Vec<u32> = (0..=last >> 16)
            .into_par_iter()
            .flat_map_iter(|c| {
                let steps = (c << 16)..=last.min((c << 16) + 0xffff);
                let x: Vec<f32> = steps.map(|i| f32::from_bits(i * 61)).collect();
                let mut y = x.clone();
                exp_in_place(&mut y);
                let wrong = x.iter().zip(y).filter(|&(&x, y)| !same(y, x.exp()));
                wrong.map(|(x, _)| x.to_bits()).collect::<Vec<_>>()
            })
            .collect();
        assert!(bad.is_empty(), "{} inputs differ, e.g. bits {:#x}", bad.len(), bad[0]);
        assert!(edge_inputs().iter().all(|&x| same(exp(x), x.exp())), "edge cases");
    }

    /// glibc's version, `(major, minor)`.
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    #[cfg(target_feature = "fma")]
    fn glibc_version() -> (u32, u32) {
        extern "C" {
            fn gnu_get_libc_version() -> *const std::ffi::c_char;
        }
        // SAFETY: glibc returns a pointer to a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) };
        let mut parts = v.to_str().unwrap_or("0.0").split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }
}
