//! What a convolutional layer is.

use ndarray::{Array1, Array4};

use super::WeightInit;
use crate::conv::Geometry;
use crate::ops::{Activation, DropoutStyle};
use crate::rng::RandomState;
use crate::{Error, Result};

/// A convolutional layer: a 2-D convolution (or, `transposed`, its adjoint, PyTorch's
/// `ConvTranspose2d`), an optional bias per output channel, an activation, an optional flatten and
/// optional dropout. Both engines build their layer from one.
///
/// ```text
/// x: (batch, C, H, W)  ->  (batch, O, Ho, Wo)     (or (batch, O·Ho·Wo) flattened)
/// ```
///
/// Parameters, in PyTorch's layout: `weight (O, C, k, k)` (`(C, O, k, k)` when transposed) and, with a
/// bias, `bias (O,)`.
///
/// ```
/// use scratch::ops::Activation;
/// use scratch::spec::{ConvSpec, WeightInit};
///
/// let conv = ConvSpec::new(1, 16, 5).activation(Activation::Tanh).init(WeightInit::Glorot).flatten(true);
/// assert_eq!(conv.output_size((28, 28)), Some((28, 28)));
/// assert_eq!(conv.describe(), "Conv2D(1 -> 16, 5x5, tanh, flatten)");
/// ```
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
    /// A transposed convolution (PyTorch's `ConvTranspose2d`) instead: its kernel
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

    /// With `activation` after the convolution.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// With the kernel initialisation `init` (see [`WeightInit::conv_fans`]).
    pub fn init(mut self, init: WeightInit) -> Self {
        self.init = init;
        self
    }

    /// With `stride` in both directions.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// With `padding` zeros on every side.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = Some(padding);
        self
    }

    /// With (or without) a bias per output channel.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Flattening the output to `(batch, channels · height · width)`, to feed a dense layer.
    pub fn flatten(mut self, flatten: bool) -> Self {
        self.flatten = flatten;
        self
    }

    /// As a transposed convolution.
    pub fn transposed(mut self, transposed: bool) -> Self {
        self.transposed = transposed;
        self
    }

    /// With a transposed convolution's output padding (below the stride).
    pub fn output_padding(mut self, output_padding: usize) -> Self {
        self.output_padding = output_padding;
        self
    }

    /// With inverted dropout on the output, keeping each element with probability `keep`.
    pub fn dropout(self, keep: f64) -> Self {
        self.dropout_with(keep, DropoutStyle::Inverted)
    }

    /// With dropout in the given style.
    pub fn dropout_with(mut self, keep: f64, style: DropoutStyle) -> Self {
        self.dropout = Some((keep, style));
        self
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
    /// A zero size or stride, a kernel that does not fit in memory (see [`crate::memory`]), or a
    /// dropout probability outside `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if self.in_channels == 0 || self.out_channels == 0 || self.kernel == 0 || self.stride == 0 {
            return Err(Error::InvalidArgument(format!(
                "Conv2D needs positive channels, kernel size and stride, got {} -> {}, {}x{}, stride {}",
                self.in_channels, self.out_channels, self.kernel, self.kernel, self.stride
            )));
        }
        super::validate_dropout(self.dropout)?;
        self.activation.validate()?;
        self.init.validate()?;
        let kernel = [self.in_channels, self.out_channels, self.kernel, self.kernel];
        super::product(&kernel, "Conv2D's kernel")?;
        crate::memory::check_parameters(&[&kernel, &[self.out_channels]])?;
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
        let bias = self.bias.then(|| self.init.sample_bias(rng, self.out_channels, fans));
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
