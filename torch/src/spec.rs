//! One description of a feed-forward network, built in either engine: the from-scratch
//! [`NeuralNetwork`] or the libtorch [`Model`]. Built from the same generator, the two start from the
//! same weights (and draw the same dropout masks).
//!
//! ```
//! use scratch::layers::{ConvSpec, WeightInit};
//! use scratch::ops::Activation;
//! use scratch::rng::RandomState;
//! use torch::spec::{LayerSpec, NetSpec};
//!
//! let mut conv = ConvSpec::new(1, 16, 5);
//! conv.activation = Activation::Tanh;
//! conv.flatten = true;
//! let spec = NetSpec::new(&[1, 28, 28], vec![LayerSpec::Conv(conv), LayerSpec::dense(10, Activation::Linear, WeightInit::Glorot)]);
//! let net = spec.scratch::<f32>(Box::new(scratch::losses::SoftmaxCrossEntropy::new()), &mut RandomState::new(1))?;
//! assert_eq!(net.num_parameters(), 16 * 25 + 16 * 28 * 28 * 10 + 10);
//! # Ok::<(), scratch::Error>(())
//! ```

use scratch::conv::{Pool2D, PoolKind};
use scratch::layers::{Conv2D, ConvSpec, Dense, Layer, OpLayer, WeightInit};
use scratch::losses::Loss as ScratchLoss;
use scratch::network::NeuralNetwork;
use scratch::ops::{Activation, DropoutStyle, Flatten, Reshape};
use scratch::rng::RandomState;
use scratch::rnn::{Recurrent, RecurrentSpec};
use scratch::{Error, Result};

use crate::convert::TorchFloat;
use crate::layers;
use crate::losses::Loss;
use crate::model::Model;
use crate::recurrent::Kernel;

/// One layer of a [`NetSpec`].
#[derive(Clone, Debug, PartialEq)]
pub enum LayerSpec {
    /// A dense layer; its input width is the size of whatever comes before it.
    Dense {
        /// Outputs.
        neurons: usize,
        /// Activation.
        activation: Activation,
        /// Initialisation.
        init: WeightInit,
        /// Dropout keep probability and style.
        dropout: Option<(f64, DropoutStyle)>,
    },
    /// A convolutional layer.
    Conv(ConvSpec),
    /// Max or average pooling: kind, window size, stride.
    Pool(PoolKind, usize, usize),
    /// `(batch, ...)` to `(batch, n)`.
    Flatten,
    /// `(batch, n)` to `(batch, shape...)`.
    Reshape(Vec<usize>),
    /// A recurrent layer over `(batch, time, features)`, and the kernel the libtorch engine uses.
    Recurrent(RecurrentSpec, Kernel),
}

impl LayerSpec {
    /// A dense layer without dropout.
    pub fn dense(neurons: usize, activation: Activation, init: WeightInit) -> Self {
        LayerSpec::Dense { neurons, activation, init, dropout: None }
    }
}

/// A network: the shape of one input (without the batch axis) and its layers.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSpec {
    /// `[features]` or `[channels, height, width]`.
    pub input: Vec<usize>,
    /// The layers, in order.
    pub layers: Vec<LayerSpec>,
}

impl NetSpec {
    /// A network on inputs of shape `input`.
    pub fn new(input: &[usize], layers: Vec<LayerSpec>) -> Self {
        NetSpec { input: input.to_vec(), layers }
    }

