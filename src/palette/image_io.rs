//! Reading images as 8-bit RGB the way Pillow's `convert("RGB")` does, and writing PNGs.
//!
//! The first step of the pipeline: a PNG or JPEG file becomes an [`RgbImage`] — `width × height`
//! pixels of three bytes, row-major. HF's image processor does not convert modes itself, so the
//! caller (and igpt) converts like Pillow:
//!
//! | decoded as            | RGB bytes                                    | Pillow mode        |
//! |-----------------------|----------------------------------------------|--------------------|
//! | grey 1/2/4/8-bit      | `(v, v, v)` (low bit depths scaled to 0..255) | `1`, `L`          |
//! | grey + alpha          | `(v, v, v)`, alpha dropped                   | `LA`               |
//! | palette (+ tRNS)      | the palette colour, transparency ignored     | `P`, `PA`          |
//! | RGB / RGBA            | `(r, g, b)`, alpha dropped                   | `RGB`, `RGBA`      |
//! | 16-bit RGB(A), LA     | the high byte of each sample                 | `RGB`, `RGBA`, `LA`|
//! | 16-bit grey           | the high byte (Pillow saturates at 255 here) | `I;16`             |
//!
//! The one deliberate difference: Pillow's `I;16 → RGB` clips every value ≥ 256 to 255, which
//! turns a 16-bit grey photo white; igpt takes the high byte, as Pillow does for every other
//! 16-bit mode. Alpha is dropped, not composited (that is `convert("RGB")`, not
//! transformers' `convert_to_rgb`, which blends onto white). JPEG decoding is the `image` crate's
//! (zune-jpeg); libjpeg-turbo inside Pillow may differ by a level on some pixels, so token identity
//! with HF is guaranteed for PNG inputs.
//!
//! The last step goes back: an [`RgbImage`] is written as a PNG, optionally enlarged by an integer
//! factor with nearest-neighbour pixels so a 32×32 image is visible.

use super::resize::resize_bilinear_pillow_u8;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use image::{DynamicImage, ImageEncoder};
use std::path::Path;

/// Largest side of an image igpt writes (guards the upscale against absurd allocations).
pub const MAX_WRITE_SIDE: usize = 1 << 15;

/// An 8-bit RGB image: `width × height` pixels of `[r, g, b]`, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    /// `width · height · 3` bytes.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// An image from its bytes; checks that the size matches.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::invalid(format!(
                "an image needs a nonzero size, got {width}×{height}"
            )));
        }
        if width.checked_mul(height).and_then(|n| n.checked_mul(3)) != Some(pixels.len()) {
            return Err(Error::invalid(format!(
                "{} bytes do not make a {width}×{height} RGB image",
                pixels.len()
            )));
        }
        Ok(RgbImage { width, height, pixels })
    }

    /// This image resized to `width × height` with Pillow's bilinear filter (bit-exact).
    pub fn resize_pillow(&self, width: usize, height: usize) -> Result<RgbImage> {
        let pixels =
            resize_bilinear_pillow_u8(&self.pixels, self.width, self.height, 3, width, height)?;
        Ok(RgbImage { width, height, pixels })
    }

    /// This image enlarged `factor` times in each direction, each pixel a `factor × factor` block.
    pub fn upscale(&self, factor: usize) -> Result<RgbImage> {
        let (width, height) = scaled_size(self.width, self.height, factor)?;
        let mut pixels = Vec::with_capacity(width * height * 3);
        for row in self.pixels.chunks_exact(self.width * 3) {
            let wide_row: Vec<u8> = row.chunks_exact(3).flat_map(|p| p.repeat(factor)).collect();
            for _ in 0..factor {
                pixels.extend_from_slice(&wide_row);
            }
        }
        Ok(RgbImage { width, height, pixels })
    }
}

/// The size after an integer upscale, checked against [`MAX_WRITE_SIDE`].
fn scaled_size(width: usize, height: usize, factor: usize) -> Result<(usize, usize)> {
    let too_big = |s: usize| s.checked_mul(factor).is_none_or(|v| v > MAX_WRITE_SIDE);
    if factor == 0 || too_big(width) || too_big(height) {
        return Err(Error::invalid(format!(
            "upscale factor {factor} on {width}×{height} must be ≥ 1 and keep sides ≤ {MAX_WRITE_SIDE}"
        )));
    }
    Ok((width * factor, height * factor))
}

/// Reads a PNG or JPEG file (format from its contents) and converts it to RGB as described in the
/// module doc. Unreadable files, non-images and empty files are errors naming the file.
pub fn load_image_rgb(path: &Path) -> Result<RgbImage> {
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Error::io(path, e))?;
    let decoded = reader.decode().map_err(|e| {
        Error::format(path.display(), format!("not a readable PNG/JPEG image: {e}"))
    })?;
    to_rgb_like_pillow(decoded).map_err(|msg| Error::format(path.display(), msg))
}

/// Decodes PNG or JPEG bytes (e.g. from an archive) to RGB; `name` is used in error messages.
pub fn decode_image_rgb(bytes: &[u8], name: &str) -> Result<RgbImage> {
    let decoded = image::load_from_memory(bytes)
        .map_err(|e| Error::format(name, format!("not a readable PNG/JPEG image: {e}")))?;
    to_rgb_like_pillow(decoded).map_err(|msg| Error::format(name, msg))
}

