//! Line charts: axes with "nice" ticks, series, legend ([`line_plot`]); see the module doc of
//! [`super`] for the mapping from data to pixels.

use super::{text_size, Draw, GLYPH_H, GRID, INK, LEGEND_EDGE, WHITE};
use crate::error::{Error, Result};
use crate::palette::{Rgb, RgbImage};

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
/// over 0..1. Errors only for a canvas size outside [`MIN_PLOT_W`]×[`MIN_PLOT_H`]..[`MAX_SIDE`](crate::palette::rgb_image::MAX_SIDE).
pub fn line_plot(series: &[Series], opts: &PlotOptions) -> Result<RgbImage> {
    if opts.width < MIN_PLOT_W || opts.height < MIN_PLOT_H {
        return Err(Error::invalid(format!(
            "plot size {}x{} is too small: at least {MIN_PLOT_W}x{MIN_PLOT_H}",
            opts.width, opts.height
        )));
    }
    let mut canvas = RgbImage::filled(opts.width, opts.height, WHITE)?;
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
fn draw_axes(canvas: &mut RgbImage, f: &Frame, opts: &PlotOptions) {
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
fn draw_series(canvas: &mut RgbImage, s: &Series, f: &Frame, log_y: bool, thickness: usize) {
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
fn draw_legend(canvas: &mut RgbImage, series: &[Series], f: &Frame, thickness: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::palette::rgb_image::MAX_SIDE;
    use crate::plot::PALETTE;

    const RED: Rgb = [255, 0, 0];

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
        let big = PlotOptions { width: MAX_SIDE + 1, ..PlotOptions::default() };
        assert!(line_plot(&[], &big).is_err());
    }
}
