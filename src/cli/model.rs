//! `igpt init`, `igpt forward`, `igpt golden`, `igpt verify`: models and golden files.

use super::Failure;
use igpt::admission;
use igpt::args::{parse, Command, Flag, Parsed};
use igpt::golden::{
    model_golden, op_golden, random_tokens, suite_files, verify, verify_suite, write_suite_with,
    zero_head, GoldenOptions, Kind, SuiteOptions, SuiteSize, Tolerance, MANIFEST,
};
use igpt::io::safetensors::SafeTensors;
use igpt::model::footprint;
use igpt::model::hf::load_config;
use igpt::model::{Config, Model, Objective, Scheme, TokenBatch};
use igpt::train::AdamWConfig;
use igpt::Error;
use std::path::Path;

/// `--config NAME|config.json`: a preset name or a path to an HF `config.json` (or a model
/// directory). An unknown preset, or one whose weights do not fit in memory, is a usage error; a
/// config file that is malformed or too large is failed work.
pub fn config_arg(p: &Parsed, spec: &str) -> Result<Config, Failure> {
    let path = Path::new(spec);
    if path.extension().is_some_and(|e| e == "json") {
        let json = igpt::io::json::read_json(path)?;
        return Ok(Config::from_json(&json, spec)?);
    }
    if path.is_dir() {
        return Ok(load_config(path)?);
    }
    let preset = Config::preset(spec).and_then(|c| c.validate(spec).map(|()| c));
    Ok(preset.map_err(|e| p.usage(e))?)
}

const INIT: Command = Command {
    name: "igpt init",
    about: "Create a model with the paper's initialisation (Philox-seeded) and save it as an HF directory.",
    positionals: &[],
    flags: &[
        Flag::one("config", "NAME|FILE", "preset (digits, emoji, tiny, small, igpt-s, igpt-m, igpt-l, igpt-xl) or config.json"),
        Flag::one("out", "DIR", "output model directory"),
        Flag::one("seed", "S", "initialisation seed (default 0)"),
        INIT_FLAG,
    ],
};

/// `--init paper|random`, shared by `igpt init` and `igpt golden --config`.
const INIT_FLAG: Flag = Flag::one(
    "init",
    "paper|random",
    "paper: zero heads and biases, unit norm gains (default); random: those drawn too, heads and biases N(0, 0.02^2), gains 1 + N(0, 0.02^2) (for conformance goldens)",
);

/// The `--init` scheme.
fn scheme_arg(p: &Parsed) -> Result<Scheme, Failure> {
    match p.str("init").unwrap_or("paper") {
        "paper" => Ok(Scheme::Paper),
        "random" => Ok(Scheme::Random),
        other => Err(p.usage(format!("--init must be paper or random, got '{other}'")).into()),
    }
}

pub fn init(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&INIT, argv)?;
    let spec = p.required("config")?;
    let config = config_arg(&p, spec)?;
    let out = Path::new(p.required("out")?);
    let seed = p.parse_or("seed", 0u64)?;
    let scheme = scheme_arg(&p)?;
    // The weights, their safetensors copy and the file's bytes; too many for a config file is
    // failed work, for a preset a usage error.
    let what =
        format!("--config {spec}: initialising and saving {} parameters", config.n_params(true));
    let bytes = 3.0 * footprint::weights(&config);
    if Path::new(spec).exists() {
        admission::admit(&what, bytes)?;
    } else {
        super::admit(&p, &what, bytes)?;
    }
    let model = Model::init_with(config, seed, scheme)?;
    model.save(out)?;
    eprintln!("igpt init: {} parameters written to {}", model.n_params(), out.display());
    Ok(())
}

const FORWARD: Command = Command {
    name: "igpt forward",
    about:
        "Run a model in eval mode on token ids (fed as given, no SOS added) and save its logits.",
    positionals: &[],
    flags: &[
        Flag::one("model", "DIR", "HF model directory (config.json + model.safetensors)"),
        Flag::one("tokens", "FILE", "token ids, .npy int32/int64 [B, T]"),
        Flag::one("out", "FILE", "output .safetensors: logits [B, T, V-1] (and hidden_states.{l})"),
        Flag::switch("hidden-states", "also save hidden_states.{l} as HF defines them"),
        super::PRECISION,
    ],
};

