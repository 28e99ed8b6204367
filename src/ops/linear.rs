//! Matrix products: the Conv1D-style `linear`, the bias-free `linear_nt` (HF `Linear`), `matmul`.
//!
//! All three flatten the leading axes of `x` into rows: `x` is `[…, in]`, viewed as `[N, in]`.
//!
//! **`linear`** (HF `Conv1D`, used by `c_attn`, `c_proj`, `c_fc`; `W` is `[in, out]`):
//! ```text
//! forward:  y = x W + b                 y: [N, out]
//! backward: ∂x = ∂y Wᵀ     ∂W = xᵀ ∂y     ∂b = Σ_rows ∂y
//! ```
//! **`linear_nt`** (HF `nn.Linear` without bias, used by `lm_head` and `score`; `W` is `[out, in]`):
//! ```text
//! forward:  y = x Wᵀ
//! backward: ∂x = ∂y W      ∂W = ∂yᵀ x
//! ```
//! **`matmul`**: `y = a b` for `a: [m, k]`, `b: [k, n]`; `∂a = ∂y bᵀ`, `∂b = aᵀ ∂y`.
//!
//! Every transpose is a strided view; every gradient GEMM writes with `β = 0` on the first
//! contribution and accumulates with `β = 1` after (see `autodiff::GradSlot`). `linear` and
//! `linear_nt` run their products on the [`Kernels`] they are given (the node keeps them for
//! the backward); `matmul` is always the reference `tensor::gemm`.

use super::kernels::Kernels;
use crate::autodiff::{Backward, Grads, Tape, Var};
use crate::tensor::{gemm, sum_rows_fixed_order, Float, MatRef, Start, Tensor};

/// The shape of `x @ W` when `x`'s last axis is replaced by `out`.
fn with_last(shape: &[usize], last: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    match s.last_mut() {
        Some(l) => *l = last,
        None => s.push(last),
    }
    s
}

/// `y = x W + b` with `W: [in, out]` (HF Conv1D layout) and an optional bias `b: [out]`.
///
/// # Panics
/// If `x`'s last axis is not `in`, or `b` is not `[out]`.
pub fn linear<T: Float>(
    tape: &mut Tape<T>,
    k: &'static dyn Kernels<T>,
    x: Var,
    w: Var,
    b: Option<Var>,
) -> Var {
    let (xv, wv) = (tape.value(x), tape.value(w));
    assert_eq!(wv.shape().len(), 2, "linear: W must be [in, out], got {:?}", wv.shape());
    let (d_in, d_out) = (wv.shape()[0], wv.shape()[1]);
    assert_eq!(xv.cols(), d_in, "linear: x {:?} does not fit W {:?}", xv.shape(), wv.shape());
    let n = xv.rows();
    let (x_m, w_m) = (MatRef::new(xv.data(), n, d_in), MatRef::new(wv.data(), d_in, d_out));
    let bias = b.map(|b| tape.value(b).data());
    if let Some(bv) = bias {
        assert_eq!(bv.len(), d_out, "linear: bias must be [{d_out}]");
    }
    // Every row starts at b, then x W is accumulated on top.
    let y = k.linear_product_new(x_m, w_m, bias);
    let value = Tensor::new(&with_last(xv.shape(), d_out), y);
    let inputs: Vec<Var> = [x, w].into_iter().chain(b).collect();
    tape.push_op(value, &inputs, LinearBackward { x, w, b, k })
}

struct LinearBackward<T: Float> {
    x: Var,
    w: Var,
    b: Option<Var>,
    k: &'static dyn Kernels<T>,
}

impl<T: Float> Backward<T> for LinearBackward<T> {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        let (xv, wv) = (tape.value(self.x), tape.value(self.w));
        let (d_in, d_out, n) = (wv.shape()[0], wv.shape()[1], xv.rows());
        let dy_m = MatRef::new(dy.data(), n, d_out);
        if let Some(g) = grads.slot(tape, self.x) {
            let w_t = MatRef::new(wv.data(), d_in, d_out).t();
            self.k.linear_product(dy_m, w_t, Start::accumulate(g.accumulate), g.buf);
        }
        if let Some(g) = grads.slot(tape, self.w) {
            let x_t = MatRef::new(xv.data(), n, d_in).t();
            self.k.linear_product(x_t, dy_m, Start::accumulate(g.accumulate), g.buf);
        }
        if let Some(b) = self.b {
            if let Some(mut g) = grads.slot(tape, b) {
                g.put_all(&column_sums(dy.data(), n, d_out));
            }
        }
    }
}

