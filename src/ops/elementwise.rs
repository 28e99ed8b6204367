//! Element-wise ops: the residual `add`, `scale`, and the activations `quick_gelu` and `gelu_tanh`.
//!
//! ```text
//! add:        y = a + b                      ∂a = ∂y,  ∂b = ∂y
//! scale:      y = c·x   (c a constant)       ∂x = c·∂y
//! reshape:    y = x viewed with a new shape   ∂x = ∂y (same elements, same order)
//! quick_gelu: y = x·σ(1.702x)                ∂x = ∂y·(s + 1.702·x·s·(1 − s)),  s = σ(1.702x)
//! gelu_tanh:  y = ½x(1 + tanh u),  u = √(2/π)(x + 0.044715x³)
//!             ∂x = ∂y·(½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²))
//! ```
//! iGPT uses `quick_gelu` (TF's `gelu2`, HF's `"quick_gelu"`); `gelu_tanh` is GPT-2's
//! `"gelu_new"`, offered for configurations that ask for it.
//!
//! Element-wise work is split across rayon tasks in fixed-size chunks; each element is computed
//! independently, so the result never depends on the number of threads.

use super::kernels::Kernels;
use crate::autodiff::{Backward, Grads, Tape, Var};
use crate::tensor::{new_parallel, Float, Tensor};
use rayon::prelude::*;

/// Elements per parallel task in element-wise loops.
const CHUNK: usize = 1 << 14;

/// `y[i] = f(i)` for `i < len`, in parallel chunks, into a new buffer.
fn map_parallel<T: Float>(len: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    new_parallel(len, CHUNK, |start, chunk| {
        for (j, o) in chunk.iter_mut().enumerate() {
            *o = f(start + j);
        }
    })
}

/// Writes or accumulates `contribution(i)` into a gradient buffer, in parallel chunks.
fn put_parallel<T: Float>(
    buf: &mut [T],
    accumulate: bool,
    contribution: impl Fn(usize) -> T + Sync,
) {
    buf.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        for (j, g) in chunk.iter_mut().enumerate() {
            let x = contribution(c * CHUNK + j);
            *g = if accumulate { *g + x } else { x };
        }
    });
}

/// `y = a + b` (same shapes): the residual connection.
///
/// # Panics
/// If the shapes differ.
pub fn add<T: Float>(tape: &mut Tape<T>, a: Var, b: Var) -> Var {
    let (av, bv) = (tape.value(a), tape.value(b));
    assert_eq!(av.shape(), bv.shape(), "add: shapes differ");
    let (a_data, b_data) = (av.data(), bv.data());
    let y = new_parallel(av.len(), CHUNK, |start, chunk| {
        let (a, b) = (&a_data[start..][..chunk.len()], &b_data[start..][..chunk.len()]);
        for ((o, &a), &b) in chunk.iter_mut().zip(a).zip(b) {
            *o = a + b;
        }
    });
    let value = Tensor::new(av.shape(), y);
    tape.push_op(value, &[a, b], AddBackward { a, b })
}

struct AddBackward {
    a: Var,
    b: Var,
}

impl<T: Float> Backward<T> for AddBackward {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        for v in [self.a, self.b] {
            if let Some(mut g) = grads.slot(tape, v) {
                g.put_all(dy.data());
            }
        }
    }
}

/// `y = x` with another shape of the same size (row-major order is unchanged).
///
/// # Panics
/// If the sizes differ.
pub fn reshape<T: Float>(tape: &mut Tape<T>, x: Var, shape: &[usize]) -> Var {
    let value = tape.value(x).clone().reshape(shape);
    tape.push_op(value, &[x], ReshapeBackward { x })
}

struct ReshapeBackward {
    x: Var,
}

impl<T: Float> Backward<T> for ReshapeBackward {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        if let Some(mut g) = grads.slot(tape, self.x) {
            g.put_all(dy.data());
        }
    }
}

/// `y = c·x` for a constant `c`.
pub fn scale<T: Float>(tape: &mut Tape<T>, x: Var, c: T) -> Var {
    let xv = tape.value(x);
    let y = map_parallel(xv.len(), |i| c * xv.data()[i]);
    let value = Tensor::new(xv.shape(), y);
    tape.push_op(value, &[x], ScaleBackward { x, c })
}

struct ScaleBackward<T> {
    x: Var,
    c: T,
}

impl<T: Float> Backward<T> for ScaleBackward<T> {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        if let Some(g) = grads.slot(tape, self.x) {
            put_parallel(g.buf, g.accumulate, |i| self.c * dy.data()[i]);
        }
    }
}

