//! `eˣ`, the logistic function and `tanh` on vector registers, written once for every level of
//! [`crate::simd`]: at the scalar level they are [`crate::float`]'s `exp_f32`, `tanh_f32`, ...
//! themselves, operation for operation; at a vector level every `a · b + c` of their polynomials is one
//! fused multiply-add (which rounds once, so the results can differ from the scalar ones in the last
//! bit).
//!
//! The formulas, and why they hold to a few ulp, are documented on the scalar functions. Two things
//! are particular to the vector form:
//!
//! * the argument is clamped with comparisons and selects, not `min`/`max`, whose answer for NaN
//!   differs between levels: a NaN goes through every step and comes out NaN, so that a diverging
//!   network is detected;
//! * `2ⁿ` is built from the bits of `x / ln 2 + 1.5 · 2ᵐ` (`m` the mantissa's width), whose low bits
//!   hold `n`: shifting those bits into the exponent field shifts the bits of `1.5 · 2ᵐ` out, since
//!   its low bits are zeros, so adding the exponent's bias and shifting (an `f32`), or multiplying by
//!   `2⁵²` (an `f64`, whose lanes `pulp` cannot shift), is all it takes.

use pulp::Simd;

use super::SimdFloat;

/// The functions of this module for one float type.
pub trait VectorMath: SimdFloat {
    /// `eˣ`: [`crate::float::exp_f32`], [`crate::float::exp_f64`].
    fn simd_exp<S: Simd>(simd: S, x: Self::V<S>) -> Self::V<S>;

    /// The logistic function `1 / (1 + e⁻ˣ)`.
    fn simd_sigmoid<S: Simd>(simd: S, x: Self::V<S>) -> Self::V<S>;

    /// `tanh(x)`: [`crate::float::tanh_f32`], [`crate::float::tanh_f64`].
    fn simd_tanh<S: Simd>(simd: S, x: Self::V<S>) -> Self::V<S>;
}

/// `x` clamped to `[lo, hi]`, NaN kept.
#[inline(always)]
fn clamp_f32<S: Simd>(simd: S, x: S::f32s, lo: f32, hi: f32) -> S::f32s {
    let (lo, hi) = (simd.splat_f32s(lo), simd.splat_f32s(hi));
    let x = simd.select_f32s(simd.less_than_f32s(x, lo), lo, x);
    simd.select_f32s(simd.greater_than_f32s(x, hi), hi, x)
}

/// `x` clamped to `[lo, hi]`, NaN kept.
#[inline(always)]
fn clamp_f64<S: Simd>(simd: S, x: S::f64s, lo: f64, hi: f64) -> S::f64s {
    let (lo, hi) = (simd.splat_f64s(lo), simd.splat_f64s(hi));
    let x = simd.select_f64s(simd.less_than_f64s(x, lo), lo, x);
    simd.select_f64s(simd.greater_than_f64s(x, hi), hi, x)
}

/// `magnitude` (not negative) with the sign of `sign`.
#[inline(always)]
fn with_sign_f32<S: Simd>(simd: S, magnitude: S::f32s, sign: S::f32s) -> S::f32s {
    simd.or_f32s(magnitude, simd.and_f32s(sign, simd.splat_f32s(-0.0)))
}

/// `magnitude` (not negative) with the sign of `sign`.
#[inline(always)]
fn with_sign_f64<S: Simd>(simd: S, magnitude: S::f64s, sign: S::f64s) -> S::f64s {
    simd.or_f64s(magnitude, simd.and_f64s(sign, simd.splat_f64s(-0.0)))
}

/// `Σ cₖ vᵏ` by Horner's rule, the coefficients lowest degree first.
#[inline(always)]
fn horner_f32<S: Simd, const N: usize>(simd: S, c: &[f32; N], v: S::f32s) -> S::f32s {
    let mut p = simd.splat_f32s(c[N - 1]);
    for k in (0..N - 1).rev() {
        p = simd.mul_add_e_f32s(v, p, simd.splat_f32s(c[k]));
    }
    p
}

