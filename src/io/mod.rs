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
//! Writers go through [`write_atomic`]: the file appears complete under its name or not at all;
//! [`fault`] lets crash tests kill the process inside it.

pub mod fault;
pub mod fuzzing;
pub mod gzip;
pub mod json;
pub mod npy;
pub mod safetensors;
pub mod tar;

pub use json::{parse_json, read_json, write_json, Json};
pub use npy::{parse_npy, read_npy, to_npy_bytes, write_npy, NpyArray, NpyData};
pub use safetensors::{Dtype, SafeTensors, TensorView};

use fault::Stage;

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
/// removed. `IGPT_FAULT` can kill the process at each of these points (see [`fault`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let fault = fault::Armed::for_write(path)?;
    let (tmp, file) = create_temp(path)?;
    let result = write_and_sync(file, &tmp, bytes, &fault).and_then(|()| {
        fault.strike(Stage::BeforeRename);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        fault.strike(Stage::BeforeDirSync);
        sync_dir(path)
    });
    if result.is_err() {
        // Best effort: the temporary file may already be renamed.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Attempts at a fresh temporary name before giving up (each clash is a leftover of a killed
/// process that had the same id, so more than a few means something else is wrong).
const TEMP_ATTEMPTS: u32 = 1000;

/// Creates a temporary file next to `path`, `.<name>.tmp.<pid>.<n>`, under a name no other
/// writer uses: the process id tells processes apart and the counter writes within one, and
/// `create_new` skips a name that a killed process with the same id left behind.
fn create_temp(path: &Path) -> Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file path", path.display())))?;
    for _ in 0..TEMP_ATTEMPTS {
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(".{}.tmp.{}.{}", name.to_string_lossy(), std::process::id(), unique);
        let tmp = path.with_file_name(tmp_name);
        match File::options().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&tmp, e)),
        }
    }
    Err(Error::invalid(format!(
        "{}: {TEMP_ATTEMPTS} temporary names next to it are all taken",
        path.display()
    )))
}

/// Removes the temporaries of `path` that writers killed mid-write left behind (see
/// `create_temp`), for a caller that knows no other process writes `path` now (a training
/// run owns its run directory); a kill at each checkpoint would otherwise pile them up.
pub fn remove_temporaries(path: &Path) -> Result<()> {
    let Some(name) = path.file_name() else { return Ok(()) };
    let dir = containing_dir(path);
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let is_temp = file_name.strip_prefix(&prefix).is_some_and(|rest| {
            let mut parts = rest.split('.');
            let number = |p: Option<&str>| {
                p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            };
            number(parts.next()) && number(parts.next()) && parts.next().is_none()
        });
        if is_temp {
            fs::remove_file(entry.path()).map_err(|e| Error::io(&entry.path(), e))?;
        }
    }
    Ok(())
}

/// Writes `bytes` (in two halves, so a fault can strike between them) and syncs the file.
fn write_and_sync(mut file: File, tmp: &Path, bytes: &[u8], fault: &fault::Armed) -> Result<()> {
    let (head, tail) = bytes.split_at(bytes.len() / 2);
    file.write_all(head).map_err(|e| Error::io(tmp, e))?;
    fault.strike(Stage::MidWrite);
    file.write_all(tail).map_err(|e| Error::io(tmp, e))?;
    file.sync_all().map_err(|e| Error::io(tmp, e))
}

/// The directory holding `path` (`.` for a bare file name).
fn containing_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes the rename durable by syncing the containing directory (POSIX only: other systems
/// cannot open a directory as a file).
fn sync_dir(path: &Path) -> Result<()> {
    if cfg!(unix) {
        let dir = containing_dir(path);
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
    fn write_atomic_skips_temporaries_a_killed_process_left() {
        // A killed process with this process's id left temporaries under the first names the
        // counter gives; writing must go on under the next free one and leave theirs alone.
        let dir = scratch_dir("atomic-leftovers");
        let path = dir.join("out.bin");
        let leftovers = 200;
        for n in 0..leftovers {
            fs::write(dir.join(format!(".out.bin.tmp.{}.{n}", std::process::id())), b"torn")
                .unwrap();
        }
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), leftovers + 1);
        // The owner of the file clears them; another file's and look-alikes stay.
        fs::write(dir.join(".other.bin.tmp.1.2"), b"x").unwrap();
        fs::write(dir.join(".out.bin.tmp.1.2.3"), b"x").unwrap();
        remove_temporaries(&path).unwrap();
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".other.bin.tmp.1.2", ".out.bin.tmp.1.2.3", "out.bin"]);
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
