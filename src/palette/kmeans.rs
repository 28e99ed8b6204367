//! k-means colour clustering: the palette iGPT's tokens are indices into.
//!
//! Given `n` points `x_i` (pixels in [-1, 1], `c` = 3 channels for RGB or 1 for grey) and `k`,
//! find centres `μ_1..μ_k` minimising the **inertia** `Σ_i min_j ‖x_i − μ_j‖²`.
//!
//! ## Algorithm (scikit-learn's `KMeans(n_init=1, init="k-means++", algorithm="lloyd")`)
//! 1. **Greedy k-means++** (Arthur & Vassilvitskii 2007, with scikit-learn's greedy variant).
//!    The first centre is a uniformly drawn point. Then, `k − 1` times: with `D²(x)` the squared
//!    distance from `x` to its nearest chosen centre, draw `T = 2 + ⌊ln k⌋` candidate points with
//!    probability `∝ D²(x)`, and keep the candidate whose addition gives the smallest potential
//!    `Σ_x min(D²(x), ‖x − cand‖²)` (first candidate on ties).
//! 2. **Lloyd iterations**: assign each point to its nearest centre (ties → lowest index), move
//!    each centre to the mean of its points; a centre left without points is re-seeded at a point
//!    drawn with probability `∝ D²(x)`. Stop when the labels no longer change, when the squared
//!    centre shift `Σ_j ‖μ_j^new − μ_j‖²` is `≤ tol · mean_c(var_c(x))` (scikit-learn's rule), or
//!    after `max_iter` iterations. If stopped by the shift rule, one more assignment makes the
//!    labels match the final centres. The inertia reported is that of the final labels.
//!
//! ## Exact assignment, made fast (Hamerly 2010)
//! Every squared distance is `Σ_ch (x_ch − μ_ch)²`, summed channel 0 first, without FMA, so the
//! SIMD and scalar paths give the same bits. The assignment equals the brute-force argmin of these
//! values; Hamerly's bounds only skip work that provably cannot change the answer. Each point keeps
//! an upper bound `u ≥ ‖x − μ_a‖` on the distance to its centre `a` and a lower bound
//! `l ≤ min_{j≠a} ‖x − μ_j‖` on the distance to every other centre. When centres move by `δ_j`:
//! `u += δ_a`, `l −= max_{j≠a} δ_j`. With `s_a = ½ min_{j≠a} ‖μ_a − μ_j‖`, a point with
//! `u < max(l, s_a)` keeps its label (triangle inequality); otherwise `u` is recomputed, and only
//! if the test still fails are all `k` centres scanned. Bounds carry a relative slack of 2⁻¹⁶ so
//! that floating-point rounding can never make a skip wrong. The scan itself is SIMD over eight
//! centres at a time, keeping the best and second-best distance per lane; it and the other
//! distance kernels live in `kernels::kmeans`; the scan runs through `Kernels::nearest_two`
//! ([`KMeansOptions::kernels`]), whose plain definition is `ops::nearest`.
//!
//! Why not GEMM (`‖x‖² − 2x·μ + ‖μ‖²` with `matrixmultiply::sgemm`, as scikit-learn does)? With 3
//! channels the product has an inner dimension of 3, so it is all overhead and output traffic
//! (`n × k` floats per iteration). Measured on 546,560 pixels, k = 512, 2 threads
//! (`examples/palette_bench.rs assign`): one brute-force GEMM assignment ≈ 320 ms (≈ 80 ms for
//! the sgemm alone, the rest its argmin), one brute-force SIMD scan ≈ 70 ms (and it also yields
//! the second-nearest distance Hamerly needs), one Hamerly iteration ≈ 12–20 ms on average over a
//! fit (most points are skipped after the first few iterations).
//!
//! ## Determinism
//! Points are processed in fixed chunks of [`CHUNK`] points; every floating-point sum is a
//! per-chunk partial (fixed order inside the chunk) and the partials are added serially in chunk
//! order. Rayon only decides which thread computes which chunk, so results are bit-identical for
//! any number of threads.
//!
//! ## Random numbers (Philox, key = `seed`)
//! A uniform f64 `u_r` of a stream is built from words `2r` and `2r+1` like numpy's
//! `random_sample`: `((w₀ >> 5) · 2²⁶ + (w₁ >> 6)) · 2⁻⁵³`.
//! - [`STREAM_INIT`]: `u_0` picks the first centre, index `⌊u_0 · n⌋`; candidate `t` of step
//!   `s ≥ 1` uses `u_{s·T + t}`.
//! - [`STREAM_RESEED`]: the `r`-th re-seeded empty cluster (counted over the whole fit) uses `u_r`.
//! - [`STREAM_SUBSAMPLE`]: point `i` gets the key `(word i, i)`; the `max_points` points with the
//!   smallest keys are kept, in their original order.
//!
//! A weighted draw with weights `w_i ≥ 0` and `u`: the target is `u · W` (`W` = the serial sum of
//! the chunk partials); the chunk is the first whose running total exceeds the target; inside it,
//! the point is the first whose running f64 total (from 0) exceeds `target − (total before the
//! chunk)` — or, if rounding leaves none, the chunk's last point of positive weight.

