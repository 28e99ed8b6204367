//! Embedding lookup (`wte`, `wpe`): gather rows of a table, scatter-add them back in the backward.
//!
//! ```text
//! forward:  y[n, :] = table[ids[n], :]             (a row of zeros where keep[n] is false)
//! backward: ∂table[v, :] = Σ_{n : ids[n] = v, keep[n]} ∂y[n, :]
//! ```
//! The optional `keep` mask implements the BERT objective's input masking: a masked position's
//! token embedding is zeroed (its position embedding is still added by the caller).
//!
//! The scatter-add visits positions in order `n = 0, 1, …`, so each table row receives its
//! contributions in the same order whatever the thread count.

use crate::autodiff::{Backward, Grads, Tape, Var};
use crate::tensor::{Float, Tensor};
use rayon::prelude::*;

/// `y[n] = table[ids[n]]` (zero where `keep[n]` is false); `y` has shape `[ids.len(), d]`.
///
/// # Panics
/// If an id is out of range for the table (ids are validated where users pass them in), or
/// `keep` has the wrong length.
pub fn embedding<T: Float>(
    tape: &mut Tape<T>,
    table: Var,
    ids: &[usize],
    keep: Option<&[bool]>,
) -> Var {
    let tv = tape.value(table);
    assert_eq!(tv.shape().len(), 2, "embedding: table must be [V, d]");
    let (vocab, d) = (tv.shape()[0], tv.shape()[1]);
    if let Some(k) = keep {
        assert_eq!(k.len(), ids.len(), "embedding: keep mask length");
    }
    let mut y = vec![T::ZERO; ids.len() * d];
    y.par_chunks_mut(d.max(1)).enumerate().for_each(|(n, row)| {
        let id = ids[n];
        assert!(id < vocab, "embedding: id {id} out of range for a table of {vocab} rows");
        if keep.is_none_or(|k| k[n]) {
            row.copy_from_slice(&tv.data()[id * d..(id + 1) * d]);
        }
    });
    let value = Tensor::new(&[ids.len(), d], y);
    let state = EmbeddingBackward { table, ids: ids.to_vec(), keep: keep.map(|k| k.to_vec()) };
    tape.push_op(value, &[table], state)
}

struct EmbeddingBackward {
    table: Var,
    ids: Vec<usize>,
    keep: Option<Vec<bool>>,
}

impl<T: Float> Backward<T> for EmbeddingBackward {
    fn backward(&self, tape: &Tape<T>, dy: &Tensor<T>, grads: &mut Grads<T>) {
        let d = tape.shape(self.table)[1];
        let Some(slot) = grads.slot(tape, self.table) else { return };
        if !slot.accumulate {
            // Rows no id points at get no contribution, so the first write must clear them.
            slot.buf.fill(T::ZERO);
        }
        // A plain serial loop: N·d additions are cheap next to any matmul, and visiting the
        // positions in order makes the sums deterministic.
        for (n, &id) in self.ids.iter().enumerate() {
            if self.keep.as_ref().is_some_and(|k| !k[n]) {
                continue;
            }
            let dst = &mut slot.buf[id * d..(id + 1) * d];
            dst.iter_mut().zip(&dy.data()[n * d..(n + 1) * d]).for_each(|(a, &g)| *a += g);
        }
    }
}
