//! Shared helpers for the integration tests.

use std::path::PathBuf;

/// The data folder if `relative` exists under it. Without the data (nothing set up), data-dependent
/// tests are skipped with a message, unless `DLFS_REQUIRE_DATA` is set: `make test` sets it, so that in
/// CI a missing data set fails instead of skipping.
pub fn data_dir_or_skip(relative: &str) -> Option<PathBuf> {
    let dir = scratch::data::default_dir();
    if dir.join(relative).exists() {
        return Some(dir);
    }
    if std::env::var_os("DLFS_REQUIRE_DATA").is_some() {
        panic!("{} is missing and DLFS_REQUIRE_DATA is set: run `make setup`", dir.join(relative).display());
    }
    eprintln!("skipped: {} not found (run `make setup` to download the data sets)", dir.join(relative).display());
    None
}

/// `x` rounded to `digits` decimals, as numpy's `np.round`.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
