//! Trainable parameters: a value, its gradient, and how the value maps onto the canonical layout that
//! checkpoints and the libtorch engine use.
//!
//! The book stores a dense weight as `(in, out)` so that a layer computes `X W`; PyTorch stores
//! `(out, in)` and computes `X Wᵀ`. The from-scratch engine keeps the book's layout, and this module is
//! the one place where it is converted: every [`Param`] knows its [`Layout`], and
//! [`Param::to_canonical`] / [`Param::set_canonical`] translate to and from PyTorch's layout.

use ndarray::{ArrayD, Axis};

use crate::{Error, Float, Result};

/// How a parameter's stored array relates to the canonical (PyTorch) layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Stored exactly as in PyTorch.
    Canonical,
    /// Axes 0 and 1 swapped: a dense weight `(in, out)` vs `(out, in)`, a kernel `(in_ch, out_ch, k, k)` vs
    /// `(out_ch, in_ch, k, k)`.
    SwapAxes01,
    /// A row vector `(1, n)` stored for broadcasting, canonical `(n,)`: the book's bias.
    RowVector,
}

impl Layout {
    /// `stored` converted to the canonical layout (a copy).
    pub fn to_canonical<F: Clone>(self, stored: &ArrayD<F>) -> ArrayD<F> {
        match self {
            Layout::Canonical => stored.clone(),
            Layout::SwapAxes01 => swap01(stored),
            Layout::RowVector => stored.index_axis(Axis(0), 0).to_owned(),
        }
    }

    /// `canonical` converted to the stored layout (a copy).
    pub fn from_canonical<F: Clone>(self, canonical: &ArrayD<F>) -> ArrayD<F> {
        match self {
            Layout::Canonical => canonical.clone(),
            Layout::SwapAxes01 => swap01(canonical),
            Layout::RowVector => canonical.clone().insert_axis(Axis(0)),
        }
    }

    /// The canonical shape of an array stored with shape `stored`.
    pub fn canonical_shape(self, stored: &[usize]) -> Vec<usize> {
        match self {
            Layout::Canonical => stored.to_vec(),
            Layout::SwapAxes01 => {
                let mut v = stored.to_vec();
                v.swap(0, 1);
                v
            }
            Layout::RowVector => stored[1..].to_vec(),
        }
    }
}

fn swap01<F: Clone>(a: &ArrayD<F>) -> ArrayD<F> {
    let mut v = a.view();
    v.swap_axes(0, 1);
    v.as_standard_layout().into_owned()
}

/// A trainable array and the gradient of the loss with respect to it.
#[derive(Clone, Debug)]
pub struct Param<F> {
    /// The current value.
    pub value: ArrayD<F>,
    /// `∂L/∂value` from the last backward pass, same shape as `value`.
    pub grad: ArrayD<F>,
    /// How `value` relates to the canonical layout.
    pub layout: Layout,
}

impl<F: Float> Param<F> {
    /// A parameter with the given value and a zero gradient.
    pub fn new(value: ArrayD<F>, layout: Layout) -> Self {
        let grad = ArrayD::zeros(value.raw_dim());
        Param { value, grad, layout }
    }

    /// The value in the canonical layout (a copy).
    pub fn to_canonical(&self) -> ArrayD<F> {
        self.layout.to_canonical(&self.value)
    }

    /// The gradient in the canonical layout (a copy).
    pub fn grad_canonical(&self) -> ArrayD<F> {
        self.layout.to_canonical(&self.grad)
    }

    /// The shape of the value in the canonical layout.
    pub fn canonical_shape(&self) -> Vec<usize> {
        self.layout.canonical_shape(self.value.shape())
    }

    /// Replaces the value with `canonical`, given in the canonical layout; `name` is used in the error.
    ///
    /// # Errors
    /// [`Error::Shape`] if `canonical` does not have [`Param::canonical_shape`].
    pub fn set_canonical(&mut self, canonical: &ArrayD<F>, name: &str) -> Result<()> {
        let want = self.canonical_shape();
        if canonical.shape() != want.as_slice() {
            return Err(Error::shape(format!("parameter {name}"), format!("{want:?}"), canonical.shape()));
        }
        self.value = self.layout.from_canonical(canonical);
        Ok(())
    }
}

/// A parameter together with its name in the model, e.g. `layers.0.weight`.
pub type NamedParamMut<'a, F> = (String, &'a mut Param<F>);

#[cfg(test)]
mod tests {
    use ndarray::{array, Array2};

    use super::*;

    #[test]
    fn dense_weight_round_trips_through_the_canonical_layout() {
        let w: Array2<f64> = array![[1., 2., 3.], [4., 5., 6.]]; // (in = 2, out = 3)
        let mut p = Param::new(w.clone().into_dyn(), Layout::SwapAxes01);
        assert_eq!(p.canonical_shape(), vec![3, 2]);
        let c = p.to_canonical();
        assert_eq!(c, w.t().to_owned().into_dyn());
        p.value.fill(0.0);
        p.set_canonical(&c, "w").unwrap();
        assert_eq!(p.value, w.into_dyn());
    }

    #[test]
    fn bias_row_vector_is_one_dimensional_in_canonical_layout() {
        let mut p = Param::new(array![[1.0f32, 2.0]].into_dyn(), Layout::RowVector);
        assert_eq!(p.canonical_shape(), vec![2]);
        assert_eq!(p.to_canonical(), array![1.0f32, 2.0].into_dyn());
        let err = p.set_canonical(&array![1.0f32].into_dyn(), "layers.0.bias").unwrap_err();
        assert!(err.to_string().contains("layers.0.bias"));
    }
}
