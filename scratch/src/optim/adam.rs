//! Adam and AdamW (chapter 7's optimizer), in PyTorch's form.

use std::collections::HashMap;

use ndarray::{ArrayD, Zip};
use rayon::prelude::*;

use super::{Decay, LearningRate, Optimizer};
use crate::network::on_pool;
use crate::param::NamedParamMut;
use crate::simd::{dispatch, Simd, WithSimd};
use crate::{Error, Float, Result};

/// Weight decay of [`Adam`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightDecay {
    /// None.
    None,
    /// `λ p` added to the gradient before the moments (`torch.optim.Adam(weight_decay=λ)`, as the book's
    /// chapter 7 uses it).
    L2(f64),
    /// `p ← p (1 − lr λ)` before the update, apart from the moments (`torch.optim.AdamW`).
    Decoupled(f64),
}

/// Adam (Kingma and Ba), step for step as `torch.optim.Adam` and `torch.optim.AdamW` compute it:
///
/// ```text
/// t ← t + 1
/// m ← β₁ m + (1 − β₁) g          v ← β₂ v + (1 − β₂) g²
/// p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
///
/// with the [`WeightDecay`] applied first; [`AdamConfig`] holds `β₁`, `β₂`, `ε` and the decay.
///
/// The parameters are updated in parallel, in pieces of their elements, each piece in one pass over
/// its four arrays (value, gradient, moments) with vector instructions.
///
/// ```
/// use scratch::optim::{Adam, Decay, Optimizer};
/// use scratch::param::{Layout, Param};
///
/// let mut p = Param::new(ndarray::arr1(&[1.0f64, -1.0]).into_dyn(), Layout::Canonical);
/// p.grad = ndarray::arr1(&[0.5, -2.0]).into_dyn();
/// let mut adam = Adam::adamw(0.1, 0.01, Decay::None)?;
/// adam.step(&mut [("p".into(), &mut p)])?;
/// // The first step moves every element by about lr, against its gradient's sign.
/// assert!((p.value[0] - (1.0 * (1.0 - 0.1 * 0.01) - 0.1)).abs() < 1e-6);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct Adam<F> {
    lr: LearningRate,
    config: AdamConfig,
    /// The moments and the step count of each parameter, by name.
    state: HashMap<String, Moments<F>>,
}

/// The state Adam keeps for one parameter.
struct Moments<F> {
    /// `m`, the first moment.
    mean: ArrayD<F>,
    /// `v`, the second moment.
    square: ArrayD<F>,
    /// `t`, the steps taken.
    steps: i32,
}

/// The elements of a parameter updated as one task.
const PIECE: usize = 1 << 14;

/// Which parameters a weight decay applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Decayed {
    /// Every parameter (PyTorch's `AdamW` over one parameter group).
    #[default]
    All,
    /// Matrices and larger only (two or more axes in PyTorch's layout: weights, kernels, embeddings),
    /// not biases or normalisation gains: the two parameter groups GPT-2 and nanoGPT train with.
    Matrices,
}

impl Decayed {
    /// Whether a parameter of canonical shape `shape` is decayed.
    pub fn applies_to(self, shape: &[usize]) -> bool {
        match self {
            Decayed::All => true,
            Decayed::Matrices => shape.len() >= 2,
        }
    }
}

/// Adam's constants; both engines' Adam take one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Decay of the first moment, `β₁` (PyTorch: 0.9).
    pub beta1: f64,
    /// Decay of the second moment, `β₂` (PyTorch: 0.999).
    pub beta2: f64,
    /// `ε` in the denominator (PyTorch: 1e-8).
    pub eps: f64,
    /// Weight decay (PyTorch's `Adam`: none; its `AdamW`: decoupled 0.01).
    pub weight_decay: WeightDecay,
    /// The parameters the weight decay applies to.
    pub decayed: Decayed,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: WeightDecay::None, decayed: Decayed::All }
    }
}

impl AdamConfig {
    /// Checks the constants.
    ///
    /// # Errors
    /// A `β` outside `[0, 1)`, a negative `ε`, or a weight decay that is negative or not finite.
    pub fn validate(&self) -> Result<()> {
        let unit = |b: f64| (0.0..1.0).contains(&b);
        let decay_ok = match self.weight_decay {
            WeightDecay::None => true,
            WeightDecay::L2(l) | WeightDecay::Decoupled(l) => l >= 0.0 && l.is_finite(),
        };
        if !(unit(self.beta1) && unit(self.beta2)) {
            let (b1, b2) = (self.beta1, self.beta2);
            return Err(Error::InvalidArgument(format!("Adam: β₁ {b1} and β₂ {b2} must be in [0, 1)")));
        }
        if !(self.eps >= 0.0 && self.eps.is_finite() && decay_ok) {
            return Err(Error::InvalidArgument(format!(
                "Adam: ε {} and the weight decay must be finite and not negative",
                self.eps
            )));
        }
        Ok(())
    }

    /// The bias corrections `(1 − β₁ᵗ, 1 − β₂ᵗ)` of step `t` (from 1).
    pub fn bias_corrections(&self, t: i32) -> (f64, f64) {
        (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t))
    }
}

