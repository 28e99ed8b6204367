//! Fuzz entry points of the file formats: one function per reader, listed with the targets of
//! the higher layers in `crate::fuzzing::TARGETS`, which the cargo-fuzz targets in `fuzz/` and
//! the stable-Rust corpus test `tests/fuzz_corpus.rs` run.
//!
//! Each function feeds arbitrary bytes to a parser. A parser must never panic, whatever the
//! bytes; when it accepts them, writing the value and parsing the result again must give the
//! same value back (and writing is deterministic). A violation panics — that is how a fuzzer
//! reports a bug. Errors are the expected outcome for most inputs; the return value says
//! whether the input was accepted, so the corpus test can check that round trips were run.

use super::gzip::{gunzip, MAX_OUTPUT};
use super::json::parse_json;
use super::npy::{parse_npy, to_npy_bytes};
use super::safetensors::SafeTensors;
use super::tar::{find, read_tar};

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
        for target in [fuzz_json, fuzz_npy, fuzz_safetensors, fuzz_gzip, fuzz_tar] {
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
