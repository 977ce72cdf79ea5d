//! One description of a network, engine-neutral: what each layer is, how its weights start, how the
//! layers nest and are named, and the shape of the data between them. The from-scratch engine builds
//! a description with [`NeuralNetwork::from_spec`](crate::network::NeuralNetwork::from_spec), the
//! libtorch engine (the `torch` crate) with its own `Net`; built from the same generator, the two
//! start from the same weights. The book's named networks are in [`book`].
//!
//! A description is a tree of [`Module`]s, nested as PyTorch modules nest, so that a parameter's name
//! is the one `state_dict()` gives the mirrored PyTorch module (see [`module`]); the book's own
//! networks are a module list called `layers` ([`NetSpec::new`]).
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
//! assert_eq!(spec.output_shape()?, vec![10]);
//! assert_eq!(spec.num_parameters()?, 16 * 25 + 16 * 28 * 28 * 10 + 10);
//! let net = NeuralNetwork::<f32>::from_spec(&spec, SoftmaxCrossEntropy::new(), &mut RandomState::new(1))?;
//! assert_eq!(net.num_parameters(), spec.num_parameters()?);
//!
//! // A dense layer cannot follow an image without a flatten: refused before any weight is drawn.
//! let unflattened = NetSpec::new(&[1, 28, 28], vec![LayerSpec::Conv(ConvSpec::new(1, 4, 3)), LayerSpec::Dense(DenseSpec::new(10))]);
//! assert!(unflattened.check().unwrap_err().to_string().contains("layers.1"));
//! # Ok::<(), scratch::Error>(())
//! ```

pub mod book;
mod conv;
mod dense;
mod dropout;
pub mod gpt;
mod init;
mod loss;
pub mod module;
mod net;
mod optim;
mod recurrent;
pub(crate) mod summary;
mod transformer;

pub use conv::{ConvDraw, ConvSpec};
pub use dense::{DenseDraw, DenseSpec};
pub(crate) use dropout::validate_dropout;
pub use dropout::DropoutSpec;
pub use init::WeightInit;
pub use loss::{CrossEntropyValue, LossSpec, MseReduction, Reduction};
pub use module::{Child, Module};
pub use net::{NetSpec, Tie};
pub use optim::{Method, OptimSpec};
pub use recurrent::{Biases, CellKind, GruForm, RecurrentInit, RecurrentSpec, StateMode, StateStart};
pub use transformer::{AttentionSpec, EmbeddingSpec, LayerNormDraw, LayerNormSpec, PositionEmbeddingSpec};

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

/// One layer of a description: a leaf of its [`Module`] tree.
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
    /// An activation alone (`nn.ReLU`, `nn.Tanh`, ...).
    Activation(Activation),
    /// Dropout alone (`nn.Dropout`).
    Dropout(DropoutSpec),
    /// A token embedding over integer indices (`nn.Embedding`).
    Embedding(EmbeddingSpec),
    /// A learned position embedding added to its input (nanoGPT's `wpe`).
    PositionEmbedding(PositionEmbeddingSpec),
    /// Layer normalisation over the last axis (`nn.LayerNorm`).
    LayerNorm(LayerNormSpec),
    /// The core of causal multi-head self-attention, between a fused query-key-value projection and
    /// an output projection.
    Attention(AttentionSpec),
}

/// `dims` multiplied, or an error naming `what` when the product overflows.
pub(crate) fn product(dims: &[usize], what: &str) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
        let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
        Error::InvalidArgument(format!("{what}: {} is more than the largest size, {}", dims.join(" × "), usize::MAX))
    })
}

