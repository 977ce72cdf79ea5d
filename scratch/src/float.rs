//! The floating-point element type of every array in the crate.
//!
//! Everything is generic over [`Float`], implemented for `f32` (speed) and `f64` (exact reproduction of
//! the book's numbers and parity with libtorch to 1e-10).

use std::fmt::{Debug, Display, LowerExp};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};

/// A floating-point scalar: `f32` or `f64`.
pub trait Float:
    num_traits::Float
    + LinalgScalar
    + num_traits::FromPrimitive
    + ScalarOperand
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Debug
    + Display
    + LowerExp
    + Default
    + Send
    + Sync
    + 'static
{
    /// The type's name as numpy and PyTorch spell it (`"f32"`, `"f64"`).
    const NAME: &'static str;

    /// Converts from `f64`, rounding to nearest for `f32`.
    fn cast(x: f64) -> Self;

    /// Converts to `f64` exactly.
    fn as_f64(self) -> f64;
}

impl Float for f32 {
    const NAME: &'static str = "f32";

    fn cast(x: f64) -> Self {
        x as f32
    }

    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";

    fn cast(x: f64) -> Self {
        x
    }

    fn as_f64(self) -> f64 {
        self
    }
}