pub fn forward(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&FORWARD, argv)?;
    let mut model = super::load_model(Path::new(p.required("model")?))?;
    model.precision = super::precision(&p)?;
    let tokens = p.required("tokens")?;
    let batch = TokenBatch::read_npy(Path::new(tokens), &model.config)?;
    let what = format!("{tokens}: a forward pass of {} × {} tokens", batch.batch, batch.seq);
    admission::admit(&what, footprint::forward(&model.config, batch.batch, batch.seq))?;
    let out = model.forward(&batch, p.switch("hidden-states"));
    let mut st = SafeTensors::new();
    if let Some(l) = &out.logits {
        st.push_f32("logits", l.shape(), l.data())?;
    }
    if let Some(s) = &out.score {
        st.push_f32("score", s.shape(), s.data())?;
    }
    for (l, h) in out.hidden_states.iter().enumerate() {
        st.push_f32(&format!("hidden_states.{l}"), h.shape(), h.data())?;
    }
    st.write(Path::new(p.required("out")?))?;
    Ok(())
}

const GOLDEN: Command = Command {
    name: "igpt golden",
    about: "Write a golden file: a model's outputs and gradients, or one kernel's (--op); or the whole conformance suite (--suite DIR).",
    positionals: &[],
    flags: &[
        Flag::one("model", "DIR", "HF model directory (or use --config and --seed)"),
        Flag::one("config", "NAME|FILE", "initialise this config in memory from --seed instead of --model"),
        INIT_FLAG,
        Flag::switch("allow-zero-head", "write a model golden even if a head is all zero (its logits and trunk gradients are then exactly zero and test nothing)"),
        Flag::one("tokens", "FILE", "token ids .npy [B, T] (default: random ids from --seed)"),
        Flag::one("labels", "FILE", "class labels .npy [B] (classification models)"),
        Flag::one("batch", "B", "random tokens: batch size (default 2)"),
        Flag::one("seq", "T", "random tokens: sequence length (default n_positions)"),
        Flag::one("seed", "S", "seed for --config initialisation, random tokens and op inputs (default 0)"),
        Flag::one("steps", "K", "also record the losses and parameters after K AdamW steps"),
        Flag::one("lr", "X", "AdamW learning rate for --steps (default 1e-3)"),
        Flag::one("weight-decay", "X", "AdamW decoupled weight decay for --steps (default 0)"),
        Flag::one("op", "NAME", "a per-op golden instead: linear, norm, quick_gelu, gelu_tanh, attention, attention_bidirectional, cross_entropy, embedding, sample, decode"),
        Flag::one("shape", "A,B,..", "the op's shape (linear N,IN,OUT; norm, quick_gelu, gelu_tanh N,D; attention, decode B,H,T,D; cross_entropy N,V; embedding V,D,N; sample N,V)"),
        Flag::one("out", "FILE", "output .safetensors"),
        Flag::one("suite", "DIR", "write the conformance suite into DIR instead: op goldens at edge shapes, model goldens of every objective, the decode step, bf16 variants, and manifest.json (only --seed, --small and --only apply)"),
        Flag::switch("small", "with --suite: the small suite (every op kind and model case at small shapes, a d = 16 model; ~0.6 MB)"),
        Flag::one("only", "PREFIX,..", "with --suite: only the files whose names start with one of these prefixes (e.g. op.attention,model.bert); the manifest lists just them"),
        super::PRECISION,
    ],
};

pub fn golden(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&GOLDEN, argv)?;
    let seed = p.parse_or("seed", 0u64)?;
    if let Some(dir) = p.str("suite") {
        return golden_suite(&p, Path::new(dir), seed);
    }
    if let Some(flag) = ["small", "only"].into_iter().find(|&n| p.switch(n)) {
        return Err(p.usage(format!("--{flag} applies to --suite only")).into());
    }
    let out = Path::new(p.required("out")?);
    let st = match p.str("op") {
        // Every input of an op golden is a flag: whatever it refuses is a usage error.
        Some(op) => {
            let precision = super::precision(&p)?;
            op_golden(op, &parse_shape(&p)?, seed, precision).map_err(|e| p.usage(e))?
        }
        None => model_golden_from_args(&p, seed)?,
    };
    st.write(out)?;
    eprintln!("igpt golden: {} tensors written to {}", st.tensors.len(), out.display());
    Ok(())
}

/// `--suite DIR`: the suite from `--seed` (`--small`: the small one; `--only`: some of its
/// files); any other flag that shapes a golden is a usage error (the suite fixes them), as is a
/// prefix that names no file.
fn golden_suite(p: &Parsed, dir: &Path, seed: u64) -> Result<(), Failure> {
    let own = ["suite", "seed", "small", "only"];
    let fixed = GOLDEN.flags.iter().map(|f| f.name).filter(|n| !own.contains(n));
    if let Some(flag) = fixed.into_iter().find(|&n| p.switch(n)) {
        return Err(p
            .usage(format!("--suite fixes every golden; --{flag} cannot go with it"))
            .into());
    }
    let size = if p.switch("small") { SuiteSize::Small } else { SuiteSize::Full };
    let only: Vec<String> = match p.str("only") {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        None => Vec::new(),
    };
    if only.iter().any(String::is_empty) {
        return Err(p.usage("--only takes comma-separated file-name prefixes, none empty").into());
    }
    let names = suite_files(size);
    if let Some(bad) = only.iter().find(|x| !names.iter().any(|n| n.starts_with(x.as_str()))) {
        let msg = format!("--only {bad:?} names no file of the {} suite", size.name());
        return Err(p.usage(format!("{msg} (its files: {})", names.join(", "))).into());
    }
    let n = write_suite_with(dir, &SuiteOptions { seed, size, only })?;
    eprintln!("igpt golden: {n} golden files and {MANIFEST} written to {}", dir.display());
    Ok(())
}

