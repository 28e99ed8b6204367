//! File formats, written by hand and read strictly.
//!
//! igpt exchanges numbers with the outside world through three formats, and unpacks two
//! container formats, each implemented here without external crates so that every byte read and
//! written is visible and testable:
//!
//! * [`json`] — the subset of JSON that `config.json`, `preprocessor_config.json` and the
//!   safetensors header need: a [`Json`] value type, a depth-limited parser, and a deterministic
//!   writer whose numbers round-trip through `f64` (and therefore `f32`).
//! * [`npy`] — numpy's `.npy` format (v1.0/v2.0/v3.0 read, v1.0/v2.0 write) for token files,
//!   palettes and pixel dumps; the writer reproduces `np.save` byte for byte.
//! * [`safetensors`] — HuggingFace's tensor container (`model.safetensors`, golden files); the
//!   writer reproduces the reference `safetensors` library byte for byte.
//! * [`gzip`] — gzip/DEFLATE decompression (read only) for the embedded digits file and
//!   `.tgz` archives.
//! * [`tar`] — tar archives (ustar and pax, read only, zero-copy), e.g. npm tarballs once
//!   gunzipped.
//!
//! Readers take the whole file as bytes plus an `origin` (the path or any name) used in error
//! messages. They validate every length and offset against the bytes actually present *before*
//! allocating, so a malformed or hostile file yields an [`Error`] naming the file and the
//! problem — never a panic and never an allocation larger than the file warrants. [`fuzzing`]
//! holds the round-trip checks that the fuzz targets in `fuzz/` and `tests/fuzz_corpus.rs` run.
//!
//! Writers go through [`write_atomic`]: the file appears complete under its name or not at all.

pub mod fuzzing;
pub mod gzip;
pub mod json;
pub mod npy;
pub mod safetensors;
pub mod tar;

pub use json::{parse_json, read_json, write_json, Json};
pub use npy::{parse_npy, read_npy, to_npy_bytes, write_npy, NpyArray, NpyData};
pub use safetensors::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Reads a whole file into memory, mapping failures to [`Error::io`].
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(path, e))
}

/// Writes `bytes` to `path` atomically: a reader sees either the old file or the complete new
/// one, even if the process dies or the machine loses power mid-write.
///
/// The bytes go to a fresh temporary file in the same directory (a rename is only atomic within
/// one file system), which is flushed to disk (`fsync`) before being renamed over `path`; the
/// directory is then synced so the rename itself is durable. On failure the temporary file is
/// removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path)?;
    let result = write_and_sync(&tmp, bytes).and_then(|()| {
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        sync_dir(path)
    });
    if result.is_err() {
        // Best effort: the temporary file may not exist (or may already be renamed).
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A temporary name next to `path` that no other writer (thread or process) uses.
fn temp_path(path: &Path) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file path", path.display())))?;
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(".{}.tmp.{}.{}", name.to_string_lossy(), std::process::id(), unique);
    Ok(path.with_file_name(tmp_name))
}

fn write_and_sync(tmp: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        File::options().write(true).create_new(true).open(tmp).map_err(|e| Error::io(tmp, e))?;
    file.write_all(bytes).map_err(|e| Error::io(tmp, e))?;
    file.sync_all().map_err(|e| Error::io(tmp, e))
}

/// Makes the rename durable by syncing the containing directory (POSIX only: other systems
/// cannot open a directory as a file).
fn sync_dir(path: &Path) -> Result<()> {
    if cfg!(unix) {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let handle = File::open(dir).map_err(|e| Error::io(dir, e))?;
        handle.sync_all().map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// Decodes little-endian elements of `N` bytes each; `bytes.len()` must be a multiple of `N`
/// (callers have checked it), any remainder is ignored.
pub(crate) fn decode_le<const N: usize, T>(bytes: &[u8], from_le: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut raw = [0u8; N];
            raw.copy_from_slice(chunk);
            from_le(raw)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("igpt-io-{}-{}", name, std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporaries() {
        let dir = scratch_dir("atomic");
        let path = dir.join("out.bin");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let entries: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1, "temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_atomic_into_missing_directory_is_an_io_error() {
        let dir = scratch_dir("atomic-missing");
        let path = dir.join("no-such-dir").join("out.bin");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
