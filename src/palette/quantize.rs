//! Colour quantization: pixels → palette indices (tokens) and back.
//!
//! A palette is `K` colours `c_k` in **[-1, 1] RGB space** (`pixel / 127.5 − 1`). A pixel `x` in
//! the same space becomes the token `argmin_k ‖x − c_k‖²`, ties going to the lowest `k`.
//!
//! ## The exact arithmetic (the conformance target: transformers 5.x `ImageGPTImageProcessorPil`)
//! Token identity with HF needs HF's rounding, not just its formula:
//! ```text
//! x   = f32( f64(p) · (1/255) )                    rescale: p is the 8-bit value
//! x   = (x − 0.5f32) / 0.5f32                      normalize, in f32
//! a2  = (x0·x0 + x1·x1) + x2·x2                    f32 (numpy sum over 3 values, left to right)
//! ab  = fma(x2, c2, fma(x1, c1, x0·c0))            f64 (OpenBLAS dgemm with FMA, k = 0, 1, 2)
//! b2  = (c0·c0 + c1·c1) + c2·c2                    f64
//! d_k = (f64(a2) − 2·ab) + b2                      f64; token = first k with the smallest d_k
//! ```
//! The palette is float64 because HF reads it from JSON; an f32 palette (`.npy`) is widened
//! exactly. This expanded form `a² − 2a·c + c²` is what TF and numpy evaluate; it is not the same
//! bits as `Σ (x − c)²`, and near-ties can go either way, so it is kept literally.
//!
//! Dequantize: byte = `clamp(rint(127.5 · (c + 1)), 0, 255)`, `rint` rounding half to even, in
//! f64. Tokens are laid out in raster order, `y · W + x`.

use crate::error::{Error, Result};
use crate::token::Token;

/// A palette of `K` RGB colours in [-1, 1], stored in f64 (the JSON palette's precision).
#[derive(Clone, Debug, PartialEq)]
pub struct Palette {
    /// `K × 3` colours, row-major.
    colors: Vec<f64>,
    /// `b2` of the module doc for each colour, computed once.
    sq_norms: Vec<f64>,
}

/// Palette values may exceed [-1, 1] by this much (centres are means of points in range, so a
/// larger excursion means the file is in other units, e.g. 0..255).
const RANGE_SLACK: f64 = 1e-3;

impl Palette {
    /// A palette from `K × 3` row-major colours. Rejects an empty palette, non-finite values and
    /// values outside [-1, 1].
    pub fn new(colors: Vec<f64>) -> Result<Self> {
        if colors.is_empty() || !colors.len().is_multiple_of(3) {
            return Err(Error::invalid(format!(
                "a palette needs K ≥ 1 rows of 3 values, got {} values",
                colors.len()
            )));
        }
        if let Some(i) = colors.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "palette value {} (row {}) is not finite",
                colors[i],
                i / 3
            )));
        }
        if let Some(i) = colors.iter().position(|v| v.abs() > 1.0 + RANGE_SLACK) {
            return Err(Error::invalid(format!(
                "palette value {} (row {}) is outside [-1, 1]; palettes are in pixel/127.5 − 1 \
                 units, not 0..255",
                colors[i],
                i / 3
            )));
        }
        let sq_norms = colors.chunks_exact(3).map(|c| (c[0] * c[0] + c[1] * c[1]) + c[2] * c[2]);
        let sq_norms = sq_norms.collect();
        Ok(Palette { colors, sq_norms })
    }

    /// A palette from k-means centres: `K × channels` f32 values, `channels` 3 (RGB) or 1 (grey,
    /// replicated to R = G = B).
    pub fn from_centers(centers: &[f32], channels: usize) -> Result<Self> {
        match channels {
            3 => Palette::new(centers.iter().map(|&v| f64::from(v)).collect()),
            1 => Palette::new(centers.iter().flat_map(|&v| [f64::from(v); 3]).collect()),
            _ => Err(Error::invalid(format!("a palette has 1 or 3 channels, not {channels}"))),
        }
    }

    /// Number of colours `K`.
    pub fn len(&self) -> usize {
        self.colors.len() / 3
    }

    /// Always false: a palette has at least one colour.
    pub fn is_empty(&self) -> bool {
        self.colors.is_empty()
    }

    /// The `K × 3` colours, row-major, in [-1, 1].
    pub fn colors(&self) -> &[f64] {
        &self.colors
    }

    /// The colours rounded to f32 (the `.npy` palette format).
    pub fn colors_f32(&self) -> Vec<f32> {
        self.colors.iter().map(|&v| v as f32).collect()
    }

    /// The token of one pixel `x` (already in [-1, 1], f32), by the arithmetic of the module doc.
    pub fn nearest(&self, x: [f32; 3]) -> Token {
        let a2 = f64::from((x[0] * x[0] + x[1] * x[1]) + x[2] * x[2]);
        let x = x.map(f64::from);
        let mut best: (f64, Token) = (f64::INFINITY, 0);
        for (k, (c, &b2)) in self.colors.chunks_exact(3).zip(&self.sq_norms).enumerate() {
            let ab = x[2].mul_add(c[2], x[1].mul_add(c[1], x[0] * c[0]));
            let d = (a2 - 2.0 * ab) + b2;
            // Strict `<` keeps the first index among equal distances (numpy's argmin).
            if d < best.0 {
                best = (d, k as Token);
            }
        }
        best.1
    }
}

