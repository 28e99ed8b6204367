//! The pictures of a run: `loss.png` (train and test curves), `samples.png` (unconditional
//! samples) and `completions.png` (test images whose bottom half the model paints), plus the
//! palette as `preprocessor_config.json` so the run directory is a complete HF image model.

use super::trainer::LogRow;
use crate::data::Splits;
use crate::error::Result;
use crate::model::Model;
use crate::palette::{dequantize, save_preprocessor_config};
use crate::plot::{image_grid, line_plot, Canvas, PlotOptions, Rgb, Series};
use crate::sample::{complete, SamplingSettings};
use std::path::Path;

/// Images per row of `samples.png`, and samples drawn.
const SAMPLE_COLS: usize = 8;
const SAMPLES: usize = 32;
/// Test images completed, and completions per image.
const COMPLETE_IMAGES: usize = 6;
const COMPLETIONS: usize = 5;
/// On-screen size of an image cell (pixels are enlarged by an integer factor to about this).
const CELL_PIXELS: usize = 48;
/// Grey pixels between cells.
const GAP: usize = 2;

/// Writes `loss.png`, `samples.png`, `completions.png` and `preprocessor_config.json` into `dir`.
pub fn draw_run_pictures(
    model: &Model,
    data: &Splits,
    dir: &Path,
    log: &[LogRow],
    seed: u64,
) -> Result<()> {
    let set = &data.test;
    save_preprocessor_config(
        &set.palette,
        set.width,
        set.height,
        &dir.join("preprocessor_config.json"),
    )?;
    draw_loss(log, &dir.join("loss.png"))?;
    let settings = SamplingSettings::default();
    let samples = complete(model, &vec![Vec::new(); SAMPLES], set.seq_len(), &settings, seed)?;
    let images = samples.iter().map(|s| to_rgb(data, s)).collect::<Result<Vec<_>>>()?;
    grid(data, &images, SAMPLE_COLS)?.save_png(&dir.join("samples.png"))?;
    completion_grid(model, data, &settings, seed)?.save_png(&dir.join("completions.png"))
}

/// The pixels of one image of tokens.
fn to_rgb(data: &Splits, tokens: &[usize]) -> Result<Vec<Rgb>> {
    let t: Vec<u32> = tokens.iter().map(|&x| x as u32).collect();
    Ok(dequantize(&t, &data.test.palette)?.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect())
}

/// Images laid out `cols` wide, each enlarged to about `CELL_PIXELS`.
fn grid(data: &Splits, images: &[Vec<Rgb>], cols: usize) -> Result<Canvas> {
    let (w, h) = (data.test.width, data.test.height);
    let scale = (CELL_PIXELS / w.max(h)).max(1);
    image_grid(images, w, h, cols, scale, GAP)
}

/// Each row: the original test image, its top half (bottom blanked), then completions.
fn completion_grid(
    model: &Model,
    data: &Splits,
    settings: &SamplingSettings,
    seed: u64,
) -> Result<Canvas> {
    let set = &data.test;
    let n = set.seq_len();
    let keep = (set.height / 2) * set.width;
    let count = COMPLETE_IMAGES.min(set.len());
    let mut prompts = Vec::new();
    for i in 0..count {
        let top: Vec<usize> = set.image(i)[..keep].iter().map(|&x| usize::from(x)).collect();
        prompts.extend(std::iter::repeat_n(top, COMPLETIONS));
    }
    let completed = complete(model, &prompts, n, settings, seed)?;
    let mut cells = Vec::new();
    for i in 0..count {
        let original: Vec<usize> = set.image(i).iter().map(|&x| usize::from(x)).collect();
        // The kept half, the rest painted with the palette's colour 0.
        let mut half = original.clone();
        half[keep..].fill(0);
        cells.push(to_rgb(data, &original)?);
        cells.push(to_rgb(data, &half)?);
        for c in &completed[i * COMPLETIONS..(i + 1) * COMPLETIONS] {
            cells.push(to_rgb(data, c)?);
        }
    }
    grid(data, &cells, COMPLETIONS + 2)
}

/// Train (per log row) and test (at evaluations) loss in nats per token against the step.
fn draw_loss(log: &[LogRow], path: &Path) -> Result<()> {
    let train = log.iter().map(|r| (r.step as f64, r.train_loss)).collect();
    let test = log.iter().filter_map(|r| r.test_loss.map(|t| (r.step as f64, t))).collect();
    let series = [
        Series { name: "train".into(), points: train, color: [31, 119, 180] },
        Series { name: "test".into(), points: test, color: [214, 39, 40] },
    ];
    let opts = PlotOptions {
        title: "iGPT training loss".into(),
        x_label: "step".into(),
        y_label: "nats per token".into(),
        width: 800,
        height: 500,
        log_y: false,
    };
    line_plot(&series, &opts)?.save_png(path)
}
