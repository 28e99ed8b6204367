//! Readers of the scikit-learn reference figures (`tests/fixtures/make_sklearn_fixtures.py`,
//! written to `tests/fixtures/sklearn/`), shared by the library and CLI tests.
#![allow(dead_code)]

use igpt::io::json::{read_json, Json};
use igpt::io::npy::{read_npy, NpyData};
use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn read(name: &str) -> Json {
    read_json(&fixture(&format!("sklearn/{name}"))).unwrap()
}

/// `json[key]`, which must be present.
pub fn field<'a>(json: &'a Json, key: &str) -> &'a Json {
    json.get(key).unwrap_or_else(|| panic!("the fixture has no '{key}'"))
}

pub fn f64_of(json: &Json, key: &str) -> f64 {
    field(json, key).as_f64().unwrap()
}

/// A JSON array of numbers (or of arrays of numbers, flattened row after row).
pub fn numbers(json: &Json) -> Vec<f64> {
    json.as_array()
        .unwrap()
        .iter()
        .flat_map(|v| match v.as_array() {
            Some(_) => numbers(v),
            None => vec![v.as_f64().unwrap()],
        })
        .collect()
}

/// The RGB bytes scikit-learn's k-means clustered: `palette/resized.npy` (the 8 palette test
/// images at 32×32), 8192 pixels in row order.
pub fn kmeans_pixels() -> Vec<u8> {
    match read_npy(&fixture("palette/resized.npy")).unwrap().data {
        NpyData::U8(v) => v,
        other => panic!("resized.npy: expected uint8, got {}", other.dtype_name()),
    }
}

/// One scikit-learn `KMeans` fit of `kmeans.json`.
pub struct KMeansFit {
    pub k: usize,
    pub seed: u64,
    pub inertia: f64,
}

pub fn kmeans_fits() -> Vec<KMeansFit> {
    let json = read("kmeans.json");
    let fits = field(&json, "fits").as_array().unwrap();
    fits.iter()
        .map(|f| KMeansFit {
            k: field(f, "k").as_usize().unwrap(),
            seed: field(f, "random_state").as_usize().unwrap() as u64,
            inertia: f64_of(f, "inertia"),
        })
        .collect()
}
