//! The crate's error type: every failure names the thing a user can act on (the file, the layer, the
//! shapes, the epoch and batch).

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the from-scratch engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An array does not have the shape an operation, layer or loss needs.
    #[error("shape mismatch in {context}: expected {expected}, got {got}")]
    Shape {
        /// Where it happened, e.g. `layers.1 (Dense 13 -> 1): WeightMultiply input`.
        context: String,
        /// The shape that was needed, in words or as `[rows, cols]`.
        expected: String,
        /// The shape that was given.
        got: String,
    },

    /// A data file is absent.
    #[error("{} not found; {hint}", path.display())]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
        /// What to run to get it.
        hint: String,
    },

    /// A data file exists but its content is not what the loader expects.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Reading or writing a file failed. The message holds the operating system's (so that it is
    /// printed once, not again as a cause).
    #[error("{}: {error}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },

    /// Training diverged (see [`crate::train::divergence`]): a loss or gradient is not finite, or the
    /// evaluation loss grew past its bound.
    #[error("training diverged at epoch {epoch}, batch {batch}: {what}")]
    Diverged {
        /// Epoch, counted from 1.
        epoch: usize,
        /// Batch within the epoch, counted from 1 (for an evaluation, the batch it followed).
        batch: usize,
        /// What went wrong: `the loss is not finite`, `the gradient of layers.0.weight is not finite`,
        /// `the evaluation loss … is more than 1000 times the first evaluation's …`.
        what: String,
    },

    /// An argument is out of its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// A [`Error::Shape`] from anything printable.
    pub fn shape(context: impl Into<String>, expected: impl Into<String>, got: impl std::fmt::Debug) -> Self {
        Error::Shape { context: context.into(), expected: expected.into(), got: format!("{got:?}") }
    }

    /// Prefixes the context of a shape or argument error with `outer` (`layers.0 Dense(13 -> 1)`), so that
    /// an error raised deep inside names every level it passed through.
    pub fn within(self, outer: &str) -> Self {
        match self {
            Error::Shape { context, expected, got } => {
                Error::Shape { context: format!("{outer}: {context}"), expected, got }
            }
            Error::InvalidArgument(msg) => Error::InvalidArgument(format!("{outer}: {msg}")),
            other => other,
        }
    }

    /// A [`Error::Diverged`]: `quantity` (`the loss`, `the gradient of layers.0.weight`) is NaN or
    /// infinite after batch `batch` of epoch `epoch`.
    pub fn not_finite(epoch: usize, batch: usize, quantity: impl std::fmt::Display) -> Self {
        Error::Diverged { epoch, batch, what: format!("{quantity} is not finite") }
    }

    /// A [`Error::BadFile`] for `path`.
    pub fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rust's debug formatting, which no message may show.
    const DEBUG_MARKS: [&str; 7] = ["Some(", "None", "Os {", " { ", ": {", "Error(", "\\\""];

    /// One error of each variant, built the way the crate builds them; the match has no wildcard, so a
    /// new variant does not compile until it is here.
    fn each() -> Vec<Error> {
        let io = std::fs::File::open("/nonexistent/model.safetensors").unwrap_err();
        let errors = vec![
            Error::shape("layers.0 Dense(784 -> 89): input", "[batch, 784]", [2, 28, 28]),
            Error::MissingFile { path: "data/mnist/train-images-idx3-ubyte".into(), hint: "run `make setup`".into() },
            Error::bad_file("boston.csv", "row 3 has 13 numbers, not 14"),
            Error::Io { path: "/nonexistent/model.safetensors".into(), error: io },
            Error::not_finite(2, 7, "the gradient of layers.0.weight"),
            Error::InvalidArgument("momentum must be in [0, 1), got 1.5".into()).within("the optimizer"),
        ];
        for e in &errors {
            match e {
                Error::Shape { .. }
                | Error::MissingFile { .. }
                | Error::BadFile { .. }
                | Error::Io { .. }
                | Error::Diverged { .. }
                | Error::InvalidArgument(_) => {}
            }
        }
        errors
    }

    #[test]
    fn every_variant_reads_without_debug_formatting_and_says_each_cause_once() {
        for e in each() {
            let message = e.to_string();
            for mark in DEBUG_MARKS {
                assert!(!message.contains(mark), "debug formatting ({mark}) in: {message}");
            }
            assert!(std::error::Error::source(&e).is_none(), "a cause printed twice: {message}");
        }
        let io = each().into_iter().find(|e| matches!(e, Error::Io { .. })).unwrap().to_string();
        assert!(io.starts_with("/nonexistent/model.safetensors: No such file or directory"), "{io}");
        let shape = each().remove(0).to_string();
        assert!(shape.ends_with("expected [batch, 784], got [2, 28, 28]"), "{shape}");
    }
}
