//! The one error type of the core. The Python layer maps I/O errors to `OSError` and
//! everything else to `ValueError` (see `py/mod.rs`).

/// Every failure the core can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller passed an argument outside its valid range.
    #[error("{0}")]
    InvalidArgument(String),
    /// A file could be read but its content is malformed.
    #[error("{path}: {}{message}", line_label(*.line))]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for the core.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// An I/O error raised by a writer that only knew its output as a placeholder
    /// (`<STAR output>`) named with the real `path`; other errors unchanged.
    #[must_use]
    pub fn at_path(self, path: &str) -> Self {
        match self {
            Error::Io { path: p, source } if p.starts_with('<') => Error::Io {
                path: path.to_owned(),
                source,
            },
            other => other,
        }
    }
}

/// `"line N: "`, or nothing for line 0 (the whole file, e.g. one with no entries).
fn line_label(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}
