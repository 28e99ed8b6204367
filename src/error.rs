//! The one error type of igpt.
//!
//! Every failure a user can cause — a malformed file, a bad argument, a shape that does not fit —
//! comes back as an [`Error`] whose message names the file (or argument) and says what is wrong.
//! Nothing a user passes in may panic; panics are reserved for broken internal invariants.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong, with enough context to act on.
#[derive(Debug)]
pub enum Error {
    /// Reading or writing `path` failed at the operating-system level.
    Io { path: PathBuf, source: std::io::Error },
    /// The contents of `file` are malformed: `msg` says how.
    Format { file: String, msg: String },
    /// A value passed by the caller (an argument, a shape, a configuration) is invalid.
    Invalid(String),
}

/// `Result` with igpt's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }

    /// A malformed-contents error on `file` (a path or any name the caller uses for the bytes).
    pub fn format(file: impl fmt::Display, msg: impl Into<String>) -> Self {
        Error::Format { file: file.to_string(), msg: msg.into() }
    }

    /// An invalid-argument error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {}", path.display(), source),
            Error::Format { file, msg } => write!(f, "{file}: {msg}"),
            Error::Invalid(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
