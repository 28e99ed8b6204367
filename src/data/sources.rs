//! Data sources beyond the embedded digits: CIFAR-10 binary batches, folders of images and the
//! emoji package.
//!
//! Each produces RGB images of a fixed size, which are quantised with a palette — the one given
//! (`--palette`), or one fitted by k-means (K = 512 as in the paper, or the number of distinct
//! colours if smaller) on up to 2¹⁹ training pixels (pixel `i` of the sample is word `i` of
//! Philox stream 6·2⁶⁰ modulo the pixel count; every pixel when there are fewer). `--data` accepts:
//! - `digits` — the embedded UCI digits (see `digits`);
//! - `cifar10:PATH` — PATH a directory holding `data_batch_1.bin … data_batch_5.bin` and
//!   `test_batch.bin`, or a comma-separated list of such files (files named `test_batch*` form
//!   the test split). A record is 1 label byte then 3072 bytes: the 1024 red values, then green,
//!   then blue, each 32×32 row-major;
//! - `DIR` — an image folder: every sub-folder is a class (sorted by name), every PNG/JPEG in it
//!   (recursively) an image, resized to 32×32 (or [`DataOptions::image_size`]) with Pillow's
//!   bilinear filter. If `DIR/train` and `DIR/test` exist they are the splits; otherwise the
//!   last tenth of each class (by sorted path, at least one image when a class has two or more)
//!   is the test split;
//! - `emoji:PATH` — the npm package `emoji-datasource` (its `.tgz` or unpacked folder), see
//!   [`super::emoji`]; 16×16 unless [`DataOptions::image_size`] says otherwise.

use super::dataset::{ImageSet, Splits};
use super::digits::digits;
use super::emoji::{emoji_splits, EmojiOptions, DEFAULT_VENDORS};
use crate::error::{Error, Result};
use crate::palette::{
    fit_kmeans, load_image_rgb, load_palette, quantize_rgb8, KMeansOptions, Palette,
};
use crate::rng::{streams, Philox};
use std::path::{Path, PathBuf};

/// Bytes per CIFAR-10 record: the label and 3·32·32 pixels.
const CIFAR_RECORD: usize = 1 + 3 * 1024;
/// The CIFAR-10 class names, by label.
const CIFAR_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
/// Palette size fitted for photos (the paper's 9-bit palette).
pub const PALETTE_SIZE: usize = 512;
/// At most this many pixels are used to fit the palette.
const PALETTE_FIT_PIXELS: usize = 1 << 19;

/// Side of the emoji images unless [`DataOptions::image_size`] is set.
pub const EMOJI_DEFAULT_SIZE: usize = 16;

/// RGB images before quantisation: `n · h · w · 3` bytes and the labels.
pub(super) struct RgbSet {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
    labels: Vec<u16>,
    classes: Vec<String>,
}

impl RgbSet {
    /// An empty set of `size × size` images.
    pub(super) fn new(size: usize, classes: Vec<String>) -> RgbSet {
        RgbSet { width: size, height: size, pixels: Vec::new(), labels: Vec::new(), classes }
    }

    /// Appends one image (`width · height · 3` bytes) with its label.
    pub(super) fn push(&mut self, pixels: &[u8], label: u16) {
        debug_assert_eq!(pixels.len(), self.width * self.height * 3);
        self.pixels.extend_from_slice(pixels);
        self.labels.push(label);
    }
}

/// How to load a data set besides its `--data` specification.
#[derive(Clone, Copy)]
pub struct DataOptions<'a> {
    /// Quantise with this palette file instead of fitting one by k-means.
    pub palette: Option<&'a Path>,
    /// Side of the square images of the emoji set (default [`EMOJI_DEFAULT_SIZE`]).
    pub image_size: Option<usize>,
    /// The emoji vendors (default [`DEFAULT_VENDORS`]).
    pub vendors: Option<&'a [String]>,
    /// Seed of the palette fit.
    pub seed: u64,
    /// Receives one line per phase of loading (reading, fitting the palette, quantising).
    pub progress: &'a dyn Fn(&str),
}

impl Default for DataOptions<'_> {
    fn default() -> Self {
        DataOptions { palette: None, image_size: None, vendors: None, seed: 0, progress: &|_| {} }
    }
}

/// Checks that an image size and vendors apply to `--data spec` (reading nothing), so that a
/// command can report a wrong combination of flags before it loads anything.
pub fn check_data_options(
    spec: &str,
    image_size: Option<usize>,
    vendors: Option<&[String]>,
) -> Result<()> {
    if vendors.is_some() && !spec.starts_with("emoji:") {
        return Err(Error::invalid(format!("--data {spec}: vendors apply to emoji data only")));
    }
    let fixed_size = match spec {
        "digits" => Some(8),
        _ if spec.starts_with("cifar10:") => Some(32),
        _ => None,
    };
    if let (Some(native), Some(size)) = (fixed_size, image_size) {
        if size != native {
            let msg = format!("--data {spec}: its images are {native}×{native}, not {size}×{size}");
            return Err(Error::invalid(msg));
        }
    }
    Ok(())
}

