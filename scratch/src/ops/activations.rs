//! Elementwise activation functions and their derivatives.
//!
//! Each one caches what its derivative needs (its output, or its input's sign) and multiplies the
//! incoming gradient elementwise: `∂L/∂x = ∂L/∂y ⊙ f'(x)`.

use ndarray::ArrayD;
use rayon::prelude::*;

use crate::simd::{dispatch, Simd, WithSimd};

/// Arrays at least this long are processed on all cores, in pieces of this length.
const PARALLEL_LEN: usize = 1 << 16;

/// `a` in standard (row-major) layout, copied only if it is not already.
fn standard<F: Float>(a: ArrayD<F>) -> ArrayD<F> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// The activation applied to every element of `a`, in parallel for large arrays.
fn apply_all<F: Float>(activation: Activation, a: ArrayD<F>) -> ArrayD<F> {
    let mut a = standard(a);
    a.as_slice_mut().expect("standard layout").par_chunks_mut(PARALLEL_LEN).for_each(|c| activation.apply(c));
    a
}

/// The gradient `g` multiplied by the derivative, from the array the activation cached, in parallel
/// for large arrays.
fn gradient_all<F: Float>(activation: Activation, g: ArrayD<F>, cached: &ArrayD<F>) -> ArrayD<F> {
    let mut g = standard(g);
    let cached = cached.as_slice().expect("cached arrays are standard layout");
    let gs = g.as_slice_mut().expect("standard layout");
    gs.par_chunks_mut(PARALLEL_LEN).zip(cached.par_chunks(PARALLEL_LEN)).for_each(|(g, c)| activation.gradient(g, c));
    g
}

use super::{no_forward, Mode, Operation};
use crate::{Error, Float, Result};

/// Which activation a layer applies after its affine map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// The identity (the book's `Linear`).
    Linear,
    /// `σ(x) = 1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `max(0, x)`.
    ReLU,
    /// `x` for `x > 0`, `slope · x` otherwise.
    LeakyReLU {
        /// The slope for negative inputs (PyTorch's default is 0.01).
        slope: f64,
    },
    /// The Gaussian error linear unit `x Φ(x)`, exactly or in its tanh approximation (PyTorch's
    /// `nn.GELU(approximate='none' | 'tanh')`, see [`GeluApproximation`]); its derivative
    /// `Φ(x) + x φ(x)` (or the approximation's) is computed from the input.
    Gelu(GeluApproximation),
}

/// Which form of GELU to compute, as PyTorch's `approximate` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluApproximation {
    /// `x Φ(x) = x/2 · (1 + erf(x/√2))`, with `Φ` the standard normal distribution function
    /// (`approximate='none'`).
    Exact,
    /// `x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³)))` (`approximate='tanh'`, GPT-2's form).
    Tanh,
}

impl Activation {
    /// One of each activation (the parametrised ones with a typical parameter): what the tests of every
    /// activation iterate. A new activation goes here too; a test's exhaustive `match` fails to
    /// compile until it does.
    pub const EACH: [Activation; 7] = [
        Activation::Linear,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::ReLU,
        Activation::LeakyReLU { slope: 0.2 },
        Activation::Gelu(GeluApproximation::Exact),
        Activation::Gelu(GeluApproximation::Tanh),
    ];

    /// A fresh operation computing this activation.
    pub fn operation<F: Float>(self) -> Box<dyn Operation<F>> {
        Box::new(ActivationOp { activation: self, cached: None })
    }

    /// Checks the activation's settings (a leaky ReLU's slope must be finite).
    ///
    /// # Errors
    /// A slope that is not finite.
    pub fn validate(self) -> Result<()> {
        match self {
            Activation::LeakyReLU { slope } if !slope.is_finite() => {
                Err(Error::InvalidArgument(format!("leaky ReLU: slope {slope} is not finite")))
            }
            _ => Ok(()),
        }
    }

    /// Whether [`Activation::gradient`] needs the activation's input (leaky ReLU, whose slope may be
    /// negative, and GELU, which is not monotonic) rather than its output (all the others).
    pub(crate) fn derivative_from_input(self) -> bool {
        matches!(self, Activation::LeakyReLU { .. } | Activation::Gelu(_))
    }

    /// `v ← f(v)` for every element, with SIMD where the processor has it.
    pub(crate) fn apply<F: Float>(self, values: &mut [F]) {
        dispatch(Apply { activation: self, values });
    }

