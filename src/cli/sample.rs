//! `igpt sample` and `igpt complete`: pictures from a trained model.

use super::probe::run_data;
use super::Failure;
use igpt::args::{parse, Command, Flag, Parsed};
use igpt::io::npy::{write_npy, NpyArray, NpyData};
use igpt::model::footprint;
use igpt::model::Model;
use igpt::palette::{image_to_tokens, read_preprocessor_config, Palette};
use igpt::sample::pictures::{completion_grid, sample_grid};
use igpt::sample::SamplingSettings;
use igpt::{Error, Token};
use std::path::Path;

const SAMPLING_FLAGS: [Flag; 4] = [
    Flag::one("temperature", "T", "softmax temperature, 0 = greedy (default 1, the paper's)"),
    Flag::one("top-k", "K", "sample among the K most likely colours only"),
    Flag::one("top-p", "P", "nucleus sampling: the most likely colours up to mass P in (0, 1]"),
    Flag::one("seed", "S", "Philox seed (default 0)"),
];

/// The sampling flags, checked (negative temperature, `--top-k 0`, `--top-p` outside (0, 1]).
fn settings(p: &Parsed) -> Result<SamplingSettings, Failure> {
    let s = SamplingSettings {
        temperature: p.parse_or("temperature", 1.0f64)?,
        top_k: p.parse_opt("top-k")?,
        top_p: p.parse_opt("top-p")?,
    };
    s.validate().map_err(|e| p.usage(e))?;
    Ok(s)
}

/// Refuses, as a usage error, `n` sequences of `len` tokens that do not fit in memory.
fn admit_decoding(p: &Parsed, model: &Model, n: usize, len: usize) -> Result<(), Failure> {
    let what = format!("--n {n}: decoding {n} sequences of {len} tokens");
    super::admit(p, &what, footprint::decoding(&model.config, n, len))
}

/// The model (set to `--precision`) and its palette and image size (from
/// `preprocessor_config.json`).
fn load(p: &Parsed, dir: &Path) -> Result<(Model, Palette, usize, usize), Failure> {
    let mut model = super::load_model(dir)?;
    model.precision = super::precision(p)?;
    let pre = read_preprocessor_config(&dir.join("preprocessor_config.json"))?;
    let (w, h) = pre.size.unwrap_or((32, 32));
    if w * h > model.config.n_positions || pre.palette.len() + 1 != model.config.vocab_size {
        let msg = format!(
            "{}: the palette ({} colours, {w}×{h} images) does not fit the model (vocab_size {}, n_positions {})",
            dir.display(),
            pre.palette.len(),
            model.config.vocab_size,
            model.config.n_positions
        );
        return Err(Error::invalid(msg).into());
    }
    Ok((model, pre.palette, w, h))
}

const SAMPLE: Command = Command {
    name: "igpt sample",
    about: "Draw unconditional samples from a model and save them as a PNG grid.",
    positionals: &[],
    flags: &[
        Flag::one(
            "model",
            "DIR",
            "model directory (with preprocessor_config.json, as igpt train writes)",
        ),
        Flag::one("n", "N", "number of images (default 16)"),
        SAMPLING_FLAGS[0],
        SAMPLING_FLAGS[1],
        SAMPLING_FLAGS[2],
        SAMPLING_FLAGS[3],
        Flag::one("out", "FILE", "output PNG grid"),
        Flag::one("tokens-out", "FILE", "also save the tokens as .npy int64 [N, T]"),
        super::PRECISION,
    ],
};

pub fn sample(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&SAMPLE, argv)?;
    let s = settings(&p)?;
    let n = p.positive("n", 16usize)?;
    let out = Path::new(p.required("out")?);
    let (model, palette, w, h) = load(&p, Path::new(p.required("model")?))?;
    admit_decoding(&p, &model, n, w * h)?;
    let seed = p.parse_or("seed", 0u64)?;
    let (grid, seqs) = sample_grid(&model, &palette, (w, h), (n, 8.min(n)), &s, seed)?;
    grid.save_png(out)?;
    if let Some(t) = p.str("tokens-out") {
        let flat = seqs.iter().flatten().map(|&x| i64::from(x)).collect();
        write_npy(Path::new(t), &NpyArray::new(vec![n, w * h], NpyData::I64(flat))?)?;
    }
    Ok(())
}

const COMPLETE: Command = Command {
    name: "igpt complete",
    about: "Complete images from their top rows: each grid row shows the original, the kept part, then N completions.",
    positionals: &[],
    flags: &[
        Flag::one("model", "DIR", "model directory (with preprocessor_config.json)"),
        Flag::many("images", "FILE", "PNG/JPEG images to complete"),
        Flag::one("data", "digits|DIR|cifar10:PATH|emoji:PATH", "complete held-out test images of a data set instead (with the run's palette, size and vendors)"),
        Flag::one("count", "N", "with --data: how many test images, from the first (default 8)"),
        Flag::one("keep-rows", "R", "pixel rows kept from the top (default: half the image)"),
        Flag::one("n", "N", "completions per image (default 4)"),
        SAMPLING_FLAGS[0],
        SAMPLING_FLAGS[1],
        SAMPLING_FLAGS[2],
        SAMPLING_FLAGS[3],
        Flag::one("out", "FILE", "output PNG grid"),
        super::PRECISION,
    ],
};

pub fn complete_cmd(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&COMPLETE, argv)?;
    let s = settings(&p)?;
    let n = p.positive("n", 4usize)?;
    let count = p.positive("count", 8usize)?;
    let files = p.many("images");
    if files.is_empty() == p.str("data").is_none() {
        return Err(p.usage("give either --images FILE... or --data SPEC").into());
    }
    let out = Path::new(p.required("out")?);
    let dir = Path::new(p.required("model")?);
    let (model, palette, w, h) = load(&p, dir)?;
    let keep_rows = p.parse_or("keep-rows", h / 2)?;
    if keep_rows > h {
        return Err(p
            .usage(format!("--keep-rows {keep_rows} is past the image height {h}"))
            .into());
    }
    let originals = match p.str("data") {
        Some(spec) => test_images(&p, dir, spec, count, (w, h))?,
        None => files
            .iter()
            .map(|f| image_to_tokens(Path::new(f), &palette, w, h))
            .collect::<igpt::Result<Vec<Vec<Token>>>>()?,
    };
    admit_decoding(&p, &model, originals.len().saturating_mul(n), w * h)?;
    let seed = p.parse_or("seed", 0u64)?;
    let keep = keep_rows * w;
    completion_grid(&model, &originals, &palette, (w, h), keep, n, &s, seed)?.save_png(out)?;
    Ok(())
}

/// The first `count` test images of `--data spec`, quantised as the run in `dir` quantises;
/// images of another size than the model draws are a usage error (`--data` does not fit).
fn test_images(
    p: &Parsed,
    dir: &Path,
    spec: &str,
    count: usize,
    size: (usize, usize),
) -> Result<Vec<Vec<Token>>, Failure> {
    let (_, data) = run_data(dir, Some(spec))?;
    let test = &data.test;
    if (test.width, test.height) != size {
        let msg = format!(
            "--data {spec} gives {}×{} images, the model in {} draws {}×{}",
            test.width,
            test.height,
            dir.display(),
            size.0,
            size.1
        );
        return Err(p.usage(msg).into());
    }
    let n = count.min(test.len());
    Ok((0..n).map(|i| test.image(i).to_vec()).collect())
}
