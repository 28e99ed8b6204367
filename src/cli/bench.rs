//! `igpt bench WHAT`: benchmarks printing one JSON object per line on stdout.

use super::Failure;
use igpt::args::{parse, Command, Flag, Stop};
use igpt::bench::{bench_sgemm, bench_train};
use igpt::model::Config;
use igpt::palette::{bench_kmeans, load_pixels_npy, KMeansOptions};
use std::path::Path;

const CMD: Command = Command {
    name: "igpt bench",
    about:
        "Measure igpt's kernels; prints one JSON object per measurement (median of several runs).",
    positionals: &[("WHAT", "sgemm | train | kmeans")],
    flags: &[
        Flag::one("config", "NAME", "train: one preset (default: digits 64x64, small 4x1024, igpt-s 1x1024)"),
        Flag::one("batch", "B", "train: batch size for --config"),
        Flag::one("seq", "T", "train: tokens per sequence for --config (default n_positions)"),
        Flag::one("size", "N", "sgemm: one square size N (default: 256, 512, 1024, 2048)"),
        Flag::one("pixels", "FILE", "kmeans: pixels .npy (N, 3) to cluster (e.g. a photo set)"),
        Flag::one("k", "K", "kmeans: number of clusters (default 512)"),
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
        "kmeans" => {
            let file = p.str("pixels").ok_or_else(|| Stop::Usage("igpt bench kmeans: --pixels FILE is required".into()))?;
            let (points, channels) = load_pixels_npy(Path::new(file))?;
            let k = p.parse_or("k", 512usize)?;
            let b = pool.install(|| bench_kmeans(&points, channels, k, reps, &KMeansOptions::default()))?;
            println!(
                "{{\"bench\":\"kmeans\",\"n\":{},\"k\":{},\"threads\":{},\"median_s\":{:.3},\"init_s\":{:.3},\"lloyd_s\":{:.3},\"inertia\":{},\"iterations\":{}}}",
                b.n, b.k, b.threads, b.seconds, b.init_seconds, b.lloyd_seconds, b.inertia, b.iterations
            );
            Ok(())
        }
        "train" => {
            let shapes = match p.str("config") {
                Some(name) => {
                    let config = Config::preset(name)?;
                    let seq = p.parse_or("seq", config.n_positions)?;
                    vec![(name.to_string(), p.parse_or("batch", 4usize)?, seq)]
                }
                None => vec![("digits".into(), 64, 64), ("small".into(), 4, 1024), ("igpt-s".into(), 1, 1024)],
            };
            for (name, batch, seq) in shapes {
                let config = Config::preset(&name)?;
                println!("{}", pool.install(|| bench_train(&name, config, batch, seq, reps))?.json());
            }
            Ok(())
        }
        other => Err(Stop::Usage(format!(
            "igpt bench: unknown benchmark '{other}' (see 'igpt bench --help')"
        ))
        .into()),
    }
}
