//! The conformance suite (`igpt golden --suite DIR`): one directory of golden files that covers
//! every op at its edge shapes, the model under every objective and both activations with
//! AdamW steps, the KV-cache decode step, and bf16 variants — plus `manifest.json`, which says
//! what each file covers and how it is judged. [`verify_suite`](super::suite_verify::verify_suite) checks a whole directory of a
//! port's candidate files against it (`igpt verify --suite DIR --candidates DIR2`).
//!
//! ## What is covered, and why these shapes
//! Fast kernels tile their loops, and their bugs live at the tile edges: a sequence length that
//! is not a multiple of the attention tile (64), a single row or position (`N = 1`, `T = 1`:
//! an empty KV cache), head widths 32/64/80/128 (80 is not a power of two), fewer `B·H` pairs
//! than a machine has threads (a kernel that splits work only across them idles or skips), and
//! the 513-entry vocabulary of the published models (not a multiple of any vector width). The
//! model goldens are small random-weight models (`Scheme::Random`: no zero head, bias or unit
//! gain a port could ignore) under every objective a port trains with, with AdamW steps.
//!
//! Every input is drawn from the suite's seed, so the directory is a pure function of the
//! igpt version, the seed and the options; the whole suite takes under a second to write.
//!
//! The **small** suite ([`SuiteSize::Small`], `--small`) has every op kind, both bf16
//! products and every model case at small shapes (a d = 16 model): its candidate files are
//! small enough to commit (`tests/fixtures/port/`). `--only PREFIX,…` ([`SuiteOptions::only`])
//! writes only the files whose names start with a prefix, for a port built one op at a time.
//!
//! ## manifest.json
//! ```text
//! {"format": "igpt-golden-suite", "version": 1, "igpt_version", "seed" (a decimal string),
//!  "size": "full"|"small", "only": [prefixes; empty: every file],
//!  "files": [{"file", "kind": "op"|"model", "covers", "seed", "precision", "tolerance",
//!             op: "op", "shape"; model: "objective", "activation", "batch", "seq", "steps",
//!             "lr", "config"; "tensors": [{"name", "dtype", "shape"}]}]}
//! ```
//! `tolerance` is the file's `tolerances` metadata (class, reduction, rtol, atol; SPEC §7.1).

use super::verify::dims;
use super::{model_golden, op_golden, random_tokens, GoldenOptions};
use crate::error::{Error, Result};
use crate::io::json::{parse_json, write_json, Json};
use crate::io::safetensors::SafeTensors;
use crate::kernels::Precision;
use crate::model::{bert_mask, Activation, Config, Model, Objective, Scheme, TokenBatch};
use crate::rng::Philox;
use crate::train::AdamWConfig;
use std::path::Path;

/// The manifest's file name inside a suite directory.
pub const MANIFEST: &str = "manifest.json";

