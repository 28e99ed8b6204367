//! The `igpt` command: a thin layer that parses arguments and calls the library.
//!
//! Exit status: 0 on success, 1 when the work fails (a bad file, a failed verification),
//! 2 on a usage error (unknown flag, missing or unparsable value).

mod bench;
mod finetune;
mod model;
mod palette;
mod probe;
mod sample;
mod train;

use igpt::args::Stop;

/// What a subcommand returns: success, a usage problem, or a runtime error.
pub enum Failure {
    Usage(Stop),
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

/// The worker pool of `--threads N` (0: one thread per core). Kernels and sgemm tiles run on it.
fn thread_pool(threads: usize) -> Result<rayon::ThreadPool, Failure> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| igpt::Error::invalid(format!("cannot start {threads} threads: {e}")).into())
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
    match run(&argv[1..]) {
        Ok(()) => 0,
        Err(Failure::Usage(Stop::Help(text))) => {
            print!("{text}");
            0
        }
        Err(Failure::Usage(Stop::Usage(msg))) => {
            eprintln!("{msg}");
            2
        }
        Err(Failure::Error(e)) => {
            eprintln!("igpt {first}: error: {e}");
            1
        }
    }
}
