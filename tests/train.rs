//! Training: the loss falls, a resumed run equals a straight one bit for bit, the thread count
//! changes nothing, bad input is an error. Crashes (the process killed mid-write) are tested on
//! the real binary in `tests/crash.rs`.

use igpt::data::{digits::digits, load_data, DataOptions, Splits};
use igpt::model::{Config, Model};
use igpt::train::checkpoint::STATE_FILE;
use igpt::train::trainer::{LogRow, Progress};
use igpt::train::{TrainConfig, TrainReport, Trainer};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igpt-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A small model on the digits: 2 blocks of width 32, dropout on (so its streams are exercised).
fn small_model(seed: u64) -> Model {
    let mut c = Config::preset("digits").unwrap();
    (c.n_embd, c.n_layer, c.n_head, c.resid_pdrop, c.embd_pdrop) = (32, 2, 2, 0.1, 0.1);
    Model::init(c, seed).unwrap()
}

fn recipe(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        batch: 16,
        warmup: 5,
        lr: 3e-3,
        eval_every: 10,
        checkpoint_every: 10,
        eval_images: 64,
        flip: true,
        ..TrainConfig::digits_default()
    }
}

fn train(data: &Splits, cfg: TrainConfig, out: &Path, model: Model, resume: bool) -> TrainReport {
    let trainer =
        Trainer { data, cfg, out: out.to_path_buf(), on_checkpoint: None, on_phase: None };
    trainer.run(model, resume, &mut |_: &Progress| {}).unwrap()
}

fn weights(dir: &Path) -> Vec<u32> {
    let m = Model::load(dir).unwrap();
    m.params.iter().flat_map(|p| p.data().iter().map(|x| x.to_bits())).collect()
}

#[test]
fn loss_decreases_on_a_tiny_run() {
    let data = digits().unwrap();
    let out = scratch("decrease");
    let report = train(&data, recipe(30), &out, small_model(0), false);
    let first: &LogRow = report.log.first().unwrap();
    assert!(report.test_nats_per_token < 17f64.ln() - 0.5, "{report:?}");
    assert!(report.log.last().unwrap().train_loss < first.train_loss, "{:?}", report.log);
    for f in ["config.json", "model.safetensors", STATE_FILE, "log.csv"] {
        assert!(out.join(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn resume_equals_a_straight_run_bit_for_bit() {
    let data = digits().unwrap();
    let (straight, split) = (scratch("straight"), scratch("split"));
    train(&data, recipe(20), &straight, small_model(1), false);
    // The second run is killed after its step-10 checkpoint, then resumed to step 20.
    run_until(&data, &split, 10);
    train(&data, recipe(20), &split, small_model(1), true);
    assert_eq!(weights(&straight), weights(&split));
    std::fs::remove_dir_all(&straight).unwrap();
    std::fs::remove_dir_all(&split).unwrap();
}

/// Runs the 20-step recipe but stops (like a killed process) once step `stop` is checkpointed.
fn run_until(data: &Splits, out: &Path, stop: usize) {
    let hook = |_: &Model, _: &Path, log: &[LogRow]| -> igpt::Result<()> {
        if log.last().is_some_and(|r| r.step >= stop) {
            return Err(igpt::Error::invalid("simulated kill"));
        }
        Ok(())
    };
    let trainer = Trainer {
        data,
        cfg: recipe(20),
        out: out.to_path_buf(),
        on_checkpoint: Some(&hook),
        on_phase: None,
    };
    let err = trainer.run(small_model(1), false, &mut |_: &Progress| {}).unwrap_err();
    assert!(err.to_string().contains("simulated kill"));
}

#[test]
fn one_and_two_threads_give_identical_weights() {
    let data = digits().unwrap();
    let run = |threads: usize| {
        let out = scratch(&format!("threads{threads}"));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| train(&data, recipe(8), &out, small_model(2), false));
        let w = weights(&out);
        std::fs::remove_dir_all(&out).unwrap();
        w
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn resume_refuses_a_different_recipe() {
    let data = digits().unwrap();
    let out = scratch("refuse");
    run_until(&data, &out, 10);
    let mut other = recipe(20);
    other.lr = 1e-3;
    let trainer =
        Trainer { data: &data, cfg: other, out: out.clone(), on_checkpoint: None, on_phase: None };
    let err = trainer.run(small_model(1), true, &mut |_: &Progress| {}).unwrap_err().to_string();
    assert!(err.contains("different settings"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bad_data_and_settings_are_clear_errors() {
    let dir = scratch("baddata");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let err = |spec: &str| load_data(spec, &DataOptions::default()).unwrap_err().to_string();
    assert!(err("/no/such/dir").contains("not 'digits'"));
    assert!(err(dir.join("empty").to_str().unwrap()).contains("no class sub-folders"));
    let cifar = dir.join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    std::fs::write(cifar.join("data_batch_1.bin"), vec![0u8; 3073 + 100]).unwrap();
    std::fs::write(cifar.join("test_batch.bin"), vec![0u8; 3073]).unwrap();
    let e = err(&format!("cifar10:{}", cifar.display()));
    assert!(e.contains("data_batch_1.bin") && e.contains("truncated"), "{e}");
    let mut bad = recipe(10);
    bad.batch = 10;
    bad.accumulation = 3;
    assert!(bad.validate().unwrap_err().to_string().contains("not divisible"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cifar_binary_batches_load_and_quantise() {
    let dir = scratch("cifar-ok");
    std::fs::create_dir_all(&dir).unwrap();
    // Two training records and one test record: label, then red, green, blue planes.
    let record = |label: u8, r: u8, g: u8, b: u8| {
        let mut v = vec![label];
        for c in [r, g, b] {
            v.extend(std::iter::repeat_n(c, 1024));
        }
        v
    };
    std::fs::write(
        dir.join("data_batch_1.bin"),
        [record(3, 255, 0, 0), record(7, 0, 0, 255)].concat(),
    )
    .unwrap();
    std::fs::write(dir.join("test_batch.bin"), record(3, 250, 5, 5)).unwrap();
    let data = load_data(&format!("cifar10:{}", dir.display()), &DataOptions::default()).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (2, 1));
    assert_eq!(data.train.labels, [3, 7]);
    // The nearly-red test image is quantised to the red training colour.
    assert_eq!(data.test.image(0)[0], data.train.image(0)[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_diverging_run_stops_and_keeps_its_last_checkpoint() {
    let data = digits().unwrap();
    let out = scratch("nan");
    // An absurd learning rate makes the loss non-finite within a few steps.
    let cfg = TrainConfig { lr: 1e4, warmup: 1, checkpoint_every: 1, ..recipe(20) };
    let trainer =
        Trainer { data: &data, cfg, out: out.clone(), on_checkpoint: None, on_phase: None };
    let err = trainer.run(small_model(3), false, &mut |_: &Progress| {}).unwrap_err().to_string();
    assert!(
        err.contains("training stopped") && err.contains("last good checkpoint (step"),
        "{err}"
    );
    let step: usize =
        err.split("(step ").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
    assert!(step >= 1);
    let m = Model::load(&out).unwrap();
    assert!(m.params.iter().all(|p| p.all_finite()), "the kept checkpoint holds finite weights");
    std::fs::remove_dir_all(&out).unwrap();
}
