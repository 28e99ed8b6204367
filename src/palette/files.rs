//! Palette files: OpenAI's `.npy` and HuggingFace's `preprocessor_config.json`, plus pixel dumps.
//!
//! Two formats carry the same `K × 3` palette in [-1, 1] RGB space:
//!
//! - **`.npy`** (OpenAI's `kmeans_centers.npy`): shape `(K, 3)`, float32. igpt also reads
//!   float64 and `(K, 1)` grey palettes (replicated to R = G = B) and always writes float32
//!   `(K, 3)` — so a palette with values that are not f32-exact loses precision in this format.
//! - **`preprocessor_config.json`** (the HF hub's `ImageGPTImageProcessor` config): the palette is
//!   the `clusters` list of `[r, g, b]` numbers, read as f64 (as Python does). igpt writes what
//!   transformers 5.x's `save_pretrained` writes:
//!   ```text
//!   {"clusters": [[r, g, b], …], "do_color_quantize": true, "do_normalize": true,
//!    "do_rescale": true, "do_resize": true, "image_mean": [0.5, 0.5, 0.5],
//!    "image_processor_type": "ImageGPTImageProcessor", "image_std": [0.5, 0.5, 0.5],
//!    "resample": 2, "rescale_factor": 0.00392156862745098, "size": {"height": H, "width": W}}
//!   ```
//!   Numbers are written in shortest round-trip form, so Python reads back the exact f64 values
//!   (for a palette from f32, the exact f32 values). Older hub files (`"size": 32`,
//!   `feature_extractor_type`) are read too. Settings igpt does not implement — another resample
//!   filter, other mean/std or rescale factor, rescale or normalisation switched off — are errors,
//!   not silently ignored.
//!
//! [`load_palette`] tells the formats apart by content (the `.npy` magic bytes or a JSON object).
//!
//! Pixel dumps for `palette fit --pixels`: `.npy` `(N, 3)` or `(N, 1)`, float32/float64 in
//! [-1, 1], or uint8 levels 0..255 (mapped like [`super::pixel_to_unit`]).

use super::quantize::{unit_table, Palette};
use crate::error::{Error, Result};
use crate::io::json::{parse_json, write_json, Json};
use crate::io::npy::{parse_npy, write_npy, NpyArray, NpyData, MAGIC};
use crate::io::read_bytes;
use std::path::Path;

/// `rescale_factor` of the HF processor: 1/255.
const RESCALE_FACTOR: f64 = 1.0 / 255.0;
/// `ImageGPTImageProcessor`'s default `size` (height and width) when a config has none.
const HF_DEFAULT_SIZE: usize = 256;
/// Pillow's `Image.BILINEAR`, HF's `resample` code for it.
const RESAMPLE_BILINEAR: usize = 2;

/// What igpt uses from a `preprocessor_config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessorConfig {
    pub palette: Palette,
    /// Resize target `(width, height)`; None when `do_resize` is false.
    pub size: Option<(usize, usize)>,
}

/// Reads a palette from a `.npy` file or a `preprocessor_config.json` (detected by content).
pub fn load_palette(path: &Path) -> Result<Palette> {
    palette_from_bytes(&read_bytes(path)?, &path.display().to_string())
}

/// Parses the contents of a palette file, `.npy` or `preprocessor_config.json` (detected by
/// content); `name` is used in errors.
pub fn palette_from_bytes(bytes: &[u8], name: &str) -> Result<Palette> {
    if bytes.starts_with(MAGIC) {
        palette_from_npy(bytes, name)
    } else if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        Ok(preprocessor_config_from_bytes(bytes, name)?.palette)
    } else {
        Err(Error::format(name, "neither a .npy file nor a preprocessor_config.json"))
    }
}