/// One op golden of the suite: op, shape, precision, and the edges it covers.
type OpCase = (&'static str, &'static [usize], Precision, &'static str);

const F32: Precision = Precision::F32;
const BF16: Precision = Precision::Bf16;

/// The op goldens. Shapes follow `igpt golden --op`'s (SPEC §13.2).
const OP_CASES: &[OpCase] = &[
    ("linear", &[1, 64, 80], F32, "N = 1"),
    ("linear", &[67, 32, 513], F32, "rows not a multiple of a tile; OUT = V = 513"),
    ("linear", &[67, 64, 96], BF16, "bf16 products (SPEC §21.2), rows past a tile"),
    ("norm", &[1, 80], F32, "N = 1"),
    ("norm", &[67, 128], F32, "rows not a multiple of a tile"),
    ("quick_gelu", &[1, 7], F32, "N = 1, a width below one vector"),
    ("quick_gelu", &[67, 80], F32, "rows not a multiple of a tile"),
    ("gelu_tanh", &[1, 7], F32, "N = 1, a width below one vector"),
    ("gelu_tanh", &[67, 80], F32, "rows not a multiple of a tile"),
    ("attention", &[1, 2, 67, 32], F32, "T = 67, not a multiple of the tile (64); head dim 32"),
    ("attention", &[2, 2, 1, 64], F32, "T = 1; head dim 64"),
    ("attention", &[1, 3, 64, 64], F32, "T = 64, exactly one tile"),
    ("attention", &[1, 1, 129, 80], F32, "head dim 80; B·H = 1 (below any thread count)"),
    ("attention", &[2, 1, 33, 128], F32, "head dim 128; B·H = 2"),
    ("attention", &[1, 2, 67, 32], BF16, "bf16 attention (SPEC §21.2), T past a tile"),
    ("attention", &[2, 1, 33, 128], BF16, "bf16 attention, head dim 128"),
    ("attention_bidirectional", &[1, 2, 67, 32], F32, "T not a multiple of the tile"),
    ("attention_bidirectional", &[2, 2, 1, 64], F32, "T = 1"),
    ("attention_bidirectional", &[1, 1, 65, 80], F32, "head dim 80; B·H = 1"),
    ("attention_bidirectional", &[1, 1, 33, 128], F32, "head dim 128"),
    ("cross_entropy", &[1, 513], F32, "N = 1; V = 513"),
    ("cross_entropy", &[67, 513], F32, "V = 513, rows past a tile"),
    ("embedding", &[513, 32, 1], F32, "N = 1; V = 513"),
    ("embedding", &[513, 64, 67], F32, "V = 513, repeated ids"),
    ("sample", &[1, 513], F32, "N = 1; V = 513"),
    ("sample", &[67, 513], F32, "V = 513, rows past a tile"),
    ("decode", &[2, 2, 1, 64], F32, "T = 1: an empty cache, the token attends to itself"),
    (
        "decode",
        &[1, 2, 67, 32],
        F32,
        "cache of 66 positions (not a multiple of 8 or 64); head dim 32",
    ),
    ("decode", &[1, 4, 65, 64], F32, "cache of exactly one tile (64); head dim 64"),
    ("decode", &[1, 1, 129, 80], F32, "head dim 80; B·H = 1"),
    ("decode", &[2, 1, 33, 128], F32, "head dim 128"),
];

/// The small suite's op goldens (`--small`): every op and both bf16 products at small shapes,
/// so that a port's candidate files can be committed (SPEC §13.4). Fewer edges: bf16 attention
/// keeps `T` past one key tile (its rounding follows the online softmax's tiles, SPEC §21.2).
const SMALL_OP_CASES: &[OpCase] = &[
    ("linear", &[5, 24, 40], F32, "a linear layer, sizes not multiples of a vector"),
    ("linear", &[5, 24, 40], BF16, "bf16 products (SPEC §21.2), the bias starting each chain"),
    ("norm", &[5, 24], F32, "rows of 24"),
    ("quick_gelu", &[3, 7], F32, "a width below one vector"),
    ("gelu_tanh", &[3, 7], F32, "a width below one vector"),
    ("attention", &[2, 2, 9, 16], F32, "B = 2, H = 2: the head layout"),
    ("attention", &[1, 1, 67, 16], F32, "T = 67, past one tile (64)"),
    ("attention", &[1, 1, 67, 16], BF16, "bf16 attention over two key tiles (SPEC §21.2)"),
    ("attention_bidirectional", &[1, 2, 9, 16], F32, "no causal mask"),
    ("cross_entropy", &[5, 33], F32, "V = 33"),
    ("embedding", &[9, 8, 12], F32, "more ids than rows: repeated ids"),
    ("sample", &[8, 33], F32, "the four sampling settings"),
    ("decode", &[1, 2, 9, 16], F32, "a cache of 8 positions"),
    ("decode", &[2, 1, 1, 8], F32, "T = 1: an empty cache, the token attends to itself"),
];

/// One model golden of the suite.
struct ModelCase {
    objective: &'static str,
    activation: Activation,
    precision: Precision,
    covers: &'static str,
}

const MODEL_CASES: &[ModelCase] = &[
    ModelCase {
        objective: "hf_shifted",
        activation: Activation::QuickGelu,
        precision: F32,
        covers: "HF shifted loss (ids fed as given), quick_gelu",
    },
    ModelCase {
        objective: "autoregressive",
        activation: Activation::QuickGelu,
        precision: F32,
        covers: "the paper's autoregressive loss (SOS-shifted input), quick_gelu",
    },
    ModelCase {
        objective: "autoregressive",
        activation: Activation::GeluTanh,
        precision: F32,
        covers: "the autoregressive loss, gelu_tanh",
    },
    ModelCase {
        objective: "bert",
        activation: Activation::QuickGelu,
        precision: F32,
        covers: "BERT: masked embeddings, bidirectional attention",
    },
    ModelCase {
        objective: "classification",
        activation: Activation::GeluTanh,
        precision: F32,
        covers: "classification head (score of the mean-pooled ln_f), gelu_tanh",
    },
    ModelCase {
        objective: "hf_shifted",
        activation: Activation::QuickGelu,
        precision: BF16,
        covers: "bf16 mixed precision (SPEC §21), HF shifted loss",
    },
];

/// The suite's models: 32 colours + SOS, 16 positions, d = 64, 2 layers of 2 heads (head dim
/// 32), the MLP 4d wide; every parameter random. Batch 2 × 16 tokens, 2 AdamW steps. The small
/// suite's: 8 colours + SOS, 8 positions, d = 16, 2 layers of 2 heads (head dim 8).
fn suite_config(size: SuiteSize, activation: Activation, labels: Option<usize>) -> Result<Config> {
    let mut c = Config::preset("tiny")?;
    (c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head) = match size {
        SuiteSize::Full => (33, 16, 64, 2, 2),
        SuiteSize::Small => (9, 8, 16, 2, 2),
    };
    (c.activation, c.num_labels) = (activation, labels);
    Ok(c)
}
const MODEL_BATCH: usize = 2;
const MODEL_STEPS: usize = 2;
const MODEL_LR: f64 = 1e-3;
const CLASSES: usize = 3;

/// Philox streams of the suite's model inputs beside the tokens (stream 0): the labels
/// (word `b` mod K) and the BERT mask (uniform `i` < 0.15, the rate training uses, SPEC §10).
const LABEL_STREAM: u64 = 5;
const MASK_STREAM: u64 = 6;
const MASK_RATE: f32 = 0.15;

/// The objective `name` on `batch`, its targets drawn from `seed`.
fn suite_objective(name: &str, batch: &TokenBatch, seed: u64) -> Objective {
    let philox = Philox::new(seed);
    match name {
        "autoregressive" => Objective::Autoregressive,
        "bert" => {
            let mut mask = bert_mask(philox, MASK_STREAM, batch.ids.len(), MASK_RATE);
            // A draw that masks nothing (0.55 % of seeds at 32 positions) would leave BERT no
            // loss: position 0 is masked instead, so every seed has a suite.
            if !mask.contains(&true) {
                mask[0] = true;
            }
            Objective::Bert { mask }
        }
        "classification" => Objective::Classify {
            labels: (0..batch.batch as u64)
                .map(|b| philox.u32_at(LABEL_STREAM, b) as usize % CLASSES)
                .collect(),
        },
        _ => Objective::HfShifted,
    }
}

/// A file's name: `op.{op}.{shape, x-separated}[.bf16]` or `model.{objective}.{activation}[.bf16]`.
fn file_name(stem: &str, precision: Precision) -> String {
    match precision {
        Precision::F32 => format!("{stem}.safetensors"),
        Precision::Bf16 => format!("{stem}.bf16.safetensors"),
    }
}

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::QuickGelu => "quick_gelu",
        Activation::GeluTanh => "gelu_tanh",
    }
}

