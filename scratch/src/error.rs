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
