//! The fully connected layer.

use ndarray::{ArrayD, IxDyn};

use super::{Layer, LayerOps};
use crate::ops::{BiasAdd, Dropout, Mode, Operation, WeightMultiply};
use crate::param::Param;
use crate::rng::RandomState;
use crate::spec::DenseSpec;
use crate::{Float, Result};

/// A fully connected layer: `Y = activation(X W + B)`, optionally followed by dropout, over the last
/// axis of its input (as `torch.nn.Linear`).
///
/// ```text
/// X: (batch, in), W: (in, neurons), B: (1, neurons)  ->  Y: (batch, neurons)
/// X: (batch, time, in)                               ->  Y: (batch, time, neurons)   (rows batch·time)
/// ```
///
/// Its operations are [`WeightMultiply`], [`BiasAdd`], the activation and, if configured, [`Dropout`];
/// its parameters are named `weight` and `bias`.
///
/// ```
/// use scratch::layers::{Dense, Layer};
/// use scratch::ops::{Activation, Mode};
/// use scratch::rng::RandomState;
/// use scratch::spec::DenseSpec;
///
/// let mut layer = Dense::<f64>::new(3, DenseSpec::new(2).activation(Activation::Sigmoid), &mut RandomState::new(1))?;
/// let y = layer.forward(ndarray::Array2::zeros((4, 3)).into_dyn(), Mode::Eval)?;
/// assert_eq!(y.shape(), &[4, 2]);
/// let y = layer.forward(ndarray::Array3::zeros((4, 7, 3)).into_dyn(), Mode::Eval)?;
/// assert_eq!(y.shape(), &[4, 7, 2]);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct Dense<F: Float> {
    spec: DenseSpec,
    inputs: usize,
    /// `WeightMultiply`, `BiasAdd`, activation; then dropout.
    ops: LayerOps<F>,
    /// The leading axes of the last input when it had more than two (they are merged into rows).
    leading: Option<Vec<usize>>,
}

impl<F: Float> Dense<F> {
    /// The layer `spec` describes on `inputs` inputs, drawn from `rng` ([`DenseSpec::draw`]).
    ///
    /// # Errors
    /// As [`DenseSpec::validate`].
    pub fn new(inputs: usize, spec: DenseSpec, rng: &mut RandomState) -> Result<Self> {
        spec.validate(inputs)?;
        let mut layer = Dense { spec, inputs, ops: LayerOps::new(Vec::new(), None), leading: None };
        layer.reinitialize(rng);
        Ok(layer)
    }

    /// What the layer is.
    pub fn spec(&self) -> &DenseSpec {
        &self.spec
    }

    /// The number of inputs.
    pub fn inputs(&self) -> usize {
        self.inputs
    }
}

/// `a` with its leading axes merged into rows, `(rows, last)`.
fn rows<F: Float>(a: ArrayD<F>) -> ArrayD<F> {
    let last = a.shape().last().copied().unwrap_or(1);
    let rows = a.len() / last.max(1);
    a.as_standard_layout().into_owned().into_shape_with_order(IxDyn(&[rows, last])).expect("sizes agree")
}

/// `a`, `(rows, last)`, reshaped to `leading + [last]`.
fn unrows<F: Float>(a: ArrayD<F>, leading: &[usize]) -> ArrayD<F> {
    let shape: Vec<usize> = leading.iter().copied().chain([a.shape()[1]]).collect();
    a.into_shape_with_order(IxDyn(&shape)).expect("sizes agree")
}

impl<F: Float> Layer<F> for Dense<F> {
    fn describe(&self) -> String {
        self.spec.describe(self.inputs)
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        if input.ndim() <= 2 {
            self.leading = None;
            return self.ops.forward(input, mode);
        }
        let leading = input.shape()[..input.ndim() - 1].to_vec();
        let y = self.ops.forward(rows(input), mode)?;
        let y = unrows(y, &leading);
        self.leading = Some(leading);
        Ok(y)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        match self.leading.clone() {
            None => self.ops.backward(output_grad),
            Some(leading) => Ok(unrows(self.ops.backward(rows(output_grad))?, &leading)),
        }
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        match self.leading {
            None => self.ops.backward_params(output_grad),
            Some(_) => self.ops.backward_params(rows(output_grad)),
        }
    }

    fn params(&self) -> Vec<(String, &Param<F>)> {
        self.ops.params()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        self.ops.params_mut()
    }

    fn dropout_mut(&mut self) -> Option<&mut Dropout<F>> {
        self.ops.dropout.as_mut()
    }

    /// Draws fresh values as [`DenseSpec::draw`] says.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let spec = &self.spec;
        let draw = spec.draw(rng, self.inputs);
        let cast = |v: f64| F::cast(v);
        let ops: Vec<Box<dyn Operation<F>>> = vec![
            Box::new(WeightMultiply::new(draw.weight.mapv(cast))),
            Box::new(BiasAdd::new(draw.bias.mapv(cast).insert_axis(ndarray::Axis(0)))),
            spec.activation.operation(),
        ];
        let dropout = spec.dropout.zip(draw.dropout_seed).map(|((keep, style), seed)| {
            Dropout::new(keep, style, RandomState::new(seed)).expect("validated when the layer was built")
        });
        self.ops = LayerOps::new(ops, dropout);
    }

    fn reseeds_in_book(&self) -> bool {
        true
    }
}
