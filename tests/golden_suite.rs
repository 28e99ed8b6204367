//! The conformance suite (SPEC §13.4): written and verified whole, it passes against itself; a
//! perturbed candidate file fails on one line that names the file and the tensor, and a
//! missing one fails; the manifest covers the edges the suite promises; and the KV-cache decode
//! golden is what igpt's own decode kernel computes, the last row of the attention golden.

use igpt::golden::suite_verify::manifest_files;
use igpt::golden::{
    op_golden, suite_files, verify, write_suite, write_suite_with, FileOutcome, SuiteOptions,
    SuiteSize, Tolerance, MANIFEST,
};
use igpt::io::json::{read_json, Json};
use igpt::io::safetensors::SafeTensors;
use igpt::kernels::{KvCache, Precision, Simd};
use std::path::{Path, PathBuf};

mod common;
use common::{perturb, verify_recorded};

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igpt-suite-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Each file under the tolerance it records, as `igpt verify --suite` holds it by default.
fn recorded(reference: &SafeTensors, origin: &str) -> igpt::Result<Tolerance> {
    Tolerance::from_metadata(reference.get_metadata("tolerances"), origin)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn the_suite_verifies_against_itself_and_names_what_fails() {
    let dir = scratch("rt");
    let (reference, candidates) = (dir.join("suite"), dir.join("candidates"));
    let n = write_suite(&reference, 0).unwrap();
    let ok = verify_recorded(&reference, &reference);
    assert!(ok.passed(), "{}", ok.to_text());
    assert_eq!(ok.files.len(), n);
    // A 1e-2 error in one op golden's output and a missing model golden: those two fail, and
    // only those.
    copy_dir(&reference, &candidates);
    let (bad, gone) = ("op.linear.67x32x513.safetensors", "model.bert.quick_gelu.safetensors");
    perturb(&candidates.join(bad), "y", 1e-2);
    std::fs::remove_file(candidates.join(gone)).unwrap();
    let report = verify_recorded(&reference, &candidates);
    assert_eq!(report.failed(), 2, "{}", report.to_text());
    let text = report.to_text();
    let line = |file: &str| text.lines().find(|l| l.starts_with(file)).unwrap().to_string();
    assert!(line(bad).contains("FAIL: y (") && line(bad).contains("outside tolerance"), "{text}");
    assert!(line(gone).contains("FAIL: missing from the candidates"), "{text}");
    assert!(text.ends_with("files: 35 passed, 2 failed (1 missing)\n"), "{text}");
    let missing = report.files.iter().find(|f| f.file == gone).unwrap();
    assert!(matches!(missing.outcome, FileOutcome::Missing));
    // --json: the same verdicts, and the file's own single-file report embedded.
    let json = igpt::io::json::parse_json(report.to_json().unwrap().as_bytes(), "json").unwrap();
    assert_eq!(json.get("passed").and_then(Json::as_bool), Some(false));
    let files = json.get("files").and_then(Json::as_array).unwrap();
    let entry = files.iter().find(|f| f.get("file").and_then(Json::as_str) == Some(bad)).unwrap();
    assert_eq!(entry.get("result").and_then(Json::as_str), Some("fail"));
    let inner = entry.get("report").unwrap();
    assert_eq!(inner.get("passed").and_then(Json::as_bool), Some(false));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The manifest lists every file with the precision and class the file records, and the
/// suite covers the edges SPEC §13.4 promises.
#[test]
fn the_manifest_describes_every_file_and_covers_the_edges() {
    let dir = scratch("manifest");
    write_suite(&dir, 5).unwrap();
    let manifest = read_json(&dir.join(MANIFEST)).unwrap();
    let files = manifest.get("files").and_then(Json::as_array).unwrap();
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files.len() + 1, on_disk);
    let text = |f: &Json, k: &str| f.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
    for f in files {
        let st = SafeTensors::read(&dir.join(text(f, "file"))).unwrap();
        assert_eq!(st.get_metadata("precision"), Some(text(f, "precision").as_str()));
        let class = f.get("tolerance").and_then(|t| t.get("class")).and_then(Json::as_str);
        let expected = match (text(f, "kind").as_str(), text(f, "precision").as_str()) {
            ("model", "bf16") => "bf16-model".to_string(),
            (_, precision) => precision.to_string(),
        };
        assert_eq!(class, Some(expected.as_str()));
        assert_eq!(text(f, "seed"), "5");
        assert!(!text(f, "covers").is_empty());
    }
    // An op file is the very golden `igpt golden --op` writes for its parameters.
    let file = dir.join("op.attention.1x2x67x32.safetensors");
    let alone = op_golden("attention", &[1, 2, 67, 32], 5, Precision::F32).unwrap();
    assert_eq!(std::fs::read(file).unwrap(), alone.to_bytes().unwrap());
    let shapes = |op: &str| -> Vec<Vec<usize>> {
        let of = files.iter().filter(|f| text(f, "op") == op);
        of.map(|f| f.get("shape").and_then(Json::as_array).unwrap().iter())
            .map(|s| s.map(|x| x.as_usize().unwrap()).collect())
            .collect()
    };
    for op in ["attention", "attention_bidirectional", "decode"] {
        let s = shapes(op);
        assert!(s.iter().any(|s| s[2] == 1), "{op}: T = 1");
        assert!(s.iter().any(|s| s[2] % 64 != 0 && s[2] > 64), "{op}: T past a tile");
        assert!(s.iter().any(|s| s[0] * s[1] == 1), "{op}: B·H = 1");
        for hd in [32, 64, 80, 128] {
            assert!(s.iter().any(|s| s[3] == hd), "{op}: head dim {hd}");
        }
    }
    for op in ["cross_entropy", "embedding", "sample"] {
        assert!(shapes(op).iter().any(|s| s.contains(&513)), "{op}: V = 513");
    }
    for op in ["linear", "norm", "quick_gelu", "gelu_tanh", "cross_entropy", "sample"] {
        assert!(shapes(op).iter().any(|s| s[0] == 1), "{op}: N = 1");
    }
    let models: Vec<(String, String)> = files
        .iter()
        .filter(|f| text(f, "kind") == "model")
        .map(|f| (text(f, "objective"), text(f, "activation")))
        .collect();
    for objective in ["hf_shifted", "autoregressive", "bert", "classification"] {
        assert!(models.iter().any(|(o, _)| o == objective), "{objective}");
    }
    for activation in ["quick_gelu", "gelu_tanh"] {
        assert!(models.iter().any(|(_, a)| a == activation), "{activation}");
    }
    let bf16 = files.iter().filter(|f| text(f, "precision") == "bf16");
    let kinds: Vec<String> = bf16.map(|f| text(f, "kind")).collect();
    assert!(kinds.contains(&"op".into()) && kinds.contains(&"model".into()), "{kinds:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--small` and `--only` (SPEC §13.4): the manifest lists exactly the files a prefix selects
/// (`op.attention` also selects `op.attention_bidirectional`), only they are written and
/// `verify --suite` checks exactly them; a prefix that names no file is an error before
/// anything is written. The small suite's op files are `igpt golden --op`'s, and it has every
/// op kind, both bf16 products and every model case of the full suite.
#[test]
fn small_and_only_select_the_files_the_manifest_lists() {
    let dir = scratch("only");
    let only = vec!["op.attention".to_string(), "model.bert".to_string()];
    let opts = SuiteOptions { seed: 1, size: SuiteSize::Small, only: only.clone() };
    let n = write_suite_with(&dir.join("suite"), &opts).unwrap();
    let listed = manifest_files(&dir.join("suite")).unwrap();
    let all = suite_files(SuiteSize::Small);
    let selected: Vec<String> =
        all.iter().filter(|f| only.iter().any(|p| f.starts_with(p.as_str()))).cloned().collect();
    assert_eq!(listed, selected);
    assert_eq!(n, listed.len());
    assert!(listed.contains(&"op.attention_bidirectional.1x2x9x16.safetensors".to_string()));
    assert!(listed.contains(&"model.bert.quick_gelu.safetensors".to_string()));
    assert_eq!(std::fs::read_dir(dir.join("suite")).unwrap().count(), n + 1);
    let manifest = read_json(&dir.join("suite").join(MANIFEST)).unwrap();
    assert_eq!(manifest.get("size").and_then(Json::as_str), Some("small"));
    let recorded: Vec<&str> = manifest
        .get("only")
        .and_then(Json::as_array)
        .unwrap()
        .iter()
        .flat_map(Json::as_str)
        .collect();
    assert_eq!(recorded, ["op.attention", "model.bert"]);
    let ok = verify_recorded(&dir.join("suite"), &dir.join("suite"));
    assert!(ok.passed() && ok.files.len() == n, "{}", ok.to_text());
    let file = dir.join("suite").join("op.attention.1x1x67x16.bf16.safetensors");
    let alone = op_golden("attention", &[1, 1, 67, 16], 1, Precision::Bf16).unwrap();
    assert_eq!(std::fs::read(file).unwrap(), alone.to_bytes().unwrap());

    let bad = SuiteOptions { only: vec!["op.softmax".into()], ..opts };
    let err = write_suite_with(&dir.join("bad"), &bad).unwrap_err().to_string();
    assert!(err.contains("\"op.softmax\" names no file of the small suite"), "{err}");
    assert!(!dir.join("bad").exists());

    let stems = |size: SuiteSize| -> Vec<String> {
        let mut kinds: Vec<String> = suite_files(size)
            .iter()
            .map(|f| {
                let parts: Vec<&str> = f.split('.').collect();
                let bf16 = if f.ends_with(".bf16.safetensors") { ".bf16" } else { "" };
                match parts[0] {
                    "op" => format!("op.{}{bf16}", parts[1]),
                    _ => f.trim_end_matches(".safetensors").to_string(),
                }
            })
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    };
    assert_eq!(stems(SuiteSize::Small), stems(SuiteSize::Full));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// igpt's KV-cache decode kernel (SPEC §18.7), fed the golden's first `T − 1` rows as the
/// cache and its last as the new token, passes the decode golden; and the golden's `y` is,
/// bit for bit, the last row of the attention golden of the same shape and seed.
#[test]
fn the_decode_golden_is_the_kv_cache_step_and_the_last_attention_row() {
    for shape in [[2, 2, 1, 64], [1, 2, 67, 32], [1, 1, 129, 80], [2, 1, 33, 128]] {
        let [b, h, t, hd] = shape;
        let d = h * hd;
        let golden = op_golden("decode", &shape, 9, Precision::F32).unwrap();
        let (qkv_shape, qkv) = golden.get_f32("qkv").unwrap();
        assert_eq!(qkv_shape, [b, t, 3 * d]);
        let mut cache = KvCache::new(b, h, hd, t).unwrap();
        let row = |i: usize| -> Vec<f32> {
            (0..b).flat_map(|s| qkv[(s * t + i) * 3 * d..][..3 * d].to_vec()).collect()
        };
        for i in 0..t - 1 {
            cache.append(&row(i)).unwrap();
        }
        let mut y = vec![0.0; b * d];
        cache.decode_step(&Simd, &row(t - 1), &mut y).unwrap();
        let mut candidate = SafeTensors::new();
        candidate.push("qkv", golden.get("qkv").unwrap().clone()).unwrap();
        candidate.push_f32("y", &[b, d], &y).unwrap();
        let report = verify(&golden, &candidate, &recorded(&golden, "decode").unwrap());
        assert!(report.passed(), "{shape:?}\n{}", report.to_text());

        let attention = op_golden("attention", &shape, 9, Precision::F32).unwrap();
        let (_, o) = attention.get_f32("y").unwrap();
        let last: Vec<f32> = o.chunks(t * d).flat_map(|s| s[(t - 1) * d..].to_vec()).collect();
        assert_eq!(golden.get_f32("y").unwrap().1, last, "{shape:?}");
    }
}
