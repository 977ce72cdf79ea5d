//! Gradient clipping: by value (the book's chapter 6) or by global norm, and an optimizer wrapper
//! that clips before every step.

use rayon::prelude::*;

use super::{LearningRate, Optimizer};
use crate::network::on_pool;
use crate::param::NamedParamMut;
use crate::simd::{self, dispatch, Simd, WithSimd};
use crate::{Error, Float, Result};

/// Gradient clipping, applied to all gradients before an update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip {
    /// Clamps every element to `[−limit, limit]`: the book's chapter 6 optimizers, with `limit = 2`
    /// (`torch.nn.utils.clip_grad_value_`).
    Value(f64),
    /// Scales all gradients together by `min(1, max_norm / ‖g‖)`, where `‖g‖` is the 2-norm of every
    /// gradient element of every parameter (`torch.nn.utils.clip_grad_norm_`, whose `ε = 1e-6` it
    /// shares: the factor is `max_norm / (‖g‖ + 1e-6)`).
    Norm(f64),
}

impl Clip {
    /// Checks the limit.
    ///
    /// # Errors
    /// If the limit is not positive and finite.
    pub fn validate(self) -> Result<()> {
        let (Clip::Value(limit) | Clip::Norm(limit)) = self;
        if limit > 0.0 && limit.is_finite() {
            Ok(())
        } else {
            let kind = match self {
                Clip::Value(_) => "value",
                Clip::Norm(_) => "norm",
            };
            Err(Error::InvalidArgument(format!("clipping by {kind} at {limit}: the limit must be positive and finite")))
        }
    }

    /// With [`Clip::Norm`], the factor `max_norm / (‖g‖ + 1e-6)` that scales every gradient, given the
    /// global norm `‖g‖`, when it is below 1; `None` otherwise (nothing to scale).
    pub fn norm_factor(self, norm: f64) -> Option<f64> {
        match self {
            Clip::Norm(max_norm) => Some(max_norm / (norm + 1e-6)).filter(|&factor| factor < 1.0),
            Clip::Value(_) => None,
        }
    }

    /// Clips the gradients in place and returns their global 2-norm before clipping,
    /// `‖g‖ = √(Σ_p Σ_i g_pi²)`: each parameter's sum of squares (in `f64`) computed in parallel, the
    /// sums added in the parameters' order.
    ///
    /// # Errors
    /// If the limit is not positive and finite.
    pub fn apply<F: Float>(self, params: &mut [NamedParamMut<'_, F>]) -> Result<f64> {
        self.validate()?;
        Ok(on_pool(|| {
            let squares: Vec<f64> = params.par_iter().map(|(_, p)| sum_of_squares(&p.grad)).collect();
            let norm = squares.iter().sum::<f64>().sqrt();
            match self {
                Clip::Value(limit) => {
                    let (lo, hi) = (F::cast(-limit), F::cast(limit));
                    each_gradient(params, |g| *g = g.max(lo).min(hi));
                }
                Clip::Norm(_) => {
                    if let Some(factor) = self.norm_factor(norm) {
                        let factor = F::cast(factor);
                        each_gradient(params, |g| *g *= factor);
                    }
                }
            }
            norm
        }))
    }
}

/// `op` on every gradient element of every parameter, the parameters in parallel.
fn each_gradient<F: Float>(params: &mut [NamedParamMut<'_, F>], op: impl Fn(&mut F) + Sync) {
    params.par_iter_mut().for_each(|(_, p)| match p.grad.as_slice_memory_order_mut() {
        Some(grad) => simd::for_each(grad, &op),
        None => p.grad.iter_mut().for_each(&op),
    });
}

/// Independent partial sums in [`sum_of_squares`]: enough for the compiler to keep them in vector
/// registers.
const LANES: usize = 16;

/// `Σ a²` in `f64`.
fn sum_of_squares<F: Float>(a: &ndarray::ArrayD<F>) -> f64 {
    match a.as_slice_memory_order() {
        Some(values) => dispatch(SumOfSquares { values }),
        None => a.iter().map(|&v| v.as_f64() * v.as_f64()).sum(),
    }
}

/// [`sum_of_squares`] of a slice, in [`LANES`] interleaved partial sums, compiled for each
/// instruction-set level.
struct SumOfSquares<'a, F> {
    values: &'a [F],
}

impl<F: Float> WithSimd for SumOfSquares<'_, F> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> f64 {
        let mut acc = [0.0; LANES];
        let chunks = self.values.chunks_exact(LANES);
        let tail = chunks.remainder().iter().map(|&v| v.as_f64() * v.as_f64()).sum::<f64>();
        for chunk in chunks {
            for (s, &v) in acc.iter_mut().zip(chunk) {
                *s += v.as_f64() * v.as_f64();
            }
        }
        acc.iter().sum::<f64>() + tail
    }
}