impl<F: Float> Adam<F> {
    /// Adam with PyTorch's defaults (`β = (0.9, 0.999)`, `ε = 1e-8`, no weight decay).
    ///
    /// # Errors
    /// If a rate is not positive.
    pub fn new(lr: f64, decay: Decay) -> Result<Self> {
        Self::with_config(lr, decay, AdamConfig::default())
    }

    /// AdamW: Adam with decoupled weight decay `λ` (PyTorch's default `λ` is 0.01).
    ///
    /// # Errors
    /// If a rate is not positive or `λ` is negative.
    pub fn adamw(lr: f64, lambda: f64, decay: Decay) -> Result<Self> {
        Self::with_config(lr, decay, AdamConfig { weight_decay: WeightDecay::Decoupled(lambda), ..Default::default() })
    }

    /// Adam with the constants `config`.
    ///
    /// # Errors
    /// If a rate is not positive or a constant invalid ([`AdamConfig::validate`]).
    pub fn with_config(lr: f64, decay: Decay, config: AdamConfig) -> Result<Self> {
        config.validate()?;
        Ok(Adam { lr: LearningRate::new(lr, decay)?, config, state: HashMap::new() })
    }
}

impl<F: Float> Optimizer<F> for Adam<F> {
    fn step(&mut self, params: &mut [NamedParamMut<'_, F>]) -> Result<()> {
        let (lr, config) = (self.lr.get(), self.config);
        // Every parameter's state, created on first use and checked before anything changes.
        for (name, p) in params.iter() {
            let state = self.state.entry(name.clone()).or_insert_with(|| Moments {
                mean: ArrayD::zeros(p.value.raw_dim()),
                square: ArrayD::zeros(p.value.raw_dim()),
                steps: 0,
            });
            if state.mean.shape() != p.value.shape() {
                return Err(Error::shape("optimizer state", format!("{:?}", state.mean.shape()), p.value.shape()));
            }
            if p.grad.shape() != p.value.shape() {
                return Err(Error::shape(
                    format!("the gradient of {name}"),
                    format!("{:?}", p.value.shape()),
                    p.grad.shape(),
                ));
            }
        }
        let mut states: HashMap<&str, &mut Moments<F>> = self.state.iter_mut().map(|(n, s)| (n.as_str(), s)).collect();
        let mut pairs = Vec::with_capacity(params.len());
        for (name, p) in params.iter_mut() {
            let state = states
                .remove(name.as_str())
                .ok_or_else(|| Error::InvalidArgument(format!("Adam: the parameter {name} is listed twice")))?;
            pairs.push((&mut **p, state));
        }
        let updates: Vec<_> = pairs
            .into_iter()
            .map(|(p, state)| {
                state.steps += 1;
                let decayed = config.decayed.applies_to(&p.canonical_shape());
                let decay = if decayed { config.weight_decay } else { WeightDecay::None };
                (Update::new(&config, lr, state.steps, decay), p, state)
            })
            .collect();
        on_pool(|| {
            updates.into_par_iter().for_each(|(update, p, state)| {
                let arrays = (p.value.as_slice_mut(), p.grad.as_slice(), state.mean.as_slice_mut());
                let (Some(value), Some(grad), Some(mean), Some(square)) =
                    (arrays.0, arrays.1, arrays.2, state.square.as_slice_mut())
                else {
                    // Not contiguous: element by element, in the arrays' order.
                    let arrays = Zip::from(&mut p.value).and(&mut state.mean).and(&mut state.square).and(&p.grad);
                    return arrays.for_each(|p, m, v, &g| update.element(p, m, v, g));
                };
                let pieces = value.par_chunks_mut(PIECE).zip(grad.par_chunks(PIECE));
                let pieces = pieces.zip(mean.par_chunks_mut(PIECE)).zip(square.par_chunks_mut(PIECE));
                pieces.for_each(|(((value, grad), mean), square)| {
                    dispatch(Pass { update, value, grad, mean, square });
                });
            });
        });
        Ok(())
    }

    fn schedule(&mut self) -> &mut LearningRate {
        &mut self.lr
    }
}

/// One step's constants for one parameter.
#[derive(Clone, Copy)]
struct Update<F> {
    /// `lr / (1 − β₁ᵗ)`.
    step_size: F,
    /// `√(1 − β₂ᵗ)`.
    sqrt_c2: F,
    eps: F,
    b1: F,
    b2: F,
    one_b1: F,
    one_b2: F,
    /// `λ` of an L2 decay (else 0).
    l2: F,
    /// `1 − lr λ` of a decoupled decay (else 1).
    shrink: F,
}

impl<F: Float> Update<F> {
    /// The constants of step `t` (from 1) of a parameter that `decay` applies to.
    fn new(config: &AdamConfig, lr: f64, t: i32, decay: WeightDecay) -> Self {
        let (c1, c2) = config.bias_corrections(t);
        let (b1, b2) = (F::cast(config.beta1), F::cast(config.beta2));
        let (l2, shrink) = match decay {
            WeightDecay::None => (F::zero(), F::one()),
            WeightDecay::L2(l) => (F::cast(l), F::one()),
            WeightDecay::Decoupled(l) => (F::zero(), F::cast(1.0 - lr * l)),
        };
        Update {
            step_size: F::cast(lr / c1),
            sqrt_c2: F::cast(c2.sqrt()),
            eps: F::cast(config.eps),
            b1,
            b2,
            one_b1: F::one() - b1,
            one_b2: F::one() - b2,
            l2,
            shrink,
        }
    }

