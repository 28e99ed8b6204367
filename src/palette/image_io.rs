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
//! Images with transparency that are to match transformers' `ImageGPTImageProcessor` with
//! `do_convert_rgb=True` (the emoji data set) are decoded as RGBA instead ([`decode_image_rgba`])
//! and blended onto white with [`composite_over_white`], Pillow's `alpha_composite` to the bit.
//!
//! The way back, from an [`RgbImage`] to a PNG, is the image type's own (`rgb_image`).

use super::rgb_image::RgbImage;
use crate::error::{Error, Result};
use crate::io::read_bytes;
use image::DynamicImage;
use std::path::Path;

/// Reads a PNG or JPEG file (format from its contents) and converts it to RGB as described in the
/// module doc. Unreadable files, non-images and empty files are errors naming the file.
pub fn load_image_rgb(path: &Path) -> Result<RgbImage> {
    decode_image_rgb(&read_bytes(path)?, &path.display().to_string())
}

/// Decodes PNG or JPEG bytes (e.g. from an archive) to RGB; `name` is used in error messages.
pub fn decode_image_rgb(bytes: &[u8], name: &str) -> Result<RgbImage> {
    to_rgb_like_pillow(decode_limited(bytes, name)?).map_err(|msg| Error::format(name, msg))
}

/// Largest image igpt decodes: 2¹⁴ pixels a side and 2²⁶ pixels in all (256 MiB of RGBA), so a
/// hostile header cannot make the decoder allocate without bound.
const MAX_DECODE_SIDE: u32 = 1 << 14;
const MAX_DECODE_PIXELS: u64 = 1 << 26;

/// Decodes PNG or JPEG bytes (format from their contents) under igpt's limits, checking the
/// header's size before any pixel is decoded: every image igpt reads goes through here.
fn decode_limited(bytes: &[u8], name: &str) -> Result<DynamicImage> {
    let bad =
        |e: image::ImageError| Error::format(name, format!("not a readable PNG/JPEG image: {e}"));
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::format(name, e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_PIXELS * 8);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(bad)?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    if u64::from(w) * u64::from(h) > MAX_DECODE_PIXELS {
        let msg = format!("{w}×{h} pixels is more than igpt decodes ({MAX_DECODE_PIXELS})");
        return Err(Error::format(name, msg));
    }
    DynamicImage::from_decoder(decoder).map_err(bad)
}

/// An 8-bit RGBA image, `width × height` pixels of `[r, g, b, a]`, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbaImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbaImage {
    /// The `w × h` block whose top-left pixel is `(x, y)`, or `None` if it leaves the image.
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Option<RgbaImage> {
        if x.checked_add(w)? > self.width || y.checked_add(h)? > self.height {
            return None;
        }
        let mut pixels = Vec::with_capacity(w * h * 4);
        for row in y..y + h {
            let start = (row * self.width + x) * 4;
            pixels.extend_from_slice(&self.pixels[start..start + w * 4]);
        }
        Some(RgbaImage { width: w, height: h, pixels })
    }

    /// This image over an opaque white background, as RGB (see [`composite_over_white`]).
    pub fn over_white(&self) -> RgbImage {
        let pixels = self.pixels.chunks_exact(4).map(composite_over_white).collect();
        RgbImage { width: self.width, height: self.height, pixels }
    }
}

/// Decodes PNG or JPEG bytes to 8-bit RGBA (16-bit samples keep their high byte, images without
/// alpha become opaque), refusing images over 2¹⁴ pixels a side or 2²⁶ pixels; `name` is used
/// in error messages.
pub fn decode_image_rgba(bytes: &[u8], name: &str) -> Result<RgbaImage> {
    let decoded = decode_limited(bytes, name)?;
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let color = decoded.color();
    let pixels = match decoded {
        DynamicImage::ImageRgba8(b) => b.into_raw(),
        // The image crate's 16 → 8-bit conversion rounds; Pillow (and `to_rgb_like_pillow`)
        // keeps the high byte, so convert at 16 bits and take it.
        other if color.bits_per_pixel() == 16 * u16::from(color.channel_count()) => {
            other.to_rgba16().iter().map(|&v| high_byte(v)).collect()
        }
        other => other.to_rgba8().into_raw(),
    };
    Ok(RgbaImage { width, height, pixels })
}

/// One RGBA pixel alpha-composited over opaque white, as Pillow's `Image.alpha_composite(white,
/// src)` computes it (`AlphaComposite.c`) and then drops alpha — transformers' `convert_to_rgb`.
///
/// Over an opaque white destination Pillow's 7-bit fixed point (see `pillow_over_white` in the tests)
/// reduces to the rounded blend `out = (s·a + 255·(255 − a) + 127) / 255` (integer division)
/// per channel `s` with alpha `a`: `a = 0` gives white, `a = 255` gives `s`.
pub fn composite_over_white(rgba: &[u8]) -> [u8; 3] {
    let a = u32::from(rgba[3]);
    let blend = |s: u8| ((u32::from(s) * a + 255 * (255 - a) + 127) / 255) as u8;
    [blend(rgba[0]), blend(rgba[1]), blend(rgba[2])]
}