/// `--shape A,B,…`: sizes, comma-separated (the op checks how many and that they are positive).
fn parse_shape(p: &Parsed) -> Result<Vec<usize>, Failure> {
    let s = p.required("shape")?;
    s.split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| p.usage(format!("--shape must be comma-separated sizes, got '{s}'")).into())
}

fn model_golden_from_args(p: &Parsed, seed: u64) -> Result<SafeTensors, Failure> {
    let (mut model, seed_used) = match (p.str("model"), p.str("config")) {
        (Some(dir), None) => (super::load_model(Path::new(dir))?, None),
        (None, Some(c)) => (Model::init_with(config_arg(p, c)?, seed, scheme_arg(p)?)?, Some(seed)),
        _ => {
            let msg = "give exactly one of --model DIR or --config NAME (or --op)";
            return Err(p.usage(msg).into());
        }
    };
    model.precision = super::precision(p)?;
    let batch = match p.str("tokens") {
        Some(path) => {
            let batch = TokenBatch::read_npy(Path::new(path), &model.config)?;
            let (b, t) = (batch.batch, batch.seq);
            let what = format!("{path}: a golden of {b} × {t} tokens");
            admission::admit(&what, footprint::golden(&model.config, b, t))?;
            batch
        }
        None => random_batch(p, &model.config, seed)?,
    };
    let objective = match p.str("labels") {
        Some(path) => Objective::Classify { labels: read_labels(Path::new(path), batch.batch)? },
        None => Objective::HfShifted,
    };
    let weight_decay = p.parse_where("weight-decay", |x| x >= 0.0, "be non-negative")?;
    let opts = GoldenOptions {
        // 0 steps: no AdamW record.
        steps: p.parse_or("steps", 0usize)?,
        lr: p.positive("lr", 1e-3f64)?,
        adamw: AdamWConfig { weight_decay: weight_decay.unwrap_or(0.0), ..AdamWConfig::default() },
        seed: seed_used.or(p.str("tokens").is_none().then_some(seed)),
    };
    refuse_zero_head(p, &model, &objective)?;
    Ok(model_golden(&model, &batch, &objective, &opts)?)
}

/// A golden of a model whose head is all zero (a fresh paper init) checks only that zeros are
/// zero: refused, naming the remedies, unless `--allow-zero-head` asks for it.
fn refuse_zero_head(p: &Parsed, model: &Model, objective: &Objective) -> Result<(), Failure> {
    match zero_head(model, objective) {
        Some(head) if !p.switch("allow-zero-head") => Err(p
            .usage(format!(
                "{head} is all zero, so the golden's logits and trunk gradients would be \
                 exactly zero; use a trained model, --init random, or --allow-zero-head"
            ))
            .into()),
        _ => Ok(()),
    }
}

/// `--batch B --seq T` random tokens, once their golden fits in memory.
fn random_batch(p: &Parsed, config: &Config, seed: u64) -> Result<TokenBatch, Failure> {
    let b = p.positive("batch", 2usize)?;
    let positions = config.n_positions;
    let t = p.parse_where(
        "seq",
        |t| (1..=positions).contains(&t),
        &format!("lie in 1..={positions} (n_positions)"),
    )?;
    let t = t.unwrap_or(positions);
    let what = format!("--batch {b} --seq {t}: a golden of {b} × {t} tokens");
    super::admit(p, &what, footprint::golden(config, b, t))?;
    Ok(random_tokens(config, b, t, seed, true)?)
}

fn read_labels(path: &Path, b: usize) -> Result<Vec<usize>, Failure> {
    let origin = path.display().to_string();
    let a = igpt::io::npy::read_npy(path)?;
    let labels = a.data.to_i64().filter(|_| a.shape == [b]).ok_or_else(|| {
        Error::format(
            &origin,
            format!(
                "labels must be integers of shape [{b}], got {} {:?}",
                a.data.dtype_name(),
                a.shape
            ),
        )
    })?;
    labels
        .iter()
        .map(|&l| {
            usize::try_from(l)
                .map_err(|_| Error::format(&origin, format!("negative label {l}")).into())
        })
        .collect()
}