use crate::error::{Error, Result};
use crate::kernels::kmeans::{chunk_sum, fixed_sum, load8, sq_dist8, MAX_C};
use crate::kernels::Simd;
use crate::ops::nearest::{sq_dist, Centers};
use crate::ops::Kernels;
use crate::rng::Philox;
use rayon::prelude::*;
use std::fmt;
use std::time::Instant;

/// Points per chunk: the unit of parallel work and of every partial sum.
pub const CHUNK: usize = 4096;
/// Philox stream of the k-means++ draws.
pub const STREAM_INIT: u64 = 0x6b6d_0001;
/// Philox stream of the empty-cluster re-seeding draws.
pub const STREAM_RESEED: u64 = 0x6b6d_0002;
/// Philox stream of the subsampling keys.
pub const STREAM_SUBSAMPLE: u64 = 0x6b6d_0003;
/// Largest |coordinate| accepted: beyond it, squared distances could overflow f32.
const MAX_ABS: f32 = 1e15;
/// Relative slack on Hamerly bounds (see the module doc).
const SLACK: f32 = 1.0 / 65536.0;
/// Absolute slack on bounds: covers distances so small their squares underflow.
const TINY: f32 = 1e-18;

/// Settings of [`fit_kmeans`]; `Default` gives scikit-learn's defaults.
#[derive(Clone)]
pub struct KMeansOptions {
    /// Philox key of every random draw.
    pub seed: u64,
    /// Most Lloyd iterations (scikit-learn: 300).
    pub max_iter: usize,
    /// Relative tolerance on the squared centre shift (scikit-learn: 1e-4).
    pub tol: f64,
    /// Fit on a random subset of at most this many points (None: all points).
    pub max_points: Option<usize>,
    /// Candidates per k-means++ step (None: `2 + ⌊ln k⌋`, as scikit-learn; clamped to 1..=64).
    pub n_local_trials: Option<usize>,
    /// Record the inertia after every assignment step (costs one extra pass per iteration).
    pub track_inertia: bool,
    /// What runs the nearest-centre scans (`Kernels::nearest_two`): f32's `kernels::Simd` by
    /// default; every implementation gives the same bits, so the fit does not depend on it.
    pub kernels: &'static dyn Kernels<f32>,
}

impl fmt::Debug for KMeansOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KMeansOptions")
            .field("seed", &self.seed)
            .field("max_iter", &self.max_iter)
            .field("tol", &self.tol)
            .field("max_points", &self.max_points)
            .field("n_local_trials", &self.n_local_trials)
            .field("track_inertia", &self.track_inertia)
            .field("kernels", &self.kernels.name())
            .finish()
    }
}

impl Default for KMeansOptions {
    fn default() -> Self {
        KMeansOptions {
            seed: 0,
            max_iter: 300,
            tol: 1e-4,
            max_points: None,
            n_local_trials: None,
            track_inertia: false,
            kernels: &Simd,
        }
    }
}

/// What [`fit_kmeans`] found.
#[derive(Clone, Debug)]
pub struct KMeansResult {
    /// `k × c` centres, row-major.
    pub centers: Vec<f32>,
    /// Label of each fitted point (after subsampling: of the kept points, in order).
    pub labels: Vec<u32>,
    /// `Σ ‖x − μ_label‖²` over the fitted points (f64 sum of f32 squared distances).
    pub inertia: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// False when `max_iter` was reached before either stopping rule held.
    pub converged: bool,
    /// Number of points fitted (≤ n when subsampling).
    pub n_points: usize,
    /// Empty clusters re-seeded over the whole fit.
    pub reseeded: usize,
    /// Inertia after each assignment step (only with `track_inertia`).
    pub inertia_history: Vec<f64>,
    /// Wall-clock seconds of the k-means++ initialisation.
    pub init_seconds: f64,
    /// Wall-clock seconds of the Lloyd iterations.
    pub lloyd_seconds: f64,
}

/// Points stored channel-major ("structure of arrays"): channel `ch` of point `i` is
/// `data[ch * n + i]`, so eight consecutive points load as one SIMD vector per channel.
struct Points {
    n: usize,
    c: usize,
    data: Vec<f32>,
}

impl Points {
    fn channel(&self, ch: usize) -> &[f32] {
        &self.data[ch * self.n..(ch + 1) * self.n]
    }

    /// Point `i`; channels past `c` are 0 (use `&p[..c]`).
    fn point(&self, i: usize) -> [f32; MAX_C] {
        std::array::from_fn(|ch| if ch < self.c { self.data[ch * self.n + i] } else { 0.0 })
    }

