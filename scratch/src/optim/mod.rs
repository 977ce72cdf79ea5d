//! Optimizers: turn gradients into parameter updates (the book's `Optimizer`, `SGD`, `SGDMomentum`,
//! `AdaGrad`, and chapter 7's `Adam`), with the book's per-epoch learning-rate decay and gradient
//! clipping.

use std::collections::HashMap;

use ndarray::{ArrayD, Zip};

use crate::param::NamedParamMut;
use crate::spec::{Method, OptimSpec};
use crate::{Error, Float, Result};

mod adam;
mod clip;

pub use adam::{Adam, AdamConfig, Decayed, WeightDecay};
pub use clip::{Clip, Clipped};

/// Updates parameters from their gradients.
pub trait Optimizer<F: Float>: Send {
    /// Applies one update to every parameter, using the gradients stored in them.
    fn step(&mut self, params: &mut [NamedParamMut<'_, F>]) -> Result<()>;

    /// The learning rate and its schedule.
    fn schedule(&mut self) -> &mut LearningRate;

    /// The learning rate the next step uses.
    fn learning_rate(&mut self) -> f64 {
        self.schedule().get()
    }

    /// Called once before training for `epochs` epochs: sets up the decay schedule.
    fn start(&mut self, epochs: usize) {
        self.schedule().start(epochs);
    }

    /// Called after every step: moves a per-step schedule on.
    fn end_step(&mut self) {
        self.schedule().end_step();
    }

    /// Called after every epoch: decays the learning rate.
    fn end_epoch(&mut self) {
        self.schedule().end_epoch();
    }
}

/// The optimizer `spec` describes, in the from-scratch engine.
///
/// # Errors
/// Invalid settings (see [`OptimSpec::validate`]).
pub fn build<F: Float>(spec: &OptimSpec) -> Result<Box<dyn Optimizer<F>>> {
    spec.validate()?;
    let (lr, decay) = (spec.lr, spec.decay);
    let optim: Box<dyn Optimizer<F>> = match spec.method {
        Method::Sgd => Box::new(SGD::with_decay(lr, decay)?),
        Method::Momentum(mu) => Box::new(SGDMomentum::new(lr, mu, decay)?),
        Method::AdaGrad => Box::new(AdaGrad::new(lr, decay)?),
        Method::Adam(config) => Box::new(Adam::with_config(lr, decay, config)?),
    };
    Ok(match spec.clip {
        Some(clip) => Box::new(Clipped::new(optim, clip)),
        None => optim,
    })
}

impl<F: Float> Optimizer<F> for Box<dyn Optimizer<F>> {
    fn step(&mut self, params: &mut [NamedParamMut<'_, F>]) -> Result<()> {
        (**self).step(params)
    }

    fn schedule(&mut self) -> &mut LearningRate {
        (**self).schedule()
    }
}

/// How the learning rate moves from its initial to its final value over training (the book's
/// `decay_type`), one change per epoch, so that epoch `e` (from 0) of `E` uses
///
/// ```text
/// linear:       lr_e = lr_0 − (lr_0 − lr_final) · e / (E − 1)
/// exponential:  lr_e = lr_0 · (lr_final / lr_0)^(e / (E − 1))
/// ```
///
/// and the last epoch uses exactly `lr_final` (chapter 7's trainer decays differently:
/// [`Decay::BookExponentialLR`]).
///
/// ```
/// use scratch::optim::{Decay, LearningRate};
///
/// let rates = |lr, decay, epochs| {
///     let mut rate = LearningRate::new(lr, decay).unwrap();
///     rate.start(epochs);
///     (0..epochs).map(|_| { let r = rate.get(); rate.end_epoch(); r }).collect::<Vec<f64>>()
/// };
/// let close = |a: Vec<f64>, b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
/// assert!(close(rates(0.15, Decay::Linear { final_lr: 0.05 }, 3), &[0.15, 0.1, 0.05]));
/// assert!(close(rates(0.2, Decay::Exponential { final_lr: 0.05 }, 3), &[0.2, 0.1, 0.05]));
/// // γ = (0.0125 / 0.2)^(1/4) = 1/2, applied once before the first epoch.
/// assert!(close(rates(0.2, Decay::BookExponentialLR { final_lr: 0.0125 }, 3), &[0.1, 0.05, 0.025]));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decay {
    /// A constant learning rate.
    None,
    /// Linear decay to `final_lr`.
    Linear {
        /// The learning rate of the last epoch.
        final_lr: f64,
    },
    /// Exponential decay to `final_lr`.
    Exponential {
        /// The learning rate of the last epoch.
        final_lr: f64,
    },
    /// Chapter 7's `PyTorchTrainer`: an `ExponentialLR` with `γ = (lr_final / lr_0)^(1 / (E + 1))`,
    /// stepped at the start of every epoch, so that epoch `e` uses `lr_0 · γ^(e + 1)`: even the first
    /// epoch is decayed once, and `lr_final` is never reached.
    BookExponentialLR {
        /// The rate the schedule would reach one epoch after the last.
        final_lr: f64,
    },
    /// Per optimizer step rather than per epoch, as transformers are trained (nanoGPT's `get_lr`):
    /// step `t` (from 0) uses
    ///
    /// ```text
    /// t < warmup:                 lr · (t + 1) / (warmup + 1)
    /// warmup ≤ t ≤ decay_steps:   final_lr + (lr − final_lr) · (1 + cos(π (t − warmup) / (decay_steps − warmup))) / 2
    /// t > decay_steps:            final_lr
    /// ```
    WarmupCosine {
        /// Steps of linear warm-up.
        warmup: usize,
        /// The step at which the cosine reaches `final_lr` (at least `warmup`).
        decay_steps: usize,
        /// The floor.
        final_lr: f64,
    },
}

impl Decay {
    /// In words: `not at all`, `linearly to 0.05`, `warm-up over 100 steps, then a cosine to 0.0001 at
    /// step 5000`, ...
    pub fn describe(self) -> String {
        match self {
            Decay::None => "not at all".into(),
            Decay::Linear { final_lr } => format!("linearly to {final_lr}"),
            Decay::Exponential { final_lr } => format!("exponentially to {final_lr}"),
            Decay::BookExponentialLR { final_lr } => format!("as the book's ExponentialLR towards {final_lr}"),
            Decay::WarmupCosine { warmup, decay_steps, final_lr } => {
                format!("after a warm-up of {warmup} steps, by a cosine to {final_lr} at step {decay_steps}")
            }
        }
    }

    /// The rate of step `t` (from 0) of a per-step schedule, from `lr`; `None` for a per-epoch one.
    pub fn rate_at_step(self, lr: f64, t: usize) -> Option<f64> {
        let Decay::WarmupCosine { warmup, decay_steps, final_lr } = self else { return None };
        Some(if t < warmup {
            lr * (t + 1) as f64 / (warmup + 1) as f64
        } else if t > decay_steps {
            final_lr
        } else {
            let ratio = (t - warmup) as f64 / (decay_steps - warmup).max(1) as f64;
            final_lr + 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos()) * (lr - final_lr)
        })
    }
}

/// A learning rate with its decay: the part every optimizer shares.
#[derive(Clone, Debug)]
pub struct LearningRate {
    initial: f64,
    current: f64,
    decay: Decay,
    /// The per-epoch change, set by [`LearningRate::start`]: a difference (linear) or a factor
    /// (exponential).
    per_epoch: f64,
    /// Steps taken since [`LearningRate::start`], for a per-step schedule.
    steps: usize,
}

impl LearningRate {
    /// A learning rate starting at `lr` and decaying as `decay` says.
    ///
    /// # Errors
    /// If a rate is not positive and finite.
    pub fn new(lr: f64, decay: Decay) -> Result<Self> {
        let positive = |x: f64| x > 0.0 && x.is_finite();
        let final_ok = match decay {
            Decay::None => true,
            Decay::Linear { final_lr } => final_lr >= 0.0 && final_lr.is_finite(),
            Decay::Exponential { final_lr } | Decay::BookExponentialLR { final_lr } => positive(final_lr),
            Decay::WarmupCosine { warmup, decay_steps, final_lr } => {
                final_lr >= 0.0 && final_lr.is_finite() && decay_steps >= warmup
            }
        };
        if !positive(lr) || !final_ok {
            return Err(Error::InvalidArgument(format!(
                "learning rate {lr} decaying {}: rates must be positive and finite (a floor may be zero), and a \
                 cosine must end after its warm-up",
                decay.describe()
            )));
        }
        let current = decay.rate_at_step(lr, 0).unwrap_or(lr);
        Ok(LearningRate { initial: lr, current, decay, per_epoch: 0.0, steps: 0 })
    }

