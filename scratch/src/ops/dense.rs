//! The two operations of a dense layer: multiply by a weight matrix, add a bias row.

use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2};

use super::{as_matrix, no_forward, Mode, Operation};
use crate::linalg::matmul;
use crate::param::{Layout, Param};
use crate::{Error, Float, Result};

/// `Y = X W`, the book's `WeightMultiply`.
///
/// ```text
/// forward:   X: (batch, in), W: (in, out)  ->  Y: (batch, out)
/// backward:  ∂L/∂X = ∂L/∂Y Wᵀ   (batch, in)
///            ∂L/∂W = Xᵀ ∂L/∂Y   (in, out)
/// ```
///
/// `W` is stored `(in, out)` as in the book; its canonical layout is PyTorch's `(out, in)`.
pub struct WeightMultiply<F: Float> {
    weight: Param<F>,
    input: Option<Array2<F>>,
}

impl<F: Float> WeightMultiply<F> {
    /// An operation multiplying by `weight`, of shape `(in, out)`.
    pub fn new(weight: Array2<F>) -> Self {
        WeightMultiply { weight: Param::new(weight.into_dyn(), Layout::SwapAxes01), input: None }
    }

    /// `∂L/∂W = Xᵀ ∂L/∂Y`.
    fn weight_grad(&mut self, g: &ArrayView2<F>) -> Result<()> {
        let x = self.input.as_ref().ok_or_else(|| no_forward("WeightMultiply"))?;
        self.weight.grad = matmul(&x.t(), g).into_dyn();
        Ok(())
    }

    fn w(&self) -> ArrayView2<'_, F> {
        self.weight.value.view().into_dimensionality::<Ix2>().expect("the weight is a matrix")
    }
}

impl<F: Float> Operation<F> for WeightMultiply<F> {
    fn name(&self) -> &'static str {
        "WeightMultiply"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let y = self.infer(input.clone())?;
        self.input = Some(input.into_dimensionality::<Ix2>().expect("checked by infer"));
        Ok(y)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let n_in = self.weight.value.shape()[0];
        let x = as_matrix(&input, "input")?;
        if x.ncols() != n_in {
            return Err(Error::shape("input", format!("(batch, {n_in})"), x.shape()));
        }
        Ok(matmul(&x, &self.w()).into_dyn())
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let g = as_matrix(&output_grad, "output gradient")?;
        self.weight_grad(&g)?;
        Ok(matmul(&g, &self.w().t()).into_dyn())
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.weight_grad(&as_matrix(&output_grad, "output gradient")?)
    }

    fn param(&self) -> Option<(&'static str, &Param<F>)> {
        Some(("weight", &self.weight))
    }

    fn param_mut(&mut self) -> Option<(&'static str, &mut Param<F>)> {
        Some(("weight", &mut self.weight))
    }
}

/// `Y = X + B`, the book's `BiasAdd`: one bias per column, broadcast over the batch.
///
/// ```text
/// forward:   X: (batch, n), B: (1, n)  ->  Y: (batch, n)
/// backward:  ∂L/∂X = ∂L/∂Y
///            ∂L/∂B = Σ_batch ∂L/∂Y   (1, n)
/// ```
pub struct BiasAdd<F: Float> {
    bias: Param<F>,
    forwarded: bool,
}

impl<F: Float> BiasAdd<F> {
    /// An operation adding `bias`, of shape `(1, n)`.
    pub fn new(bias: Array2<F>) -> Self {
        assert_eq!(bias.nrows(), 1, "a bias is a single row (1, n)");
        BiasAdd { bias: Param::new(bias.into_dyn(), Layout::RowVector), forwarded: false }
    }
}

impl<F: Float> Operation<F> for BiasAdd<F> {
    fn name(&self) -> &'static str {
        "BiasAdd"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let y = self.infer(input)?;
        self.forwarded = true;
        Ok(y)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let n = self.bias.value.shape()[1];
        let x = as_matrix(&input, "input")?;
        if x.ncols() != n {
            return Err(Error::shape("input", format!("(batch, {n})"), x.shape()));
        }
        let mut y = input;
        y += &self.bias.value;
        Ok(y)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        if !self.forwarded {
            return Err(no_forward(self.name()));
        }
        self.bias.grad = output_grad.sum_axis(Axis(0)).insert_axis(Axis(0));
        Ok(output_grad)
    }

    fn param(&self) -> Option<(&'static str, &Param<F>)> {
        Some(("bias", &self.bias))
    }

    fn param_mut(&mut self) -> Option<(&'static str, &mut Param<F>)> {
        Some(("bias", &mut self.bias))
    }
}
