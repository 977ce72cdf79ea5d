//! Operations: the smallest pieces of a network, each with a hand-written forward and backward pass
//! (the book's `Operation` and `ParamOperation`).
//!
//! An operation maps an input array to an output array. Its backward pass receives `∂L/∂output` and
//! returns `∂L/∂input`; an operation that owns a parameter (the book's `ParamOperation`: weights, biases,
//! kernels) also stores `∂L/∂param` in the parameter's `grad`. Forward caches whatever backward needs.
//!
//! [`OpChain`] runs a sequence of operations and checks, as the book's base classes do, that every
//! gradient has the shape of the array it is the gradient of.

mod activations;
mod dense;
mod dropout;
mod reshape;

use ndarray::{ArrayD, ArrayView2, Ix2};

pub(crate) use activations::scale_by;
pub use activations::{Activation, ActivationOp, GeluApproximation};
pub use dense::{BiasAdd, WeightMultiply};
pub use dropout::{Dropout, DropoutStyle};
pub use reshape::{Flatten, Reshape};

use crate::param::Param;
use crate::{Error, Float, Result};

/// Training or evaluation: dropout masks in training and is the identity (or a rescaling) in evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward pass during training.
    Train,
    /// Forward pass for evaluation and prediction.
    Eval,
}

/// A differentiable function of one array, with at most one parameter.
pub trait Operation<F: Float>: Send {
    /// The operation's name, used in error messages (`"WeightMultiply"`).
    fn name(&self) -> &'static str;

    /// Computes the output, caching what [`Operation::backward`] needs.
    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>>;

    /// Computes the output in evaluation mode without caching anything (prediction).
    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>>;

    /// Given `∂L/∂output`, returns `∂L/∂input` and, for an operation with a parameter, stores
    /// `∂L/∂param` in the parameter's `grad`.
    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>>;

    /// The backward pass when `∂L/∂input` is not needed (the first operation of a network, whose input is
    /// the data): stores the parameter gradient only, saving the product that would compute `∂L/∂input`.
    /// The default runs [`Operation::backward`] and drops its result.
    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.backward(output_grad).map(drop)
    }

    /// The parameter and its short name (`"weight"`, `"bias"`), for operations that have one.
    fn param(&self) -> Option<(&'static str, &Param<F>)> {
        None
    }

    /// Mutable access to the parameter.
    fn param_mut(&mut self) -> Option<(&'static str, &mut Param<F>)> {
        None
    }
}

/// `input` as a matrix, or a shape error naming `context`.
pub(crate) fn as_matrix<'a, F>(input: &'a ArrayD<F>, context: &str) -> Result<ArrayView2<'a, F>> {
    input
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| Error::shape(context, "a 2-D array (batch, features)", input.shape()))
}

/// The error for a backward pass that comes before any forward pass.
pub(crate) fn no_forward(op: &str) -> Error {
    Error::InvalidArgument(format!("{op}: backward called before forward"))
}

/// A sequence of operations applied in order, with the book's shape checks on the way back.
pub struct OpChain<F: Float> {
    ops: Vec<Box<dyn Operation<F>>>,
    /// The input and output shape of each operation in the last forward pass.
    shapes: Vec<(Vec<usize>, Vec<usize>)>,
}

impl<F: Float> OpChain<F> {
    /// A chain of `ops`.
    pub fn new(ops: Vec<Box<dyn Operation<F>>>) -> Self {
        OpChain { ops, shapes: Vec::new() }
    }

    /// The operations.
    pub fn ops(&self) -> &[Box<dyn Operation<F>>] {
        &self.ops
    }

    /// Mutable access to the operations.
    pub fn ops_mut(&mut self) -> &mut [Box<dyn Operation<F>>] {
        &mut self.ops
    }

    /// Runs every operation forward in evaluation mode, caching nothing.
    pub fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        self.ops.iter().try_fold(input, |x, op| op.infer(x).map_err(|e| e.within(op.name())))
    }

    /// Runs every operation forward; errors are prefixed with the operation's name.
    pub fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        self.shapes.clear();
        let mut x = input;
        for op in &mut self.ops {
            let in_shape = x.shape().to_vec();
            x = op.forward(x, mode).map_err(|e| e.within(op.name()))?;
            self.shapes.push((in_shape, x.shape().to_vec()));
        }
        Ok(x)
    }

    /// Runs every operation backward, checking that each gradient has the shape of its array.
    pub fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        Ok(self.backward_through(output_grad, true)?.expect("the input gradient was asked for"))
    }

    /// As [`OpChain::backward`], without computing the gradient of the chain's input.
    pub fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.backward_through(output_grad, false).map(drop)
    }

    fn backward_through(&mut self, output_grad: ArrayD<F>, input_grad: bool) -> Result<Option<ArrayD<F>>> {
        if self.shapes.len() != self.ops.len() {
            return Err(no_forward("OpChain"));
        }
        let mut g = output_grad;
        for (i, (op, (in_shape, out_shape))) in self.ops.iter_mut().zip(&self.shapes).enumerate().rev() {
            let name = op.name();
            if g.shape() != out_shape.as_slice() {
                return Err(Error::shape(format!("{name} backward"), format!("gradient {out_shape:?}"), g.shape()));
            }
            if i == 0 && !input_grad {
                op.backward_params(g).map_err(|e| e.within(name))?;
                check_param_grad(op.as_ref())?;
                return Ok(None);
            }
            g = op.backward(g).map_err(|e| e.within(name))?;
            if g.shape() != in_shape.as_slice() {
                return Err(Error::shape(format!("{name} input gradient"), format!("{in_shape:?}"), g.shape()));
            }
            check_param_grad(op.as_ref())?;
        }
        Ok(Some(g))
    }
}

/// The book's `ParamOperation` check: a parameter's gradient has the parameter's shape.
fn check_param_grad<F: Float>(op: &dyn Operation<F>) -> Result<()> {
    if let Some((param, p)) = op.param() {
        if p.grad.shape() != p.value.shape() {
            return Err(Error::shape(
                format!("{} gradient of {param}", op.name()),
                format!("{:?}", p.value.shape()),
                p.grad.shape(),
            ));
        }
    }
    Ok(())
}