/// Σ over rows of a row-major `[n, cols]` matrix, in a fixed order.
pub(crate) fn column_sums<T: Float>(m: &[T], n: usize, cols: usize) -> Vec<T> {
    sum_rows_fixed_order(n, cols, |r, acc| {
        for (a, &v) in acc.iter_mut().zip(&m[r * cols..(r + 1) * cols]) {
            *a += v;
        }
    })
}

/// `y = x Wᵀ` with `W: [out, in]` (HF `nn.Linear` layout, no bias).
///
/// # Panics
/// If `x`'s last axis is not `in`.
pub fn linear_nt<T: Float>(tape: &mut Tape<T>, k: &'static dyn Kernels<T>, x: Var, w: Var) -> Var {
    let (xv, wv) = (tape.value(x), tape.value(w));
    assert_eq!(wv.shape().len(), 2, "linear_nt: W must be [out, in], got {:?}", wv.shape());
    let (d_out, d_in) = (wv.shape()[0], wv.shape()[1]);
    assert_eq!(xv.cols(), d_in, "linear_nt: x {:?} does not fit W {:?}", xv.shape(), wv.shape());
    let n = xv.rows();
    let w_t = MatRef::new(wv.data(), d_out, d_in).t();
    let y = k.linear_product_new(MatRef::new(xv.data(), n, d_in), w_t, None);
    let value = Tensor::new(&with_last(xv.shape(), d_out), y);
    tape.push_op(value, &[x, w], LinearNtBackward { x, w, k })
}

struct LinearNtBackward<T: Float> {
    x: Var,
    w: Var,
    k: &'static dyn Kernels<T>,
}

impl<T: Float> Backward<T> for LinearNtBackward<T> {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        let (xv, wv) = (tape.value(self.x), tape.value(self.w));
        let (d_out, d_in, n) = (wv.shape()[0], wv.shape()[1], xv.rows());
        let dy_m = MatRef::new(dy.data(), n, d_out);
        if let Some(g) = grads.slot(tape, self.x) {
            let w = MatRef::new(wv.data(), d_out, d_in);
            self.k.linear_product(dy_m, w, Start::accumulate(g.accumulate), g.buf);
        }
        if let Some(g) = grads.slot(tape, self.w) {
            let x = MatRef::new(xv.data(), n, d_in);
            self.k.linear_product(dy_m.t(), x, Start::accumulate(g.accumulate), g.buf);
        }
    }
}

/// `y = a b` for 2-D `a: [m, k]` and `b: [k, n]`.
///
/// # Panics
/// If either operand is not 2-D or the inner dimensions differ.
pub fn matmul<T: Float>(tape: &mut Tape<T>, a: Var, b: Var) -> Var {
    let (av, bv) = (tape.value(a), tape.value(b));
    assert!(av.shape().len() == 2 && bv.shape().len() == 2, "matmul: operands must be 2-D");
    let (m, k, n) = (av.shape()[0], av.shape()[1], bv.shape()[1]);
    assert_eq!(bv.shape()[0], k, "matmul: {:?} @ {:?}", av.shape(), bv.shape());
    let mut y = vec![T::ZERO; m * n];
    gemm(T::ONE, MatRef::new(av.data(), m, k), MatRef::new(bv.data(), k, n), T::ZERO, &mut y);
    tape.push_op(Tensor::new(&[m, n], y), &[a, b], MatmulBackward { a, b })
}

struct MatmulBackward {
    a: Var,
    b: Var,
}

impl<T: Float> Backward<T> for MatmulBackward {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        let (av, bv) = (tape.value(self.a), tape.value(self.b));
        let (m, k, n) = (av.shape()[0], av.shape()[1], bv.shape()[1]);
        let dy_m = MatRef::new(dy.data(), m, n);
        if let Some(g) = grads.slot(tape, self.a) {
            gemm(T::ONE, dy_m, MatRef::new(bv.data(), k, n).t(), g.beta(), g.buf);
        }
        if let Some(g) = grads.slot(tape, self.b) {
            gemm(T::ONE, MatRef::new(av.data(), m, k).t(), dy_m, g.beta(), g.buf);
        }
    }
}