    /// The channel slices restricted to points `start..end`.
    fn range(&self, start: usize, end: usize) -> Vec<&[f32]> {
        (0..self.c).map(|ch| &self.channel(ch)[start..end]).collect()
    }
}

/// Clusters `n` points of `c` channels (`points`: `n × c`, row-major) into `k` centres.
///
/// Errors: `c` not 1 or 3, a size mismatch, `k = 0`, `k` above the number of (distinct) points,
/// non-finite or absurdly large values.
pub fn fit_kmeans(
    points: &[f32],
    n: usize,
    c: usize,
    k: usize,
    opts: &KMeansOptions,
) -> Result<KMeansResult> {
    validate(points, n, c, k, opts)?;
    let philox = Philox::new(opts.seed);
    let kept = subsample(n, opts.max_points, &philox);
    let pts = to_channel_major(points, c, kept.as_deref());
    if k > pts.n {
        return Err(Error::invalid(format!(
            "k = {k} exceeds the {} points kept by subsampling (max_points)",
            pts.n
        )));
    }
    let trials = opts.n_local_trials.unwrap_or(2 + (k as f64).ln() as usize).clamp(1, 64);
    let t0 = Instant::now();
    let centers = kmeans_plusplus(&pts, k, trials, &philox)?;
    let init_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut result = lloyd(&pts, centers, k, opts, &philox);
    result.init_seconds = init_seconds;
    result.lloyd_seconds = t1.elapsed().as_secs_f64();
    Ok(result)
}

/// Checks every argument a user can get wrong.
fn validate(points: &[f32], n: usize, c: usize, k: usize, opts: &KMeansOptions) -> Result<()> {
    validate_points(points, n, c)?;
    if k == 0 {
        return Err(Error::invalid("k must be at least 1"));
    }
    if k > n {
        return Err(Error::invalid(format!("k = {k} exceeds the number of points ({n})")));
    }
    if opts.max_points == Some(0) {
        return Err(Error::invalid("max_points must be at least 1"));
    }
    if !(opts.tol >= 0.0 && opts.tol.is_finite()) {
        return Err(Error::invalid(format!("tol must be a finite number ≥ 0, got {}", opts.tol)));
    }
    Ok(())
}

/// Checks the channel count, the size and every value of `n` points.
fn validate_points(points: &[f32], n: usize, c: usize) -> Result<()> {
    if c != 1 && c != 3 {
        return Err(Error::invalid(format!(
            "k-means clusters grey (1) or RGB (3) points, not {c} channels"
        )));
    }
    if n.checked_mul(c) != Some(points.len()) {
        return Err(Error::invalid(format!(
            "{} values are not {n} points of {c} channels",
            points.len()
        )));
    }
    if let Some(i) = points.iter().position(|v| !v.is_finite() || v.abs() > MAX_ABS) {
        return Err(Error::invalid(format!(
            "point {} has the value {}; k-means needs finite values within ±{MAX_ABS:e}",
            i / c,
            points[i]
        )));
    }
    Ok(())
}

/// The indices kept by subsampling (sorted), or None to keep everything.
fn subsample(n: usize, max_points: Option<usize>, philox: &Philox) -> Option<Vec<usize>> {
    let m = max_points.filter(|&m| m < n)?;
    let mut keyed: Vec<(u32, usize)> =
        (0..n).map(|i| (philox.u32_at(STREAM_SUBSAMPLE, i as u64), i)).collect();
    keyed.select_nth_unstable(m - 1);
    let mut kept: Vec<usize> = keyed[..m].iter().map(|&(_, i)| i).collect();
    kept.sort_unstable();
    Some(kept)
}

/// Transposes row-major points (optionally only the `kept` ones) to channel-major.
fn to_channel_major(points: &[f32], c: usize, kept: Option<&[usize]>) -> Points {
    let n = kept.map_or(points.len() / c, |k| k.len());
    let mut data = vec![0.0; n * c];
    for ch in 0..c {
        let dst = &mut data[ch * n..(ch + 1) * n];
        match kept {
            Some(kept) => dst.iter_mut().zip(kept).for_each(|(d, &i)| *d = points[i * c + ch]),
            None => dst.iter_mut().enumerate().for_each(|(i, d)| *d = points[i * c + ch]),
        }
    }
    Points { n, c, data }
}

/// Uniform f64 in [0, 1) number `r` of `stream` (53 bits, numpy's construction).
fn uniform_f64(philox: &Philox, stream: u64, r: u64) -> f64 {
    let a = philox.u32_at(stream, 2 * r) >> 5;
    let b = philox.u32_at(stream, 2 * r + 1) >> 6;
    (f64::from(a) * 67_108_864.0 + f64::from(b)) * (1.0 / 9_007_199_254_740_992.0)
}

