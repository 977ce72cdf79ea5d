//! Layers on libtorch, in the style of the book's chapter 7 (`DenseLayer`).

use scratch::conv::PoolKind;
use scratch::layers::{ConvSpec, DenseDraw, WeightInit};
use scratch::ops::{Activation, DropoutStyle, Mode};
use scratch::param::Layout;
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

    /// Forgets any state carried between calls (a recurrent layer's hidden state).
    fn reset_state(&mut self) {}
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

    /// Draws as [`DenseDraw::new`] says, then turns the book's `(n_in, neurons)` weight into
    /// `(neurons, n_in)` with the from-scratch engine's own conversion ([`Layout`]).
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let draw = DenseDraw::new(rng, (self.n_in, self.neurons), self.init, self.dropout.is_some());
        set_values(&mut self.weight, &Layout::SwapAxes01.to_canonical(&draw.weight.into_dyn()));
        set_values(&mut self.bias, &draw.bias.into_dyn());
        if let (Some(d), Some(seed)) = (&mut self.dropout, draw.dropout_seed) {
            d.masks = MaskSource::Shared(Box::new(RandomState::new(seed)));
        }
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

/// A convolutional layer on libtorch, the book's chapter-7 `ConvLayer`: `conv2d` (padding `k/2` by
/// default), optional bias, activation, optional flatten, optional dropout.
///
/// Parameters `weight: (O, C, k, k)` (PyTorch's layout) and, with a bias, `bias: (O,)`.
#[derive(Debug)]
pub struct Conv2D {
    spec: ConvSpec,
    weight: Tensor,
    bias: Option<Tensor>,
    dropout: Option<Dropout>,
}

impl Conv2D {
    /// The layer `spec` describes, under `path`, holding values of `kind`, drawn from `rng` as the
    /// from-scratch `Conv2D` draws them.
    pub fn new(path: &nn::Path<'_>, spec: ConvSpec, kind: Kind, rng: &mut RandomState) -> Self {
        let options = (kind, path.device());
        let k = spec.kernel as i64;
        let (o, c) = (spec.out_channels as i64, spec.in_channels as i64);
        let shape = if spec.transposed { [c, o, k, k] } else { [o, c, k, k] };
        let weight = path.add("weight", Tensor::zeros(shape, options), true);
        let bias = spec.bias.then(|| path.add("bias", Tensor::zeros([spec.out_channels as i64], options), true));
        let dropout = spec.dropout.map(|(keep, style)| Dropout::new(keep, style, MaskSource::Torch));
        let mut layer = Conv2D { spec, weight, bias, dropout };
        layer.reinitialize(rng);
        layer
    }
}

impl Layer for Conv2D {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let size = x.size();
        let g = self.spec.geometry();
        if size.len() != 4 || size[1] != g.in_channels as i64 {
            return Err(
                scratch::Error::shape("input", format!("(batch, {}, height, width)", g.in_channels), size).into()
            );
        }
        if self.spec.output_size((size[2] as usize, size[3] as usize)).is_none() {
            return Err(scratch::Error::shape(
                "input",
                "images that give a positive output size (at least the kernel's after padding)",
                size,
            )
            .into());
        }
        let (s, p) = (g.stride.0 as i64, g.padding.0 as i64);
        let y = if self.spec.transposed {
            let q = self.spec.output_padding as i64;
            x.conv_transpose2d(&self.weight, self.bias.as_ref(), [s, s], [p, p], [q, q], 1, [1, 1])
        } else {
            x.conv2d(&self.weight, self.bias.as_ref(), [s, s], [p, p], [1, 1], 1)
        };
        let mut y = activate(&y, self.spec.activation);
        if self.spec.flatten {
            y = y.flatten(1, -1);
        }
        Ok(match &mut self.dropout {
            Some(d) => d.forward(&y, mode),
            None => y,
        })
    }

    fn params(&self) -> Vec<(&'static str, Tensor)> {
        let mut out = vec![("weight", self.weight.shallow_clone())];
        out.extend(self.bias.as_ref().map(|b| ("bias", b.shallow_clone())));
        out
    }

    /// Draws as [`ConvSpec::draw`] says, then turns the book's `(C, O, k, k)` kernel into `(O, C, k, k)`
    /// with the from-scratch engine's own conversion ([`Layout`]).
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let draw = self.spec.draw(rng);
        // The draw is `(C, O, k, k)`: a transposed convolution's own layout, a convolution's swapped.
        let layout = if self.spec.transposed { Layout::Canonical } else { Layout::SwapAxes01 };
        set_values(&mut self.weight, &layout.to_canonical(&draw.kernel.into_dyn()));
        if let (Some(b), Some(values)) = (&mut self.bias, draw.bias) {
            set_values(b, &values.into_dyn());
        }
        if let (Some(d), Some(seed)) = (&mut self.dropout, draw.dropout_seed) {
            d.masks = MaskSource::Shared(Box::new(RandomState::new(seed)));
        }
    }

    fn dropout_mut(&mut self) -> Option<&mut Dropout> {
        self.dropout.as_mut()
    }
}

