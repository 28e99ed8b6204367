//! Pictures of sampling: a grid of unconditional samples, and the paper's completion figure —
//! for each original image, the image itself, its kept top with the hidden rest painted a
//! neutral grey, then several completions sampled from the kept part.
//!
//! `igpt sample`, `igpt complete` and the pictures `igpt train` leaves in its run directory all
//! draw through here, so they enlarge and space their cells the same way.

use super::{complete, SamplingSettings};
use crate::error::Result;
use crate::model::Model;
use crate::palette::{tokens_to_image, Palette, Rgb, RgbImage};
use crate::token::Token;

/// On-screen size of an image cell (pixels are enlarged by an integer factor to about this).
const CELL_PIXELS: usize = 48;
/// Grey pixels between cells.
const GAP: usize = 2;
/// The colour of the hidden part of a completion prompt: a neutral grey no palette stands for.
const HIDDEN: Rgb = [128, 128, 128];

/// `w × h` images laid out `cols` wide, each enlarged to about `CELL_PIXELS`.
fn cell_grid(images: &[RgbImage], (w, h): (usize, usize), cols: usize) -> Result<RgbImage> {
    let scale = (CELL_PIXELS / w.max(h).max(1)).max(1);
    RgbImage::grid(images, cols, scale, GAP)
}

/// `n` unconditional samples of `w × h` tokens: their grid (`cols` wide) and their tokens.
pub fn sample_grid(
    model: &Model,
    palette: &Palette,
    (w, h): (usize, usize),
    (n, cols): (usize, usize),
    settings: &SamplingSettings,
    seed: u64,
) -> Result<(RgbImage, Vec<Vec<Token>>)> {
    let samples = complete(model, &vec![Vec::new(); n], w * h, settings, seed)?;
    let images =
        samples.iter().map(|s| tokens_to_image(s, palette, w, h)).collect::<Result<Vec<_>>>()?;
    Ok((cell_grid(&images, (w, h), cols)?, samples))
}

/// The completion figure of `originals` (`w × h` tokens each): one row per original (see
/// `completion_cells`).
#[allow(clippy::too_many_arguments)]
pub fn completion_grid(
    model: &Model,
    originals: &[Vec<Token>],
    palette: &Palette,
    (w, h): (usize, usize),
    keep: usize,
    n: usize,
    settings: &SamplingSettings,
    seed: u64,
) -> Result<RgbImage> {
    let cells = completion_cells(model, originals, keep, n, settings, seed, (palette, w, h))?;
    cell_grid(&cells, (w, h), n + 2)
}

/// The cells of a completion figure (like the paper's): for each original image, the image,
/// its first `keep` tokens (the hidden rest painted neutral grey), then `n` completions sampled
/// from those kept tokens — `n + 2` cells per original, row by row.
fn completion_cells(
    model: &Model,
    originals: &[Vec<Token>],
    keep: usize,
    n: usize,
    settings: &SamplingSettings,
    seed: u64,
    (palette, w, h): (&Palette, usize, usize),
) -> Result<Vec<RgbImage>> {
    let prompts: Vec<Vec<Token>> =
        originals.iter().flat_map(|o| std::iter::repeat_n(o[..keep].to_vec(), n)).collect();
    let len = originals.first().map_or(0, Vec::len);
    let completed = complete(model, &prompts, len, settings, seed)?;
    let mut cells = Vec::new();
    for (original, done) in originals.iter().zip(completed.chunks(n.max(1))) {
        let image = tokens_to_image(original, palette, w, h)?;
        let mut kept = image.clone();
        kept.pixels[keep..].fill(HIDDEN);
        cells.push(image);
        cells.push(kept);
        for c in done {
            cells.push(tokens_to_image(c, palette, w, h)?);
        }
    }
    Ok(cells)
}