impl LayerSpec {
    /// What kind of layer, in a word (`Dense`, `Conv2D`, `LSTM`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Dense(_) => "Dense",
            LayerSpec::Conv(c) if c.transposed => "ConvTranspose2D",
            LayerSpec::Conv(_) => "Conv2D",
            LayerSpec::Pool(p) => match p.kind {
                PoolKind::Max => "MaxPool2D",
                PoolKind::Average => "AvgPool2D",
            },
            LayerSpec::Flatten => "Flatten",
            LayerSpec::Reshape(_) => "Reshape",
            LayerSpec::Recurrent(r) => r.cell.name(),
            LayerSpec::Activation(a) => a.name(),
            LayerSpec::Dropout(_) => "Dropout",
            LayerSpec::Embedding(_) => "Embedding",
            LayerSpec::PositionEmbedding(_) => "PositionEmbedding",
            LayerSpec::LayerNorm(_) => "LayerNorm",
            LayerSpec::Attention(_) => "CausalSelfAttention",
        }
    }

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
            LayerSpec::Activation(a) => a.name().into(),
            LayerSpec::Dropout(d) => d.describe(),
            LayerSpec::Embedding(e) => e.describe(),
            LayerSpec::PositionEmbedding(p) => p.describe(),
            LayerSpec::LayerNorm(n) => n.describe(),
            LayerSpec::Attention(a) => a.describe(),
        }
    }

    /// The shape this layer gives for an input of `shape` (without the batch axis), checking that the
    /// layer fits it and that its own settings are valid; sizes are multiplied with overflow checks.
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
                    vec![product(&[c.out_channels, ho, wo], "a flattened convolution's output")?]
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
            LayerSpec::Flatten => vec![product(shape, "Flatten")?],
            LayerSpec::Reshape(target) => {
                let (from, to) = (product(shape, "Reshape's input")?, product(target, "Reshape's target")?);
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
            LayerSpec::Activation(a) => {
                a.validate()?;
                shape.to_vec()
            }
            LayerSpec::Dropout(d) => {
                d.validate()?;
                shape.to_vec()
            }
            LayerSpec::Embedding(e) => e.output_shape(shape)?,
            LayerSpec::PositionEmbedding(p) => p.output_shape(shape)?,
            LayerSpec::LayerNorm(n) => n.output_shape(shape)?,
            LayerSpec::Attention(a) => a.output_shape(shape)?,
        })
    }

    /// The layer's parameters on an input of `shape`: their names within the layer and their shapes in
    /// PyTorch's layout, in the order they are drawn. The shape must fit (see
    /// [`LayerSpec::output_shape`]).
    pub fn parameter_shapes(&self, shape: &[usize]) -> Vec<(String, Vec<usize>)> {
        let named = |name: &str, shape: Vec<usize>| (name.to_string(), shape);
        match self {
            LayerSpec::Dense(d) => {
                let inputs = shape.last().copied().unwrap_or(0);
                let mut out = vec![named("weight", vec![d.neurons, inputs])];
                if d.bias {
                    out.push(named("bias", vec![d.neurons]));
                }
                out
            }
            LayerSpec::Conv(c) => {
                let (i, o, k) = (c.in_channels, c.out_channels, c.kernel);
                let kernel = if c.transposed { vec![i, o, k, k] } else { vec![o, i, k, k] };
                let mut out = vec![named("weight", kernel)];
                if c.bias {
                    out.push(named("bias", vec![o]));
                }
                out
            }
            LayerSpec::Recurrent(r) => r.parameter_shapes(),
            LayerSpec::Embedding(e) => vec![named("weight", vec![e.vocab, e.dim])],
            LayerSpec::PositionEmbedding(p) => vec![named("weight", vec![p.max_len, p.dim])],
            LayerSpec::LayerNorm(n) => {
                let weight = n.affine.then(|| named("weight", vec![n.dim]));
                weight.into_iter().chain(n.has_bias().then(|| named("bias", vec![n.dim]))).collect()
            }
            LayerSpec::Attention(_)
            | LayerSpec::Pool(_)
            | LayerSpec::Flatten
            | LayerSpec::Reshape(_)
            | LayerSpec::Activation(_)
            | LayerSpec::Dropout(_) => Vec::new(),
        }
    }
}

impl From<PoolSpec> for LayerSpec {
    fn from(pool: PoolSpec) -> Self {
        LayerSpec::Pool(pool)
    }
}
