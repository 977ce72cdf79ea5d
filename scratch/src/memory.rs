//! Whether a network fits in memory, decided before anything is allocated: a description yields its
//! parameter count and an estimate of what a training step holds ([`NetSpec::step_bytes`]), and a size
//! that does not fit the machine's available memory, or the limit `DLFS_MEMORY_LIMIT` sets, is refused
//! with a message naming the thing, the size and the limit (instead of the process aborting on a
//! failed allocation).
//!
//! [`NetSpec::step_bytes`]: crate::spec::NetSpec::step_bytes

use std::cell::Cell;

use crate::{Error, Result};

/// The variable that limits the memory a network may take, in bytes or with a `K`, `M` or `G`
/// suffix (powers of 1024): `DLFS_MEMORY_LIMIT=8G`.
pub const LIMIT_VARIABLE: &str = "DLFS_MEMORY_LIMIT";

thread_local! {
    /// The limit [`with_limit`] sets on this thread, in bytes.
    static SCOPED: Cell<Option<u128>> = const { Cell::new(None) };
}

/// Runs `f` with the checks on this thread allowing `bytes`, whatever `DLFS_MEMORY_LIMIT` and the
/// machine's memory say: for a program, or a test, that must stay within a budget of its own. The
/// previous limit comes back afterwards (also if `f` panics).
///
/// ```
/// use scratch::spec::DenseSpec;
///
/// let refused = scratch::memory::with_limit(1 << 20, || DenseSpec::new(1000).validate(1000));
/// assert!(refused.unwrap_err().to_string().contains("more than the limit this thread sets (1.0 MiB)"));
/// ```
pub fn with_limit<T>(bytes: u128, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<u128>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SCOPED.with(|s| s.replace(Some(bytes))));
    f()
}

/// The memory the checks allow, in bytes, and where that number comes from: the limit [`with_limit`]
/// sets on this thread, else `DLFS_MEMORY_LIMIT` if it is set, else the memory the system says is
/// available (`MemAvailable` of `/proc/meminfo`), else no limit.
///
/// # Errors
/// A `DLFS_MEMORY_LIMIT` that is not a size.
pub fn limit() -> Result<Option<(u128, &'static str)>> {
    if let Some(bytes) = SCOPED.with(Cell::get) {
        return Ok(Some((bytes, "the limit this thread sets")));
    }
    if let Ok(value) = std::env::var(LIMIT_VARIABLE) {
        let bytes = parse_size(&value).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{LIMIT_VARIABLE}={value}: expected a size in bytes, or with a K, M or G suffix (8G)"
            ))
        })?;
        return Ok(Some((bytes, "the limit DLFS_MEMORY_LIMIT sets")));
    }
    Ok(available().map(|bytes| (bytes, "the memory this machine has available")))
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn available() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A size: a whole number of bytes, or with a `K`, `M` or `G` suffix.
fn parse_size(s: &str) -> Option<u128> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u128 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits.trim().parse::<u128>().ok()?.checked_mul(unit)
}

/// `bytes` as a person reads it: `1.5 GiB`.
pub fn show(bytes: u128) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if value < 1e4 {
        format!("{value:.1} {}", units[unit])
    } else {
        format!("{value:.3e} {}", units[unit])
    }
}

/// Checks that `bytes` for `what` (`the network's 1000 parameters`) fit under the [`limit`].
///
/// ```
/// let err = scratch::memory::check(1 << 50, "the weights").unwrap_err();
/// assert!(err.to_string().contains("the weights would need 1.0 PiB, more than"));
/// ```
///
/// # Errors
/// More than the limit, naming `what`, the size and the limit.
pub fn check(bytes: u128, what: &str) -> Result<()> {
    match limit()? {
        Some((limit, source)) if bytes > limit => Err(Error::InvalidArgument(format!(
            "{what} would need {}, more than {source} ({}); make the network smaller, or set {LIMIT_VARIABLE} if \
             the machine has more",
            show(bytes),
            show(limit)
        ))),
        None if bytes > isize::MAX as u128 => {
            Err(Error::InvalidArgument(format!("{what} would need {}, more than any allocation can hold", show(bytes))))
        }
        _ => Ok(()),
    }
}

/// The bytes `count` parameters take while a layer is built and trained: the draw in `f64`, the
/// value and the gradient.
pub fn parameter_bytes(count: u128, value_bytes: usize) -> u128 {
    count.saturating_mul(8 + 2 * value_bytes as u128)
}

/// The number of values in tensors of `shapes`, saturating at `u128::MAX`.
pub fn count(shapes: &[&[usize]]) -> u128 {
    shapes.iter().fold(0u128, |total, shape| {
        let n = shape.iter().try_fold(1u128, |acc, &d| acc.checked_mul(d as u128)).unwrap_or(u128::MAX);
        total.saturating_add(n)
    })
}

/// Checks that a layer's parameters of `shapes` fit under the [`limit`], in `f64` (the most a layer of
/// either engine takes: the draw, the value and the gradient).
///
/// # Errors
/// As [`check`], naming the parameter count.
pub fn check_parameters(shapes: &[&[usize]]) -> Result<()> {
    let n = count(shapes);
    check(parameter_bytes(n, 8), &format!("the layer's {n} parameters"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_show() {
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("512 M"), Some(512 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("-1K"), None);
        assert_eq!(show(100), "100 bytes");
        assert_eq!(show(3 << 29), "1.5 GiB");
        assert!(check(u128::MAX, "everything").is_err());
        assert!(check(1024, "a little").is_ok());
        assert_eq!(count(&[&[2, 3], &[4]]), 10);
        assert_eq!(count(&[&[usize::MAX, usize::MAX, usize::MAX]]), u128::MAX);
        let err = check_parameters(&[&[784, 1 << 40]]).unwrap_err().to_string();
        assert!(err.contains("the layer's 862017116176384 parameters would need "), "{err}");
        assert!(err.contains("iB, more than"), "{err}");
    }
}
