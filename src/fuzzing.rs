//! Every fuzz target: the registry [`TARGETS`] shared by the cargo-fuzz crate in `fuzz/` and the
//! stable-Rust corpus test `tests/fuzz_corpus.rs`, and the entry points of the readers above the
//! file formats (those of the formats themselves are in [`crate::io::fuzzing`], which must not
//! reach up into the model or the data).
//!
//! Each entry point feeds arbitrary bytes through the same function a user's file goes through
//! (`Model::load`'s parser for a model directory, `load_palette`'s for a palette, and so on). It
//! must never panic, whatever the bytes; when the reader accepts them, the entry point checks
//! what must hold of the value (usually: writing it and reading it back gives it again) and
//! panics on a violation — that is how a fuzzer reports a bug. The return value says whether
//! the input was accepted, so the corpus test can check that the properties were exercised.
//!
//! To fuzz another reader, add a function and one line to [`TARGETS`]; the corpus test then
//! runs it over `fuzz/corpus/<name>/` (add `fuzz/fuzz_targets/<name>.rs` for cargo-fuzz too).

use crate::data::emoji::{class_names, parse_entries, EmojiOptions, DEFAULT_VENDORS};
use crate::data::sources::parse_cifar_batch;
use crate::io::fuzzing::{fuzz_gzip, fuzz_json, fuzz_npy, fuzz_safetensors, fuzz_tar};
use crate::io::json::parse_json;
use crate::io::npy::{to_npy_bytes, NpyArray, NpyData};
use crate::io::SafeTensors;
use crate::model::{Config, Model};
use crate::palette::files::preprocessor_config_json;
use crate::palette::files::{palette_from_bytes, preprocessor_config_from_bytes};
use crate::palette::image_io::{decode_image_rgb, decode_image_rgba};
use crate::palette::Palette;
use crate::tensor::Tensor;
use crate::train::checkpoint::{restore_state, state_to_safetensors, RunState};
use crate::train::{AdamW, AdamWConfig, TrainConfig};

/// A fuzz entry point: takes arbitrary bytes, returns whether the reader accepted them, and
/// panics only on a bug.
pub type FuzzFn = fn(&[u8]) -> bool;

/// Every fuzz target: its name (the corpus folder and cargo-fuzz binary) and entry point.
pub const TARGETS: &[(&str, FuzzFn)] = &[
    ("json", fuzz_json),
    ("npy", fuzz_npy),
    ("safetensors", fuzz_safetensors),
    ("config", fuzz_config),
    ("gzip", fuzz_gzip),
    ("tar", fuzz_tar),
    ("model_dir", fuzz_model_dir),
    ("palette", fuzz_palette),
    ("preprocessor_config", fuzz_preprocessor_config),
    ("cifar", fuzz_cifar),
    ("trainer_state", fuzz_trainer_state),
    ("image", fuzz_image),
    ("emoji_json", fuzz_emoji_json),
];

/// `config.json`: an accepted configuration is valid, and writing it and reading it back gives
/// the same configuration.
pub fn fuzz_config(data: &[u8]) -> bool {
    let Ok(json) = parse_json(data, "fuzz") else { return false };
    let Ok(config) = Config::from_json(&json, "fuzz") else { return false };
    config.validate("fuzz").expect("an accepted config must be valid");
    let again =
        Config::from_json(&config.to_json(), "fuzz (written)").expect("written config rejected");
    assert_eq!(again, config, "config round trip changed the value");
    true
}

