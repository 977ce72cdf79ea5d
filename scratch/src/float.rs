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
    /// Whether this is single precision (`f32`), for the choices that depend on the precision
    /// (tolerances, the dtype a checkpoint is saved in).
    const SINGLE: bool;

    /// Converts from `f64`, rounding to nearest for `f32`.
    fn cast(x: f64) -> Self;

    /// Converts to `f64` exactly.
    fn as_f64(self) -> f64;

    /// `tanh(x)`. For `f64` the standard library's; for `f32` a branch-free version that the compiler
    /// turns into SIMD code over an array (a few ulp, see [`tanh_f32`]).
    fn tanh_fast(self) -> Self;

    /// The logistic function `1 / (1 + e⁻ˣ)`, with the same split as [`Float::tanh_fast`].
    fn sigmoid_fast(self) -> Self;
}

impl Float for f32 {
    const NAME: &'static str = "f32";
    const SINGLE: bool = true;

    fn cast(x: f64) -> Self {
        x as f32
    }

    fn as_f64(self) -> f64 {
        f64::from(self)
    }

    #[inline]
    fn tanh_fast(self) -> Self {
        tanh_f32(self)
    }

    #[inline]
    fn sigmoid_fast(self) -> Self {
        1.0 / (1.0 + exp_f32(-self))
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";
    const SINGLE: bool = false;

    fn cast(x: f64) -> Self {
        x
    }

    fn as_f64(self) -> f64 {
        self
    }

    fn tanh_fast(self) -> Self {
        self.tanh()
    }

    fn sigmoid_fast(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
}

/// `eˣ` in `f32` without branches or calls, so that a loop over an array vectorises:
///
/// ```text
/// eˣ = 2ⁿ · eʳ,   n = round(x / ln 2),   r = x − n ln 2 ∈ [−ln2/2, ln2/2]
/// ```
///
/// with `eʳ` from its Taylor polynomial of degree 6 (remainder below 6e-8 there) and `2ⁿ` built from the
/// exponent bits. Arguments are clamped to `[−87, 88.3]`, where the result is a normal `f32`.
///
/// The rounding adds `1.5 · 2²³`, which leaves `n` in the low bits of the sum: `2ⁿ` is made from those
/// bits with integer operations only (a float-to-integer cast would not vectorise as well).
#[inline]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n · LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding then subtracting 1.5 · 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.3);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The bits of `shifted` are those of 1.5 · 2^23 plus n (as a two's-complement integer).
    let two_n = shifted.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23;
    p * f32::from_bits(two_n)
}

/// `tanh(x)` in `f32` without branches: `sign(x) · (1 − t) / (1 + t)` with `t = e^{−2|x|}` from
/// [`exp_f32`] (no cancellation: `t ≤ 0.61` there), except for `|x| < 1/4`, where `1 − t` would lose
/// digits and the odd Taylor polynomial up to `x⁹` is exact to 3e-9.
#[inline]
pub fn tanh_f32(x: f32) -> f32 {
    let x2 = x * x;
    let small = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))));
    let t = exp_f32(-2.0 * x.abs());
    let large = ((1.0 - t) / (1.0 + t)).copysign(x);
    if x.abs() < 0.25 {
        small
    } else {
        large
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_f32_functions_are_within_a_few_ulp_of_the_standard_library() {
        assert!(exp_f32(f32::NAN).is_nan() && tanh_f32(f32::NAN).is_nan(), "NaN stays NaN (divergence is detected)");
        let mut worst = (0.0f64, 0.0f64, 0.0f64);
        for i in -400_000..=400_000 {
            let x = i as f32 * 5e-5; // [-20, 20]
            let (t, te) = (f64::from(tanh_f32(x)), f64::from(x).tanh());
            let (e, ee) = (f64::from(exp_f32(x)), f64::from(x).exp());
            let (s, se) = (f64::from(x.sigmoid_fast()), 1.0 / (1.0 + (-f64::from(x)).exp()));
            worst.0 = worst.0.max((t - te).abs() / te.abs().max(1e-30));
            worst.1 = worst.1.max((e - ee).abs() / ee);
            worst.2 = worst.2.max((s - se).abs() / se);
        }
        // f32 has a relative precision of 6e-8: these are a few ulp.
        assert!(worst.0 < 3e-7 && worst.1 < 3e-7 && worst.2 < 3e-7, "{worst:?}");
        assert_eq!(tanh_f32(0.0), 0.0);
        assert_eq!((tanh_f32(100.0), tanh_f32(-100.0)), (1.0, -1.0));
        assert!(exp_f32(-200.0) > 0.0 && exp_f32(200.0).is_finite());
    }
}
