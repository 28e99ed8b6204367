//! Crash tests of `igpt train`: the real binary, killed with SIGKILL again and again — inside
//! checkpoint writes (through `IGPT_FAULT`, SPEC §16) and at random moments — and resumed each
//! time with `--resume`, must end with weights bit-identical to an uninterrupted run, and every
//! file of the run directory must be readable after every kill.
//!
//! A tiny model (1 block of width 16) on the embedded digits, 32 steps with a checkpoint every
//! 4, keeps each run to about a second.
#![cfg(unix)]

use igpt::io::fault::FAULT_VAR;
use igpt::io::SafeTensors;
use igpt::model::Model;
use igpt::train::checkpoint::STATE_FILE;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 32;
const CHECKPOINT_EVERY: usize = 4;
const SIGKILL: i32 = 9;
const TINY_CONFIG: &str = r#"{"vocab_size": 18, "n_positions": 64, "n_embd": 16, "n_layer": 1,
    "n_head": 2, "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0}"#;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igpt-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `igpt train` into `dir/run`, resuming when a checkpoint is there (as a user would),
/// with `fault` as `IGPT_FAULT`.
fn start(dir: &Path, fault: Option<&str>) -> Child {
    let config = dir.join("tiny.json");
    std::fs::write(&config, TINY_CONFIG).unwrap();
    let run = dir.join("run");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_igpt"));
    cmd.arg("train").arg("--config").arg(&config).arg("--out").arg(&run);
    for (flag, value) in [
        ("--steps", STEPS),
        ("--checkpoint-every", CHECKPOINT_EVERY),
        ("--eval-every", 8),
        ("--batch", 16),
        ("--warmup", 4),
        ("--threads", 1),
    ] {
        cmd.arg(flag).arg(value.to_string());
    }
    if run.join(STATE_FILE).exists() {
        cmd.arg("--resume");
    }
    match fault {
        Some(spec) => cmd.env(FAULT_VAR, spec),
        None => cmd.env_remove(FAULT_VAR),
    };
    cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start igpt train")
}

/// Waits for `child`; with `kill_after`, sends SIGKILL once that time has passed.
fn finish(mut child: Child, kill_after: Option<Duration>) -> (ExitStatus, String) {
    if let Some(delay) = kill_after {
        let deadline = Instant::now() + delay;
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // a no-op for a process that has exited (not yet reaped)
    }
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every file of the run directory reads as what it should be; returns the checkpoint's step.
/// A file may be missing (the run died before writing it) but never unreadable.
fn check_readable(run: &Path) -> Option<usize> {
    let state = run.join(STATE_FILE);
    let step = state.exists().then(|| {
        let st = SafeTensors::read(&state).unwrap_or_else(|e| panic!("torn checkpoint: {e}"));
        st.get_metadata("step").unwrap().parse::<usize>().unwrap()
    });
    let (config, weights) = (run.join("config.json"), run.join("model.safetensors"));
    if weights.exists() {
        SafeTensors::read(&weights).unwrap_or_else(|e| panic!("torn weights: {e}"));
    }
    if config.exists() && weights.exists() {
        Model::load(run).unwrap_or_else(|e| panic!("unloadable model: {e}"));
    }
    if run.join("log.csv").exists() {
        eval_rows(run);
    }
    for png in ["loss.png", "samples.png", "completions.png"] {
        if run.join(png).exists() {
            igpt::palette::load_image_rgb(&run.join(png)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    step
}

/// The log's evaluation rows as (step, test loss text): what is independent of timing.
fn eval_rows(run: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(run.join("log.csv")).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("step,"), "log.csv lost its header");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 9), "torn log.csv:\n{text}");
    rows.iter().filter(|r| !r[4].is_empty()).map(|r| (r[0].into(), r[4].into())).collect()
}

fn weights(run: &Path) -> Vec<u32> {
    let m = Model::load(run).unwrap();
    m.params.iter().flat_map(|p| p.data().iter().map(|x| x.to_bits())).collect()
}

/// Runs once with `fault` armed: the process must die by SIGKILL, leaving everything readable
/// and the checkpoint no older than before. Returns the checkpoint's step.
fn killed_by_fault(dir: &Path, fault: &str, before: Option<usize>) -> Option<usize> {
    let (status, stderr) = finish(start(dir, Some(fault)), None);
    assert_eq!(status.signal(), Some(SIGKILL), "{fault} did not strike: {status}\n{stderr}");
    let step = check_readable(&dir.join("run"));
    assert!(step >= before, "{fault}: checkpoint went back from {before:?} to {step:?}");
    step
}

/// The run resumed without a fault completes and matches the uninterrupted one bit for bit.
fn completes_like(dir: &Path, reference: &Path) {
    let (status, stderr) = finish(start(dir, None), None);
    assert!(status.success(), "the final resume failed: {status}\n{stderr}");
    let run = dir.join("run");
    assert_eq!(check_readable(&run), Some(STEPS));
    assert!(weights(&run) == weights(reference), "resumed weights differ from a straight run");
    assert_eq!(eval_rows(&run), eval_rows(reference), "the log's evaluations differ");
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&format!(".{STATE_FILE}.tmp.")))
        .collect();
    assert!(leftovers.is_empty(), "temporaries of killed writes are left: {leftovers:?}");
}

