//! [`RgbImage`], the one 8-bit RGB image type: what decoding returns, what dequantized tokens
//! become, what plots are drawn on, and what is written as PNG.
//!
//! Besides pixel access it owns the three ways igpt makes a picture bigger or out of several:
//! - [`RgbImage::upscale`]: nearest neighbour, each pixel a `factor × factor` block, so a 32×32
//!   image is visible;
//! - [`RgbImage::grid`]: images tiled in reading order, each upscaled, with grey gaps around and
//!   between the cells (the sample and completion figures, the quantize preview);
//! - [`RgbImage::encode_png`] / [`RgbImage::save_png`]: an 8-bit RGB PNG, written atomically.
//!
//! Everything igpt builds (a blank image, an upscale, a grid) is at most [`MAX_SIDE`] pixels a
//! side, so a bad size argument cannot ask for gigabytes; decoded images have their own limits
//! (`image_io`). Output is deterministic: the same pixels give the same PNG bytes.

use super::resize::resize_bilinear_pillow_u8;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use image::ImageEncoder;
use std::path::Path;

/// One pixel: red, green, blue.
pub type Rgb = [u8; 3];

/// Largest side of an image igpt builds (8192² RGB = 192 MiB).
pub const MAX_SIDE: usize = 8192;

/// Background and gaps of image grids: a neutral mid grey that biases no image.
const GAP_GREY: Rgb = [128, 128, 128];

/// An 8-bit RGB image, row-major: pixel `(x, y)` is `pixels[y * width + x]`, `y = 0` at the top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    /// `width · height` pixels.
    pub pixels: Vec<Rgb>,
}

impl RgbImage {
    /// An image from its pixels; checks that the size is nonzero and matches.
    pub fn new(width: usize, height: usize, pixels: Vec<Rgb>) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::invalid(format!(
                "an image needs a nonzero size, got {width}×{height}"
            )));
        }
        if width.checked_mul(height) != Some(pixels.len()) {
            return Err(Error::invalid(format!(
                "{} pixels do not make a {width}×{height} image",
                pixels.len()
            )));
        }
        Ok(RgbImage { width, height, pixels })
    }

    /// An image from interleaved bytes `r, g, b, r, g, b, …` (`width · height · 3` of them).
    pub fn from_bytes(width: usize, height: usize, bytes: &[u8]) -> Result<Self> {
        if !bytes.len().is_multiple_of(3) {
            return Err(Error::invalid(format!(
                "{} bytes do not make a {width}×{height} RGB image",
                bytes.len()
            )));
        }
        RgbImage::new(width, height, bytes.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect())
    }

    /// A `width × height` image of one colour; each side must be 1..=[`MAX_SIDE`].
    pub fn filled(width: usize, height: usize, color: Rgb) -> Result<Self> {
        if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
            return Err(Error::invalid(format!(
                "image size {width}x{height}: each side must be between 1 and {MAX_SIDE}"
            )));
        }
        Ok(RgbImage { width, height, pixels: vec![color; width * height] })
    }

    /// The pixels as interleaved bytes `r, g, b, …`.
    pub fn bytes(&self) -> &[u8] {
        self.pixels.as_flattened()
    }

    /// This image resized to `width × height` with Pillow's bilinear filter (bit-exact).
    pub fn resize_pillow(&self, width: usize, height: usize) -> Result<RgbImage> {
        let bytes =
            resize_bilinear_pillow_u8(self.bytes(), self.width, self.height, 3, width, height)?;
        RgbImage::from_bytes(width, height, &bytes)
    }

    /// This image enlarged `factor` times in each direction, each pixel a `factor × factor` block.
    pub fn upscale(&self, factor: usize) -> Result<RgbImage> {
        // A grid of this one image without gaps is exactly that.
        RgbImage::grid(std::slice::from_ref(self), 1, factor, 0)
    }

    /// Tiles equally sized `images` into a grid `cols` wide (at most one row of all of them), in
    /// reading order, each upscaled `scale`× by pixel replication, with `gap` grey pixels around
    /// and between the cells.
    pub fn grid(images: &[RgbImage], cols: usize, scale: usize, gap: usize) -> Result<RgbImage> {
        let (w, h) = cell_size(images, cols, scale)?;
        let too_big =
            || Error::invalid(format!("image grid: scale {scale} or gap {gap} too large"));
        let cols = cols.min(images.len());
        let rows = images.len().div_ceil(cols);
        let (cell_w, cell_h) = (w.checked_mul(scale), h.checked_mul(scale));
        let (cell_w, cell_h) = (cell_w.ok_or_else(too_big)?, cell_h.ok_or_else(too_big)?);
        // n cells of `cell` pixels with a gap before each and after the last.
        let side = |n: usize, cell: usize| n.checked_mul(cell.checked_add(gap)?)?.checked_add(gap);
        let width = side(cols, cell_w).ok_or_else(too_big)?;
        let height = side(rows, cell_h).ok_or_else(too_big)?;
        let mut out = RgbImage::filled(width, height, GAP_GREY)?;
        for (i, image) in images.iter().enumerate() {
            let x0 = gap + (i % cols) * (cell_w + gap);
            let y0 = gap + (i / cols) * (cell_h + gap);
            for y in 0..cell_h {
                let source = &image.pixels[(y / scale) * w..][..w];
                let target = &mut out.pixels[(y0 + y) * width + x0..][..cell_w];
                for (x, pixel) in target.iter_mut().enumerate() {
                    *pixel = source[x / scale];
                }
            }
        }
        Ok(out)
    }

    /// Encodes the image as 8-bit RGB PNG bytes.
    pub fn encode_png(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
        // PNG sides are u32 (any image igpt builds is far smaller; a decoded one is, too).
        let side = |s: usize| {
            u32::try_from(s).map_err(|_| Error::invalid(format!("side {s} is too large for PNG")))
        };
        let (w, h) = (side(self.width)?, side(self.height)?);
        encoder
            .write_image(self.bytes(), w, h, image::ExtendedColorType::Rgb8)
            .map_err(|e| Error::invalid(format!("PNG encoding failed: {e}")))?;
        Ok(bytes)
    }

    /// Saves the image as a PNG file, atomically (see [`crate::io::write_atomic`]).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let bytes = self
            .encode_png()
            .map_err(|e| Error::invalid(format!("{}: cannot encode PNG: {e}", path.display())))?;
        write_atomic(path, &bytes)
    }
}

