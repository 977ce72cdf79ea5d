//! Shared helpers for the integration tests.

pub use scratch::data::available as data_dir_or_skip;

/// `x` rounded to `digits` decimals, as numpy's `np.round`.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
