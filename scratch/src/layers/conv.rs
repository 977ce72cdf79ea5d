//! The convolutional layer (the book's `Conv2D`).

use std::marker::PhantomData;

use ndarray::{Array1, Array4, ArrayD};

use super::{Layer, LayerOps, WeightInit};
use crate::conv::{ChannelBiasAdd, Conv2DOp, ConvTranspose2DOp, FusedConv, Geometry};
use crate::ops::{Activation, Dropout, DropoutStyle, Flatten, Mode, Operation};
use crate::param::{Layout, Param};
use crate::rng::RandomState;
use crate::{Error, Float, Result};

/// Everything that defines a convolutional layer; both engines build their layer from one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side; `None` is `kernel / 2` ("same" for odd kernels at stride 1, like the
    /// book and PyTorch's `padding=k//2`).
    pub padding: Option<usize>,
    /// A bias per output channel (the book's convolution has none; PyTorch's has one).
    pub bias: bool,
    /// The activation after the convolution.
    pub activation: Activation,
    /// The kernel initialisation (see [`WeightInit::conv_fans`]).
    pub init: WeightInit,
    /// Flatten the output to `(batch, channels · height · width)`.
    pub flatten: bool,
    /// Dropout on the output: keep probability and style.
    pub dropout: Option<(f64, DropoutStyle)>,
    /// A transposed convolution ([`ConvTranspose2DOp`], PyTorch's `ConvTranspose2d`) instead: its kernel
    /// is `(C, O, k, k)` in checkpoints too.
    pub transposed: bool,
    /// Transposed convolutions only: rows and columns added at the bottom and right of the output, below
    /// the stride (PyTorch's `output_padding`; a stride-2 decoder uses 1 to double a size exactly).
    pub output_padding: usize,
}

/// The initial values of a convolutional layer.
pub struct ConvDraw {
    /// The kernel in the book's layout `(C, O, k, k)`.
    pub kernel: Array4<f64>,
    /// The bias `(O,)`, if the layer has one.
    pub bias: Option<Array1<f64>>,
    /// The seed of the dropout mask generator, if the layer has dropout.
    pub dropout_seed: Option<u32>,
}

impl ConvSpec {
    /// A `kernel × kernel` convolution from `in_channels` to `out_channels`, stride 1, "same" padding, no
    /// bias, linear, standard initialisation, no flatten, no dropout.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        ConvSpec {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: None,
            bias: false,
            activation: Activation::Linear,
            init: WeightInit::Standard,
            flatten: false,
            dropout: None,
            transposed: false,
            output_padding: 0,
        }
    }

    /// The output height and width for an input of `(h, w)`, if the kernel fits.
    pub fn output_size(&self, (h, w): (usize, usize)) -> Option<(usize, usize)> {
        if self.transposed {
            self.geometry().transposed_output_size((h, w), self.output_padding)
        } else {
            self.geometry().output_size((h, w))
        }
    }

    /// The convolution's shapes.
    pub fn geometry(&self) -> Geometry {
        let p = self.padding.unwrap_or(self.kernel / 2);
        Geometry {
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            kernel: (self.kernel, self.kernel),
            stride: (self.stride, self.stride),
            padding: (p, p),
        }
    }

    /// Checks the sizes and the dropout probability.
    ///
    /// # Errors
    /// A zero size or stride, or a dropout probability outside `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if self.in_channels == 0 || self.out_channels == 0 || self.kernel == 0 || self.stride == 0 {
            return Err(Error::InvalidArgument(format!(
                "Conv2D needs positive channels, kernel size and stride, got {} -> {}, {}x{}, stride {}",
                self.in_channels, self.out_channels, self.kernel, self.kernel, self.stride
            )));
        }
        if let Some((keep, style)) = self.dropout {
            Dropout::<f64>::new(keep, style, RandomState::new(0))?;
        }
        if self.output_padding > 0 && (!self.transposed || self.output_padding >= self.stride) {
            return Err(Error::InvalidArgument(format!(
                "an output padding ({}) needs a transposed convolution and must be below its stride ({})",
                self.output_padding, self.stride
            )));
        }
        Ok(())
    }

    /// Draws the kernel in the book's `(C, O, k, k)` order, then, with a bias, the bias `(O,)`, both with
    /// [`WeightInit::sample`] and the fans of [`WeightInit::conv_fans`]; with dropout, one more draw seeds
    /// the mask generator. Both engines initialise from this.
    pub fn draw(&self, rng: &mut RandomState) -> ConvDraw {
        // PyTorch takes a transposed convolution's fan-in from its kernel's second axis, the outputs.
        let fans = if self.transposed {
            self.init.conv_fans(self.out_channels, self.in_channels, self.kernel)
        } else {
            self.init.conv_fans(self.in_channels, self.out_channels, self.kernel)
        };
        let kernel = self.init.sample(rng, (self.in_channels, self.out_channels, self.kernel, self.kernel), fans);
        let bias = self.bias.then(|| self.init.sample(rng, self.out_channels, fans));
        let dropout_seed = self.dropout.map(|_| rng.next_u32());
        ConvDraw { kernel, bias, dropout_seed }
    }

    /// A one-line description, e.g. `Conv2D(1 -> 16, 5x5, tanh, flatten, dropout keep 0.8)`.
    pub fn describe(&self) -> String {
        let name = if self.transposed { "ConvTranspose2D" } else { "Conv2D" };
        let mut s = format!("{name}({} -> {}, {}x{}", self.in_channels, self.out_channels, self.kernel, self.kernel);
        if self.stride != 1 {
            s.push_str(&format!(", stride {}", self.stride));
        }
        if let Some(p) = self.padding.filter(|&p| p != self.kernel / 2) {
            s.push_str(&format!(", padding {p}"));
        }
        if self.output_padding != 0 {
            s.push_str(&format!(", output padding {}", self.output_padding));
        }
        s.push_str(&format!(", {}", self.activation.name()));
        if self.bias {
            s.push_str(", bias");
        }
        if self.flatten {
            s.push_str(", flatten");
        }
        if let Some((keep, _)) = self.dropout {
            s.push_str(&format!(", dropout keep {keep}"));
        }
        s.push(')');
        s
    }
}

