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

    /// Uses `mask` (0s and 1s shaped like the layer's output) in the next training forward pass
    /// instead of a random dropout mask.
    ///
    /// # Errors
    /// If the layer has no dropout.
    fn inject_dropout_mask(&mut self, mask: Tensor) -> Result<()>;
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

/// Dropout on libtorch: PyTorch's inverted dropout, or the book's form (see [`DropoutStyle`]).
#[derive(Debug)]
pub struct Dropout {
    keep: f64,
    style: DropoutStyle,
    injected: Option<Tensor>,
}

impl Dropout {
    /// Dropout keeping each element with probability `keep`.
    pub fn new(keep: f64, style: DropoutStyle) -> Self {
        Dropout { keep, style, injected: None }
    }

    /// Uses `mask` (0s and 1s shaped like the next input) in the next training forward pass instead of
    /// a random one.
    pub fn inject_mask(&mut self, mask: Tensor) {
        self.injected = Some(mask);
    }

    /// Applies dropout in `mode`.
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Tensor {
        match (mode, self.style) {
            (Mode::Eval, DropoutStyle::Inverted) => x.shallow_clone(),
            (Mode::Eval, DropoutStyle::Book) => x * self.keep,
            (Mode::Train, style) => {
                let mask = self.injected.take().unwrap_or_else(|| x.ones_like().bernoulli_p(self.keep));
                let mask = mask.to_device(x.device()).to_kind(x.kind());
                match style {
                    DropoutStyle::Inverted => x * mask / self.keep,
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
        let dropout = dropout.map(|(keep, style)| Dropout::new(keep, style));
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
    /// a layer with dropout takes one more draw, as the from-scratch layer does for its mask generator.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let scale = self.init.scale(self.n_in, self.neurons);
        let w: ndarray::Array2<f64> = rng.normal(0.0, scale, (self.n_in, self.neurons));
        let b: ndarray::Array1<f64> = rng.normal(0.0, scale, self.neurons);
        if self.dropout.is_some() {
            rng.next_u32();
        }
        set_values(&mut self.weight, &w.t().to_owned().into_dyn());
        set_values(&mut self.bias, &b.into_dyn());
    }

    fn reseeds_in_book(&self) -> bool {
        true
    }

    fn inject_dropout_mask(&mut self, mask: Tensor) -> Result<()> {
        match &mut self.dropout {
            Some(d) => {
                d.inject_mask(mask);
                Ok(())
            }
            None => Err(scratch::Error::InvalidArgument(format!("{} has no dropout", self.describe())).into()),
        }
    }
}

/// Overwrites a parameter's values (keeping its kind and device) without recording the copy for
/// autograd.
pub fn set_values(param: &mut Tensor, values: &ndarray::ArrayD<f64>) {
    let source = crate::convert::to_tensor(values).to_device(param.device()).to_kind(param.kind());
    tch::no_grad(|| param.copy_(&source));
}
