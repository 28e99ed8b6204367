//! Mean-pooling over the sequence: the classification head's and the linear probe's input.
//!
//! ```text
//! forward:  y[b, :] = (1/T) Σ_t x[b, t, :]          x: [B, T, d] → y: [B, d]
//! backward: ∂x[b, t, :] = ∂y[b, :] / T
//! ```
//! The sum over `t` runs in order, so the result does not depend on the thread count.

use crate::autodiff::{Backward, Grads, Tape, Var};
use crate::tensor::{Float, Tensor};
use rayon::prelude::*;

/// The mean over axis 1 of a `[B, T, d]` tensor.
///
/// # Panics
/// If `x` is not 3-D or `T` is 0.
pub fn mean_pool<T: Float>(tape: &mut Tape<T>, x: Var) -> Var {
    let xv = tape.value(x);
    assert_eq!(xv.shape().len(), 3, "mean_pool: x must be [B, T, d], got {:?}", xv.shape());
    let (b, t, d) = (xv.shape()[0], xv.shape()[1], xv.shape()[2]);
    assert!(t > 0, "mean_pool: empty sequence");
    let inv_t = T::ONE / T::from_f64(t as f64);
    let mut y = vec![T::ZERO; b * d];
    y.par_chunks_mut(d.max(1)).enumerate().for_each(|(bi, row)| {
        for ti in 0..t {
            let src = &xv.data()[(bi * t + ti) * d..(bi * t + ti + 1) * d];
            row.iter_mut().zip(src).for_each(|(a, &v)| *a += v);
        }
        row.iter_mut().for_each(|a| *a *= inv_t);
    });
    tape.push_op(Tensor::new(&[b, d], y), &[x], MeanPoolBackward { x })
}

struct MeanPoolBackward {
    x: Var,
}

impl<T: Float> Backward<T> for MeanPoolBackward {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        let (t, d) = (tape.shape(self.x)[1], tape.shape(self.x)[2]);
        let inv_t = T::ONE / T::from_f64(t as f64);
        let Some(slot) = grads.slot(tape, self.x) else { return };
        let accumulate = slot.accumulate;
        slot.buf.par_chunks_mut(d.max(1)).enumerate().for_each(|(row, dx)| {
            let src = &dy.data()[(row / t) * d..(row / t + 1) * d];
            for (g, &v) in dx.iter_mut().zip(src) {
                *g = if accumulate { *g + v * inv_t } else { v * inv_t };
            }
        });
    }
}
