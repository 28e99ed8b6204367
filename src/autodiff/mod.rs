//! Reverse-mode automatic differentiation on an append-only tape (a Wengert list).
//!
//! ## How it works
//! A forward pass appends one node per op to a [`Tape`]: the op's output value and a boxed
//! [`Backward`] record holding only what that op's backward needs (usually the [`Var`] ids of its
//! inputs, sometimes a small saved statistic such as a per-row logsumexp). Node ids increase in
//! creation order, so the ops form a topological order for free.
//!
//! For an output `y` and an upstream gradient `ḡ = ∂L/∂y`, [`Tape::backward_with`] walks the
//! nodes **in reverse**; at node `i` it hands `∂L/∂vᵢ` to the op that produced `vᵢ`, which adds
//! `(∂vᵢ/∂x)ᵀ ∂L/∂vᵢ` into the gradient buffer of each input `x`. That is the chain rule,
//! evaluated as vector–Jacobian products, one op at a time — no topological sort, no hash map,
//! no reference counting.
//!
//! ## Gradient buffers
//! Each node's gradient buffer is created on its first contribution, which **writes** it
//! (`β = 0` in a GEMM); later contributions **accumulate** (`β = 1`). See [`GradSlot`]. An
//! intermediate node's gradient is dropped as soon as its op has propagated it; the returned
//! [`Grads`] keep the gradients of leaves (parameters and inputs). Its buffer is recycled: the
//! next gradient of the same size takes it over instead of a freshly zeroed one. The contents
//! are stale, which is safe because a first contribution writes every element — and it saves
//! clearing megabytes that are about to be overwritten.
//!
//! Ops whose inputs need no gradient (constants, token ids) record no backward at all, so an
//! inference pass on a tape costs only the forward computation.

pub mod check;

use crate::tensor::{zeros_parallel, Float, Tensor};
use rayon::prelude::*;

/// A handle to a value on a [`Tape`] (its node id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(usize);

impl Var {
    /// The node id: the position of this value on its tape.
    pub fn id(self) -> usize {
        self.0
    }
}

/// The backward half of an op: adds the op's vector–Jacobian products into its inputs' gradients.
pub trait Backward<T: Float> {
    /// Called once with `grad_out = ∂L/∂(this op's output)`. Read input values with
    /// `tape.value(var)`; obtain each input's gradient buffer with `grads.slot(var)`.
    fn backward(&self, tape: &Tape<T>, grad_out: &Tensor<T>, grads: &mut Grads<T>);
}

/// The append-only list of values and the backward records of the ops that made them.
pub struct Tape<T: Float = f32> {
    values: Vec<Tensor<T>>,
    needs_grad: Vec<bool>,
    ops: Vec<Option<Box<dyn Backward<T>>>>,
}

impl<T: Float> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Tape<T> {
    pub fn new() -> Self {
        Tape { values: Vec::new(), needs_grad: Vec::new(), ops: Vec::new() }
    }

    /// A leaf whose gradient is wanted (a parameter, or an input under a gradient check).
    pub fn param(&mut self, value: Tensor<T>) -> Var {
        self.push_node(value, true, None)
    }

    /// A leaf that needs no gradient (data, masks, frozen weights).
    pub fn constant(&mut self, value: Tensor<T>) -> Var {
        self.push_node(value, false, None)
    }

    /// Records an op's output. Its backward is kept only if some input needs a gradient.
    pub fn push_op(
        &mut self,
        value: Tensor<T>,
        inputs: &[Var],
        op: impl Backward<T> + 'static,
    ) -> Var {
        let needs = inputs.iter().any(|v| self.needs_grad[v.0]);
        let op: Option<Box<dyn Backward<T>>> = if needs { Some(Box::new(op)) } else { None };
        self.push_node(value, needs, op)
    }

    fn push_node(
        &mut self,
        value: Tensor<T>,
        needs: bool,
        op: Option<Box<dyn Backward<T>>>,
    ) -> Var {
        self.values.push(value);
        self.needs_grad.push(needs);
        self.ops.push(op);
        Var(self.values.len() - 1)
    }

