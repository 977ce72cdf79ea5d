//! Gradient clipping: by value (the book's chapter 6) or by global norm, and an optimizer wrapper
//! that clips before every step.

use super::{LearningRate, Optimizer};
use crate::param::NamedParamMut;
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

    /// Clips the gradients in place and returns their global 2-norm before clipping.
    ///
    /// # Errors
    /// If the limit is not positive and finite.
    pub fn apply<F: Float>(self, params: &mut [NamedParamMut<'_, F>]) -> Result<f64> {
        self.validate()?;
        let norm = params.iter().flat_map(|(_, p)| p.grad.iter()).map(|&g| g.as_f64() * g.as_f64()).sum::<f64>().sqrt();
        match self {
            Clip::Value(limit) => {
                let (lo, hi) = (F::cast(-limit), F::cast(limit));
                params.iter_mut().for_each(|(_, p)| p.grad.mapv_inplace(|g| g.max(lo).min(hi)));
            }
            Clip::Norm(_) => {
                if let Some(factor) = self.norm_factor(norm) {
                    let factor = F::cast(factor);
                    params.iter_mut().for_each(|(_, p)| p.grad.mapv_inplace(|g| g * factor));
                }
            }
        }
        Ok(norm)
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
}