/// Parses `.npy` bytes as a palette: `(K, 3)` or `(K, 1)`, float32 or float64.
pub fn palette_from_npy(bytes: &[u8], name: &str) -> Result<Palette> {
    let array = parse_npy(bytes, name)?;
    let channels = match array.shape.as_slice() {
        [k, c @ (1 | 3)] if *k > 0 => *c,
        shape => {
            return Err(Error::format(
                name,
                format!("palette shape {shape:?}: expected (K, 3) RGB or (K, 1) grey with K ≥ 1"),
            ))
        }
    };
    let values: Vec<f64> = match &array.data {
        NpyData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        NpyData::F64(v) => v.clone(),
        other => {
            return Err(Error::format(
                name,
                format!("palette dtype {}: expected float32 or float64", other.dtype_name()),
            ))
        }
    };
    let rgb = if channels == 3 { values } else { values.iter().flat_map(|&v| [v; 3]).collect() };
    Palette::new(rgb).map_err(|e| Error::format(name, e.to_string()))
}

/// Writes the palette as `.npy` float32 `(K, 3)` (atomically).
pub fn save_palette_npy(palette: &Palette, path: &Path) -> Result<()> {
    let array = NpyArray::new(vec![palette.len(), 3], NpyData::F32(palette.colors_f32()))?;
    write_npy(path, &array)
}

/// Reads a `preprocessor_config.json`.
pub fn read_preprocessor_config(path: &Path) -> Result<PreprocessorConfig> {
    preprocessor_config_from_bytes(&read_bytes(path)?, &path.display().to_string())
}

/// Parses a `preprocessor_config.json` (see the module doc for what is accepted).
pub fn preprocessor_config_from_bytes(bytes: &[u8], name: &str) -> Result<PreprocessorConfig> {
    let json = parse_json(bytes, name)?;
    let bad = |msg: String| Error::format(name, msg);
    if json.as_object().is_none() {
        return Err(bad("expected a JSON object".into()));
    }
    let clusters = json.get("clusters").ok_or_else(|| {
        bad("no \"clusters\" (the palette) in this image processor config".into())
    })?;
    let palette = clusters_to_palette(clusters).map_err(bad)?;
    check_supported(&json).map_err(bad)?;
    let size = if flag(&json, "do_resize").map_err(bad)? {
        Some(read_size(&json).map_err(bad)?)
    } else {
        None
    };
    Ok(PreprocessorConfig { palette, size })
}

/// `clusters`: a non-empty list of `[r, g, b]` (or `[v]` grey) number lists.
fn clusters_to_palette(clusters: &Json) -> std::result::Result<Palette, String> {
    let rows = clusters.as_array().filter(|r| !r.is_empty());
    let rows = rows.ok_or("\"clusters\" must be a non-empty list of [r, g, b] lists")?;
    let mut values = Vec::with_capacity(rows.len() * 3);
    for (i, row) in rows.iter().enumerate() {
        let numbers: Option<Vec<f64>> =
            row.as_array().map(|r| r.iter().map(Json::as_f64).collect()).unwrap_or(None);
        match numbers.as_deref() {
            Some([r, g, b]) => values.extend([*r, *g, *b]),
            Some([v]) => values.extend([*v; 3]),
            _ => return Err(format!("clusters[{i}] is not a list of 3 numbers")),
        }
    }
    Palette::new(values).map_err(|e| e.to_string())
}

/// A boolean setting, true when absent (the processor's defaults are all true).
fn flag(json: &Json, key: &str) -> std::result::Result<bool, String> {
    match json.get(key) {
        None => Ok(true),
        Some(v) => v.as_bool().ok_or(format!("\"{key}\" must be true or false")),
    }
}

/// Rejects settings under which HF's tokens would not be what igpt computes.
fn check_supported(json: &Json) -> std::result::Result<(), String> {
    for key in ["do_rescale", "do_normalize", "do_color_quantize"] {
        if !flag(json, key)? {
            return Err(format!("\"{key}\": false is not supported (igpt quantizes x/127.5 − 1)"));
        }
    }
    if let Some(r) = json.get("resample") {
        if r.as_usize() != Some(RESAMPLE_BILINEAR) {
            return Err(format!("\"resample\": only 2 (bilinear) is supported, got {r:?}"));
        }
    }
    if let Some(f) = json.get("rescale_factor") {
        if f.as_f64() != Some(RESCALE_FACTOR) {
            return Err(format!("\"rescale_factor\": only 1/255 is supported, got {f:?}"));
        }
    }
    for key in ["image_mean", "image_std"] {
        if let Some(v) = json.get(key) {
            let halves = match v {
                Json::Number(x) => *x == 0.5,
                Json::Array(a) => a.iter().all(|x| x.as_f64() == Some(0.5)),
                _ => false,
            };
            if !halves {
                return Err(format!("\"{key}\": only 0.5 per channel is supported"));
            }
        }
    }
    Ok(())
}

