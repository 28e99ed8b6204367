//! `igpt probe`: linear-probe accuracy of a model's features at every layer, plus the raw-pixel
//! baseline — the representation half of iGPT.

use super::Failure;
use igpt::args::{parse, Command, Flag};
use igpt::data::{load_data, DataOptions, ImageSet, Splits};
use igpt::io::json::{parse_json, Json};
use igpt::io::safetensors::SafeTensors;
use igpt::model::{Model, TokenBatch};
use igpt::palette::{dequantize, read_preprocessor_config};
use igpt::plot::{line_plot, PlotOptions, Series};
use igpt::probe::{
    all_layers, extract_features, pixel_features, probe, FeatureInput, FeatureOptions,
    ProbeOptions, ProbeResult,
};
use igpt::train::checkpoint::STATE_FILE;
use igpt::train::trainer::evaluate;
use igpt::train::{TrainConfig, TrainObjective};
use igpt::Error;
use std::path::Path;

const PROBE: Command = Command {
    name: "igpt probe",
    about: "Linear-probe accuracy of a model's features (mean-pooled ln_1 input of each block, ln_f output at L) and of raw pixels.",
    positionals: &[],
    flags: &[
        Flag::one("model", "DIR", "model directory (a run directory of igpt train)"),
        Flag::one("data", "digits|DIR|cifar10:PATH|emoji:PATH", "labelled data (default: what the run was trained on, else digits)"),
        Flag::one("layers", "all|L1,L2,…", "layers to probe, 0..=n_layer (default all)"),
        Flag::switch("bert", "features of an unmasked, bidirectional input (BERT models)"),
        Flag::one("max-images", "N", "use at most N images of each split (default all)"),
        Flag::switch("checkpoints", "probe every model kept by igpt train --save-every; plot test loss vs best accuracy (probe_vs_loss.png)"),
    ],
};

/// The recipe (`train_config`) recorded in a run's checkpoint, if any.
fn recorded_recipe(dir: &Path) -> Result<Option<Json>, Failure> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let st = SafeTensors::read(&path)?;
    let Some(text) = st.get_metadata("train_config") else { return Ok(None) };
    Ok(Some(parse_json(text.as_bytes(), &path.display().to_string())?))
}

/// The labelled data of a run: `--data` if given, else what the run recorded, else the digits;
/// photos and emoji are quantised with the run's own palette at its image size, emoji drawn by
/// the vendors the run used. Returns the specification and the splits.
pub(super) fn run_data(dir: &Path, data: Option<&str>) -> Result<(String, Splits), Failure> {
    let recipe = recorded_recipe(dir)?;
    let recorded = |key: &str| recipe.as_ref().and_then(|r| r.get(key));
    let spec = match data {
        Some(d) => d.to_string(),
        None => recorded("data").and_then(Json::as_str).unwrap_or("digits").to_string(),
    };
    let vendors: Option<Vec<String>> = recorded("vendors")
        .and_then(Json::as_array)
        .map(|v| v.iter().filter_map(Json::as_str).map(String::from).collect());
    let palette_file = dir.join("preprocessor_config.json");
    let has_palette = spec != "digits" && palette_file.exists();
    let image_size = match has_palette {
        true => read_preprocessor_config(&palette_file)?.size.map(|(w, _)| w),
        false => None,
    };
    let opts = DataOptions {
        palette: has_palette.then_some(palette_file.as_path()),
        image_size,
        vendors: vendors.as_deref(),
        progress: &|line| eprintln!("igpt: {line}"),
        ..DataOptions::default()
    };
    let splits = load_data(&spec, &opts)?;
    Ok((spec, splits))
}

/// Colour ids and labels of the first `max` images of `set`.
fn batch_of(
    set: &ImageSet,
    model: &Model,
    max: usize,
) -> Result<(TokenBatch, Vec<usize>), Failure> {
    let n = set.len().min(max);
    let ids = set.tokens[..n * set.seq_len()].to_vec();
    let labels = set.labels[..n].iter().map(|&l| usize::from(l)).collect();
    Ok((TokenBatch::new(ids, n, set.seq_len(), &model.config, "probe data")?, labels))
}

/// Raw pixels of the first `max` images: one grey value per pixel for a grey palette, else RGB.
fn raw_pixels(set: &ImageSet, max: usize) -> Result<(Vec<u8>, usize), Failure> {
    let n = set.len().min(max);
    let rgb = dequantize(&set.tokens[..n * set.seq_len()], &set.palette)?;
    let grey = set.palette.colors().chunks_exact(3).all(|c| c[0] == c[1] && c[1] == c[2]);
    if grey {
        Ok((rgb.chunks_exact(3).map(|p| p[0]).collect(), set.seq_len()))
    } else {
        Ok((rgb, 3 * set.seq_len()))
    }
}

