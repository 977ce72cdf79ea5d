//! Shared helpers for the integration tests.

pub use scratch::data::available as data_dir_or_skip;

/// `x` rounded to `digits` decimals, as numpy's `np.round`.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Checks that an error message is written for a person: none of the marks of Rust's debug format
/// (`Some(..)`, `None`, a struct's `Name { field: .. }`, an I/O error's `Os { code: .. }`).
///
/// # Panics
/// If `message` has one, naming it.
pub fn assert_readable(message: &str) {
    for mark in ["Some(", "None", "Os {", " { ", ": {", "Error(", "\\\""] {
        assert!(!message.contains(mark), "debug formatting ({mark}) in: {message}");
    }
    assert!(!message.trim().is_empty(), "an empty message");
}
