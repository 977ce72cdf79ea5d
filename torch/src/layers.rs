//! Layers on libtorch, in the style of the book's chapter 7 (`DenseLayer`).

use scratch::layers::WeightInit;
use scratch::ops::{Activation, DropoutStyle, Mode};
use scratch::rng::RandomState;
use tch::{nn, Kind, Tensor};

use crate::Result;

/// A layer of a [`crate::model::Model`]: a forward pass (autograd does the backward) and named
/// parameters.
pub trait Layer: Send {
    /// A one-line description, e.g. `Dense(13 -> 1, linear)`.
    fn describe(&self) -> String;

    /// Computes the layer's output; errors name the layer and the shapes.
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor>;

    /// The parameters with their short names (`weight`, `bias`), in PyTorch's layout.
    fn params(&self) -> Vec<(&'static str, Tensor)>;

    /// Draws fresh parameters from `rng`, exactly as the from-scratch layer of the same kind does, so
    /// that both engines can start from the same weights.
    fn reinitialize(&mut self, rng: &mut RandomState);

    /// Whether the book re-seeds its generator before initialising this kind of layer (see
    /// [`scratch::network::InitSeeding::BookReseed`]).
    fn reseeds_in_book(&self) -> bool {
        false
    }

    /// The layer's dropout, if it has one (to inject masks or change their source).
    fn dropout_mut(&mut self) -> Option<&mut Dropout> {
        None
    }
}

/// `activation(x)` for the activations both engines share.
pub fn activate(x: &Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::Linear => x.shallow_clone(),
        Activation::Sigmoid => x.sigmoid(),
        Activation::Tanh => x.tanh(),
        Activation::ReLU => x.relu(),
        Activation::LeakyReLU { slope } => (x * slope).where_self(&x.le(0.0), x),
    }
}

/// Where a [`Dropout`] draws its masks.
#[derive(Debug)]
pub enum MaskSource {
    /// The numpy-compatible generator, drawn exactly as the from-scratch `Dropout` draws them (on the
    /// CPU, then copied to the device): both engines then train identically, dropout included.
    Shared(Box<RandomState>),
    /// libtorch's own generator, on the device: faster on a GPU, different masks.
    Torch,
}

/// Dropout on libtorch: PyTorch's inverted dropout, or the book's form (see [`DropoutStyle`]).
#[derive(Debug)]
pub struct Dropout {
    keep: f64,
    style: DropoutStyle,
    masks: MaskSource,
    injected: Option<Tensor>,
}

impl Dropout {
    /// Dropout keeping each element with probability `keep`, masks from `masks`.
    pub fn new(keep: f64, style: DropoutStyle, masks: MaskSource) -> Self {
        Dropout { keep, style, masks, injected: None }
    }

    /// Uses `mask` (0s and 1s shaped like the next input) in the next training forward pass instead of
    /// a random one.
    pub fn inject_mask(&mut self, mask: Tensor) {
        self.injected = Some(mask);
    }

    /// Draws masks from libtorch's generator on the device from now on (faster on a GPU; the masks then
    /// differ from the from-scratch engine's).
    pub fn use_torch_generator(&mut self) {
        self.masks = MaskSource::Torch;
    }

    fn draw_mask(&mut self, x: &Tensor) -> Tensor {
        match &mut self.masks {
            MaskSource::Shared(rng) => {
                let shape: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
                crate::convert::to_tensor(&rng.bernoulli_mask::<f64, _>(self.keep, ndarray::IxDyn(&shape)))
            }
            MaskSource::Torch => x.ones_like().bernoulli_p(self.keep),
        }
    }

    /// Applies dropout in `mode`.
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Tensor {
        match (mode, self.style) {
            (Mode::Eval, DropoutStyle::Inverted) => x.shallow_clone(),
            (Mode::Eval, DropoutStyle::Book) => x * self.keep,
            (Mode::Train, style) => {
                let mask = match self.injected.take() {
                    Some(mask) => mask,
                    None => self.draw_mask(x),
                };
                let mask = mask.to_device(x.device()).to_kind(x.kind());
                match style {
                    // (mask / keep) first, as the from-scratch engine computes it, so that both round alike.
                    DropoutStyle::Inverted => x * (mask / self.keep),
                    DropoutStyle::Book => x * mask,
                }
            }
        }
    }
}