/// Builds a [`Conv2D`] from a [`ConvSpec`]; start with [`Conv2D::builder`].
#[derive(Clone, Debug)]
pub struct Conv2DBuilder<F> {
    spec: ConvSpec,
    float: PhantomData<F>,
}

impl<F: Float> Conv2DBuilder<F> {
    /// The activation after the convolution (default linear).
    pub fn activation(mut self, activation: Activation) -> Self {
        self.spec.activation = activation;
        self
    }

    /// The kernel initialisation (default [`WeightInit::Standard`]; see [`WeightInit::conv_fans`]).
    pub fn init(mut self, init: WeightInit) -> Self {
        self.spec.init = init;
        self
    }

    /// The stride in both directions (default 1).
    pub fn stride(mut self, stride: usize) -> Self {
        self.spec.stride = stride;
        self
    }

    /// Zero padding on every side (default `kernel / 2`).
    pub fn padding(mut self, padding: usize) -> Self {
        self.spec.padding = Some(padding);
        self
    }

    /// Adds a bias per output channel.
    pub fn bias(mut self, bias: bool) -> Self {
        self.spec.bias = bias;
        self
    }

    /// Flattens the output to `(batch, channels · height · width)`, to feed a dense layer.
    pub fn flatten(mut self, flatten: bool) -> Self {
        self.spec.flatten = flatten;
        self
    }

    /// A transposed convolution instead.
    pub fn transposed(mut self, transposed: bool) -> Self {
        self.spec.transposed = transposed;
        self
    }

    /// A transposed convolution's output padding, below the stride (default 0).
    pub fn output_padding(mut self, output_padding: usize) -> Self {
        self.spec.output_padding = output_padding;
        self
    }

    /// Inverted dropout on the output, keeping each element with probability `keep`.
    pub fn dropout(mut self, keep: f64) -> Self {
        self.spec.dropout = Some((keep, DropoutStyle::Inverted));
        self
    }

    /// Draws the parameters from `rng` and returns the layer.
    ///
    /// # Errors
    /// As [`ConvSpec::validate`].
    pub fn build(self, rng: &mut RandomState) -> Result<Conv2D<F>> {
        Conv2D::new(self.spec, rng)
    }
}

/// A convolutional layer: convolution (optionally with a bias per channel), activation, optional
/// flatten, optional dropout.
///
/// ```text
/// X: (batch, C, H, W), K: (C, O, k, k)  ->  (batch, O, Ho, Wo)     (or (batch, O·Ho·Wo) flattened)
/// ```
///
/// At stride 1 (with padding below the kernel size) it is computed in one pass each way by the
/// direct convolution ([`crate::conv`]'s `FusedConv`); otherwise, and for the transposed convolution,
/// as its operations in sequence ([`Conv2DOp`] or [`ConvTranspose2DOp`], [`ChannelBiasAdd`], the
/// activation, [`Flatten`], [`Dropout`]).
///
/// Its parameters are `weight` (the kernel, PyTorch's `(O, C, k, k)` in checkpoints) and, with a bias,
/// `bias` `(O,)`.
pub struct Conv2D<F: Float> {
    spec: ConvSpec,
    inner: Inner<F>,
}

