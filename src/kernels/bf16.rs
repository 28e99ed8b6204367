//! bf16 mixed precision: the products of linear layers and of attention take their operands
//! rounded to bfloat16 and accumulate in f32; everything else stays f32.
//!
//! bfloat16 keeps f32's sign and 8-bit exponent and the top 7 bits of its 23-bit fraction, so
//! a bf16 value is an f32 whose low 16 bits are zero. Rounding `x` to it ([`round_bf16`]):
//! ```text
//! NaN          → a quiet NaN (sign and top fraction bits kept)
//! |x| < 2⁻¹²⁶  → ±0                     (subnormals flushed, sign kept)
//! otherwise    → round to nearest, ties to even, on bit 16:  (bits + 0x7fff + bit16) & 0xffff0000
//!                (values past bf16's largest finite number round to ±∞)
//! ```
//! This is what `vcvtneps2bf16` does, and what PyTorch's `x.to(torch.bfloat16)` does apart from
//! subnormals (which it keeps).
//!
//! The product of two bf16 values has at most 16 significant bits, so it is exact in f32; a
//! bf16 dot product therefore differs from f32 arithmetic only in its inputs. [`Bf16`] computes
//! every product of a linear layer (`y = x·W + b`, `∂x = ∂y·Wᵀ`, `∂W = xᵀ·∂y`) as
//! ```text
//! C_ij = start_ij + Σ_p bf16(A_ip)·bf16(B_pj)     one f32 fused multiply-add chain, p increasing
//! ```
//! with `start` = 0, the bias (f32, not rounded) or the old `C`, and subnormal numbers flushed
//! to zero — inputs and every intermediate result — as `vdpbf16ps` does (on x86-64 the kernels
//! run with the MXCSR's flush-to-zero and denormals-are-zero bits set, [`flushing_subnormals`];
//! other targets keep subnormals, which only matters for sums below 2⁻¹²⁶). The attention
//! products round `Q`, `K`, `V`, `dO`, `P` and `dS` the same way (`attention`). Norms, the
//! activation, softmax statistics, the loss, AdamW and the master weights stay f32: the same
//! split as `torch.autocast(dtype=torch.bfloat16)`, except that the results of products are
//! kept in f32 rather than rounded.
//!
//! Where it sits: [`Bf16`] is the second implementation of the ops' dispatch trait
//! `ops::Kernels` (f32's is `kernels::Simd`); `--precision bf16` selects it. On the portable
//! path ([`Bf16::PORTABLE`]) the products run on the f32 kernels (`gemm::rows_task`,
//! `simd::tile_gemm`, `skinny`) over rounded operands —
//! packed weights and attention tiles rounded once, an activation `A` one cache-resident block
//! at a time (`gemm::Lhs::Bf16`), a tall `B` (`∂W`'s `∂y`) one packed slab of rows at a time
//! (so bf16 training holds no rounded copy of an activation) — so they are those kernels' FMA
//! chains exactly;
//! [`product_reference`] is the plain triple loop they are tested against, bit for bit.
//!
//! The hardware twin, [`Bf16::AVX512`] (`dpbf16`, `vdpbf16ps`), reproduces the same bits: the
//! instruction adds the odd element of each pair first, so it packs element `2i` into the odd
//! slot and `2i + 1` into the even one to keep the order `p` increasing (SPEC §21.3).
//! [`Bf16::native`] picks it where the CPU has the instructions.

use super::attention::{flash_attention_backward, flash_forward};
use super::gemm::{rows_product, rows_product_new, Lhs};
use super::simd::{load, store, LANES};
use super::{dpbf16, Operands, Simd};
use crate::ops::decode::KvView;
use crate::ops::nearest::Centers;
use crate::ops::{AttentionDims, AttentionForward, Kernels};
use crate::tensor::{MatRef, Start};
use rayon::prelude::*;
use wide::{f32x8, u32x8};

/// `x` rounded to bf16 (see the module doc), as an f32.
pub fn round_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    let rounded = if x.is_nan() {
        bits | 0x0040_0000
    } else if bits & 0x7f80_0000 == 0 {
        bits & 0x8000_0000
    } else {
        bits.wrapping_add(0x7fff + ((bits >> 16) & 1))
    };
    f32::from_bits(rounded & 0xffff_0000)
}