    /// `y = f(z)`, leaving in `z` what [`Activation::gradient`] needs as its `cached` values: `z` itself
    /// when the derivative needs the input ([`Activation::derivative_from_input`]), `f(z)` otherwise.
    pub(crate) fn apply_keeping<F: Float>(self, z: &mut [F], y: &mut [F]) {
        if self.derivative_from_input() {
            y.copy_from_slice(z);
            self.apply(y);
        } else {
            self.apply(z);
            y.copy_from_slice(z);
        }
    }

    /// `y ← f(y)`, and in `derivative` the derivative `f'` at the same points, for an activation whose
    /// derivative needs its input ([`Activation::derivative_from_input`]): the backward pass is then
    /// a product ([`scale_by`]), and GELU's `Φ(x)` is computed once for both. The values are those
    /// of [`Activation::apply`] and of [`Activation::gradient`] with a gradient of 1.
    ///
    /// # Panics
    /// If the slices differ in length, or for an activation whose derivative needs its output.
    pub(crate) fn apply_with_derivative<F: Float>(self, y: &mut [F], derivative: &mut [F]) {
        assert_eq!(y.len(), derivative.len(), "values and their derivatives");
        assert!(self.derivative_from_input(), "{self:?}: the derivative is computed from the output");
        dispatch(ApplyWithDerivative { activation: self, values: y, derivative });
    }

    /// `g ← g ⊙ f'(·)` for every element, the derivative computed from `cached`: the activation's output,
    /// or its input where [`Activation::derivative_from_input`].
    ///
    /// # Panics
    /// If the slices differ in length.
    pub(crate) fn gradient<F: Float>(self, grad: &mut [F], cached: &[F]) {
        assert_eq!(grad.len(), cached.len(), "a gradient and its cached values");
        dispatch(Gradient { activation: self, grad, cached });
    }

    /// The name used in layer descriptions (`"sigmoid"`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::ReLU => "relu",
            Activation::LeakyReLU { .. } => "leaky_relu",
            Activation::Gelu(GeluApproximation::Exact) => "gelu",
            Activation::Gelu(GeluApproximation::Tanh) => "gelu_tanh",
        }
    }
}

/// `v`, or zero if `v` is subnormal (nonzero and below the smallest normal number, about 1.2e-38 in
/// `f32`), as a select rather than a branch.
///
/// A saturated sigmoid (the book's chapter-4 networks with standard-normal weights reach inputs of ±100)
/// gives outputs and gradients that small, and the matrix products that take them in run many times
/// slower on processors that compute subnormal numbers in microcode: measured on 2 AVX-512 Xeon cores,
/// an epoch of `ch4-momentum` took 2.75 s instead of 0.42 s. Zeroing them changes no value by more than
/// that bound.
#[inline(always)]
fn flush_subnormal<F: Float>(v: F) -> F {
    if v.abs() < F::min_positive_value() {
        F::zero()
    } else {
        v
    }
}

/// [`Activation::apply`], compiled for each instruction-set level.
struct Apply<'a, F> {
    activation: Activation,
    values: &'a mut [F],
}

impl<F: Float> WithSimd for Apply<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let values = self.values.iter_mut();
        match self.activation {
            Activation::Linear => {}
            Activation::Sigmoid => values.for_each(|v| *v = flush_subnormal(v.sigmoid_fast())),
            Activation::Tanh => values.for_each(|v| *v = v.tanh_fast()),
            Activation::ReLU => values.for_each(|v| *v = v.max(F::zero())),
            Activation::LeakyReLU { slope } => {
                let slope = F::cast(slope);
                values.for_each(|v| *v = if *v > F::zero() { *v } else { slope * *v });
            }
            Activation::Gelu(GeluApproximation::Exact) => {
                let (half, one, rsqrt2) = (F::cast(0.5), F::one(), F::cast(std::f64::consts::FRAC_1_SQRT_2));
                values.for_each(|v| *v = half * *v * (one + (*v * rsqrt2).erf_fast()));
            }
            Activation::Gelu(GeluApproximation::Tanh) => {
                let (half, one, beta, kappa) = (F::cast(0.5), F::one(), F::cast(GELU_BETA), F::cast(GELU_KAPPA));
                values.for_each(|v| *v = half * *v * (one + (beta * (*v + kappa * *v * *v * *v)).tanh_fast()));
            }
        }
    }
}

/// [`Activation::apply_with_derivative`], compiled for each instruction-set level.
struct ApplyWithDerivative<'a, F> {
    activation: Activation,
    values: &'a mut [F],
    derivative: &'a mut [F],
}

