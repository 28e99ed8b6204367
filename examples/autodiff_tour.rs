//! A tour of igpt's reverse-mode autodiff: build a tiny graph on a tape, run backward, and check
//! one gradient by finite differences.
//!
//! Run with `cargo run --release --example autodiff_tour`.

use igpt::autodiff::{Tape, Var};
use igpt::ops::{self, Reference};
use igpt::Tensor;

/// Forward pass: a Conv1D-style linear layer (`x W + b`), iGPT's quick_gelu, then a
/// cross-entropy loss against one integer target per row.
fn forward(tape: &mut Tape<f64>, x: Var, w: Var, b: Var) -> Var {
    // `Reference`: the plain kernels of the hot ops (the f32 model runs `igpt::kernels::Simd`).
    let h = ops::linear(tape, &Reference, x, w, Some(b));
    let a = ops::quick_gelu(tape, &Reference, h);
    ops::cross_entropy_mean(tape, a, &[1, 0], None)
}

fn main() {
    let x0 = Tensor::new(&[2, 3], vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.75]);
    let w0 = Tensor::new(&[3, 2], vec![0.1, 0.2, -0.3, 0.4, 0.5, -0.6]);
    let b0 = Tensor::new(&[2], vec![0.01, -0.02]);

    // 1. A tape records every op of the forward pass. Leaves made with `param` get gradients;
    //    `constant` leaves (data) do not.
    let mut tape = Tape::new();
    let x = tape.constant(x0.clone());
    let w = tape.param(w0.clone());
    let b = tape.param(b0.clone());
    let loss = forward(&mut tape, x, w, b);
    println!("the tape holds {} nodes; loss = {:.9}", tape.len(), tape.value(loss).item());

    // 2. Backward walks the tape in reverse, each op adding its vector-Jacobian product into the
    //    gradients of its inputs.
    let grads = tape.backward(loss);
    let dw = grads.get(w).expect("W takes a gradient");
    println!("dL/dW = {:?}", dw.data());
    println!("dL/dx is not computed for a constant: {}", grads.get(x).is_none());

    // 3. Check dL/dW[0, 1] by central differences: nudge that weight and re-run the forward.
    let loss_with = |delta: f64| {
        let mut w = w0.clone();
        w.data_mut()[1] += delta;
        let mut t = Tape::new();
        let (x, w, b) = (t.constant(x0.clone()), t.constant(w), t.constant(b0.clone()));
        let l = forward(&mut t, x, w, b);
        t.value(l).item()
    };
    let h = 1e-6;
    let numeric = (loss_with(h) - loss_with(-h)) / (2.0 * h);
    println!("dL/dW[0,1]: backward {:.9}, central difference {:.9}", dw.data()[1], numeric);
}