/// [`round_bf16`] on 8 lanes at once, bit for bit (the same three cases, chosen by masks).
#[inline(always)]
pub fn round_bf16_x8(x: f32x8) -> f32x8 {
    let bits = x.to_bits();
    let nearest_even = bits + u32x8::splat(0x7fff) + ((bits >> 16) & u32x8::splat(1));
    let flushed = bits & u32x8::splat(0x8000_0000);
    let quiet_nan = bits | u32x8::splat(0x0040_0000);
    let tiny = (bits & u32x8::splat(0x7f80_0000)).simd_eq(u32x8::ZERO);
    let nan = x.is_nan().to_bits();
    let r = select(tiny, flushed, nearest_even);
    f32x8::from_bits(select(nan, quiet_nan, r) & u32x8::splat(0xffff_0000))
}

/// Lanes of `yes` where `mask` is all ones, of `no` where it is zero.
#[inline(always)]
fn select(mask: u32x8, yes: u32x8, no: u32x8) -> u32x8 {
    (yes & mask) | (no & !mask)
}

/// `src` rounded to bf16 into `dst` (the same length), 8 at a time.
pub fn round_into(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(LANES);
    let mut s = src.chunks_exact(LANES);
    for (d, s) in (&mut d).zip(&mut s) {
        store(d, round_bf16_x8(load(s)));
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = round_bf16(s);
    }
}

/// `x` rounded to bf16 and stored in 16 bits: the high half of [`round_bf16`]`(x)`'s bits
/// (`io::safetensors::bf16_to_f32` widens it back exactly).
pub fn bf16_bits(x: f32) -> u16 {
    (round_bf16(x).to_bits() >> 16) as u16
}

/// Rounds every element of `xs` to bf16 in place (in parallel chunks; each element alone).
pub fn round_in_place(xs: &mut [f32]) {
    xs.par_chunks_mut(1 << 14).for_each(|c| {
        let mut chunks = c.chunks_exact_mut(LANES);
        for v in &mut chunks {
            store(v, round_bf16_x8(load(v)));
        }
        chunks.into_remainder().iter_mut().for_each(|x| *x = round_bf16(*x));
    });
}

/// Runs `f` with subnormal inputs read as zero and subnormal results flushed to zero on this
/// thread (x86-64: MXCSR bits DAZ and FTZ; restored afterwards, also on a panic).
#[cfg(target_arch = "x86_64")]
pub fn flushing_subnormals<R>(f: impl FnOnce() -> R) -> R {
    /// MXCSR bit 15, flush to zero, and bit 6, denormals are zero.
    const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: writes back the MXCSR value read below, a valid control word.
            unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &self.0, options(nostack)) };
        }
    }
    let mut old = 0u32;
    // SAFETY: `stmxcsr` stores the 32-bit control word at a valid, writable address.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut old, options(nostack)) };
    let _restore = Restore(old);
    let flushing = old | FTZ_DAZ;
    // SAFETY: the same control word with two mode bits set; it changes no memory.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &flushing, options(nostack)) };
    f()
}

/// Other targets keep subnormals (see the module doc).
#[cfg(not(target_arch = "x86_64"))]
pub fn flushing_subnormals<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The plain definition of a bf16 product: `C = start + Σ_p bf16(A_ip)·bf16(B_pj)`, one
/// multiply-add chain per element, each step flushed as the kernels flush it. The twin that
/// [`linear_product`] is tested against bit for bit.
pub fn product_reference(a: MatRef<f32>, b: MatRef<f32>, start: Start<f32>, c: &mut [f32]) {
    let flush = |x: f32| if x.is_subnormal() { 0.0f32.copysign(x) } else { x };
    for i in 0..a.rows {
        for j in 0..b.cols {
            let c0 = match start {
                Start::Zero => 0.0,
                Start::Accumulate => c[i * b.cols + j],
                Start::Bias(bias) => bias[j],
            };
            let mut acc = flush(c0);
            for p in 0..a.cols {
                let (x, y) = (round_bf16(a.at(i, p)), round_bf16(b.at(p, j)));
                acc = flush(x.mul_add(y, acc));
            }
            c[i * b.cols + j] = acc;
        }
    }
}

/// `C = start + A·B` in bf16 (see the module doc) for any views `A: [m, k]`, `B: [k, n]` and
/// row-major `C: [m, n]`.
///
/// # Panics
/// If the inner dimensions disagree or `c` is not `[A.rows, B.cols]`.
pub fn linear_product(a: MatRef<f32>, b: MatRef<f32>, start: Start<f32>, c: &mut [f32]) {
    product(a, b, Operands::Bf16, start, c)
}