impl<F: Float> WithSimd for ApplyWithDerivative<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let pairs = self.values.iter_mut().zip(self.derivative.iter_mut());
        let one = F::one();
        match self.activation {
            Activation::LeakyReLU { slope } => {
                let slope = F::cast(slope);
                pairs.for_each(|(v, d)| {
                    let positive = *v > F::zero();
                    *d = if positive { one } else { slope };
                    *v = if positive { *v } else { slope * *v };
                });
            }
            // As in `Apply` and `Gradient`: x Φ(x) and Φ(x) + x φ(x), Φ(x) = (1 + erf(x/√2)) / 2.
            Activation::Gelu(GeluApproximation::Exact) => {
                let (half, rsqrt2, density) =
                    (F::cast(0.5), F::cast(std::f64::consts::FRAC_1_SQRT_2), F::cast(GELU_DENSITY));
                pairs.for_each(|(v, d)| {
                    let x = *v;
                    let one_erf = one + (x * rsqrt2).erf_fast();
                    *d = half * one_erf + x * density * (-half * x * x).exp_fast();
                    *v = half * x * one_erf;
                });
            }
            Activation::Gelu(GeluApproximation::Tanh) => {
                let (half, two, four) = (F::cast(0.5), F::cast(2.0), F::cast(4.0));
                let (beta, kappa, kappa3) = (F::cast(GELU_BETA), F::cast(GELU_KAPPA), F::cast(3.0 * GELU_KAPPA));
                pairs.for_each(|(v, d)| {
                    let x = *v;
                    let x2 = x * x;
                    let u = beta * (x + kappa * x2 * x);
                    let s = (-two * u.abs()).exp_fast();
                    let r = one / (one + s);
                    let t = ((one - s) * r).copysign(u);
                    *d = half * (one + t) + half * x * (four * s * r * r) * beta * (one + kappa3 * x2);
                    *v = half * x * (one + (beta * (x + kappa * x * x * x)).tanh_fast());
                });
            }
            Activation::Linear | Activation::Sigmoid | Activation::Tanh | Activation::ReLU => {
                unreachable!("checked by apply_with_derivative")
            }
        }
    }
}

/// `g ← g ⊙ d` for every element: a gradient through an activation whose derivative `d` was kept
/// ([`Activation::apply_with_derivative`]).
///
/// # Panics
/// If the slices differ in length.
pub(crate) fn scale_by<F: Float>(grad: &mut [F], derivative: &[F]) {
    assert_eq!(grad.len(), derivative.len(), "a gradient and the derivatives");
    dispatch(ScaleBy { grad, derivative });
}

/// [`scale_by`], compiled for each instruction-set level.
struct ScaleBy<'a, F> {
    grad: &'a mut [F],
    derivative: &'a [F],
}

impl<F: Float> WithSimd for ScaleBy<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        self.grad.iter_mut().zip(self.derivative).for_each(|(g, &d)| *g *= d);
    }
}

/// `√(2/π)`, the tanh approximation's scale.
const GELU_BETA: f64 = 0.797_884_560_802_865_4;
/// The tanh approximation's cubic coefficient.
const GELU_KAPPA: f64 = 0.044715;
/// `1/√(2π)`, the standard normal density at 0.
const GELU_DENSITY: f64 = 0.398_942_280_401_432_7;

/// [`Activation::gradient`], compiled for each instruction-set level.
struct Gradient<'a, F> {
    activation: Activation,
    grad: &'a mut [F],
    cached: &'a [F],
}

