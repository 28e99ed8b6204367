//! The `igpt` command end to end: exit statuses (2 for every usage error, 1 for failed work, on
//! every command), memory admission, one-line usage errors, the model / golden workflow
//! (init → golden → verify), and the values `palette fit`, `probe` and `finetune` print, against
//! the library calls they stand for and scikit-learn's figures.

use igpt::data::ImageSet;
use igpt::io::json::{parse_json, Json};
use igpt::model::{shift_right_with_sos, Model, TokenBatch};
use igpt::probe::{extract_features, pixel_features, probe, FeatureOptions, ProbeOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "common/sklearn.rs"]
mod sklearn;

fn igpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_igpt")).args(args).output().expect("run igpt")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igpt-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [
        vec!["bench", "sgemm", "--bogus"],
        vec!["bench", "sgemm", "--reps"],
        vec!["bench", "sgemm", "--reps", "many"],
        vec!["golden", "--out", "x.st", "--op", "linear", "--shape", "2,x"],
        vec!["init", "--out", "x"],
        vec!["nonsense"],
        vec![],
    ] {
        let o = igpt(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        if !args.is_empty() {
            assert_eq!(stderr(&o).trim().lines().count(), 1, "{args:?}: {}", stderr(&o));
        }
    }
}

#[test]
fn help_exits_0_for_every_command() {
    for cmd in ["init", "forward", "golden", "verify", "bench"] {
        let o = igpt(&[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{cmd}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("--"), "{cmd}");
    }
    assert_eq!(igpt(&["--help"]).status.code(), Some(0));
}

#[test]
fn bad_files_exit_1_and_name_the_file() {
    let dir = scratch("badfiles");
    let junk = dir.join("junk.npy");
    std::fs::write(&junk, b"not a numpy file").unwrap();
    let model = dir.join("m");
    assert!(igpt(&["init", "--config", "digits", "--out", s(&model)]).status.success());
    let o = igpt(&[
        "forward",
        "--model",
        s(&model),
        "--tokens",
        s(&junk),
        "--out",
        s(&dir.join("o.st")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("junk.npy"), "{}", stderr(&o));
    let o =
        igpt(&["forward", "--model", s(&dir.join("missing")), "--tokens", s(&junk), "--out", "o"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
    let o = igpt(&["init", "--config", "igpt-zz", "--out", s(&model)]);
    assert_eq!(o.status.code(), Some(2), "an unknown preset is a usage error");
    assert!(stderr(&o).contains("unknown config preset"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `golden --suite` and `verify --suite`: exit 0 against itself, 1 with a missing file (named
/// on its line of the table, counted in the JSON).
#[test]
fn golden_suite_verify_suite_round_trip() {
    let dir = scratch("suite");
    let (suite, candidates) = (dir.join("suite"), dir.join("candidates"));
    let o = igpt(&["golden", "--suite", s(&suite), "--seed", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let verify = |extra: &[&str]| {
        let args = ["verify", "--suite", s(&suite), "--candidates", s(&candidates)];
        igpt(&[&args[..], extra].concat())
    };
    std::fs::create_dir_all(&candidates).unwrap();
    for e in std::fs::read_dir(&suite).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), candidates.join(e.file_name())).unwrap();
    }
    let o = verify(&[]);
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let gone = "op.decode.2x2x1x64.safetensors";
    std::fs::remove_file(candidates.join(gone)).unwrap();
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(1));
    let table = String::from_utf8_lossy(&o.stdout);
    let line = table.lines().find(|l| l.starts_with(gone)).unwrap();
    assert!(line.contains("FAIL: missing from the candidates"), "{table}");
    let o = verify(&["--json"]);
    assert_eq!(o.status.code(), Some(1));
    let json = parse_json(&o.stdout, "verify --suite --json").unwrap();
    let counts = json.get("counts").unwrap();
    assert_eq!(counts.get("missing").and_then(Json::as_usize), Some(1), "{counts:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `golden --suite DIR --small --only P`: just the selected files and the manifest listing them.
#[test]
fn golden_suite_small_only_writes_the_selected_files() {
    let dir = scratch("suite-only");
    let o = igpt(&["golden", "--suite", s(&dir), "--small", "--only", "op.decode,op.sample"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let want = [
        "manifest.json",
        "op.decode.1x2x9x16.safetensors",
        "op.decode.2x1x1x8.safetensors",
        "op.sample.8x33.safetensors",
    ];
    assert_eq!(names, want);
    let o = igpt(&["verify", "--suite", s(&dir), "--candidates", s(&dir)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("3 files: 3 passed"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_golden_verify_round_trip() {
    let dir = scratch("golden");
    let model = dir.join("m");
    let golden = dir.join("g.safetensors");
    let init = ["init", "--config", "digits", "--seed", "3", "--init", "random"];
    assert!(igpt(&[&init[..], &["--out", s(&model)]].concat()).status.success());
    let o = igpt(&[
        "golden",
        "--model",
        s(&model),
        "--batch",
        "2",
        "--seq",
        "16",
        "--steps",
        "2",
        "--out",
        s(&golden),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A golden file verifies against itself ...
    let o = igpt(&["verify", "--reference", s(&golden), "--candidate", s(&golden)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // ... and against one made from a differently initialised model it fails with exit 1.
    let other = dir.join("other");
    let golden2 = dir.join("g2.safetensors");
    assert!(igpt(&[
        "init",
        "--config",
        "digits",
        "--seed",
        "4",
        "--init",
        "random",
        "--out",
        s(&other)
    ])
    .status
    .success());
    assert!(igpt(&[
        "golden",
        "--model",
        s(&other),
        "--batch",
        "2",
        "--seq",
        "16",
        "--out",
        s(&golden2)
    ])
    .status
    .success());
    let o = igpt(&["verify", "--reference", s(&golden), "--candidate", s(&golden2)]);
    assert_eq!(o.status.code(), Some(1));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("FAIL: missing from the candidate"), "{table}");
    assert!(table.contains("elements outside tolerance"), "{table}");
    // --json: one document with the same verdict, and the same exit status.
    let o = igpt(&["verify", "--reference", s(&golden), "--candidate", s(&golden2), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let json = parse_json(&o.stdout, "verify --json").unwrap();
    assert_eq!(json.get("passed").and_then(Json::as_bool), Some(false));
    let counts = json.get("counts").unwrap();
    assert!(counts.get("missing").and_then(Json::as_usize).unwrap() > 0, "{counts:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_golden_of_a_zero_head_is_refused_unless_asked() {
    let dir = scratch("zerohead");
    let model = dir.join("m");
    let out = dir.join("g.safetensors");
    assert!(igpt(&["init", "--config", "digits", "--out", s(&model)]).status.success());
    let golden = ["golden", "--model", s(&model), "--seq", "8", "--out", s(&out)];
    let o = igpt(&golden);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("lm_head.weight is all zero"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--init random") && stderr(&o).contains("--allow-zero-head"));
    assert!(igpt(&[&golden[..], &["--allow-zero-head"]].concat()).status.success());
    // In memory: --config with --init random draws the head, so nothing is refused.
    let o = igpt(&["golden", "--config", "digits", "--seq", "8", "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o =
        igpt(&["golden", "--config", "digits", "--init", "random", "--seq", "8", "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = igpt(&["init", "--config", "digits", "--init", "xavier", "--out", s(&model)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn op_goldens_are_reproducible_from_the_seed() {
    let dir = scratch("opgolden");
    for (op, shape) in [
        ("linear", "3,5,7"),
        ("norm", "4,9"),
        ("attention", "1,2,5,4"),
        ("cross_entropy", "6,11"),
        ("decode", "2,1,5,4"),
    ] {
        let a = dir.join(format!("{op}-a.st"));
        let b = dir.join(format!("{op}-b.st"));
        for f in [&a, &b] {
            let o = igpt(&["golden", "--op", op, "--shape", shape, "--seed", "9", "--out", s(f)]);
            assert!(o.status.success(), "{op}: {}", stderr(&o));
        }
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{op}");
    }
    let o = igpt(&["golden", "--op", "softmax", "--shape", "2,2", "--out", s(&dir.join("x"))]);
    assert!(stderr(&o).contains("unknown --op 'softmax'"), "{}", stderr(&o));
    let listed = "(known: linear, norm, quick_gelu, gelu_tanh, attention, attention_bidirectional, cross_entropy, embedding, sample, decode)";
    assert!(stderr(&o).contains(listed), "every op is listed: {}", stderr(&o));
    let o = igpt(&["golden", "--op", "linear", "--shape", "2,2", "--out", s(&dir.join("x"))]);
    assert!(stderr(&o).contains("N,IN,OUT"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bf16_op_goldens_record_their_class_and_differ_from_f32() {
    let dir = scratch("bf16golden");
    let file = |p: &str| dir.join(format!("attention-{p}.st"));
    for p in ["f32", "bf16"] {
        let out = file(p);
        let args = ["golden", "--op", "attention", "--shape", "2,2,70,16", "--precision", p];
        let o = igpt(&[&args[..], &["--out", s(&out)]].concat());
        assert!(o.status.success(), "{p}: {}", stderr(&o));
    }
    let golden = igpt::io::safetensors::SafeTensors::read(&file("bf16")).unwrap();
    assert_eq!(golden.get_metadata("precision"), Some("bf16"));
    assert!(golden.get_metadata("tolerances").unwrap().contains("\"class\":\"bf16\""));
    let verify = |reference: &str, candidate: &str, extra: &[&str]| {
        let (r, c) = (file(reference), file(candidate));
        igpt(&[&["verify", "--reference", s(&r), "--candidate", s(&c)][..], extra].concat())
    };
    assert!(verify("bf16", "bf16", &[]).status.success());
    // bf16 rounding is far outside the f32 class: a bf16 result does not pass as f32.
    assert_eq!(verify("f32", "bf16", &[]).status.code(), Some(1));
    assert_eq!(verify("f32", "bf16", &["--precision", "f16"]).status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn palette_fit_and_quantize_match_the_transformers_tokens() {
    let dir = scratch("palette");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/palette");
    let images: Vec<String> = ["grey_33x47.png", "rgb_40x33.png", "rgba_20x20.png"]
        .iter()
        .map(|n| fixtures.join("images").join(n).display().to_string())
        .collect();
    let out = dir.join("tokens.npy");
    let config = fixtures.join("preprocessor_config.json");
    let mut args = vec!["quantize", "--palette", s(&config), "--out", s(&out), "--images"];
    args.extend(images.iter().map(String::as_str));
    let o = igpt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let ours = igpt::io::npy::read_npy(&out).unwrap();
    let theirs = igpt::io::npy::read_npy(&fixtures.join("tokens.npy")).unwrap();
    let (ours, theirs) = (ours.data.to_i64().unwrap(), theirs.data.to_i64().unwrap());
    // tokens_order.txt: grey_33x47 is row 0, rgb_40x33 row 4, rgba_20x20 row 7.
    for (k, row) in [0usize, 4, 7].into_iter().enumerate() {
        assert_eq!(
            ours[k * 1024..(k + 1) * 1024],
            theirs[row * 1024..(row + 1) * 1024],
            "image {k}"
        );
    }
    let palette = dir.join("palette.npy");
    let o = igpt(&[
        "palette",
        "fit",
        "--images",
        s(&fixtures.join("images")),
        "--k",
        "8",
        "--out",
        s(&palette),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("{\"k\":8,\"inertia\":"));
    let o = igpt(&[
        "palette",
        "fit",
        "--images",
        s(&fixtures.join("images")),
        "--k",
        "0",
        "--out",
        s(&palette),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = igpt(&[
        "quantize",
        "--palette",
        s(&palette),
        "--images",
        s(&dir.join("nope.png")),
        "--out",
        s(&out),
    ]);
    assert!(stderr(&o).contains("nope.png"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_sample_and_complete_on_the_digits() {
    let dir = scratch("train");
    let run = dir.join("run");
    let o = igpt(&[
        "train",
        "--steps",
        "4",
        "--batch",
        "8",
        "--eval-every",
        "2",
        "--save-every",
        "2",
        "--out",
        s(&run),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        report.trim().starts_with("{\"test_nats_per_token\":") && report.contains("\"steps\":4"),
        "{report}"
    );
    assert!(stderr(&o).contains("step      4/4"), "{}", stderr(&o));
    assert!(run.join("checkpoints/step-000002/model.safetensors").exists());
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "loss.png",
        "samples.png",
        "completions.png",
        "log.csv",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }
    let grid = dir.join("grid.png");
    let tokens = dir.join("tokens.npy");
    let o = igpt(&[
        "sample",
        "--model",
        s(&run),
        "--n",
        "4",
        "--out",
        s(&grid),
        "--tokens-out",
        s(&tokens),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(igpt::io::npy::read_npy(&tokens).unwrap().shape, [4, 64]);
    let o = igpt(&["sample", "--model", s(&run), "--top-p", "1.5", "--out", s(&grid)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("top-p"), "{}", stderr(&o));
    let o = igpt(&[
        "complete",
        "--model",
        s(&run),
        "--images",
        s(&grid),
        "--keep-rows",
        "9",
        "--out",
        s(&grid),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = igpt(&["probe", "--model", s(&run), "--layers", "0,2", "--max-images", "150"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("{\"layer\":0,\"accuracy\":")
            && lines[2].starts_with("{\"layer\":\"pixels\""),
        "{lines:?}"
    );
    check_probe_values(&run, &lines, &[0, 2], 150);
    let o = igpt(&[
        "probe",
        "--model",
        s(&run),
        "--checkpoints",
        "--layers",
        "1",
        "--max-images",
        "150",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!(rows, 2, "one line per kept model");
    assert!(run.join("probe_vs_loss.png").exists());
    let tuned = dir.join("tuned");
    let o = igpt(&[
        "finetune",
        "--model",
        s(&run),
        "--steps",
        "4",
        "--batch",
        "8",
        "--eval-every",
        "2",
        "--out",
        s(&tuned),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("{\"test_accuracy\":"));
    check_finetune_values(&tuned, &String::from_utf8_lossy(&o.stdout));
    let config = std::fs::read_to_string(tuned.join("config.json")).unwrap();
    assert!(
        config.contains("ImageGPTForImageClassification")
            && tuned.join("preprocessor_config.json").exists()
    );
    let o = igpt(&["probe", "--model", s(&run), "--layers", "9"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = igpt(&["train", "--steps", "3", "--batch", "8", "--lr", "-1", "--out", s(&run)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_probe_and_complete_on_the_mini_emoji_package() {
    let dir = scratch("emoji");
    let run = dir.join("run");
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/emoji/mini/emoji-datasource-mini.tgz");
    let spec = format!("emoji:{}", data.display());
    let args = ["train", "--data", &spec, "--steps", "2", "--batch", "4", "--export-tokens"];
    let o = igpt(&[&args[..], &["--config", "tiny", "--out", s(&run)]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout);
    for field in ["\"train_images\":12,", "\"test_images\":5,", "\"classes\":3,"] {
        assert!(report.contains(field), "{field} in {report}");
    }
    for phase in ["reading the emoji package", "fitting a", "evaluating on 5 test", "drawing 32"] {
        assert!(stderr(&o).contains(phase), "{phase}: {}", stderr(&o));
    }
    let tokens = igpt::io::npy::read_npy(&run.join("tokens/train.npy")).unwrap();
    assert_eq!(tokens.shape, [12, 256]);
    let labels = igpt::io::npy::read_npy(&run.join("tokens/test_labels.npy")).unwrap();
    assert_eq!(labels.shape, [5]);
    let state = std::fs::read(run.join("trainer_state.safetensors")).unwrap();
    assert!(String::from_utf8_lossy(&state[..4096.min(state.len())]).contains("emoji:"));

    let grid = dir.join("completions.png");
    let o = igpt(&["complete", "--model", s(&run), "--data", &spec, "--count", "2", "--n", "2"]);
    assert_eq!(o.status.code(), Some(2), "--out is required: {}", stderr(&o));
    let o = igpt(&[
        "complete",
        "--model",
        s(&run),
        "--data",
        &spec,
        "--count",
        "2",
        "--n",
        "2",
        "--out",
        s(&grid),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let png = igpt::palette::load_image_rgb(&grid).unwrap();
    // 2 rows of 4 cells (original, kept half, 2 completions) of 48 px (16 px enlarged 3×), with
    // 2 px gaps.
    assert_eq!((png.width, png.height), (4 * 50 + 2, 2 * 50 + 2));
    let o = igpt(&["probe", "--model", s(&run), "--layers", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("{\"layer\":\"pixels\""));
    let o = igpt(&["train", "--data", &spec, "--vendors", "twitter,samsung", "--out", s(&run)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("samsung"), "{}", stderr(&o));
    let o = igpt(&["train", "--data", &spec, "--image-size", "0", "--out", s(&run)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One JSON object per stdout line.
fn json_lines(stdout: &[u8]) -> Vec<Json> {
    let text = String::from_utf8_lossy(stdout);
    text.lines().map(|l| parse_json(l.as_bytes(), "igpt's stdout").unwrap()).collect()
}

fn number(line: &Json, key: &str) -> f64 {
    line.get(key).and_then(Json::as_f64).unwrap_or_else(|| panic!("no number '{key}' in {line:?}"))
}

/// A value printed with 4 decimals.
fn assert_printed(what: &str, printed: f64, exact: f64) {
    assert!((printed - exact).abs() <= 5e-5 + 1e-12, "{what}: printed {printed}, library {exact}");
}

#[test]
fn palette_fit_prints_the_librarys_fit_within_scikit_learns_range() {
    let dir = scratch("palette-values");
    let rgb = sklearn::kmeans_pixels();
    let pixels_file = dir.join("pixels.npy");
    let array = igpt::io::npy::NpyArray::new(
        vec![rgb.len() / 3, 3],
        igpt::io::npy::NpyData::U8(rgb.clone()),
    )
    .unwrap();
    igpt::io::npy::write_npy(&pixels_file, &array).unwrap();
    let (k, seed) = (16, 3);
    let out = dir.join("palette.npy");
    let o = igpt(&[
        "palette",
        "fit",
        "--pixels",
        s(&pixels_file),
        "--k",
        "16",
        "--seed",
        "3",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = &json_lines(&o.stdout)[0];
    // The command is the library's fit on the same pixels: same inertia (printed in full), same
    // iterations, same centres in the palette file.
    let points: Vec<f32> = rgb.iter().map(|&p| igpt::palette::pixel_to_unit(p)).collect();
    let opts = igpt::palette::KMeansOptions { seed, ..Default::default() };
    let fit = igpt::palette::fit_kmeans(&points, points.len() / 3, 3, k, &opts).unwrap();
    assert_eq!(number(report, "inertia"), fit.inertia);
    assert_eq!(number(report, "iterations"), fit.iterations as f64);
    let palette = igpt::palette::load_palette(&out).unwrap();
    assert_eq!(palette.colors_f32(), fit.centers);
    // Its quality: within the range of scikit-learn's 100 fits of these pixels (a single fit
    // varies by 1.5 % with the seed; tests/palette_pipeline.rs compares the averages).
    let theirs: Vec<f64> =
        sklearn::kmeans_fits().iter().filter(|f| f.k == k).map(|f| f.inertia).collect();
    let worst = theirs.iter().cloned().fold(0.0, f64::max);
    let best = theirs.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(
        fit.inertia <= 1.005 * worst && fit.inertia >= best / 1.005,
        "inertia {} outside scikit-learn's {best}..{worst}",
        fit.inertia
    );
    // Every centre is the mean of the pixels nearest to it: inside the pixels' colour range.
    assert!(palette.colors().iter().all(|c| c.abs() <= 1.0));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The first `max` images of a split as model input, and their labels.
fn first_images(set: &ImageSet, model: &Model, max: usize) -> (TokenBatch, Vec<usize>) {
    let n = set.len().min(max);
    let ids = set.tokens[..n * 64].to_vec();
    let labels = set.labels[..n].iter().map(|&l| usize::from(l)).collect();
    (TokenBatch::new(ids, n, 64, &model.config, "digits").unwrap(), labels)
}

/// `igpt probe --max-images max` on a digits run prints, per layer and for the pixels, what the
/// library's probe gives on the first `max` images of each split: the same features, the same
/// protocol. Above chance (10 %) too, by a margin: measured 28 % and 31 % for layers 0 and 2
/// of the 4-step model, 74 % for the pixels.
fn check_probe_values(run: &Path, lines: &[String], layers: &[usize], max: usize) {
    let printed: Vec<Json> =
        lines.iter().map(|l| parse_json(l.as_bytes(), "probe").unwrap()).collect();
    let model = Model::load(run).unwrap();
    let digits = igpt::data::digits::digits().unwrap();
    let (train, train_y) = first_images(&digits.train, &model, max);
    let (test, test_y) = first_images(&digits.test, &model, max);
    let opts = FeatureOptions::default();
    let train_f = extract_features(&model, &train, layers, &opts).unwrap();
    let test_f = extract_features(&model, &test, layers, &opts).unwrap();
    let check = |line: &Json, r: &igpt::probe::ProbeResult, floor: f64| {
        assert_printed("accuracy", number(line, "accuracy"), r.accuracy);
        assert_printed("cv_accuracy", number(line, "cv_accuracy"), r.cv_accuracy);
        assert_eq!(number(line, "C"), r.c, "{line:?}");
        assert!(r.accuracy >= floor, "{line:?}: accuracy below {floor}");
    };
    for (k, &layer) in layers.iter().enumerate() {
        assert_eq!(printed[k].get("layer").and_then(Json::as_usize), Some(layer));
        let r = probe(&train_f[k], &train_y, &test_f[k], &test_y, 10, &ProbeOptions::default());
        check(&printed[k], &r.unwrap(), 0.2);
    }
    // The pixel baseline reads the grey value of each pixel (the digits palette is grey).
    let grey = |set: &ImageSet| -> Vec<u8> {
        let n = set.len().min(max);
        let rgb = igpt::palette::dequantize(&set.tokens[..n * 64], &set.palette).unwrap();
        rgb.chunks_exact(3).map(|p| p[0]).collect()
    };
    let features = |set: &ImageSet| pixel_features(&grey(set), 64).unwrap();
    let r = probe(
        &features(&digits.train),
        &train_y,
        &features(&digits.test),
        &test_y,
        10,
        &ProbeOptions::default(),
    );
    check(&printed[layers.len()], &r.unwrap(), 0.7);
}

/// `igpt finetune`'s report on a digits run: the validation loss fell at every evaluation
/// (log.csv) and the last is the one reported; the test accuracy is that of the saved model's
/// score head on the 360 test digits, recomputed here from the model directory it wrote.
fn check_finetune_values(tuned: &Path, stdout: &str) {
    let report = parse_json(stdout.trim().as_bytes(), "finetune").unwrap();
    let log = std::fs::read_to_string(tuned.join("log.csv")).unwrap();
    let header: Vec<&str> = log.lines().next().unwrap().split(',').collect();
    let column = header.iter().position(|&h| h == "test_nats").unwrap();
    let validation: Vec<f64> =
        log.lines().skip(1).map(|l| l.split(',').nth(column).unwrap().parse().unwrap()).collect();
    assert!(validation.len() >= 2, "{log}");
    assert!(validation.windows(2).all(|w| w[1] < w[0]), "validation loss did not fall: {log}");
    let last = *validation.last().unwrap();
    // Printed to 5 decimals, logged to 6.
    assert!((number(&report, "validation_loss") - last).abs() <= 1e-5, "{report:?} vs {log}");

    let model = Model::load(tuned).unwrap();
    let test = igpt::data::digits::digits().unwrap().test;
    let mut correct = 0;
    // In batches of 64 like the command, so that every GEMM rounds alike.
    for start in (0..test.len()).step_by(64) {
        let end = (start + 64).min(test.len());
        let images = &test.tokens[start * 64..end * 64];
        // The joint objective's input: SOS, then the image shifted right.
        let fed = shift_right_with_sos(images, 64, model.config.sos());
        let batch = TokenBatch::new(fed, end - start, 64, &model.config, "test").unwrap();
        let score = model.forward(&batch, false).score.unwrap();
        for (b, row) in score.data().chunks(score.cols()).enumerate() {
            let best = (0..row.len()).fold(0, |best, j| if row[j] > row[best] { j } else { best });
            correct += usize::from(best == usize::from(test.labels[start + b]));
        }
    }
    assert_printed("test_accuracy", number(&report, "test_accuracy"), correct as f64 / 360.0);
}

/// Runs igpt with `env` and checks its exit status `code` and that its one line of stderr
/// contains every string of `want`.
fn expect(args: &[&str], env: &[(&str, &str)], code: i32, want: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_igpt")).args(args).envs(env.iter().copied()).output();
    let o = o.expect("run igpt");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: '{w}' not in {err}");
    }
}

/// A digits model with the digits palette: what `igpt train` leaves, without training.
fn digits_model(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    assert!(igpt(&["init", "--config", "digits", "--out", s(&model)]).status.success());
    let digits = igpt::data::load_data("digits", &Default::default()).unwrap();
    let pre = model.join("preprocessor_config.json");
    igpt::palette::save_preprocessor_config(&digits.train.palette, 8, 8, &pre).unwrap();
    model
}

#[test]
fn every_command_exits_2_for_a_bad_value_and_1_for_a_bad_file() {
    let dir = scratch("exit");
    let (model, out) = (digits_model(&dir), dir.join("out"));
    let (m, out) = (s(&model), s(&out));
    let junk = dir.join("junk.npy");
    std::fs::write(&junk, b"not a numpy file").unwrap();
    let junk = s(&junk);
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/palette/images");
    let images = s(&images);
    let missing = dir.join("missing");
    let bad_json = dir.join("bad.json");
    std::fs::write(&bad_json, b"{").unwrap();
    let usage: &[(&[&str], &str)] = &[
        (&["train", "--steps", "0"], "--steps must be positive, got 0"),
        (&["train", "--lr", "-1"], "--lr must be positive"),
        (&["train", "--lr", "nan"], "--lr must be a finite number"),
        (&["train", "--threads", "0"], "--threads must lie in 1..=1024"),
        (&["train", "--dropout", "1"], "--dropout must lie in [0, 1)"),
        (&["train", "--batch", "6", "--accumulation", "4"], "not divisible"),
        (&["train", "--lr", "0.1", "--min-lr", "1"], "min-lr"),
        (&["train", "--vendors", "twitter"], "vendors apply to emoji data only"),
        (&["train", "--image-size", "16"], "its images are 8×8"),
        (&["train", "--out", ""], "--out has an empty value"),
        (&["sample", "--model", m, "--out", out, "--n", "0"], "--n must be positive"),
        (&["sample", "--model", m, "--out", out, "--top-p", "2"], "top-p"),
        (&["sample", "--model", m, "--out", out, "--top-k", "0"], "top-k"),
        (&["sample", "--model", m, "--out", out, "--temperature", "inf"], "--temperature"),
        (&["complete", "--model", m, "--out", out, "--data", "digits", "--count", "0"], "--count"),
        (
            &["complete", "--model", m, "--out", out, "--data", "digits", "--keep-rows", "9"],
            "--keep-rows 9",
        ),
        (&["complete", "--model", m, "--out", out], "--images FILE... or --data"),
        (&["finetune", "--model", m, "--out", out, "--patience", "0"], "--patience"),
        (&["finetune", "--model", m, "--out", out, "--dropout", "1.5"], "--dropout"),
        (&["probe", "--model", m, "--max-images", "0"], "--max-images"),
        (&["probe", "--model", m, "--layers", "9"], "--layers"),
        (&["palette", "fit", "--images", images, "--k", "0", "--out", out], "--k must be positive"),
        (
            &["palette", "fit", "--images", images, "--k", "4", "--max-iter", "0", "--out", out],
            "--max-iter",
        ),
        (&["palette", "fit", "--pixels", junk, "--out", out], "--k is required"),
        (
            &["quantize", "--palette", junk, "--images", images, "--size", "0", "--out", out],
            "--size",
        ),
        (&["init", "--config", "nope", "--out", out], "unknown config preset 'nope'"),
        (&["init", "--config", "digits", "--seed", "-1", "--out", out], "--seed"),
        (&["forward", "--model", m, "--tokens", junk, "--out", ""], "--out has an empty value"),
        (&["golden", "--model", m, "--batch", "0", "--out", out], "--batch must be positive"),
        (&["golden", "--model", m, "--seq", "65", "--out", out], "--seq must lie in 1..=64"),
        (&["golden", "--model", m, "--lr", "0", "--out", out], "--lr must be positive"),
        (&["golden", "--op", "norm", "--shape", "2,0", "--out", out], "--shape N,D (positive)"),
        (&["golden", "--op", "softmax", "--shape", "2,2", "--out", out], "unknown --op"),
        (&["verify", "--reference", junk, "--candidate", junk, "--rtol", "-1"], "--rtol"),
        (&["verify", "--reference", junk, "--candidate", junk, "--atol", "nan"], "--atol"),
        (&["verify", "--suite", out], "--suite DIR --candidates DIR2"),
        (&["verify", "--suite", out, "--candidates", out, "--reference", junk], "--suite DIR"),
        (&["golden", "--suite", out, "--op", "linear"], "--op cannot go with it"),
        (&["golden", "--suite", out, "--only", "op.softmax"], "names no file of the full suite"),
        (&["golden", "--suite", out, "--small", "--only", "op.linear,"], "none empty"),
        (&["golden", "--small", "--config", "digits", "--out", out], "--small applies to --suite"),
        (&["bench", "sgemm", "--threads", "0"], "--threads"),
        (&["bench", "sgemm", "--reps", "0"], "--reps"),
        (&["bench", "sgemm", "--size", "0"], "--size"),
        (&["bench", "attention", "--shape", "1x0x4x4"], "--shape"),
        (&["bench", "train", "--config", "nope"], "unknown config preset"),
        (&["bench", "sample", "--config", "digits", "--tokens", "0"], "--tokens"),
        (&["bench", "kmeans", "--pixels", junk, "--k", "0"], "--k"),
    ];
    for (args, want) in usage {
        expect(args, &[], 2, &[want, "--help"]);
    }
    let (missing, missing_json) = (s(&missing), dir.join("missing.json"));
    let failed: &[(&[&str], &str)] = &[
        (&["train", "--steps", "1", "--config", s(&bad_json), "--out", out], "bad.json"),
        (&["sample", "--model", missing, "--out", out], "missing"),
        (&["complete", "--model", missing, "--images", junk, "--out", out], "missing"),
        (&["finetune", "--model", missing, "--out", out], "missing"),
        (&["probe", "--model", missing], "missing"),
        (&["palette", "fit", "--pixels", junk, "--k", "4", "--out", out], "junk.npy"),
        (&["quantize", "--palette", junk, "--images", images, "--out", out], "junk.npy"),
        (&["init", "--config", s(&missing_json), "--out", out], "missing.json"),
        (&["forward", "--model", m, "--tokens", junk, "--out", out], "junk.npy"),
        (&["golden", "--model", m, "--tokens", junk, "--out", out], "junk.npy"),
        (&["verify", "--reference", junk, "--candidate", junk], "junk.npy"),
        (&["verify", "--suite", missing, "--candidates", out], "manifest.json"),
        (&["bench", "kmeans", "--pixels", junk], "junk.npy"),
    ];
    for (args, want) in failed {
        expect(args, &[], 1, &[want, "error:"]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let dir = scratch("admission");
    let (model, out) = (digits_model(&dir), dir.join("out"));
    let (m, out) = (s(&model), s(&out));
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/palette/images");
    let images = s(&images);
    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/palette/rgb_40x33.png");
    let pre = model.join("preprocessor_config.json");
    let big = "1000000000";
    // Sizes from flags: usage errors naming the flag, the estimate and the budget.
    let flags: &[&[&str]] = &[
        &["golden", "--model", m, "--batch", big, "--out", out],
        &["golden", "--op", "attention", "--shape", "1,1,100000000,8", "--out", out],
        &["golden", "--op", "linear", "--shape", "100000000,100000000,8", "--out", out],
        &["sample", "--model", m, "--n", big, "--out", out],
        &["complete", "--model", m, "--data", "digits", "--n", big, "--out", out],
        &["train", "--batch", big, "--steps", "1", "--out", out],
        &["finetune", "--model", m, "--batch", big, "--out", out],
        &["palette", "fit", "--images", images, "--k", "4", "--size", big, "--out", out],
        &["quantize", "--palette", s(&pre), "--images", s(&png), "--size", big, "--out", out],
        &["bench", "sgemm", "--size", big],
        &["bench", "attention", "--shape", "1000x1000x1000x1000"],
        &["bench", "train", "--config", "digits", "--batch", big],
        &["bench", "sample", "--config", "digits", "--batch", big],
    ];
    for args in flags {
        expect(args, &[], 2, &["needs about", "of memory, more than the", "available"]);
    }
    // The issue's cases against its 24 GiB machine, whatever this one has.
    let budget = [("IGPT_MAX_MEMORY", "24G")];
    let shape = ["golden", "--op", "attention", "--shape", "1,1,100000,8", "--out", out];
    expect(
        &shape,
        &budget,
        2,
        &["--op attention --shape 1,1,100000,8", "24.0 GiB", "IGPT_MAX_MEMORY"],
    );
    let sample = ["sample", "--model", m, "--n", "100000000", "--out", out];
    expect(&sample, &budget, 2, &["--n 100000000"]);
    expect(
        &["init", "--config", "igpt-xl", "--out", out],
        &[("IGPT_MAX_MEMORY", "8G")],
        2,
        &["igpt-xl"],
    );
    // Sizes from files: failed work naming the file. 16 G parameters = 64 GiB of weights.
    let config = dir.join("huge.json");
    let json =
        r#"{"vocab_size": 513, "n_positions": 1024, "n_embd": 8192, "n_head": 64, "n_layer": 20}"#;
    std::fs::write(&config, json).unwrap();
    let init = ["init", "--config", s(&config), "--out", out];
    expect(&init, &budget, 1, &["huge.json", "16124723200 parameters", "60.1 GiB"]);
    let huge_model = dir.join("huge");
    std::fs::create_dir_all(&huge_model).unwrap();
    std::fs::write(huge_model.join("config.json"), json).unwrap();
    let hm = s(&huge_model);
    let by_model: &[&[&str]] = &[
        &["forward", "--model", hm, "--tokens", "t.npy", "--out", out],
        &["golden", "--model", hm, "--out", out],
        &["sample", "--model", hm, "--out", out],
        &["complete", "--model", hm, "--data", "digits", "--out", out],
        &["probe", "--model", hm],
        &["finetune", "--model", hm, "--out", out],
    ];
    for args in by_model {
        expect(args, &budget, 1, &["config.json", "more than the 24.0 GiB"]);
    }
    let absurd = json.replace("\"n_layer\": 20", "\"n_layer\": 1000");
    std::fs::write(&config, absurd).unwrap();
    expect(&init, &[], 1, &["huge.json", "of memory"]);
    // The budget itself must be a size.
    expect(
        &["init", "--config", "digits", "--out", out],
        &[("IGPT_MAX_MEMORY", "lots")],
        2,
        &["IGPT_MAX_MEMORY"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