/// Pillow's `convert("RGB")` on a decoded image (see the table in the module doc).
fn to_rgb_like_pillow(img: DynamicImage) -> std::result::Result<RgbImage, String> {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let pixels: Vec<u8> = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageRgba8(b) => b.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        DynamicImage::ImageLuma8(b) => b.iter().flat_map(|&v| [v; 3]).collect(),
        DynamicImage::ImageLumaA8(b) => b.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        DynamicImage::ImageRgb16(b) => b.iter().map(|&v| high_byte(v)).collect(),
        DynamicImage::ImageRgba16(b) => {
            b.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]].map(high_byte)).collect()
        }
        DynamicImage::ImageLuma16(b) => b.iter().flat_map(|&v| [high_byte(v); 3]).collect(),
        DynamicImage::ImageLumaA16(b) => {
            b.chunks_exact(2).flat_map(|p| [high_byte(p[0]); 3]).collect()
        }
        other => return Err(format!("unsupported pixel type {:?}", other.color())),
    };
    RgbImage::new(width, height, pixels).map_err(|e| e.to_string())
}

/// The top 8 bits of a 16-bit sample (Pillow's `;16B` unpackers keep the high byte).
fn high_byte(v: u16) -> u8 {
    (v >> 8) as u8
}

/// Encodes an image as PNG bytes.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    let (w, h) = (img.width as u32, img.height as u32);
    encoder
        .write_image(&img.pixels, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::invalid(format!("PNG encoding failed: {e}")))?;
    Ok(bytes)
}

/// Writes `img` enlarged `upscale` times as a PNG file (atomically).
pub fn write_png(img: &RgbImage, upscale: usize, path: &Path) -> Result<()> {
    write_atomic(path, &encode_png(&img.upscale(upscale)?)?)
}

/// Tiles equally sized images into a grid `cols` wide (row-major), gaps filled black.
pub fn grid(images: &[RgbImage], cols: usize) -> Result<RgbImage> {
    let first = images.first().ok_or_else(|| Error::invalid("a grid needs at least one image"))?;
    let (w, h) = (first.width, first.height);
    if let Some(bad) = images.iter().find(|i| (i.width, i.height) != (w, h)) {
        return Err(Error::invalid(format!(
            "grid images must share one size: {w}×{h} vs {}×{}",
            bad.width, bad.height
        )));
    }
    let cols = cols.clamp(1, images.len());
    let rows = images.len().div_ceil(cols);
    scaled_size(w * cols, h * rows, 1)?;
    let mut pixels = vec![0u8; w * cols * h * rows * 3];
    let stride = w * cols * 3;
    for (n, img) in images.iter().enumerate() {
        let (gx, gy) = (n % cols, n / cols);
        for (y, row) in img.pixels.chunks_exact(w * 3).enumerate() {
            let start = (gy * h + y) * stride + gx * w * 3;
            pixels[start..start + w * 3].copy_from_slice(row);
        }
    }
    RgbImage::new(w * cols, h * rows, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upscale_repeats_pixels() {
        let img = RgbImage::new(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let up = img.upscale(2).unwrap();
        assert_eq!((up.width, up.height), (4, 2));
        assert_eq!(up.pixels, [1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6].repeat(2));
        assert!(img.upscale(0).is_err());
        assert!(img.upscale(1 << 20).is_err());
    }

    #[test]
    fn conversions_follow_pillow() {
        let la = image::GrayAlphaImage::from_raw(2, 1, vec![10, 0, 200, 255]).unwrap();
        let rgb = to_rgb_like_pillow(DynamicImage::ImageLumaA8(la)).unwrap();
        assert_eq!(rgb.pixels, vec![10, 10, 10, 200, 200, 200]);
        let rgb16 =
            image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(1, 1, vec![0x12ff, 0xff00, 0x00ff])
                .unwrap();
        let rgb = to_rgb_like_pillow(DynamicImage::ImageRgb16(rgb16)).unwrap();
        assert_eq!(rgb.pixels, vec![0x12, 0xff, 0x00]);
    }

    #[test]
    fn png_round_trip_and_grid() {
        let a = RgbImage::new(1, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let b = RgbImage::new(1, 2, vec![7, 8, 9, 10, 11, 12]).unwrap();
        let g = grid(&[a.clone(), b, a.clone()], 2).unwrap();
        assert_eq!((g.width, g.height), (2, 4));
        assert_eq!(&g.pixels[..6], &[1, 2, 3, 7, 8, 9]);
        assert_eq!(&g.pixels[18..], &[4, 5, 6, 0, 0, 0]);
        let back = decode_image_rgb(&encode_png(&g).unwrap(), "grid").unwrap();
        assert_eq!(back, g);
    }

    #[test]
    fn garbage_is_a_format_error() {
        let e = decode_image_rgb(b"not an image", "x.png").unwrap_err();
        assert!(e.to_string().contains("x.png"), "{e}");
        assert!(decode_image_rgb(b"", "empty.png").is_err());
    }
}
