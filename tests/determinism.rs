//! Determinism: forward and backward results are bit-identical with rayon pools of 1 and 2
//! threads. The shapes are large enough that every parallel path (tiled GEMM, row-parallel
//! norms and losses, chunked element-wise ops, fixed-order column sums) actually splits.

use igpt::autodiff::check::Graph;
use igpt::autodiff::{Tape, Var};
use igpt::ops::{self, DropoutMask};
use igpt::rng::Philox;
use igpt::Tensor;

mod common;

/// Loss and every parameter gradient of the tiny transformer, bit for bit, under `threads`.
fn run(threads: usize) -> Vec<Vec<u32>> {
    let (graph, inputs) = common::tiny_transformer(41, 96, 4, 64, 4, 3);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut tape = Tape::<f32>::new();
        let vars: Vec<Var> = inputs.iter().map(|x| tape.param(x.cast())).collect();
        let loss = graph.build(&mut tape, &vars);
        let grads = tape.backward(loss);
        let mut bits = vec![vec![tape.value(loss).item().to_bits()]];
        for v in vars {
            bits.push(grads.get(v).unwrap().data().iter().map(|x| x.to_bits()).collect());
        }
        bits
    })
}

#[test]
fn transformer_forward_and_backward_are_bit_identical_for_1_and_2_threads() {
    let one = run(1);
    assert!(f32::from_bits(one[0][0]).is_finite());
    assert_eq!(one, run(2));
}

#[test]
fn dropout_mask_is_identical_for_1_and_2_threads() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut tape = Tape::<f32>::new();
            let x = tape.param(Tensor::new(&[100_003], vec![1.0; 100_003]));
            let mask = DropoutMask { philox: Philox::new(1), stream: 9, p: 0.25 };
            let y = ops::dropout(&mut tape, x, mask);
            tape.value(y).clone()
        })
    };
    let a = run(1);
    assert_eq!(a, run(2));
    let kept = a.data().iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
    assert!((kept - 0.75).abs() < 0.01, "kept fraction {kept}");
}
