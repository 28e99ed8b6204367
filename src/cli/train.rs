//! `igpt train`: the main job. With no flags it trains the `digits` preset on the embedded UCI
//! digits and writes `runs/digits/`; `--data emoji:PATH` trains the `emoji` preset on the colour
//! emoji package and writes `runs/emoji/`.

use super::model::config_arg;
use super::Failure;
use igpt::args::{parse, Command, Flag, Parsed};
use igpt::data::emoji::EmojiOptions;
use igpt::data::{check_data_options, load_data, DataOptions, Splits};
use igpt::io::npy::{write_npy, NpyArray, NpyData};
use igpt::model::footprint;
use igpt::model::{Config, Model};
use igpt::train::pictures::draw_run_pictures;
use igpt::train::trainer::{LogRow, Progress};
use igpt::train::{TrainConfig, TrainObjective, Trainer};
use std::path::{Path, PathBuf};

const TRAIN: Command = Command {
    name: "igpt train",
    about: "Train an iGPT model (default: the digits preset on the embedded UCI digits, ~2 minutes on 2 cores).",
    positionals: &[],
    flags: &[
        Flag::one("data", "digits|DIR|cifar10:PATH|emoji:PATH", "training data (default: the embedded digits; emoji:PATH is the npm emoji-datasource .tgz or its folder)"),
        Flag::one("config", "NAME|FILE", "model preset or config.json (default: digits for the digits, emoji for the emoji, small otherwise)"),
        Flag::one("vendors", "LIST", "emoji vendors, comma-separated (default twitter,google; apple and facebook are not licensed for reuse)"),
        Flag::one("image-size", "S", "side of the square images of emoji and image folders (default 16 for emoji, 32 for folders)"),
        Flag::one("palette", "FILE", "palette .npy or preprocessor_config.json (CIFAR/folders; default: fitted by k-means)"),
        Flag::one("steps", "N", "optimizer steps (default 1000; emoji 1200)"),
        Flag::one("batch", "B", "images per step (default 64; emoji 32)"),
        Flag::one("accumulation", "K", "micro-batches per step (gradient accumulation, default 1)"),
        Flag::one("lr", "X", "peak learning rate (default 3e-3; emoji 2e-3)"),
        Flag::one("min-lr", "X", "final learning rate of the cosine decay (default 0)"),
        Flag::one("warmup", "N", "linear warm-up steps (default 100)"),
        Flag::one("clip", "X", "global gradient-norm clip, 0 for none (default 1)"),
        Flag::one("weight-decay", "X", "AdamW decoupled weight decay (default 0)"),
        Flag::one("dropout", "P", "resid_pdrop and embd_pdrop of a preset (default 0.1)"),
        Flag::one("objective", "ar|bert", "autoregressive (default) or BERT"),
        Flag::switch("flip", "random horizontal flips"),
        Flag::one("seed", "S", "seed of initialisation, data order, dropout (default 0)"),
        super::PRECISION,
        Flag::one("threads", "N", "worker threads, 1..=1024 (default: one per core)"),
        Flag::one("eval-every", "N", "test-loss evaluation interval in steps (default 100; emoji 200)"),
        Flag::one("checkpoint-every", "N", "checkpoint interval in steps (default 250; emoji 400)"),
        Flag::one("save-every", "N", "also keep the model every N steps in checkpoints/ (for igpt probe --checkpoints; default 0: none)"),
        Flag::one("out", "DIR", "run directory (default runs/<data name>)"),
        Flag::switch("export-tokens", "write the quantised splits to DIR/tokens/ (.npy int64) for reference implementations"),
        Flag::switch("resume", "continue the run in --out from its last checkpoint"),
    ],
};

