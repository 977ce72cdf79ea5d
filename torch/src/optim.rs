//! Optimizers on libtorch in the book's forms (and chapter 7's Adam), sharing the learning-rate schedules of the from-scratch
//! engine ([`scratch::optim::LearningRate`]).
//!
//! They update the parameters in place from the gradients autograd left in them, under `no_grad`.

use std::collections::HashMap;

use scratch::optim::{AdamConfig, Clip, Decay, LearningRate, WeightDecay};
use scratch::spec::{Method, OptimSpec};
use tch::Tensor;

use crate::Result;

/// Updates named parameters from their gradients.
pub trait Optimizer: Send {
    /// One update of every parameter.
    ///
    /// # Errors
    /// If a parameter has no gradient.
    fn step(&mut self, params: &[(String, Tensor)]) -> Result<()>;
    /// The learning rate and its schedule.
    fn schedule(&mut self) -> &mut LearningRate;

    /// The learning rate the next step uses.
    fn learning_rate(&mut self) -> f64 {
        self.schedule().get()
    }

    /// Called once before training for `epochs` epochs.
    fn start(&mut self, epochs: usize) {
        self.schedule().start(epochs);
    }

    /// Called after every step: moves a per-step schedule on.
    fn end_step(&mut self) {
        self.schedule().end_step();
    }

    /// Called after every epoch.
    fn end_epoch(&mut self) {
        self.schedule().end_epoch();
    }
}

/// The optimizer `spec` describes, on libtorch: step for step the one the from-scratch engine builds from
/// it ([`scratch::optim::build`]).
///
/// # Errors
/// Invalid settings (see [`OptimSpec::validate`]).
pub fn build(spec: &OptimSpec) -> Result<Box<dyn Optimizer>> {
    spec.validate()?;
    let (lr, decay) = (spec.lr, spec.decay);
    let optim: Box<dyn Optimizer> = match spec.method {
        Method::Sgd => Box::new(SGD::new(lr, decay)?),
        Method::Momentum(mu) => Box::new(SGDMomentum::new(lr, mu, decay)?),
        Method::AdaGrad => Box::new(AdaGrad::new(lr, decay)?),
        Method::Adam(config) => Box::new(Adam::with_config(lr, decay, config)?),
    };
    Ok(match spec.clip {
        Some(clip) => Box::new(Clipped::new(optim, clip)),
        None => optim,
    })
}

impl Optimizer for Box<dyn Optimizer> {
    fn step(&mut self, params: &[(String, Tensor)]) -> Result<()> {
        (**self).step(params)
    }

    fn schedule(&mut self) -> &mut LearningRate {
        (**self).schedule()
    }
}

fn grad_of(name: &str, p: &Tensor) -> Result<Tensor> {
    let g = p.grad();
    if g.defined() {
        Ok(g)
    } else {
        Err(scratch::Error::InvalidArgument(format!("parameter {name} has no gradient: call backward first")).into())
    }
}

/// Checks an in-place update (libtorch returns the updated tensor itself, which is not needed).
fn updated(result: std::result::Result<Tensor, tch::TchError>) -> Result<()> {
    result.map(drop).map_err(Into::into)
}

/// `p ← p − lr · g`.
pub struct SGD {
    lr: LearningRate,
}

impl SGD {
    /// SGD with rate `lr` and a decay schedule.
    ///
    /// # Errors
    /// If a rate is not positive.
    pub fn new(lr: f64, decay: Decay) -> Result<Self> {
        Ok(SGD { lr: LearningRate::new(lr, decay)? })
    }
}

impl Optimizer for SGD {
    fn step(&mut self, params: &[(String, Tensor)]) -> Result<()> {
        let lr = self.lr.get();
        for (name, p) in params {
            let g = grad_of(name, p)?;
            tch::no_grad(|| updated(p.shallow_clone().f_sub_(&(g * lr))))?;
        }
        Ok(())
    }
    fn schedule(&mut self) -> &mut LearningRate {
        &mut self.lr
    }
}

