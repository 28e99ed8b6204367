//! The pictures of a run: `loss.png` (train and test curves), `samples.png` (unconditional
//! samples) and `completions.png` (a test image of each class whose bottom half the model
//! paints), plus the palette as `preprocessor_config.json` so the run directory is a complete HF
//! image model.

use super::trainer::LogRow;
use crate::data::{ImageSet, Splits};
use crate::error::Result;
use crate::model::Model;
use crate::palette::{save_preprocessor_config, tokens_to_pixels, Palette};
use crate::plot::{image_grid, line_plot, Canvas, PlotOptions, Rgb, Series};
use crate::sample::{complete, SamplingSettings};
use std::path::Path;

/// Images per row of `samples.png`, and samples drawn.
const SAMPLE_COLS: usize = 8;
const SAMPLES: usize = 32;
/// Test images completed (the first of each class, up to this many classes), and completions
/// per image.
const COMPLETE_IMAGES: usize = 10;
const COMPLETIONS: usize = 5;
/// On-screen size of an image cell (pixels are enlarged by an integer factor to about this).
const CELL_PIXELS: usize = 48;
/// Grey pixels between cells.
const GAP: usize = 2;

/// The colour of the hidden part of a completion prompt: a neutral grey no palette stands for.
const HIDDEN: Rgb = [128, 128, 128];

/// Writes `loss.png`, `samples.png`, `completions.png` and `preprocessor_config.json` into `dir`;
/// `progress` hears about the slow parts (sampling).
pub fn draw_run_pictures(
    model: &Model,
    data: &Splits,
    dir: &Path,
    log: &[LogRow],
    seed: u64,
    progress: &dyn Fn(&str),
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
    progress(&format!("drawing {SAMPLES} samples into samples.png"));
    let samples = complete(model, &vec![Vec::new(); SAMPLES], set.seq_len(), &settings, seed)?;
    let images =
        samples.iter().map(|s| tokens_to_pixels(s, &set.palette)).collect::<Result<Vec<_>>>()?;
    grid(data, &images, SAMPLE_COLS)?.save_png(&dir.join("samples.png"))?;
    progress(&format!(
        "completing {} test images {COMPLETIONS} times each into completions.png",
        first_of_each_class(set).len()
    ));
    completion_grid(model, data, &settings, seed)?.save_png(&dir.join("completions.png"))
}

/// Images laid out `cols` wide, each enlarged to about `CELL_PIXELS`.
fn grid(data: &Splits, images: &[Vec<Rgb>], cols: usize) -> Result<Canvas> {
    let (w, h) = (data.test.width, data.test.height);
    let scale = (CELL_PIXELS / w.max(h)).max(1);
    image_grid(images, w, h, cols, scale, GAP)
}

/// The first test image of each class (in class order, at most [`COMPLETE_IMAGES`]), so that
/// the figure shows every kind of picture rather than the first few of one kind.
fn first_of_each_class(set: &ImageSet) -> Vec<usize> {
    let mut firsts: Vec<usize> = (0..set.classes.len().max(1))
        .filter_map(|c| set.labels.iter().position(|&l| usize::from(l) == c))
        .collect();
    firsts.truncate(COMPLETE_IMAGES);
    firsts
}

/// One test image of each class, each followed by its top half and its completions.
fn completion_grid(
    model: &Model,
    data: &Splits,
    settings: &SamplingSettings,
    seed: u64,
) -> Result<Canvas> {
    let set = &data.test;
    let originals: Vec<Vec<usize>> = first_of_each_class(set)
        .into_iter()
        .map(|i| set.image(i).iter().map(|&x| usize::from(x)).collect())
        .collect();
    let keep = (set.height / 2) * set.width;
    let cells =
        completion_cells(model, &originals, keep, COMPLETIONS, settings, seed, &set.palette)?;
    grid(data, &cells, COMPLETIONS + 2)
}

/// The cells of a completion figure (like the paper's): for each original image, the image,
/// its first `keep` tokens (the hidden rest painted neutral grey), then `n` completions sampled
/// from those kept tokens — `n + 2` cells per original, row by row.
pub fn completion_cells(
    model: &Model,
    originals: &[Vec<usize>],
    keep: usize,
    n: usize,
    settings: &SamplingSettings,
    seed: u64,
    palette: &Palette,
) -> Result<Vec<Vec<Rgb>>> {
    let prompts: Vec<Vec<usize>> =
        originals.iter().flat_map(|o| std::iter::repeat_n(o[..keep].to_vec(), n)).collect();
    let len = originals.first().map_or(0, Vec::len);
    let completed = complete(model, &prompts, len, settings, seed)?;
    let mut cells = Vec::new();
    for (original, done) in originals.iter().zip(completed.chunks(n.max(1))) {
        let pixels = tokens_to_pixels(original, palette)?;
        let mut kept = pixels.clone();
        kept[keep..].fill(HIDDEN);
        cells.push(pixels);
        cells.push(kept);
        for c in done {
            cells.push(tokens_to_pixels(c, palette)?);
        }
    }
    Ok(cells)
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
