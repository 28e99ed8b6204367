//! Pillow's antialiased bilinear resize, bit for bit (`Image.resize(size, Image.BILINEAR)`).
//!
//! HF's `ImageGPTImageProcessor` shrinks every image to 32×32 with Pillow before quantizing, so
//! igpt's tokens equal HF's tokens only if this resize matches Pillow's byte for byte. The `image`
//! crate's resize is a different filter; this file re-derives Pillow's `Resample.c` for 8-bit data.
//!
//! ## The filter (one axis; `in` source pixels → `out` destination pixels)
//! ```text
//! scale       = in / out                      (f64; in, out exact)
//! filterscale = max(scale, 1)                 (widen the triangle when shrinking = antialiasing)
//! support     = 1 · filterscale               (bilinear support is 1)
//! for xx in 0..out:
//!     center = (xx + 0.5) · scale
//!     xmin   = max(0, trunc(center − support + 0.5))
//!     xmax   = min(in, trunc(center + support + 0.5))            (exclusive)
//!     w[x]   = tri(((xmin + x) − center + 0.5) · (1 / filterscale))   x = 0..xmax−xmin
//!     w[x]  /= Σ w                             (in f64, skipped when the sum is 0)
//!     k[x]   = trunc(0.5 + w[x] · 2²²)          (fixed point; weights are never negative here)
//! tri(t) = 1 − |t| if |t| < 1, else 0
//! out[xx] = clamp((2²¹ + Σ_x src[xmin + x] · k[x]) >> 22, 0, 255)      (i32 arithmetic)
//! ```
//! The two axes are separable. An axis is resampled only when its size changes. When both change,
//! the order is Pillow 13's (PR #9549): **vertical first** if the height shrinks and by more than
//! twice as many pixels as the width does (`in_h > out_h` and `in_h − out_h > 2 (in_w − out_w)`),
//! otherwise **horizontal first**. Horizontal-first resamples only the source rows
//! `ybox_first .. ybox_last` that the vertical pass will read; vertical-first resamples every
//! column. Either way the first pass writes an 8-bit intermediate image — that rounding is part
//! of Pillow's result, so it is part of ours (and the order changes the bytes). Earlier Pillow
//! releases always ran the horizontal pass first; the fixtures pin Pillow 13.0's behaviour.
//! Channels are independent and use the same coefficients.

use crate::error::{Error, Result};

/// Pillow's `PRECISION_BITS` for 8-bit images: coefficients are fixed point with 22 fraction bits.
const PRECISION_BITS: u32 = 22;

/// Largest width or height accepted for a resize target (guards against absurd allocations).
pub const MAX_RESIZE_SIDE: usize = 1 << 15;

/// One axis of the resample: for each output index the first source index and its weights.
struct AxisCoeffs {
    /// First source index read by each output index.
    start: Vec<usize>,
    /// Fixed-point weights, `ksize` slots per output index (unused slots are 0).
    weights: Vec<i32>,
    /// Number of weights actually used by each output index.
    count: Vec<usize>,
    /// Row stride of `weights`.
    ksize: usize,
}

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the bilinear filter.
fn axis_coeffs(in_size: usize, out_size: usize) -> AxisCoeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0 × filterscale
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut coeffs = AxisCoeffs {
        start: Vec::with_capacity(out_size),
        weights: vec![0; out_size * ksize],
        count: Vec::with_capacity(out_size),
        ksize,
    };
    let mut w = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; `as i64` does the same.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax - xmin;
        let mut sum = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            *wx = triangle(((x + xmin) as f64 - center + 0.5) * inv_filterscale);
            sum += *wx;
        }
        let row = &mut coeffs.weights[xx * ksize..xx * ksize + n];
        for (k, &wx) in row.iter_mut().zip(&w) {
            let normalized = if sum != 0.0 { wx / sum } else { wx };
            // Weights of the triangle filter are ≥ 0, so Pillow's `-0.5` branch never applies.
            *k = (0.5 + normalized * f64::from(1u32 << PRECISION_BITS)) as i32;
        }
        coeffs.start.push(xmin);
        coeffs.count.push(n);
    }
    coeffs
}

/// The bilinear ("triangle") filter.
fn triangle(t: f64) -> f64 {
    let t = t.abs();
    if t < 1.0 {
        1.0 - t
    } else {
        0.0
    }
}

/// Pillow's `clip8`: drop the 22 fraction bits and clamp to a byte.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The rounding offset every accumulator starts from (one half in fixed point).
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Horizontal pass: resamples rows `row0 .. row0 + rows` of `src` (width `in_w`) to width `out_w`.
fn resample_horizontal(
    src: &[u8],
    in_w: usize,
    channels: usize,
    row0: usize,
    rows: usize,
    c: &AxisCoeffs,
) -> Vec<u8> {
    let out_w = c.start.len();
    let mut out = vec![0u8; rows * out_w * channels];
    for (yy, out_row) in out.chunks_exact_mut(out_w * channels).enumerate() {
        let src_row = &src[(row0 + yy) * in_w * channels..(row0 + yy + 1) * in_w * channels];
        for xx in 0..out_w {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + c.count[xx]];
            for ch in 0..channels {
                let mut acc = HALF;
                for (x, &kx) in k.iter().enumerate() {
                    acc += i32::from(src_row[(c.start[xx] + x) * channels + ch]) * kx;
                }
                out_row[xx * channels + ch] = clip8(acc);
            }
        }
    }
    out
}

