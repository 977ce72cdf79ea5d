//! The convolutional layer (the book's `Conv2D`).

use ndarray::ArrayD;

use super::{Layer, LayerOps};
use crate::conv::{ChannelBiasAdd, Conv2DOp, ConvTranspose2DOp, FusedConv};
use crate::ops::{Dropout, Flatten, Mode, Operation};
use crate::param::{Layout, Param};
use crate::rng::RandomState;
use crate::spec::ConvSpec;
use crate::{Float, Result};

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
///
/// ```
/// use scratch::layers::{Conv2D, Layer};
/// use scratch::ops::{Activation, Mode};
/// use scratch::rng::RandomState;
/// use scratch::spec::ConvSpec;
///
/// let mut conv = Conv2D::<f32>::new(ConvSpec::new(1, 4, 3).activation(Activation::ReLU).bias(true), &mut RandomState::new(0))?;
/// let y = conv.forward(ndarray::Array4::zeros((2, 1, 8, 8)).into_dyn(), Mode::Eval)?;
/// assert_eq!(y.shape(), &[2, 4, 8, 8]);
/// # Ok::<(), scratch::Error>(())
/// ```
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

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        match &self.inner {
            Inner::Direct(conv) => conv.infer(input),
            Inner::Ops(ops) => ops.infer(input),
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

    fn params(&self) -> Vec<(String, &Param<F>)> {
        match &self.inner {
            Inner::Direct(conv) => std::iter::once(("weight".into(), &conv.kernel))
                .chain(conv.bias.as_ref().map(|b| ("bias".into(), b)))
                .collect(),
            Inner::Ops(ops) => ops.params(),
        }
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        match &mut self.inner {
            Inner::Direct(conv) => std::iter::once(("weight".into(), &mut conv.kernel))
                .chain(conv.bias.as_mut().map(|b| ("bias".into(), b)))
                .collect(),
            Inner::Ops(ops) => ops.params_mut(),
        }
    }

    fn dropouts_mut(&mut self) -> Vec<(String, &mut Dropout<F>)> {
        let dropout = match &mut self.inner {
            Inner::Direct(conv) => conv.dropout.as_mut(),
            Inner::Ops(ops) => ops.dropout.as_mut(),
        };
        dropout.into_iter().map(|d| (String::new(), d)).collect()
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
