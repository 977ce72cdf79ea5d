//! Adam and AdamW (chapter 7's optimizer), in PyTorch's form.

use std::collections::HashMap;

use ndarray::{ArrayD, Zip};

use super::{buffer, Decay, LearningRate, Optimizer};
use crate::param::NamedParamMut;
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
    /// The first and second moments and the step count of each parameter, by name.
    moments: HashMap<String, ArrayD<F>>,
    squares: HashMap<String, ArrayD<F>>,
    steps: HashMap<String, i32>,
}

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
        Ok(Adam {
            lr: LearningRate::new(lr, decay)?,
            config,
            moments: HashMap::new(),
            squares: HashMap::new(),
            steps: HashMap::new(),
        })
    }
}

impl<F: Float> Optimizer<F> for Adam<F> {
    fn step(&mut self, params: &mut [NamedParamMut<'_, F>]) -> Result<()> {
        let (lr, config) = (self.lr.get(), self.config);
        for (name, p) in params.iter_mut() {
            let t = self.steps.entry(name.clone()).or_insert(0);
            *t += 1;
            let (c1, c2) = config.bias_corrections(*t);
            let step_size = F::cast(lr / c1);
            let (sqrt_c2, eps) = (F::cast(c2.sqrt()), F::cast(config.eps));
            let (b1, b2) = (F::cast(config.beta1), F::cast(config.beta2));
            let (one_b1, one_b2) = (F::one() - b1, F::one() - b2);
            let decay =
                if config.decayed.applies_to(&p.canonical_shape()) { config.weight_decay } else { WeightDecay::None };
            let (l2, shrink) = match decay {
                WeightDecay::None => (F::zero(), F::one()),
                WeightDecay::L2(l) => (F::cast(l), F::one()),
                WeightDecay::Decoupled(l) => (F::zero(), F::cast(1.0 - lr * l)),
            };
            let m = buffer(&mut self.moments, name.clone(), &p.value)?;
            let v = buffer(&mut self.squares, name.clone(), &p.value)?;
            Zip::from(&mut p.value).and(m).and(v).and(&p.grad).for_each(|p, m, v, &g| {
                let g = g + l2 * *p;
                *p *= shrink;
                *m = b1 * *m + one_b1 * g;
                *v = b2 * *v + one_b2 * g * g;
                *p -= step_size * *m / (v.sqrt() / sqrt_c2 + eps);
            });
        }
        Ok(())
    }

    fn schedule(&mut self) -> &mut LearningRate {
        &mut self.lr
    }
}