/// [`linear_product`] on the register kernel of `products` (`Bf16` or `Bf16Avx512`).
fn product(a: MatRef<f32>, b: MatRef<f32>, products: Operands, start: Start<f32>, c: &mut [f32]) {
    assert_eq!(a.cols, b.rows, "bf16 product: inner dimensions {} and {} differ", a.cols, b.rows);
    assert_eq!(c.len(), a.rows * b.cols, "bf16 product: C must be [{}, {}]", a.rows, b.cols);
    rows_product(Lhs::Bf16(a), b, products, start, c);
}

/// bf16 mixed precision behind `ops::Kernels` (see the module doc): linear and attention
/// products in bf16; the activation, the norm, decode attention and the k-means scan as f32's
/// `Simd` computes them.
///
/// Two implementations give the same bits: [`Bf16::PORTABLE`] (f32 fused multiply-adds on
/// rounded operands, any CPU) and [`Bf16::AVX512`] (the linear and attention products on
/// `vdpbf16ps`, see `dpbf16`); [`Bf16::native`] is the faster one this CPU runs.
#[derive(Clone, Copy, Debug)]
pub struct Bf16 {
    /// `Operands::Bf16` or `Operands::Bf16Avx512`.
    products: Operands,
}

impl Bf16 {
    /// The definition, on f32 fused multiply-adds: runs everywhere.
    pub const PORTABLE: Bf16 = Bf16 { products: Operands::Bf16 };
    /// The linear and attention products on AVX512-BF16 (only on CPUs that have it,
    /// `dpbf16::available`).
    pub const AVX512: Bf16 = Bf16 { products: Operands::Bf16Avx512 };

    /// [`Bf16::AVX512`] where the CPU has the instructions, else [`Bf16::PORTABLE`].
    pub fn native() -> &'static Bf16 {
        static CHOSEN: std::sync::OnceLock<Bf16> = std::sync::OnceLock::new();
        CHOSEN.get_or_init(|| if dpbf16::available() { Bf16::AVX512 } else { Bf16::PORTABLE })
    }
}

