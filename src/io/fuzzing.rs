//! Fuzz entry points: one function per file reader, shared by the cargo-fuzz targets in `fuzz/`
//! and the stable-Rust corpus test `tests/fuzz_corpus.rs`.
//!
//! Each function feeds arbitrary bytes to a parser. A parser must never panic, whatever the
//! bytes; when it accepts them, writing the value and parsing the result again must give the
//! same value back (and writing is deterministic). A violation panics — that is how a fuzzer
//! reports a bug. Errors are the expected outcome for most inputs and are ignored.
//!
//! To fuzz another reader, add a function here and one line to [`TARGETS`]; the corpus test
//! then runs it over `fuzz/corpus/<name>/` automatically (add a `fuzz/fuzz_targets/<name>.rs`
//! for cargo-fuzz as well).

use super::json::parse_json;
use super::npy::{parse_npy, to_npy_bytes};
use super::safetensors::SafeTensors;

/// A fuzz entry point: takes arbitrary bytes, panics only on a bug.
pub type FuzzFn = fn(&[u8]);

/// Every fuzz target: its name (the corpus folder and cargo-fuzz binary) and entry point.
pub const TARGETS: &[(&str, FuzzFn)] =
    &[("json", fuzz_json), ("npy", fuzz_npy), ("safetensors", fuzz_safetensors)];

/// JSON: compact and pretty output both parse back to the same value.
pub fn fuzz_json(data: &[u8]) {
    let Ok(value) = parse_json(data, "fuzz") else { return };
    // The parser only produces finite numbers, so writing cannot fail.
    let compact = value.to_compact().expect("writing parsed JSON failed");
    let pretty = value.to_pretty().expect("writing parsed JSON failed");
    for text in [compact, pretty] {
        let again = parse_json(text.as_bytes(), "fuzz (written)").expect("written JSON rejected");
        assert_eq!(again, value, "JSON round trip changed the value: {text}");
    }
}

/// `.npy`: writing, parsing and writing again gives the same bytes (compared as bytes so that
/// NaN payloads count as equal), and the shape survives.
pub fn fuzz_npy(data: &[u8]) {
    let Ok(array) = parse_npy(data, "fuzz") else { return };
    let bytes = to_npy_bytes(&array).expect("writing a parsed .npy array failed");
    let again = parse_npy(&bytes, "fuzz (written)").expect("written .npy rejected");
    assert_eq!(again.shape, array.shape);
    assert_eq!(to_npy_bytes(&again).expect("second write failed"), bytes);
}

/// safetensors: the written file parses to the same tensors and metadata, and writing that
/// again reproduces the written bytes exactly.
pub fn fuzz_safetensors(data: &[u8]) {
    let Ok(st) = SafeTensors::parse(data, "fuzz") else { return };
    let bytes = st.to_bytes().expect("writing parsed safetensors failed");
    let again = SafeTensors::parse(&bytes, "fuzz (written)").expect("written safetensors rejected");
    assert_eq!(again.metadata, st.metadata);
    assert_eq!(again.tensors.len(), st.tensors.len());
    for (name, view) in &st.tensors {
        assert_eq!(again.get(name), Some(view), "tensor {name} changed");
    }
    assert_eq!(again.to_bytes().expect("second write failed"), bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_accept_valid_and_invalid_inputs() {
        for (_, target) in TARGETS {
            target(b"");
            target(b"{}");
            target(b"\x93NUMPY\x01\x00");
        }
        fuzz_json(br#"{"a":[1,2.5,"x\u00e9"],"b":null}"#);
        fuzz_safetensors(b"\x08\0\0\0\0\0\0\0{}      ");
    }
}