    /// The handle the next node pushed will get: an op whose backward reads its own output
    /// records this, instead of keeping a copy of the output beside the tape's.
    pub fn next_var(&self) -> Var {
        Var(self.values.len())
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> &Tensor<T> {
        &self.values[v.0]
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> &[usize] {
        self.values[v.0].shape()
    }

    /// Whether gradients flow into `v`.
    pub fn needs_grad(&self, v: Var) -> bool {
        self.needs_grad[v.0]
    }

    /// Number of nodes on the tape.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Moves the value of `v` out (leaving an empty tensor), e.g. to hand parameters back to a
    /// model after a step without copying.
    pub fn take_value(&mut self, v: Var) -> Tensor<T> {
        std::mem::replace(&mut self.values[v.0], Tensor::zeros(&[0]))
    }

    /// Backpropagates from a scalar `loss` (upstream gradient 1).
    ///
    /// # Panics
    /// If `loss` does not hold exactly one element.
    pub fn backward(&self, loss: Var) -> Grads<T> {
        let shape = self.shape(loss).to_vec();
        assert_eq!(self.value(loss).len(), 1, "backward(): loss must be a scalar");
        self.backward_with(loss, Tensor::new(&shape, vec![T::ONE]))
    }

    /// Backpropagates the upstream gradient `seed = ∂L/∂out` through the tape.
    ///
    /// # Panics
    /// If `seed`'s shape differs from `out`'s.
    pub fn backward_with(&self, out: Var, seed: Tensor<T>) -> Grads<T> {
        assert_eq!(seed.shape(), self.shape(out), "backward_with: seed shape");
        let mut grads = Grads {
            slots: (0..self.len()).map(|_| None).collect(),
            tape_len: out.0 + 1,
            spare: Vec::new(),
        };
        grads.slots[out.0] = Some(seed);
        for i in (0..=out.0).rev() {
            let Some(op) = &self.ops[i] else { continue };
            // Every consumer of node i comes later on the tape, so its gradient is complete now.
            let Some(g) = grads.slots[i].take() else { continue };
            op.backward(self, &g, &mut grads);
            grads.recycle(g);
        }
        grads.spare.clear();
        grads
    }
}

/// Gradient buffers indexed by node id; after backward, those of the leaves.
pub struct Grads<T: Float = f32> {
    slots: Vec<Option<Tensor<T>>>,
    tape_len: usize,
    /// Buffers of gradients already propagated, for reuse (at most [`SPARE_BUFFERS`]).
    spare: Vec<Vec<T>>,
}

/// How many propagated gradient buffers [`Grads`] keeps for reuse: a block's backward frees
/// and needs a handful of sizes, so a few cover it.
const SPARE_BUFFERS: usize = 8;

/// One input's gradient buffer handed to an op's backward.
///
/// `accumulate` is false on the first contribution: the op must **write** every element
/// (`β = 0`). On later contributions it is true: the op **adds** (`β = 1`).
pub struct GradSlot<'a, T: Float> {
    pub buf: &'a mut [T],
    pub accumulate: bool,
}

impl<T: Float> GradSlot<'_, T> {
    /// The GEMM `β` for this contribution: 0 (write) or 1 (accumulate).
    pub fn beta(&self) -> T {
        if self.accumulate {
            T::ONE
        } else {
            T::ZERO
        }
    }

    /// Stores `x` into element `i` (write or add, as this contribution requires).
    #[inline]
    pub fn put(&mut self, i: usize, x: T) {
        if self.accumulate {
            self.buf[i] += x;
        } else {
            self.buf[i] = x;
        }
    }

    /// Stores a whole contribution `src` element-wise (in parallel chunks: these are the
    /// megabyte-sized copies of a residual connection's gradient).
    pub fn put_all(&mut self, src: &[T]) {
        const CHUNK: usize = 1 << 15;
        assert_eq!(self.buf.len(), src.len(), "put_all: sizes differ");
        let accumulate = self.accumulate;
        self.buf.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(g, s)| {
            if accumulate {
                g.iter_mut().zip(s).for_each(|(g, &x)| *g += x);
            } else {
                g.copy_from_slice(s);
            }
        });
    }
}

impl<T: Float> Grads<T> {
    /// The buffer for `v`'s gradient, or `None` if `v` needs no gradient.
    pub fn slot<'a>(&'a mut self, tape: &Tape<T>, v: Var) -> Option<GradSlot<'a, T>> {
        if !tape.needs_grad(v) || v.0 >= self.tape_len {
            return None;
        }
        let accumulate = self.slots[v.0].is_some();
        if !accumulate {
            self.slots[v.0] = Some(self.fresh(tape.shape(v)));
        }
        let buf = self.slots[v.0].as_mut().expect("filled above").data_mut();
        Some(GradSlot { buf, accumulate })
    }

    /// A buffer for a first contribution: a spare one of the right size (stale contents, which
    /// the contribution overwrites), else zeros.
    fn fresh(&mut self, shape: &[usize]) -> Tensor<T> {
        let len: usize = shape.iter().product();
        match self.spare.iter().position(|b| b.len() == len) {
            Some(i) => Tensor::new(shape, self.spare.swap_remove(i)),
            None => Tensor::new(shape, zeros_parallel(len)),
        }
    }

    /// Keeps the buffer of a gradient that has been propagated, for [`Grads::fresh`].
    fn recycle(&mut self, g: Tensor<T>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(g.into_data());
        }
    }

    /// The gradient of `v`, if anything flowed into it.
    pub fn get(&self, v: Var) -> Option<&Tensor<T>> {
        self.slots.get(v.0).and_then(|s| s.as_ref())
    }

    /// Moves the gradient of `v` out.
    pub fn take(&mut self, v: Var) -> Option<Tensor<T>> {
        self.slots.get_mut(v.0).and_then(|s| s.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::scale;

    #[test]
    fn a_recycled_buffer_is_overwritten_not_added_to() {
        // y = 3·(2·x): ∂y's buffer, once propagated, is recycled for ∂(2x), whose buffer is
        // recycled for ∂x — each holding stale values that a first contribution must replace.
        let mut tape = Tape::<f64>::new();
        let x = tape.param(Tensor::new(&[4], vec![1.0, -2.0, 0.5, 7.0]));
        let a = scale(&mut tape, x, 2.0);
        let y = scale(&mut tape, a, 3.0);
        let grads = tape.backward_with(y, Tensor::new(&[4], vec![1.0, 10.0, 100.0, 1000.0]));
        assert_eq!(grads.get(x).unwrap().data(), &[6.0, 60.0, 600.0, 6000.0]);
    }
}