impl Kernels<f32> for Bf16 {
    fn name(&self) -> &'static str {
        match self.products {
            Operands::Bf16Avx512 => "bf16-avx512",
            _ => "bf16",
        }
    }

    fn linear_product(&self, a: MatRef<f32>, b: MatRef<f32>, start: Start<f32>, c: &mut [f32]) {
        product(a, b, self.products, start, c)
    }

    fn linear_product_new(&self, a: MatRef<f32>, b: MatRef<f32>, bias: Option<&[f32]>) -> Vec<f32> {
        assert_eq!(
            a.cols, b.rows,
            "bf16 product: inner dimensions {} and {} differ",
            a.cols, b.rows
        );
        rows_product_new(Lhs::Bf16(a), a.rows, b, self.products, bias)
    }

    fn quick_gelu(&self, x: &[f32], y: &mut [f32]) {
        Simd.quick_gelu(x, y)
    }

    fn quick_gelu_backward(&self, x: &[f32], dy: &[f32], dx: &mut [f32], accumulate: bool) {
        Simd.quick_gelu_backward(x, dy, dx, accumulate)
    }

    fn rms_norm_rows(&self, x: &[f32], g: &[f32], eps: f32, y: &mut [f32], rms: &mut [f32]) {
        Simd.rms_norm_rows(x, g, eps, y, rms)
    }

    fn rms_norm_backward_rows(
        &self,
        x: &[f32],
        dy: &[f32],
        g: &[f32],
        rms: &[f32],
        dx: Option<(&mut [f32], bool)>,
    ) -> Vec<f32> {
        Simd.rms_norm_backward_rows(x, dy, g, rms, dx)
    }

    /// FlashAttention with bf16 operands: `saved` is the logsumexp of every score row.
    fn attention_forward(
        &self,
        qkv: &[f32],
        dims: AttentionDims,
        causal: bool,
    ) -> AttentionForward<f32> {
        let f = flash_forward(qkv, dims, causal, self.products);
        AttentionForward { out: f.out, saved: f.lse }
    }

    fn attention_backward(
        &self,
        qkv: &[f32],
        out: &[f32],
        saved: &[f32],
        dout: &[f32],
        dims: AttentionDims,
        causal: bool,
        dqkv: &mut [f32],
        accumulate: bool,
    ) {
        let operands = self.products;
        flash_attention_backward(qkv, out, saved, dout, dims, causal, operands, dqkv, accumulate)
    }

    /// f32's kernel: the decoder rounds `q`, `k` and `v` to bf16 before the cache sees them
    /// (`model::decode`; the cache stores them as bf16), and the attention's own arithmetic
    /// stays f32's.
    fn decode_attention(&self, cache: KvView<'_, f32>, qkv: &[f32], out: &mut [f32]) {
        Simd.decode_attention(cache, qkv, out)
    }

    /// f32's scan: pixels and distances are f32 in every precision.
    fn nearest_two(&self, x: &[f32], centers: &Centers) -> (usize, f32, f32) {
        Simd.nearest_two(x, centers)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::rng::Philox;

    fn normal(stream: u64, n: usize, std: f32) -> Vec<f32> {
        let mut v = vec![0.0; n];
        Philox::new(11).fill_normal(stream, 0.0, std, &mut v);
        v
    }

    /// bf16's unit roundoff: 8 significant bits.
    const U_BF16: f64 = 1.0 / 256.0;

    #[test]
    fn rounding_is_to_nearest_even_with_subnormals_flushed() {
        let ulp = 2f32.powi(-7);
        assert_eq!(round_bf16(1.0), 1.0);
        assert_eq!(round_bf16(1.0 + ulp / 2.0), 1.0, "a tie goes to the even neighbour");
        assert_eq!(
            round_bf16(1.0 + 1.5 * ulp),
            1.0 + 2.0 * ulp,
            "a tie goes to the even neighbour"
        );
        assert_eq!(round_bf16(1.0 + 0.51 * ulp), 1.0 + ulp);
        assert_eq!(round_bf16(-3.0e-39).to_bits(), (-0.0f32).to_bits(), "a subnormal flushes");
        assert_eq!(round_bf16(f32::MAX), f32::INFINITY, "past the largest bf16 rounds to ∞");
        assert_eq!(round_bf16(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert!(round_bf16(f32::NAN).is_nan());
        assert!(
            round_bf16(f32::from_bits(0x7f80_0001)).is_nan(),
            "a NaN with low payload stays NaN"
        );
        // Against the definition in f64: the nearest of the two bf16 neighbours.
        for x in normal(1, 10_000, 100.0) {
            let r = f64::from(round_bf16(x));
            let down = f64::from(f32::from_bits(x.to_bits() & 0xffff_0000));
            let up = f64::from(f32::from_bits((x.to_bits() & 0xffff_0000) + 0x1_0000));
            let d = (f64::from(x) - r).abs();
            assert!(r == down || r == up, "{x} rounded to {r}, not a neighbour");
            assert!(d <= (f64::from(x) - down).abs().min((up - f64::from(x)).abs()), "{x}");
            assert!(d <= U_BF16 * f64::from(x).abs());
        }
    }

    /// The 8-lane rounding is the scalar one bit for bit: on every special class (zeros,
    /// subnormals, ties, the largest finite values, infinities, NaNs with any payload) and on
    /// a million random bit patterns; `round_in_place` and `round_into` agree with it on
    /// lengths that leave a remainder.
    /// Bit patterns of every class a rounding meets: zeros, subnormals, ties, the largest
    /// finite values, infinities, NaNs with any payload (also `dpbf16`'s tests).
    pub(in crate::kernels) const SPECIAL_BITS: [u32; 15] = [
        0,
        0x8000_0000,
        1,
        0x807f_ffff,
        0x0080_0000,
        0x3f80_8000,
        0x3f81_8000,
        0x3f80_7fff,
        0x7f7f_ffff,
        0xff7f_8000,
        0x7f80_0000,
        0xff80_0000,
        0x7f80_0001,
        0xffc0_0000,
        0x7fff_ffff,
    ];

    #[test]
    fn eight_lanes_round_as_one_does() {
        let philox = Philox::new(9);
        let random = (0..1u64 << 20).map(|i| philox.u32_at(0, i));
        let words: Vec<u32> = SPECIAL_BITS.into_iter().chain(random).collect();
        for chunk in words.chunks(LANES) {
            let x: Vec<f32> = chunk.iter().map(|&w| f32::from_bits(w)).collect();
            let want: Vec<u32> = x.iter().map(|&v| round_bf16(v).to_bits()).collect();
            let mut got = vec![0.0; x.len()];
            round_into(&mut got, &x);
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{chunk:08x?}");
        }
        let x: Vec<f32> = words[..1003].iter().map(|&w| f32::from_bits(w)).collect();
        let mut in_place = x.clone();
        round_in_place(&mut in_place);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let want: Vec<f32> = x.iter().map(|&v| round_bf16(v)).collect();
        assert_eq!(bits(&in_place), bits(&want));
    }

    /// `A` as each layout a product meets: row-major, a transposed view, and a strided one.
    fn views(data: &[f32], m: usize, k: usize) -> Vec<MatRef<'_, f32>> {
        vec![
            MatRef::new(&data[..m * k], m, k),
            MatRef::new(&data[..m * k], k, m).t(),
            MatRef::strided(data, m, k, 2 * k, 2),
        ]
    }

    /// Shapes for both task cuts (row blocks; rows × panel groups), partial tiles and panels,
    /// odd inner dimensions and several inner blocks.
    const SHAPES: [(usize, usize, usize); 6] =
        [(1, 1, 1), (5, 17, 3), (40, 70, 129), (130, 33, 300), (500, 40, 20), (9, 200, 31)];

    /// The implementations this CPU runs: the portable one, and the AVX512-BF16 one where the
    /// CPU has it (the two must agree bit for bit; CI machines without it test the first).
    fn implementations() -> Vec<Bf16> {
        let mut all = vec![Bf16::PORTABLE];
        if dpbf16::available() {
            all.push(Bf16::AVX512);
        }
        all
    }

    #[test]
    fn native_is_avx512_exactly_where_the_cpu_has_it() {
        let want = if dpbf16::available() { "bf16-avx512" } else { "bf16" };
        assert_eq!(Bf16::native().name(), want);
    }

    #[test]
    fn the_product_is_its_definition_bit_for_bit() {
        for bf16 in implementations() {
            products_are_the_definition(bf16);
        }
    }

    fn products_are_the_definition(bf16: Bf16) {
        let name = bf16.name();
        for (m, n, k) in SHAPES {
            let a = normal(2, 2 * m * k, 1.0);
            let w = normal(3, k * n, 1.0);
            let (bias, c0) = (normal(4, n, 1.0), normal(5, m * n, 1.0));
            for (v, a_view) in views(&a, m, k).into_iter().enumerate() {
                for b in [MatRef::new(&w, k, n), MatRef::new(&w, n, k).t()] {
                    for start in [Start::Zero, Start::Accumulate, Start::Bias(&bias)] {
                        let mut want = c0.clone();
                        product_reference(a_view, b, start, &mut want);
                        let mut got = c0.clone();
                        bf16.linear_product(a_view, b, start, &mut got);
                        assert_eq!(got, want, "{name} {m}x{n}x{k}, A layout {v}, {start:?}");
                    }
                    // The forward's fresh buffer: the same sums from 0 or the bias.
                    for bias in [None, Some(&bias[..])] {
                        let mut want = vec![0.0; m * n];
                        let start = bias.map_or(Start::Zero, Start::Bias);
                        product_reference(a_view, b, start, &mut want);
                        let got = bf16.linear_product_new(a_view, b, bias);
                        assert_eq!(got, want, "{name} {m}x{n}x{k}, A layout {v}, new, {bias:?}");
                    }
                }
            }
        }
    }

    /// A tall `B` (more than 1 MiB of panels, as `∂W`'s `∂y` is) is packed a slab of rows at a
    /// time; the chains go on across slabs unchanged. Several slabs, a partial one and an odd `K`
    /// (its last pair padded), for both task cuts and `∂W`'s transposed `A`.
    #[test]
    fn slabs_of_a_tall_b_change_no_bit() {
        for bf16 in implementations() {
            slabs_change_no_bit(bf16);
        }
    }

    fn slabs_change_no_bit(bf16: Bf16) {
        for (m, n, k) in [(5, 40, 12_000), (390, 40, 5_501)] {
            let a = normal(2, m * k, 1.0);
            let w = normal(3, k * n, 1.0);
            let c0 = normal(5, m * n, 1.0);
            for a_view in [MatRef::new(&a, m, k), MatRef::new(&a, k, m).t()] {
                let mut want = c0.clone();
                product_reference(a_view, MatRef::new(&w, k, n), Start::Accumulate, &mut want);
                let mut got = c0.clone();
                bf16.linear_product(a_view, MatRef::new(&w, k, n), Start::Accumulate, &mut got);
                assert_eq!(got, want, "{} {m}x{n}x{k}", bf16.name());
                let mut want = vec![0.0; m * n];
                product_reference(a_view, MatRef::new(&w, k, n), Start::Zero, &mut want);
                let got = bf16.linear_product_new(a_view, MatRef::new(&w, k, n), None);
                assert_eq!(got, want, "{} {m}x{n}x{k}, new", bf16.name());
            }
        }
    }

    #[test]
    fn subnormal_sums_flush_as_the_definition_says() {
        // Products near 2⁻¹²⁶ whose sums cancel into the subnormal range, and a subnormal
        // starting value (read as zero).
        let (m, n, k) = (3, 16, 4);
        let tiny = 2f32.powi(-63);
        let a: Vec<f32> = (0..m * k).map(|i| tiny * (1.0 + i as f32 / 64.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|i| if i % 2 == 0 { tiny } else { -tiny }).collect();
        let c0 = vec![1e-40f32; m * n];
        let mut want = c0.clone();
        product_reference(
            MatRef::new(&a, m, k),
            MatRef::new(&b, k, n),
            Start::Accumulate,
            &mut want,
        );
        for bf16 in implementations() {
            let mut got = c0.clone();
            let (a, b) = (MatRef::new(&a, m, k), MatRef::new(&b, k, n));
            bf16.linear_product(a, b, Start::Accumulate, &mut got);
            assert_eq!(got, want, "{}", bf16.name());
        }
        assert!(want.iter().all(|x| !x.is_subnormal()));
    }

    /// Signed zeros, infinities and NaNs keep their bits on every path (NaNs: stay NaN): in
    /// particular `−0` sums stay `−0` over an odd inner length, whose last pair the AVX512
    /// path pads (`dpbf16`).
    #[test]
    fn zeros_infinities_and_nans_agree_on_every_path() {
        let (m, n) = (7, 20);
        for k in [1, 2, 3, 5] {
            let a: Vec<f32> = (0..m * k).map(|i| [0.0, -0.0, 1.0, -2.0][i % 4]).collect();
            let mut b: Vec<f32> = (0..k * n).map(|i| [-0.0, 3.0, 0.0, -1.0, 0.5][i % 5]).collect();
            b[(n + 3) % (k * n)] = f32::INFINITY;
            let c0: Vec<f32> = (0..m * n).map(|i| [-0.0, 0.0, f32::NAN, 1e-40][i % 4]).collect();
            let (a, b) = (MatRef::new(&a, m, k), MatRef::new(&b, k, n));
            for start in [Start::Zero, Start::Accumulate] {
                let mut want = c0.clone();
                product_reference(a, b, start, &mut want);
                for bf16 in implementations() {
                    let mut got = c0.clone();
                    bf16.linear_product(a, b, start, &mut got);
                    for (g, w) in got.iter().zip(&want) {
                        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
                        assert!(same, "{} k = {k} {start:?}: {g:?} vs {w:?}", bf16.name());
                    }
                }
            }
        }
    }

    #[test]
    fn the_error_against_f64_is_within_the_derived_bound() {
        // |ĉ − c| ≤ (2u + u² + k·2⁻²⁴·1.01) · Σ_p |a_p||b_p|, u = 2⁻⁸ (SPEC §21).
        let (m, n, k) = (37, 29, 300);
        let (a, b) = (normal(6, m * k, 3.0), normal(7, k * n, 0.1));
        let mut got = vec![0.0; m * n];
        linear_product(MatRef::new(&a, m, k), MatRef::new(&b, k, n), Start::Zero, &mut got);
        let eps = 2.0 * U_BF16 + U_BF16 * U_BF16 + 1.01 * k as f64 * 2f64.powi(-24);
        let mut worst: f64 = 0.0;
        for i in 0..m {
            for j in 0..n {
                let (exact, abs): (f64, f64) = (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                    .fold((0.0, 0.0), |(s, t), x| (s + x, t + x.abs()));
                let err = (f64::from(got[i * n + j]) - exact).abs();
                assert!(err <= eps * abs, "({i}, {j}): error {err:e} over {:e}", eps * abs);
                worst = worst.max(err / (eps * abs));
            }
        }
        // The bound is a worst case; random rounding errors use a small share of it.
        assert!(worst > 0.0 && worst < 0.5, "share of the bound used: {worst}");
    }

    /// `‖Ĉ − C‖₂ / (u·sqrt(2S/3))` with `S = Σ_ijp (A_ip·B_pj)²`: a product's error measured
    /// in units of its expected size (each operand's rounding error is uniform in ±u).
    fn expected_error_units(
        a: &[f32],
        b: &[f32],
        got: &[f32],
        (m, n, k): (usize, usize, usize),
    ) -> f64 {
        let (mut err2, mut s) = (0.0, 0.0);
        for i in 0..m {
            for j in 0..n {
                let terms = (0..k).map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]));
                let exact: f64 = terms.clone().sum();
                s += terms.map(|x| x * x).sum::<f64>();
                err2 += (f64::from(got[i * n + j]) - exact).powi(2);
            }
        }
        err2.sqrt() / (U_BF16 * (2.0 * s / 3.0).sqrt())
    }

    #[test]
    fn the_norm_wise_error_is_its_expected_size_and_a_one_percent_error_is_not() {
        // SPEC §21: ‖Ĉ − C‖₂ ≤ 2·u·sqrt(2S/3). bf16 rounding measures ≈ 0.74 units: a value
        // of significand m ∈ [1, 2) is rounded by at most u/m, not u, and E[1/m²] = 0.54 for
        // the log-uniform significands of such data. A 1 % error in an operand is ≈ 2.5 units.
        let (m, n, k) = (40, 48, 256);
        let (a, b) = (normal(8, m * k, 1.0), normal(9, k * n, 1.0));
        let mut got = vec![0.0; m * n];
        linear_product(MatRef::new(&a, m, k), MatRef::new(&b, k, n), Start::Zero, &mut got);
        let units = expected_error_units(&a, &b, &got, (m, n, k));
        assert!((0.6..0.9).contains(&units), "bf16 error in expected units: {units}");
        let wrong: Vec<f32> = a.iter().map(|x| x * 1.01).collect();
        linear_product(MatRef::new(&wrong, m, k), MatRef::new(&b, k, n), Start::Zero, &mut got);
        let units = expected_error_units(&a, &b, &got, (m, n, k));
        assert!(units > 2.0, "a 1 % error measured {units} units");
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (m, n, k) = (300, 70, 200);
        let (a, w) = (normal(10, m * k, 1.0), normal(11, k * n, 1.0));
        let run = |threads: usize, a_view: MatRef<f32>| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut c = vec![0.0; a_view.rows() * n];
            pool.install(|| linear_product(a_view, MatRef::new(&w, k, n), Start::Zero, &mut c));
            c
        };
        let row_major = MatRef::new(&a, m, k);
        assert_eq!(run(1, row_major), run(2, row_major));
        let few_rows = MatRef::new(&a[..20 * k], 20, k);
        assert_eq!(run(1, few_rows), run(3, few_rows));
    }

    fn qkv_for(dims: AttentionDims, stream: u64) -> Vec<f32> {
        normal(stream, dims.batch * dims.seq * 3 * dims.d(), 1.0)
    }

    /// Shapes with partial tiles, a causal diagonal split, and a head size not a multiple of 8.
    const ATTENTION: [AttentionDims; 3] = [
        AttentionDims { batch: 2, seq: 70, n_head: 2, head_dim: 16 },
        AttentionDims { batch: 1, seq: 130, n_head: 3, head_dim: 12 },
        AttentionDims { batch: 1, seq: 1, n_head: 1, head_dim: 8 },
    ];

    #[test]
    fn attention_is_within_the_derived_bound_of_the_f64_reference() {
        // Per output element (SPEC §21): with Δ_i = max_j ε·Σ_c |q_ic||k_jc| / √hd the
        // bound on query i's logit errors (ε as for a product of length hd), the probabilities
        // move by a factor within e^{±2Δ_i}; rounding P and V adds u each:
        // |ô_ic − o_ic| ≤ (e^{2Δ_i}(1+u)² − 1 + u + 1e-5) · Σ_j p_ij |v_jc|.
        for dims in ATTENTION {
            for causal in [true, false] {
                let qkv = qkv_for(dims, 20);
                let got = Bf16::PORTABLE.attention_forward(&qkv, dims, causal).out;
                let wide: Vec<f64> = qkv.iter().map(|&x| f64::from(x)).collect();
                let (want, probs) =
                    crate::ops::attention::attention_reference_forward(&wide, dims, causal);
                check_attention_bound(&wide, &probs, &got, &want, dims);
            }
        }
    }

    fn check_attention_bound(
        qkv: &[f64],
        probs: &[f64],
        got: &[f32],
        want: &[f64],
        dims: AttentionDims,
    ) {
        let (t, hd, d) = (dims.seq, dims.head_dim, dims.d());
        let eps = 2.0 * U_BF16 + U_BF16 * U_BF16 + (hd as f64 + 4.0) * 2f64.powi(-24);
        let at = |b: usize, i: usize, part: usize, h: usize, c: usize| {
            qkv[(b * t + i) * 3 * d + part * d + h * hd + c]
        };
        for b in 0..dims.batch {
            for h in 0..dims.n_head {
                let p = &probs[(b * dims.n_head + h) * t * t..][..t * t];
                for i in 0..t {
                    let delta = (0..t)
                        .map(|j| {
                            (0..hd)
                                .map(|c| (at(b, i, 0, h, c) * at(b, j, 1, h, c)).abs())
                                .sum::<f64>()
                        })
                        .fold(0.0, f64::max)
                        * eps
                        / (hd as f64).sqrt();
                    let factor = (2.0 * delta).exp() * (1.0 + U_BF16).powi(2) - 1.0 + U_BF16 + 1e-5;
                    for c in 0..hd {
                        let mass: f64 =
                            (0..t).map(|j| p[i * t + j] * at(b, j, 2, h, c).abs()).sum();
                        let e = (b * t + i) * d + h * hd + c;
                        let err = (f64::from(got[e]) - want[e]).abs();
                        assert!(
                            err <= factor * mass,
                            "{dims:?} ({b},{h},{i},{c}): {err:e} > {:e}",
                            factor * mass
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn attention_gradients_stay_within_a_few_bf16_units_of_f64() {
        // Norm-wise, per tensor: ‖∂̂ − ∂‖ / ‖∂‖ is a few u for bf16 and ~1e-7 for f32; a
        // 1 % error would be 2.5 u. (Informative bound: 8u.)
        for dims in ATTENTION {
            let qkv = qkv_for(dims, 21);
            let dout = normal(22, dims.batch * dims.seq * dims.d(), 1.0);
            let f = Bf16::PORTABLE.attention_forward(&qkv, dims, true);
            let mut got = vec![0.0; qkv.len()];
            Bf16::PORTABLE
                .attention_backward(&qkv, &f.out, &f.saved, &dout, dims, true, &mut got, false);
            let wide: Vec<f64> = qkv.iter().map(|&x| f64::from(x)).collect();
            let (_, probs) = crate::ops::attention::attention_reference_forward(&wide, dims, true);
            let dwide: Vec<f64> = dout.iter().map(|&x| f64::from(x)).collect();
            let want =
                crate::ops::attention::attention_reference_backward(&wide, &probs, &dwide, dims);
            let err: f64 = got.iter().zip(&want).map(|(&g, w)| (f64::from(g) - w).powi(2)).sum();
            let norm: f64 = want.iter().map(|w| w * w).sum();
            let units = (err / norm).sqrt() / U_BF16;
            assert!(units < 8.0, "{dims:?}: relative error {units} u");
        }
    }

    #[test]
    fn attention_does_not_depend_on_the_thread_count() {
        let dims = ATTENTION[1];
        let qkv = qkv_for(dims, 23);
        let dout = normal(24, dims.batch * dims.seq * dims.d(), 1.0);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let f = Bf16::PORTABLE.attention_forward(&qkv, dims, true);
                let mut g = vec![0.0; qkv.len()];
                Bf16::PORTABLE
                    .attention_backward(&qkv, &f.out, &f.saved, &dout, dims, true, &mut g, false);
                (f.out, g)
            })
        };
        assert_eq!(run(1), run(2));
    }

    /// The AVX512 path's attention (its tile products on `vdpbf16ps`) is the portable one bit
    /// for bit, forward and backward, causal or not, on partial tiles, a split diagonal, head
    /// sizes whose padded width leaves 8 columns past the 16-column panels (12 → 16, 20 → 24)
    /// and an odd inner length (T = 1, 71).
    #[test]
    fn attention_is_the_same_on_every_path() {
        let extra = [
            AttentionDims { batch: 1, seq: 71, n_head: 2, head_dim: 20 },
            AttentionDims { batch: 1, seq: 200, n_head: 1, head_dim: 64 },
        ];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for dims in ATTENTION.into_iter().chain(extra) {
            let qkv = qkv_for(dims, 25);
            let dout = normal(26, dims.batch * dims.seq * dims.d(), 1.0);
            for causal in [true, false] {
                let run = |bf16: Bf16| {
                    let f = bf16.attention_forward(&qkv, dims, causal);
                    let mut g = vec![0.0; qkv.len()];
                    bf16.attention_backward(
                        &qkv, &f.out, &f.saved, &dout, dims, causal, &mut g, false,
                    );
                    (bits(&f.out), bits(&f.saved), bits(&g))
                };
                let want = run(Bf16::PORTABLE);
                for bf16 in implementations() {
                    assert!(run(bf16) == want, "{} {dims:?} causal {causal}", bf16.name());
                }
            }
        }
    }
}