impl<F: Float> WithSimd for Gradient<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let pairs = self.grad.iter_mut().zip(self.cached);
        let one = F::one();
        match self.activation {
            Activation::Linear => {}
            Activation::Sigmoid => pairs.for_each(|(g, &y)| *g = flush_subnormal(*g * (y * (one - y)))),
            Activation::Tanh => pairs.for_each(|(g, &y)| *g *= one - y * y),
            // A select, not a branch: the signs are random, and a branch would be mispredicted half the
            // time.
            Activation::ReLU => pairs.for_each(|(g, &y)| *g = if y > F::zero() { *g } else { F::zero() }),
            Activation::LeakyReLU { slope } => {
                let slope = F::cast(slope);
                pairs.for_each(|(g, &x)| *g *= if x > F::zero() { one } else { slope });
            }
            // d/dx x Φ(x) = Φ(x) + x φ(x),  φ(x) = e^{−x²/2} / √(2π).
            Activation::Gelu(GeluApproximation::Exact) => {
                let (half, rsqrt2, density) =
                    (F::cast(0.5), F::cast(std::f64::consts::FRAC_1_SQRT_2), F::cast(GELU_DENSITY));
                pairs.for_each(|(g, &x)| {
                    let cdf = half * (one + (x * rsqrt2).erf_fast());
                    *g *= cdf + x * density * (-half * x * x).exp_fast();
                });
            }
            // With u = β (x + κx³) and t = tanh(u): d/dx x/2 (1 + t) = (1 + t)/2 + x/2 (1 − t²) β (1 + 3κx²).
            // Both from s = e^{−2|u|}: t = sign(u) (1 − s)/(1 + s) and 1 − t² = 4s/(1 + s)², which keeps its
            // relative precision where t rounds to ±1 (1 − t² would cancel).
            Activation::Gelu(GeluApproximation::Tanh) => {
                let (half, two, four) = (F::cast(0.5), F::cast(2.0), F::cast(4.0));
                let (beta, kappa, kappa3) = (F::cast(GELU_BETA), F::cast(GELU_KAPPA), F::cast(3.0 * GELU_KAPPA));
                pairs.for_each(|(g, &x)| {
                    let x2 = x * x;
                    let u = beta * (x + kappa * x2 * x);
                    let s = (-two * u.abs()).exp_fast();
                    let r = one / (one + s);
                    let t = ((one - s) * r).copysign(u);
                    *g *= half * (one + t) + half * x * (four * s * r * r) * beta * (one + kappa3 * x2);
                });
            }
        }
    }
}

/// An activation as an operation of its own: `y = f(x)`, `∂L/∂x = ∂L/∂y ⊙ f'(·)`, the derivative
/// computed from the output it keeps (or from its input, for the leaky ReLU, whose slope may be
/// negative).
///
/// The book's ReLU passes the gradient where `y ≥ 0`, which is everywhere, so negative inputs get a
/// gradient too; this one is correct, and matches PyTorch (gradient 0 at `x = 0`).
pub struct ActivationOp<F> {
    activation: Activation,
    /// What [`Activation::gradient`] needs, from the last forward pass.
    cached: Option<ArrayD<F>>,
}

impl<F: Float> Operation<F> for ActivationOp<F> {
    fn name(&self) -> &'static str {
        self.activation.name()
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        if self.activation.derivative_from_input() {
            let input = standard(input);
            let y = apply_all(self.activation, input.clone());
            self.cached = Some(input);
            Ok(y)
        } else {
            let y = apply_all(self.activation, input);
            self.cached = Some(y.clone());
            Ok(y)
        }
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        Ok(apply_all(self.activation, input))
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let cached = self.cached.as_ref().ok_or_else(|| no_forward(self.activation.name()))?;
        if cached.shape() != output_grad.shape() {
            return Err(Error::shape("output gradient", format!("{:?}", cached.shape()), output_grad.shape()));
        }
        Ok(gradient_all(self.activation, output_grad, cached))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant (and GELU form) is in [`Activation::EACH`], in order: a new variant breaks this
    /// exhaustive `match` until it has a place, and the test until `EACH` lists it there.
    #[test]
    fn each_lists_every_activation() {
        let place = |a: Activation| match a {
            Activation::Linear => 0,
            Activation::Sigmoid => 1,
            Activation::Tanh => 2,
            Activation::ReLU => 3,
            Activation::LeakyReLU { .. } => 4,
            Activation::Gelu(GeluApproximation::Exact) => 5,
            Activation::Gelu(GeluApproximation::Tanh) => 6,
        };
        let places: Vec<usize> = Activation::EACH.iter().map(|&a| place(a)).collect();
        assert_eq!(places, (0..Activation::EACH.len()).collect::<Vec<_>>());
    }

    #[test]
    fn a_saturated_sigmoid_gives_zero_rather_than_subnormal_numbers() {
        // e⁻⁹⁰ ≈ 8e-40 and 1e-20 · 1e-20 are subnormal in f32.
        let mut y = [-90.0f32, -10.0, 0.0];
        Activation::Sigmoid.apply(&mut y);
        assert_eq!(y[0], 0.0);
        assert!(y[1] > 0.0 && y[1].is_normal());
        let mut g = [1e-20f32, 1e-20, 1.0];
        let cached = [1e-20f32, 0.5, 0.5];
        Activation::Sigmoid.gradient(&mut g, &cached);
        assert_eq!(g, [0.0, 0.25e-20, 0.25]);
    }

