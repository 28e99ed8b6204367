//! Line plots drawn pixel by pixel on an [`RgbImage`] and saved as PNG.
//!
//! igpt draws its own charts — `loss.png` during training, `probe_vs_loss.png` from
//! `igpt probe --checkpoints` — with no plotting library:
//!
//! * **Primitives** ([`Draw`]). Rectangles; straight lines by Bresenham's algorithm, after
//!   Liang–Barsky clipping to the image so any endpoints cost at most one image diagonal; text
//!   from the embedded 5×7 bitmap font [`FONT`], scaled by an integer factor, horizontal or
//!   rotated 90°.
//! * **[`line_plot`].** Data `(x, y)` map to pixels affinely,
//!   `px = left + (x − x_lo) / (x_hi − x_lo) · plot_width` (y likewise, flipped so up is up;
//!   with `log_y` the map applies to `log10 y`). The data range gets a small margin; ticks sit
//!   at multiples of a "nice" step 1, 2 or 5 × 10^k. Non-finite points (and y ≤ 0 on a log
//!   axis) are skipped and break the line; an isolated point is drawn as a square marker.
//!
//! Image grids (samples, completions) are not plots: they are the image type's own
//! (`RgbImage::grid`). Output is deterministic: the same inputs give the same pixels, hence the
//! same PNG bytes.
//!
//! The module is split by what a picture is made of: `font` (the bitmap glyphs), this file
//! (the drawing primitives) and `chart` (axes, ticks and [`line_plot`]).

mod chart;
mod font;

pub use chart::{
    format_tick, line_plot, nice_step, ticks_at, PlotOptions, Series, MIN_PLOT_H, MIN_PLOT_W,
};
pub use font::{text_size, FONT, GLYPH_H, GLYPH_W};

use crate::palette::{Rgb, RgbImage};
use font::{clamp_scale, glyph, ADVANCE};

/// Background of plots.
pub const WHITE: Rgb = [255, 255, 255];
/// Text, frame and tick marks: a soft black.
const INK: Rgb = [40, 40, 40];
/// Grid lines at the ticks, light enough to stay behind the data.
const GRID: Rgb = [228, 228, 228];
/// Legend border.
const LEGEND_EDGE: Rgb = [180, 180, 180];

/// Distinguishable series colours (the "tab10" cycle of matplotlib and d3), for callers.
pub const PALETTE: [Rgb; 6] =
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75]];

/// Drawing on an [`RgbImage`]: the primitives the charts are made of. Coordinates are signed
/// and may lie outside the image; what falls outside is clipped.
pub trait Draw {
    /// The pixel at `(x, y)`, or `None` outside the image.
    fn get(&self, x: i64, y: i64) -> Option<Rgb>;
    /// Fills the axis-aligned rectangle with top-left `(x, y)` and size `w × h`, clipped.
    fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb);
    /// Draws the 1-pixel outline of the rectangle `fill_rect` would fill.
    fn stroke_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb);
    /// Draws a straight line between pixel positions `from` and `to` (rounded to the nearest
    /// pixel), `thickness` pixels wide (1..=16: each point of the line becomes a square).
    /// Non-finite endpoints draw nothing.
    fn line(&mut self, from: (f64, f64), to: (f64, f64), thickness: usize, color: Rgb);
    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale × scale`.
    fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb);
    /// Draws `text` rotated 90° counter-clockwise (reading upwards, as a y-axis label): its box
    /// is `text_size(..).1` wide and `text_size(..).0` tall, with top-left corner `(x, y)`.
    fn text_up(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb);
}

impl Draw for RgbImage {
    fn get(&self, x: i64, y: i64) -> Option<Rgb> {
        index(self, x, y).map(|i| self.pixels[i])
    }

    fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        // Clip first, so the cost is the visible area whatever the arguments.
        let x0 = x.clamp(0, self.width as i64) as usize;
        let x1 = x.saturating_add(w).clamp(0, self.width as i64) as usize;
        let y0 = y.clamp(0, self.height as i64) as usize;
        let y1 = y.saturating_add(h).clamp(0, self.height as i64) as usize;
        for row in y0..y1 {
            self.pixels[row * self.width + x0..row * self.width + x1].fill(color);
        }
    }

    fn stroke_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        self.fill_rect(x, y, w, 1, color);
        self.fill_rect(x, y + h - 1, w, 1, color);
        self.fill_rect(x, y, 1, h, color);
        self.fill_rect(x + w - 1, y, 1, h, color);
    }

    fn line(&mut self, from: (f64, f64), to: (f64, f64), thickness: usize, color: Rgb) {
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

    fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb) {
        draw_text(self, (x, y), text, scale, color, false);
    }

    fn text_up(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb) {
        draw_text(self, (x, y), text, scale, color, true);
    }
}

/// The index of pixel `(x, y)` in `img.pixels`, or `None` outside the image.
fn index(img: &RgbImage, x: i64, y: i64) -> Option<usize> {
    let (x, y) = (usize::try_from(x).ok()?, usize::try_from(y).ok()?);
    (x < img.width && y < img.height).then_some(y * img.width + x)
}

/// [`Draw::text`] (`up` false) and [`Draw::text_up`] (`up` true), from the glyph bitmaps.
fn draw_text(
    img: &mut RgbImage,
    (x, y): (i64, i64),
    text: &str,
    scale: usize,
    color: Rgb,
    up: bool,
) {
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
                img.fill_rect(px, py, s, s, color);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const RED: Rgb = [255, 0, 0];

    fn ink_box(c: &RgbImage, background: Rgb) -> Option<(usize, usize, usize, usize, usize)> {
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
    fn every_glyph_fits_its_cell_and_text_puts_ink_in_its_box() {
        assert!(FONT.iter().flatten().all(|&row| row < 1 << GLYPH_W));
        assert!(FONT[1..].iter().all(|g| g.iter().any(|&row| row != 0)), "only space is blank");
        for scale in [1, 3] {
            let mut c = RgbImage::filled(60, 60, WHITE).unwrap();
            c.text(10, 20, "Ag", scale, RED);
            let (w, h) = text_size("Ag", scale);
            let (n, x0, y0, x1, y1) = ink_box(&c, WHITE).unwrap();
            assert!(n > 0 && x0 >= 10 && y0 >= 20 && x1 < 10 + w && y1 < 20 + h);
            assert_eq!((x0, y0, y1), (10, 20, 20 + h - 1), "A starts at the box, g descends");
            // Rotated, the same ink lies in the transposed box.
            let mut up = RgbImage::filled(60, 60, WHITE).unwrap();
            up.text_up(10, 5, "Ag", scale, RED);
            let (n_up, x0, y0, x1, y1) = ink_box(&up, WHITE).unwrap();
            assert!(n_up == n && x0 >= 10 && y0 >= 5 && x1 < 10 + h && y1 < 5 + w);
        }
    }

    #[test]
    fn lines_are_clipped_and_connect_their_endpoints() {
        let mut c = RgbImage::filled(50, 40, WHITE).unwrap();
        c.line((-1e12, -1e12), (1e12, 1e12), 1, RED);
        assert!((0..40).all(|i| c.get(i, i) == Some(RED)));
        c.line((f64::NAN, 0.0), (10.0, 10.0), 2, [0, 0, 255]);
        let mut d = RgbImage::filled(50, 40, WHITE).unwrap();
        d.line((3.0, 30.0), (45.0, 2.0), 2, RED);
        assert_eq!((d.get(3, 30), d.get(45, 2), d.get(0, 0)), (Some(RED), Some(RED), Some(WHITE)));
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