const VERIFY: Command = Command {
    name: "igpt verify",
    about: "Compare a candidate's tensors with a golden file, or a directory of candidates with a suite (SPEC §7, §13.3): element i passes if |a_i-b_i| <= atol + rtol*max_j|b_j| + slack_i (b the reference); integer tensors must be equal. Exit 0: every reference tensor passed; 1: a tensor or file failed or is missing, or a file is bad; 2: usage error.",
    positionals: &[],
    flags: &[
        Flag::one("reference", "FILE", "the golden .safetensors (every tensor in it is checked)"),
        Flag::one("candidate", "FILE", "the .safetensors to check"),
        Flag::one("suite", "DIR", "instead: every golden DIR/manifest.json lists (igpt golden --suite) ..."),
        Flag::one("candidates", "DIR2", "... against the same-named files in DIR2, in one table (a missing file fails)"),
        Flag::one("rtol", "R", "replace the golden's rtol for every tensor (default: its metadata, else 1e-4)"),
        Flag::one("atol", "A", "replace the golden's atol for every tensor (default: its metadata, else 0)"),
        Flag::switch("json", "print one JSON document instead of the table"),
        Flag::one("precision", "f32|bf16", "hold the candidate to this precision's class at the golden's reduction (default: the class the golden records; SPEC §7, §21.5)"),
    ],
};

pub fn verify_cmd(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&VERIFY, argv)?;
    let non_negative = |x: f64| x >= 0.0;
    let rtol = p.parse_where("rtol", non_negative, "be non-negative")?;
    let atol = p.parse_where("atol", non_negative, "be non-negative")?;
    let precision = match p.str("precision") {
        Some(_) => Some(super::precision(&p)?),
        None => None,
    };
    // The tolerance one golden is held to: its recorded class, or --precision's at its recorded
    // reduction; then --rtol and --atol.
    let tolerance = |reference: &SafeTensors, origin: &str| -> igpt::Result<Tolerance> {
        let recorded = reference.get_metadata("tolerances");
        let mut tol = match precision {
            None => Tolerance::from_metadata(recorded, origin)?,
            Some(precision) => {
                let kind = match reference.get_metadata("kind") {
                    Some("model") => Kind::Model,
                    _ => Kind::Op,
                };
                let reduction = Tolerance::recorded_reduction(recorded, origin)?;
                Tolerance::for_golden(kind, precision, reduction).0
            }
        };
        (tol.rtol, tol.atol) = (rtol.unwrap_or(tol.rtol), atol.unwrap_or(tol.atol));
        Ok(tol)
    };
    match (p.str("suite"), p.str("candidates")) {
        (Some(dir), Some(candidates)) if !p.switch("reference") && !p.switch("candidate") => {
            verify_suite_cmd(&p, Path::new(dir), Path::new(candidates), &tolerance)
        }
        (None, None) => verify_file(&p, &tolerance),
        _ => Err(p
            .usage("give --reference FILE --candidate FILE, or --suite DIR --candidates DIR2")
            .into()),
    }
}

/// `--reference FILE --candidate FILE`: one golden, a table of its tensors.
fn verify_file(
    p: &Parsed,
    tolerance: &dyn Fn(&SafeTensors, &str) -> igpt::Result<Tolerance>,
) -> Result<(), Failure> {
    let ref_path = p.required("reference")?;
    let cand_path = p.required("candidate")?;
    let reference = SafeTensors::read(Path::new(ref_path))?;
    let candidate = SafeTensors::read(Path::new(cand_path))?;
    let report = verify(&reference, &candidate, &tolerance(&reference, ref_path)?);
    if p.switch("json") {
        println!("{}", report.to_json(ref_path, cand_path)?);
    } else {
        print!("{}", report.to_text());
    }
    if !report.passed() {
        let msg = format!("{cand_path}: {} tensors of {ref_path} failed", report.failed());
        return Err(Error::invalid(msg).into());
    }
    Ok(())
}

/// `--suite DIR --candidates DIR2`: every golden of a suite, a table of its files.
fn verify_suite_cmd(
    p: &Parsed,
    dir: &Path,
    candidates: &Path,
    tolerance: &dyn Fn(&SafeTensors, &str) -> igpt::Result<Tolerance>,
) -> Result<(), Failure> {
    let report = verify_suite(dir, candidates, tolerance)?;
    if p.switch("json") {
        println!("{}", report.to_json()?);
    } else {
        print!("{}", report.to_text());
    }
    if !report.passed() {
        let (n, total) = (report.failed(), report.files.len());
        let msg = format!(
            "{}: {n} of {total} files of the suite {} failed",
            candidates.display(),
            dir.display()
        );
        return Err(Error::invalid(msg).into());
    }
    Ok(())
}
