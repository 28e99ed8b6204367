//! Fuzz entry points: one function per file reader, shared by the cargo-fuzz targets in `fuzz/`
//! and the stable-Rust corpus test `tests/fuzz_corpus.rs`.
//!
//! Each function feeds arbitrary bytes to a parser. A parser must never panic, whatever the
//! bytes; when it accepts them, writing the value and parsing the result again must give the
//! same value back (and writing is deterministic). A violation panics — that is how a fuzzer
//! reports a bug. Errors are the expected outcome for most inputs; the return value says
//! whether the input was accepted, so the corpus test can check that round trips were run.
//!
//! To fuzz another reader, add a function here and one line to [`TARGETS`]; the corpus test
//! then runs it over `fuzz/corpus/<name>/` automatically (add a `fuzz/fuzz_targets/<name>.rs`
//! for cargo-fuzz as well).

use super::gzip::{gunzip, MAX_OUTPUT};
use super::json::parse_json;
use super::npy::{parse_npy, to_npy_bytes};
use super::safetensors::SafeTensors;
use super::tar::{find, read_tar};
use crate::model::Config;

/// A fuzz entry point: takes arbitrary bytes, returns whether the parser accepted them, and
/// panics only on a bug.
pub type FuzzFn = fn(&[u8]) -> bool;

/// Every fuzz target: its name (the corpus folder and cargo-fuzz binary) and entry point.
pub const TARGETS: &[(&str, FuzzFn)] = &[
    ("json", fuzz_json),
    ("npy", fuzz_npy),
    ("safetensors", fuzz_safetensors),
    ("config", fuzz_config),
    ("gzip", fuzz_gzip),
    ("tar", fuzz_tar),
];

/// JSON: compact and pretty output both parse back to the same value.
pub fn fuzz_json(data: &[u8]) -> bool {
    let Ok(value) = parse_json(data, "fuzz") else { return false };
    // The parser only produces finite numbers, so writing cannot fail.
    let compact = value.to_compact().expect("writing parsed JSON failed");
    let pretty = value.to_pretty().expect("writing parsed JSON failed");
    for text in [compact, pretty] {
        let again = parse_json(text.as_bytes(), "fuzz (written)").expect("written JSON rejected");
        assert_eq!(again, value, "JSON round trip changed the value: {text}");
    }
    true
}

/// `.npy`: writing, parsing and writing again gives the same bytes (compared as bytes so that
/// NaN payloads count as equal), and the shape survives.
pub fn fuzz_npy(data: &[u8]) -> bool {
    let Ok(array) = parse_npy(data, "fuzz") else { return false };
    let bytes = to_npy_bytes(&array).expect("writing a parsed .npy array failed");
    let again = parse_npy(&bytes, "fuzz (written)").expect("written .npy rejected");
    assert_eq!(again.shape, array.shape);
    assert_eq!(to_npy_bytes(&again).expect("second write failed"), bytes);
    true
}

/// safetensors: the written file parses to the same tensors and metadata, and writing that
/// again reproduces the written bytes exactly.
pub fn fuzz_safetensors(data: &[u8]) -> bool {
    let Ok(st) = SafeTensors::parse(data, "fuzz") else { return false };
    let bytes = st.to_bytes().expect("writing parsed safetensors failed");
    let again = SafeTensors::parse(&bytes, "fuzz (written)").expect("written safetensors rejected");
    assert_eq!(again.metadata, st.metadata);
    assert_eq!(again.tensors.len(), st.tensors.len());
    for (name, view) in &st.tensors {
        assert_eq!(again.get(name), Some(view), "tensor {name} changed");
    }
    assert_eq!(again.to_bytes().expect("second write failed"), bytes);
    true
}

/// `config.json`: an accepted configuration is valid, and writing it and reading it back gives
/// the same configuration.
pub fn fuzz_config(data: &[u8]) -> bool {
    let Ok(json) = parse_json(data, "fuzz") else { return false };
    let Ok(config) = Config::from_json(&json, "fuzz") else { return false };
    config.validate("fuzz").expect("an accepted config must be valid");
    let again =
        Config::from_json(&config.to_json(), "fuzz (written)").expect("written config rejected");
    assert_eq!(again, config, "config round trip changed the value");
    true
}

/// gzip: the decoder never panics, and its output respects the size cap.
pub fn fuzz_gzip(data: &[u8]) -> bool {
    let Ok(out) = gunzip(data, "fuzz") else { return false };
    assert!(out.len() <= MAX_OUTPUT, "gunzip exceeded its output cap");
    true
}

/// tar: every accepted file's data is a slice of the input (nothing copied or invented), its
/// path is relative without `..` and finds that same slice, and reading again gives the same
/// entries.
pub fn fuzz_tar(data: &[u8]) -> bool {
    let Ok(entries) = read_tar(data, "fuzz") else { return false };
    let input = data.as_ptr_range();
    for entry in &entries {
        let slice = entry.data.as_ptr_range();
        assert!(input.start <= slice.start && slice.end <= input.end, "data outside the input");
        let path = &entry.path;
        assert!(!path.starts_with('/') && !path.split('/').any(|c| c == ".."), "unsafe {path:?}");
        let found = find(&entries, path, "fuzz").expect("an entry's path not found");
        assert_eq!(found.as_ptr_range(), slice, "{path:?} finds other data");
    }
    assert_eq!(read_tar(data, "fuzz").expect("second read failed"), entries);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_report_acceptance() {
        for (_, target) in TARGETS {
            assert!(!target(b""));
            assert!(!target(b"\x93NUMPY\x01\x00"));
        }
        assert!(fuzz_json(br#"{"a":[1,2.5,"x\u00e9"],"b":null}"#));
        assert!(fuzz_safetensors(b"\x08\0\0\0\0\0\0\0{}      "));
        let header = b"{'descr':'|u1','fortran_order':False,'shape':()}";
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
        npy.extend_from_slice(header);
        npy.push(42);
        assert!(fuzz_npy(&npy));
        npy.push(43);
        assert!(!fuzz_npy(&npy), "trailing byte accepted");
        assert!(fuzz_tar(&[0; 1024]));
    }
}