    /// The current rate.
    pub fn get(&self) -> f64 {
        self.current
    }

    /// Resets to the initial rate and computes the per-epoch change for `epochs` epochs.
    pub fn start(&mut self, epochs: usize) {
        self.steps = 0;
        self.current = self.decay.rate_at_step(self.initial, 0).unwrap_or(self.initial);
        let steps = epochs.saturating_sub(1).max(1) as f64;
        self.per_epoch = match self.decay {
            Decay::None | Decay::WarmupCosine { .. } => 0.0,
            Decay::Linear { final_lr } => (self.initial - final_lr) / steps,
            Decay::Exponential { final_lr } => (final_lr / self.initial).powf(1.0 / steps),
            Decay::BookExponentialLR { final_lr } => (final_lr / self.initial).powf(1.0 / (epochs as f64 + 1.0)),
        };
        if let Decay::BookExponentialLR { .. } = self.decay {
            self.current *= self.per_epoch;
        }
    }

    /// Moves a per-step schedule on by one optimizer step (nothing for a per-epoch one).
    pub fn end_step(&mut self) {
        self.steps += 1;
        if let Some(rate) = self.decay.rate_at_step(self.initial, self.steps) {
            self.current = rate;
        }
    }

    /// Applies one epoch's decay.
    pub fn end_epoch(&mut self) {
        match self.decay {
            Decay::None | Decay::WarmupCosine { .. } => {}
            Decay::Linear { .. } => self.current -= self.per_epoch,
            Decay::Exponential { .. } | Decay::BookExponentialLR { .. } => self.current *= self.per_epoch,
        }
    }
}

/// Plain stochastic gradient descent: `p ← p − lr · g`.
pub struct SGD {
    lr: LearningRate,
}

impl SGD {
    /// SGD with a constant learning rate.
    ///
    /// # Errors
    /// If `lr` is not positive and finite.
    pub fn new(lr: f64) -> Result<Self> {
        Self::with_decay(lr, Decay::None)
    }

