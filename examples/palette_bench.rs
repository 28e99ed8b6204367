//! Measurements behind the palette module's design choices (not a test; run in release).
//!
//! ```text
//! cargo run --release --example palette_bench -- kmeans   PIXELS.npy [K] [REPS] [SEEDS]
//! cargo run --release --example palette_bench -- assign   PIXELS.npy [K]
//! cargo run --release --example palette_bench -- quantize [N_IMAGES]
//! ```
//! - `kmeans`: `bench_kmeans` (median of REPS fits) for seeds 0..SEEDS, one JSON line each.
//! - `assign`: one exact assignment of every pixel to the K fitted centres, three ways — the SIMD
//!   direct-distance scan igpt uses, and the GEMM expanded form ‖x‖² − 2x·μ + ‖μ‖² with
//!   `matrixmultiply::sgemm` (alone and with its argmin) — next to igpt's average Lloyd
//!   iteration with Hamerly's bounds.
//! - `quantize`: 32×32 images quantized against a 512-colour palette, images per second.
//!
//! Threads: rayon's default (set RAYON_NUM_THREADS to change it).

use igpt::bench::bench_kmeans;
use igpt::palette::kmeans::{fit_kmeans, nearest_centers, KMeansOptions};
use igpt::palette::{load_pixels_npy, quantize_rgb8, Palette, RgbImage};
use igpt::rng::Philox;
use rayon::prelude::*;
use std::path::Path;
use std::time::Instant;

fn main() -> igpt::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).map_or(default, |s| s.parse().expect("a number"));
    match args.first().map(String::as_str) {
        Some("kmeans") => kmeans(&args[1], arg(2, 512), arg(3, 3), arg(4, 1)),
        Some("assign") => assign(&args[1], arg(2, 512)),
        Some("quantize") => quantize(arg(1, 2000)),
        _ => {
            eprintln!("usage: palette_bench kmeans|assign|quantize … (see the file's doc)");
            Ok(())
        }
    }
}

fn kmeans(path: &str, k: usize, reps: usize, seeds: usize) -> igpt::Result<()> {
    let (points, c) = load_pixels_npy(Path::new(path))?;
    for seed in 0..seeds as u64 {
        let b = bench_kmeans(&points, c, k, reps, &KMeansOptions { seed, ..Default::default() })?;
        println!(
            "{{\"bench\":\"kmeans\",\"n\":{},\"k\":{},\"seed\":{seed},\"threads\":{},\"reps\":{},\
             \"seconds\":{:.3},\"init_seconds\":{:.3},\"lloyd_seconds\":{:.3},\"iterations\":{},\
             \"inertia\":{:.4}}}",
            b.n,
            b.k,
            b.threads,
            b.reps,
            b.seconds,
            b.init_seconds,
            b.lloyd_seconds,
            b.iterations,
            b.inertia
        );
    }
    Ok(())
}

/// Labels by the expanded form, with `sgemm` computing x·μ for 256 points at a time.
fn gemm_labels(points: &[f32], centers: &[f32], k: usize, with_argmin: bool) -> Vec<u32> {
    const BLOCK: usize = 256;
    let norms: Vec<f32> =
        centers.chunks_exact(3).map(|c| c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).collect();
    let mut labels = vec![0u32; points.len() / 3];
    labels.par_chunks_mut(BLOCK).enumerate().for_each(|(b, out)| {
        let x = &points[b * BLOCK * 3..(b * BLOCK + out.len()) * 3];
        let mut dots = vec![0.0f32; out.len() * k];
        // SAFETY: x is out.len() × 3 (row stride 3), centers is k × 3 read as 3 × k (strides 1, 3),
        // dots is out.len() × k (row stride k); all pointers are valid for those extents.
        unsafe {
            matrixmultiply::sgemm(
                out.len(),
                3,
                k,
                1.0,
                x.as_ptr(),
                3,
                1,
                centers.as_ptr(),
                1,
                3,
                0.0,
                dots.as_mut_ptr(),
                k as isize,
                1,
            );
        }
        if !with_argmin {
            out[0] = dots[0] as u32;
            return;
        }
        for (i, label) in out.iter_mut().enumerate() {
            let row = &dots[i * k..(i + 1) * k];
            let mut best = (f32::INFINITY, 0u32);
            for (j, (&dot, &norm)) in row.iter().zip(&norms).enumerate() {
                let d = norm - 2.0 * dot; // ‖x‖² is the same for every j
                if d < best.0 {
                    best = (d, j as u32);
                }
            }
            *label = best.1;
        }
    });
    labels
}

fn assign(path: &str, k: usize) -> igpt::Result<()> {
    let (points, c) = load_pixels_npy(Path::new(path))?;
    assert_eq!(c, 3, "assign compares RGB points");
    let n = points.len() / 3;
    let fit = fit_kmeans(&points, n, 3, k, &KMeansOptions::default())?;
    println!(
        "Lloyd with Hamerly bounds: {:.1} ms per iteration on average ({} iterations, {:.2} s)",
        1e3 * fit.lloyd_seconds / fit.iterations as f64,
        fit.iterations,
        fit.lloyd_seconds
    );
    for _ in 0..3 {
        let t = Instant::now();
        let scan = nearest_centers(&points, n, 3, &fit.centers)?;
        let t_scan = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let gemm = gemm_labels(&points, &fit.centers, k, true);
        let t_gemm = t.elapsed().as_secs_f64();
        let t = Instant::now();
        gemm_labels(&points, &fit.centers, k, false);
        let t_sgemm = t.elapsed().as_secs_f64();
        let differ = scan.labels.iter().zip(&gemm).filter(|(a, b)| a != b).count();
        println!(
            "full assignment: SIMD direct scan {:.1} ms | GEMM + argmin {:.1} ms (sgemm alone {:.1} ms) \
             | labels differing {differ}",
            1e3 * t_scan, 1e3 * t_gemm, 1e3 * t_sgemm
        );
    }
    Ok(())
}

fn quantize(images: usize) -> igpt::Result<()> {
    let p = Philox::new(1);
    let palette =
        Palette::new((0..512 * 3).map(|i| 2.0 * f64::from(p.uniform_at(0, i)) - 1.0).collect())?;
    let img: Vec<RgbImage> = (0..16)
        .map(|s| {
            let px: Vec<u8> = (0..32 * 32 * 3).map(|i| p.u32_at(s + 1, i) as u8).collect();
            RgbImage::from_bytes(32, 32, &px)
        })
        .collect::<igpt::Result<_>>()?;
    let t = Instant::now();
    for i in 0..images {
        std::hint::black_box(quantize_rgb8(img[i % 16].bytes(), &palette)?);
    }
    let one = images as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out: Vec<_> =
        (0..images).into_par_iter().map(|i| quantize_rgb8(img[i % 16].bytes(), &palette)).collect();
    let all = images as f64 / t.elapsed().as_secs_f64();
    std::hint::black_box(out);
    println!(
        "{{\"bench\":\"quantize\",\"size\":32,\"k\":512,\"images\":{images},\
         \"images_per_s_1_thread\":{one:.0},\"images_per_s_{}_threads\":{all:.0}}}",
        rayon::current_num_threads()
    );
    Ok(())
}
