//! Fault injection for crash tests: the environment variable `IGPT_FAULT` makes the process kill
//! itself with SIGKILL at a chosen point of [`super::write_atomic`], so a test can check that a
//! crash in the middle of writing a checkpoint loses nothing (SPEC §16, "Atomic writes").
//!
//! `IGPT_FAULT=STAGE:FILE:N` strikes during the `N`-th atomic write (counting from 1, in this
//! process) of a file named `FILE` (the destination's file name, e.g.
//! `trainer_state.safetensors`), at `STAGE`:
//! - `mid-write`: after the first half of the bytes reached the temporary file;
//! - `before-rename`: after the temporary file is complete and synced, before the rename;
//! - `before-dir-sync`: after the rename, before the directory is synced.
//!
//! A kill, not an error or a panic: no destructor, no clean-up and no `catch_unwind` runs, and
//! what was written stays in the page cache, exactly as when the process is killed from outside.
//! Unset, the variable costs one environment lookup per atomic write; a malformed value is an
//! error, so that a test with a typo fails instead of silently testing nothing.

use crate::error::{Error, Result};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a fault.
pub const FAULT_VAR: &str = "IGPT_FAULT";

/// A point of `write_atomic` where a fault can strike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    MidWrite,
    BeforeRename,
    BeforeDirSync,
}

impl Stage {
    const ALL: [(Stage, &'static str); 3] = [
        (Stage::MidWrite, "mid-write"),
        (Stage::BeforeRename, "before-rename"),
        (Stage::BeforeDirSync, "before-dir-sync"),
    ];
}

/// The fault armed for one call of `write_atomic`: the stage at which it kills, if any.
pub(crate) struct Armed {
    stage: Option<Stage>,
    path: String,
}

impl Armed {
    /// Reads `IGPT_FAULT` and counts this write of `path` against it.
    pub(crate) fn for_write(path: &Path) -> Result<Armed> {
        // Writes of the named file seen so far by this process.
        static MATCHING_WRITES: AtomicU64 = AtomicU64::new(0);
        let mut armed = Armed { stage: None, path: path.display().to_string() };
        let Some(spec) = std::env::var_os(FAULT_VAR) else { return Ok(armed) };
        let (stage, file, n) = parse(&spec.to_string_lossy())?;
        if path.file_name().is_some_and(|name| name == file.as_str())
            && MATCHING_WRITES.fetch_add(1, Ordering::SeqCst) + 1 == n
        {
            armed.stage = Some(stage);
        }
        Ok(armed)
    }

    /// Kills the process if the fault is armed for `stage`.
    pub(crate) fn strike(&self, stage: Stage) {
        if self.stage == Some(stage) {
            let name = Stage::ALL.iter().find(|(s, _)| *s == stage).map_or("", |(_, n)| n);
            eprintln!("igpt: {FAULT_VAR}: killing the process at {name} of {}", self.path);
            kill_self();
        }
    }
}

/// `STAGE:FILE:N` → its parts; `FILE` may itself hold colons.
fn parse(spec: &str) -> Result<(Stage, String, u64)> {
    let bad = || {
        let stages: Vec<&str> = Stage::ALL.iter().map(|(_, n)| *n).collect();
        Error::invalid(format!(
            "{FAULT_VAR}={spec}: expected STAGE:FILE:N with STAGE one of {} and N ≥ 1",
            stages.join(", ")
        ))
    };
    let (stage, rest) = spec.split_once(':').ok_or_else(bad)?;
    let (file, n) = rest.rsplit_once(':').ok_or_else(bad)?;
    let stage = Stage::ALL.iter().find(|(_, name)| *name == stage).ok_or_else(bad)?.0;
    let n: u64 = n.parse().ok().filter(|&n| n >= 1).ok_or_else(bad)?;
    if file.is_empty() {
        return Err(bad());
    }
    Ok((stage, file.to_string(), n))
}

/// SIGKILL to this process: the kernel ends it at once, as `kill -9` from outside would.
#[cfg(unix)]
fn kill_self() -> ! {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGKILL: i32 = 9;
    // SAFETY: kill(2) takes plain integers; signalling our own process touches no memory.
    unsafe { kill(std::process::id() as i32, SIGKILL) };
    // SIGKILL cannot be caught or blocked, so this is not reached.
    std::process::abort()
}

#[cfg(not(unix))]
fn kill_self() -> ! {
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_typos_are_errors() {
        let (stage, file, n) = parse("before-rename:trainer_state.safetensors:2").unwrap();
        assert_eq!(
            (stage, file.as_str(), n),
            (Stage::BeforeRename, "trainer_state.safetensors", 2)
        );
        assert_eq!(parse("mid-write:a:b:1").unwrap().1, "a:b");
        for bad in ["", "mid-write", "mid-write:x", "mid-write:x:0", "midwrite:x:1", "mid-write::1"]
        {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(FAULT_VAR) && e.contains("STAGE:FILE:N"), "{bad}: {e}");
        }
    }
}