    /// The shape after each layer, checking that every layer fits its input.
    ///
    /// # Errors
    /// A layer that does not fit the shape before it (named by its index).
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>> {
        let mut shape = self.input.clone();
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let bad = |expected: &str, got: &[usize]| Error::shape(format!("layers.{i}"), expected, got);
            shape = match layer {
                LayerSpec::Dense { neurons, .. } => vec![*neurons],
                LayerSpec::Conv(c) => {
                    let [ch, h, w] = shape[..] else { return Err(bad("[channels, height, width]", &shape)) };
                    if ch != c.in_channels {
                        return Err(bad(&format!("{} channels", c.in_channels), &shape));
                    }
                    let (ho, wo) = c.output_size((h, w)).ok_or_else(|| bad("images the kernel fits", &shape))?;
                    if c.flatten {
                        vec![c.out_channels * ho * wo]
                    } else {
                        vec![c.out_channels, ho, wo]
                    }
                }
                LayerSpec::Pool(_, size, stride) => {
                    let [ch, h, w] = shape[..] else { return Err(bad("[channels, height, width]", &shape)) };
                    if h < *size || w < *size || *stride == 0 {
                        return Err(bad("images the window fits", &shape));
                    }
                    vec![ch, (h - size) / stride + 1, (w - size) / stride + 1]
                }
                LayerSpec::Flatten => vec![shape.iter().product()],
                LayerSpec::Reshape(target) => {
                    if target.iter().product::<usize>() != shape.iter().product::<usize>() {
                        return Err(bad(&format!("{} values", target.iter().product::<usize>()), &shape));
                    }
                    target.clone()
                }
                LayerSpec::Recurrent(r, _) => {
                    let [steps, features] = shape[..] else { return Err(bad("[time, features]", &shape)) };
                    if features != r.input {
                        return Err(bad(&format!("[time, {}]", r.input), &shape));
                    }
                    vec![steps, r.output_width()]
                }
            };
            out.push(shape.clone());
        }
        Ok(out)
    }

    fn input_widths(&self) -> Result<Vec<usize>> {
        let shapes = self.shapes()?;
        Ok(std::iter::once(&self.input).chain(&shapes).map(|s| s.iter().product()).collect())
    }

    /// The from-scratch network, its parameters drawn from `rng`.
    ///
    /// # Errors
    /// A layer that does not fit, or invalid settings.
    pub fn scratch<F: TorchFloat>(
        &self,
        loss: Box<dyn ScratchLoss<F>>,
        rng: &mut RandomState,
    ) -> Result<NeuralNetwork<F>> {
        let widths = self.input_widths()?;
        let mut layers: Vec<Box<dyn Layer<F>>> = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            layers.push(match layer {
                LayerSpec::Dense { neurons, activation, init, dropout } => {
                    let mut b = Dense::builder(widths[i], *neurons).activation(*activation).init(*init);
                    if let Some((keep, style)) = dropout {
                        b = b.dropout_with(*keep, *style);
                    }
                    Box::new(b.build(rng)?)
                }
                LayerSpec::Conv(c) => Box::new(Conv2D::new(*c, rng)?),
                LayerSpec::Pool(kind, size, stride) => Box::new(OpLayer::new(Pool2D::new(*kind, *size, *stride)?)),
                LayerSpec::Flatten => Box::new(OpLayer::new(Flatten::new())),
                LayerSpec::Reshape(shape) => Box::new(OpLayer::new(Reshape::new(shape))),
                LayerSpec::Recurrent(r, _) => Box::new(Recurrent::new(*r, rng)?),
            });
        }
        Ok(NeuralNetwork::new(layers, loss))
    }

    /// The libtorch model on `device`, its parameters drawn from `rng` exactly as [`NetSpec::scratch`]
    /// draws them.
    ///
    /// # Errors
    /// A layer that does not fit, or a kernel that cannot compute its cell.
    pub fn torch<F: TorchFloat>(&self, loss: Loss, device: tch::Device, rng: &mut RandomState) -> crate::Result<Model> {
        let widths = self.input_widths()?;
        let mut model = Model::new::<F>(device, loss);
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                LayerSpec::Dense { neurons, activation, init, dropout } => {
                    model.dense((widths[i], *neurons), *activation, *init, *dropout, rng);
                }
                LayerSpec::Conv(c) => {
                    model.conv2d(*c, rng);
                }
                LayerSpec::Pool(kind, size, stride) => {
                    let (kind, size, stride) = (*kind, *size, *stride);
                    model.push(|_, _| Box::new(layers::Pool2D::new(kind, size, stride)));
                }
                LayerSpec::Flatten => {
                    model.push(|_, _| Box::new(layers::Reshape::flatten()));
                }
                LayerSpec::Reshape(shape) => {
                    let shape = shape.clone();
                    model.push(move |_, _| Box::new(layers::Reshape::to(&shape)));
                }
                LayerSpec::Recurrent(r, kernel) => {
                    model.recurrent(*r, *kernel, rng)?;
                }
            }
        }
        Ok(model)
    }
}