/// The book's momentum, the rate inside the velocity: `v ← μ v + lr · g; p ← p − v`.
/// (`torch.optim.SGD(momentum=μ)` puts the rate outside, which differs once the rate decays.)
pub struct SGDMomentum {
    lr: LearningRate,
    momentum: f64,
    velocities: HashMap<String, Tensor>,
}

impl SGDMomentum {
    /// Momentum SGD.
    ///
    /// # Errors
    /// If a rate is not positive or the momentum is outside `[0, 1)`.
    pub fn new(lr: f64, momentum: f64, decay: Decay) -> Result<Self> {
        if !(0.0..1.0).contains(&momentum) {
            return Err(scratch::Error::InvalidArgument(format!("momentum must be in [0, 1), got {momentum}")).into());
        }
        Ok(SGDMomentum { lr: LearningRate::new(lr, decay)?, momentum, velocities: HashMap::new() })
    }
}

impl Optimizer for SGDMomentum {
    fn step(&mut self, params: &[(String, Tensor)]) -> Result<()> {
        let (lr, mu) = (self.lr.get(), self.momentum);
        for (name, p) in params {
            let g = grad_of(name, p)?;
            tch::no_grad(|| -> Result<()> {
                let v = self.velocities.entry(name.clone()).or_insert_with(|| p.zeros_like());
                updated(v.f_mul_scalar_(mu))?;
                updated(v.f_add_(&(g * lr)))?;
                updated(p.shallow_clone().f_sub_(v))
            })?;
        }
        Ok(())
    }
    fn schedule(&mut self) -> &mut LearningRate {
        &mut self.lr
    }
}

/// The book's AdaGrad: `s ← s + ε + g²; p ← p − lr · g / √s`, `ε = 1e-7`.
pub struct AdaGrad {
    lr: LearningRate,
    sums: HashMap<String, Tensor>,
}

impl AdaGrad {
    /// AdaGrad with base rate `lr`.
    ///
    /// # Errors
    /// If a rate is not positive.
    pub fn new(lr: f64, decay: Decay) -> Result<Self> {
        Ok(AdaGrad { lr: LearningRate::new(lr, decay)?, sums: HashMap::new() })
    }
}

impl Optimizer for AdaGrad {
    fn step(&mut self, params: &[(String, Tensor)]) -> Result<()> {
        let lr = self.lr.get();
        for (name, p) in params {
            let g = grad_of(name, p)?;
            tch::no_grad(|| -> Result<()> {
                let s = self.sums.entry(name.clone()).or_insert_with(|| p.zeros_like());
                updated(s.f_add_(&(g.square() + scratch::optim::AdaGrad::<f64>::EPS)))?;
                updated(p.shallow_clone().f_sub_(&(g * lr / s.sqrt())))
            })?;
        }
        Ok(())
    }
    fn schedule(&mut self) -> &mut LearningRate {
        &mut self.lr
    }
}

/// Clips the gradients as `clip` says ([`Clip`]: element-wise value, or global 2-norm with PyTorch's
/// `ε = 1e-6`), in place, on the device (no read back to the host), and returns the global norm before
/// clipping as a scalar tensor.
///
/// # Errors
/// A parameter without a gradient, or a limit that is not positive.
pub fn clip_gradients(clip: Clip, params: &[(String, Tensor)]) -> Result<Tensor> {
    clip.validate()?;
    let grads = params.iter().map(|(name, p)| grad_of(name, p)).collect::<Result<Vec<_>>>()?;
    let squares: Vec<Tensor> = grads.iter().map(|g| g.square().sum(tch::Kind::Double)).collect();
    let norm = Tensor::stack(&squares, 0).sum(tch::Kind::Double).sqrt();
    tch::no_grad(|| -> Result<()> {
        for mut g in grads {
            match clip {
                Clip::Value(limit) => updated(g.f_clamp_(-limit, limit))?,
                // max_norm / (‖g‖ + ε) where that is below 1, as `Clip::norm_factor`; 1 (exact) elsewhere.
                Clip::Norm(max_norm) => {
                    let factor = (max_norm / (&norm + 1e-6)).clamp_max(1.0).to_kind(g.kind());
                    updated(g.f_mul_(&factor))?
                }
            }
        }
        Ok(())
    })?;
    Ok(norm)
}