/// Loads `--data SPEC` (see the module doc), quantised with the given palette or a fitted one.
pub fn load_data(spec: &str, opts: &DataOptions) -> Result<Splits> {
    check_data_options(spec, opts.image_size, opts.vendors)?;
    if spec == "digits" {
        return digits();
    }
    let (train, test, name) = if let Some(path) = spec.strip_prefix("cifar10:") {
        let (train, test) = read_cifar(path)?;
        (train, test, format!("CIFAR-10 ({path})"))
    } else if let Some(path) = spec.strip_prefix("emoji:") {
        let emoji = EmojiOptions {
            vendors: match opts.vendors {
                Some(v) => v.to_vec(),
                None => DEFAULT_VENDORS.map(String::from).to_vec(),
            },
            size: opts.image_size.unwrap_or(EMOJI_DEFAULT_SIZE),
        };
        let (train, test) = emoji_splits(Path::new(path), &emoji, opts.progress)?;
        (train, test, format!("emoji ({}; {path})", emoji.vendors.join(", ")))
    } else {
        let (train, test) = read_folder(Path::new(spec), opts.image_size.unwrap_or(32))?;
        (train, test, format!("images in {spec}"))
    };
    let palette = match opts.palette {
        Some(p) => load_palette(p)?,
        None => fit_palette(&train, opts)?,
    };
    Ok(Splits { train: quantise(train, &palette)?, test: quantise(test, &palette)?, name })
}

/// The files of a `cifar10:` spec: a directory's standard batches, or the listed files.
fn cifar_files(spec: &str) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let dir = Path::new(spec);
    let files: Vec<PathBuf> = if dir.is_dir() {
        let mut f: Vec<PathBuf> = (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .filter(|p| p.exists())
            .collect();
        f.push(dir.join("test_batch.bin"));
        f
    } else {
        spec.split(',').map(PathBuf::from).collect()
    };
    let is_test =
        |p: &PathBuf| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("test_batch"));
    let (test, train): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(is_test);
    if train.is_empty() || test.is_empty() {
        return Err(Error::invalid(format!(
            "cifar10:{spec}: need training batches (data_batch_*.bin) and a test_batch.bin"
        )));
    }
    Ok((train, test))
}

fn read_cifar(spec: &str) -> Result<(RgbSet, RgbSet)> {
    let (train, test) = cifar_files(spec)?;
    Ok((read_cifar_files(&train)?, read_cifar_files(&test)?))
}

/// Parses CIFAR-10 binary batch files into one RGB set (planar RGB → interleaved).
fn read_cifar_files(files: &[PathBuf]) -> Result<RgbSet> {
    let mut set = RgbSet::new(32, CIFAR_CLASSES.map(String::from).to_vec());
    for path in files {
        let (labels, pixels) =
            parse_cifar_batch(&crate::io::read_bytes(path)?, &path.display().to_string())?;
        set.labels.extend(labels);
        set.pixels.extend(pixels);
    }
    Ok(set)
}

/// Parses the contents of one CIFAR-10 binary batch: the labels and the images as interleaved
/// RGB (`32·32·3` bytes each); `origin` names the file in errors.
pub(crate) fn parse_cifar_batch(bytes: &[u8], origin: &str) -> Result<(Vec<u16>, Vec<u8>)> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(CIFAR_RECORD) {
        let msg = format!(
            "{} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records (truncated?)",
            bytes.len()
        );
        return Err(Error::format(origin, msg));
    }
    let mut labels = Vec::with_capacity(bytes.len() / CIFAR_RECORD);
    let mut pixels = Vec::with_capacity(bytes.len() / CIFAR_RECORD * (CIFAR_RECORD - 1));
    for (r, rec) in bytes.chunks_exact(CIFAR_RECORD).enumerate() {
        if rec[0] >= 10 {
            return Err(Error::format(origin, format!("record {r}: label {} is not 0..9", rec[0])));
        }
        labels.push(u16::from(rec[0]));
        let planes = &rec[1..];
        for i in 0..1024 {
            pixels.extend([planes[i], planes[1024 + i], planes[2048 + i]]);
        }
    }
    Ok((labels, pixels))
}