pub fn run(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&TRAIN, argv)?;
    let data_spec = p.str("data").unwrap_or("digits");
    let pool = super::thread_pool(&p)?;
    let cfg = recipe(&p, data_spec)?;
    let dropout = p.parse_where("dropout", |x| (0.0..1.0).contains(&x), "lie in [0, 1)")?;
    let dropout = dropout.unwrap_or(0.1f32);
    let out = p.str("out").map(PathBuf::from).unwrap_or_else(|| default_out(data_spec));
    pool.install(|| {
        let opts = DataOptions {
            palette: p.str("palette").map(Path::new),
            image_size: cfg.image_size,
            vendors: cfg.vendors.as_deref(),
            seed: cfg.seed,
            progress: &|line| eprintln!("igpt train: {line}"),
        };
        let data = load_data(data_spec, &opts)?;
        let config_name = p.str("config").unwrap_or_else(|| default_config(data_spec));
        let mut config = config_arg(&p, config_name)?;
        let vocab = data.train.palette.len() + 1;
        if Config::preset(config_name).is_ok() {
            // A preset takes its vocabulary from the palette, its positions from the image size
            // and the recipe's dropout.
            (config.vocab_size, config.n_positions) = (vocab, data.train.seq_len());
            (config.resid_pdrop, config.embd_pdrop) = (dropout, dropout);
        } else if config.vocab_size != vocab {
            let msg = format!("{config_name}: vocab_size {} does not fit the palette of {} colours (+ SOS = {vocab})", config.vocab_size, vocab - 1);
            return Err(igpt::Error::invalid(msg).into());
        }
        config.validate(config_name)?;
        let (micro, seq) = (cfg.batch / cfg.accumulation, data.train.seq_len());
        let what = format!("training {config_name} on {micro} images of {seq} tokens at a time, evaluating on {} (--batch / --accumulation)", cfg.batch);
        // Evaluation runs forward passes of the whole --batch.
        let step = footprint::training(&config, micro, seq);
        let evaluation = footprint::forward(&config, cfg.batch, seq);
        super::admit(&p, &what, step.max(evaluation))?;
        if config.attn_pdrop > 0.0 {
            eprintln!("igpt train: warning: attn_pdrop = {} is not applied (igpt drops out embeddings and residuals only)", config.attn_pdrop);
        }
        if p.switch("export-tokens") {
            export_tokens(&data, &out.join("tokens"))?;
        }
        let model = Model::init(config, cfg.seed)?;
        eprintln!(
            "igpt train: {} on {}: {} parameters, {} steps of {} images, writing {}",
            config_name,
            data.name,
            model.n_params(),
            cfg.steps,
            cfg.batch,
            out.display()
        );
        let say = |line: &str| eprintln!("igpt train: {line}");
        let hook = |m: &Model, dir: &Path, log: &[LogRow]| draw_run_pictures(m, &data, dir, log, cfg.seed, &say);
        let trainer = Trainer { data: &data, cfg: cfg.clone(), out: out.clone(), on_checkpoint: Some(&hook), on_phase: Some(&say) };
        let report = trainer.run(model, p.switch("resume"), &mut print_progress)?;
        let ln2 = std::f64::consts::LN_2;
        println!(
            "{{\"test_nats_per_token\":{:.5},\"test_bits_per_token\":{:.5},\"train_nats_per_token\":{:.5},\"train_bits_per_token\":{:.5},\"steps\":{},\"seconds\":{:.1},\"tokens_per_s\":{:.0},\"train_images\":{},\"test_images\":{},\"classes\":{},\"out\":\"{}\"}}",
            report.test_nats_per_token,
            report.test_nats_per_token / ln2,
            report.train_nats_per_token,
            report.train_nats_per_token / ln2,
            report.steps,
            report.seconds,
            report.tokens_per_s,
            data.train.len(),
            data.test.len(),
            data.train.classes.len(),
            out.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
        );
        Ok(())
    })
}

