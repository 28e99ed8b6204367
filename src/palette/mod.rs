//! The palette and image pipeline: how iGPT turns pictures into tokens and tokens into pictures.
//!
//! iGPT models images as sequences of discrete tokens. Each token is the index of a colour in a
//! palette of `K` (512) colours, found by k-means over pixels in [-1, 1] RGB space
//! (`pixel / 127.5 − 1`). The pipeline, with the module doing each step:
//!
//! ```text
//! image file ──image_io──▶ RGB bytes ──resize──▶ 32×32 RGB ──quantize──▶ 1024 tokens (raster order)
//!   (PNG/JPEG, any mode,     (Pillow's antialiased       (nearest palette colour,
//!    converted like            bilinear, bit-exact)        HF's exact arithmetic)
//!    Pillow convert("RGB"))
//!
//! tokens ──quantize::dequantize──▶ RGB bytes ──rgb_image──▶ PNG (upscaled, or a grid of many)
//!
//! pixels of many images ──kmeans──▶ K centres ──files──▶ palette.npy / preprocessor_config.json
//! ```
//!
//! - [`kmeans`]: greedy k-means++ then Lloyd iterations with Hamerly's bounds (exact assignment),
//!   deterministic for any thread count.
//! - [`quantize`]: the [`Palette`], `argmin_k (a² − 2a·c_k + c_k²)` with ties to the lowest
//!   index, evaluated exactly as transformers 5.x does; dequantize by `rint(127.5 (c + 1))`.
//! - [`resize`]: Pillow's `Resample.c` for 8-bit images, fixed point and pass order included.
//! - [`image_io`]: decoding to RGB like Pillow.
//! - [`rgb_image`]: [`RgbImage`], the one RGB image type — upscale, grids, PNG writing.
//! - [`files`]: palette files — OpenAI's `.npy` `(K, 3)` and HF's `preprocessor_config.json`.
//!
//! Conformance: for PNG inputs igpt's tokens are identical to those of HF's
//! `ImageGPTImageProcessorPil` given the same palette, because every step above reproduces the
//! reference bit for bit (tested against fixtures generated with Pillow and transformers).

pub mod files;
pub mod image_io;
pub mod kmeans;
pub mod quantize;
pub mod resize;
pub mod rgb_image;

pub use files::{
    load_palette, load_pixels_npy, read_preprocessor_config, save_palette_npy,
    save_preprocessor_config, PreprocessorConfig,
};
pub use image_io::{decode_image_rgba, load_image_rgb, RgbaImage};
pub use kmeans::{fit_kmeans, KMeansOptions, KMeansResult};
pub use quantize::{dequantize, pixel_to_unit, quantize_rgb8, quantize_unit, Palette};
pub use resize::resize_bilinear_pillow_u8;
pub use rgb_image::{Rgb, RgbImage};

use crate::error::{Error, Result};
use crate::token::Token;
use std::path::{Path, PathBuf};

/// An image file → its tokens: load as RGB, resize to `width × height` with Pillow's bilinear
/// filter (skipped when the size already matches), quantize. `width · height` tokens, raster order.
pub fn image_to_tokens(
    path: &Path,
    palette: &Palette,
    width: usize,
    height: usize,
) -> Result<Vec<Token>> {
    let img = load_image_rgb(path)?.resize_pillow(width, height)?;
    quantize_rgb8(img.bytes(), palette)
}

/// Tokens of one image (`width · height`, raster order) → an RGB image.
pub fn tokens_to_image(
    tokens: &[Token],
    palette: &Palette,
    width: usize,
    height: usize,
) -> Result<RgbImage> {
    if width.checked_mul(height) != Some(tokens.len()) {
        return Err(Error::invalid(format!(
            "{} tokens do not make a {width}×{height} image",
            tokens.len()
        )));
    }
    RgbImage::from_bytes(width, height, &dequantize(tokens, palette)?)
}

/// Tokens of one image → a PNG file, each pixel enlarged to `upscale × upscale`.
pub fn tokens_to_png(
    tokens: &[Token],
    palette: &Palette,
    width: usize,
    height: usize,
    upscale: usize,
    path: &Path,
) -> Result<()> {
    tokens_to_image(tokens, palette, width, height)?.upscale(upscale)?.save_png(path)
}

/// Pixels of image files for fitting a palette: each image converted to RGB, resized with Pillow's
/// bilinear filter to `size = (width, height)` when given, and mapped to [-1, 1] like
/// [`pixel_to_unit`]. Row-major `n × 3` f32.
pub fn pixels_for_fit(paths: &[PathBuf], size: Option<(usize, usize)>) -> Result<Vec<f32>> {
    let table = quantize::unit_table();
    let mut pixels = Vec::new();
    for path in paths {
        let mut img = load_image_rgb(path)?;
        if let Some((w, h)) = size {
            img = img.resize_pillow(w, h)?;
        }
        pixels.extend(img.bytes().iter().map(|&p| table[usize::from(p)]));
    }
    Ok(pixels)
}
