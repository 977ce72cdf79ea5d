//! Reshaping: `Flatten` (the book's), and `Reshape` for decoders that turn a vector back into images.

use ndarray::{ArrayD, IxDyn};

use super::{no_forward, Mode, Operation};
use crate::{Error, Float, Result};

/// `a` in standard (row-major) layout, copied only if it is not already.
fn standard<F: Float>(a: ArrayD<F>) -> ArrayD<F> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// `(batch, d1, d2, ...)` to `(batch, d1·d2·...)`; the backward pass reshapes the gradient back.
#[derive(Default)]
pub struct Flatten {
    input_shape: Option<Vec<usize>>,
}

impl Flatten {
    /// A flatten operation.
    pub fn new() -> Self {
        Flatten { input_shape: None }
    }
}

impl<F: Float> Operation<F> for Flatten {
    fn name(&self) -> &'static str {
        "Flatten"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let shape = input.shape().to_vec();
        let y = Operation::<F>::infer(self, input)?;
        self.input_shape = Some(shape);
        Ok(y)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let shape = input.shape().to_vec();
        let batch = *shape.first().ok_or_else(|| Error::shape("input", "(batch, ...)", &shape))?;
        let rest = shape[1..].iter().product::<usize>();
        Ok(standard(input).into_shape_with_order(IxDyn(&[batch, rest])).expect("sizes agree"))
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let shape = self.input_shape.as_ref().ok_or_else(|| no_forward("Flatten"))?;
        output_grad.as_standard_layout().into_owned().into_shape_with_order(IxDyn(shape)).map_err(|_| {
            Error::shape("output gradient", format!("{} values a row", shape[1..].iter().product::<usize>()), "other")
        })
    }
}

/// `(batch, n)` to `(batch, d1, d2, ...)` with `d1·d2·... = n`; the backward pass flattens back.
pub struct Reshape {
    shape: Vec<usize>,
    input_shape: Option<Vec<usize>>,
}

impl Reshape {
    /// Reshapes every row to `shape` (without the batch axis).
    pub fn new(shape: &[usize]) -> Self {
        Reshape { shape: shape.to_vec(), input_shape: None }
    }
}

impl<F: Float> Operation<F> for Reshape {
    fn name(&self) -> &'static str {
        "Reshape"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let shape = input.shape().to_vec();
        let y = Operation::<F>::infer(self, input)?;
        self.input_shape = Some(shape);
        Ok(y)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let n = self.shape.iter().product::<usize>();
        if input.ndim() != 2 || input.shape()[1] != n {
            return Err(Error::shape("input", format!("(batch, {n})"), input.shape()));
        }
        let mut target = vec![input.shape()[0]];
        target.extend(&self.shape);
        Ok(standard(input).into_shape_with_order(IxDyn(&target)).expect("sizes agree"))
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let shape = self.input_shape.as_ref().ok_or_else(|| no_forward("Reshape"))?;
        Ok(standard(output_grad).into_shape_with_order(IxDyn(shape)).expect("sizes agree"))
    }
}