/// PNG/JPEG files under `dir`, recursively, sorted.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let path = entry.map_err(|e| Error::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| {
                ["png", "jpg", "jpeg"].contains(&e.to_string_lossy().to_lowercase().as_str())
            }) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Class folders of `dir` (sorted) and their image files.
fn class_folders(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            let files = image_files(&path)?;
            if !files.is_empty() {
                classes.push((
                    path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                    files,
                ));
            }
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no class sub-folders with PNG/JPEG images",
            dir.display()
        )));
    }
    Ok(classes)
}

/// Loads and resizes `files` (class label each) into an RGB set of `size × size` images.
fn load_images(files: &[(PathBuf, u16)], classes: &[String], size: usize) -> Result<RgbSet> {
    let mut set = RgbSet::new(size, classes.to_vec());
    for (path, label) in files {
        set.push(load_image_rgb(path)?.resize_pillow(size, size)?.bytes(), *label);
    }
    Ok(set)
}

fn read_folder(dir: &Path, size: usize) -> Result<(RgbSet, RgbSet)> {
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "--data {}: not 'digits', 'cifar10:PATH' or a directory",
            dir.display()
        )));
    }
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    let (train, test, names) = if train_dir.is_dir() && test_dir.is_dir() {
        let train_classes = class_folders(&train_dir)?;
        let names: Vec<String> = train_classes.iter().map(|(n, _)| n.clone()).collect();
        let label = |n: &str| names.iter().position(|c| c == n);
        let mut test = Vec::new();
        for (n, files) in class_folders(&test_dir)? {
            let l = label(&n).ok_or_else(|| {
                Error::invalid(format!("{}: class '{n}' is not in train/", test_dir.display()))
            })?;
            test.extend(files.into_iter().map(|f| (f, l as u16)));
        }
        let train = train_classes
            .into_iter()
            .enumerate()
            .flat_map(|(l, (_, f))| f.into_iter().map(move |p| (p, l as u16)))
            .collect();
        (train, test, names)
    } else {
        let classes = class_folders(dir)?;
        let names = classes.iter().map(|(n, _)| n.clone()).collect();
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (l, (_, files)) in classes.into_iter().enumerate() {
            let n_test = if files.len() >= 2 { (files.len() / 10).max(1) } else { 0 };
            let split = files.len() - n_test;
            for (i, f) in files.into_iter().enumerate() {
                if i < split { &mut train } else { &mut test }.push((f, l as u16));
            }
        }
        (train, test, names)
    };
    if train.is_empty() || test.is_empty() {
        return Err(Error::invalid(format!(
            "{}: need images for both a training and a test split",
            dir.display()
        )));
    }
    Ok((load_images(&train, &names, size)?, load_images(&test, &names, size)?))
}

/// k-means (K = 512, or fewer for tiny sets) on up to 2¹⁹ training pixels chosen by Philox.
fn fit_palette(train: &RgbSet, opts: &DataOptions) -> Result<Palette> {
    let seed = opts.seed;
    let n = train.pixels.len() / 3;
    let philox = Philox::new(seed);
    let take = n.min(PALETTE_FIT_PIXELS);
    let mut points = Vec::with_capacity(take * 3);
    let mut distinct = std::collections::HashSet::new();
    for i in 0..take {
        // Pixel i of the subsample: word i of stream 6·2⁶⁰ (or every pixel when few).
        let p = if take == n {
            i
        } else {
            (philox.u32_at(streams::PALETTE_PIXELS, i as u64) as usize) % n
        };
        let rgb = &train.pixels[3 * p..3 * p + 3];
        distinct.insert([rgb[0], rgb[1], rgb[2]]);
        points.extend(rgb.iter().map(|&b| crate::palette::pixel_to_unit(b)));
    }
    // A data set with fewer colours than 512 gets one palette entry per colour.
    let k = PALETTE_SIZE.min(distinct.len());
    (opts.progress)(&format!("fitting a {k}-colour palette by k-means on {take} training pixels"));
    let start = std::time::Instant::now();
    let kmeans = KMeansOptions { seed, ..KMeansOptions::default() };
    let fit = fit_kmeans(&points, take, 3, k, &kmeans)?;
    (opts.progress)(&format!(
        "palette fitted in {:.1} s ({} iterations)",
        start.elapsed().as_secs_f64(),
        fit.iterations
    ));
    Palette::from_centers(&fit.centers, 3)
}

fn quantise(set: RgbSet, palette: &Palette) -> Result<ImageSet> {
    let tokens = quantize_rgb8(&set.pixels, palette)?;
    let out = ImageSet {
        width: set.width,
        height: set.height,
        tokens,
        labels: set.labels,
        classes: set.classes,
        palette: palette.clone(),
    };
    out.validate("quantised data")?;
    Ok(out)
}
