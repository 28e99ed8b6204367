//! `igpt finetune`: a classification head on a pretrained model, trained with the paper's joint
//! loss (or the classification loss alone), early stopping on a validation split.

use super::probe::run_data;
use super::Failure;
use igpt::args::{parse, Command, Flag};
use igpt::data::{ImageSet, Splits};
use igpt::model::footprint;
use igpt::model::{shift_right_with_sos, Model, TokenBatch};
use igpt::palette::save_preprocessor_config;
use igpt::train::trainer::Progress;
use igpt::train::{TrainConfig, TrainObjective, Trainer};
use igpt::Error;
use std::path::{Path, PathBuf};

const FINETUNE: Command = Command {
    name: "igpt finetune",
    about: "Fine-tune a model for classification: score head on mean-pooled ln_f (zero-initialised, no bias), joint loss L_gen + L_clf.",
    positionals: &[],
    flags: &[
        Flag::one("model", "DIR", "pretrained model directory (a run of igpt train)"),
        Flag::one("data", "digits|DIR|cifar10:PATH", "labelled data (default: what the run was trained on)"),
        Flag::switch("clf-only", "train on the classification loss alone (HF's choice) instead of L_gen + L_clf"),
        Flag::one("steps", "N", "most optimizer steps (default 300)"),
        Flag::one("batch", "B", "images per step (default 64)"),
        Flag::one("lr", "X", "peak learning rate (default 2e-3)"),
        Flag::one("dropout", "P", "resid and embd dropout during fine-tuning (default: the model's)"),
        Flag::one("patience", "N", "stop after N evaluations without a lower validation loss (default 4)"),
        Flag::one("eval-every", "N", "validation interval in steps (default 25)"),
        Flag::one("seed", "S", "seed (default 0)"),
        Flag::one("out", "DIR", "output directory (loads in transformers as ImageGPTForImageClassification)"),
    ],
};

/// The last tenth of the training images (at least one) becomes the validation split.
fn split_validation(train: &ImageSet) -> Result<(ImageSet, ImageSet), Failure> {
    let n = train.len();
    if n < 2 {
        return Err(Error::invalid("fine-tuning needs at least 2 training images").into());
    }
    let val = (n / 10).max(1);
    Ok((train.slice(0..n - val), train.slice(n - val..n)))
}

/// Accuracy of the `score` head on every image of `set` (images fed as in training).
fn accuracy(model: &Model, set: &ImageSet, clf_only: bool) -> Result<f64, Failure> {
    let t = set.seq_len();
    let mut correct = 0usize;
    for start in (0..set.len()).step_by(64) {
        let end = (start + 64).min(set.len());
        let images = set.tokens[start * t..end * t].to_vec();
        // The joint objective reads the SOS-shifted input; the classifier alone reads ids as given.
        let fed =
            if clf_only { images } else { shift_right_with_sos(&images, t, model.config.sos()) };
        let batch = TokenBatch::new(fed, end - start, t, &model.config, "accuracy")?;
        let score =
            model.forward(&batch, false).score.ok_or_else(|| Error::invalid("no score head"))?;
        let k = score.cols();
        for (b, row) in score.data().chunks(k).enumerate() {
            let pred = row
                .iter()
                .enumerate()
                .fold(0, |best, (j, &v)| if v > row[best] { j } else { best });
            correct += usize::from(pred == usize::from(set.labels[start + b]));
        }
    }
    Ok(correct as f64 / set.len().max(1) as f64)
}

pub fn run(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&FINETUNE, argv)?;
    let dir = Path::new(p.required("model")?);
    let out = PathBuf::from(p.required("out")?);
    let dropout = p.parse_where("dropout", |x| (0.0..1.0).contains(&x), "lie in [0, 1)")?;
    let clf_only = p.switch("clf-only");
    let cfg = TrainConfig {
        steps: p.positive("steps", 300usize)?,
        batch: p.positive("batch", 64usize)?,
        lr: p.positive("lr", 2e-3f64)?,
        warmup: 10,
        eval_every: p.positive("eval-every", 25usize)?,
        checkpoint_every: usize::MAX,
        patience: Some(p.positive("patience", 4usize)?),
        seed: p.parse_or("seed", 0u64)?,
        objective: if clf_only { TrainObjective::Classify } else { TrainObjective::Joint },
        ..TrainConfig::digits_default()
    };
    let mut model = super::load_model(dir)?;
    let (spec, data) = run_data(dir, p.str("data"))?;
    let (train, val) = split_validation(&data.train)?;
    model.add_score_head(data.train.classes.len())?;
    if let Some(drop) = dropout {
        (model.config.resid_pdrop, model.config.embd_pdrop) = (drop, drop);
    }
    let what = format!("--batch {}: fine-tuning on {} images at a time", cfg.batch, cfg.batch);
    super::admit(&p, &what, footprint::training(&model.config, cfg.batch, train.seq_len()))?;
    let cfg = TrainConfig { data: spec.clone(), ..cfg };
    let test = data.test.clone();
    let splits = Splits {
        train,
        test: val,
        name: format!("{} (fine-tuning, last tenth validates)", data.name),
    };
    let trainer =
        Trainer { data: &splits, cfg, out: out.clone(), on_checkpoint: None, on_phase: None };
    let report = trainer.run(model, false, &mut |pr: &Progress| {
        if let Some(v) = pr.row.test_loss {
            eprintln!(
                "step {:>5}/{}  loss {:.4}  validation {:.4}",
                pr.row.step, pr.total_steps, pr.row.train_loss, v
            );
        }
    })?;
    save_preprocessor_config(
        &test.palette,
        test.width,
        test.height,
        &out.join("preprocessor_config.json"),
    )?;
    let tuned = super::load_model(&out)?;
    let acc = accuracy(&tuned, &test, clf_only)?;
    println!(
        "{{\"test_accuracy\":{acc:.4},\"validation_loss\":{:.5},\"steps\":{},\"objective\":\"{}\",\"out\":\"{}\"}}",
        report.test_nats_per_token,
        report.steps,
        if clf_only { "classify" } else { "joint" },
        out.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
    );
    Ok(())
}
