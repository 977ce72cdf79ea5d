//! The transposed convolution (PyTorch's `ConvTranspose2d`, the book's unused `DeconvLayer`): the
//! adjoint of the convolution, which spreads each input pixel over a `k × k` patch of the output, the
//! patches `stride` apart.

use ndarray::{Array2, Array4, ArrayD, Axis, Ix4, IxDyn};
use rayon::prelude::*;

use super::conv2d::{convolve, flipped_matrix, im2col, standard, transpose_convolve, CHUNKS};
use super::Geometry;
use crate::linalg::matmul_into;
use crate::ops::{no_forward, Mode, Operation};
use crate::param::{Layout, Param};
use crate::{Error, Float, Result};

/// Transposed convolution of `x: (batch, C, H, W)` with `W: (C, O, k, k)` (PyTorch's
/// `ConvTranspose2d` layout, also its canonical one), stride `s`, padding `p` and output padding
/// `q < s`:
///
/// ```text
/// y[b, o, i, j] = Σ_c Σ_{u, v} x[b, c, (i + p − u) / s, (j + p − v) / s] · W[c, o, u, v]
///                 (over the terms where the divisions are exact and land inside x)
/// output (batch, O, (H − 1)·s − 2p + k + q, (W − 1)·s − 2p + k + q)
/// ```
///
/// It is the input gradient of the convolution from `O` to `C` channels with the same kernel, stride and
/// padding (whose output is `(H, W)`). With `Wm: (C, O·k·k)` the kernel as a matrix and
/// `im2col`/`col2im` the convolution's (see [`Conv2DOp`](super::Conv2DOp)), per image:
///
/// ```text
/// forward:   y      = col2im(Wmᵀ · x)          x as (C, H·W)
/// backward:  ∂L/∂x  = Wm · im2col(∂L/∂y)       (C, H·W): the convolution of ∂L/∂y
///            ∂L/∂Wm = Σ_images x · im2col(∂L/∂y)ᵀ
/// ```
///
/// At stride 1 (and `p < k`), when `C ≤ O`, the forward pass is computed instead as the convolution of
/// `x` with the spatially flipped kernel, its channel axes swapped, and padding `k − 1 − p`: the same
/// sums, as an im2col product, which is faster than spreading the larger `Wmᵀ · x` with `col2im`.
///
/// ```
/// use ndarray::{Array4, ArrayD, IxDyn};
/// use scratch::conv::ConvTranspose2DOp;
/// use scratch::ops::{Mode, Operation};
///
/// // 8 channels of 7×7 up to 4 channels of 14×14: stride 2, padding 1, output padding 1, 3×3 kernel.
/// let mut up = ConvTranspose2DOp::new(Array4::<f32>::ones((8, 4, 3, 3)), 2, 1, 1)?;
/// let y = up.forward(ArrayD::ones(IxDyn(&[2, 8, 7, 7])), Mode::Train)?;
/// assert_eq!(y.shape(), &[2, 4, 14, 14]);
/// // Each output pixel sums the inputs whose 3×3 patches cover it: 8 channels × 1, 2 or 4 taps.
/// assert_eq!((y[[0, 0, 0, 0]], y[[0, 0, 1, 1]], y[[0, 0, 2, 2]]), (8.0, 32.0, 8.0));
/// let dx = up.backward(ArrayD::ones(IxDyn(&[2, 4, 14, 14])))?;
/// assert_eq!(dx.shape(), &[2, 8, 7, 7]);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct ConvTranspose2DOp<F: Float> {
    weight: Param<F>,
    stride: usize,
    padding: usize,
    output_padding: usize,
    input: Option<Array4<F>>,
}

impl<F: Float> ConvTranspose2DOp<F> {
    /// A transposed convolution with `weight: (in_channels, out_channels, k, k)`, `stride`, `padding` and
    /// `output_padding` (extra rows and columns at the bottom and right of the output, to pick among
    /// the output sizes that a stride-`s` convolution maps to the same input size).
    ///
    /// # Errors
    /// A non-square or empty kernel, a zero stride, or `output_padding ≥ stride`.
    pub fn new(weight: Array4<F>, stride: usize, padding: usize, output_padding: usize) -> Result<Self> {
        let (_, _, kh, kw) = weight.dim();
        if kh != kw || kh == 0 || stride == 0 || output_padding >= stride {
            return Err(Error::InvalidArgument(format!(
                "ConvTranspose2D needs a square kernel, a positive stride and an output padding below the stride, \
                 got {kh}x{kw}, stride {stride}, output padding {output_padding}"
            )));
        }
        let weight = Param::new(weight.into_dyn(), Layout::Canonical);
        Ok(ConvTranspose2DOp { weight, stride, padding, output_padding, input: None })
    }

    /// The convolution this one is the adjoint of: from the `O` output channels back to the `C` inputs.
    pub fn adjoint_geometry(&self) -> Geometry {
        let k = self.weight.value.shape();
        Geometry {
            in_channels: k[1],
            out_channels: k[0],
            kernel: (k[2], k[3]),
            stride: (self.stride, self.stride),
            padding: (self.padding, self.padding),
        }
    }

    /// The output height and width for an input of `(h, w)`, if positive.
    pub fn output_size(&self, size: (usize, usize)) -> Option<(usize, usize)> {
        self.adjoint_geometry().transposed_output_size(size, self.output_padding)
    }

