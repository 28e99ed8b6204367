//! The nearest centres of a point: the scan of k-means (palette fitting), defined by plain loops.
//!
//! One formula everywhere, so that every implementation gives the same bits: the squared
//! distance of a point `x` to a centre `μ` over `c ≤ 3` channels is
//! ```text
//! d = (x₀−μ₀)²;  d = d + (x₁−μ₁)²;  d = d + (x₂−μ₂)²      (f32, channel 0 first, no FMA)
//! ```
//! ([`sq_dist`]). [`nearest_two_reference`] scans every centre in index order for the nearest
//! (ties to the lowest index) and the second-nearest distance, which Hamerly's bounds in
//! `palette::kmeans` need. It is the default of `Kernels::nearest_two`; f32's `kernels::Simd`
//! scans eight centres at a time (`kernels::kmeans`) and is tested equal to it bit for bit,
//! ties included.

/// Squared distance between two points of `x.len()` channels: the definition.
pub fn sq_dist(x: &[f32], mu: &[f32]) -> f32 {
    let mut d = (x[0] - mu[0]) * (x[0] - mu[0]);
    for ch in 1..x.len() {
        d += (x[ch] - mu[ch]) * (x[ch] - mu[ch]);
    }
    d
}

/// `k` centres of `c` channels, kept row-major (the public layout, which the reference reads)
/// and channel-major (which a kernel scanning several centres at once reads).
#[derive(Clone, Debug)]
pub struct Centers {
    pub k: usize,
    pub c: usize,
    /// Row-major `k × c`: centre `j` at `rows[j·c .. (j+1)·c]`.
    pub rows: Vec<f32>,
    /// Channel-major copy: channel `ch` of centre `j` at `cols[ch·k + j]`.
    cols: Vec<f32>,
}

impl Centers {
    /// The centres of row-major `rows` (`k × c`).
    pub fn new(rows: Vec<f32>, c: usize) -> Self {
        let k = rows.len() / c;
        let mut cols = vec![0.0; rows.len()];
        for j in 0..k {
            for ch in 0..c {
                cols[ch * k + j] = rows[j * c + ch];
            }
        }
        Centers { k, c, rows, cols }
    }

    /// Centre `j`.
    pub fn row(&self, j: usize) -> &[f32] {
        &self.rows[j * self.c..(j + 1) * self.c]
    }

    /// Channel `ch` of every centre (`k` values).
    pub fn channel(&self, ch: usize) -> &[f32] {
        &self.cols[ch * self.k..(ch + 1) * self.k]
    }
}

/// Nearest and second-nearest centre of `x`: `(index, d², second d²)`. Every centre in index
/// order, keeping the nearest (ties to the lowest index) and the smallest distance among the
/// others (`∞` when `k = 1`).
pub fn nearest_two_reference(x: &[f32], centers: &Centers) -> (usize, f32, f32) {
    let mut best = (usize::MAX, f32::INFINITY, f32::INFINITY);
    for j in 0..centers.k {
        let d = sq_dist(x, centers.row(j));
        if d < best.1 {
            best = (j, d, best.1);
        } else {
            best.2 = best.2.min(d);
        }
    }
    best
}
