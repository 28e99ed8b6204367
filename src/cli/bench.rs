//! `igpt bench WHAT`: benchmarks printing one JSON object per line on stdout.

use super::Failure;
use igpt::admission;
use igpt::args::{parse, Command, Flag, Parsed};
use igpt::bench::{bench_attention, bench_kmeans};
use igpt::bench::{bench_sample, bench_sgemm, bench_train};
use igpt::model::footprint;
use igpt::model::Config;
use igpt::ops::AttentionDims;
use igpt::palette::{load_pixels_npy, KMeansOptions};
use std::path::Path;

const CMD: Command = Command {
    name: "igpt bench",
    about:
        "Measure igpt's kernels; prints one JSON object per measurement (median of several runs).",
    positionals: &[("WHAT", "sgemm | attention | train | sample | kmeans")],
    flags: &[
        Flag::one(
            "config",
            "NAME",
            "train: one preset (default: digits 64x64, small 4x1024, igpt-s 1x1024)",
        ),
        Flag::one("batch", "B", "train: batch size for --config"),
        Flag::one("seq", "T", "train: tokens per sequence for --config (default n_positions)"),
        Flag::one("dropout", "P", "train: resid_pdrop and embd_pdrop (default: the preset's, 0; igpt train's recipes use 0.1)"),
        Flag::one("size", "N", "sgemm: one square size N (default: 256, 512, 1024, 2048)"),
        Flag::one("shape", "BxHxTxD", "attention: one shape (default 1x8x1024x64 and 4x8x1024x32)"),
        Flag::switch("bidirectional", "attention: no causal mask"),
        Flag::one("tokens", "N", "sample: tokens per sequence (default n_positions)"),
        Flag::one("pixels", "FILE", "kmeans: pixels .npy (N, 3) to cluster (e.g. a photo set)"),
        Flag::one("k", "K", "kmeans: number of clusters (default 512)"),
        super::PRECISION,
        Flag::one("reps", "R", "timed repetitions per measurement (default 7; sample: 3)"),
        Flag::one("threads", "N", "worker threads, 1..=1024 (default: one per core)"),
    ],
};

