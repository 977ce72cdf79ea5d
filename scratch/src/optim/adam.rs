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
/// with the [`WeightDecay`] applied first.
///
/// ```
/// use scratch::optim::{Adam, Decay, Optimizer, WeightDecay};
/// use scratch::param::{Layout, Param};
///
/// let mut p = Param::new(ndarray::arr1(&[1.0f64, -1.0]).into_dyn(), Layout::Canonical);
/// p.grad = ndarray::arr1(&[0.5, -2.0]).into_dyn();
/// let mut adam = Adam::new(0.1, Decay::None)?.with_weight_decay(WeightDecay::Decoupled(0.01));
/// adam.step(vec![("p".into(), &mut p)])?;
/// // The first step moves every element by about lr, against its gradient's sign.
/// assert!((p.value[0] - (1.0 * (1.0 - 0.1 * 0.01) - 0.1)).abs() < 1e-6);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct Adam<F> {
    lr: LearningRate,
    betas: (f64, f64),
    eps: f64,
    weight_decay: WeightDecay,
    /// The first and second moments of each parameter, by name.
    moments: HashMap<String, ArrayD<F>>,
    squares: HashMap<String, ArrayD<F>>,
    steps: HashMap<String, i32>,
}

impl<F: Float> Adam<F> {
    /// Adam with PyTorch's defaults (`β = (0.9, 0.999)`, `ε = 1e-8`, no weight decay).
    ///
    /// # Errors
    /// If a rate is not positive.
    pub fn new(lr: f64, decay: Decay) -> Result<Self> {
        Ok(Adam {
            lr: LearningRate::new(lr, decay)?,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: WeightDecay::None,
            moments: HashMap::new(),
            squares: HashMap::new(),
            steps: HashMap::new(),
        })
    }

    /// AdamW: Adam with decoupled weight decay `λ` (PyTorch's default `λ` is 0.01).
    ///
    /// # Errors
    /// If a rate is not positive or `λ` is negative.
    pub fn adamw(lr: f64, lambda: f64, decay: Decay) -> Result<Self> {
        Self::new(lr, decay)?.checked_weight_decay(WeightDecay::Decoupled(lambda))
    }

    /// With weight decay.
    ///
    /// # Panics
    /// If the decay is negative or not finite; [`Adam::adamw`] returns an error instead.
    pub fn with_weight_decay(self, weight_decay: WeightDecay) -> Self {
        self.checked_weight_decay(weight_decay).expect("weight decay must be a finite number ≥ 0")
    }

    fn checked_weight_decay(mut self, weight_decay: WeightDecay) -> Result<Self> {
        if let WeightDecay::L2(l) | WeightDecay::Decoupled(l) = weight_decay {
            if !(l >= 0.0 && l.is_finite()) {
                return Err(Error::InvalidArgument(format!("weight decay {l}: must be a finite number ≥ 0")));
            }
        }
        self.weight_decay = weight_decay;
        Ok(self)
    }

    /// With moment decay rates `β₁`, `β₂` (each in `[0, 1)`) and `ε`.
    ///
    /// # Errors
    /// If a rate is outside `[0, 1)` or `ε` is negative.
    pub fn with_betas(mut self, beta1: f64, beta2: f64, eps: f64) -> Result<Self> {
        let unit = |b: f64| (0.0..1.0).contains(&b);
        if !(unit(beta1) && unit(beta2) && eps >= 0.0) {
            return Err(Error::InvalidArgument(format!("Adam: betas ({beta1}, {beta2}) and eps {eps}")));
        }
        self.betas = (beta1, beta2);
        self.eps = eps;
        Ok(self)
    }
}

impl<F: Float> Optimizer<F> for Adam<F> {
    fn step(&mut self, params: Vec<NamedParamMut<'_, F>>) -> Result<()> {
        let lr = self.lr.get();
        let (b1, b2) = self.betas;
        for (name, p) in params {
            let t = self.steps.entry(name.clone()).or_insert(0);
            *t += 1;
            let (c1, c2) = (1.0 - b1.powi(*t), 1.0 - b2.powi(*t));
            let step_size = F::cast(lr / c1);
            let (sqrt_c2, eps) = (F::cast(c2.sqrt()), F::cast(self.eps));
            let (b1, b2) = (F::cast(b1), F::cast(b2));
            let (one_b1, one_b2) = (F::one() - b1, F::one() - b2);
            let (l2, shrink) = match self.weight_decay {
                WeightDecay::None => (F::zero(), F::one()),
                WeightDecay::L2(l) => (F::cast(l), F::one()),
                WeightDecay::Decoupled(l) => (F::zero(), F::cast(1.0 - lr * l)),
            };
            let m = buffer(&mut self.moments, name.clone(), &p.value)?;
            let v = buffer(&mut self.squares, name, &p.value)?;
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