/// `size`: `{"height": H, "width": W}`, or a single number (older hub files) for a square;
/// absent means the processor's default, 256 × 256.
fn read_size(json: &Json) -> std::result::Result<(usize, usize), String> {
    let positive = |v: Option<&Json>| v.and_then(Json::as_usize).filter(|&s| s > 0);
    let Some(size) = json.get("size") else {
        return Ok((HF_DEFAULT_SIZE, HF_DEFAULT_SIZE));
    };
    if let Some(s) = positive(Some(size)) {
        return Ok((s, s));
    }
    match (positive(size.get("width")), positive(size.get("height"))) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err("\"size\" must be a positive integer or {\"height\": H, \"width\": W}".into()),
    }
}

/// Writes a `preprocessor_config.json` that transformers loads as an `ImageGPTImageProcessor`
/// with this palette and resize target `(width, height)` (atomically).
pub fn save_preprocessor_config(
    palette: &Palette,
    width: usize,
    height: usize,
    path: &Path,
) -> Result<()> {
    write_json(path, &preprocessor_config_json(palette, width, height))
}

/// The JSON of [`save_preprocessor_config`]; keys in the sorted order transformers writes.
pub fn preprocessor_config_json(palette: &Palette, width: usize, height: usize) -> Json {
    let clusters = palette
        .colors()
        .chunks_exact(3)
        .map(|c| Json::Array(c.iter().map(|&v| Json::Number(v)).collect()))
        .collect();
    let halves = || Json::Array(vec![Json::Number(0.5); 3]);
    let member = |k: &str, v: Json| (k.to_string(), v);
    Json::Object(vec![
        member("clusters", Json::Array(clusters)),
        member("do_color_quantize", true.into()),
        member("do_normalize", true.into()),
        member("do_rescale", true.into()),
        member("do_resize", true.into()),
        member("image_mean", halves()),
        member("image_processor_type", "ImageGPTImageProcessor".into()),
        member("image_std", halves()),
        member("resample", RESAMPLE_BILINEAR.into()),
        member("rescale_factor", RESCALE_FACTOR.into()),
        member(
            "size",
            Json::Object(vec![member("height", height.into()), member("width", width.into())]),
        ),
    ])
}

