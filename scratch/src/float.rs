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

    /// `tanh(x)` without branches or calls, so that the compiler turns a loop over an array into SIMD
    /// code: within a few ulp, see [`tanh_f32`] and [`tanh_f64`].
    fn tanh_fast(self) -> Self;

    /// The logistic function `1 / (1 + e⁻ˣ)`, with the same split as [`Float::tanh_fast`].
    fn sigmoid_fast(self) -> Self;

    /// `values` as `f32`s if `Self` is `f32`: for kernels written once per type (with SIMD).
    fn as_f32s(values: &[Self]) -> Option<&[f32]>;

    /// `values` as `f32`s if `Self` is `f32`, mutably.
    fn as_f32s_mut(values: &mut [Self]) -> Option<&mut [f32]>;

    /// `values` as `f64`s if `Self` is `f64`.
    fn as_f64s(values: &[Self]) -> Option<&[f64]>;

    /// `values` as `f64`s if `Self` is `f64`, mutably.
    fn as_f64s_mut(values: &mut [Self]) -> Option<&mut [f64]>;
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

    fn as_f32s(values: &[Self]) -> Option<&[f32]> {
        Some(values)
    }

    fn as_f32s_mut(values: &mut [Self]) -> Option<&mut [f32]> {
        Some(values)
    }

    fn as_f64s(_: &[Self]) -> Option<&[f64]> {
        None
    }

    fn as_f64s_mut(_: &mut [Self]) -> Option<&mut [f64]> {
        None
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

    #[inline]
    fn tanh_fast(self) -> Self {
        tanh_f64(self)
    }

    #[inline]
    fn sigmoid_fast(self) -> Self {
        1.0 / (1.0 + exp_f64(-self))
    }

    fn as_f32s(_: &[Self]) -> Option<&[f32]> {
        None
    }

    fn as_f32s_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }

    fn as_f64s(values: &[Self]) -> Option<&[f64]> {
        Some(values)
    }

    fn as_f64s_mut(values: &mut [Self]) -> Option<&mut [f64]> {
        Some(values)
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

/// `2ⁿ` and `eʳ − 1` for `x = n ln 2 + r`, `n = round(x / ln 2)`, `|r| ≤ ln2 / 2`, in `f64` without
/// branches: `eʳ − 1` from its Taylor polynomial of degree 13 (remainder below 5e-18 there), `2ⁿ` built
/// from the exponent bits (as in [`exp_f32`]). Arguments are clamped to `[−708, 709]`, where `2ⁿ` is a
/// normal `f64`.
#[inline]
fn exp_parts_f64(x: f64) -> (f64, f64) {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // ln 2 split (fdlibm's) so that n · LN2_HI is exact for |n| < 2^20.
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Adding then subtracting 1.5 · 2^52 rounds to the nearest integer.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let x = x.clamp(-708.0, 709.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Σ_{k=1..13} r^k / k!, by Horner's rule.
    let mut q = 1.0 / 6_227_020_800.0;
    for k in (1..13).rev() {
        q = q * r + 1.0 / FACTORIALS[k];
    }
    let two_n = f64::from_bits(shifted.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(1023) << 52);
    (two_n, q * r)
}

/// `k!` for `k < 13`.
const FACTORIALS: [f64; 13] =
    [1.0, 1.0, 2.0, 6.0, 24.0, 120.0, 720.0, 5040.0, 40320.0, 362_880.0, 3_628_800.0, 39_916_800.0, 479_001_600.0];

/// `eˣ` in `f64` without branches or calls, so that a loop over an array vectorises: `2ⁿ (1 + q)` with
/// `x = n ln 2 + r`, `|r| ≤ ln 2 / 2` and `q = eʳ − 1` from its Taylor polynomial of degree 13;
/// arguments clamped to `[−708, 709]`. Within 2 ulp of the standard library's.
#[inline]
pub fn exp_f64(x: f64) -> f64 {
    let (two_n, q) = exp_parts_f64(x);
    two_n * q + two_n
}

/// `tanh(x)` in `f64` without branches: `sign(x) · (−m) / (2 + m)` with `m = e^{−2|x|} − 1` computed
/// as `2ⁿ q + (2ⁿ − 1)` from the parts of [`exp_f64`], which keeps its relative precision for small `x`
/// (where `1 − e^{−2|x|}` would cancel); within a few ulp of the standard library's.
#[inline]
pub fn tanh_f64(x: f64) -> f64 {
    let (two_n, q) = exp_parts_f64(-2.0 * x.abs());
    let m = two_n * q + (two_n - 1.0);
    (-m / (2.0 + m)).copysign(x)
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

    #[test]
    fn fast_f64_functions_are_within_a_few_ulp_of_the_standard_library() {
        assert!(exp_f64(f64::NAN).is_nan() && tanh_f64(f64::NAN).is_nan(), "NaN stays NaN (divergence is detected)");
        let mut worst = (0.0f64, 0.0f64, 0.0f64);
        for i in -400_000..=400_000 {
            // [-40, 40], and small arguments in finer steps.
            for x in [i as f64 * 1e-4, i as f64 * 1.2345e-9] {
                let (t, te) = (tanh_f64(x), x.tanh());
                let (e, ee) = (exp_f64(x), x.exp());
                let (s, se) = (x.sigmoid_fast(), 1.0 / (1.0 + (-x).exp()));
                worst.0 = worst.0.max((t - te).abs() / te.abs().max(1e-300));
                worst.1 = worst.1.max((e - ee).abs() / ee);
                worst.2 = worst.2.max((s - se).abs() / se);
            }
        }
        // f64 has a relative precision of 1.1e-16: these are a few ulp.
        assert!(worst.0 < 6e-16 && worst.1 < 3e-16 && worst.2 < 6e-16, "{worst:?}");
        assert_eq!((tanh_f64(0.0), tanh_f64(-0.0).to_bits()), (0.0, (-0.0f64).to_bits()));
        assert_eq!((tanh_f64(100.0), tanh_f64(-100.0)), (1.0, -1.0));
        assert_eq!(exp_f64(0.0), 1.0);
        assert!(exp_f64(-800.0) > 0.0 && exp_f64(800.0).is_finite());
    }
}
