//! Opening the files the parsers read: only regular files, never more bytes than the format or a stated
//! maximum allows, and every size checked before anything is allocated.
//!
//! Every parser of the crate (the IDX, CSV and text loaders and [`crate::checkpoint::load`]) opens its
//! file through [`open`], so that a device (`/dev/zero`), a FIFO or a directory is refused with a clear
//! error instead of being read without end.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use crate::{Error, Result};

/// An opened regular file and its length from the file system.
pub(crate) struct Opened {
    /// The file, positioned at its start.
    pub file: File,
    /// Its length in bytes when it was opened.
    pub len: u64,
}

/// The error for an I/O failure on `path`; a missing file is [`Error::MissingFile`] with `hint`.
pub(crate) fn io_error(path: &Path, hint: &str, source: std::io::Error) -> Error {
    match source.kind() {
        ErrorKind::NotFound => Error::MissingFile { path: path.to_owned(), hint: hint.to_owned() },
        _ => Error::Io { path: path.to_owned(), error: source },
    }
}

/// Why `metadata` does not describe a regular file, if it does not.
fn not_regular(metadata: &std::fs::Metadata) -> Option<&'static str> {
    let kind = metadata.file_type();
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("is a directory, not a file")
    } else {
        Some("is not a regular file (a device, FIFO or socket?); give the path of a data file")
    }
}

/// Opens `path` if it is a regular file; a missing file is [`Error::MissingFile`] with `hint`.
///
/// The type is checked on the path before opening (opening a FIFO would block) and again on the opened
/// file, in case the path changed in between.
pub(crate) fn open(path: &Path, hint: &str) -> Result<Opened> {
    let metadata = std::fs::metadata(path).map_err(|e| io_error(path, hint, e))?;
    if let Some(reason) = not_regular(&metadata) {
        return Err(Error::bad_file(path, reason));
    }
    let file = File::open(path).map_err(|e| io_error(path, hint, e))?;
    let metadata = file.metadata().map_err(|e| io_error(path, hint, e))?;
    if let Some(reason) = not_regular(&metadata) {
        return Err(Error::bad_file(path, reason));
    }
    Ok(Opened { file, len: metadata.len() })
}

/// The whole of `path`, a regular file (see [`open`]) of at most `max` bytes (`limit_name` names the
/// constant, for the message). Reads exactly the length the file system reports, and fails if the file
/// turns out longer or shorter (it changed while it was read, or it is a special file such as those
/// under `/proc`).
pub(crate) fn read(path: &Path, hint: &str, max: u64, limit_name: &str) -> Result<Vec<u8>> {
    let Opened { file, len } = open(path, hint)?;
    if len > max {
        return Err(Error::bad_file(
            path,
            format!(
                "the file has {len} bytes, more than the {max} this loader accepts ({limit_name}); is it the right \
                 file?"
            ),
        ));
    }
    let expected = usize::try_from(len)
        .map_err(|_| Error::bad_file(path, format!("{len} bytes do not fit in this platform's memory")))?;
    let bytes = read_at_most(file, len.saturating_add(1), expected).map_err(|e| io_error(path, hint, e))?;
    if bytes.len() != expected {
        return Err(Error::bad_file(
            path,
            format!(
                "the file system reports {len} bytes but {} could be read (did the file change while it was read?)",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Reads from `reader` until its end or until `limit` bytes, whichever comes first; `capacity` is
/// reserved up front and must already be known to be affordable (never a size taken from a header
/// alone).
pub(crate) fn read_at_most(reader: impl Read, limit: u64, capacity: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(capacity);
    reader.take(limit).read_to_end(&mut out)?;
    Ok(out)
}