    /// SGD with learning-rate decay.
    ///
    /// # Errors
    /// If a rate is not positive and finite.
    pub fn with_decay(lr: f64, decay: Decay) -> Result<Self> {
        Ok(SGD { lr: LearningRate::new(lr, decay)? })
    }
}

impl<F: Float> Optimizer<F> for SGD {
    fn step(&mut self, params: &mut [NamedParamMut<'_, F>]) -> Result<()> {
        let lr = F::cast(self.lr.get());
        for (_, p) in params.iter_mut() {
            Zip::from(&mut p.value).and(&p.grad).for_each(|v, &g| *v -= lr * g);
        }
        Ok(())
    }

    fn schedule(&mut self) -> &mut LearningRate {
        &mut self.lr
    }
}

/// The velocity (or accumulator) buffer of `name`, created as zeros shaped like `like` on first use.
fn buffer<'a, F: Float>(
    buffers: &'a mut HashMap<String, ArrayD<F>>,
    name: String,
    like: &ArrayD<F>,
) -> Result<&'a mut ArrayD<F>> {
    let buf = buffers.entry(name).or_insert_with_key(|_| ArrayD::zeros(like.raw_dim()));
    if buf.shape() != like.shape() {
        return Err(Error::shape("optimizer state", format!("{:?}", buf.shape()), like.shape()));
    }
    Ok(buf)
}

