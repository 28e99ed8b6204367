//! Quantizing an image: the pixel → token pipeline of iGPT (and of HF's ImageGPTImageProcessor).
//!
//! Run with `cargo run --release --example quantize_image -- [IMAGE]` (default: a fixture image).
//! It loads the image as RGB, resizes it to 32×32 with Pillow's bilinear filter, maps every pixel
//! to the nearest of a 16-colour palette, prints the tokens, and writes the result as a PNG.

use igpt::palette::{image_to_tokens, load_palette, tokens_to_png};
use std::path::{Path, PathBuf};

fn main() -> igpt::Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/palette");
    let image = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| fixtures.join("images/rgb_40x33.png"));

    // The palette: K colours in [-1, 1] RGB. `load_palette` reads an `.npy` (K, 3) array or the
    // `clusters` of an HF `preprocessor_config.json`.
    let palette = load_palette(&fixtures.join("palette.npy"))?;
    println!("palette of {} colours", palette.len());

    // Pixels → tokens: RGB, resize to 32×32, nearest colour; raster order (y·32 + x).
    let tokens = image_to_tokens(&image, &palette, 32, 32)?;
    for row in tokens.chunks(32).take(4) {
        println!("{}", row.iter().map(|t| format!("{t:2}")).collect::<Vec<_>>().join(" "));
    }
    println!("… ({} tokens)", tokens.len());

    // Tokens → pixels: each token's colour, enlarged 8× for viewing.
    let out = std::env::temp_dir().join("igpt-quantized.png");
    tokens_to_png(&tokens, &palette, 32, 32, 8, &out)?;
    println!("wrote {}", out.display());
    Ok(())
}
