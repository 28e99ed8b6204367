//! Raster plots drawn pixel by pixel: training curves and image grids, saved as PNG.
//!
//! igpt draws its own pictures — `loss.png` during training, `grid.png` from `igpt sample` and
//! `igpt complete` — on a plain RGB [`Canvas`], with no plotting library:
//!
//! * **Primitives.** Rectangles; straight lines by Bresenham's algorithm, after Liang–Barsky
//!   clipping to the canvas so any endpoints cost at most one canvas diagonal; text from the
//!   embedded 5×7 bitmap font [`FONT`], scaled by an integer factor, horizontal or rotated 90°.
//! * **[`line_plot`].** Data `(x, y)` map to pixels affinely,
//!   `px = left + (x − x_lo) / (x_hi − x_lo) · plot_width` (y likewise, flipped so up is up;
//!   with `log_y` the map applies to `log10 y`). The data range gets a small margin; ticks sit
//!   at multiples of a "nice" step 1, 2 or 5 × 10^k. Non-finite points (and y ≤ 0 on a log
//!   axis) are skipped and break the line; an isolated point is drawn as a square marker.
//! * **[`image_grid`].** Images tiled in rows, each upscaled by pixel replication (nearest
//!   neighbour), separated by grey gaps, optionally with a text label left of each row.
//!
//! Output is deterministic: the same inputs give the same pixels, hence the same PNG bytes.

use crate::error::{Error, Result};
use std::path::Path;

/// One pixel: red, green, blue.
pub type Rgb = [u8; 3];

/// Background of plots.
pub const WHITE: Rgb = [255, 255, 255];
/// Text, frame and tick marks: a soft black.
const INK: Rgb = [40, 40, 40];
/// Grid lines at the ticks, light enough to stay behind the data.
const GRID: Rgb = [228, 228, 228];
/// Legend border.
const LEGEND_EDGE: Rgb = [180, 180, 180];
/// Background and gaps of image grids: a neutral mid grey that biases no image.
const GAP_GREY: Rgb = [128, 128, 128];

/// Distinguishable series colours (the "tab10" cycle of matplotlib and d3), for callers.
pub const PALETTE: [Rgb; 6] =
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75]];

/// Largest canvas side, so a bad size argument cannot ask for gigabytes (8192² RGB = 192 MiB).
pub const MAX_SIDE: usize = 8192;

/// Width of a glyph in font pixels.
pub const GLYPH_W: usize = 5;
/// Height of a glyph: 7 rows down to the baseline plus 2 descender rows.
pub const GLYPH_H: usize = 9;
/// Horizontal distance between consecutive glyphs (one blank column).
const ADVANCE: usize = GLYPH_W + 1;

/// The font: printable ASCII 32 (space) to 126 (`~`), one glyph per character, one byte per
/// row from the top, bit 4 = leftmost column. Rows 0–6 hold capitals and digits (baseline at
/// row 6); lowercase letters have x-height 5 (rows 2–6); `g j p q y , _` use rows 7–8.
///
/// Origin and licence: drawn by hand for igpt in the style of the classic 5×7 dot-matrix
/// character sets (Hitachi HD44780 LCD, X11 `5x7`), not copied from any font file; it is part
/// of igpt and under igpt's licence (MIT OR Apache-2.0).
pub const FONT: [[u8; GLYPH_H]; 95] = [
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // space
    [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00, 0x00], // !
    [0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // "
    [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A, 0x00, 0x00], // #
    [0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04, 0x00, 0x00], // $
    [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00, 0x00], // %
    [0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D, 0x00, 0x00], // &
    [0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // quote
    [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00], // (
    [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00], // )
    [0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00, 0x00, 0x00], // *
    [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00, 0x00], // +
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08, 0x00], // ,
    [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00, 0x00], // -
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00, 0x00], // .
    [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00, 0x00], // /
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00, 0x00], // 0
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00], // 1
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00], // 2
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00, 0x00], // 3
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00, 0x00], // 4
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00, 0x00], // 5
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00, 0x00], // 6
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00], // 7
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00, 0x00], // 8
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00, 0x00], // 9
    [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00, 0x00], // :
    [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08, 0x00, 0x00], // ;
    [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00, 0x00], // <
    [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00], // =
    [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00, 0x00], // >
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00, 0x00], // ?
    [0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E, 0x00, 0x00], // @
    [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x00, 0x00], // A
    [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00, 0x00], // B
    [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00], // C
    [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00, 0x00], // D
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00, 0x00], // E
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00], // F
    [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00, 0x00], // G
    [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00, 0x00], // H
    [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00], // I
    [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00, 0x00], // J
    [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00, 0x00], // K
    [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00, 0x00], // L
    [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00, 0x00], // M
    [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00, 0x00], // N
    [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00], // O
    [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00], // P
    [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00, 0x00], // Q
    [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00, 0x00], // R
    [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00, 0x00], // S
    [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00], // T
    [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00], // U
    [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00], // V
    [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00, 0x00], // W
    [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00, 0x00], // X
    [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x00, 0x00], // Y
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00, 0x00], // Z
    [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E, 0x00, 0x00], // [
    [0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00, 0x00], // backslash
    [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E, 0x00, 0x00], // ]
    [0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // ^
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F, 0x00], // _
    [0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // `
    [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00, 0x00], // a
    [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00, 0x00], // b
    [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00], // c
    [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00, 0x00], // d
    [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00, 0x00], // e
    [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00, 0x00], // f
    [0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E], // g
    [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00], // h
    [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00], // i
    [0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C], // j
    [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00], // k
    [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00], // l
    [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11, 0x00, 0x00], // m
    [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00], // n
    [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00], // o
    [0x00, 0x00, 0x1E, 0x11, 0x11, 0x11, 0x1E, 0x10, 0x10], // p
    [0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x01], // q
    [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00], // r
    [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E, 0x00, 0x00], // s
    [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00], // t
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00, 0x00], // u
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00], // v
    [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00, 0x00], // w
    [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00, 0x00], // x
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E], // y
    [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00], // z
    [0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00, 0x00], // {
    [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00], // |
    [0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00, 0x00], // }
    [0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00, 0x00], // ~
];

