//! Philox4x32-10: the counter-based random number generator behind every random draw in igpt.
//!
//! A counter-based generator is a pure function `philox(key, counter) -> [u32; 4]`. There is no
//! hidden state to advance, so element `i` of stream `s` can be computed directly — on a CPU
//! thread, on a CUDA thread, in any order — and always gives the same bits. That is what lets a
//! GPU variant regenerate igpt's initial weights, dropout masks and sampling draws exactly.
//!
//! ## The algorithm (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011)
//! State: counter `c = [c0, c1, c2, c3]`, key `k = [k0, k1]`. Ten rounds of
//! ```text
//! (hi0, lo0) = mulhilo(0xD2511F53, c0)        (hi1, lo1) = mulhilo(0xCD9E8D57, c2)
//! c = [hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0]
//! k = [k0 + 0x9E3779B9, k1 + 0xBB67AE85]      (key bump after every round but the last)
//! ```
//! where `mulhilo(a, b)` is the 64-bit product split into its high and low 32-bit halves.
//! Checked against Random123's published known-answer vectors (`kat_vectors`).
//!
//! ## igpt's counter layout
//! - key = the 64-bit seed: `k0 = seed as u32`, `k1 = (seed >> 32) as u32`;
//! - counter = `(index, stream)`: `c0, c1` = low/high words of the 64-bit block index,
//!   `c2, c3` = low/high words of the 64-bit stream id.
//!
//! Each block gives four u32 words, so **word `i` of stream `s`** is word `i % 4` of block
//! `(s, i / 4)`. Conversions:
//! - uniform f32 in [0, 1): `(u >> 8) · 2⁻²⁴` (exact: 24 bits fit the f32 mantissa);
//! - standard normals by Box–Muller, **normal `i` of stream `s`** from block `(s, i / 4)`:
//!   the pair (w0, w1) gives normals 0 and 1, the pair (w2, w3) normals 2 and 3. With
//!   `u1 = uniform(w_even)`, `u2 = uniform(w_odd)`, in f64:
//!   `r = sqrt(-2 ln(1 - u1))`, `z_even = r cos(2π u2)`, `z_odd = r sin(2π u2)`, rounded to f32.
//!   (`1 - u1` lies in (0, 1], so the logarithm is finite.) Evaluating in f64 and rounding once
//!   makes the result independent of any particular f32 `log`/`cos` implementation.

use rand::TryRng;
use wide::u32x8;

/// The stream namespaces: every use of randomness in igpt draws from its own range of stream
/// ids under the run's seed, so no two uses ever share random numbers.
pub mod streams {
    /// Parameter initialisation: stream `p` for parameter number `p` (canonical order).
    pub const INIT: u64 = 0;
    /// Dropout: `DROPOUT + step·2²⁰ + site`.
    pub const DROPOUT: u64 = 1 << 60;
    /// The training-set permutation of epoch `e`: `SHUFFLE + e`.
    pub const SHUFFLE: u64 = 2 << 60;
    /// Horizontal flips: uniform `i` of this stream for the `i`-th sample drawn in training.
    pub const FLIP: u64 = 3 << 60;
    /// BERT masks of step `s`: `BERT_MASK + s`.
    pub const BERT_MASK: u64 = 4 << 60;
    /// Sampling: uniform `t` of stream `SAMPLE + b` for position `t` of sequence `b`.
    pub const SAMPLE: u64 = 5 << 60;
    /// The pixel subsample a palette is fitted on: word `i` picks sample pixel `i`.
    pub const PALETTE_PIXELS: u64 = 6 << 60;
}
use std::convert::Infallible;

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// The raw Philox4x32-10 bijection: ten rounds applied to `counter` under `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(c[0]);
        let p1 = u64::from(PHILOX_M1) * u64::from(c[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// [`philox4x32_10`] on eight counters at once: lane `j` of the result is the block of lane `j`
/// of `counter`, bit for bit. The same rounds on `u32x8` lanes; `mul_keep_low_high` is the
/// lane-wise `mulhilo`. (Dropout's masks draw eight blocks at a time through it, or, with AVX2,
/// through the leaner 64-bit lanes of `eight_blocks`.)
pub fn philox4x32_10_x8(counter: [u32x8; 4], key: [u32; 2]) -> [u32x8; 4] {
    let (m0, m1) = (u32x8::splat(PHILOX_M0), u32x8::splat(PHILOX_M1));
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        }
        let (lo0, hi0) = c[0].mul_keep_low_high(m0);
        let (lo1, hi1) = c[2].mul_keep_low_high(m1);
        c = [hi1 ^ c[1] ^ u32x8::splat(k[0]), lo1, hi0 ^ c[3] ^ u32x8::splat(k[1]), lo0];
    }
    c
}

