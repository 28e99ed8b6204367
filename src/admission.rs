//! Memory admission: estimate what a piece of work will allocate and refuse it, with a clear
//! error, before allocating anything, when it does not fit.
//!
//! Without it a size taken from a flag, a config or a file header goes straight to `Vec`
//! allocations, and a typo (`--n 100000000`) ends in an allocation failure (`SIGABRT`) or the
//! kernel's OOM killer instead of a message. Every size a user controls is checked here first.
//!
//! The **budget** is `IGPT_MAX_MEMORY` when set (bytes, or with a binary suffix: `512M`, `24G`),
//! else `MemAvailable` of `/proc/meminfo` at the time of the check (unlimited where that file
//! does not exist). The **estimates** are deliberately simple — the large buffers only, f32 = 4
//! bytes — and stated in SPEC §8. With `N` parameters, `L` layers, width `d`, MLP width `f`,
//! `H` heads, vocabulary `V`, `P` positions and `B × T` tokens:
//! The estimates that depend on a model's configuration (weights, forward, training, golden,
//! decoding) live beside it in `model::footprint`, so that this module sits at the bottom of the
//! crate and a config can check itself against the budget.
//! - weights: `4N`;
//! - the tape of a forward pass keeps `a = L(12d + 2f + H) + 5d + 2V` floats per token (per
//!   block: two norms, qkv, attention output and its row statistics, two projections, two
//!   dropouts, two residual sums, the MLP's two `f`-wide tensors; then embeddings, `ln_f`,
//!   logits and the softmax of the loss), so a forward pass takes `4N + 4·B·T·a`;
//! - training (and gradients) adds the parameters' gradients and AdamW's two moments, and the
//!   node gradients alive during the backward pass (they are freed as it goes: measured on the
//!   `small` preset at batch 8 and 32, peak memory is within 5 % of `16N + 4·B·T·a`; a quarter
//!   more is allowed for them): `16N + 5·B·T·a`;
//! - a model golden holds training's memory plus its outputs twice (the safetensors collection
//!   and the file's bytes): `+ 2·(4N + 4·B·T·((L + 1)·d + V))`;
//! - decoding `n` sequences of `T` tokens with the KV cache: `8N + 8·n·(L·P·d + T)` (the
//!   weights and the decoder's copy of them packed for streaming, keys and values of every
//!   position of every layer, and the tokens; measured: `igpt sample --n 2` on igpt-s peaks at
//!   780 MiB, the estimate 777 MiB);
//! - benchmarks: sgemm of size `n`, `12n²` (A, B, C); fused attention `[B, H, T, D]`,
//!   `32·B·H·T·D` (qkv and its gradient, output, upstream gradient);
//! - images (palette fits, quantising): `48` bytes per pixel (f32 RGB and a channel-major copy
//!   for k-means, the resize passes, token ids as int32 and int64).

use crate::error::{Error, Result};

/// The environment variable that caps the memory igpt may plan to use.
pub const LIMIT_VAR: &str = "IGPT_MAX_MEMORY";

/// Bytes of an f32.
pub(crate) const F32: f64 = 4.0;

/// How much memory work may take, and where that figure comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub bytes: f64,
    /// `IGPT_MAX_MEMORY`, `MemAvailable in /proc/meminfo`, or why there is no limit.
    pub source: &'static str,
}

/// The budget now: `IGPT_MAX_MEMORY` if set, else `MemAvailable`.
///
/// # Errors
/// If `IGPT_MAX_MEMORY` is not a size.
pub fn budget() -> Result<Budget> {
    if let Some(v) = std::env::var_os(LIMIT_VAR) {
        let v = v.to_string_lossy();
        let bytes = parse_size(&v).ok_or_else(|| {
            Error::invalid(format!("{LIMIT_VAR}='{v}' is not a size (e.g. 8G, 512M, 1000000)"))
        })?;
        return Ok(Budget { bytes, source: LIMIT_VAR });
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    Ok(match meminfo.as_deref().and_then(mem_available) {
        Some(bytes) => Budget { bytes, source: "MemAvailable in /proc/meminfo" },
        None => Budget { bytes: f64::INFINITY, source: "no MemAvailable: not checked" },
    })
}

/// Refuses `bytes` for `what` (the flags or file that ask for it) when they exceed the budget.
pub fn admit(what: &str, bytes: f64) -> Result<()> {
    let budget = budget()?;
    if bytes <= budget.bytes {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{what} needs about {} of memory, more than the {} available ({})",
        human(bytes),
        human(budget.bytes),
        budget.source
    )))
}

/// `n` bytes, a positive number with an optional binary suffix `K`, `M`, `G`, `T` (`KiB`, …).
fn parse_size(s: &str) -> Option<f64> {
    let s = s.trim();
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match s[digits.len()..].to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KB" | "KIB" => 1024.0,
        "M" | "MB" | "MIB" => 1024f64.powi(2),
        "G" | "GB" | "GIB" => 1024f64.powi(3),
        "T" | "TB" | "TIB" => 1024f64.powi(4),
        _ => return None,
    };
    let n: f64 = digits.trim().parse().ok()?;
    (n.is_finite() && n > 0.0).then_some(n * unit)
}

/// `MemAvailable` of `/proc/meminfo` contents, in bytes.
fn mem_available(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// `1.5 GiB`, `12.0 TiB`, `3.4e6 TiB`.
pub fn human(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    for unit in &units[..units.len() - 1] {
        if v < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    if v < 1e5 {
        format!("{v:.1} TiB")
    } else {
        format!("{v:.1e} TiB")
    }
}

/// An sgemm benchmark of size `n`: `12n²`.
pub fn sgemm(n: usize) -> f64 {
    3.0 * F32 * n as f64 * n as f64
}

/// A fused-attention benchmark `[B, H, T, D]`: `32·B·H·T·D`.
pub fn fused_attention(b: usize, h: usize, t: usize, d: usize) -> f64 {
    8.0 * F32 * b as f64 * h as f64 * t as f64 * d as f64
}

/// `count` images of `width × height` pixels through the palette pipeline: 48 bytes a pixel.
pub fn images(count: usize, width: usize, height: usize) -> f64 {
    48.0 * count as f64 * width as f64 * height as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_meminfo_parse() {
        assert_eq!(parse_size("1000"), Some(1000.0));
        assert_eq!(parse_size("24G"), Some(24.0 * 1024f64.powi(3)));
        assert_eq!(parse_size("512MiB"), Some(512.0 * 1024f64.powi(2)));
        assert_eq!(parse_size("1.5k"), Some(1536.0));
        for bad in ["", "G", "-1G", "0", "12X", "nan", "inf"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        let meminfo = "MemTotal:       24683784 kB\nMemAvailable:   23733224 kB\n";
        assert_eq!(mem_available(meminfo), Some(23733224.0 * 1024.0));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(human(1536.0), "1.5 KiB");
        assert_eq!(human(64.0 * 1024f64.powi(3)), "64.0 GiB");
    }

    #[test]
    fn admission_refuses_what_does_not_fit() {
        assert!(admit("a byte", 1.0).is_ok());
        if budget().unwrap().bytes.is_infinite() {
            return; // no MemAvailable on this system: nothing is refused
        }
        let e = admit("--n 1e30", 1e30).unwrap_err().to_string();
        assert!(e.starts_with("--n 1e30 needs about ") && e.contains("available"), "{e}");
    }
}