/// The glyph of `c`; characters outside printable ASCII are drawn as `?`.
fn glyph(c: char) -> &'static [u8; GLYPH_H] {
    let code = c as usize;
    let index = if (32..127).contains(&code) { code - 32 } else { usize::from(b'?') - 32 };
    &FONT[index]
}

/// Text scales are clamped to 1..=64 (no picture needs more) so pixel arithmetic cannot overflow.
fn clamp_scale(scale: usize) -> i64 {
    scale.clamp(1, 64) as i64
}

/// Size in pixels `(width, height)` of `text` drawn horizontally at `scale`.
pub fn text_size(text: &str, scale: usize) -> (usize, usize) {
    let s = clamp_scale(scale) as usize;
    let n = text.chars().count();
    ((n * ADVANCE).saturating_sub(1) * s, GLYPH_H * s)
}

/// An RGB raster, row-major: pixel `(x, y)` is `pixels[y * width + x]`, `y = 0` at the top.
#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<Rgb>,
}

impl Canvas {
    /// A `width × height` canvas filled with `color`; each side must be 1..=[`MAX_SIDE`].
    pub fn new(width: usize, height: usize, color: Rgb) -> Result<Canvas> {
        if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
            return Err(Error::invalid(format!(
                "canvas size {width}x{height}: each side must be between 1 and {MAX_SIDE}"
            )));
        }
        Ok(Canvas { width, height, pixels: vec![color; width * height] })
    }

    /// Paints the whole canvas.
    pub fn fill(&mut self, color: Rgb) {
        self.pixels.fill(color);
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let (x, y) = (usize::try_from(x).ok()?, usize::try_from(y).ok()?);
        (x < self.width && y < self.height).then_some(y * self.width + x)
    }

    /// The pixel at `(x, y)`, or `None` outside the canvas.
    pub fn get(&self, x: i64, y: i64) -> Option<Rgb> {
        self.index(x, y).map(|i| self.pixels[i])
    }

    /// Sets one pixel; coordinates outside the canvas are ignored (clipping).
    pub fn set(&mut self, x: i64, y: i64, color: Rgb) {
        if let Some(i) = self.index(x, y) {
            self.pixels[i] = color;
        }
    }

    /// Fills the axis-aligned rectangle with top-left `(x, y)` and size `w × h`, clipped.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        // Clip first, so the cost is the visible area whatever the arguments.
        let x0 = x.clamp(0, self.width as i64) as usize;
        let x1 = x.saturating_add(w).clamp(0, self.width as i64) as usize;
        let y0 = y.clamp(0, self.height as i64) as usize;
        let y1 = y.saturating_add(h).clamp(0, self.height as i64) as usize;
        for row in y0..y1 {
            self.pixels[row * self.width + x0..row * self.width + x1].fill(color);
        }
    }

    /// Draws the 1-pixel outline of the rectangle `fill_rect` would fill.
    pub fn stroke_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        self.fill_rect(x, y, w, 1, color);
        self.fill_rect(x, y + h - 1, w, 1, color);
        self.fill_rect(x, y, 1, h, color);
        self.fill_rect(x + w - 1, y, 1, h, color);
    }

    /// Draws a straight line between pixel positions `from` and `to` (rounded to the nearest
    /// pixel), `thickness` pixels wide (1..=16: each point of the line becomes a square).
    /// Non-finite endpoints draw nothing.
    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), thickness: usize, color: Rgb) {
        let t = thickness.clamp(1, 16) as i64;
        let pad = t as f64;
        let (lo, hi) = ((-pad, -pad), (self.width as f64 + pad, self.height as f64 + pad));
        let Some((a, b)) = clip_segment(from, to, lo, hi) else { return };
        let (mut x, mut y) = (a.0.round() as i64, a.1.round() as i64);
        let (x1, y1) = (b.0.round() as i64, b.1.round() as i64);
        // Bresenham: step along the line, keeping `err` ∝ the distance from the ideal line.
        let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
        let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.fill_rect(x - (t - 1) / 2, y - (t - 1) / 2, t, t, color);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale × scale`.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb) {
        self.draw_text(x, y, text, scale, color, false);
    }

    /// Draws `text` rotated 90° counter-clockwise (reading upwards, as a y-axis label): its box
    /// is `text_size(..).1` wide and `text_size(..).0` tall, with top-left corner `(x, y)`.
    pub fn text_up(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb) {
        self.draw_text(x, y, text, scale, color, true);
    }

    fn draw_text(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb, up: bool) {
        let s = clamp_scale(scale);
        let length = text_size(text, scale).0 as i64;
        for (k, c) in text.chars().enumerate() {
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..GLYPH_W {
                    if (bits >> (GLYPH_W - 1 - col)) & 1 == 0 {
                        continue;
                    }
                    // (u, v): this font pixel's offset along and across the unrotated text.
                    let u = ((k * ADVANCE + col) as i64).saturating_mul(s);
                    let v = row as i64 * s;
                    let (px, py) = if up { (x + v, y + length - s - u) } else { (x + u, y + v) };
                    self.fill_rect(px, py, s, s, color);
                }
            }
        }
    }

    /// Encodes the canvas as an 8-bit RGB PNG in memory.
    fn encode_png(&self) -> std::result::Result<Vec<u8>, image::ImageError> {
        use image::ImageEncoder;
        let mut bytes = Vec::new();
        let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
        // Both sides are at most MAX_SIDE (checked in `new`), so they fit in u32.
        let (w, h) = (self.width as u32, self.height as u32);
        encoder.write_image(self.pixels.as_flattened(), w, h, image::ExtendedColorType::Rgb8)?;
        Ok(bytes)
    }

    /// Saves the canvas as a PNG file, atomically (see [`crate::io::write_atomic`]).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let bytes = self
            .encode_png()
            .map_err(|e| Error::invalid(format!("{}: cannot encode PNG: {e}", path.display())))?;
        crate::io::write_atomic(path, &bytes)
    }
}

/// Liang–Barsky clipping of the segment `a → b` to the box `lo..hi`: writing the segment as
/// `a + t·(b − a)`, `t ∈ [0, 1]`, each box side bounds `t` from one side. `None` if the segment
/// misses the box or has a non-finite endpoint.
fn clip_segment(
    a: (f64, f64),
    b: (f64, f64),
    lo: (f64, f64),
    hi: (f64, f64),
) -> Option<((f64, f64), (f64, f64))> {
    if ![a.0, a.1, b.0, b.1].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0_f64, 1.0_f64);
    // Each side as `p·t ≤ q`: p < 0 where the segment enters, p > 0 where it leaves.
    for (p, q) in [(-dx, a.0 - lo.0), (dx, hi.0 - a.0), (-dy, a.1 - lo.1), (dy, hi.1 - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None; // parallel to this side and outside it
            }
        } else if p < 0.0 {
            t0 = t0.max(q / p);
        } else {
            t1 = t1.min(q / p);
        }
    }
    (t0 <= t1).then_some(((a.0 + t0 * dx, a.1 + t0 * dy), (a.0 + t1 * dx, a.1 + t1 * dy)))
}

/// The "nice" tick step for `span` split into about `target` intervals: the smallest of
/// 1, 2, 5 or 10 × 10^k that is at least `span / target`.
pub fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let mantissa = [1.0, 2.0, 5.0].into_iter().find(|m| m * magnitude >= raw).unwrap_or(10.0);
    mantissa * magnitude
}

/// The multiples of `step` inside `[lo, hi]`, computed as `k · step` (no accumulated error);
/// empty if the arguments are not finite or would give more than 100 ticks.
pub fn ticks_at(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let (first, last) = ((lo / step).ceil(), (hi / step).floor());
    let sane = step.is_finite() && step > 0.0 && first.is_finite() && last.is_finite();
    if !sane || last - first > 100.0 {
        return Vec::new();
    }
    (first as i64..=last as i64).map(|k| k as f64 * step).collect()
}

/// A compact tick label for `v` on an axis whose ticks are `step` apart: `0`, `250`, `0.25`,
/// `1.5k`, `2M`, and scientific notation below 0.01 or from 10^9 (`1e-3`, `2.5e9`). Decimals
/// are as many as `step` needs, trailing zeros dropped; float noise such as
/// 0.30000000000000004 therefore prints as `0.3`.
pub fn format_tick(v: f64, step: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        return "0".to_string();
    }
    if !(1e-2..1e9).contains(&a) {
        let s = format!("{v:.2e}");
        return match s.split_once('e') {
            Some((mantissa, exponent)) => format!("{}e{exponent}", trim_zeros(mantissa)),
            None => s, // NaN or inf
        };
    }
    let (value, step, suffix) = if a >= 1e6 {
        (v / 1e6, step / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, step / 1e3, "k")
    } else {
        (v, step, "")
    };
    let decimals = (0..6)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(6) as usize;
    format!("{}{suffix}", trim_zeros(&format!("{value:.decimals$}")))
}

/// Drops trailing zeros after a decimal point, and the point if nothing follows it.
fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Ticks for a log axis over the exponents `lo..hi` (log10 units), as (value, label step):
/// whole decades when three or more are in view (thinned to about `target`); else 1, 2, 5 ×
/// 10^k when three or more of those are; else (a range of well under a decade) linear ticks.
fn log_ticks(lo: f64, hi: f64, target: usize) -> Vec<(f64, f64)> {
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Vec::new();
    }
    let (k0, k1) = (lo.ceil() as i32, hi.floor() as i32);
    if k1 - k0 + 1 >= 3 {
        let stride = ((k1 - k0 + 1) as usize).div_ceil(target.max(1));
        return (k0..=k1).step_by(stride).map(|k| (10f64.powi(k), 10f64.powi(k))).collect();
    }
    let mut ticks = Vec::new();
    for k in lo.floor() as i32..=k1 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(k);
            if (lo..=hi).contains(&v.log10()) {
                ticks.push((v, v));
            }
        }
    }
    if ticks.len() >= 3 {
        return ticks;
    }
    let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
    let step = nice_step(b - a, target);
    ticks_at(a, b, step).into_iter().map(|v| (v, step)).collect()
}

/// One curve of a [`line_plot`].
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Shown in the legend; an empty name keeps the series out of it.
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: Rgb,
}

/// Labels and size of a [`line_plot`].
#[derive(Clone, Debug, PartialEq)]
pub struct PlotOptions {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Canvas size in pixels, at least [`MIN_PLOT_W`] × [`MIN_PLOT_H`].
    pub width: usize,
    pub height: usize,
    /// Logarithmic y axis; points with y ≤ 0 are then skipped.
    pub log_y: bool,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            width: 960,
            height: 600,
            log_y: false,
        }
    }
}

/// Smallest plot canvas: room for the labels plus a readable plot area.
pub const MIN_PLOT_W: usize = 160;
/// See [`MIN_PLOT_W`].
pub const MIN_PLOT_H: usize = 120;

/// One plot axis: the data interval `lo..hi` (log10 units if `log`) drawn onto pixels `p0..p1`.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    p0: f64,
    p1: f64,
}

impl Axis {
    /// The pixel coordinate of the data value `v`.
    fn pixel(&self, v: f64) -> f64 {
        let t = if self.log { v.log10() } else { v };
        self.p0 + (t - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)
    }

    /// About `target` ticks inside the axis, each with its label.
    fn ticks(&self, target: usize) -> Vec<(f64, String)> {
        let ticks = if self.log {
            log_ticks(self.lo, self.hi, target)
        } else {
            let mut step = nice_step(self.hi - self.lo, target);
            // A step just above span/target can leave one or two ticks; then go finer.
            if ticks_at(self.lo, self.hi, step).len() < 3 {
                step = nice_step(self.hi - self.lo, 2 * target);
            }
            ticks_at(self.lo, self.hi, step).into_iter().map(|v| (v, step)).collect()
        };
        ticks.into_iter().map(|(v, step)| (v, format_tick(v, step))).collect()
    }
}

/// Whether a point can be drawn: finite, and y > 0 on a log axis.
fn drawable(&(x, y): &(f64, f64), log_y: bool) -> bool {
    x.is_finite() && y.is_finite() && (!log_y || y > 0.0)
}

/// The interval shown for `values`: min..max widened by `margin` × span on each side; a single
/// value gets ±10 % of itself (at least ±0.5); no values give 0..1.
fn padded_range(values: impl Iterator<Item = f64>, margin: f64) -> (f64, f64) {
    let (lo, hi) =
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if lo == hi { (lo.abs() * 0.1).max(0.5) } else { (hi - lo) * margin };
    (lo - pad, hi + pad)
}

/// The geometry of a plot: both axes with their ticks and the text scale `u` (font pixel size
/// of ordinary text; all spacing is in multiples of `u` so the layout scales with the canvas).
struct Frame {
    x: Axis,
    y: Axis,
    x_ticks: Vec<(f64, String)>,
    y_ticks: Vec<(f64, String)>,
    u: usize,
}

fn title_scale(u: usize) -> usize {
    u + u.div_ceil(2)
}

/// Lays out the plot. Vertical first (title above, tick labels and x label below), since the y
/// ticks depend only on the plot height; their label widths then fix the left margin.
fn frame(series: &[Series], opts: &PlotOptions) -> Frame {
    let u = (opts.width.min(opts.height * 4 / 3) / 320).clamp(1, 8);
    let (text_h, pad, tick) = ((GLYPH_H * u) as f64, (8 * u) as f64, (4 * u) as f64);
    let points = || series.iter().flat_map(|s| &s.points).filter(|p| drawable(p, opts.log_y));
    let (x_lo, x_hi) = padded_range(points().map(|p| p.0), 0.02);
    let (y_lo, y_hi) =
        padded_range(points().map(|p| if opts.log_y { p.1.log10() } else { p.1 }), 0.05);

    let title_h = if opts.title.is_empty() { 0.0 } else { (GLYPH_H * title_scale(u)) as f64 + pad };
    let x_label_h = if opts.x_label.is_empty() { 0.0 } else { text_h + 2.0 * u as f64 };
    let top = pad + title_h;
    let bottom = opts.height as f64 - (pad + x_label_h + text_h + tick + 2.0 * u as f64);
    let y = Axis { lo: y_lo, hi: y_hi, log: opts.log_y, p0: bottom, p1: top };
    let y_ticks = y.ticks((((bottom - top) / (3.0 * text_h)) as usize).clamp(4, 10));

    let widest = y_ticks.iter().map(|(_, label)| text_size(label, u).0).max().unwrap_or(0);
    let y_label_w = if opts.y_label.is_empty() { 0.0 } else { text_h + 3.0 * u as f64 };
    let left = pad + y_label_w + widest as f64 + tick + 2.0 * u as f64;
    let right = opts.width as f64 - 2.0 * pad;
    let x = Axis { lo: x_lo, hi: x_hi, log: false, p0: left, p1: right };
    let x_ticks = x.ticks((((right - left) / (70 * u) as f64) as usize).clamp(4, 10));
    Frame { x, y, x_ticks, y_ticks, u }
}

/// Draws `series` as lines on white, with frame, grid, ticks, labels, title and legend.
/// Non-finite points (and y ≤ 0 with `log_y`) are skipped; no drawable data gives empty axes
/// over 0..1. Errors only for a canvas size outside [`MIN_PLOT_W`]×[`MIN_PLOT_H`]..[`MAX_SIDE`].
pub fn line_plot(series: &[Series], opts: &PlotOptions) -> Result<Canvas> {
    if opts.width < MIN_PLOT_W || opts.height < MIN_PLOT_H {
        return Err(Error::invalid(format!(
            "plot size {}x{} is too small: at least {MIN_PLOT_W}x{MIN_PLOT_H}",
            opts.width, opts.height
        )));
    }
    let mut canvas = Canvas::new(opts.width, opts.height, WHITE)?;
    let f = frame(series, opts);
    draw_axes(&mut canvas, &f, opts);
    let thickness = f.u.max(2);
    for s in series {
        draw_series(&mut canvas, s, &f, opts.log_y, thickness);
    }
    // The frame goes on top, so lines meeting it do not nibble at it.
    let (l, t) = (f.x.p0 as i64, f.y.p1 as i64);
    canvas.stroke_rect(l, t, f.x.p1 as i64 - l + 1, f.y.p0 as i64 - t + 1, INK);
    draw_legend(&mut canvas, series, &f, thickness);
    Ok(canvas)
}

/// Grid lines, tick marks and tick labels of both axes; title and axis labels.
fn draw_axes(canvas: &mut Canvas, f: &Frame, opts: &PlotOptions) {
    let u = f.u as i64;
    let (left, right, top, bottom) = (f.x.p0 as i64, f.x.p1 as i64, f.y.p1 as i64, f.y.p0 as i64);
    let (text_h, cap_h) = ((GLYPH_H as i64) * u, 7 * u);
    for (v, label) in &f.x_ticks {
        let px = f.x.pixel(*v).round() as i64;
        canvas.fill_rect(px, top, 1, bottom - top, GRID);
        canvas.fill_rect(px, bottom, 1, 4 * u, INK);
        let w = text_size(label, f.u).0 as i64;
        let x = (px - w / 2).min(canvas.width as i64 - w).max(0);
        canvas.text(x, bottom + 6 * u, label, f.u, INK);
    }
    for (v, label) in &f.y_ticks {
        let py = f.y.pixel(*v).round() as i64;
        canvas.fill_rect(left, py, right - left, 1, GRID);
        canvas.fill_rect(left - 4 * u, py, 4 * u, 1, INK);
        let w = text_size(label, f.u).0 as i64;
        canvas.text(left - 6 * u - w, py - cap_h / 2, label, f.u, INK);
    }
    let mid_x = (left + right) / 2;
    let (w, _) = text_size(&opts.x_label, f.u);
    canvas.text(mid_x - w as i64 / 2, bottom + 8 * u + text_h, &opts.x_label, f.u, INK);
    let (h, _) = text_size(&opts.y_label, f.u);
    canvas.text_up(8 * u, (top + bottom - h as i64) / 2, &opts.y_label, f.u, INK);
    // The title is drawn twice, one pixel apart, for a bold weight.
    let ts = title_scale(f.u);
    let (w, _) = text_size(&opts.title, ts);
    for dx in 0..2 {
        canvas.text(mid_x - w as i64 / 2 + dx, 8 * u, &opts.title, ts, INK);
    }
}

/// One series: runs of drawable points become polylines; a run of one point, a square marker.
fn draw_series(canvas: &mut Canvas, s: &Series, f: &Frame, log_y: bool, thickness: usize) {
    for run in s.points.split(|p| !drawable(p, log_y)) {
        let pixels: Vec<(f64, f64)> =
            run.iter().map(|&(x, y)| (f.x.pixel(x), f.y.pixel(y))).collect();
        if let [(x, y)] = pixels[..] {
            let side = 3 * thickness as i64;
            canvas.fill_rect(
                x.round() as i64 - side / 2,
                y.round() as i64 - side / 2,
                side,
                side,
                s.color,
            );
        }
        for pair in pixels.windows(2) {
            canvas.line(pair[0], pair[1], thickness, s.color);
        }
    }
}

/// A boxed legend (a colour swatch and the name of each named series) in the corner of the
/// plot area that hides the least data; corners are tried top-right, top-left, bottom-right,
/// bottom-left, and the first with the fewest data pixels wins.
fn draw_legend(canvas: &mut Canvas, series: &[Series], f: &Frame, thickness: usize) {
    let named: Vec<&Series> = series.iter().filter(|s| !s.name.is_empty()).collect();
    if named.is_empty() {
        return;
    }
    let u = f.u as i64;
    let (pad, swatch, row_h) = (6 * u, 16 * u, (GLYPH_H as i64 + 4) * u);
    let names_w = named.iter().map(|s| text_size(&s.name, f.u).0).max().unwrap_or(0) as i64;
    let (w, h) = (pad + swatch + pad + names_w + pad, 2 * pad + row_h * named.len() as i64 - 4 * u);
    let (left, right, top, bottom) = (f.x.p0 as i64, f.x.p1 as i64, f.y.p1 as i64, f.y.p0 as i64);
    let inset = 8 * u;
    let corners = [
        (right - inset - w, top + inset),
        (left + inset, top + inset),
        (right - inset - w, bottom - inset - h),
        (left + inset, bottom - inset - h),
    ];
    // Count only the part on the canvas, so an absurdly long name cannot cost more.
    let (cw, ch) = (canvas.width as i64, canvas.height as i64);
    let data_pixels = |&(x, y): &(i64, i64)| {
        let rows = y.max(0)..(y + h).min(ch);
        let inside = rows.flat_map(|py| (x.max(0)..(x + w).min(cw)).map(move |px| (px, py)));
        inside.filter(|&(px, py)| !matches!(canvas.get(px, py), Some(WHITE | GRID) | None)).count()
    };
    let Some(&(x, y)) = corners.iter().min_by_key(|c| data_pixels(c)) else { return };
    canvas.fill_rect(x, y, w, h, WHITE);
    canvas.stroke_rect(x, y, w, h, LEGEND_EDGE);
    for (i, s) in named.iter().enumerate() {
        let row_y = y + pad + i as i64 * row_h;
        let mid = (row_y + 7 * u / 2) as f64;
        let x0 = (x + pad) as f64;
        canvas.line((x0, mid), (x0 + swatch as f64, mid), thickness, s.color);
        canvas.text(x + pad + swatch + pad, row_y, &s.name, f.u, INK);
    }
}

/// Tiles `images` (each `img_w × img_h` row-major pixels) into a grid `cols` wide, in reading
/// order, each upscaled `scale`× by pixel replication, with `gap` grey pixels around and between
/// the cells.
pub fn image_grid(
    images: &[Vec<Rgb>],
    img_w: usize,
    img_h: usize,
    cols: usize,
    scale: usize,
    gap: usize,
) -> Result<Canvas> {
    image_grid_labeled(images, img_w, img_h, cols, scale, gap, &[])
}

/// [`image_grid`] with `row_labels[r]` written left of row `r`, e.g. "input" / "sample 1"
/// (rows beyond the labels are left unlabeled).
pub fn image_grid_labeled(
    images: &[Vec<Rgb>],
    img_w: usize,
    img_h: usize,
    cols: usize,
    scale: usize,
    gap: usize,
    row_labels: &[&str],
) -> Result<Canvas> {
    if images.is_empty() || img_w == 0 || img_h == 0 || cols == 0 || scale == 0 {
        return Err(Error::invalid(format!(
            "image grid of {} images of {img_w}x{img_h}, {cols} columns, scale {scale}: \
             need at least one image and positive sizes",
            images.len()
        )));
    }
    for (i, image) in images.iter().enumerate() {
        if Some(image.len()) != img_w.checked_mul(img_h) {
            return Err(Error::invalid(format!(
                "image grid: image {i} has {} pixels, expected {img_w}x{img_h}",
                image.len()
            )));
        }
    }
    let too_big = || Error::invalid(format!("image grid: scale {scale} or gap {gap} too large"));
    let cols = cols.min(images.len());
    let rows = images.len().div_ceil(cols);
    let (cell_w, cell_h) = (img_w.checked_mul(scale), img_h.checked_mul(scale));
    let (cell_w, cell_h) = (cell_w.ok_or_else(too_big)?, cell_h.ok_or_else(too_big)?);
    let text_scale = (cell_h / 48).clamp(1, 3);
    let widest = row_labels.iter().map(|l| text_size(l, text_scale).0).max().unwrap_or(0);
    let label_w = if widest == 0 { 0 } else { widest + gap.max(4 * text_scale) };
    // n cells of `cell` pixels with a gap before each and after the last.
    let side = |n: usize, cell: usize| n.checked_mul(cell.checked_add(gap)?)?.checked_add(gap);
    let width = side(cols, cell_w).and_then(|w| w.checked_add(label_w)).ok_or_else(too_big)?;
    let height = side(rows, cell_h).ok_or_else(too_big)?;
    let mut canvas = Canvas::new(width, height, GAP_GREY)?;
    for (i, image) in images.iter().enumerate() {
        let x0 = label_w + gap + (i % cols) * (cell_w + gap);
        let y0 = gap + (i / cols) * (cell_h + gap);
        for y in 0..cell_h {
            let source = &image[(y / scale) * img_w..][..img_w];
            let target = &mut canvas.pixels[(y0 + y) * width + x0..][..cell_w];
            for (x, pixel) in target.iter_mut().enumerate() {
                *pixel = source[x / scale];
            }
        }
    }
    for (r, label) in row_labels.iter().enumerate().take(rows) {
        let y = gap + r * (cell_h + gap) + cell_h.saturating_sub(7 * text_scale) / 2;
        canvas.text(gap as i64, y as i64, label, text_scale, [0, 0, 0]);
    }
    Ok(canvas)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: Rgb = [255, 0, 0];

    fn ink_box(c: &Canvas, background: Rgb) -> Option<(usize, usize, usize, usize, usize)> {
        // (count, min x, min y, max x, max y) of pixels differing from `background`.
        let mut found: Option<(usize, usize, usize, usize, usize)> = None;
        for (i, p) in c.pixels.iter().enumerate() {
            if *p != background {
                let (x, y) = (i % c.width, i / c.width);
                let b = found.get_or_insert((0, x, y, x, y));
                *b = (b.0 + 1, b.1.min(x), b.2.min(y), b.3.max(x), b.4.max(y));
            }
        }
        found
    }

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        for (lo, hi, target) in [(0.0, 1000.0, 5), (-0.37, 2.9, 6), (2.05, 6.6, 7), (1e-4, 3e-4, 4)]
        {
            let step = nice_step(hi - lo, target);
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!([1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9), "{step}");
            let ticks = ticks_at(lo, hi, step);
            assert!(ticks.len() >= 2 && ticks.len() <= target + 1, "{ticks:?}");
            assert!(ticks.iter().all(|t| (lo..=hi).contains(t)));
            assert!(ticks[0] - lo < step && hi - ticks[ticks.len() - 1] < step);
        }
        assert_eq!(
            ticks_at(0.0, 1000.0, nice_step(1000.0, 5)),
            [0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]
        );
        assert!(ticks_at(0.0, f64::INFINITY, 1.0).is_empty() && ticks_at(0.0, 1e9, 1.0).is_empty());
        // Log axes: decades over a wide range, 1-2-5 over one decade, linear ticks inside one.
        let values =
            |lo: f64, hi: f64| -> Vec<f64> { log_ticks(lo, hi, 6).iter().map(|t| t.0).collect() };
        assert_eq!(values(-3.2, 1.1), [1e-3, 1e-2, 1e-1, 1.0, 10.0]);
        assert_eq!(values(-0.1, 1.0), [1.0, 2.0, 5.0, 10.0]);
        assert_eq!(values(2f64.log10(), 6f64.log10()), [2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn tick_labels_are_compact() {
        let cases = [
            (0.0, 1.0, "0"),
            (250.0, 50.0, "250"),
            (1500.0, 500.0, "1.5k"),
            (1000.0, 200.0, "1k"),
            (2e6, 1e6, "2M"),
            (0.25, 0.05, "0.25"),
            (3.0 * 0.1, 0.1, "0.3"),
            (1.005, 0.005, "1.005"),
            (-2.5, 0.5, "-2.5"),
            (1e-3, 1e-3, "1e-3"),
            (2.5e-4, 5e-5, "2.5e-4"),
            (3e9, 1e9, "3e9"),
        ];
        for (v, step, expected) in cases {
            assert_eq!(format_tick(v, step), expected, "format_tick({v}, {step})");
        }
    }

    #[test]
    fn every_glyph_fits_its_cell_and_text_puts_ink_in_its_box() {
        assert!(FONT.iter().flatten().all(|&row| row < 1 << GLYPH_W));
        assert!(FONT[1..].iter().all(|g| g.iter().any(|&row| row != 0)), "only space is blank");
        for scale in [1, 3] {
            let mut c = Canvas::new(60, 60, WHITE).unwrap();
            c.text(10, 20, "Ag", scale, RED);
            let (w, h) = text_size("Ag", scale);
            let (n, x0, y0, x1, y1) = ink_box(&c, WHITE).unwrap();
            assert!(n > 0 && x0 >= 10 && y0 >= 20 && x1 < 10 + w && y1 < 20 + h);
            assert_eq!((x0, y0, y1), (10, 20, 20 + h - 1), "A starts at the box, g descends");
            // Rotated, the same ink lies in the transposed box.
            let mut up = Canvas::new(60, 60, WHITE).unwrap();
            up.text_up(10, 5, "Ag", scale, RED);
            let (n_up, x0, y0, x1, y1) = ink_box(&up, WHITE).unwrap();
            assert!(n_up == n && x0 >= 10 && y0 >= 5 && x1 < 10 + h && y1 < 5 + w);
        }
    }

    #[test]
    fn lines_are_clipped_and_connect_their_endpoints() {
        let mut c = Canvas::new(50, 40, WHITE).unwrap();
        c.line((-1e12, -1e12), (1e12, 1e12), 1, RED);
        assert!((0..40).all(|i| c.get(i, i) == Some(RED)));
        c.line((f64::NAN, 0.0), (10.0, 10.0), 2, [0, 0, 255]);
        let mut d = Canvas::new(50, 40, WHITE).unwrap();
        d.line((3.0, 30.0), (45.0, 2.0), 2, RED);
        assert_eq!((d.get(3, 30), d.get(45, 2), d.get(0, 0)), (Some(RED), Some(RED), Some(WHITE)));
    }

    #[test]
    fn plotted_series_lands_on_its_data_pixels() {
        let rising: Vec<(f64, f64)> = (0..=100).map(|i| (i as f64, 2.0 * i as f64)).collect();
        let series = [
            Series { name: "rising".into(), points: rising, color: RED },
            Series {
                name: "flat".into(),
                points: vec![(0.0, 50.0), (100.0, 50.0)],
                color: PALETTE[0],
            },
        ];
        for log_y in [false, true] {
            let opts = PlotOptions { title: "t".into(), log_y, ..PlotOptions::default() };
            let canvas = line_plot(&series, &opts).unwrap();
            let f = frame(&series, &opts);
            for (x, y) in [(20.0, 40.0), (50.0, 100.0), (90.0, 180.0)] {
                let (px, py) = (f.x.pixel(x).round() as i64, f.y.pixel(y).round() as i64);
                assert_eq!(canvas.get(px, py), Some(RED), "({x}, {y}) log_y={log_y}");
            }
            let flat_y = f.y.pixel(50.0).round() as i64;
            assert_eq!(canvas.get(f.x.pixel(80.0).round() as i64, flat_y), Some(PALETTE[0]));
            // Far from both lines the plot area is background.
            let (px, py) = (f.x.pixel(95.0).round() as i64, f.y.pixel(10.0).round() as i64);
            assert!(matches!(canvas.get(px, py), Some(WHITE | GRID)));
        }
    }

    #[test]
    fn degenerate_data_draws_without_panicking() {
        let nan = f64::NAN;
        let cases: [Vec<(f64, f64)>; 6] = [
            vec![],
            vec![(nan, nan), (f64::INFINITY, 1.0)],
            vec![(3.0, 7.0)],
            vec![(0.0, -1.0), (1.0, 0.0)], // nothing drawable on a log axis
            vec![(-1e308, -1e308), (1e308, 1e308)],
            vec![(0.0, 1.0), (1.0, nan), (2.0, 3.0)], // two isolated points
        ];
        for points in cases {
            for log_y in [false, true] {
                let series = [Series { name: "s".into(), points: points.clone(), color: RED }];
                let opts = PlotOptions { log_y, width: 300, height: 200, ..PlotOptions::default() };
                let canvas = line_plot(&series, &opts).unwrap();
                assert_eq!(canvas.pixels.len(), 300 * 200);
            }
        }
        let single = [Series { name: String::new(), points: vec![(3.0, 7.0)], color: RED }];
        let canvas = line_plot(&single, &PlotOptions::default()).unwrap();
        assert!(canvas.pixels.contains(&RED), "a lone point is drawn as a marker");
        assert!(line_plot(&[], &PlotOptions::default()).is_ok());
        let tiny = PlotOptions { width: 100, ..PlotOptions::default() };
        assert!(line_plot(&[], &tiny).is_err());
        assert!(Canvas::new(0, 5, WHITE).is_err() && Canvas::new(MAX_SIDE + 1, 5, WHITE).is_err());
    }

    #[test]
    fn image_grid_places_upscaled_images_between_grey_gaps() {
        let images = vec![vec![RED; 4], vec![[0, 0, 255]; 4], vec![[0, 255, 0]; 4]];
        let grid = image_grid(&images, 2, 2, 2, 3, 1).unwrap();
        // 2 columns of 6 pixels and 2 rows, each with a 1-pixel gap before and after.
        assert_eq!((grid.width, grid.height), (15, 15));
        assert_eq!(
            (grid.get(0, 0), grid.get(1, 1), grid.get(6, 6)),
            (Some(GAP_GREY), Some(RED), Some(RED))
        );
        assert_eq!(
            (grid.get(7, 1), grid.get(8, 1), grid.get(1, 8)),
            (Some(GAP_GREY), Some([0, 0, 255]), Some([0, 255, 0]))
        );
        assert_eq!(grid.get(8, 9), Some(GAP_GREY), "no fourth image");
        let labeled = image_grid_labeled(&images, 2, 2, 2, 3, 1, &["in"]).unwrap();
        assert!(labeled.width > grid.width && labeled.pixels.contains(&[0, 0, 0]));
        assert!(image_grid(&images, 2, 3, 2, 3, 1).is_err(), "wrong pixel count");
        assert!(image_grid(&[], 2, 2, 2, 3, 1).is_err());
        assert!(image_grid(&images, 2, 2, 2, usize::MAX, 1).is_err());
    }

    #[test]
    fn png_round_trips_through_the_image_decoder() {
        let dir = std::env::temp_dir().join(format!("igpt-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plot.png");
        let series =
            [Series { name: "a".into(), points: vec![(0.0, 1.0), (1.0, 0.5)], color: RED }];
        let canvas =
            line_plot(&series, &PlotOptions { width: 320, height: 200, ..PlotOptions::default() })
                .unwrap();
        canvas.save_png(&path).unwrap();
        let decoded = image::load_from_memory(&std::fs::read(&path).unwrap()).unwrap().to_rgb8();
        assert_eq!((decoded.width(), decoded.height()), (320, 200));
        assert_eq!(decoded.as_raw(), canvas.pixels.as_flattened());
        let err = canvas.save_png(&dir.join("missing/plot.png")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