/// The common `w × h` of the images of a grid, after checking that there is at least one, all
/// share that size, and `cols` and `scale` are positive.
fn cell_size(images: &[RgbImage], cols: usize, scale: usize) -> Result<(usize, usize)> {
    let Some(first) = images.first().filter(|_| cols > 0 && scale > 0) else {
        return Err(Error::invalid(format!(
            "image grid of {} images, {cols} columns, scale {scale}: need at least one image \
             and positive sizes",
            images.len()
        )));
    };
    let (w, h) = (first.width, first.height);
    if let Some((i, bad)) = images.iter().enumerate().find(|(_, i)| (i.width, i.height) != (w, h)) {
        return Err(Error::invalid(format!(
            "image grid: image {i} is {}×{}, expected {w}×{h}",
            bad.width, bad.height
        )));
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: Rgb = [255, 0, 0];

    #[test]
    fn upscale_repeats_pixels() {
        let img = RgbImage::from_bytes(2, 1, &[1, 2, 3, 4, 5, 6]).unwrap();
        let up = img.upscale(2).unwrap();
        assert_eq!((up.width, up.height), (4, 2));
        assert_eq!(up.bytes(), [1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6].repeat(2));
        assert!(img.upscale(0).is_err());
        assert!(img.upscale(1 << 20).is_err());
    }

    #[test]
    fn grid_places_upscaled_images_between_grey_gaps() {
        let cell = |c: Rgb| RgbImage::filled(2, 2, c).unwrap();
        let images = [cell(RED), cell([0, 0, 255]), cell([0, 255, 0])];
        let grid = RgbImage::grid(&images, 2, 3, 1).unwrap();
        // 2 columns of 6 pixels and 2 rows, each with a 1-pixel gap before and after.
        assert_eq!((grid.width, grid.height), (15, 15));
        let at = |x: usize, y: usize| grid.pixels[y * grid.width + x];
        assert_eq!((at(0, 0), at(1, 1), at(6, 6)), (GAP_GREY, RED, RED));
        assert_eq!((at(7, 1), at(8, 1), at(1, 8)), (GAP_GREY, [0, 0, 255], [0, 255, 0]));
        assert_eq!(at(8, 9), GAP_GREY, "no fourth image");
        let odd = RgbImage::filled(2, 3, RED).unwrap();
        assert!(RgbImage::grid(&[cell(RED), odd], 2, 3, 1).is_err(), "sizes differ");
        assert!(RgbImage::grid(&[], 2, 3, 1).is_err());
        assert!(RgbImage::grid(&images, 2, usize::MAX, 1).is_err());
        assert!(
            RgbImage::filled(0, 5, RED).is_err() && RgbImage::filled(MAX_SIDE + 1, 5, RED).is_err()
        );
    }

    #[test]
    fn png_round_trips_and_a_missing_folder_is_named() {
        let img = RgbImage::from_bytes(1, 2, &[1, 2, 3, 4, 5, 6]).unwrap();
        let back = super::super::image_io::decode_image_rgb(&img.encode_png().unwrap(), "mem");
        assert_eq!(back.unwrap(), img);
        let dir = std::env::temp_dir().join(format!("igpt-rgb-image-{}", std::process::id()));
        let err = img.save_png(&dir.join("missing/x.png")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