/// Max or average pooling (`max_pool2d` / `avg_pool2d`), no padding.
#[derive(Debug)]
pub struct Pool2D {
    kind: PoolKind,
    size: usize,
    stride: usize,
}

impl Pool2D {
    /// Pooling of `kind` over `size × size` windows moved by `stride`.
    pub fn new(kind: PoolKind, size: usize, stride: usize) -> Self {
        Pool2D { kind, size, stride }
    }
}

impl Layer for Pool2D {
    fn describe(&self) -> String {
        format!("{:?}Pool2D({}x{}, stride {})", self.kind, self.size, self.size, self.stride)
    }

    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 4 || size[2] < self.size as i64 || size[3] < self.size as i64 {
            let expected = format!("(batch, channels, height, width) of at least {0}x{0}", self.size);
            return Err(scratch::Error::shape("input", expected, size).into());
        }
        let (k, s) = (self.size as i64, self.stride as i64);
        Ok(match self.kind {
            PoolKind::Max => x.max_pool2d([k, k], [s, s], [0, 0], [1, 1], false),
            PoolKind::Average => x.avg_pool2d([k, k], [s, s], [0, 0], false, true, None::<i64>),
        })
    }

    fn params(&self) -> Vec<(&'static str, Tensor)> {
        Vec::new()
    }

    fn reinitialize(&mut self, _rng: &mut RandomState) {}
}

/// `(batch, ...)` to `(batch, n)` (`Flatten`), or `(batch, n)` to `(batch, shape...)` (`Reshape`).
#[derive(Debug)]
pub struct Reshape {
    /// The shape of each row after the layer; `None` flattens.
    shape: Option<Vec<i64>>,
}

impl Reshape {
    /// Flattens every row.
    pub fn flatten() -> Self {
        Reshape { shape: None }
    }

    /// Reshapes every row to `shape`.
    pub fn to(shape: &[usize]) -> Self {
        Reshape { shape: Some(shape.iter().map(|&d| d as i64).collect()) }
    }
}

impl Layer for Reshape {
    fn describe(&self) -> String {
        match &self.shape {
            None => "Flatten".into(),
            Some(s) => format!("Reshape({s:?})"),
        }
    }

    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        match &self.shape {
            None => Ok(x.flatten(1, -1)),
            Some(shape) => {
                let n: i64 = shape.iter().product();
                let size = x.size();
                if size.len() != 2 || size[1] != n {
                    return Err(scratch::Error::shape("input", format!("(batch, {n})"), size).into());
                }
                let mut target = vec![size[0]];
                target.extend(shape);
                Ok(x.reshape(target.as_slice()))
            }
        }
    }

    fn params(&self) -> Vec<(&'static str, Tensor)> {
        Vec::new()
    }

    fn reinitialize(&mut self, _rng: &mut RandomState) {}
}
