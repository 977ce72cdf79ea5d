//! One description of a network, engine-neutral: what each layer is, how its weights start, and the
//! shape of the data between layers. The from-scratch engine builds a description with
//! [`NeuralNetwork::from_spec`](crate::network::NeuralNetwork::from_spec), the libtorch engine (the
//! `torch` crate) with its own `Net`; built from the same generator, the two start from the same
//! weights. The book's named networks are in [`book`].
//!
//! ```
//! use scratch::losses::SoftmaxCrossEntropy;
//! use scratch::network::NeuralNetwork;
//! use scratch::ops::Activation;
//! use scratch::rng::RandomState;
//! use scratch::spec::{ConvSpec, DenseSpec, LayerSpec, NetSpec, WeightInit};
//!
//! let conv = ConvSpec::new(1, 16, 5).activation(Activation::Tanh).flatten(true);
//! let spec = NetSpec::new(&[1, 28, 28], vec![LayerSpec::Conv(conv), LayerSpec::Dense(DenseSpec::new(10))]);
//! assert_eq!(spec.shapes()?, vec![vec![16 * 28 * 28], vec![10]]);
//! let net = NeuralNetwork::<f32>::from_spec(&spec, SoftmaxCrossEntropy::new(), &mut RandomState::new(1))?;
//! assert_eq!(net.num_parameters(), 16 * 25 + 16 * 28 * 28 * 10 + 10);
//!
//! // A dense layer cannot follow an image without a flatten: refused before any weight is drawn.
//! let unflattened = NetSpec::new(&[1, 28, 28], vec![LayerSpec::Conv(ConvSpec::new(1, 4, 3)), LayerSpec::Dense(DenseSpec::new(10))]);
//! assert!(unflattened.shapes().unwrap_err().to_string().contains("layers.1"));
//! # Ok::<(), scratch::Error>(())
//! ```

pub mod book;
mod conv;
mod dense;
mod init;
mod loss;
mod recurrent;

pub use conv::{ConvDraw, ConvSpec};
pub use dense::{DenseDraw, DenseSpec};
pub use init::WeightInit;
pub use loss::{CrossEntropyValue, LossSpec, MseReduction, Reduction};
pub use recurrent::{Biases, CellKind, GruForm, RecurrentInit, RecurrentSpec, StateMode};

pub use crate::conv::PoolKind;
pub use crate::ops::{Activation, DropoutStyle};
use crate::{Error, Result};

/// Pooling over `size × size` windows moved by `stride`, no padding (PyTorch's `MaxPool2d` and
/// `AvgPool2d`): `(batch, C, H, W)` to `(batch, C, (H − size) / stride + 1, (W − size) / stride + 1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// Maximum or mean of each window.
    pub kind: PoolKind,
    /// The window's height and width.
    pub size: usize,
    /// How far the window moves.
    pub stride: usize,
}

impl PoolSpec {
    /// Max pooling over `size × size` windows moved by `stride`.
    pub fn max(size: usize, stride: usize) -> Self {
        PoolSpec { kind: PoolKind::Max, size, stride }
    }

    /// Average pooling over `size × size` windows moved by `stride`.
    pub fn average(size: usize, stride: usize) -> Self {
        PoolSpec { kind: PoolKind::Average, size, stride }
    }

    /// The output height and width for an input of `(h, w)`, if the window fits.
    pub fn output_size(&self, (h, w): (usize, usize)) -> Option<(usize, usize)> {
        (self.stride > 0 && self.size > 0 && h >= self.size && w >= self.size)
            .then(|| ((h - self.size) / self.stride + 1, (w - self.size) / self.stride + 1))
    }

    /// A one-line description, e.g. `MaxPool2D(2x2, stride 2)`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            PoolKind::Max => "Max",
            PoolKind::Average => "Avg",
        };
        format!("{kind}Pool2D({0}x{0}, stride {1})", self.size, self.stride)
    }
}

/// One layer of a [`NetSpec`]. Each layer is one index in the parameter names (`layers.{i}.weight`),
/// parameter-free ones included, as in a PyTorch `nn.ModuleList` holding the same modules.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerSpec {
    /// A fully connected layer over the last axis; its input width is the size of that axis.
    Dense(DenseSpec),
    /// A convolutional (or transposed convolutional) layer.
    Conv(ConvSpec),
    /// Max or average pooling.
    Pool(PoolSpec),
    /// `(batch, ...)` to `(batch, n)`.
    Flatten,
    /// `(batch, n)` to `(batch, shape...)`.
    Reshape(Vec<usize>),
    /// A recurrent layer over `(batch, time, features)`.
    Recurrent(RecurrentSpec),
}

impl LayerSpec {
    /// A one-line description for an input of `shape` (without the batch axis).
    pub fn describe(&self, shape: &[usize]) -> String {
        match self {
            LayerSpec::Dense(d) => match shape {
                [n] | [_, n] => d.describe(*n),
                _ => d.describe(0),
            },
            LayerSpec::Conv(c) => c.describe(),
            LayerSpec::Pool(p) => p.describe(),
            LayerSpec::Flatten => "Flatten".into(),
            LayerSpec::Reshape(target) => format!("Reshape({target:?})"),
            LayerSpec::Recurrent(r) => r.describe(),
        }
    }

