//! A residual connection: `x + f(x)`.

use ndarray::ArrayD;

use super::Layer;
use crate::ops::Mode;
use crate::{Error, Float, Result};

/// `y = x + f(x)`, with `f` (the body) keeping its input's shape; the body's parameters are named at
/// the residual's level (a residual connection is a line of `forward` in PyTorch, not a module).
///
/// ```text
/// forward:   y = x + f(x)
/// backward:  ∂L/∂x = ∂L/∂y + ∂L/∂y · ∂f/∂x     (the gradient flows past f unchanged, and through it)
/// ```
pub struct Residual<F: Float> {
    path: String,
    body: Box<dyn Layer<F>>,
}

impl<F: Float> Residual<F> {
    /// `x + body(x)`, sitting at `path` in the network (for error messages).
    pub fn new(path: &str, body: Box<dyn Layer<F>>) -> Self {
        Residual { path: path.to_string(), body }
    }

    /// `x + fx`, checking that the body kept the shape.
    fn add(&self, x: ArrayD<F>, fx: ArrayD<F>) -> Result<ArrayD<F>> {
        if x.shape() != fx.shape() {
            return Err(Error::shape(
                self.describe(),
                format!("the body to keep the shape {:?}", x.shape()),
                fx.shape(),
            ));
        }
        Ok(fx + x)
    }
}

impl<F: Float> Layer<F> for Residual<F> {
    fn describe(&self) -> String {
        let at = if self.path.is_empty() { "(root)" } else { &self.path };
        format!("{at} residual connection")
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let fx = self.body.forward(input.clone(), mode)?;
        self.add(input, fx)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let fx = self.body.infer(input.clone())?;
        self.add(input, fx)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let through = self.body.backward(output_grad.clone())?;
        if through.shape() != output_grad.shape() {
            let want = format!("{:?}", output_grad.shape());
            return Err(Error::shape(format!("{} backward", self.describe()), want, through.shape()));
        }
        Ok(through + output_grad)
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.body.backward_params(output_grad)
    }

    fn children(&self) -> Vec<(Option<&str>, &dyn Layer<F>)> {
        vec![(None, self.body.as_ref())]
    }

    fn children_mut(&mut self) -> Vec<(Option<&str>, &mut dyn Layer<F>)> {
        vec![(None, self.body.as_mut())]
    }
}
