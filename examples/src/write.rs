//! Output files written whole: a file goes to a temporary name in its folder
//! (`.<name>.partial.<extension>`, the extension kept so that the image encoder still knows the
//! format), is flushed to disk, and only then renamed over the final path, as checkpoints are (see
//! [`scratch::checkpoint`]). A run killed mid-write leaves the previous file as it was, never an empty
//! or half-written one. [`check`] finds, before a run starts, a path that no write could replace.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where [`atomically`] writes `path` before renaming it: `.<stem>.partial.<extension>` beside it
/// (checkpoints: `<name>.partial`, see [`scratch::checkpoint::partial_path`]).
pub fn partial_path(path: &Path) -> PathBuf {
    if path.extension().is_some_and(|e| e == "safetensors") {
        return scratch::checkpoint::partial_path(path);
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!(".{stem}.partial.{}", ext.to_string_lossy()),
        None => format!(".{stem}.partial"),
    };
    path.with_file_name(name)
}

/// Writes `path` whole: `write` fills the temporary path given to it, which is then flushed and
/// renamed to `path`; on failure the temporary file is removed and `path` left as it was. The folder
/// is created if it is not there.
///
/// # Errors
/// What `write` returns, or a failure to create the folder, flush or rename, naming the path.
pub fn atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let partial = partial_path(path);
    let written = write(&partial).and_then(|()| {
        File::open(&partial).and_then(|f| f.sync_all()).with_context(|| format!("flushing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
    });
    if written.is_err() {
        // Best effort: the error being reported is the write's.
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Writes `bytes` to `path` whole (see [`atomically`]).
///
/// # Errors
/// As [`atomically`].
pub fn bytes(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    atomically(path, |partial| {
        std::fs::write(partial, bytes.as_ref()).with_context(|| format!("writing {}", partial.display()))
    })
}

/// Checks, before a run, that `path` can be written whole: neither it nor its temporary path is a
/// folder or anything but a regular file (a link to one included). Whether the folder can be written
/// into is checked once for the whole output folder.
///
/// # Errors
/// Naming the path, what it is, and what to do.
pub fn check(path: &Path) -> Result<()> {
    for p in [path.to_path_buf(), partial_path(path)] {
        let Ok(meta) = std::fs::metadata(&p) else { continue };
        let what = if meta.is_dir() {
            "a folder"
        } else if meta.is_file() {
            continue;
        } else {
            "not a regular file"
        };
        bail!(
            "{} is {what}, where the run will write a file; move it away, or choose another folder with --out",
            p.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_partial_one() {
        let dir = std::env::temp_dir().join(format!("dlfs-write-{}", std::process::id()));
        let path = dir.join("chart.png");
        bytes(&path, b"old").unwrap();
        assert_eq!(partial_path(&path), dir.join(".chart.partial.png"));
        let err = atomically(&path, |partial| {
            std::fs::write(partial, b"half")?;
            bail!("killed")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!partial_path(&path).exists());
        bytes(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        check(&path).unwrap();
        std::fs::create_dir_all(dir.join("taken.json")).unwrap();
        let err = check(&dir.join("taken.json")).unwrap_err().to_string();
        assert!(err.contains("taken.json is a folder"), "{err}");
        std::fs::create_dir_all(dir.join(".blocked.partial.csv")).unwrap();
        let err = check(&dir.join("blocked.csv")).unwrap_err().to_string();
        assert!(err.contains(".blocked.partial.csv is a folder"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
