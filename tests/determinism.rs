//! Determinism: forward and backward results are bit-identical with rayon pools of 1 and 2
//! threads. The shapes are large enough that every parallel path (tiled GEMM, row-parallel
//! norms and losses, chunked element-wise ops, fixed-order column sums) actually splits.

use igpt::autodiff::check::Graph;
use igpt::autodiff::{Tape, Var};
use igpt::kernels::Bf16;
use igpt::model::{Config, Model, Objective, Precision, TokenBatch};
use igpt::ops::{self, DropoutMask, Kernels};
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

/// A digits-preset model with a random head (the paper's zero head would make every trunk
/// gradient zero) and a batch of random tokens.
fn model_and_batch() -> (Model, TokenBatch) {
    let mut model = Model::init(Config::preset("digits").unwrap(), 5).unwrap();
    let head = model.specs.iter().position(|s| s.name == "lm_head.weight").unwrap();
    Philox::new(6).fill_normal(0, 0.0, 0.02, model.params[head].data_mut());
    let philox = Philox::new(7);
    let (b, t) = (8, 64);
    let ids = (0..(b * t) as u64).map(|i| philox.u32_at(0, i) % 16).collect();
    let batch = TokenBatch::new(ids, b, t, &model.config, "random tokens").unwrap();
    (model, batch)
}

/// [`model_and_batch`]'s loss and gradients under `precision` and `threads`.
fn model_step(precision: Precision, threads: usize) -> (f32, Vec<Tensor<f32>>) {
    let (mut model, batch) = model_and_batch();
    model.precision = precision;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| model.loss_and_grads(&batch, &Objective::Autoregressive, None).unwrap())
}

/// A whole bf16 step — the loss and every gradient — is the same on the portable path and on
/// the one this CPU runs (`vdpbf16ps` where it has AVX512-BF16; elsewhere both are portable).
#[test]
fn a_bf16_step_is_the_same_on_the_portable_and_the_native_path() {
    let (model, batch) = model_and_batch();
    let step = |kernels: &'static Bf16| {
        let mut tape = Tape::<f32>::new();
        let p: Vec<Var> = model.params.iter().map(|x| tape.param(x.clone())).collect();
        let objective = Objective::Autoregressive;
        let loss = model.loss_graph(&mut tape, &p, &batch, &objective, None, kernels).unwrap();
        let grads = tape.backward(loss);
        let mut bits = vec![vec![tape.value(loss).item().to_bits()]];
        bits.extend(
            p.iter().map(|&v| grads.get(v).unwrap().data().iter().map(|x| x.to_bits()).collect()),
        );
        bits
    };
    static PORTABLE: Bf16 = Bf16::PORTABLE;
    assert!(step(&PORTABLE) == step(Bf16::native()), "{} differs", Bf16::native().name());
}

#[test]
fn a_bf16_step_is_bit_identical_for_1_and_2_threads_and_near_f32() {
    let (loss, grads) = model_step(Precision::Bf16, 1);
    assert_eq!((loss, grads.clone()), model_step(Precision::Bf16, 2));
    let (loss32, grads32) = model_step(Precision::F32, 2);
    assert!((loss - loss32).abs() < 1e-3 * loss32, "bf16 loss {loss} vs f32 {loss32}");
    assert_ne!(loss, loss32, "bf16 computes something else than f32");
    // Each gradient tensor within a few bf16 units (u = 2⁻⁸), norm-wise.
    for (g, g32) in grads.iter().zip(&grads32) {
        let err: f64 = g.data().iter().zip(g32.data()).map(|(a, b)| f64::from(a - b).powi(2)).sum();
        let norm: f64 = g32.data().iter().map(|b| f64::from(*b).powi(2)).sum();
        assert!(
            err.sqrt() <= 8.0 / 256.0 * norm.sqrt() + 1e-12,
            "relative {}",
            (err / norm).sqrt()
        );
    }
}
