//! The transposed convolution (PyTorch's `ConvTranspose2d`, the book's unused `DeconvLayer`), at
//! stride 1: the adjoint of the convolution, which spreads each input pixel over a `k × k` patch of
//! the output.

use ndarray::{s, Array4, ArrayD, Ix4};

use super::Conv2DOp;
use crate::ops::{Mode, Operation};
use crate::param::{Layout, Param};
use crate::{Error, Float, Result};

/// Transposed convolution of `x: (batch, C, H, W)` with `W: (C, O, k, k)` (PyTorch's
/// `ConvTranspose2d` layout, also its canonical one), stride 1, padding `p ≤ k − 1`:
///
/// ```text
/// y[b, o, i, j] = Σ_c Σ_{u, v} x[b, c, i + p − u, j + p − v] · W[c, o, u, v]      (terms inside x only)
///              = conv2d(x, flip(W), padding k − 1 − p)[b, o, i, j]
/// output (batch, O, H + k − 1 − 2p, W + k − 1 − 2p)
/// ```
///
/// where `flip` reverses both kernel axes and the convolution takes the kernel in the book's `(C, O,
/// k, k)` order, which is the same channel order. So the forward pass is a [`Conv2DOp`] with the
/// flipped kernel, its input gradient that convolution's, and `∂L/∂W = flip(∂L/∂(flip W))`.
pub struct ConvTranspose2DOp<F: Float> {
    weight: Param<F>,
    conv: Conv2DOp<F>,
}

fn flip<F: Float>(a: &ArrayD<F>) -> ArrayD<F> {
    a.slice(s![.., .., ..;-1, ..;-1]).as_standard_layout().into_owned().into_dyn()
}

impl<F: Float> ConvTranspose2DOp<F> {
    /// A transposed convolution with `weight: (in_channels, out_channels, k, k)` and `padding`.
    ///
    /// # Errors
    /// A non-square kernel, or `padding ≥ k`.
    pub fn new(weight: Array4<F>, padding: usize) -> Result<Self> {
        let (_, _, kh, kw) = weight.dim();
        if kh != kw || kh == 0 || padding >= kh {
            return Err(Error::InvalidArgument(format!(
                "ConvTranspose2D needs a square kernel and padding below its size, got {kh}x{kw} and padding {padding}"
            )));
        }
        let weight = Param::new(weight.into_dyn(), Layout::Canonical);
        let flipped = flip(&weight.value).into_dimensionality::<Ix4>().expect("a 4-D kernel");
        let pad = kh - 1 - padding;
        Ok(ConvTranspose2DOp { conv: Conv2DOp::new(flipped, (1, 1), (pad, pad)), weight })
    }

    fn conv_kernel(&mut self) -> &mut Param<F> {
        self.conv.param_mut().expect("a convolution has a kernel").1
    }

    /// `∂L/∂W` from the convolution's kernel gradient.
    fn weight_grad(&mut self) {
        self.weight.grad = flip(&self.conv_kernel().grad);
    }
}

impl<F: Float> Operation<F> for ConvTranspose2DOp<F> {
    fn name(&self) -> &'static str {
        "ConvTranspose2D"
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let flipped = flip(&self.weight.value);
        self.conv_kernel().value = flipped;
        self.conv.forward(input, mode)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let dx = self.conv.backward(output_grad)?;
        self.weight_grad();
        Ok(dx)
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.conv.backward_params(output_grad)?;
        self.weight_grad();
        Ok(())
    }

    fn param(&self) -> Option<(&'static str, &Param<F>)> {
        Some(("weight", &self.weight))
    }

    fn param_mut(&mut self) -> Option<(&'static str, &mut Param<F>)> {
        Some(("weight", &mut self.weight))
    }
}
