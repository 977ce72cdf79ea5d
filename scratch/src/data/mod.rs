//! Data sets: loaders that validate what they read and say what is wrong (and, for a missing file,
//! what to run), the book's preprocessing, and a batching [`DataLoader`].
//!
//! `make setup` (`scripts/setup.py`) downloads every data set into the workspace's `data/` folder.

pub mod boston;
mod loader;
pub mod mnist;
pub(crate) mod read;
mod scaler;
pub mod text;

use std::path::{Path, PathBuf};

pub use loader::DataLoader;
pub use scaler::StandardScaler;

use crate::rng::RandomState;
use crate::{Error, Result};

/// The command that downloads the default data sets.
pub const SETUP_HINT: &str = "run `make setup` (or `python3 scripts/setup.py`) in the repository root to download it";

/// The data folder: `$DLFS_DATA` if set, else the workspace's `data/`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("DLFS_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("data"),
    }
}

/// The data folder if `relative` exists under it, for the workspace's tests and examples. When it does
/// not, prints a note and returns `None` (the caller skips), unless `DLFS_REQUIRE_DATA` is set, as
/// `make test` does: then a missing data set is a failure.
///
/// # Panics
/// If the file is missing and `DLFS_REQUIRE_DATA` is set.
pub fn available(relative: &str) -> Option<PathBuf> {
    let dir = default_dir();
    if dir.join(relative).exists() {
        return Some(dir);
    }
    if std::env::var_os("DLFS_REQUIRE_DATA").is_some() {
        panic!("{} is missing and DLFS_REQUIRE_DATA is set: run `make setup`", dir.join(relative).display());
    }
    eprintln!("skipped: {} not found (run `make setup` to download the data sets)", dir.join(relative).display());
    None
}

/// The row indices of scikit-learn's `train_test_split(..., test_size, random_state=seed)` for `n` rows:
/// `perm = RandomState(seed).permutation(n)`, the first `ceil(test_size · n)` rows are the test set and
/// the rest the training set, both in permutation order. Returns `(train, test)`.
///
/// ```
/// let (train, test) = scratch::data::train_test_split(506, 0.3, 80718)?;
/// assert_eq!((train.len(), test.len()), (354, 152));
/// assert_eq!((test[0], train[0]), (203, 4));
/// assert!(scratch::data::train_test_split(506, 1.0, 1).is_err(), "no training rows left");
/// # Ok::<(), scratch::Error>(())
/// ```
///
/// # Errors
/// A test size outside `(0, 1)` (or NaN), or one that leaves either set empty.
pub fn train_test_split(n: usize, test_size: f64, seed: u32) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(test_size > 0.0 && test_size < 1.0) {
        return Err(Error::InvalidArgument(format!(
            "train_test_split: the test size must be in (0, 1), got {test_size}"
        )));
    }
    let n_test = (test_size * n as f64).ceil() as usize;
    if n_test == 0 || n_test >= n {
        return Err(Error::InvalidArgument(format!(
            "train_test_split: a test size of {test_size} of {n} rows leaves an empty set"
        )));
    }
    let mut perm = RandomState::new(seed).permutation(n);
    let train = perm.split_off(n_test);
    Ok((train, perm))
}