/// A point drawn with probability `∝ w` (see the module doc for the exact rule); `u` in [0, 1).
/// Needs a positive total weight.
fn weighted_draw(w: &[f32], chunk_sums: &[f64], u: f64) -> usize {
    let total: f64 = chunk_sums.iter().sum();
    let target = u * total;
    let mut before = 0.0;
    for (ci, &s) in chunk_sums.iter().enumerate() {
        if before + s > target {
            let start = ci * CHUNK;
            let chunk = &w[start..(start + CHUNK).min(w.len())];
            let local_target = target - before;
            let mut acc = 0.0;
            for (j, &wj) in chunk.iter().enumerate() {
                acc += f64::from(wj);
                if acc > local_target {
                    return start + j;
                }
            }
            if let Some(j) = chunk.iter().rposition(|&v| v > 0.0) {
                return start + j;
            }
        }
        before += s;
    }
    // Rounding put the target past the end: take the last point of positive weight.
    w.iter().rposition(|&v| v > 0.0).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// k-means++

/// Greedy k-means++: returns `k × c` centres (row-major).
fn kmeans_plusplus(pts: &Points, k: usize, trials: usize, philox: &Philox) -> Result<Vec<f32>> {
    let first = ((uniform_f64(philox, STREAM_INIT, 0) * pts.n as f64) as usize).min(pts.n - 1);
    let mut centers = pts.point(first)[..pts.c].to_vec();
    let mut d2 = vec![0.0f32; pts.n];
    let mut chunk_pot = update_closest(pts, &mut d2, &centers, true);
    for step in 1..k {
        if chunk_pot.iter().sum::<f64>() <= 0.0 {
            return Err(Error::invalid(format!(
                "k = {k} but the points have only {step} distinct values; use k ≤ {step}"
            )));
        }
        let candidates: Vec<usize> = (0..trials)
            .map(|t| {
                let u = uniform_f64(philox, STREAM_INIT, (step * trials + t) as u64);
                weighted_draw(&d2, &chunk_pot, u)
            })
            .collect();
        let cand_points: Vec<Vec<f32>> =
            candidates.iter().map(|&i| pts.point(i)[..pts.c].to_vec()).collect();
        let best = best_candidate(pts, &d2, &cand_points);
        chunk_pot = update_closest(pts, &mut d2, &cand_points[best], false);
        centers.extend_from_slice(&cand_points[best]);
    }
    Ok(centers)
}

/// `d2 = min(d2, ‖x − mu‖²)` (or `= ‖x − mu‖²` when `first`); returns the new chunk sums.
fn update_closest(pts: &Points, d2: &mut [f32], mu: &[f32], first: bool) -> Vec<f64> {
    d2.par_chunks_mut(CHUNK)
        .enumerate()
        .map(|(ci, d2c)| {
            let start = ci * CHUNK;
            let xs = pts.range(start, start + d2c.len());
            let whole = d2c.len() / 8 * 8;
            for i in (0..whole).step_by(8) {
                let d = sq_dist8(&xs, i, mu);
                let d = if first { d } else { d.fast_min(load8(&d2c[i..])) };
                d2c[i..i + 8].copy_from_slice(&d.to_array());
            }
            for (i, v) in d2c.iter_mut().enumerate().skip(whole) {
                let d = sq_dist(&pts.point(start + i)[..pts.c], mu);
                *v = if first { d } else { d.min(*v) };
            }
            chunk_sum(d2c)
        })
        .collect()
}

/// Index of the candidate with the smallest potential `Σ min(d2, ‖x − cand‖²)` (first on ties).
fn best_candidate(pts: &Points, d2: &[f32], cands: &[Vec<f32>]) -> usize {
    let partials: Vec<Vec<f64>> = d2
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(ci, d2c)| {
            let start = ci * CHUNK;
            let xs = pts.range(start, start + d2c.len());
            let min_d =
                |cand: &[f32], i: usize| sq_dist(&pts.point(start + i)[..pts.c], cand).min(d2c[i]);
            let pot = |cand: &Vec<f32>| {
                fixed_sum(
                    d2c.len(),
                    |i| sq_dist8(&xs, i, cand).fast_min(load8(&d2c[i..])),
                    |i| min_d(cand, i),
                )
            };
            cands.iter().map(pot).collect()
        })
        .collect();
    let mut best = (f64::INFINITY, 0);
    for t in 0..cands.len() {
        let pot: f64 = partials.iter().map(|p| p[t]).sum();
        if pot < best.0 {
            best = (pot, t);
        }
    }
    best.1
}

// ---------------------------------------------------------------------------------------------
// Lloyd with Hamerly's bounds

fn inflate(d: f32) -> f32 {
    d * (1.0 + SLACK) + TINY
}

fn deflate(d: f32) -> f32 {
    d * (1.0 - SLACK) - TINY
}

/// Per-point state of the Lloyd iterations.
struct Assignment {
    labels: Vec<u32>,
    /// Hamerly upper bound on the distance to the own centre.
    upper: Vec<f32>,
    /// Hamerly lower bound on the distance to every other centre.
    lower: Vec<f32>,
}