impl VectorMath for f32 {
    #[inline(always)]
    fn simd_exp<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        // ln 2 split so that n · LN2_HI is exact for |n| < 2^9.
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        // Adding then subtracting 1.5 · 2^23 rounds to the nearest integer.
        const ROUND: f32 = 12_582_912.0;
        /// `eʳ`'s Taylor coefficients up to `r⁶`.
        const TAYLOR: [f32; 7] = [1.0, 1.0, 0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0];
        let x = clamp_f32(simd, x, -87.0, 88.3);
        let shifted = simd.mul_add_e_f32s(x, simd.splat_f32s(LOG2E), simd.splat_f32s(ROUND));
        let n = simd.sub_f32s(shifted, simd.splat_f32s(ROUND));
        let r = simd.negate_mul_add_e_f32s(n, simd.splat_f32s(LN2_HI), x);
        let r = simd.negate_mul_add_e_f32s(n, simd.splat_f32s(LN2_LO), r);
        let p = horner_f32(simd, &TAYLOR, r);
        let biased = simd.add_u32s(simd.transmute_u32s_f32s(shifted), simd.splat_u32s(127));
        let two_n = simd.transmute_f32s_u32s(simd.wrapping_dyn_shl_u32s(biased, simd.splat_u32s(23)));
        simd.mul_f32s(p, two_n)
    }

    #[inline(always)]
    fn simd_sigmoid<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
        let one = simd.splat_f32s(1.0);
        simd.div_f32s(one, simd.add_f32s(one, Self::simd_exp(simd, simd.neg_f32s(x))))
    }

    #[inline(always)]
    fn simd_tanh<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
        /// `tanh`'s odd Taylor coefficients, of `x`, `x³`, ... `x⁹`.
        const TAYLOR: [f32; 5] = [1.0, -1.0 / 3.0, 2.0 / 15.0, -17.0 / 315.0, 62.0 / 2835.0];
        let one = simd.splat_f32s(1.0);
        let x2 = simd.mul_f32s(x, x);
        let small = simd.mul_f32s(x, horner_f32(simd, &TAYLOR, x2));
        let a = simd.abs_f32s(x);
        let t = Self::simd_exp(simd, simd.mul_f32s(simd.splat_f32s(-2.0), a));
        let large = simd.div_f32s(simd.sub_f32s(one, t), simd.add_f32s(one, t));
        let large = with_sign_f32(simd, large, x);
        simd.select_f32s(simd.less_than_f32s(a, simd.splat_f32s(0.25)), small, large)
    }
}

/// `2ⁿ` and `eʳ − 1` for `x = n ln 2 + r`: [`crate::float`]'s `exp_parts_f64`.
#[inline(always)]
fn exp_parts_f64<S: Simd>(simd: S, x: S::f64s) -> (S::f64s, S::f64s) {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // ln 2 split (fdlibm's) so that n · LN2_HI is exact for |n| < 2^20.
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Adding then subtracting 1.5 · 2^52 rounds to the nearest integer.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let x = clamp_f64(simd, x, -708.0, 709.0);
    let shifted = simd.mul_add_e_f64s(x, simd.splat_f64s(LOG2E), simd.splat_f64s(ROUND));
    let n = simd.sub_f64s(shifted, simd.splat_f64s(ROUND));
    let r = simd.negate_mul_add_e_f64s(n, simd.splat_f64s(LN2_HI), x);
    let r = simd.negate_mul_add_e_f64s(n, simd.splat_f64s(LN2_LO), r);
    // Σ_{k=1..13} r^k / k!, by Horner's rule.
    let mut q = simd.splat_f64s(1.0 / 6_227_020_800.0);
    for k in (1..13).rev() {
        q = simd.mul_add_e_f64s(q, r, simd.splat_f64s(1.0 / crate::float::FACTORIALS[k]));
    }
    let biased = simd.add_u64s(simd.transmute_u64s_f64s(shifted), simd.splat_u64s(1023));
    let two_n = simd.transmute_f64s_u64s(simd.mul_u64s(biased, simd.splat_u64s(1 << 52)));
    (two_n, simd.mul_f64s(q, r))
}

impl VectorMath for f64 {
    #[inline(always)]
    fn simd_exp<S: Simd>(simd: S, x: S::f64s) -> S::f64s {
        let (two_n, q) = exp_parts_f64(simd, x);
        simd.mul_add_e_f64s(two_n, q, two_n)
    }

    #[inline(always)]
    fn simd_sigmoid<S: Simd>(simd: S, x: S::f64s) -> S::f64s {
        let one = simd.splat_f64s(1.0);
        simd.div_f64s(one, simd.add_f64s(one, Self::simd_exp(simd, simd.neg_f64s(x))))
    }

