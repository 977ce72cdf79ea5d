//! The convolutional layer (the book's `Conv2D`).

use ndarray::ArrayD;

use super::{Layer, LayerOps};
use crate::conv::{ChannelBiasAdd, Conv2DOp, ConvTranspose2DOp};
use crate::ops::{Dropout, Flatten, Mode, Operation};
use crate::param::Param;
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
    ops: LayerOps<F>,
}

impl<F: Float> Conv2D<F> {
    /// The layer `spec` describes, drawn from `rng`.
    ///
    /// # Errors
    /// As [`ConvSpec::validate`].
    pub fn new(spec: ConvSpec, rng: &mut RandomState) -> Result<Self> {
        spec.validate()?;
        let mut layer = Conv2D { spec, ops: LayerOps::new(Vec::new(), None) };
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

    delegate_to_ops!();

    /// Draws fresh values as [`ConvSpec::draw`] says.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let spec = &self.spec;
        let draw = spec.draw(rng);
        let g = spec.geometry();
        let cast = |a: f64| F::cast(a);
        let kernel = draw.kernel.mapv(cast);
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
        let dropout = spec
            .dropout
            .zip(draw.dropout_seed)
            .map(|((keep, style), seed)| Dropout::new(keep, style, RandomState::new(seed)).expect("validated"));
        self.ops = LayerOps::new(ops, dropout);
    }
}
