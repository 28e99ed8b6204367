//! `igpt palette fit` and `igpt quantize`: colour palettes and image → token conversion.

use super::Failure;
use igpt::admission;
use igpt::args::{parse, Command, Flag, Stop};
use igpt::data::sources::image_files;
use igpt::io::npy::{write_npy, NpyArray, NpyData};
use igpt::palette::{
    fit_kmeans, image_to_tokens, load_palette, load_pixels_npy, pixels_for_fit,
    read_preprocessor_config, save_palette_npy, tokens_to_image, KMeansOptions, Palette, RgbImage,
};
use igpt::Error;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

const FIT: Command = Command {
    name: "igpt palette fit",
    about: "Fit a k-means colour palette in [-1, 1] RGB space; prints {\"k\",\"inertia\",\"iterations\",\"seconds\"}.",
    positionals: &[],
    flags: &[
        Flag::one("images", "DIR", "fit on the pixels of every PNG/JPEG under DIR (each resized to --size)"),
        Flag::one("pixels", "FILE", "fit on an .npy array (N, 3) or (N, 1): float in [-1, 1] or uint8"),
        Flag::one("k", "K", "number of colours (the paper: 512)"),
        Flag::one("size", "S", "with --images: resize each image to S×S first (default 32)"),
        Flag::one("seed", "S", "Philox seed (default 0)"),
        Flag::one("max-iter", "M", "most Lloyd iterations (default 300)"),
        Flag::one("max-points", "N", "fit on a random subset of at most N pixels"),
        Flag::one("out", "FILE", "output palette .npy (K, 3) float32"),
    ],
};

/// `igpt palette fit …` (the first argument must be `fit`).
pub fn palette(argv: &[String]) -> Result<(), Failure> {
    match argv.first().map(String::as_str) {
        Some("fit") => fit(&argv[1..]),
        Some("--help" | "-h") => Err(Stop::Help(format!(
            "igpt palette fit: {}\n\nRun 'igpt palette fit --help'.\n",
            FIT.about
        ))
        .into()),
        other => Err(Stop::Usage(format!(
            "igpt palette: expected 'fit', got {other:?} (see 'igpt palette fit --help')"
        ))
        .into()),
    }
}

fn fit(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&FIT, argv)?;
    let k = p.positive_opt::<usize>("k")?.ok_or_else(|| p.usage("--k is required"))?;
    let out = PathBuf::from(p.required("out")?);
    let size = p.positive("size", 32usize)?;
    let opts = KMeansOptions {
        seed: p.parse_or("seed", 0u64)?,
        max_iter: p.positive("max-iter", 300usize)?,
        max_points: p.positive_opt("max-points")?,
        ..KMeansOptions::default()
    };
    let (points, channels) = match (p.str("images"), p.str("pixels")) {
        (Some(dir), None) => {
            let files = image_paths(Path::new(dir))?;
            let what = format!("--size {size}: {} images of {size}×{size} pixels", files.len());
            super::admit(&p, &what, admission::images(files.len(), size, size))?;
            (pixels_for_fit(&files, Some((size, size)))?, 3)
        }
        (None, Some(file)) => load_pixels_npy(Path::new(file))?,
        _ => return Err(p.usage("give exactly one of --images DIR or --pixels FILE").into()),
    };
    let n = points.len() / channels;
    // Fewer points than colours is a flag that does not fit its data: a usage error.
    let kept = opts.max_points.map_or(n, |m| m.min(n));
    if k > kept {
        return Err(p.usage(format!("--k {k} exceeds the {kept} points to cluster")).into());
    }
    let start = Instant::now();
    let result = fit_kmeans(&points, n, channels, k, &opts)?;
    let seconds = start.elapsed().as_secs_f64();
    save_palette_npy(&Palette::from_centers(&result.centers, channels)?, &out)?;
    println!(
        "{{\"k\":{k},\"inertia\":{},\"iterations\":{},\"seconds\":{seconds:.3}}}",
        result.inertia, result.iterations
    );
    Ok(())
}

/// PNG/JPEG files under `dir`, recursively, sorted; at least one.
fn image_paths(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let files = image_files(dir)?;
    if files.is_empty() {
        return Err(
            Error::invalid(format!("{}: no PNG or JPEG images found", dir.display())).into()
        );
    }
    Ok(files)
}

const QUANTIZE: Command = Command {
    name: "igpt quantize",
    about: "Turn images into token ids: RGB, Pillow-exact bilinear resize, nearest palette colour (as HF's ImageGPTImageProcessor).",
    positionals: &[],
    flags: &[
        Flag::one("palette", "FILE", "palette .npy (K, 3) or an HF preprocessor_config.json"),
        Flag::many("images", "FILE", "PNG/JPEG images"),
        Flag::one("size", "S", "resize to S×S (default: the preprocessor config's size, else 32)"),
        Flag::one("out", "FILE", "output tokens .npy int64 [N, S²], raster order"),
        Flag::one("preview", "FILE", "also write the quantised images as a PNG grid"),
    ],
};

pub fn quantize(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&QUANTIZE, argv)?;
    let palette_path = Path::new(p.required("palette")?);
    let images = p.many("images");
    if images.is_empty() {
        return Err(p.usage("--images is required").into());
    }
    let flag_size = p.positive_opt::<usize>("size")?;
    let config_size = if palette_path.extension().is_some_and(|e| e == "json") {
        read_preprocessor_config(palette_path)?.size
    } else {
        None
    };
    let palette = load_palette(palette_path)?;
    let size = flag_size.map_or(config_size.unwrap_or((32, 32)), |s| (s, s));
    let what = format!("{} images of {}×{} pixels (--size)", images.len(), size.0, size.1);
    super::admit(&p, &what, admission::images(images.len(), size.0, size.1))?;
    let tokens: Vec<Vec<u32>> = images
        .par_iter()
        .map(|f| image_to_tokens(Path::new(f), &palette, size.0, size.1))
        .collect::<igpt::Result<_>>()?;
    let flat: Vec<i64> = tokens.iter().flatten().map(|&t| i64::from(t)).collect();
    let array = NpyArray::new(vec![images.len(), size.0 * size.1], NpyData::I64(flat))?;
    write_npy(Path::new(p.required("out")?), &array)?;
    if let Some(preview) = p.str("preview") {
        let images = tokens
            .iter()
            .map(|t| tokens_to_image(t, &palette, size.0, size.1))
            .collect::<igpt::Result<Vec<_>>>()?;
        let scale = (96 / size.0.max(size.1)).max(1);
        RgbImage::grid(&images, 8.min(images.len()), scale, 2)?.save_png(Path::new(preview))?;
    }
    eprintln!("igpt quantize: {} images → {}×{} tokens each", images.len(), size.0, size.1);
    Ok(())
}