/// How far each centre moved since the bounds were last valid.
struct Moves {
    /// Inflated distance moved by each centre.
    delta: Vec<f32>,
    /// The largest move, the centre that made it, and the second largest.
    max: f32,
    argmax: usize,
    second: f32,
}

impl Moves {
    fn new(old: &Centers, new: &Centers) -> Moves {
        let delta: Vec<f32> =
            (0..old.k).map(|j| inflate(sq_dist(old.row(j), new.row(j)).sqrt())).collect();
        let (mut max, mut argmax, mut second) = (0.0f32, 0, 0.0f32);
        for (j, &d) in delta.iter().enumerate() {
            if d > max {
                second = max;
                max = d;
                argmax = j;
            } else if d > second {
                second = d;
            }
        }
        Moves { delta, max, argmax, second }
    }
}

/// Half the distance from each centre to its nearest other centre, deflated (`s_j`).
fn half_separation(kernels: &dyn Kernels<f32>, ctr: &Centers) -> Vec<f32> {
    (0..ctr.k)
        .into_par_iter()
        .map(|j| deflate(0.5 * kernels.nearest_two(ctr.row(j), ctr).2.sqrt()).max(0.0))
        .collect()
}

/// One assignment step. With `moves = None` every point is scanned (the first step); otherwise
/// the bounds are updated by the moves and only points failing Hamerly's test are re-examined.
/// Returns how many labels changed. `kernels` run the scans.
fn assign(
    kernels: &dyn Kernels<f32>,
    pts: &Points,
    ctr: &Centers,
    state: &mut Assignment,
    moves: Option<&Moves>,
) -> usize {
    let sep = moves.map(|_| half_separation(kernels, ctr));
    let changed: Vec<usize> = state
        .labels
        .par_chunks_mut(CHUNK)
        .zip(state.upper.par_chunks_mut(CHUNK))
        .zip(state.lower.par_chunks_mut(CHUNK))
        .enumerate()
        .map(|(ci, ((labels, upper), lower))| {
            let mut changed = 0;
            for (o, ((label, u), l)) in labels.iter_mut().zip(upper).zip(lower).enumerate() {
                let point = pts.point(ci * CHUNK + o);
                let x = &point[..pts.c];
                if let (Some(mv), Some(sep)) = (moves, &sep) {
                    let a = *label as usize;
                    *u = inflate(*u + mv.delta[a]);
                    *l = deflate(*l - if a == mv.argmax { mv.second } else { mv.max });
                    let bound = l.max(sep[a]);
                    if *u < bound {
                        continue;
                    }
                    *u = inflate(sq_dist(x, ctr.row(a)).sqrt());
                    if *u < bound {
                        continue;
                    }
                }
                let (best, d1, d2) = kernels.nearest_two(x, ctr);
                changed += usize::from(moves.is_none() || best as u32 != *label);
                *label = best as u32;
                *u = inflate(d1.sqrt());
                *l = deflate(d2.sqrt());
            }
            changed
        })
        .collect();
    changed.iter().sum()
}

/// Squared distance of every point to its labelled centre, with the chunk sums.
fn label_distances(pts: &Points, ctr: &Centers, labels: &[u32]) -> (Vec<f32>, Vec<f64>) {
    let mut d2 = vec![0.0f32; pts.n];
    let sums = d2
        .par_chunks_mut(CHUNK)
        .enumerate()
        .map(|(ci, d2c)| {
            for (o, v) in d2c.iter_mut().enumerate() {
                let i = ci * CHUNK + o;
                *v = sq_dist(&pts.point(i)[..pts.c], ctr.row(labels[i] as usize));
            }
            chunk_sum(d2c)
        })
        .collect();
    (d2, sums)
}

/// The inertia `Σ ‖x − μ_label‖²` (chunk partials added in order).
fn inertia(pts: &Points, ctr: &Centers, labels: &[u32]) -> f64 {
    label_distances(pts, ctr, labels).1.iter().sum()
}

/// New centres = means of their points; `None` for an empty cluster. Sums are f64 per chunk,
/// added in chunk order.
fn cluster_means(pts: &Points, k: usize, labels: &[u32]) -> Vec<Option<Vec<f32>>> {
    let c = pts.c;
    let partials: Vec<(Vec<f64>, Vec<u64>)> = labels
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(ci, lc)| {
            let mut sums = vec![0.0f64; k * c];
            let mut counts = vec![0u64; k];
            for (o, &label) in lc.iter().enumerate() {
                let (i, j) = (ci * CHUNK + o, label as usize);
                counts[j] += 1;
                for ch in 0..c {
                    sums[j * c + ch] += f64::from(pts.data[ch * pts.n + i]);
                }
            }
            (sums, counts)
        })
        .collect();
    let mut sums = vec![0.0f64; k * c];
    let mut counts = vec![0u64; k];
    for (s, n) in &partials {
        sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
        counts.iter_mut().zip(n).for_each(|(a, b)| *a += b);
    }
    (0..k)
        .map(|j| {
            let n = counts[j] as f64;
            (counts[j] > 0)
                .then(|| sums[j * c..(j + 1) * c].iter().map(|&s| (s / n) as f32).collect())
        })
        .collect()
}