    /// The shape this layer gives for an input of `shape` (without the batch axis), checking that the
    /// layer fits it and that its own settings are valid.
    ///
    /// # Errors
    /// A layer that does not fit the shape, or invalid settings.
    pub fn output_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        let bad = |expected: &str| Error::shape("input", expected, shape);
        let image = || match *shape {
            [c, h, w] => Ok((c, h, w)),
            _ => Err(bad("[channels, height, width]")),
        };
        Ok(match self {
            LayerSpec::Dense(d) => {
                let (&inputs, outer) = match shape {
                    [n] | [_, n] => (n, &shape[..shape.len() - 1]),
                    _ => return Err(bad("[features] or [time, features]: flatten an image before a dense layer")),
                };
                d.validate(inputs)?;
                outer.iter().copied().chain([d.neurons]).collect()
            }
            LayerSpec::Conv(c) => {
                c.validate()?;
                let (ch, h, w) = image()?;
                if ch != c.in_channels {
                    return Err(bad(&format!("{} channels", c.in_channels)));
                }
                let (ho, wo) = c.output_size((h, w)).ok_or_else(|| bad("images the kernel fits"))?;
                if c.flatten {
                    vec![c.out_channels * ho * wo]
                } else {
                    vec![c.out_channels, ho, wo]
                }
            }
            LayerSpec::Pool(p) => {
                let (ch, h, w) = image()?;
                let (ho, wo) =
                    p.output_size((h, w)).ok_or_else(|| bad("images the window fits (and a positive stride)"))?;
                vec![ch, ho, wo]
            }
            LayerSpec::Flatten => vec![shape.iter().product()],
            LayerSpec::Reshape(target) => {
                let (from, to) = (shape.iter().product::<usize>(), target.iter().product::<usize>());
                if from != to || to == 0 {
                    return Err(bad(&format!("{to} values per row")));
                }
                target.clone()
            }
            LayerSpec::Recurrent(r) => {
                r.validate()?;
                match *shape {
                    [steps, features] if features == r.input => vec![steps, r.hidden],
                    _ => return Err(bad(&format!("[time, {}]", r.input))),
                }
            }
        })
    }
}

/// A network: the shape of one input (without the batch axis) and its layers.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSpec {
    /// `[features]`, `[time, features]` or `[channels, height, width]`.
    pub input: Vec<usize>,
    /// The layers, in order.
    pub layers: Vec<LayerSpec>,
}

impl NetSpec {
    /// A network on inputs of shape `input`.
    pub fn new(input: &[usize], layers: Vec<LayerSpec>) -> Self {
        NetSpec { input: input.to_vec(), layers }
    }

    /// The shape after each layer, checking that every layer fits its input and has valid settings:
    /// a description that cannot run is refused here, before any weight is drawn.
    ///
    /// # Errors
    /// The first layer that does not fit, named by its index and description.
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>> {
        if self.input.is_empty() || self.input.contains(&0) {
            return Err(Error::shape("network input", "positive sizes", &self.input));
        }
        let mut shape = self.input.clone();
        let mut out = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let context = format!("layers.{i} {}", layer.describe(&shape));
            shape = layer.output_shape(&shape).map_err(|e| e.within(&context))?;
            out.push(shape.clone());
        }
        Ok(out)
    }

    /// The input shape of every layer (the network's input, then each layer's output but the last's).
    ///
    /// # Errors
    /// As [`NetSpec::shapes`].
    pub fn input_shapes(&self) -> Result<Vec<Vec<usize>>> {
        let shapes = self.shapes()?;
        Ok(std::iter::once(self.input.clone()).chain(shapes).take(self.layers.len()).collect())
    }

    /// One line per layer: `layers.{i} <description> -> <output shape>`.
    ///
    /// # Errors
    /// As [`NetSpec::shapes`].
    pub fn summary(&self) -> Result<String> {
        let inputs = self.input_shapes()?;
        let outputs = self.shapes()?;
        Ok(self
            .layers
            .iter()
            .zip(inputs.iter().zip(&outputs))
            .enumerate()
            .map(|(i, (layer, (input, output)))| format!("layers.{i} {} -> {output:?}", layer.describe(input)))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// Checks a dropout setting: the keep probability must be in `(0, 1]`.
pub(crate) fn validate_dropout(dropout: Option<(f64, DropoutStyle)>) -> Result<()> {
    match dropout {
        Some((keep, _)) if !(keep > 0.0 && keep <= 1.0) => {
            Err(Error::InvalidArgument(format!("dropout keep probability must be in (0, 1], got {keep}")))
        }
        _ => Ok(()),
    }
}

mod transformer;
pub use transformer::{AttentionSpec, EmbeddingSpec, LayerNormDraw, LayerNormSpec, PositionEmbeddingSpec};