/// The bits of every parameter, so that NaNs compare equal to themselves.
fn param_bits(params: &[Tensor<f32>]) -> Vec<(Vec<usize>, Vec<u32>)> {
    params
        .iter()
        .map(|p| (p.shape().to_vec(), p.data().iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// A model directory: the bytes of `config.json`, a NUL byte (which JSON text cannot hold),
/// then the bytes of `model.safetensors`, read by `Model::load`'s parser. An accepted model
/// saved and loaded again has the same configuration and the same parameters bit for bit.
pub fn fuzz_model_dir(data: &[u8]) -> bool {
    let Some(split) = data.iter().position(|&b| b == 0) else { return false };
    let (config, weights) = (&data[..split], &data[split + 1..]);
    let Ok(model) = Model::from_file_bytes(config, "config.json", weights, "model.safetensors")
    else {
        return false;
    };
    let config_text = model.config.to_json().to_compact().expect("writing a config failed");
    let weights = model.to_safetensors().and_then(|st| st.to_bytes()).expect("writing failed");
    let again = Model::from_file_bytes(config_text.as_bytes(), "c", &weights, "w")
        .expect("a saved model did not load");
    assert_eq!(again.config, model.config, "model config changed");
    assert_eq!(param_bits(&again.params), param_bits(&model.params), "parameters changed");
    true
}

/// A palette file (`.npy` or `preprocessor_config.json`, as `load_palette` reads it): an
/// accepted palette written both ways reads back the same (through f32 for `.npy`).
pub fn fuzz_palette(data: &[u8]) -> bool {
    let Ok(palette) = palette_from_bytes(data, "fuzz") else { return false };
    let as_f32: Vec<f64> = palette.colors_f32().iter().map(|&v| f64::from(v)).collect();
    let array = NpyArray::new(vec![palette.len(), 3], NpyData::F32(palette.colors_f32()))
        .and_then(|a| to_npy_bytes(&a))
        .expect("writing a palette .npy failed");
    let from_npy = palette_from_bytes(&array, "fuzz (.npy)").expect("written .npy rejected");
    assert_eq!(from_npy.colors(), as_f32.as_slice(), "palette .npy round trip");
    let json = preprocessor_config_json(&palette, 32, 32).to_pretty().expect("writing failed");
    let from_json = palette_from_bytes(json.as_bytes(), "fuzz (json)").expect("json rejected");
    assert_eq!(colour_bits(&from_json), colour_bits(&palette), "palette JSON round trip");
    true
}

fn colour_bits(palette: &Palette) -> Vec<u64> {
    palette.colors().iter().map(|v| v.to_bits()).collect()
}

/// `preprocessor_config.json`: an accepted config written as igpt writes it reads back with the
/// same palette (bit for bit) and the same size.
pub fn fuzz_preprocessor_config(data: &[u8]) -> bool {
    let Ok(config) = preprocessor_config_from_bytes(data, "fuzz") else { return false };
    let (w, h) = config.size.unwrap_or((1, 1));
    let json = preprocessor_config_json(&config.palette, w, h).to_pretty().expect("writing");
    let again = preprocessor_config_from_bytes(json.as_bytes(), "fuzz (written)")
        .expect("written preprocessor_config.json rejected");
    assert_eq!(colour_bits(&again.palette), colour_bits(&config.palette), "palette changed");
    assert_eq!(again.size, Some((w, h)), "size changed");
    true
}

/// A CIFAR-10 binary batch: every record's label is a class and its planar pixels come out
/// interleaved, nothing added or lost.
pub fn fuzz_cifar(data: &[u8]) -> bool {
    let Ok((labels, pixels)) = parse_cifar_batch(data, "fuzz") else { return false };
    let records: Vec<&[u8]> = data.chunks(1 + 3 * 1024).collect();
    assert_eq!((labels.len(), pixels.len()), (records.len(), records.len() * 3 * 1024));
    for ((record, &label), image) in records.iter().zip(&labels).zip(pixels.chunks(3 * 1024)) {
        assert!(label < 10 && u16::from(record[0]) == label, "label {label}");
        let (red, green, blue) = (&record[1..1025], &record[1025..2049], &record[2049..]);
        for (i, rgb) in image.chunks(3).enumerate() {
            assert_eq!(rgb, [red[i], green[i], blue[i]], "pixel {i}");
        }
    }
    true
}

/// The model whose `trainer_state.safetensors` the `trainer_state` target reads: 1 block of
/// width 4 over 2 colours and 4 positions (the seeds in `fuzz/corpus/trainer_state/` are its).
pub fn fuzz_state_model() -> Model {
    let mut config = Config::preset("digits").expect("the digits preset exists");
    (config.vocab_size, config.n_positions, config.n_embd, config.n_layer, config.n_head) =
        (3, 4, 4, 1, 1);
    config.n_inner = Some(8);
    Model::init(config, 0).expect("the fuzz state model is valid")
}

/// The training configuration recorded in the `trainer_state` target's seeds.
pub fn fuzz_state_train_config() -> String {
    TrainConfig::digits_default().to_json().expect("the digits recipe writes as JSON")
}

/// `trainer_state.safetensors`, restored by the resume's reader into [`fuzz_state_model`]: an
/// accepted state written and restored again is the same bit for bit.
pub fn fuzz_trainer_state(data: &[u8]) -> bool {
    let train_config = fuzz_state_train_config();
    let fresh = || {
        let model = fuzz_state_model();
        let opt = AdamW::new(AdamWConfig::default(), &model.params);
        RunState { model, opt, step: 0 }
    };
    let restore = |bytes: &[u8], name: &str| {
        let st = SafeTensors::parse(bytes, name)?;
        restore_state(&st, name, fresh(), &train_config)
    };
    let Ok(state) = restore(data, "fuzz") else { return false };
    let written = state_to_safetensors(&state, &train_config)
        .and_then(|st| st.to_bytes())
        .expect("writing a restored state failed");
    let again = restore(&written, "fuzz (written)").expect("a written state was refused");
    assert_eq!((again.step, again.opt.step), (state.step, state.opt.step), "steps changed");
    for (a, b) in [
        (&again.model.params, &state.model.params),
        (&again.opt.m, &state.opt.m),
        (&again.opt.v, &state.opt.v),
    ] {
        assert_eq!(param_bits(a), param_bits(b), "a restored tensor changed");
    }
    true
}

/// PNG/JPEG bytes through igpt's decoder (with its size limits), as RGB and as RGBA: both accept
/// or both refuse, they agree on the size and on every colour (RGBA adds alpha only), and the
/// RGB image survives a PNG round trip.
pub fn fuzz_image(data: &[u8]) -> bool {
    let (rgb, rgba) = (decode_image_rgb(data, "fuzz"), decode_image_rgba(data, "fuzz"));
    let (rgb, rgba) = match (rgb, rgba) {
        (Ok(rgb), Ok(rgba)) => (rgb, rgba),
        (Err(_), Err(_)) => return false,
        (rgb, rgba) => panic!("RGB {:?} but RGBA {:?}", rgb.err(), rgba.err()),
    };
    assert_eq!((rgba.width, rgba.height), (rgb.width, rgb.height), "sizes differ");
    assert_eq!(rgba.pixels.len(), rgb.pixels.len() * 4, "RGBA size");
    let without_alpha: Vec<[u8; 3]> = rgba.pixels.chunks(4).map(|p| [p[0], p[1], p[2]]).collect();
    assert!(without_alpha == rgb.pixels, "RGB and RGBA decodes differ in colour");
    let png = rgb.encode_png().expect("encoding a decoded image failed");
    assert_eq!(decode_image_rgb(&png, "fuzz (png)").expect("own PNG rejected"), rgb);
    true
}

/// The emoji package's `emoji.json`, read as the emoji data set reads it (default vendors):
/// every accepted entry is drawn by a vendor and not a `Component`, and its category is one of
/// the sorted, distinct class names.
pub fn fuzz_emoji_json(data: &[u8]) -> bool {
    let vendors = DEFAULT_VENDORS.map(String::from).to_vec();
    let opts = EmojiOptions { vendors, size: 16 };
    let Ok(entries) = parse_entries(data, "emoji.json", &opts) else { return false };
    let classes = class_names(&entries);
    assert!(!entries.is_empty() && classes.windows(2).all(|w| w[0] < w[1]), "{classes:?}");
    for e in &entries {
        assert!(e.category != "Component" && e.drawn_by.iter().any(|&d| d), "{}", e.unified);
        assert!(classes.contains(&e.category), "{} not a class", e.category);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_refuse_nothing_and_name_unique() {
        for (i, (name, target)) in TARGETS.iter().enumerate() {
            assert!(!target(b""), "{name} accepted nothing");
            assert!(TARGETS[..i].iter().all(|(other, _)| other != name), "{name} twice");
        }
    }

    #[test]
    fn a_saved_state_and_model_are_accepted() {
        let model = fuzz_state_model();
        let opt = AdamW::new(AdamWConfig::default(), &model.params);
        let state = RunState { model: model.clone(), opt, step: 3 };
        let st = state_to_safetensors(&state, &fuzz_state_train_config()).unwrap();
        assert!(fuzz_trainer_state(&st.to_bytes().unwrap()));
        let mut dir = model.config.to_json().to_compact().unwrap().into_bytes();
        dir.push(0);
        dir.extend(model.to_safetensors().unwrap().to_bytes().unwrap());
        assert!(fuzz_model_dir(&dir));
        assert!(!fuzz_model_dir(&dir[..dir.len() - 1]), "a truncated model accepted");
    }
}
