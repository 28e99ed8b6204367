//! Dropout, driven by the counter-based Philox generator so its mask never needs storing.
//!
//! ```text
//! keep_i = uniform(seed, stream, i) ≥ p            (uniform as in `rng`: (u >> 8)·2⁻²⁴)
//! forward:  y_i = keep_i ? x_i / (1 − p) : 0
//! backward: ∂x_i = keep_i ? ∂y_i / (1 − p) : 0
//! ```
//! Because element `i`'s draw is a pure function of `(seed, stream, i)`, the backward simply
//! regenerates the mask — and a GPU variant given the same seed and stream drops the same
//! elements. Callers give each dropout site in each step its own stream.

use crate::autodiff::{Backward, Grads, Tape, Var};
use crate::rng::Philox;
use crate::tensor::{Float, Tensor};
use rayon::prelude::*;

/// Elements per parallel task (a multiple of 4, Philox's block size).
const CHUNK: usize = 1 << 14;

/// Where a dropout mask comes from: the seed, the stream, and the drop probability.
#[derive(Clone, Copy, Debug)]
pub struct DropoutMask {
    pub philox: Philox,
    pub stream: u64,
    pub p: f32,
}

impl DropoutMask {
    /// Calls `f(i, &mut out[i], scale_i)` for every element, where `scale_i` is `1/(1−p)` if
    /// element `i` is kept and 0 if it is dropped.
    fn for_each_scale<T: Float>(&self, out: &mut [T], f: impl Fn(usize, &mut T, T) + Sync) {
        let keep_scale = T::from_f64(1.0 / (1.0 - f64::from(self.p)));
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
            let mut u = vec![0.0f32; chunk.len()];
            fill_uniform_from(self.philox, self.stream, c * CHUNK, &mut u);
            for (j, o) in chunk.iter_mut().enumerate() {
                let scale = if u[j] >= self.p { keep_scale } else { T::ZERO };
                f(c * CHUNK + j, o, scale);
            }
        });
    }
}

/// Uniforms `start .. start + out.len()` of `stream` (`start` a multiple of 4).
fn fill_uniform_from(philox: Philox, stream: u64, start: usize, out: &mut [f32]) {
    for (b, chunk) in out.chunks_mut(4).enumerate() {
        let w = philox.block(stream, (start / 4 + b) as u64);
        for (o, &u) in chunk.iter_mut().zip(&w) {
            *o = crate::rng::u32_to_unit_f32(u);
        }
    }
}

/// Dropout of `x` with the mask `mask` (identity when `mask.p` is 0).
///
/// # Panics
/// If `p` is not in [0, 1).
pub fn dropout<T: Float>(tape: &mut Tape<T>, x: Var, mask: DropoutMask) -> Var {
    assert!((0.0..1.0).contains(&mask.p), "dropout: p = {} is not in [0, 1)", mask.p);
    if mask.p == 0.0 {
        return x;
    }
    let xv = tape.value(x);
    let mut y = vec![T::ZERO; xv.len()];
    mask.for_each_scale(&mut y, |i, o, s| *o = xv.data()[i] * s);
    let value = Tensor::new(xv.shape(), y);
    tape.push_op(value, &[x], DropoutBackward { x, mask })
}

struct DropoutBackward {
    x: Var,
    mask: DropoutMask,
}

impl<T: Float> Backward<T> for DropoutBackward {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        let Some(slot) = grads.slot(tape, self.x) else { return };
        let accumulate = slot.accumulate;
        self.mask.for_each_scale(slot.buf, |i, g, s| {
            let v = dy.data()[i] * s;
            *g = if accumulate { *g + v } else { v };
        });
    }
}
