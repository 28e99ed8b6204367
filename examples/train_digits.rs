//! Training on the embedded digits through the library API — what `igpt train` does, short.
//!
//! Run with `cargo run --release --example train_digits` (about a minute: 200 steps; the full
//! recipe of `igpt train` is `TrainConfig::digits_default()`, 1000 steps).

use igpt::data::digits::digits;
use igpt::model::{Config, Model};
use igpt::train::pictures::draw_run_pictures;
use igpt::train::trainer::Progress;
use igpt::train::{TrainConfig, Trainer};
use std::path::PathBuf;

// Reuse large freed blocks across training steps instead of page-faulting them in again (about
// a fifth faster on this model; see `igpt::memory`).
#[global_allocator]
static ALLOC: igpt::memory::CachingAllocator = igpt::memory::CachingAllocator::new();

fn main() -> igpt::Result<()> {
    // 1. Data: 1437 training and 360 test images of 8×8 grey levels (tokens 0..16, SOS = 17).
    let data = digits()?;

    // 2. Model: the `digits` preset (4 blocks of width 128, 4 heads), with dropout 0.1, and the
    //    paper's initialisation from a Philox seed.
    let mut config = Config::preset("digits")?;
    (config.resid_pdrop, config.embd_pdrop) = (0.1, 0.1);
    let model = Model::init(config, 0)?;

    // 3. The recipe: AdamW (β 0.9/0.95), warm-up then cosine decay, batch 64, clipping at 1.
    let cfg = TrainConfig {
        steps: 200,
        warmup: 20,
        eval_every: 50,
        checkpoint_every: 200,
        ..TrainConfig::digits_default()
    };

    // 4. Train into runs/example-digits: an HF model directory plus checkpoints, log and pictures.
    let out = PathBuf::from("runs/example-digits");
    let pictures = |m: &Model, dir: &std::path::Path, log: &[_]| {
        draw_run_pictures(m, &data, dir, log, 0, &|_| {})
    };
    let trainer = Trainer {
        data: &data,
        cfg,
        out: out.clone(),
        on_checkpoint: Some(&pictures),
        on_phase: None,
    };
    let report = trainer.run(model, false, &mut |p: &Progress| {
        if let Some(test) = p.row.test_loss {
            println!(
                "step {:4}: train {:.3} nats/token, test {test:.3}",
                p.row.step, p.row.train_loss
            );
        }
    })?;

    println!(
        "test loss {:.4} nats/token ({:.4} bits); pictures in {}",
        report.test_nats_per_token,
        report.test_nats_per_token / std::f64::consts::LN_2,
        out.display()
    );
    Ok(())
}
