//! The pictures of a run: `loss.png` (train and test curves), `samples.png` (unconditional
//! samples) and `completions.png` (a test image of each class whose bottom half the model
//! paints; drawn by `sample::pictures`), plus the palette as `preprocessor_config.json` so the
//! run directory is a complete HF image model.

use super::trainer::LogRow;
use crate::data::{ImageSet, Splits};
use crate::error::Result;
use crate::model::Model;
use crate::palette::save_preprocessor_config;
use crate::plot::{line_plot, PlotOptions, Series};
use crate::sample::pictures::{completion_grid, sample_grid};
use crate::sample::SamplingSettings;
use crate::token::Token;
use std::path::Path;

/// Images per row of `samples.png`, and samples drawn.
const SAMPLE_COLS: usize = 8;
const SAMPLES: usize = 32;
/// Test images completed (the first of each class, up to this many classes), and completions
/// per image.
const COMPLETE_IMAGES: usize = 10;
const COMPLETIONS: usize = 5;

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
    let size = (set.width, set.height);
    save_preprocessor_config(&set.palette, size.0, size.1, &dir.join("preprocessor_config.json"))?;
    draw_loss(log, &dir.join("loss.png"))?;
    let settings = SamplingSettings::default();
    progress(&format!("drawing {SAMPLES} samples into samples.png"));
    let (samples, _) =
        sample_grid(model, &set.palette, size, (SAMPLES, SAMPLE_COLS), &settings, seed)?;
    samples.save_png(&dir.join("samples.png"))?;
    let originals: Vec<Vec<Token>> =
        first_of_each_class(set).into_iter().map(|i| set.image(i).to_vec()).collect();
    progress(&format!(
        "completing {} test images {COMPLETIONS} times each into completions.png",
        originals.len()
    ));
    let keep = (set.height / 2) * set.width;
    let figure =
        completion_grid(model, &originals, &set.palette, size, keep, COMPLETIONS, &settings, seed)?;
    figure.save_png(&dir.join("completions.png"))
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