pub fn run(argv: &[String]) -> Result<(), Failure> {
    let p = parse(&CMD, argv)?;
    let reps = p.positive("reps", 7usize)?;
    let pool = super::thread_pool(&p)?;
    match p.positional(0) {
        "sgemm" => {
            let sizes = match p.positive_opt::<usize>("size")? {
                Some(n) => vec![n],
                None => vec![256, 512, 1024, 2048],
            };
            for n in sizes {
                super::admit(&p, &format!("--size {n}"), admission::sgemm(n))?;
                println!("{}", pool.install(|| bench_sgemm(n, n, n, reps)).json());
            }
            Ok(())
        }
        "attention" => {
            let shapes = match p.str("shape") {
                Some(s) => vec![parse_bhtd(&p, s)?],
                None => vec![[1, 8, 1024, 64], [4, 8, 1024, 32]],
            };
            let causal = !p.switch("bidirectional");
            let precision = super::precision(&p)?;
            for [b, h, t, d] in shapes {
                let what = format!("--shape {b}x{h}x{t}x{d}");
                super::admit(&p, &what, admission::fused_attention(b, h, t, d))?;
                let dims = AttentionDims { batch: b, seq: t, n_head: h, head_dim: d };
                for r in pool.install(|| bench_attention(dims, causal, precision, reps)) {
                    println!("{}", r.json());
                }
            }
            Ok(())
        }
        "sample" => {
            let shapes = match p.str("config") {
                Some(name) => vec![(name.to_string(), p.positive("batch", 1usize)?)],
                None => vec![
                    ("igpt-s".into(), 1),
                    ("igpt-s".into(), 8),
                    ("small".into(), 1),
                    ("small".into(), 8),
                ],
            };
            let reps = p.positive("reps", 3usize)?;
            let precision = super::precision(&p)?;
            for (name, batch) in shapes {
                let config = preset(&p, &name)?;
                let tokens = positions(&p, "tokens", &config)?;
                let what = format!("--config {name} --batch {batch} --tokens {tokens}");
                super::admit(&p, &what, footprint::decoding(&config, batch, tokens))?;
                let shape = (batch, tokens);
                let r = pool.install(|| bench_sample(&name, config, shape, precision, reps))?;
                println!("{}", r.json());
            }
            Ok(())
        }
        "kmeans" => {
            let file =
                p.str("pixels").ok_or_else(|| p.usage("kmeans: --pixels FILE is required"))?;
            let k = p.positive("k", 512usize)?;
            let (points, channels) = load_pixels_npy(Path::new(file))?;
            let b = pool
                .install(|| bench_kmeans(&points, channels, k, reps, &KMeansOptions::default()))?;
            println!(
                "{{\"bench\":\"kmeans\",\"n\":{},\"k\":{},\"threads\":{},\"median_s\":{:.3},\"init_s\":{:.3},\"lloyd_s\":{:.3},\"inertia\":{},\"iterations\":{}}}",
                b.n, b.k, b.threads, b.seconds, b.init_seconds, b.lloyd_seconds, b.inertia, b.iterations
            );
            Ok(())
        }
        "train" => {
            let shapes = match p.str("config") {
                Some(name) => {
                    let seq = positions(&p, "seq", &preset(&p, name)?)?;
                    let default_batch = match name {
                        "digits" => 64,
                        "igpt-s" | "igpt-m" | "igpt-l" | "igpt-xl" => 1,
                        _ => 4,
                    };
                    vec![(name.to_string(), p.positive("batch", default_batch)?, seq)]
                }
                None => vec![
                    ("digits".into(), 64, 64),
                    ("small".into(), 4, 1024),
                    ("igpt-s".into(), 1, 1024),
                ],
            };
            let dropout =
                p.parse_where("dropout", |x: f32| (0.0..1.0).contains(&x), "lie in [0, 1)")?;
            let precision = super::precision(&p)?;
            for (name, batch, seq) in shapes {
                let mut config = preset(&p, &name)?;
                if let Some(d) = dropout {
                    (config.resid_pdrop, config.embd_pdrop) = (d, d);
                }
                let what = format!("--config {name} --batch {batch} --seq {seq}");
                super::admit(&p, &what, footprint::training(&config, batch, seq))?;
                println!(
                    "{}",
                    pool.install(|| bench_train(&name, config, (batch, seq), precision, reps))?
                        .json()
                );
            }
            Ok(())
        }
        other => Err(p.usage(format!("unknown benchmark '{other}'")).into()),
    }
}

/// The preset `name`; an unknown one is a usage error.
fn preset(p: &Parsed, name: &str) -> Result<Config, Failure> {
    Ok(Config::preset(name).map_err(|e| p.usage(e))?)
}

/// `--name T` tokens per sequence, 1..=n_positions (default n_positions).
fn positions(p: &Parsed, name: &str, config: &Config) -> Result<usize, Failure> {
    let most = config.n_positions;
    let rule = format!("lie in 1..={most} (n_positions)");
    Ok(p.parse_where(name, |t| (1..=most).contains(&t), &rule)?.unwrap_or(most))
}

/// `BxHxTxD`, e.g. `1x8x1024x64`, every size positive.
fn parse_bhtd(p: &Parsed, s: &str) -> Result<[usize; 4], Failure> {
    let v: Vec<usize> = s.split('x').filter_map(|x| x.parse().ok()).collect();
    match v.as_slice() {
        &[b, h, t, d] if ![b, h, t, d].contains(&0) => Ok([b, h, t, d]),
        _ => Err(p.usage(format!("--shape must look like 1x8x1024x64, got '{s}'")).into()),
    }
}