/// An optimizer that clips the gradients before every step (see [`clip_gradients`]).
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

impl<O: Optimizer> Optimizer for Clipped<O> {
    fn step(&mut self, params: &[(String, Tensor)]) -> Result<()> {
        drop(clip_gradients(self.clip, params)?);
        self.inner.step(params)
    }

    fn schedule(&mut self) -> &mut LearningRate {
        self.inner.schedule()
    }
}

/// Adam and AdamW as [`scratch::optim::Adam`] computes them (PyTorch's form), from tensor operations.
pub struct Adam {
    lr: LearningRate,
    config: AdamConfig,
    /// First moment, second moment and step count of each parameter, by name.
    state: HashMap<String, (Tensor, Tensor, i32)>,
}

impl Adam {
    /// Adam with PyTorch's defaults (`β = (0.9, 0.999)`, `ε = 1e-8`, no weight decay).
    ///
    /// # Errors
    /// If a rate is not positive.
    pub fn new(lr: f64, decay: Decay) -> Result<Self> {
        Self::with_config(lr, decay, AdamConfig::default())
    }

    /// AdamW: Adam with decoupled weight decay `λ`.
    ///
    /// # Errors
    /// If a rate is not positive or `λ` is negative.
    pub fn adamw(lr: f64, lambda: f64, decay: Decay) -> Result<Self> {
        Self::with_config(lr, decay, AdamConfig { weight_decay: WeightDecay::Decoupled(lambda), ..Default::default() })
    }

    /// Adam with the constants `config`.
    ///
    /// # Errors
    /// If a rate is not positive or a constant invalid.
    pub fn with_config(lr: f64, decay: Decay, config: AdamConfig) -> Result<Self> {
        config.validate()?;
        Ok(Adam { lr: LearningRate::new(lr, decay)?, config, state: HashMap::new() })
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &[(String, Tensor)]) -> Result<()> {
        let (lr, config) = (self.lr.get(), self.config);
        let (b1, b2) = (config.beta1, config.beta2);
        for (name, p) in params {
            let g = grad_of(name, p)?;
            tch::no_grad(|| -> Result<()> {
                let (m, v, t) = self.state.entry(name.clone()).or_insert_with(|| (p.zeros_like(), p.zeros_like(), 0));
                *t += 1;
                let (c1, c2) = config.bias_corrections(*t);
                let decay = if config.decayed.applies_to(&p.size().iter().map(|&d| d as usize).collect::<Vec<_>>()) {
                    config.weight_decay
                } else {
                    WeightDecay::None
                };
                let g = match decay {
                    WeightDecay::L2(l) => g + p * l,
                    WeightDecay::Decoupled(l) => {
                        updated(p.shallow_clone().f_mul_scalar_(1.0 - lr * l))?;
                        g
                    }
                    WeightDecay::None => g,
                };
                updated(m.f_mul_scalar_(b1))?;
                updated(m.f_add_(&(&g * (1.0 - b1))))?;
                updated(v.f_mul_scalar_(b2))?;
                updated(v.f_add_(&(g.square() * (1.0 - b2))))?;
                let denom = v.sqrt() / c2.sqrt() + config.eps;
                updated(p.shallow_clone().f_sub_(&(&*m / denom * (lr / c1))))
            })?;
        }
        Ok(())
    }

    fn schedule(&mut self) -> &mut LearningRate {
        &mut self.lr
    }
}