/// The recipe of `--data spec` with the flags that change it, every value checked: a value out
/// of range or a combination that cannot train is a usage error.
fn recipe(p: &Parsed, data_spec: &str) -> Result<TrainConfig, Failure> {
    let mut cfg = TrainConfig::for_data(data_spec);
    cfg.data = data_spec.to_string();
    let vendors = p.str("vendors").map(EmojiOptions::parse_vendors).transpose();
    cfg.vendors = vendors.map_err(|e| p.usage(e))?;
    // 256×256 = 2¹⁶ tokens, the most positions a model may have.
    cfg.image_size = p.parse_where("image-size", |s| (1..=256).contains(&s), "lie in 1..=256")?;
    cfg.precision = super::precision(p)?;
    cfg.steps = p.positive("steps", cfg.steps)?;
    cfg.batch = p.positive("batch", cfg.batch)?;
    cfg.accumulation = p.positive("accumulation", cfg.accumulation)?;
    cfg.lr = p.positive("lr", cfg.lr)?;
    cfg.min_lr = p.parse_where("min-lr", |x| x >= 0.0, "be non-negative")?.unwrap_or(cfg.min_lr);
    cfg.warmup = p.parse_or("warmup", cfg.warmup)?;
    let clip = p.parse_where("clip", |x| x >= 0.0, "be non-negative (0: no clipping)")?;
    cfg.clip = clip.map_or(cfg.clip, |c| (c > 0.0).then_some(c));
    let decay = p.parse_where("weight-decay", |x| x >= 0.0, "be non-negative")?;
    cfg.adamw.weight_decay = decay.unwrap_or(cfg.adamw.weight_decay);
    cfg.seed = p.parse_or("seed", cfg.seed)?;
    cfg.flip = p.switch("flip");
    cfg.eval_every = p.positive("eval-every", cfg.eval_every)?;
    cfg.checkpoint_every = p.positive("checkpoint-every", cfg.checkpoint_every)?;
    cfg.save_every = p.parse_or("save-every", 0usize)?;
    cfg.objective = match p.str("objective").unwrap_or("ar") {
        "ar" => TrainObjective::Autoregressive,
        "bert" => TrainObjective::Bert,
        other => {
            return Err(p.usage(format!("--objective must be ar or bert, got '{other}'")).into())
        }
    };
    // What is left are combinations (min-lr above lr, a batch that does not split into
    // micro-batches): flags only, so a usage error too.
    cfg.validate().map_err(|e| p.usage(e))?;
    check_data_options(data_spec, cfg.image_size, cfg.vendors.as_deref())
        .map_err(|e| p.usage(e))?;
    Ok(cfg)
}

/// The preset a data set trains by default.
fn default_config(data: &str) -> &'static str {
    if data == "digits" {
        "digits"
    } else if data.starts_with("emoji:") {
        "emoji"
    } else {
        "small"
    }
}

/// Writes `train.npy`, `test.npy` (int64 `[N, H·W]` palette ids, no start token) and
/// `train_labels.npy`, `test_labels.npy` (int64 `[N]`) into `dir`.
fn export_tokens(data: &Splits, dir: &Path) -> igpt::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| igpt::Error::io(dir, e))?;
    for (name, set) in [("train", &data.train), ("test", &data.test)] {
        let tokens = set.tokens.iter().map(|&t| i64::from(t)).collect();
        let labels = set.labels.iter().map(|&l| i64::from(l)).collect();
        let shape = vec![set.len(), set.seq_len()];
        write_npy(&dir.join(format!("{name}.npy")), &NpyArray::new(shape, NpyData::I64(tokens))?)?;
        let labels = NpyArray::new(vec![set.len()], NpyData::I64(labels))?;
        write_npy(&dir.join(format!("{name}_labels.npy")), &labels)?;
    }
    Ok(())
}

/// `runs/digits`, `runs/cifar10`, `runs/emoji`, or `runs/<folder name>`.
fn default_out(data: &str) -> PathBuf {
    let name = if data == "digits" {
        "digits".to_string()
    } else if data.starts_with("cifar10:") {
        "cifar10".to_string()
    } else if data.starts_with("emoji:") {
        "emoji".to_string()
    } else {
        Path::new(data).file_name().map_or("images".into(), |n| n.to_string_lossy().into_owned())
    };
    Path::new("runs").join(name)
}

/// `step 120/1000  loss 1.2345 nats (1.781 bits)  lr 2.90e-03  31.2k tok/s  ETA 1m23s`
fn print_progress(p: &Progress) {
    let r = p.row;
    let test = r.test_loss.map_or(String::new(), |t| {
        format!("  test {t:.4} ({:.3} bits)", t / std::f64::consts::LN_2)
    });
    eprintln!(
        "step {:>6}/{}  loss {:.4} nats ({:.3} bits){test}  lr {:.2e}  {:.1}k tok/s  ETA {}",
        r.step,
        p.total_steps,
        r.train_loss,
        r.train_loss / std::f64::consts::LN_2,
        r.lr,
        r.tokens_per_s / 1e3,
        duration(p.eta)
    );
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