/// Blocks `index .. index + 8` of `stream`, their words in order, through
/// [`philox4x32_10_x8`].
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
fn eight_blocks(index: u64, stream: u64, key: [u32; 2], out: &mut [u32; 32]) {
    let lanes: [u32; 8] = std::array::from_fn(|j| (index + j as u64) as u32);
    let hi: [u32; 8] = std::array::from_fn(|j| ((index + j as u64) >> 32) as u32);
    let counter = [
        u32x8::new(lanes),
        u32x8::new(hi),
        u32x8::splat(stream as u32),
        u32x8::splat((stream >> 32) as u32),
    ];
    let words = philox4x32_10_x8(counter, key).map(u32x8::to_array);
    for (j, block) in out.chunks_exact_mut(4).enumerate() {
        block.copy_from_slice(&[words[0][j], words[1][j], words[2][j], words[3][j]]);
    }
}

/// Blocks `index .. index + 8` of `stream`, their words in order, with AVX2: each counter
/// word sits in the low half of a 64-bit lane (four blocks per vector), so one `vpmuludq`
/// gives a whole 64-bit product: `lo` is the lane as it is, `hi` the lane shifted right by 32.
/// The high halves carry junk, which the next multiply ignores and the final packing drops.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
fn eight_blocks(index: u64, stream: u64, key: [u32; 2], out: &mut [u32; 32]) {
    use std::arch::x86_64::*;
    // SAFETY: AVX2 is enabled at compile time (cfg above); the stores write `out`'s 128 bytes.
    unsafe {
        let (m0, m1) = (_mm256_set1_epi64x(PHILOX_M0 as i64), _mm256_set1_epi64x(PHILOX_M1 as i64));
        let (s_lo, s_hi) =
            (_mm256_set1_epi64x(stream as u32 as i64), _mm256_set1_epi64x((stream >> 32) as i64));
        for half in 0..2 {
            let b = index + 4 * half as u64;
            let block = |j: u64| (b + j) as i64;
            let mut c0 = _mm256_set_epi64x(block(3), block(2), block(1), block(0));
            let mut c1 = _mm256_srli_epi64::<32>(c0);
            let (mut c2, mut c3) = (s_lo, s_hi);
            let mut k = key;
            for round in 0..10 {
                if round > 0 {
                    k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
                }
                let p0 = _mm256_mul_epu32(c0, m0);
                let p1 = _mm256_mul_epu32(c2, m1);
                let (k0, k1) = (_mm256_set1_epi64x(k[0] as i64), _mm256_set1_epi64x(k[1] as i64));
                c0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64::<32>(p1), c1), k0);
                c1 = p1;
                c2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64::<32>(p0), c3), k1);
                c3 = p0;
            }
            // Words (0, 1) and (2, 3) of each block as one 64-bit lane each, then block by block.
            let low = _mm256_set1_epi64x(0xffff_ffff);
            let w01 = _mm256_or_si256(_mm256_and_si256(c0, low), _mm256_slli_epi64::<32>(c1));
            let w23 = _mm256_or_si256(_mm256_and_si256(c2, low), _mm256_slli_epi64::<32>(c3));
            let even = _mm256_unpacklo_epi64(w01, w23); // blocks 0 and 2
            let odd = _mm256_unpackhi_epi64(w01, w23); // blocks 1 and 3
            let first = _mm256_permute2x128_si256::<0x20>(even, odd); // blocks 0, 1
            let second = _mm256_permute2x128_si256::<0x31>(even, odd); // blocks 2, 3
            let dst = out.as_mut_ptr().add(16 * half).cast::<__m256i>();
            _mm256_storeu_si256(dst, first);
            _mm256_storeu_si256(dst.add(1), second);
        }
    }
}

