//! `igpt bench WHAT`: benchmarks printing one JSON object per line on stdout.

use super::Failure;
use igpt::args::{parse, Command, Flag, Stop};
use igpt::bench::bench_sgemm;

const CMD: Command = Command {
    name: "igpt bench",
    about:
        "Measure igpt's kernels; prints one JSON object per measurement (median of several runs).",
    positionals: &[("WHAT", "sgemm")],
    flags: &[
        Flag::one("size", "N", "sgemm: one square size N (default: 256, 512, 1024, 2048)"),
        Flag::one("reps", "R", "timed repetitions per measurement (default 7)"),
        Flag::one("threads", "N", "worker threads (default: all cores)"),
    ],
};

pub fn run(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&CMD, argv)?;
    let reps = p.parse_or("reps", 7usize)?;
    let threads = p.parse_or("threads", 0usize)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| igpt::Error::invalid(format!("cannot start {threads} threads: {e}")))?;
    match p.positional(0) {
        "sgemm" => {
            let sizes = match p.parse_opt::<usize>("size")? {
                Some(0) => {
                    return Err(Stop::Usage("igpt bench: --size must be positive".into()).into())
                }
                Some(n) => vec![n],
                None => vec![256, 512, 1024, 2048],
            };
            for n in sizes {
                println!("{}", pool.install(|| bench_sgemm(n, n, n, reps)).json());
            }
            Ok(())
        }
        other => Err(Stop::Usage(format!(
            "igpt bench: unknown benchmark '{other}' (see 'igpt bench --help')"
        ))
        .into()),
    }
}