/// The slope of quick_gelu's sigmoid: `quick_gelu(x) = x·σ(1.702x)`.
pub const QUICK_GELU_ALPHA: f64 = 1.702;

/// The logistic sigmoid `σ(z) = 1 / (1 + e^{−z})`.
#[inline]
pub fn sigmoid<T: Float>(z: T) -> T {
    T::ONE / (T::ONE + (-z).exp())
}

/// `quick_gelu(x) = x·σ(1.702x)` for one value.
#[inline]
pub fn quick_gelu_scalar<T: Float>(x: T) -> T {
    x * sigmoid(T::from_f64(QUICK_GELU_ALPHA) * x)
}

/// `d quick_gelu / dx` at `x`.
#[inline]
pub fn quick_gelu_grad<T: Float>(x: T) -> T {
    let a = T::from_f64(QUICK_GELU_ALPHA);
    let s = sigmoid(a * x);
    s + a * x * s * (T::ONE - s)
}

/// `y = x·σ(1.702x)`, element-wise (iGPT's activation), chunks in parallel, each chunk by
/// `k` (the scalar definition above for [`Reference`](super::kernels::Reference), the SIMD
/// twin in `kernels::activation` for f32's `kernels::Simd`).
pub fn quick_gelu<T: Float>(tape: &mut Tape<T>, k: &'static dyn Kernels<T>, x: Var) -> Var {
    let xv = tape.value(x);
    let xs = xv.data();
    let y = new_parallel(xs.len(), CHUNK, |start, y| k.quick_gelu(&xs[start..][..y.len()], y));
    let value = Tensor::new(xv.shape(), y);
    tape.push_op(value, &[x], QuickGeluBackward { x, k })
}

struct QuickGeluBackward<T: Float> {
    x: Var,
    k: &'static dyn Kernels<T>,
}

impl<T: Float> Backward<T> for QuickGeluBackward<T> {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        let xv = tape.value(self.x).data();
        if let Some(g) = grads.slot(tape, self.x) {
            let acc = g.accumulate;
            g.buf
                .par_chunks_mut(CHUNK)
                .zip(xv.par_chunks(CHUNK))
                .zip(dy.data().par_chunks(CHUNK))
                .for_each(|((dx, x), dy)| self.k.quick_gelu_backward(x, dy, dx, acc));
        }
    }
}

/// An element-wise function `f` with derivative `df`, applied to every element of `x`.
fn unary<T: Float>(tape: &mut Tape<T>, x: Var, f: fn(T) -> T, df: fn(T) -> T) -> Var {
    let xv = tape.value(x);
    let y = map_parallel(xv.len(), |i| f(xv.data()[i]));
    let value = Tensor::new(xv.shape(), y);
    tape.push_op(value, &[x], UnaryBackward { x, df })
}

/// Saves only the input: `∂x = ∂y · f'(x)` is recomputed from it.
struct UnaryBackward<T> {
    x: Var,
    df: fn(T) -> T,
}

impl<T: Float> Backward<T> for UnaryBackward<T> {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        let xv = tape.value(self.x).data();
        if let Some(g) = grads.slot(tape, self.x) {
            put_parallel(g.buf, g.accumulate, |i| dy.data()[i] * (self.df)(xv[i]));
        }
    }
}

const GELU_C: f64 = 0.044_715;
/// √(2/π).
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

/// GPT-2's tanh approximation of GELU for one value.
#[inline]
pub fn gelu_tanh_scalar<T: Float>(x: T) -> T {
    let u = T::from_f64(SQRT_2_OVER_PI) * (x + T::from_f64(GELU_C) * x * x * x);
    T::from_f64(0.5) * x * (T::ONE + u.tanh())
}

#[inline]
fn gelu_tanh_grad<T: Float>(x: T) -> T {
    let (c, k, half) = (T::from_f64(GELU_C), T::from_f64(SQRT_2_OVER_PI), T::from_f64(0.5));
    let t = (k * (x + c * x * x * x)).tanh();
    let du = k * (T::ONE + T::from_f64(3.0) * c * x * x);
    half * (T::ONE + t) + half * x * (T::ONE - t * t) * du
}

/// `y = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))`, element-wise.
pub fn gelu_tanh<T: Float>(tape: &mut Tape<T>, x: Var) -> Var {
    unary(tape, x, gelu_tanh_scalar, gelu_tanh_grad)
}
