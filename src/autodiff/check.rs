//! Finite-difference gradient checking: the test that catches a wrong factor or a missing term.
//!
//! For a graph `y = f(x₁, …, x_m)` and a fixed random upstream gradient `ḡ` (same shape as `y`),
//! the scalar `φ(x) = Σ ḡ ∘ f(x)` has `∂φ/∂x_i = (∂f/∂x_i)ᵀ ḡ` — exactly what
//! `Tape::backward_with(y, ḡ)` computes. The checker compares that against the fourth-order
//! central difference
//! ```text
//! ∂φ/∂x ≈ (−φ(x+2h) + 8φ(x+h) − 8φ(x−h) + φ(x−2h)) / 12h        (error O(h⁴))
//! ```
//! evaluated in **f64** on the *same generic op code* (every op is generic over `Float`), so the
//! finite differences are accurate to ~1e-10 and a tolerance of 1e-6 leaves no room for a
//! wrong constant. The error of element `i` is
//! `|a_i − n_i| / max(|n_i|, 1e-3·max_j |n_j|, 1e-6·max(1, |φ|))` — relative, with floors so
//! that entries that are zero by cancellation are judged against the tensor's scale, and a
//! gradient that is exactly zero (an unused parameter) is judged against the finite
//! difference's rounding noise, about `1e-16·|φ|/h ≈ 1e-13·|φ|`.
//!
//! A second check runs the graph in f32 on the same inputs and compares output and gradients to
//! the f64 run in relative norm (`‖a − b‖ / ‖b‖ ≤ 1e-4`): that is the f32 path's accuracy.

use super::{Tape, Var};
use crate::rng::Philox;
use crate::tensor::{Float, Tensor};

/// A graph under test, buildable in any float type.
pub trait Graph {
    /// Builds the graph on `tape` from the `inputs` (already on the tape as params) and returns
    /// its output.
    fn build<T: Float>(&self, tape: &mut Tape<T>, inputs: &[Var]) -> Var;
}

/// Tolerances of [`check_gradients`].
#[derive(Clone, Copy, Debug)]
pub struct Tolerances {
    /// Largest element error of analytic vs finite-difference gradients (f64).
    pub fd_rel: f64,
    /// Largest relative-norm difference of f32 vs f64 outputs and gradients.
    pub f32_rel: f64,
    /// Finite-difference step.
    pub h: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances { fd_rel: 1e-6, f32_rel: 1e-4, h: 1e-3 }
    }
}

/// What [`check_gradients`] measured.
#[derive(Clone, Debug)]
pub struct GradCheckReport {
    /// Per input: the largest element error of analytic vs numeric gradient (f64).
    pub fd_rel_err: Vec<f64>,
    /// Relative-norm difference of the f32 output vs the f64 output.
    pub f32_output_rel: f64,
    /// Per input: relative-norm difference of the f32 gradient vs the f64 gradient.
    pub f32_grad_rel: Vec<f64>,
}

impl GradCheckReport {
    /// Panics with the report if any error exceeds `tol`.
    pub fn assert_within(&self, tol: &Tolerances) {
        let fd_ok = self.fd_rel_err.iter().all(|&e| e <= tol.fd_rel);
        let f32_ok = self.f32_output_rel <= tol.f32_rel
            && self.f32_grad_rel.iter().all(|&e| e <= tol.f32_rel);
        assert!(fd_ok && f32_ok, "gradient check failed (tolerances {tol:?}): {self:?}");
    }
}

/// `φ = Σ ḡ ∘ f(x)` for the given inputs.
fn phi<G: Graph>(graph: &G, inputs: &[Tensor<f64>], gbar: &[f64]) -> f64 {
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|x| tape.param(x.clone())).collect();
    let y = graph.build(&mut tape, &vars);
    tape.value(y).data().iter().zip(gbar).map(|(a, b)| a * b).sum()
}

/// Output and input gradients of the graph in float type `T`, for upstream gradient `ḡ`.
fn analytic<T: Float, G: Graph>(
    graph: &G,
    inputs: &[Tensor<f64>],
    gbar: &[f64],
) -> (Tensor<f64>, Vec<Tensor<f64>>) {
    let mut tape = Tape::<T>::new();
    let vars: Vec<Var> = inputs.iter().map(|x| tape.param(x.cast())).collect();
    let y = graph.build(&mut tape, &vars);
    let seed = Tensor::new(tape.shape(y), gbar.iter().map(|&g| T::from_f64(g)).collect());
    let grads = tape.backward_with(y, seed);
    let out = tape.value(y).cast();
    let g = vars
        .iter()
        .zip(inputs)
        .map(|(&v, x)| grads.get(v).map_or_else(|| Tensor::zeros(x.shape()), |t| t.cast()));
    (out, g.collect())
}

/// `‖a − b‖₂ / ‖b‖₂` (0 when both are zero).
pub fn rel_norm_diff(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if num == 0.0 {
        0.0
    } else {
        num / den.max(1e-300)
    }
}

