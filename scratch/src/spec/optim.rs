//! What an optimizer is, engine-neutral: the update rule, its learning rate and schedule, and gradient
//! clipping. Both engines' trainers build their optimizer from one ([`crate::optim::build`], and the
//! `torch` crate's `optim::build`).

use crate::optim::{AdamConfig, Clip, Decay, LearningRate};
use crate::{Error, Result};

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// `p ← p − lr · g`.
    Sgd,
    /// The book's momentum with coefficient `μ`: `v ← μ v + lr · g; p ← p − v`.
    Momentum(f64),
    /// The book's AdaGrad.
    AdaGrad,
    /// Adam or AdamW, as [`AdamConfig`] says.
    Adam(AdamConfig),
}

/// An optimizer: its rule, learning rate, schedule and clipping.
///
/// ```
/// use scratch::optim::{AdamConfig, Clip, Decay, Decayed, WeightDecay};
/// use scratch::spec::OptimSpec;
///
/// // nanoGPT's: AdamW (β₂ 0.99, weight decay 0.1 on matrices), warm-up then cosine, clipping at 1.
/// let config = AdamConfig { beta2: 0.99, weight_decay: WeightDecay::Decoupled(0.1), decayed: Decayed::Matrices, ..Default::default() };
/// let adamw = OptimSpec::adam(1e-3, config)
///     .decay(Decay::WarmupCosine { warmup: 100, decay_steps: 5000, final_lr: 1e-4 })
///     .clip(Clip::Norm(1.0));
/// adamw.validate()?;
/// # Ok::<(), scratch::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimSpec {
    /// The rule.
    pub method: Method,
    /// The learning rate (the first, or the peak of a warm-up).
    pub lr: f64,
    /// How the rate changes over training.
    pub decay: Decay,
    /// Clipping of the gradients before each step.
    pub clip: Option<Clip>,
}

impl OptimSpec {
    /// `method` at rate `lr`, constant, without clipping.
    pub const fn new(method: Method, lr: f64) -> Self {
        OptimSpec { method, lr, decay: Decay::None, clip: None }
    }

    /// Plain SGD.
    pub const fn sgd(lr: f64) -> Self {
        Self::new(Method::Sgd, lr)
    }

    /// The book's momentum SGD.
    pub const fn momentum(lr: f64, momentum: f64) -> Self {
        Self::new(Method::Momentum(momentum), lr)
    }

    /// The book's AdaGrad.
    pub const fn adagrad(lr: f64) -> Self {
        Self::new(Method::AdaGrad, lr)
    }

    /// Adam with `config`.
    pub const fn adam(lr: f64, config: AdamConfig) -> Self {
        Self::new(Method::Adam(config), lr)
    }

    /// With the schedule `decay`.
    #[must_use]
    pub const fn decay(mut self, decay: Decay) -> Self {
        self.decay = decay;
        self
    }

    /// With gradient clipping.
    #[must_use]
    pub const fn clip(mut self, clip: Clip) -> Self {
        self.clip = Some(clip);
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// A rate that is not positive, a momentum outside `[0, 1)`, invalid Adam constants or clipping limit.
    pub fn validate(&self) -> Result<()> {
        LearningRate::new(self.lr, self.decay)?;
        match self.method {
            Method::Momentum(mu) if !(0.0..1.0).contains(&mu) => {
                return Err(Error::InvalidArgument(format!("momentum must be in [0, 1), got {mu}")))
            }
            Method::Adam(config) => config.validate()?,
            _ => {}
        }
        self.clip.map_or(Ok(()), Clip::validate)
    }
}
