//! The parameters of an ImageGPT model: HF names, shapes, order, and the paper's initialisation.
//!
//! The order below is HF's `state_dict` order and igpt's canonical order everywhere (optimizer
//! moments, golden files, gradients):
//! ```text
//! transformer.wte.weight            [V, d]
//! transformer.wpe.weight            [n_positions, d]
//! transformer.h.{l}.ln_1.weight     [d]
//! transformer.h.{l}.attn.c_attn.weight  [d, 3d]    .bias [3d]
//! transformer.h.{l}.attn.c_proj.weight  [d, d]     .bias [d]
//! transformer.h.{l}.ln_2.weight     [d]
//! transformer.h.{l}.mlp.c_fc.weight     [d, f]     .bias [f]      (f = n_inner or 4d)
//! transformer.h.{l}.mlp.c_proj.weight   [f, d]     .bias [d]
//! transformer.ln_f.weight           [d]
//! lm_head.weight                    [V−1, d]        (causal models)
//! score.weight                      [num_labels, d] (classification models)
//! ```
//!
//! ## Initialisation (paper / TF original)
//! Standard deviations σ (SPEC §11 writes the variances `N(0, σ²)`): wte and its SOS row 0.02;
//! wpe 0.01; `c_attn` (q, k, v) 1/√d; attention `c_proj` 1/√(d·L); MLP weights 0.02; biases 0;
//! norm gains 1; `lm_head` and `score` zeros. Parameter number `p` (its position in the order above) draws its normals from
//! Philox stream `p` of the seed: element `i` is `std · normal_i` (see SPEC §6).
//!
//! ## The random scheme (conformance goldens)
//! With the paper's constants the heads are zero, so a golden's logits and every trunk gradient
//! are exactly zero, and zero biases and unit gains let a port that forgets them pass.
//! [`Scheme::Random`] keeps every drawn weight and draws the constants as well, from the same
//! streams: zeros become `N(0, 0.02²)`, ones `1 + N(0, 0.02²)`.

use super::config::Config;
use crate::rng::Philox;
use crate::tensor::Tensor;

/// How one parameter is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Normal(f32),
    Zeros,
    Ones,
}

/// A parameter's name, shape and initialisation.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

/// Parameters per transformer block.
pub const PER_BLOCK: usize = 10;

/// Indices of a block's parameters in the canonical order.
#[derive(Clone, Copy, Debug)]
pub struct BlockParams {
    pub ln_1: usize,
    pub c_attn_w: usize,
    pub c_attn_b: usize,
    pub attn_proj_w: usize,
    pub attn_proj_b: usize,
    pub ln_2: usize,
    pub c_fc_w: usize,
    pub c_fc_b: usize,
    pub mlp_proj_w: usize,
    pub mlp_proj_b: usize,
}

/// Where each parameter sits in the canonical order.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub n_layer: usize,
    pub lm_head: bool,
    pub score: bool,
}

impl Layout {
    pub const WTE: usize = 0;
    pub const WPE: usize = 1;

    pub fn block(&self, l: usize) -> BlockParams {
        let b = 2 + l * PER_BLOCK;
        BlockParams {
            ln_1: b,
            c_attn_w: b + 1,
            c_attn_b: b + 2,
            attn_proj_w: b + 3,
            attn_proj_b: b + 4,
            ln_2: b + 5,
            c_fc_w: b + 6,
            c_fc_b: b + 7,
            mlp_proj_w: b + 8,
            mlp_proj_b: b + 9,
        }
    }

    pub fn ln_f(&self) -> usize {
        2 + self.n_layer * PER_BLOCK
    }

    pub fn lm_head(&self) -> Option<usize> {
        self.lm_head.then(|| self.ln_f() + 1)
    }

    pub fn score(&self) -> Option<usize> {
        self.score.then(|| self.ln_f() + 1 + usize::from(self.lm_head))
    }

    pub fn len(&self) -> usize {
        self.ln_f() + 1 + usize::from(self.lm_head) + usize::from(self.score)
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Every parameter of `config` (with an `lm_head` if `lm_head`), in canonical order.
pub fn param_specs(config: &Config, lm_head: bool) -> Vec<ParamSpec> {
    let (d, f, v) = (config.n_embd, config.inner(), config.vocab_size);
    let spec =
        |name: String, shape: &[usize], init| ParamSpec { name, shape: shape.to_vec(), init };
    let qkv_std = 1.0 / (d as f32).sqrt();
    let proj_std = 1.0 / ((d * config.n_layer) as f32).sqrt();
    let mut specs = vec![
        spec("transformer.wte.weight".into(), &[v, d], Init::Normal(0.02)),
        spec("transformer.wpe.weight".into(), &[config.n_positions, d], Init::Normal(0.01)),
    ];
    for l in 0..config.n_layer {
        let p = |s: &str| format!("transformer.h.{l}.{s}");
        specs.extend([
            spec(p("ln_1.weight"), &[d], Init::Ones),
            spec(p("attn.c_attn.weight"), &[d, 3 * d], Init::Normal(qkv_std)),
            spec(p("attn.c_attn.bias"), &[3 * d], Init::Zeros),
            spec(p("attn.c_proj.weight"), &[d, d], Init::Normal(proj_std)),
            spec(p("attn.c_proj.bias"), &[d], Init::Zeros),
            spec(p("ln_2.weight"), &[d], Init::Ones),
            spec(p("mlp.c_fc.weight"), &[d, f], Init::Normal(0.02)),
            spec(p("mlp.c_fc.bias"), &[f], Init::Zeros),
            spec(p("mlp.c_proj.weight"), &[f, d], Init::Normal(0.02)),
            spec(p("mlp.c_proj.bias"), &[d], Init::Zeros),
        ]);
    }
    specs.push(spec("transformer.ln_f.weight".into(), &[d], Init::Ones));
    if lm_head {
        specs.push(spec("lm_head.weight".into(), &[v - 1, d], Init::Zeros));
    }
    if let Some(k) = config.num_labels {
        specs.push(spec("score.weight".into(), &[k, d], Init::Zeros));
    }
    specs
}

/// Which initialisation [`init_param`] applies (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// The paper's: zero heads and biases, unit gains.
    Paper,
    /// The paper's weights, and the constants drawn around their values.
    Random,
}

/// Standard deviation of the constants the random scheme draws (HF's `initializer_range`).
const RANDOM_STD: f32 = 0.02;

/// The initial value of parameter number `index` (its Philox stream) under `seed`.
pub fn init_param(spec: &ParamSpec, index: usize, seed: u64, scheme: Scheme) -> Tensor<f32> {
    let n = spec.shape.iter().product();
    let normals = |mean: f32, std: f32| {
        let mut v = vec![0.0; n];
        Philox::new(seed).fill_normal(index as u64, mean, std, &mut v);
        v
    };
    let data = match (spec.init, scheme) {
        (Init::Normal(std), _) => normals(0.0, std),
        (Init::Zeros, Scheme::Paper) => vec![0.0; n],
        (Init::Ones, Scheme::Paper) => vec![1.0; n],
        (Init::Zeros, Scheme::Random) => normals(0.0, RANDOM_STD),
        (Init::Ones, Scheme::Random) => normals(1.0, RANDOM_STD),
    };
    Tensor::new(&spec.shape, data)
}