/// The manifest entry of a written golden: what every file has, then `specific`.
fn entry(
    name: &str,
    st: &SafeTensors,
    covers: &str,
    seed: u64,
    specific: Vec<(String, Json)>,
) -> Result<Json> {
    let meta = |k: &str| st.get_metadata(k).unwrap_or_default();
    let tolerance = parse_json(meta("tolerances").as_bytes(), name)?;
    let tensors = st.tensors.iter().map(|(n, v)| {
        Json::Object(vec![
            ("name".into(), n.as_str().into()),
            ("dtype".into(), v.dtype.name().into()),
            ("shape".into(), dims(&v.shape)),
        ])
    });
    let mut fields: Vec<(String, Json)> = vec![
        ("file".into(), name.into()),
        ("kind".into(), meta("kind").into()),
        ("covers".into(), covers.into()),
        ("seed".into(), seed.to_string().into()),
        ("precision".into(), meta("precision").into()),
        ("tolerance".into(), tolerance),
    ];
    fields.extend(specific);
    fields.push(("tensors".into(), Json::Array(tensors.collect())));
    Ok(Json::Object(fields))
}

/// Which suite: the full one (edge shapes, about 12 MB) or the small one (`--small`, about
/// 0.6 MB: every op kind and every model case at small shapes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuiteSize {
    Full,
    Small,
}

impl SuiteSize {
    pub fn name(self) -> &'static str {
        match self {
            SuiteSize::Full => "full",
            SuiteSize::Small => "small",
        }
    }

    fn op_cases(self) -> &'static [OpCase] {
        match self {
            SuiteSize::Full => OP_CASES,
            SuiteSize::Small => SMALL_OP_CASES,
        }
    }
}

/// What `write_suite_with` writes: the seed of every input, the size, and (if not empty) only
/// the files whose names start with one of `only`'s prefixes.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    pub seed: u64,
    pub size: SuiteSize,
    pub only: Vec<String>,
}

impl SuiteOptions {
    /// The whole full suite for `seed`.
    pub fn full(seed: u64) -> Self {
        SuiteOptions { seed, size: SuiteSize::Full, only: Vec::new() }
    }

    /// The whole small suite for `seed`.
    pub fn small(seed: u64) -> Self {
        SuiteOptions { seed, size: SuiteSize::Small, only: Vec::new() }
    }

    /// Whether the file `name` is written: no `only`, or a prefix of it in `only`.
    pub fn selects(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| name.starts_with(p.as_str()))
    }
}