    /// The values and derivatives computed together are those computed apart, bit for bit, in both
    /// precisions and at every instruction-set level's length (with a tail).
    fn values_with_derivatives_are_those_computed_apart<F: Float>() {
        let mut rng = crate::rng::RandomState::new(4);
        let x: Vec<F> = rng.normal::<F, _>(0.0, 3.0, 37).into_raw_vec_and_offset().0;
        for activation in [
            Activation::Gelu(GeluApproximation::Exact),
            Activation::Gelu(GeluApproximation::Tanh),
            Activation::LeakyReLU { slope: -0.3 },
        ] {
            let (mut y, mut d) = (x.clone(), vec![F::zero(); x.len()]);
            activation.apply_with_derivative(&mut y, &mut d);
            let mut apart = x.clone();
            activation.apply(&mut apart);
            let mut g = vec![F::one(); x.len()];
            activation.gradient(&mut g, &x);
            assert_eq!(y, apart, "{activation:?}");
            assert_eq!(d, g, "{activation:?}'");
            let mut scaled = vec![F::cast(0.75); x.len()];
            scale_by(&mut scaled, &d);
            let mut direct = vec![F::cast(0.75); x.len()];
            activation.gradient(&mut direct, &x);
            assert_eq!(scaled, direct, "{activation:?}: a gradient through the kept derivative");
        }
    }

    #[test]
    fn values_with_derivatives_are_those_computed_apart_f32_f64() {
        values_with_derivatives_are_those_computed_apart::<f32>();
        values_with_derivatives_are_those_computed_apart::<f64>();
    }

    #[test]
    fn gelu_and_its_derivative_match_high_precision_values() {
        // (x, x Φ(x), its derivative, the tanh form, its derivative), computed in 40-digit arithmetic.
        const VALUES: [[f64; 5]; 10] = [
            [-6.0, -5.9195258702261885e-09, -3.5468709453902015e-08, -8.439646700762297e-11, -7.709973930953696e-10],
            [-3.0, -0.0040496940948902835, -0.011945647204183927, -0.003637392081773019, -0.011584166630969726],
            [-1.5, -0.1002108019032871, -0.12746919222997952, -0.10042842301976708, -0.12771079315143308],
            [-0.5, -0.15426876936299344, 0.13250487534383715, -0.15428599017485609, 0.1326300964653577],
            [-0.001, -0.000499601057786089, 0.4992021157051586, -0.000499601057786418, 0.499202115706475],
            [0.0, 0.0, 0.5, 0.0, 0.5],
            [0.25, 0.14967658142073093, 0.695373354883636, 0.149675350701685, 0.6953540951510604],
            [1.0, 0.8413447460685429, 1.0833154705876864, 0.8411919906082767, 1.0829640838457826],
            [2.5, 2.4844758366855597, 1.037611085908145, 2.484915733910001, 1.037951576212666],
            [7.0, 6.999999999991041, 1.0000000000626632, 6.999999999999997, 1.0000000000000278],
        ];
        for [x, exact, d_exact, tanh, d_tanh] in VALUES {
            for (form, y, dy) in [(GeluApproximation::Exact, exact, d_exact), (GeluApproximation::Tanh, tanh, d_tanh)] {
                let gelu = Activation::Gelu(form);
                // `1 + erf` and `1 + tanh` cancel for negative x (PyTorch computes the same formula): the
                // error is a few ulp of 1, times |x|.
                let tolerance = 4e-16 * x.abs().max(1.0);
                let (mut v, mut g) = ([x], [1.0]);
                gelu.apply(&mut v);
                gelu.gradient(&mut g, &[x]);
                assert!((v[0] - y).abs() <= tolerance, "{form:?} at {x}: {} vs {y}", v[0]);
                assert!((g[0] - dy).abs() <= tolerance, "{form:?}' at {x}: {} vs {dy}", g[0]);
                let (mut v, mut g) = ([x as f32], [1.0f32]);
                gelu.apply(&mut v);
                gelu.gradient(&mut g, &[x as f32]);
                let tolerance = 4e-7 * x.abs().max(1.0);
                assert!((f64::from(v[0]) - y).abs() <= tolerance, "f32 {form:?} at {x}: {} vs {y}", v[0]);
                assert!((f64::from(g[0]) - dy).abs() <= tolerance, "f32 {form:?}' at {x}: {} vs {dy}", g[0]);
            }
        }
        assert_eq!(
            (Activation::Gelu(GeluApproximation::Exact).name(), Activation::Gelu(GeluApproximation::Tanh).name()),
            ("gelu", "gelu_tanh")
        );
    }
}