/// How the layer computes.
enum Inner<F: Float> {
    /// Stride 1, padding below the kernel: the fused direct convolution.
    Direct(Box<FusedConv<F>>),
    /// Anything else: the operations in sequence.
    Ops(Box<LayerOps<F>>),
}

impl<F: Float> Conv2D<F> {
    /// Settings for a `kernel × kernel` convolution from `in_channels` to `out_channels`.
    pub fn builder(in_channels: usize, out_channels: usize, kernel: usize) -> Conv2DBuilder<F> {
        Conv2DBuilder { spec: ConvSpec::new(in_channels, out_channels, kernel), float: PhantomData }
    }

    /// The layer `spec` describes, drawn from `rng`.
    ///
    /// # Errors
    /// As [`ConvSpec::validate`].
    pub fn new(spec: ConvSpec, rng: &mut RandomState) -> Result<Self> {
        spec.validate()?;
        let mut layer = Conv2D { spec, inner: Inner::Ops(Box::new(LayerOps::new(Vec::new(), None))) };
        layer.reinitialize(rng);
        Ok(layer)
    }

    /// What the layer is.
    pub fn spec(&self) -> &ConvSpec {
        &self.spec
    }
}

impl<F: Float> Layer<F> for Conv2D<F> {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        match &mut self.inner {
            Inner::Direct(conv) => conv.forward(input, mode),
            Inner::Ops(ops) => ops.forward(input, mode),
        }
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        match &mut self.inner {
            Inner::Direct(conv) => Ok(conv.backward(output_grad, true)?.expect("the input gradient was asked for")),
            Inner::Ops(ops) => ops.backward(output_grad),
        }
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        match &mut self.inner {
            Inner::Direct(conv) => conv.backward(output_grad, false).map(drop),
            Inner::Ops(ops) => ops.backward_params(output_grad),
        }
    }

    fn params(&self) -> Vec<(&'static str, &Param<F>)> {
        match &self.inner {
            Inner::Direct(conv) => {
                std::iter::once(("weight", &conv.kernel)).chain(conv.bias.as_ref().map(|b| ("bias", b))).collect()
            }
            Inner::Ops(ops) => ops.params(),
        }
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param<F>)> {
        match &mut self.inner {
            Inner::Direct(conv) => {
                std::iter::once(("weight", &mut conv.kernel)).chain(conv.bias.as_mut().map(|b| ("bias", b))).collect()
            }
            Inner::Ops(ops) => ops.params_mut(),
        }
    }

    fn dropout_mut(&mut self) -> Option<&mut Dropout<F>> {
        match &mut self.inner {
            Inner::Direct(conv) => conv.dropout.as_mut(),
            Inner::Ops(ops) => ops.dropout.as_mut(),
        }
    }

    /// Draws fresh values as [`ConvSpec::draw`] says.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let spec = &self.spec;
        let draw = spec.draw(rng);
        let g = spec.geometry();
        let cast = |a: f64| F::cast(a);
        let kernel = draw.kernel.mapv(cast);
        let dropout = spec
            .dropout
            .zip(draw.dropout_seed)
            .map(|((keep, style), seed)| Dropout::new(keep, style, RandomState::new(seed)).expect("validated"));
        if !spec.transposed && FusedConv::<F>::supports(&g) {
            let kernel = Param::new(kernel.into_dyn(), Layout::SwapAxes01);
            let bias = draw.bias.map(|b| Param::new(b.mapv(cast).into_dyn(), Layout::Canonical));
            self.inner =
                Inner::Direct(Box::new(FusedConv::new(kernel, bias, g, spec.activation, spec.flatten, dropout)));
            return;
        }
        let mut ops: Vec<Box<dyn Operation<F>>> = if spec.transposed {
            let op = ConvTranspose2DOp::new(kernel, spec.stride, g.padding.0, spec.output_padding);
            vec![Box::new(op.expect("validated"))]
        } else {
            vec![Box::new(Conv2DOp::new(kernel, g.stride, g.padding))]
        };
        if let Some(bias) = draw.bias {
            ops.push(Box::new(ChannelBiasAdd::new(bias.mapv(cast))));
        }
        ops.push(spec.activation.operation());
        if spec.flatten {
            ops.push(Box::new(Flatten::new()));
        }
        self.inner = Inner::Ops(Box::new(LayerOps::new(ops, dropout)));
    }
}
