//! Hand-vectorised f32 kernels: the fast twins of plain reference ops.
//!
//! Each kernel here computes the same function as a readable reference elsewhere in the crate
//! and is tested against it; the reference stays the definition. [`Simd`] is f32's
//! implementation of the ops' dispatch trait `ops::Kernels` (whose default methods are those
//! references): the model's ops run on it, the f64 gradient checks on `ops::Reference`.
//!
//! | module | kernel | reference twin |
//! |---|---|---|
//! | `activation` | quick_gelu forward/backward | `ops::elementwise::quick_gelu_scalar` |
//! | `bf16` | bf16 mixed precision ([`Bf16`]): products on bf16-rounded operands | `bf16::product_reference` |
//! | `dpbf16` | the bf16 products on `vdpbf16ps` (AVX512-BF16): linear products and attention tiles | `bf16`'s portable path (bit for bit) |
//! | `attention` | FlashAttention-2 forward/backward, O(T) memory | `ops::attention::attention_reference` |
//! | `decode` | one-query attention over a [`KvCache`] (sampling) | `ops::decode::decode_attention_reference` (the last row of causal attention) |
//! | `expf` | `exp` of f32 slices: glibc's `expf` in SIMD lanes (the cross-entropy's softmax) | glibc's `expf` (`f32::exp` on Linux, bit for bit) |
//! | `gemm` | the products of a linear layer in training, activations read in place | `tensor::gemm` |
//! | `skinny` | `X·W + b` for a few rows (decoding), streaming `W` | `tensor::gemm` |
//! | `simd` | f32x8 tile product, `exp2`, prefetch | `tensor::gemm`, `f64::exp2` |
//! | `pages` | 2 MiB-aligned, huge-page buffers for the decoder's streams | `Vec<f32>` |
//! | `norm` | the RMS norm's rows, forward and backward (bit for bit) | `ops::norm::rms_norm_rows_reference`, `ops::norm::rms_norm_backward_rows_reference` |
//! | `kmeans` | nearest and second-nearest of k centres, 8 at a time (palette fits) | `ops::nearest::nearest_two_reference`, `ops::nearest::sq_dist` |
//!
//! The SIMD code uses `wide::f32x8`, which maps onto AVX2+FMA under the repository's
//! `.cargo/config.toml` (`-C target-cpu=x86-64-v3`) and onto two SSE halves otherwise;
//! `dpbf16` uses AVX-512 intrinsics behind a runtime check, so one binary runs everywhere.

pub mod activation;
pub mod attention;
pub mod bf16;
pub mod decode;
pub mod dpbf16;
pub mod expf;
pub mod gemm;
pub mod kmeans;
pub mod norm;
pub mod pages;
pub mod simd;
pub mod skinny;

pub use attention::{flash_attention_backward, flash_attention_forward, FlashForward, BLOCK};
pub use bf16::Bf16;
pub use decode::KvCache;

use crate::ops::decode::KvView;
use crate::ops::nearest::Centers;
use crate::ops::{AttentionDims, AttentionForward, Kernels};
use crate::tensor::{MatRef, Start};

/// What the products of a kernel multiply: the f32 values as they are, or the values rounded to
/// bf16 (with subnormals flushed; see `bf16`) — multiplied by f32 fused multiply-adds
/// (`Bf16`, portable) or by `vdpbf16ps` (`Bf16Avx512`, see `dpbf16`), which give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operands {
    F32,
    Bf16,
    Bf16Avx512,
}

impl Operands {
    /// Runs one task's share of a product: as it is in f32, with subnormals flushed in bf16
    /// (`bf16::flushing_subnormals`, which acts on the calling thread only, so every parallel
    /// task calls this itself).
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        match self {
            Operands::F32 => f(),
            Operands::Bf16 | Operands::Bf16Avx512 => bf16::flushing_subnormals(f),
        }
    }

    /// Whether the operands are rounded to bf16 (on either path).
    pub fn is_bf16(self) -> bool {
        self != Operands::F32
    }
}

/// The arithmetic a model's products run in (`--precision`): f32, the default and the
/// reference, or bf16 mixed precision (see `bf16`). Master weights, optimizer state and every
/// tensor between ops are f32 either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    /// The kernels that compute in this precision.
    pub fn kernels(self) -> &'static dyn Kernels<f32> {
        match self {
            Precision::F32 => &Simd,
            Precision::Bf16 => Bf16::native(),
        }
    }

    /// The name `--precision` takes and files record.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision '{s}' (expected f32 or bf16)")),
        }
    }
}

/// f32's fast kernels behind `ops::Kernels` (see the module doc's table for each one's twin).
#[derive(Clone, Copy, Debug, Default)]
pub struct Simd;

impl Kernels<f32> for Simd {
    fn name(&self) -> &'static str {
        "f32-simd"
    }

    fn linear_product(&self, a: MatRef<f32>, b: MatRef<f32>, start: Start<f32>, c: &mut [f32]) {
        gemm::linear_product(a, b, start, c)
    }

    fn linear_product_new(&self, a: MatRef<f32>, b: MatRef<f32>, bias: Option<&[f32]>) -> Vec<f32> {
        gemm::linear_product_new(a, b, bias)
    }

    fn quick_gelu(&self, x: &[f32], y: &mut [f32]) {
        activation::quick_gelu_forward(x, y)
    }

    fn quick_gelu_backward(&self, x: &[f32], dy: &[f32], dx: &mut [f32], accumulate: bool) {
        activation::quick_gelu_backward(x, dy, dx, accumulate)
    }

    fn rms_norm_rows(&self, x: &[f32], g: &[f32], eps: f32, y: &mut [f32], rms: &mut [f32]) {
        norm::rms_norm_rows(x, g, eps, y, rms)
    }

    fn rms_norm_backward_rows(
        &self,
        x: &[f32],
        dy: &[f32],
        g: &[f32],
        rms: &[f32],
        dx: Option<(&mut [f32], bool)>,
    ) -> Vec<f32> {
        norm::rms_norm_backward_rows(x, dy, g, rms, dx)
    }

    /// FlashAttention-2: `saved` is the logsumexp of every score row.
    fn attention_forward(
        &self,
        qkv: &[f32],
        dims: AttentionDims,
        causal: bool,
    ) -> AttentionForward<f32> {
        let FlashForward { out, lse } = flash_attention_forward(qkv, dims, causal);
        AttentionForward { out, saved: lse }
    }

    fn attention_backward(
        &self,
        qkv: &[f32],
        out: &[f32],
        saved: &[f32],
        dout: &[f32],
        dims: AttentionDims,
        causal: bool,
        dqkv: &mut [f32],
        accumulate: bool,
    ) {
        flash_attention_backward(
            qkv,
            out,
            saved,
            dout,
            dims,
            causal,
            Operands::F32,
            dqkv,
            accumulate,
        )
    }

    fn decode_attention(&self, cache: KvView<'_, f32>, qkv: &[f32], out: &mut [f32]) {
        decode::decode_attention(cache, qkv, out)
    }

    fn nearest_two(&self, x: &[f32], centers: &Centers) -> (usize, f32, f32) {
        kmeans::nearest_two(x, centers)
    }
}