/// Vertical pass: `src` has width `w`; output row `yy` reads source rows from
/// `c.start[yy] - row_offset` on (the offset accounts for rows the horizontal pass skipped).
fn resample_vertical(
    src: &[u8],
    w: usize,
    channels: usize,
    row_offset: usize,
    c: &AxisCoeffs,
) -> Vec<u8> {
    let out_h = c.start.len();
    let stride = w * channels;
    let mut out = vec![0u8; out_h * stride];
    for (yy, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let k = &c.weights[yy * c.ksize..yy * c.ksize + c.count[yy]];
        let first = c.start[yy] - row_offset;
        for (i, o) in out_row.iter_mut().enumerate() {
            let mut acc = HALF;
            for (y, &ky) in k.iter().enumerate() {
                acc += i32::from(src[(first + y) * stride + i]) * ky;
            }
            *o = clip8(acc);
        }
    }
    out
}

/// Resizes an 8-bit image (`channels` interleaved bytes per pixel, row-major) from
/// `in_w × in_h` to `out_w × out_h` exactly as Pillow's `Image.resize(..., BILINEAR)` does.
pub fn resize_bilinear_pillow_u8(
    src: &[u8],
    in_w: usize,
    in_h: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Result<Vec<u8>> {
    if in_w == 0 || in_h == 0 || channels == 0 {
        return Err(Error::invalid(format!("cannot resize an empty image ({in_w}×{in_h})")));
    }
    if in_w.checked_mul(in_h).and_then(|p| p.checked_mul(channels)) != Some(src.len()) {
        return Err(Error::invalid(format!(
            "image buffer has {} bytes, expected {in_w}×{in_h}×{channels}",
            src.len()
        )));
    }
    if out_w == 0 || out_h == 0 || out_w > MAX_RESIZE_SIDE || out_h > MAX_RESIZE_SIDE {
        return Err(Error::invalid(format!(
            "resize target {out_w}×{out_h} must have sides in 1..={MAX_RESIZE_SIDE}"
        )));
    }
    let need_horizontal = out_w != in_w;
    let need_vertical = out_h != in_h;
    if !need_horizontal && !need_vertical {
        return Ok(src.to_vec());
    }
    let vertical = axis_coeffs(in_h, out_h);
    if !need_horizontal {
        return Ok(resample_vertical(src, in_w, channels, 0, &vertical));
    }
    let horizontal = axis_coeffs(in_w, out_w);
    if !need_vertical {
        return Ok(resample_horizontal(src, in_w, channels, 0, in_h, &horizontal));
    }
    if vertical_first(in_w, in_h, out_w, out_h) {
        let temp = resample_vertical(src, in_w, channels, 0, &vertical);
        return Ok(resample_horizontal(&temp, in_w, channels, 0, out_h, &horizontal));
    }
    // Source rows the vertical pass reads: from the first output row's start to the last's end.
    let ybox_first = vertical.start[0];
    let ybox_last = vertical.start[out_h - 1] + vertical.count[out_h - 1];
    let temp =
        resample_horizontal(src, in_w, channels, ybox_first, ybox_last - ybox_first, &horizontal);
    Ok(resample_vertical(&temp, out_w, channels, ybox_first, &vertical))
}

/// Pillow 13's pass order: vertical first when the height shrinks by more than twice as many
/// pixels as the width (which may also grow).
fn vertical_first(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    let shrink = |i: usize, o: usize| i as i64 - o as i64;
    in_h > out_h && shrink(in_h, out_h) > 2 * shrink(in_w, out_w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(7, 3), (100, 32), (32, 100), (5, 5), (1, 9), (9, 1)] {
            let c = axis_coeffs(i, o);
            for xx in 0..o {
                let k = &c.weights[xx * c.ksize..xx * c.ksize + c.count[xx]];
                let s: i32 = k.iter().sum();
                assert!((s - (1 << 22)).abs() <= k.len() as i32, "{i}->{o} at {xx}: {s}");
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 13 * 9 * 3];
        let out = resize_bilinear_pillow_u8(&src, 13, 9, 3, 32, 5).unwrap();
        assert!(out.iter().all(|&p| p == 77));
    }

    #[test]
    fn halving_matches_pillow() {
        // 4 → 2: scale 2, support 2. Output 0 reads x = 0..3 with weights (¾, ¾, ¼)/1.75,
        // output 1 reads x = 1..4 with (¼, ¾, ¾)/1.75. Pillow 13 gives [57, 183].
        let c = axis_coeffs(4, 2);
        assert_eq!(c.start, vec![0, 1]);
        assert_eq!(c.count, vec![3, 3]);
        let out = resize_bilinear_pillow_u8(&[0, 80, 160, 240], 4, 1, 1, 2, 1).unwrap();
        assert_eq!(out, vec![57, 183]);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(resize_bilinear_pillow_u8(&[], 0, 0, 3, 4, 4).is_err());
        assert!(resize_bilinear_pillow_u8(&[0; 12], 2, 2, 3, 0, 4).is_err());
        assert!(resize_bilinear_pillow_u8(&[0; 11], 2, 2, 3, 4, 4).is_err());
    }
}
