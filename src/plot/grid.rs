//! Image grids: samples and completions tiled with grey gaps ([`image_grid`]).

use super::{text_size, Canvas, Rgb, GAP_GREY};
use crate::error::{Error, Result};

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
}