/// A fully connected layer, `activation(x Wᵀ + b)` then optional dropout: the book's chapter-7
/// `DenseLayer` (`nn.Linear`, activation, `nn.Dropout`).
///
/// Parameters `weight: (neurons, n_in)` and `bias: (neurons,)`, PyTorch's layout.
#[derive(Debug)]
pub struct Dense {
    weight: Tensor,
    bias: Tensor,
    n_in: usize,
    neurons: usize,
    activation: Activation,
    init: WeightInit,
    dropout: Option<Dropout>,
}

impl Dense {
    /// A dense layer under `path` (its parameters are `path.weight` and `path.bias`) holding values of
    /// `kind`, drawn from `rng` as the from-scratch `Dense` draws them.
    pub fn new(
        path: &nn::Path<'_>,
        (n_in, neurons): (usize, usize),
        activation: Activation,
        init: WeightInit,
        dropout: Option<(f64, DropoutStyle)>,
        kind: Kind,
        rng: &mut RandomState,
    ) -> Self {
        let options = (kind, path.device());
        let weight = path.add("weight", Tensor::zeros([neurons as i64, n_in as i64], options), true);
        let bias = path.add("bias", Tensor::zeros([neurons as i64], options), true);
        let dropout = dropout.map(|(keep, style)| Dropout::new(keep, style, MaskSource::Torch));
        let mut layer = Dense { weight, bias, n_in, neurons, activation, init, dropout };
        layer.reinitialize(rng);
        layer
    }
}

impl Layer for Dense {
    fn describe(&self) -> String {
        let dropout = self.dropout.as_ref().map(|d| format!(", dropout keep {}", d.keep)).unwrap_or_default();
        format!("Dense({} -> {}, {}{dropout})", self.n_in, self.neurons, self.activation.name())
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 2 || size[1] != self.n_in as i64 {
            return Err(scratch::Error::shape("input", format!("(batch, {})", self.n_in), size).into());
        }
        let y = activate(&x.linear(&self.weight, Some(&self.bias)), self.activation);
        Ok(match &mut self.dropout {
            Some(d) => d.forward(&y, mode),
            None => y,
        })
    }

    fn params(&self) -> Vec<(&'static str, Tensor)> {
        vec![("weight", self.weight.shallow_clone()), ("bias", self.bias.shallow_clone())]
    }

    /// `W ~ N(0, s²)` drawn in the book's `(n_in, neurons)` order and transposed, then `b ~ N(0, s²)`;
    /// a layer with dropout then seeds its mask generator with one more draw, as the from-scratch layer
    /// does, so that both draw the same masks.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let scale = self.init.scale(self.n_in, self.neurons);
        let w: ndarray::Array2<f64> = rng.normal(0.0, scale, (self.n_in, self.neurons));
        let b: ndarray::Array1<f64> = rng.normal(0.0, scale, self.neurons);
        if let Some(d) = &mut self.dropout {
            d.masks = MaskSource::Shared(Box::new(RandomState::new(rng.next_u32())));
        }
        set_values(&mut self.weight, &w.t().to_owned().into_dyn());
        set_values(&mut self.bias, &b.into_dyn());
    }

    fn reseeds_in_book(&self) -> bool {
        true
    }

    fn dropout_mut(&mut self) -> Option<&mut Dropout> {
        self.dropout.as_mut()
    }
}

/// Overwrites a parameter's values (keeping its kind and device) without recording the copy for
/// autograd.
pub fn set_values(param: &mut Tensor, values: &ndarray::ArrayD<f64>) {
    let source = crate::convert::to_tensor(values).to_device(param.device()).to_kind(param.kind());
    tch::no_grad(|| param.copy_(&source));
}
