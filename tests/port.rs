//! The worked port (`tests/fixtures/port/`): `igpt_port.py`, a PyTorch implementation written
//! from SPEC.md alone, ran once on the small conformance suite (`igpt golden --suite DIR --small
//! --seed 0`, SPEC §13.4) and its candidate files are committed. Here igpt writes that suite
//! again (no PyTorch needed) and the committed candidates must pass `verify --suite` against it:
//! if igpt's numbers move past SPEC §7.1's tolerance, or SPEC's definitions stop describing
//! them, this fails. A candidate tensor off by 1e-3 relative must fail, on its own file only.

use igpt::golden::{write_suite_with, SuiteOptions};
use std::path::{Path, PathBuf};

mod common;
use common::{perturb, verify_recorded};

/// The committed candidates of the port, one per file of the small suite.
fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/port/candidates")
}

/// A fresh scratch directory holding the small suite of seed 0.
fn small_suite(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igpt-port-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_suite_with(&dir.join("suite"), &SuiteOptions::small(0)).unwrap();
    dir
}

#[test]
fn the_ports_committed_candidates_pass_the_small_suite() {
    let dir = small_suite("pass");
    let report = verify_recorded(&dir.join("suite"), &committed());
    assert!(report.passed(), "{}", report.to_text());
    // Every committed file is one the suite lists (nothing stale is carried along), and the
    // suite covers every op kind, both bf16 products and every model case.
    let listed: Vec<&str> = report.files.iter().map(|f| f.file.as_str()).collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(committed())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(on_disk, sorted);
    for kind in [
        "op.linear.",
        "op.norm.",
        "op.quick_gelu.",
        "op.gelu_tanh.",
        "op.attention.",
        "op.attention_bidirectional.",
        "op.cross_entropy.",
        "op.embedding.",
        "op.sample.",
        "op.decode.",
        "model.hf_shifted.",
        "model.autoregressive.",
        "model.bert.",
        "model.classification.",
    ] {
        assert!(listed.iter().any(|f| f.starts_with(kind)), "{kind}");
    }
    for bf16 in ["op.linear.", "op.attention.", "model."] {
        let hit = listed.iter().any(|f| f.starts_with(bf16) && f.ends_with(".bf16.safetensors"));
        assert!(hit, "bf16 {bf16}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One f32 gradient of one model candidate scaled by 1 + 1e-3 (ten times the f32 class at its
/// largest entry): that file fails, naming the tensor, and every other file still passes.
#[test]
fn a_committed_candidate_off_by_1e_3_fails() {
    let dir = small_suite("perturbed");
    let candidates = dir.join("candidates");
    std::fs::create_dir_all(&candidates).unwrap();
    for e in std::fs::read_dir(committed()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), candidates.join(e.file_name())).unwrap();
    }
    let (file, name) =
        ("model.autoregressive.quick_gelu.safetensors", "grad.transformer.h.1.mlp.c_fc.weight");
    let path = candidates.join(file);
    perturb(&path, name, 1e-3);

    let report = verify_recorded(&dir.join("suite"), &candidates);
    assert_eq!(report.failed(), 1, "{}", report.to_text());
    let bad = report.files.iter().find(|f| !f.passed()).unwrap();
    assert_eq!(bad.file, file);
    let why = bad.failure().unwrap();
    assert!(why.starts_with(name) && why.contains("outside tolerance"), "{why}");
    std::fs::remove_dir_all(&dir).unwrap();
}