/// An uninterrupted run (the reference) and its wall-clock time.
fn reference(name: &str) -> (PathBuf, Duration) {
    let dir = scratch(name);
    let started = Instant::now();
    let (status, stderr) = finish(start(&dir, None), None);
    assert!(status.success(), "{stderr}");
    (dir, started.elapsed())
}

#[test]
fn kills_inside_checkpoint_writes_lose_nothing() {
    let (reference, _) = reference("fault-reference");
    let dir = scratch("fault");
    // Each line kills one process; the next resumes from what it left. The comments give the
    // checkpoint on disk after the kill (writes per checkpoint: log, state, model, config,
    // then the pictures).
    let faults = [
        "mid-write:trainer_state.safetensors:1", // none: the first state write is torn
        "before-rename:trainer_state.safetensors:2", // 4 (a fresh start, killed at step 8)
        "before-dir-sync:trainer_state.safetensors:1", // 8
        "mid-write:model.safetensors:2",         // 16
        "before-rename:config.json:1",           // 20
        "mid-write:log.csv:1",                   // 20: killed before the state of 24
        "before-dir-sync:samples.png:1",         // 24
    ];
    let mut step = None;
    for fault in faults {
        step = killed_by_fault(&dir, fault, step);
    }
    assert_eq!(step, Some(24), "the faults did not strike where planned");
    // The last checkpoint written, its exports torn: the state says 32, the weights say 28.
    let last = format!("before-rename:model.safetensors:{}", (STEPS - 24) / CHECKPOINT_EVERY);
    assert_eq!(killed_by_fault(&dir, &last, step), Some(STEPS));
    completes_like(&dir, &reference.join("run"));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&reference).unwrap();
}

/// xorshift64*: reproducible kill times (when a kill lands still depends on the machine).
fn next_uniform(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn kills_at_random_moments_lose_nothing() {
    let (reference, duration) = reference("random-reference");
    let dir = scratch("random");
    let mut rng = 0x5eed_c0ff_ee15_900d_u64;
    let (mut step, mut kills) = (None, 0);
    for _ in 0..16 {
        // Anywhere in the first quarter of an uninterrupted run's time, so that each resumed
        // run gets about a checkpoint further and the chain takes many kills to complete.
        let delay = duration.mul_f64(next_uniform(&mut rng) / 4.0);
        let (status, stderr) = finish(start(&dir, None), Some(delay));
        if status.success() {
            break;
        }
        assert_eq!(status.signal(), Some(SIGKILL), "not killed but failed: {status}\n{stderr}");
        kills += 1;
        let now = check_readable(&dir.join("run"));
        assert!(now >= step, "checkpoint went back from {step:?} to {now:?}");
        step = now;
    }
    eprintln!("{kills} random kills; checkpoint at step {step:?} before the final resume");
    assert!(kills >= 4, "too few kills landed: the runs are shorter than the kill times");
    completes_like(&dir, &reference.join("run"));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&reference).unwrap();
}
