//! The torch engine's error type: the from-scratch engine's errors (shapes, files, divergence, with
//! the same messages) plus libtorch's own and device errors.

use crate::device::DeviceError;

/// Result alias of the torch engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the torch engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A shape, file, divergence or argument error, as in the from-scratch engine.
    #[error(transparent)]
    Scratch(#[from] scratch::Error),
    /// An error raised by libtorch (its message part of this one's, so that it is printed once, not
    /// again as a cause).
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
    /// A device that is not available.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e)
    }
}