    /// The update of one element `p` with its moments `m`, `v` and gradient `g`.
    #[inline(always)]
    fn element(&self, p: &mut F, m: &mut F, v: &mut F, g: F) {
        let g = g + self.l2 * *p;
        *p *= self.shrink;
        *m = self.b1 * *m + self.one_b1 * g;
        *v = self.b2 * *v + self.one_b2 * g * g;
        *p -= self.step_size * *m / (v.sqrt() / self.sqrt_c2 + self.eps);
    }
}

/// [`Update::element`] over a piece of a parameter, compiled for each instruction-set level.
struct Pass<'a, F> {
    update: Update<F>,
    value: &'a mut [F],
    grad: &'a [F],
    mean: &'a mut [F],
    square: &'a mut [F],
}

impl<F: Float> WithSimd for Pass<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let Pass { update, value, grad, mean, square } = self;
        let elements = value.iter_mut().zip(mean.iter_mut()).zip(square.iter_mut()).zip(grad);
        elements.for_each(|(((p, m), v), &g)| update.element(p, m, v, g));
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ArrayD, IxDyn};

    use super::*;
    use crate::param::{Layout, Param};
    use crate::rng::RandomState;

    /// One parameter's values after `steps` steps of the formula in [`Adam`]'s documentation, each
    /// step with the gradient `grad` and the decay `decay`, element by element.
    fn reference(value: &ArrayD<f64>, grad: &ArrayD<f64>, config: &AdamConfig, lr: f64, steps: i32) -> ArrayD<f64> {
        let (mut p, mut m, mut v) = (value.clone(), value.mapv(|_| 0.0), value.mapv(|_| 0.0));
        let decay = if config.decayed.applies_to(value.shape()) { config.weight_decay } else { WeightDecay::None };
        for t in 1..=steps {
            let (c1, c2) = config.bias_corrections(t);
            for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(grad) {
                let g = match decay {
                    WeightDecay::L2(l) => g + l * *p,
                    _ => g,
                };
                if let WeightDecay::Decoupled(l) = decay {
                    *p *= 1.0 - lr * l;
                }
                *m = config.beta1 * *m + (1.0 - config.beta1) * g;
                *v = config.beta2 * *v + (1.0 - config.beta2) * g * g;
                *p -= (lr / c1) * *m / (v.sqrt() / c2.sqrt() + config.eps);
            }
        }
        p
    }

    #[test]
    fn long_strided_and_small_parameters_follow_the_formula() {
        let mut rng = RandomState::new(3);
        // Longer than a piece, so that it is split; transposed, so that it is not contiguous; a vector.
        let long: ArrayD<f64> = rng.randn(IxDyn(&[3 * PIECE / 128 + 1, 128]));
        let strided: Array2<f64> = rng.randn((6, 9));
        let small: ArrayD<f64> = rng.randn(IxDyn(&[5]));
        let values = [long, strided.reversed_axes().into_dyn(), small];
        let grads: Vec<ArrayD<f64>> = values.iter().map(|v| rng.randn(v.raw_dim())).collect();
        for weight_decay in [WeightDecay::None, WeightDecay::L2(0.05), WeightDecay::Decoupled(0.1)] {
            let config = AdamConfig { beta2: 0.99, weight_decay, decayed: Decayed::Matrices, ..Default::default() };
            let mut adam = Adam::<f64>::with_config(1e-2, Decay::None, config).unwrap();
            let mut params: Vec<Param<f64>> = values.iter().map(|v| Param::new(v.clone(), Layout::Canonical)).collect();
            for _ in 0..3 {
                for (p, g) in params.iter_mut().zip(&grads) {
                    p.grad = g.clone();
                }
                let mut list: Vec<_> = params.iter_mut().enumerate().map(|(i, p)| (i.to_string(), p)).collect();
                adam.step(&mut list).unwrap();
            }
            for ((p, value), grad) in params.iter().zip(&values).zip(&grads) {
                let expected = reference(value, grad, &config, 1e-2, 3);
                assert!(p.value.iter().zip(&expected).all(|(a, b)| (a - b).abs() <= 1e-15 * (1.0 + b.abs())));
            }
        }
    }

    #[test]
    fn a_parameter_listed_twice_is_an_error() {
        let mut adam = Adam::<f64>::new(1e-3, Decay::None).unwrap();
        let (mut a, mut b) = (
            Param::new(ArrayD::zeros(IxDyn(&[2])), Layout::Canonical),
            Param::new(ArrayD::zeros(IxDyn(&[2])), Layout::Canonical),
        );
        let mut list = vec![("w".to_string(), &mut a), ("w".to_string(), &mut b)];
        assert!(adam.step(&mut list).is_err());
    }
}