/// Pillow's scalar `ImagingAlphaComposite` for one channel over an opaque white destination,
/// transcribed: the reference [`composite_over_white`] is tested against.
#[cfg(test)]
fn pillow_over_white(s: u32, a: u32) -> u32 {
    if a == 0 {
        return 255;
    }
    let out_a255 = a * 255 + 255 * (255 - a);
    let coef1 = a * 255 * 255 * 128 / out_a255;
    let coef2 = 255 * 128 - coef1;
    let t = s * coef1 + 255 * coef2 + (0x80 << 7);
    (((t >> 8) + t) >> 8) >> 7
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
    RgbImage::from_bytes(width, height, &pixels).map_err(|e| e.to_string())
}

/// The top 8 bits of a 16-bit sample (Pillow's `;16B` unpackers keep the high byte).
fn high_byte(v: u16) -> u8 {
    (v >> 8) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    #[test]
    fn conversions_follow_pillow() {
        let la = image::GrayAlphaImage::from_raw(2, 1, vec![10, 0, 200, 255]).unwrap();
        let rgb = to_rgb_like_pillow(DynamicImage::ImageLumaA8(la)).unwrap();
        assert_eq!(rgb.bytes(), [10, 10, 10, 200, 200, 200]);
        let rgb16 =
            image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(1, 1, vec![0x12ff, 0xff00, 0x00ff])
                .unwrap();
        let rgb = to_rgb_like_pillow(DynamicImage::ImageRgb16(rgb16)).unwrap();
        assert_eq!(rgb.pixels, [[0x12, 0xff, 0x00]]);
    }

    #[test]
    fn compositing_over_white_is_pillows_fixed_point() {
        for s in 0..=255u8 {
            for a in 0..=255u8 {
                let want = pillow_over_white(u32::from(s), u32::from(a)) as u8;
                assert_eq!(composite_over_white(&[s, 0, 255, a])[0], want, "s {s}, a {a}");
            }
            assert_eq!(composite_over_white(&[s, s, s, 255]), [s; 3]);
            assert_eq!(composite_over_white(&[s, 0, 255, 0]), [255; 3]);
            // White stays white at any alpha; half-transparent black is mid grey (below).
            assert_eq!(composite_over_white(&[255, 255, 255, s]), [255; 3]);
        }
        assert_eq!(composite_over_white(&[0, 0, 0, 128]), [127; 3]);
    }

    #[test]
    fn rgba_decoding_and_cropping() {
        let mut bytes = Vec::new();
        let px: Vec<u8> = (0..4 * 3 * 2).map(|i| i as u8).collect();
        image::codecs::png::PngEncoder::new(&mut bytes)
            .write_image(&px, 3, 2, image::ExtendedColorType::Rgba8)
            .unwrap();
        let img = decode_image_rgba(&bytes, "t.png").unwrap();
        assert_eq!((img.width, img.height, &img.pixels), (3, 2, &px));
        let c = img.crop(1, 1, 2, 1).unwrap();
        assert_eq!(c.pixels, px[16..24]);
        assert!(img.crop(2, 0, 2, 1).is_none());
        assert!(img.crop(usize::MAX, 0, 2, 1).is_none());
        assert!(decode_image_rgba(b"junk", "j.png").unwrap_err().to_string().contains("j.png"));
    }

    #[test]
    fn an_oversized_header_is_refused_before_decoding() {
        // A PNG header claiming 9000×9000 RGBA (81 M pixels, 324 MB), then an empty IDAT.
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&9000u32.to_be_bytes());
        ihdr.extend_from_slice(&9000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        for chunk in [ihdr, b"IDAT".to_vec()] {
            png.extend_from_slice(&(chunk.len() as u32 - 4).to_be_bytes());
            png.extend_from_slice(&chunk);
            png.extend_from_slice(&crate::io::gzip::crc32(&chunk).to_be_bytes());
        }
        let e = decode_image_rgba(&png, "huge.png").unwrap_err().to_string();
        assert!(e.contains("huge.png") && e.contains("9000×9000"), "{e}");
        // The RGB reader, files included, goes through the same limits.
        let e = decode_image_rgb(&png, "huge.png").unwrap_err().to_string();
        assert!(e.contains("9000×9000"), "{e}");
    }

    #[test]
    fn sixteen_bit_samples_keep_their_high_byte_in_rgb_and_rgba() {
        // 0x10FF: the high byte is 0x10; the image crate's rounding, (v + 128) / 257, gives 0x11.
        let sample = 0x10FFu16.to_ne_bytes();
        for (color, channels) in [
            (image::ExtendedColorType::L16, 1),
            (image::ExtendedColorType::La16, 2),
            (image::ExtendedColorType::Rgb16, 3),
        ] {
            let mut bytes = Vec::new();
            let px: Vec<u8> = (0..channels).flat_map(|_| sample).collect();
            image::codecs::png::PngEncoder::new(&mut bytes).write_image(&px, 1, 1, color).unwrap();
            assert_eq!(decode_image_rgb(&bytes, "x.png").unwrap().pixels, [[0x10; 3]], "{color:?}");
            let rgba = decode_image_rgba(&bytes, "x.png").unwrap().pixels;
            assert_eq!(rgba[..3], [0x10; 3], "{color:?}");
        }
    }

    #[test]
    fn garbage_is_a_format_error() {
        let e = decode_image_rgb(b"not an image", "x.png").unwrap_err();
        assert!(e.to_string().contains("x.png"), "{e}");
        assert!(decode_image_rgb(b"", "empty.png").is_err());
    }
}