/// Maps a u32 to a uniform f32 in [0, 1): its top 24 bits times 2⁻²⁴.
#[inline]
pub fn u32_to_unit_f32(u: u32) -> f32 {
    (u >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A seeded Philox generator: a key, and random access to any (stream, index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Philox {
    key: [u32; 2],
}

impl Philox {
    /// The generator for `seed` (the seed is the Philox key).
    pub fn new(seed: u64) -> Self {
        Philox { key: [seed as u32, (seed >> 32) as u32] }
    }

    /// Block `index` of `stream`: four fresh u32 words.
    pub fn block(&self, stream: u64, index: u64) -> [u32; 4] {
        let counter = [index as u32, (index >> 32) as u32, stream as u32, (stream >> 32) as u32];
        philox4x32_10(counter, self.key)
    }

    /// Word `i` of `stream`.
    pub fn u32_at(&self, stream: u64, i: u64) -> u32 {
        self.block(stream, i / 4)[(i % 4) as usize]
    }

    /// Uniform f32 in [0, 1) number `i` of `stream`.
    pub fn uniform_at(&self, stream: u64, i: u64) -> f32 {
        u32_to_unit_f32(self.u32_at(stream, i))
    }

    /// Standard normal number `i` of `stream` (Box–Muller, see the module doc).
    pub fn normal_at(&self, stream: u64, i: u64) -> f32 {
        let w = self.block(stream, i / 4);
        let pair = ((i % 4) / 2) as usize;
        let (z_even, z_odd) = box_muller(w[2 * pair], w[2 * pair + 1]);
        if i.is_multiple_of(2) {
            z_even
        } else {
            z_odd
        }
    }

    /// Fills `out` with words `first .. first + out.len()` of `stream` (`first` a multiple of
    /// 4, so the words start at a block boundary). Eight blocks at a time go through
    /// `eight_blocks` (SIMD lanes); the tail block by block.
    ///
    /// # Panics
    /// If `first` is not a multiple of 4.
    pub fn fill_words(&self, stream: u64, first: u64, out: &mut [u32]) {
        assert!(first.is_multiple_of(4), "fill_words: word {first} is not at a block boundary");
        let first_block = first / 4;
        let tail_block = first_block + (out.len() / 32 * 8) as u64;
        let mut groups = out.chunks_exact_mut(32);
        for (g, group) in groups.by_ref().enumerate() {
            let index = first_block + 8 * g as u64;
            let group: &mut [u32; 32] = group.try_into().expect("32 words");
            eight_blocks(index, stream, self.key, group);
        }
        let tail = groups.into_remainder();
        for (b, chunk) in tail.chunks_mut(4).enumerate() {
            let w = self.block(stream, tail_block + b as u64);
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }

    /// Fills `out` with `mean + std · normal_i` for `i = 0..out.len()` of `stream`.
    pub fn fill_normal(&self, stream: u64, mean: f32, std: f32, out: &mut [f32]) {
        for (block, chunk) in out.chunks_mut(4).enumerate() {
            let w = self.block(stream, block as u64);
            let (z0, z1) = box_muller(w[0], w[1]);
            let (z2, z3) = box_muller(w[2], w[3]);
            for (o, z) in chunk.iter_mut().zip([z0, z1, z2, z3]) {
                *o = mean + std * z;
            }
        }
    }

    /// A sequential `rand` generator reading `stream` from word 0 onwards.
    pub fn stream(&self, stream: u64) -> PhiloxStream {
        PhiloxStream { philox: *self, stream, next_word: 0 }
    }
}

/// Two standard normals from two u32 words (Box–Muller in f64, rounded to f32).
fn box_muller(w_even: u32, w_odd: u32) -> (f32, f32) {
    let u1 = f64::from(u32_to_unit_f32(w_even));
    let u2 = f64::from(u32_to_unit_f32(w_odd));
    let r = (-2.0 * (1.0 - u1).ln()).sqrt();
    let theta = 2.0 * std::f64::consts::PI * u2;
    ((r * theta.cos()) as f32, (r * theta.sin()) as f32)
}

/// Adapter to `rand`'s generator traits: the words of one Philox stream, in order.
///
/// Word `n` of the adapter is exactly `Philox::u32_at(stream, n)`; `next_u64` joins two words
/// little-endian (low word first), as `rand_core` does.
#[derive(Clone, Debug)]
pub struct PhiloxStream {
    philox: Philox,
    stream: u64,
    next_word: u64,
}

impl PhiloxStream {
    /// How many u32 words have been drawn so far (the position to resume from).
    pub fn position(&self) -> u64 {
        self.next_word
    }

    /// Continues from word `position` (as returned by [`PhiloxStream::position`]).
    pub fn seek(&mut self, position: u64) {
        self.next_word = position;
    }
}

impl TryRng for PhiloxStream {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let word = self.philox.u32_at(self.stream, self.next_word);
        self.next_word += 1;
        Ok(word)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let lo = u64::from(self.try_next_u32()?);
        let hi = u64::from(self.try_next_u32()?);
        Ok(lo | (hi << 32))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(4) {
            let bytes = self.try_next_u32()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Random123 `kat_vectors`: philox4x32 10, counter, key → expected.
    #[test]
    fn random123_known_answers() {
        let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            ([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
            ([u32::MAX; 4], [u32::MAX; 2], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
            (
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0],
                [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
            ),
        ];
        for (counter, key, expected) in cases {
            assert_eq!(philox4x32_10(counter, key), expected);
        }
    }

    #[test]
    fn counter_layout_places_index_then_stream() {
        let seed = 0x0123_4567_89ab_cdef_u64;
        let p = Philox::new(seed);
        let expected = philox4x32_10([7, 0, 3, 0], [0x89ab_cdef, 0x0123_4567]);
        assert_eq!(p.block(3, 7), expected);
        assert_eq!(p.u32_at(3, 7 * 4 + 2), expected[2]);
    }

    #[test]
    fn unit_conversion_is_exact_and_below_one() {
        assert_eq!(u32_to_unit_f32(0), 0.0);
        assert_eq!(u32_to_unit_f32(u32::MAX), 1.0 - 2f32.powi(-24));
        assert_eq!(u32_to_unit_f32(1 << 31), 0.5);
    }

    #[test]
    fn fills_agree_with_random_access() {
        let p = Philox::new(42);
        let mut z = vec![0.0; 11];
        p.fill_normal(5, 1.0, 2.0, &mut z);
        for (i, &z) in z.iter().enumerate() {
            assert_eq!(z, 1.0 + 2.0 * p.normal_at(5, i as u64));
        }
        // Word fills: whole groups of eight blocks, a partial block at the end, a start past
        // 2³² blocks (the counter's high word).
        for (first, len) in [(0, 75), (4 * 13, 33), ((1 << 34) - 16, 64), (8, 3)] {
            let mut w = vec![0; len];
            p.fill_words(5, first, &mut w);
            for (i, &w) in w.iter().enumerate() {
                assert_eq!(w, p.u32_at(5, first + i as u64), "word {} of fill at {first}", i);
            }
        }
    }

    #[test]
    fn eight_lanes_match_the_scalar_rounds() {
        let key = [0xa409_3822, 0x299f_31d0];
        let counters: [[u32; 4]; 8] =
            std::array::from_fn(|j| [u32::MAX - j as u32, 7 * j as u32, 0x1319_8a2e, 1 << j]);
        let lanes = std::array::from_fn(|w| u32x8::new(std::array::from_fn(|j| counters[j][w])));
        let words = philox4x32_10_x8(lanes, key).map(u32x8::to_array);
        for (j, &c) in counters.iter().enumerate() {
            let expected = philox4x32_10(c, key);
            assert_eq!([words[0][j], words[1][j], words[2][j], words[3][j]], expected, "lane {j}");
        }
    }

    #[test]
    fn normals_have_unit_moments() {
        let p = Philox::new(1);
        let mut z = vec![0.0f32; 200_000];
        p.fill_normal(0, 0.0, 1.0, &mut z);
        let n = z.len() as f64;
        let mean = z.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = z.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        assert!(z.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn rand_adapter_reads_the_stream_in_order() {
        let p = Philox::new(9);
        let mut s = p.stream(2);
        assert_eq!(s.next_u32(), p.u32_at(2, 0));
        let w = u64::from(p.u32_at(2, 1)) | (u64::from(p.u32_at(2, 2)) << 32);
        assert_eq!(s.next_u64(), w);
        assert_eq!(s.position(), 3);
        let mut bytes = [0u8; 6];
        s.fill_bytes(&mut bytes);
        assert_eq!(bytes[..4], p.u32_at(2, 3).to_le_bytes());
        assert_eq!(bytes[4..], p.u32_at(2, 4).to_le_bytes()[..2]);
    }
}