/// An optimizer that clips the gradients before every step.
pub struct Clipped<O> {
    inner: O,
    clip: Clip,
}

impl<O> Clipped<O> {
    /// `inner`, with `clip` applied before each of its steps.
    pub fn new(inner: O, clip: Clip) -> Self {
        Clipped { inner, clip }
    }
}

impl<F: Float, O: Optimizer<F>> Optimizer<F> for Clipped<O> {
    fn step(&mut self, params: &mut [NamedParamMut<'_, F>]) -> Result<()> {
        self.clip.apply(params)?;
        self.inner.step(params)
    }

    fn schedule(&mut self) -> &mut LearningRate {
        self.inner.schedule()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;
    use crate::param::{Layout, Param};

    fn params() -> (Param<f64>, Param<f64>) {
        let mut a = Param::new(array![0.0, 0.0].into_dyn(), Layout::Canonical);
        let mut b = Param::new(array![0.0].into_dyn(), Layout::Canonical);
        a.grad = array![3.0, -5.0].into_dyn();
        b.grad = array![0.5].into_dyn();
        (a, b)
    }

    #[test]
    fn clipping_by_value_clamps_each_element() {
        let (mut a, mut b) = params();
        let mut list = vec![("a".to_string(), &mut a), ("b".to_string(), &mut b)];
        Clip::Value(2.0).apply(&mut list).unwrap();
        assert_eq!(a.grad, array![2.0, -2.0].into_dyn());
        assert_eq!(b.grad, array![0.5].into_dyn());
    }

    #[test]
    fn clipping_by_norm_scales_everything_together() {
        let (mut a, mut b) = params();
        let mut list = vec![("a".to_string(), &mut a), ("b".to_string(), &mut b)];
        let norm = Clip::Norm(1.0).apply(&mut list).unwrap();
        assert!((norm - 34.25f64.sqrt()).abs() < 1e-12);
        let after: f64 = a.grad.iter().chain(b.grad.iter()).map(|g| g * g).sum::<f64>().sqrt();
        assert!((after - 1.0).abs() < 1e-6);
        assert!((a.grad[0] / b.grad[0] - 6.0).abs() < 1e-12, "directions are kept");
        let mut list = vec![("a".to_string(), &mut a)];
        assert!(Clip::Norm(-1.0).apply(&mut list).is_err());
    }

    #[test]
    fn the_norm_and_the_scaling_cover_long_and_strided_gradients() {
        let mut rng = crate::rng::RandomState::new(4);
        // 1000 elements (not a multiple of the partial sums), and every other column of a matrix.
        let mut long = Param::new(ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[1000])), Layout::Canonical);
        long.grad = rng.randn(ndarray::IxDyn(&[1000]));
        let mut strided = Param::new(ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[7, 5])), Layout::Canonical);
        let mut grad: ndarray::Array2<f32> = rng.randn((7, 10));
        grad.slice_collapse(ndarray::s![.., ..;2]);
        assert!(grad.as_slice_memory_order().is_none());
        strided.grad = grad.into_dyn();
        let expected: f64 = long.grad.iter().chain(strided.grad.iter()).map(|&g| f64::from(g) * f64::from(g)).sum();
        let before = (long.grad.clone(), strided.grad.clone());
        let mut list = vec![("long".to_string(), &mut long), ("strided".to_string(), &mut strided)];
        let norm = Clip::Norm(1.0).apply(&mut list).unwrap();
        assert!((norm - expected.sqrt()).abs() < 1e-12 * norm);
        let factor = (1.0 / (norm + 1e-6)) as f32;
        assert_eq!(long.grad, before.0.mapv(|g| g * factor));
        assert_eq!(strided.grad, before.1.mapv(|g| g * factor));
    }
}