/// Reads pixels for k-means from `.npy`: returns `(values, channels)`, values row-major `N × C`
/// in [-1, 1] (see the module doc for the accepted shapes and dtypes).
pub fn load_pixels_npy(path: &Path) -> Result<(Vec<f32>, usize)> {
    let name = path.display().to_string();
    let array = parse_npy(&read_bytes(path)?, &name)?;
    let channels = match array.shape.as_slice() {
        [n, c @ (1 | 3)] if *n > 0 => *c,
        shape => {
            return Err(Error::format(
                &name,
                format!("pixel array shape {shape:?}: expected (N, 3) RGB or (N, 1) grey, N ≥ 1"),
            ))
        }
    };
    let values: Vec<f32> = match array.data {
        NpyData::F32(v) => v,
        NpyData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        NpyData::U8(v) => {
            let table = unit_table();
            v.iter().map(|&p| table[usize::from(p)]).collect()
        }
        other => {
            return Err(Error::format(
                &name,
                format!("pixel dtype {}: expected float32, float64 or uint8", other.dtype_name()),
            ))
        }
    };
    if let Some(i) = values.iter().position(|v| v.is_nan() || v.abs() > 1.0) {
        return Err(Error::format(
            &name,
            format!(
                "pixel {} has the value {}; float pixels must lie in [-1, 1] (uint8 for 0..255)",
                i / channels,
                values[i]
            ),
        ));
    }
    Ok((values, channels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::npy::to_npy_bytes;

    fn npy(shape: Vec<usize>, data: NpyData) -> Vec<u8> {
        to_npy_bytes(&NpyArray::new(shape, data).unwrap()).unwrap()
    }

    #[test]
    fn npy_palettes_of_every_accepted_kind() {
        let f32s = npy(vec![2, 3], NpyData::F32(vec![0.1, 0.2, 0.3, -1.0, 0.0, 1.0]));
        let p = palette_from_npy(&f32s, "p.npy").unwrap();
        assert_eq!(p.colors()[0], f64::from(0.1f32));
        let f64s = npy(vec![1, 3], NpyData::F64(vec![0.1, 0.2, 0.3]));
        assert_eq!(palette_from_npy(&f64s, "p.npy").unwrap().colors(), &[0.1, 0.2, 0.3]);
        let grey = npy(vec![2, 1], NpyData::F32(vec![0.5, -0.5]));
        assert_eq!(
            palette_from_npy(&grey, "p.npy").unwrap().colors(),
            &[0.5, 0.5, 0.5, -0.5, -0.5, -0.5]
        );
    }

    #[test]
    fn bad_npy_palettes_name_the_problem() {
        let err = |b: Vec<u8>| palette_from_npy(&b, "bad.npy").unwrap_err().to_string();
        assert!(err(npy(vec![2, 4], NpyData::F32(vec![0.0; 8]))).contains("(K, 3)"));
        assert!(err(npy(vec![0, 3], NpyData::F32(vec![]))).contains("K ≥ 1"));
        assert!(err(npy(vec![6], NpyData::F32(vec![0.0; 6]))).contains("[6]"));
        assert!(err(npy(vec![1, 3], NpyData::I32(vec![0; 3]))).contains("int32"));
        assert!(err(npy(vec![1, 3], NpyData::F32(vec![0.0, 255.0, 0.0]))).contains("0..255"));
        assert!(err(npy(vec![1, 3], NpyData::F32(vec![0.0, f32::NAN, 0.0]))).contains("finite"));
        assert!(err(b"\x93NUMPY".to_vec()).starts_with("bad.npy"));
    }

    #[test]
    fn config_round_trips_and_old_hub_format_reads() {
        let p = Palette::from_centers(&[0.1, -0.25, 1.0, 0.3, 0.0, -1.0], 3).unwrap();
        let text = preprocessor_config_json(&p, 32, 24).to_pretty().unwrap();
        let back = preprocessor_config_from_bytes(text.as_bytes(), "c.json").unwrap();
        assert_eq!(back.palette, p);
        assert_eq!(back.size, Some((32, 24)));
        let old = br#"{"clusters": [[0.5, 0.5, 0.5]], "do_normalize": true, "do_resize": true,
            "feature_extractor_type": "ImageGPTFeatureExtractor", "resample": 2, "size": 32}"#;
        let cfg = preprocessor_config_from_bytes(old, "old.json").unwrap();
        assert_eq!(cfg.size, Some((32, 32)));
        let minimal = br#"{"clusters": [[0.5, 0.5, 0.5]]}"#;
        assert_eq!(
            preprocessor_config_from_bytes(minimal, "m.json").unwrap().size,
            Some((256, 256))
        );
        let no_resize = br#"{"clusters": [[0.5]], "do_resize": false}"#;
        let cfg = preprocessor_config_from_bytes(no_resize, "g.json").unwrap();
        assert_eq!((cfg.size, cfg.palette.colors()), (None, &[0.5, 0.5, 0.5][..]));
    }

    #[test]
    fn unsupported_configs_are_errors() {
        let err = |s: &str| {
            preprocessor_config_from_bytes(s.as_bytes(), "c.json").unwrap_err().to_string()
        };
        assert!(err(r#"{"size": 32}"#).contains("clusters"));
        assert!(err(r#"{"clusters": []}"#).contains("non-empty"));
        assert!(err(r#"{"clusters": [[0, 0]]}"#).contains("clusters[0]"));
        assert!(err(r#"{"clusters": [[0, 0, 0]], "resample": 3}"#).contains("bilinear"));
        assert!(err(r#"{"clusters": [[0, 0, 0]], "do_normalize": false}"#).contains("do_normalize"));
        assert!(
            err(r#"{"clusters": [[0, 0, 0]], "image_std": [0.2, 0.2, 0.2]}"#).contains("image_std")
        );
        assert!(
            err(r#"{"clusters": [[0, 0, 0]], "size": {"height": 0, "width": 3}}"#).contains("size")
        );
        assert!(err("[1]").contains("object"));
    }
}