    /// The kernel as the matrix `Wm: (C, O·k·k)`.
    fn matrix(&self) -> Array2<F> {
        let k = self.weight.value.shape();
        let w = self.weight.value.as_standard_layout();
        w.to_shape((k[0], k[1] * k[2] * k[3])).expect("sizes agree").into_owned()
    }

    /// `∂L/∂y` of the input `x`, checked and in standard layout.
    fn output_grad(&self, output_grad: ArrayD<F>) -> Result<(&Array4<F>, Array4<F>)> {
        let x = self.input.as_ref().ok_or_else(|| no_forward("ConvTranspose2D"))?;
        let g = output_grad.into_dimensionality::<Ix4>().map_err(|e| Error::shape("output gradient", "4-D", e))?;
        let size = self.output_size((x.shape()[2], x.shape()[3])).expect("checked in forward");
        let expected = [x.shape()[0], self.weight.value.shape()[1], size.0, size.1];
        if g.shape() != expected {
            return Err(Error::shape("output gradient", format!("{expected:?}"), g.shape()));
        }
        Ok((x, standard(g)))
    }

    /// `∂L/∂x` (with `dx`) and `∂L/∂W`.
    fn gradients(&mut self, output_grad: ArrayD<F>, dx: bool) -> Result<Option<ArrayD<F>>> {
        let (x, g4) = self.output_grad(output_grad)?;
        let geom = self.adjoint_geometry();
        let (batch, c, h, w) = x.dim();
        let wm = self.matrix();
        let chunk = batch.div_ceil(CHUNKS).max(1);
        let mut input_grad = dx.then(|| Array4::<F>::zeros(x.raw_dim()));
        let mut dx_chunks: Vec<_> = match input_grad.as_mut() {
            Some(d) => d.axis_chunks_iter_mut(Axis(0), chunk).map(Some).collect(),
            None => (0..batch.div_ceil(chunk)).map(|_| None).collect(),
        };
        let partials: Vec<Array2<F>> = dx_chunks
            .par_iter_mut()
            .zip(x.axis_chunks_iter(Axis(0), chunk))
            .zip(g4.axis_chunks_iter(Axis(0), chunk))
            .map(|((dx_chunk, x_chunk), g_chunk)| {
                // Accumulated as (∂L/∂Wm)ᵀ = Σ im2col(∂L/∂y) · xᵀ: faster than its transpose (see
                // Conv2DOp's kernel gradient).
                let mut acc = Array2::zeros((geom.rows(), c));
                let mut cols = Array2::zeros((geom.rows(), h * w));
                for (b, (xb, gb)) in x_chunk.outer_iter().zip(g_chunk.outer_iter()).enumerate() {
                    im2col(&gb, &geom, (h, w), &mut cols);
                    let xb = xb.to_shape((c, h * w)).expect("contiguous input");
                    matmul_into(&mut acc.view_mut(), &cols.view(), &xb.t(), true);
                    if let Some(d) = dx_chunk.as_mut() {
                        let mut db =
                            d.index_axis_mut(Axis(0), b).into_shape_with_order((c, h * w)).expect("contiguous");
                        matmul_into(&mut db, &wm.view(), &cols.view(), false);
                    }
                }
                acc.reversed_axes()
            })
            .collect();
        let mut dw = Array2::zeros(wm.raw_dim());
        for p in &partials {
            dw += p;
        }
        self.weight.grad = dw.into_shape_with_order(self.weight.value.raw_dim()).expect("sizes agree");
        Ok(input_grad.map(Array4::into_dyn))
    }

    /// The output, and the input as the backward pass needs it.
    fn compute(&self, input: ArrayD<F>) -> Result<(ArrayD<F>, Array4<F>)> {
        let geom = self.adjoint_geometry();

        let c = geom.out_channels;
        if input.ndim() != 4 || input.shape()[1] != c {
            return Err(Error::shape("input", format!("(batch, {c}, height, width)"), input.shape()));
        }
        let (h, w) = (input.shape()[2], input.shape()[3]);
        let (ho, wo) = self.output_size((h, w)).ok_or_else(|| {
            Error::shape("input", "images large enough for a positive output size after padding", input.shape())
        })?;
        let x = standard(input.into_dimensionality::<Ix4>().expect("checked"));
        let out = match geom.full_correlation() {
            // At stride 1, the convolution with the flipped kernel: an im2col product, no col2im.
            Some(full) => {
                let swapped = self.weight.value.view().permuted_axes(IxDyn(&[1, 0, 2, 3])).to_owned();
                convolve(&x, &flipped_matrix(&swapped).view(), &full, (ho, wo))
            }
            None => transpose_convolve(&x, &self.matrix().view(), &geom, (ho, wo)),
        };
        Ok((out.into_dyn(), x))
    }
}

impl<F: Float> Operation<F> for ConvTranspose2DOp<F> {
    fn name(&self) -> &'static str {
        "ConvTranspose2D"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let (y, x) = self.compute(input)?;
        self.input = Some(x);
        Ok(y)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        self.compute(input).map(|(y, _)| y)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        Ok(self.gradients(output_grad, true)?.expect("asked for the input gradient"))
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.gradients(output_grad, false).map(drop)
    }

    fn param(&self) -> Option<(&'static str, &Param<F>)> {
        Some(("weight", &self.weight))
    }

    fn param_mut(&mut self) -> Option<(&'static str, &mut Param<F>)> {
        Some(("weight", &mut self.weight))
    }
}