/// `tol · mean over channels of the variance of that channel` (scikit-learn's `_tolerance`).
fn absolute_tolerance(pts: &Points, tol: f64) -> f64 {
    let n = pts.n as f64;
    let mut mean_var = 0.0;
    for ch in 0..pts.c {
        let x = pts.channel(ch);
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        mean_var += x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    }
    tol * mean_var / pts.c as f64
}

/// Lloyd iterations from the k-means++ centres (see the module doc).
fn lloyd(
    pts: &Points,
    init: Vec<f32>,
    k: usize,
    opts: &KMeansOptions,
    philox: &Philox,
) -> KMeansResult {
    let tol = absolute_tolerance(pts, opts.tol);
    let mut ctr = Centers::new(init, pts.c);
    let mut state =
        Assignment { labels: vec![0; pts.n], upper: vec![0.0; pts.n], lower: vec![0.0; pts.n] };
    let mut moves: Option<Moves> = None;
    let (mut iterations, mut reseeded, mut history) = (0, 0, Vec::new());
    let mut strict = false;
    let mut converged = false;
    while iterations < opts.max_iter {
        iterations += 1;
        let changed = assign(opts.kernels, pts, &ctr, &mut state, moves.as_ref());
        if opts.track_inertia {
            history.push(inertia(pts, &ctr, &state.labels));
        }
        let means = cluster_means(pts, k, &state.labels);
        let new_rows = reseed_empty(pts, &ctr, &state.labels, means, philox, &mut reseeded);
        let new = Centers::new(new_rows, pts.c);
        let shift: f64 = (0..k).map(|j| f64::from(sq_dist(ctr.row(j), new.row(j)))).sum();
        moves = Some(Moves::new(&ctr, &new));
        ctr = new;
        if iterations > 1 && changed == 0 {
            strict = true;
            converged = true;
            break;
        }
        if shift <= tol {
            converged = true;
            break;
        }
    }
    if !strict {
        // Make the labels those of the final centres.
        assign(opts.kernels, pts, &ctr, &mut state, moves.as_ref());
    }
    let inertia = inertia(pts, &ctr, &state.labels);
    KMeansResult {
        centers: ctr.rows,
        labels: state.labels,
        inertia,
        iterations,
        converged,
        n_points: pts.n,
        reseeded,
        inertia_history: history,
        init_seconds: 0.0,
        lloyd_seconds: 0.0,
    }
}

/// Fills empty clusters: each (in index order) moves to a point drawn `∝ D²`, where `D²` is the
/// squared distance of a point to its current centre; a drawn point's weight drops to 0.
fn reseed_empty(
    pts: &Points,
    ctr: &Centers,
    labels: &[u32],
    means: Vec<Option<Vec<f32>>>,
    philox: &Philox,
    reseeded: &mut usize,
) -> Vec<f32> {
    if means.iter().all(Option::is_some) {
        return means.into_iter().flatten().flatten().collect();
    }
    let (mut d2, mut sums) = label_distances(pts, ctr, labels);
    let mut rows = Vec::with_capacity(ctr.k * ctr.c);
    for (j, mean) in means.into_iter().enumerate() {
        match mean {
            Some(m) => rows.extend(m),
            None if sums.iter().sum::<f64>() > 0.0 => {
                let u = uniform_f64(philox, STREAM_RESEED, *reseeded as u64);
                let p = weighted_draw(&d2, &sums, u);
                *reseeded += 1;
                rows.extend_from_slice(&pts.point(p)[..pts.c]);
                d2[p] = 0.0;
                let ci = p / CHUNK;
                sums[ci] = chunk_sum(&d2[ci * CHUNK..((ci + 1) * CHUNK).min(pts.n)]);
            }
            // Every point already sits on a centre: leave the empty centre where it is.
            None => rows.extend_from_slice(ctr.row(j)),
        }
    }
    rows
}

/// Labels and inertia of given centres on given points.
#[derive(Clone, Debug)]
pub struct Assigned {
    /// Nearest centre of each point (ties to the lowest index).
    pub labels: Vec<u32>,
    /// `Σ ‖x − μ_label‖²`.
    pub inertia: f64,
}