pub fn run(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&PROBE, argv)?;
    let max = p.positive("max-images", usize::MAX)?;
    let dir = Path::new(p.required("model")?);
    let model = super::load_model(dir)?;
    let (spec, data) = run_data(dir, p.str("data"))?;
    if data.train.palette.len() + 1 != model.config.vocab_size {
        let msg = format!(
            "{spec}: its palette of {} colours does not fit the model's vocab_size {}",
            data.train.palette.len(),
            model.config.vocab_size
        );
        return Err(Error::invalid(msg).into());
    }
    let layers: Vec<usize> = match p.str("layers").unwrap_or("all") {
        "all" => all_layers(&model),
        list => list
            .split(',')
            .map(|x| x.trim().parse::<usize>().ok().filter(|&l| l <= model.config.n_layer))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                p.usage(format!("--layers must be 'all' or layers in 0..={}", model.config.n_layer))
            })?,
    };
    let input = if p.switch("bert") { FeatureInput::Unmasked } else { FeatureInput::SosShifted };
    if p.switch("checkpoints") {
        return probe_checkpoints(dir, &data, &layers, input, max);
    }
    eprintln!("igpt probe: {} on {}", dir.display(), data.name);
    eprintln!("{:>8} {:>9} {:>10} {:>8}", "layer", "accuracy", "C", "cv acc");
    // Each layer's line as soon as its regression is fitted (a layer takes seconds to minutes).
    probe_layers(&model, &data, &layers, input, max, &mut |l, r| {
        println!(
            "{{\"layer\":{l},\"accuracy\":{:.4},\"C\":{},\"cv_accuracy\":{:.4}}}",
            r.accuracy, r.c, r.cv_accuracy
        );
        eprintln!(
            "{l:>8} {:>8.2}% {:>10.4} {:>7.2}%",
            100.0 * r.accuracy,
            r.c,
            100.0 * r.cv_accuracy
        );
    })?;
    let classes = data.train.classes.len();
    let train_y: Vec<usize> = data.train.labels.iter().take(max).map(|&l| usize::from(l)).collect();
    let test_y: Vec<usize> = data.test.labels.iter().take(max).map(|&l| usize::from(l)).collect();
    let probe_opts = ProbeOptions::default();
    let (train_px, width) = raw_pixels(&data.train, max)?;
    let (test_px, _) = raw_pixels(&data.test, max)?;
    let r = probe(
        &pixel_features(&train_px, width)?,
        &train_y,
        &pixel_features(&test_px, width)?,
        &test_y,
        classes,
        &probe_opts,
    )?;
    println!(
        "{{\"layer\":\"pixels\",\"accuracy\":{:.4},\"C\":{},\"cv_accuracy\":{:.4}}}",
        r.accuracy, r.c, r.cv_accuracy
    );
    eprintln!(
        "{:>8} {:>8.2}% {:>10.4} {:>7.2}%",
        "pixels",
        100.0 * r.accuracy,
        r.c,
        100.0 * r.cv_accuracy
    );
    Ok(())
}

/// The probe result of every requested layer of `model`; `on_layer` hears of each as it is done.
fn probe_layers(
    model: &Model,
    data: &Splits,
    layers: &[usize],
    input: FeatureInput,
    max: usize,
    on_layer: &mut dyn FnMut(usize, &ProbeResult),
) -> Result<Vec<(usize, ProbeResult)>, Failure> {
    let (train, train_y) = batch_of(&data.train, model, max)?;
    let (test, test_y) = batch_of(&data.test, model, max)?;
    eprintln!(
        "igpt probe: features of {} training and {} test images",
        train_y.len(),
        test_y.len()
    );
    let opts = FeatureOptions { input, ..FeatureOptions::default() };
    let train_f = extract_features(model, &train, layers, &opts)?;
    let test_f = extract_features(model, &test, layers, &opts)?;
    let classes = data.train.classes.len();
    let mut out = Vec::new();
    for (k, &l) in layers.iter().enumerate() {
        let r =
            probe(&train_f[k], &train_y, &test_f[k], &test_y, classes, &ProbeOptions::default())?;
        on_layer(l, &r);
        out.push((l, r));
    }
    Ok(out)
}

/// The paper's correlation at small scale: for every model kept by `--save-every`, its test
/// loss and its best probe accuracy; one JSON line each, and `probe_vs_loss.png` in the run.
fn probe_checkpoints(
    dir: &Path,
    data: &Splits,
    layers: &[usize],
    input: FeatureInput,
    max: usize,
) -> Result<(), Failure> {
    let kept = dir.join("checkpoints");
    let mut steps: Vec<std::path::PathBuf> = match std::fs::read_dir(&kept) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("config.json").exists())
            .collect(),
        Err(_) => Vec::new(),
    };
    steps.sort();
    if steps.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no kept models (train with --save-every N)",
            kept.display()
        ))
        .into());
    }
    let mut cfg = TrainConfig::digits_default();
    if input == FeatureInput::Unmasked {
        cfg.objective = TrainObjective::Bert;
    }
    let mut points = Vec::new();
    for step_dir in &steps {
        let model = super::load_model(step_dir)?;
        let loss = evaluate(&model, &data.test, &cfg, max)?;
        let results = probe_layers(&model, data, layers, input, max, &mut |_, _| {})?;
        let (layer, best) = results
            .iter()
            .max_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy))
            .map(|(l, r)| (*l, r.accuracy))
            .unwrap_or((0, 0.0));
        let name = step_dir.file_name().unwrap_or_default().to_string_lossy();
        println!("{{\"checkpoint\":\"{name}\",\"test_nats_per_token\":{loss:.5},\"best_layer\":{layer},\"best_accuracy\":{best:.4}}}");
        eprintln!(
            "{name}: test loss {loss:.4} nats/token, best probe {:.2}% (layer {layer})",
            100.0 * best
        );
        points.push((loss, 100.0 * best));
    }
    let series = [Series { name: "checkpoints".into(), points, color: [31, 119, 180] }];
    let opts = PlotOptions {
        title: "linear probe vs generative loss".into(),
        x_label: "test loss (nats per token)".into(),
        y_label: "best probe accuracy (%)".into(),
        width: 800,
        height: 500,
        log_y: false,
    };
    line_plot(&series, &opts)?.save_png(&dir.join("probe_vs_loss.png"))?;
    Ok(())
}