/// The largest element error `|a − n| / max(|n|, 1e-3·max|n|, 1e-6·max(1, |φ|))`.
fn max_element_err(analytic: &[f64], numeric: &[f64], phi: f64) -> f64 {
    let scale = numeric.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let floor = (1e-3 * scale).max(1e-6 * phi.abs().max(1.0));
    analytic
        .iter()
        .zip(numeric)
        .map(|(a, n)| (a - n).abs() / n.abs().max(floor))
        .fold(0.0, f64::max)
}

/// Checks `graph`'s gradients with respect to every input (see the module doc).
///
/// `seed` drives the random upstream gradient (Philox stream 0).
pub fn check_gradients<G: Graph>(
    graph: &G,
    inputs: &[Tensor<f64>],
    seed: u64,
    tol: &Tolerances,
) -> GradCheckReport {
    let probe = {
        let mut tape = Tape::<f64>::new();
        let vars: Vec<Var> = inputs.iter().map(|x| tape.param(x.clone())).collect();
        let y = graph.build(&mut tape, &vars);
        tape.value(y).len()
    };
    let mut gbar32 = vec![0.0f32; probe];
    Philox::new(seed).fill_normal(0, 0.0, 1.0, &mut gbar32);
    let gbar: Vec<f64> = gbar32.iter().map(|&g| f64::from(g)).collect();

    let (out64, grads64) = analytic::<f64, G>(graph, inputs, &gbar);
    let (out32, grads32) = analytic::<f32, G>(graph, inputs, &gbar);

    let phi0 = phi(graph, inputs, &gbar);
    let mut fd_rel_err = Vec::new();
    for (i, x) in inputs.iter().enumerate() {
        let mut numeric = vec![0.0; x.len()];
        let mut perturbed = inputs.to_vec();
        for (j, n) in numeric.iter_mut().enumerate() {
            let x0 = x.data()[j];
            let mut at = |dx: f64| {
                perturbed[i].data_mut()[j] = x0 + dx;
                phi(graph, &perturbed, &gbar)
            };
            let h = tol.h;
            *n = (-at(2.0 * h) + 8.0 * at(h) - 8.0 * at(-h) + at(-2.0 * h)) / (12.0 * h);
            perturbed[i].data_mut()[j] = x0;
        }
        fd_rel_err.push(max_element_err(grads64[i].data(), &numeric, phi0));
    }
    GradCheckReport {
        fd_rel_err,
        f32_output_rel: rel_norm_diff(out32.data(), out64.data()),
        f32_grad_rel: grads32
            .iter()
            .zip(&grads64)
            .map(|(a, b)| rel_norm_diff(a.data(), b.data()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::{Backward, Grads};

    /// `y = x · x` with a backward that is deliberately off by `rel` — or, with `missing_term`,
    /// forgets the `x·∂x` half of the product rule entirely. The checker must reject both.
    struct Square {
        rel: f64,
        missing_term: bool,
    }

    struct SquareBackward {
        x: Var,
        factor: f64,
    }

    impl<T: Float> Backward<T> for SquareBackward {
        fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
            let x = tape.value(self.x).data();
            if let Some(mut g) = grads.slot(tape, self.x) {
                for (i, (&xi, &gi)) in x.iter().zip(dy.data()).enumerate() {
                    g.put(i, T::from_f64(self.factor) * xi * gi);
                }
            }
        }
    }

    impl Graph for Square {
        fn build<T: Float>(&self, tape: &mut Tape<T>, inputs: &[Var]) -> Var {
            let x = inputs[0];
            let y: Vec<T> = tape.value(x).data().iter().map(|&v| v * v).collect();
            let value = Tensor::new(tape.shape(x), y);
            let factor = if self.missing_term { 1.0 } else { 2.0 * (1.0 + self.rel) };
            tape.push_op(value, &[x], SquareBackward { x, factor })
        }
    }

    fn x() -> Vec<Tensor<f64>> {
        vec![Tensor::new(&[5], vec![0.3, -1.2, 2.0, 0.7, -0.1])]
    }

    #[test]
    fn accepts_a_correct_gradient() {
        let tol = Tolerances::default();
        check_gradients(&Square { rel: 0.0, missing_term: false }, &x(), 1, &tol)
            .assert_within(&tol);
    }

    #[test]
    fn catches_a_wrong_factor_of_one_part_in_ten_thousand() {
        let r = check_gradients(
            &Square { rel: 1e-4, missing_term: false },
            &x(),
            1,
            &Tolerances::default(),
        );
        assert!(r.fd_rel_err[0] > 1e-5, "{r:?}");
    }

    #[test]
    fn catches_a_missing_term() {
        let r = check_gradients(
            &Square { rel: 0.0, missing_term: true },
            &x(),
            1,
            &Tolerances::default(),
        );
        assert!(r.fd_rel_err[0] > 0.4, "{r:?}");
    }
}
