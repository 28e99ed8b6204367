//! The `igpt` command: a thin layer that parses arguments and calls the library.
//!
//! Exit status, decided in one place ([`exit_status`]):
//! - 0 on success (and for `--help`);
//! - 2 for a usage error ([`Failure::Usage`]): an unknown command or flag, a missing, empty or
//!   unparsable value, a value outside its flag's range, a combination of flags that cannot go
//!   together, a flag value that does not fit the data it applies to, or sizes asked for by
//!   flags that do not fit in memory. Commands decide this where they read and check their
//!   flags (`igpt::args`), so it never depends on the wording of a library error;
//! - 1 when the work fails ([`Failure::Error`]): a missing, unreadable or malformed file, a file
//!   that does not fit another one or the memory, a failed verification, a diverged run.
mod bench;
mod finetune;
mod model;
mod palette;
mod probe;
mod sample;
mod train;

use igpt::args::{Flag, Parsed, Stop};
use igpt::model::Precision;

/// Why a subcommand stopped short of success.
pub enum Failure {
    /// `--help`, or a usage error (exit 2).
    Usage(Stop),
    /// The work failed (exit 1).
    Error(igpt::Error),
}

impl From<Stop> for Failure {
    fn from(s: Stop) -> Self {
        Failure::Usage(s)
    }
}

impl From<igpt::Error> for Failure {
    fn from(e: igpt::Error) -> Self {
        Failure::Error(e)
    }
}

type Run = fn(&[String]) -> Result<(), Failure>;

/// The most worker threads `--threads` may ask for: far beyond any core count igpt runs on,
/// small enough that thread stacks cannot exhaust memory.
const MAX_THREADS: usize = 1024;

/// The worker pool of `--threads N` (1..=[`MAX_THREADS`]; absent: one thread per core). Kernels
/// and sgemm tiles run on it.
fn thread_pool(p: &Parsed) -> Result<rayon::ThreadPool, Failure> {
    let rule = format!("lie in 1..={MAX_THREADS} (leave it out for one thread per core)");
    let threads = p.parse_where("threads", |n| (1..=MAX_THREADS).contains(&n), &rule)?;
    rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).build().map_err(|e| {
        igpt::Error::invalid(format!("cannot start {threads:?} worker threads: {e}")).into()
    })
}

/// The `--precision` flag of the commands that run a model's products.
const PRECISION: Flag = Flag::one(
    "precision",
    "f32|bf16",
    "arithmetic of the linear and attention products: f32 (default, the reference) or bf16 mixed precision (SPEC §21)",
);

/// `--precision` (default f32); anything else is a usage error.
fn precision(p: &Parsed) -> Result<Precision, Failure> {
    let Some(name) = p.str("precision") else { return Ok(Precision::F32) };
    name.parse().map_err(|e: String| p.usage(format!("--precision: {e}")).into())
}

/// Refuses, as a usage error naming `what` (the flags that ask for it), an estimate of `bytes`
/// that does not fit the memory budget (`igpt::admission`).
fn admit(p: &Parsed, what: &str, bytes: f64) -> Result<(), Failure> {
    igpt::admission::admit(what, bytes).map_err(|e| p.usage(e).into())
}

/// `Model::load(dir)`, then the blocks freed while loading (the file's tensors, which no later
/// work reuses) go back to the system instead of waiting in the binary's allocator cache:
/// without this, `igpt sample` on igpt-s peaked 292 MiB higher (see `igpt::memory`).
fn load_model(dir: &std::path::Path) -> igpt::Result<igpt::model::Model> {
    let model = igpt::model::Model::load(dir)?;
    crate::ALLOC.release();
    Ok(model)
}

/// The subcommands: name, one-line summary, entry point.
const COMMANDS: &[(&str, &str, Run)] = &[
    ("train", "train a model (default: the digits preset on the embedded digits)", train::run),
    ("sample", "draw images from a model into a PNG grid", sample::sample),
    ("complete", "complete the bottom of images, like the paper's figure", sample::complete_cmd),
    ("finetune", "fine-tune a classification head (joint loss, early stopping)", finetune::run),
    ("probe", "linear-probe accuracy of a model's features at every layer", probe::run),
    ("palette", "fit a k-means colour palette (igpt palette fit …)", palette::palette),
    ("quantize", "turn images into token ids with a palette", palette::quantize),
    ("init", "create a model with the paper's initialisation", model::init),
    ("forward", "run a model on token ids and save logits / hidden states", model::forward),
    ("golden", "write a golden file (a model's or one kernel's reference numbers)", model::golden),
    ("verify", "compare a candidate against a golden file", model::verify_cmd),
    ("bench", "measure kernels; one JSON object per line", bench::run),
];

fn top_help() -> String {
    let mut s = String::from(
        "igpt — Image GPT (Chen et al., 2020) from scratch, in Rust\n\nUsage: igpt COMMAND [FLAGS]\n\nCommands:\n",
    );
    for (name, about, _) in COMMANDS {
        s.push_str(&format!("  {name:<10} {about}\n"));
    }
    s.push_str("\nRun 'igpt COMMAND --help' for the flags of a command.\n");
    s
}

/// Runs the command line `argv` (without the program name); returns the exit status.
pub fn main(argv: &[String]) -> i32 {
    let Some(first) = argv.first() else {
        eprint!("{}", top_help());
        return 2;
    };
    if first == "--help" || first == "-h" || first == "help" {
        print!("{}", top_help());
        return 0;
    }
    if first == "--version" {
        println!("igpt {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let Some((_, _, run)) = COMMANDS.iter().find(|(name, _, _)| name == first) else {
        eprintln!("igpt: unknown command '{first}' (see 'igpt --help')");
        return 2;
    };
    if let Err(e) = igpt::admission::budget() {
        eprintln!("igpt: {e}");
        return 2;
    }
    match run(&argv[1..]) {
        Ok(()) => 0,
        Err(failure) => exit_status(first, failure),
    }
}

/// Prints why `command` stopped and returns its exit status: the one place that maps a
/// [`Failure`] to 0, 1 or 2 (see the module doc).
fn exit_status(command: &str, failure: Failure) -> i32 {
    match failure {
        Failure::Usage(Stop::Help(text)) => {
            print!("{text}");
            0
        }
        Failure::Usage(Stop::Usage(msg)) => {
            eprintln!("{msg}");
            2
        }
        Failure::Error(e) => {
            eprintln!("igpt {command}: error: {e}");
            1
        }
    }
}