/// Maps an 8-bit value to [-1, 1] exactly as transformers 5.x does (`rescale` then `normalize`).
pub fn pixel_to_unit(p: u8) -> f32 {
    let x = (f64::from(p) * (1.0 / 255.0)) as f32;
    (x - 0.5) / 0.5
}

/// The 256 values of [`pixel_to_unit`].
pub fn unit_table() -> [f32; 256] {
    std::array::from_fn(|p| pixel_to_unit(p as u8))
}

/// Tokens of interleaved RGB bytes (`3·n` bytes → `n` tokens, in the order given).
pub fn quantize_rgb8(rgb: &[u8], palette: &Palette) -> Result<Vec<Token>> {
    if !rgb.len().is_multiple_of(3) {
        return Err(Error::invalid(format!(
            "{} bytes is not a whole number of RGB pixels",
            rgb.len()
        )));
    }
    let table = unit_table();
    let tokens = rgb.chunks_exact(3).map(|p| {
        palette.nearest([
            table[usize::from(p[0])],
            table[usize::from(p[1])],
            table[usize::from(p[2])],
        ])
    });
    Ok(tokens.collect())
}

/// Tokens of `n × 3` f32 points already in [-1, 1]. Rejects NaN and infinite values.
pub fn quantize_unit(points: &[f32], palette: &Palette) -> Result<Vec<Token>> {
    if !points.len().is_multiple_of(3) {
        return Err(Error::invalid(format!(
            "{} values is not a whole number of RGB points",
            points.len()
        )));
    }
    if let Some(i) = points.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "point {} has a non-finite value {}",
            i / 3,
            points[i]
        )));
    }
    Ok(points.chunks_exact(3).map(|p| palette.nearest([p[0], p[1], p[2]])).collect())
}

/// One palette value back to a byte: `clamp(rint(127.5 · (c + 1)), 0, 255)`, half to even.
pub fn unit_to_byte(c: f64) -> u8 {
    (127.5 * (c + 1.0)).round_ties_even().clamp(0.0, 255.0) as u8
}

/// RGB bytes of tokens (`n` tokens → `3·n` bytes). A token ≥ K is an error.
pub fn dequantize(tokens: &[Token], palette: &Palette) -> Result<Vec<u8>> {
    let k = palette.len();
    let mut rgb = Vec::with_capacity(tokens.len() * 3);
    for (i, &t) in tokens.iter().enumerate() {
        let t = t as usize;
        if t >= k {
            return Err(Error::invalid(format!(
                "token {t} at position {i} is outside the palette (K = {k})"
            )));
        }
        rgb.extend(palette.colors[3 * t..3 * t + 3].iter().map(|&c| unit_to_byte(c)));
    }
    Ok(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_mapping_hits_the_ends_and_is_monotone() {
        let t = unit_table();
        assert_eq!(t[0], -1.0);
        assert_eq!(t[255], 1.0);
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        // The older `p / 127.5 − 1` differs from this path in the last ulp for some values.
        let differ = (0..=255u8).filter(|&p| t[p as usize] != p as f32 / 127.5 - 1.0).count();
        assert!(differ < 256);
    }

    #[test]
    fn dequantize_rounds_half_to_even_and_clamps() {
        assert_eq!(unit_to_byte(-1.0), 0);
        assert_eq!(unit_to_byte(1.0), 255);
        assert_eq!(unit_to_byte(1.5), 255);
        assert_eq!(unit_to_byte(-2.0), 0);
        // c = 0 is the only in-range value with an exact half: 127.5 → 128 (even).
        assert_eq!(unit_to_byte(0.0), 128);
        assert_eq!(unit_to_byte(-1.0 + 4.0 / 255.0), 2);
    }

    #[test]
    fn ties_go_to_the_lowest_index() {
        let p = Palette::new(vec![0.5, 0.0, 0.0, -0.5, 0.0, 0.0, 0.5, 0.0, 0.0]).unwrap();
        assert_eq!(p.nearest([0.0, 0.0, 0.0]), 0);
        assert_eq!(p.nearest([0.4, 0.0, 0.0]), 0);
        assert_eq!(p.nearest([-0.4, 0.0, 0.0]), 1);
    }

    #[test]
    fn bad_palettes_and_tokens_are_errors() {
        assert!(Palette::new(vec![]).is_err());
        assert!(Palette::new(vec![0.0, 0.0]).is_err());
        assert!(Palette::new(vec![0.0, f64::NAN, 0.0]).is_err());
        assert!(Palette::new(vec![0.0, 200.0, 0.0]).is_err());
        assert!(Palette::from_centers(&[0.0, 0.0], 2).is_err());
        let p = Palette::from_centers(&[0.25], 1).unwrap();
        assert_eq!(p.colors(), &[0.25, 0.25, 0.25]);
        assert!(dequantize(&[1], &p).is_err());
        assert!(quantize_unit(&[0.0, f32::NAN, 0.0], &p).is_err());
        assert!(quantize_rgb8(&[0, 0], &p).is_err());
    }
}