fn op_file_name(op: &str, shape: &[usize], precision: Precision) -> String {
    let joined: Vec<String> = shape.iter().map(usize::to_string).collect();
    file_name(&format!("op.{op}.{}", joined.join("x")), precision)
}

fn model_file_name(case: &ModelCase) -> String {
    let stem = format!("model.{}.{}", case.objective, activation_name(case.activation));
    file_name(&stem, case.precision)
}

/// Every file name of the suite of `size`, in the manifest's order (ops, then models).
pub fn suite_files(size: SuiteSize) -> Vec<String> {
    let ops = size.op_cases().iter().map(|&(op, shape, p, _)| op_file_name(op, shape, p));
    ops.chain(MODEL_CASES.iter().map(model_file_name)).collect()
}

/// Writes the selected op goldens into `dir`; returns their manifest entries.
fn write_ops(dir: &Path, opts: &SuiteOptions) -> Result<Vec<Json>> {
    let (seed, mut entries) = (opts.seed, Vec::new());
    for &(op, shape, precision, covers) in opts.size.op_cases() {
        let name = op_file_name(op, shape, precision);
        if !opts.selects(&name) {
            continue;
        }
        let st = op_golden(op, shape, seed, precision)?;
        st.write(&dir.join(&name))?;
        let specific = vec![("op".into(), op.into()), ("shape".into(), dims(shape))];
        entries.push(entry(&name, &st, covers, seed, specific)?);
    }
    Ok(entries)
}

/// Writes the selected model goldens into `dir`; returns their manifest entries.
fn write_models(dir: &Path, opts: &SuiteOptions) -> Result<Vec<Json>> {
    let (seed, mut entries) = (opts.seed, Vec::new());
    for case in MODEL_CASES {
        let name = model_file_name(case);
        if !opts.selects(&name) {
            continue;
        }
        let labels = (case.objective == "classification").then_some(CLASSES);
        let config = suite_config(opts.size, case.activation, labels)?;
        let mut model = Model::init_with(config, seed, Scheme::Random)?;
        model.precision = case.precision;
        let t = model.config.n_positions;
        let sos_first = matches!(case.objective, "hf_shifted" | "classification");
        let batch = random_tokens(&model.config, MODEL_BATCH, t, seed, sos_first)?;
        let objective = suite_objective(case.objective, &batch, seed);
        let golden = GoldenOptions {
            steps: MODEL_STEPS,
            lr: MODEL_LR,
            adamw: AdamWConfig::default(),
            seed: Some(seed),
        };
        let st = model_golden(&model, &batch, &objective, &golden)?;
        st.write(&dir.join(&name))?;
        let specific = vec![
            ("objective".into(), case.objective.into()),
            ("activation".into(), activation_name(case.activation).into()),
            ("batch".into(), MODEL_BATCH.into()),
            ("seq".into(), t.into()),
            ("steps".into(), MODEL_STEPS.into()),
            ("lr".into(), MODEL_LR.into()),
            ("config".into(), model.config.to_json()),
        ];
        entries.push(entry(&name, &st, case.covers, seed, specific)?);
    }
    Ok(entries)
}

/// Writes the whole full suite for `seed` into `dir` (created if needed): every golden, then
/// `manifest.json`. Returns the number of golden files.
pub fn write_suite(dir: &Path, seed: u64) -> Result<usize> {
    write_suite_with(dir, &SuiteOptions::full(seed))
}

/// Writes the suite `opts` asks for into `dir` (created if needed): the selected goldens, then
/// `manifest.json` listing exactly them. A prefix of `opts.only` that names no file of the
/// suite is an error, raised before anything is written. Returns the number of golden files.
pub fn write_suite_with(dir: &Path, opts: &SuiteOptions) -> Result<usize> {
    let names = suite_files(opts.size);
    if let Some(p) = opts.only.iter().find(|p| !names.iter().any(|n| n.starts_with(p.as_str()))) {
        let suite = opts.size.name();
        return Err(Error::invalid(format!(
            "--only {p:?} names no file of the {suite} suite (its files: {})",
            names.join(", ")
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = write_ops(dir, opts)?;
    files.extend(write_models(dir, opts)?);
    let n = files.len();
    let only = opts.only.iter().map(|p| Json::from(p.as_str())).collect();
    let manifest = Json::Object(vec![
        ("format".into(), "igpt-golden-suite".into()),
        ("version".into(), 1usize.into()),
        ("igpt_version".into(), env!("CARGO_PKG_VERSION").into()),
        ("seed".into(), opts.seed.to_string().into()),
        ("size".into(), opts.size.name().into()),
        ("only".into(), Json::Array(only)),
        ("files".into(), Json::Array(files)),
    ]);
    write_json(&dir.join(MANIFEST), &manifest)?;
    Ok(n)
}