    #[inline(always)]
    fn simd_tanh<S: Simd>(simd: S, x: S::f64s) -> S::f64s {
        let (two_n, q) = exp_parts_f64(simd, simd.mul_f64s(simd.splat_f64s(-2.0), simd.abs_f64s(x)));
        let m = simd.mul_add_e_f64s(two_n, q, simd.sub_f64s(two_n, simd.splat_f64s(1.0)));
        let magnitude = simd.div_f64s(simd.neg_f64s(m), simd.add_f64s(simd.splat_f64s(2.0), m));
        with_sign_f64(simd, magnitude, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{levels, zip_map, WithSimd};

    /// `exp`, `sigmoid` and `tanh` of `x` at one level, through [`zip_map`].
    struct Apply<'a, T> {
        x: &'a [T],
        out: [&'a mut [T]; 3],
    }

    impl<T: VectorMath> WithSimd for Apply<'_, T> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let Apply { x, out: [e, s, t] } = self;
            zip_map!(simd, [x], [e, s, t], |[x], _| {
                [T::simd_exp(simd, x), T::simd_sigmoid(simd, x), T::simd_tanh(simd, x)]
            });
        }
    }

    /// The three functions of `x` at every level against the standard library's in `f64`: the worst
    /// relative error of each over `x` and the levels.
    fn worst<T: VectorMath + Copy + Into<f64>>(x: &[T], zero: T) -> [f64; 3] {
        let mut worst = [0.0f64; 3];
        for arch in levels() {
            let (mut e, mut s, mut t) = (vec![zero; x.len()], vec![zero; x.len()], vec![zero; x.len()]);
            arch.dispatch(Apply { x, out: [&mut e, &mut s, &mut t] });
            for (k, &v) in x.iter().enumerate() {
                let v: f64 = v.into();
                let want = [v.exp(), 1.0 / (1.0 + (-v).exp()), v.tanh()];
                for (w, (got, want)) in
                    worst.iter_mut().zip([e[k].into(), s[k].into(), t[k].into()].into_iter().zip(want))
                {
                    *w = w.max((got - want).abs() / want.abs().max(1e-300));
                }
            }
        }
        worst
    }

    /// Every level agrees with the functions in `f64` to a few units of the last place, up to the
    /// clamps, on a length that is not a whole number of registers.
    #[test]
    fn every_level_is_within_a_few_ulp() {
        let x32: Vec<f32> = (-300_001..=300_001).map(|i| i as f32 * 2.6e-4).collect();
        let [e, s, t] = worst(&x32, 0.0f32);
        assert!(e < 3e-7 && s < 3e-7 && t < 3e-7, "f32: {e:e} {s:e} {t:e}");
        let x64: Vec<f64> = (-300_001..=300_001).map(|i| i as f64 * 1.3e-4).chain([1e-9, -3e-12]).collect();
        let [e, s, t] = worst(&x64, 0.0f64);
        assert!(e < 3e-16 && s < 6e-16 && t < 6e-16, "f64: {e:e} {s:e} {t:e}");
    }

    /// NaN comes out NaN at every level (a diverging network is detected), and the extremes saturate.
    #[test]
    fn nan_stays_nan_and_extremes_saturate() {
        for arch in levels() {
            let x = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 200.0, -200.0, 0.0, -0.0];
            let mut out = [[0.0f32; 7]; 3];
            let [e, s, t] = &mut out;
            arch.dispatch(Apply { x: &x, out: [e, s, t] });
            let [e, s, t] = out;
            assert!(e[0].is_nan() && s[0].is_nan() && t[0].is_nan(), "{arch:?}");
            assert!(e[1].is_finite() && e[2] > 0.0 && e[4] > 0.0, "{arch:?}: {e:?}");
            assert_eq!((s[1], t[3], t[4]), (1.0, 1.0, -1.0), "{arch:?}");
            assert!((0.0..1e-37).contains(&s[2]), "{arch:?}: {s:?}");
            assert_eq!((t[5].to_bits(), t[6].to_bits()), (0.0f32.to_bits(), (-0.0f32).to_bits()), "{arch:?}");

            let x = [f64::NAN, 800.0, -800.0, -0.0];
            let mut out = [[0.0f64; 4]; 3];
            let [e, s, t] = &mut out;
            arch.dispatch(Apply { x: &x, out: [e, s, t] });
            let [e, s, t] = out;
            assert!(e[0].is_nan() && s[0].is_nan() && t[0].is_nan(), "{arch:?}");
            assert!(e[1].is_finite() && e[2] > 0.0 && s[2] >= 0.0, "{arch:?}: {e:?}");
            assert_eq!((t[1], t[2], t[3].to_bits()), (1.0, -1.0, (-0.0f64).to_bits()), "{arch:?}");
        }
    }
}