/// Assigns `n` points of `c` channels to the nearest of the `centers` (`k × c`) by brute force,
/// with the same distances and tie rule as [`fit_kmeans`].
pub fn nearest_centers(points: &[f32], n: usize, c: usize, centers: &[f32]) -> Result<Assigned> {
    validate_points(points, n, c)?;
    let k = centers.len() / c;
    if k == 0 || centers.len() != k * c {
        return Err(Error::invalid(format!(
            "centres must be k ≥ 1 rows of {c} values, got {} values",
            centers.len()
        )));
    }
    validate_points(centers, k, c)?;
    let pts = to_channel_major(points, c, None);
    let ctr = Centers::new(centers.to_vec(), c);
    let mut state = Assignment { labels: vec![0; n], upper: vec![0.0; n], lower: vec![0.0; n] };
    assign(&Simd, &pts, &ctr, &mut state, None);
    let inertia = inertia(&pts, &ctr, &state.labels);
    Ok(Assigned { labels: state.labels, inertia })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `n` RGB points around `blobs` random centres (deterministic in `seed`).
    fn blob_points(n: usize, blobs: usize, spread: f32, seed: u64) -> Vec<f32> {
        let p = Philox::new(seed);
        (0..n)
            .flat_map(|i| {
                let b = (p.u32_at(1, i as u64) as usize) % blobs;
                (0..3).map(move |ch| {
                    let centre = 2.0 * p.uniform_at(2, (b * 3 + ch) as u64) - 1.0;
                    centre + spread * p.normal_at(3, (i * 3 + ch) as u64)
                })
            })
            .collect()
    }

    /// The obvious nearest-centre rule, written independently of the SIMD kernels.
    fn naive_labels(points: &[f32], c: usize, centers: &[f32]) -> Vec<u32> {
        points
            .chunks_exact(c)
            .map(|x| {
                let mut best = (f32::INFINITY, 0);
                for (j, mu) in centers.chunks_exact(c).enumerate() {
                    let mut d = 0.0f32;
                    for ch in 0..c {
                        d = if ch == 0 {
                            (x[0] - mu[0]) * (x[0] - mu[0])
                        } else {
                            d + (x[ch] - mu[ch]) * (x[ch] - mu[ch])
                        };
                    }
                    if d < best.0 {
                        best = (d, j as u32);
                    }
                }
                best.1
            })
            .collect()
    }

    fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
    }

    /// The same bits for any thread count, and with the plain scan (`ops::Reference`).
    #[test]
    fn threads_and_kernels_do_not_change_the_bits() {
        let pts = blob_points(3 * CHUNK + 77, 40, 0.08, 5);
        let n = pts.len() / 3;
        let opts = KMeansOptions { seed: 11, ..Default::default() };
        let plain = KMeansOptions { kernels: &crate::ops::Reference, ..opts.clone() };
        let a = in_pool(1, || fit_kmeans(&pts, n, 3, 37, &opts).unwrap());
        let b = in_pool(2, || fit_kmeans(&pts, n, 3, 37, &opts).unwrap());
        let c = fit_kmeans(&pts, n, 3, 37, &plain).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for other in [b, c] {
            assert_eq!(bits(&a.centers), bits(&other.centers));
            assert_eq!(a.labels, other.labels);
            assert_eq!(a.inertia.to_bits(), other.inertia.to_bits());
            assert_eq!(a.iterations, other.iterations);
        }
    }

    #[test]
    fn inertia_never_increases_and_labels_match_the_centres() {
        let pts = blob_points(20_000, 25, 0.2, 7);
        let opts = KMeansOptions { seed: 3, track_inertia: true, ..Default::default() };
        let r = fit_kmeans(&pts, 20_000, 3, 64, &opts).unwrap();
        assert!(r.converged && r.iterations > 2, "{} iterations", r.iterations);
        for w in r.inertia_history.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-7), "inertia rose: {} → {}", w[0], w[1]);
        }
        assert!(r.inertia <= r.inertia_history[0]);
        assert_eq!(r.labels, naive_labels(&pts, 3, &r.centers));
        let again = nearest_centers(&pts, 20_000, 3, &r.centers).unwrap();
        assert_eq!(again.labels, r.labels);
        assert_eq!(again.inertia.to_bits(), r.inertia.to_bits());
    }

    #[test]
    fn separated_blobs_are_found() {
        let pts = blob_points(4000, 6, 0.01, 9);
        let r = fit_kmeans(&pts, 4000, 3, 6, &KMeansOptions::default()).unwrap();
        // Tight blobs: mean squared distance to the centre is about 3 · 0.01².
        assert!(r.inertia / 4000.0 < 4.0 * 3e-4, "inertia {}", r.inertia);
    }

    #[test]
    fn grey_points_and_subsampling() {
        let pts: Vec<f32> = (0..5000).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let opts = KMeansOptions { max_points: Some(1000), ..Default::default() };
        let r = fit_kmeans(&pts, 5000, 1, 16, &opts).unwrap();
        assert_eq!(r.n_points, 1000);
        assert_eq!(r.labels.len(), 1000);
        assert_eq!(r.centers.len(), 16);
        let r2 = fit_kmeans(&pts, 5000, 1, 16, &opts).unwrap();
        assert_eq!(r.centers, r2.centers);
    }

    #[test]
    fn bad_arguments_are_clear_errors() {
        let pts = blob_points(100, 3, 0.1, 1);
        let o = KMeansOptions::default();
        let msg = |r: Result<KMeansResult>| r.unwrap_err().to_string();
        assert!(msg(fit_kmeans(&pts, 100, 3, 0, &o)).contains("at least 1"));
        assert!(msg(fit_kmeans(&pts, 100, 3, 101, &o)).contains("exceeds"));
        assert!(msg(fit_kmeans(&pts, 99, 3, 4, &o)).contains("not 99 points"));
        assert!(msg(fit_kmeans(&pts[..200], 100, 2, 4, &o)).contains("channels"));
        let mut nan = pts.clone();
        nan[31] = f32::NAN;
        assert!(msg(fit_kmeans(&nan, 100, 3, 4, &o)).contains("point 10"));
        let few: Vec<f32> = (0..300).map(|i| (i % 3) as f32 * 0.5).collect();
        assert!(msg(fit_kmeans(&few, 100, 3, 5, &o)).contains("distinct"));
        let sub = KMeansOptions { max_points: Some(3), ..Default::default() };
        assert!(msg(fit_kmeans(&pts, 100, 3, 4, &sub)).contains("subsampling"));
    }

    #[test]
    fn empty_clusters_are_reseeded_at_far_points() {
        let pts = to_channel_major(&[0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.9, 0.0, 0.0], 3, None);
        let ctr = Centers::new(vec![0.0, 0.0, 0.0, 0.5, 0.5, 0.5], 3);
        let means = vec![Some(vec![0.3, 0.0, 0.0]), None];
        let mut reseeded = 0;
        let rows = reseed_empty(&pts, &ctr, &[0, 0, 0], means, &Philox::new(0), &mut reseeded);
        assert_eq!(reseeded, 1);
        assert_eq!(&rows[..3], &[0.3, 0.0, 0.0]);
        // The drawn point has positive weight: it is point 1 or 2, never point 0.
        assert!(rows[3..] == [0.1, 0.0, 0.0] || rows[3..] == [0.9, 0.0, 0.0]);
    }

    #[test]
    fn weighted_draw_follows_the_weights() {
        let mut w = vec![0.0f32; 2 * CHUNK + 5];
        w[3] = 1.0;
        w[CHUNK + 1] = 3.0;
        w[2 * CHUNK + 4] = 0.5;
        let sums: Vec<f64> = w.chunks(CHUNK).map(chunk_sum).collect();
        assert_eq!(weighted_draw(&w, &sums, 0.0), 3);
        assert_eq!(weighted_draw(&w, &sums, 0.5), CHUNK + 1);
        assert_eq!(weighted_draw(&w, &sums, 0.99), 2 * CHUNK + 4);
        assert_eq!(weighted_draw(&w, &sums, 0.999_999_999), 2 * CHUNK + 4);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The Hamerly-accelerated labels equal the brute-force argmin, also on integer grids
        /// full of exact ties.
        #[test]
        fn assignment_equals_brute_force(
            n in 20usize..600, k in 1usize..20, grid in any::<bool>(), seed in any::<u64>()
        ) {
            let p = Philox::new(seed);
            let pts: Vec<f32> = (0..3 * n as u64)
                .map(|i| {
                    let u = p.uniform_at(0, i);
                    if grid { (u * 5.0).floor() * 0.25 - 0.5 } else { 2.0 * u - 1.0 }
                })
                .collect();
            let opts = KMeansOptions { seed, ..Default::default() };
            match fit_kmeans(&pts, n, 3, k, &opts) {
                Ok(r) => prop_assert_eq!(r.labels, naive_labels(&pts, 3, &r.centers)),
                Err(e) => prop_assert!(grid && e.to_string().contains("distinct"), "{}", e),
            }
        }

        /// Every Lloyd step (assignment, then means) leaves the inertia no larger (up to f32
        /// rounding of the means), and the final inertia is the smallest.
        #[test]
        fn inertia_is_non_increasing(
            n in 50usize..3000, blobs in 1usize..12, k in 1usize..24, seed in any::<u64>()
        ) {
            let pts = blob_points(n, blobs, 0.15, seed);
            let opts = KMeansOptions { seed, track_inertia: true, ..Default::default() };
            let r = fit_kmeans(&pts, n, 3, k.min(n), &opts).unwrap();
            for w in r.inertia_history.windows(2) {
                prop_assert!(w[1] <= w[0] * (1.0 + 1e-6) + 1e-9, "{} → {}", w[0], w[1]);
            }
            let last = *r.inertia_history.last().unwrap();
            prop_assert!(r.inertia <= last * (1.0 + 1e-6) + 1e-9);
        }
    }
}