/// SGD with momentum in the book's form, the learning rate inside the velocity:
///
/// ```text
/// v ← μ v + lr · g
/// p ← p − v
/// ```
///
/// PyTorch's `SGD(momentum=μ)` computes `v ← μ v + g; p ← p − lr · v`, which is the same while the rate
/// is constant and differs once it decays.
pub struct SGDMomentum<F> {
    lr: LearningRate,
    momentum: f64,
    velocities: HashMap<String, ArrayD<F>>,
}

impl<F: Float> SGDMomentum<F> {
    /// Momentum SGD with rate `lr` and momentum `momentum` (the book uses 0.9).
    ///
    /// # Errors
    /// If a rate is not positive or the momentum is outside `[0, 1)`.
    pub fn new(lr: f64, momentum: f64, decay: Decay) -> Result<Self> {
        if !(0.0..1.0).contains(&momentum) {
            return Err(Error::InvalidArgument(format!("momentum must be in [0, 1), got {momentum}")));
        }
        Ok(SGDMomentum { lr: LearningRate::new(lr, decay)?, momentum, velocities: HashMap::new() })
    }
}

impl<F: Float> Optimizer<F> for SGDMomentum<F> {
    fn step(&mut self, params: &mut [NamedParamMut<'_, F>]) -> Result<()> {
        let (lr, mu) = (F::cast(self.lr.get()), F::cast(self.momentum));
        for (name, p) in params.iter_mut() {
            let v = buffer(&mut self.velocities, name.clone(), &p.value)?;
            Zip::from(&mut p.value).and(v).and(&p.grad).for_each(|p, v, &g| {
                *v = mu * *v + lr * g;
                *p -= *v;
            });
        }
        Ok(())
    }

    fn schedule(&mut self) -> &mut LearningRate {
        &mut self.lr
    }
}

/// AdaGrad in the book's form: a per-element learning rate shrinking with the gradients seen so far.
///
/// ```text
/// s ← s + ε + g²        (ε = 1e-7 added at every step)
/// p ← p − lr · g / √s
/// ```
pub struct AdaGrad<F> {
    lr: LearningRate,
    sums: HashMap<String, ArrayD<F>>,
}

impl<F: Float> AdaGrad<F> {
    /// The constant the book adds to the accumulator at every step.
    pub const EPS: f64 = 1e-7;

    /// AdaGrad with base rate `lr`.
    ///
    /// # Errors
    /// If a rate is not positive.
    pub fn new(lr: f64, decay: Decay) -> Result<Self> {
        Ok(AdaGrad { lr: LearningRate::new(lr, decay)?, sums: HashMap::new() })
    }
}

impl<F: Float> Optimizer<F> for AdaGrad<F> {
    fn step(&mut self, params: &mut [NamedParamMut<'_, F>]) -> Result<()> {
        let (lr, eps) = (F::cast(self.lr.get()), F::cast(Self::EPS));
        for (name, p) in params.iter_mut() {
            let s = buffer(&mut self.sums, name.clone(), &p.value)?;
            Zip::from(&mut p.value).and(s).and(&p.grad).for_each(|p, s, &g| {
                *s += eps + g * g;
                *p -= lr * g / s.sqrt();
            });
        }
        Ok(())
    }

    fn schedule(&mut self) -> &mut LearningRate {
        &mut self.lr
    }
}
