//! File writers (RELION STAR, IMOD binary models) and the STAR reader.
//!
//! Path writers go through [`write_atomic`]: the content is written to a temporary
//! file in the target folder, flushed and synced, then renamed over the target, so a
//! crash never leaves a partial file.

pub mod imod;
pub mod star;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Write a file atomically: `fill` writes into a temporary file beside `path`, which is
/// renamed to `path` on success and removed on failure.
///
/// # Errors
/// [`Error::Io`] if `path` exists and `overwrite` is false, or on any I/O failure;
/// otherwise whatever `fill` returns.
pub fn write_atomic<F>(path: &Path, overwrite: bool, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    let shown = path.display().to_string();
    let io = |source: std::io::Error| Error::Io {
        path: shown.clone(),
        source,
    };
    if !overwrite && path.exists() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "output exists; pass overwrite to replace it",
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{shown}: not a file path")))?;
    let tmp = dir.join(format!(
        ".{}.{}.part",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let file = File::create(&tmp).map_err(io)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        fill(&mut w).map_err(|e| e.at_path(&shown))?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Write to an already created path (used when the caller manages atomicity).
///
/// # Errors
/// [`Error::Io`] on any I/O failure; otherwise whatever `fill` returns.
pub fn write_plain<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    let shown = path.display().to_string();
    let io = |source: std::io::Error| Error::Io {
        path: shown.clone(),
        source,
    };
    let file = File::create(path).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    fill(&mut w).map_err(|e| e.at_path(&shown))?;
    w.flush().map_err(io)
}
