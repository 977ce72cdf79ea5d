//! The fast 2-D convolution used for training: a batch of multi-channel images, any kernel size, zero
//! padding and stride, computed image by image as one matrix product each (im2col), the images spread
//! over the cores.
//!
//! For an image `x: (C, H, W)` and a kernel `K: (C, O, kh, kw)` (the book's layout), im2col lays the
//! receptive field of every output pixel out as a column:
//!
//! ```text
//! cols[(c·kh + i)·kw + j][y·Wo + x] = x[c][y·sh + i − ph][x·sw + j − pw]      (0 outside the image)
//! ```
//!
//! so that, with `Wm: (O, C·kh·kw)` the kernel as a matrix,
//!
//! ```text
//! forward:   y     = Wm · cols                      (O, Ho·Wo): the image's output, already in NCHW order
//! backward:  ∂L/∂Wm = Σ_images ∂L/∂y · colsᵀ         (O, C·kh·kw)
//!            ∂L/∂x = col2im(Wmᵀ · ∂L/∂y)             (scatter-add of each column back into its window)
//! ```
//!
//! At stride 1 (with `p < k`) and `O ≤ C`, `∂L/∂x` is computed instead as the convolution of `∂L/∂y`
//! with the spatially flipped kernel, from `O` back to `C` channels, padded by `k − 1 − p`: the same
//! sums as an im2col product, which avoids building and scattering the larger `Wmᵀ · ∂L/∂y`.
//!
//! The batch is split into a fixed number of chunks whose kernel gradients are summed in order, so
//! results do not depend on how the work was scheduled.

use ndarray::{Array2, Array4, ArrayD, ArrayView2, ArrayView3, ArrayViewMut3, Axis, Ix4};
use rayon::prelude::*;

use crate::linalg::matmul_into;
use crate::ops::{no_forward, Mode, Operation};
use crate::param::{Layout, Param};
use crate::{Error, Float, Result};

/// The shapes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Vertical and horizontal stride.
    pub stride: (usize, usize),
    /// Zeros added above and below, left and right.
    pub padding: (usize, usize),
}

impl Geometry {
    /// The output size for an input of `(h, w)`, or `None` if the kernel does not fit.
    pub fn output_size(&self, (h, w): (usize, usize)) -> Option<(usize, usize)> {
        let size = |n: usize, k: usize, s: usize, p: usize| {
            let padded = p.checked_mul(2)?.checked_add(n)?;
            Some(padded.checked_sub(k)?.checked_div(s)? + 1)
        };
        let ((kh, kw), (sh, sw), (ph, pw)) = (self.kernel, self.stride, self.padding);
        Some((size(h, kh, sh, ph)?, size(w, kw, sw, pw)?))
    }

    /// The output size of the transposed convolution with these shapes (the input size that this
    /// convolution maps to `(h, w)`), `(n − 1)·s − 2p + k + q` with `q` the output padding, or `None` if
    /// not positive.
    pub fn transposed_output_size(&self, (h, w): (usize, usize), output_padding: usize) -> Option<(usize, usize)> {
        let grow = |n: usize, k: usize, s: usize, p: usize| {
            let grown = n.checked_sub(1)?.checked_mul(s)?.checked_add(k)?.checked_add(output_padding)?;
            grown.checked_sub(p.checked_mul(2)?).filter(|&m| m > 0)
        };
        let ((kh, kw), (sh, sw), (ph, pw)) = (self.kernel, self.stride, self.padding);
        Some((grow(h, kh, sh, ph)?, grow(w, kw, sw, pw)?))
    }

    /// At stride 1, the convolution from the `O` outputs back to the `C` inputs with padding `k − 1 − p`,
    /// which with the flipped kernel ([`flipped_matrix`]) computes the adjoint (the input gradient, or
    /// the transposed convolution) as an im2col product. That is faster than `col2im` when `O ≤ C`:
    /// its im2col matrix `(O·kh·kw, H·W)` is then no larger than the one `col2im` would scatter
    /// (measured on chapter 7's layers: 3.0 against 4.5 ms from 7 to 14 channels, 3.7 against 0.5 ms
    /// from 14 to 1). `None` at other strides, when `p ≥ k`, or when `O > C`.
    pub(super) fn full_correlation(&self) -> Option<Geometry> {
        let padding = self.full_correlation_padding()?;
        (self.stride == (1, 1) && self.out_channels <= self.in_channels).then_some(Geometry {
            in_channels: self.out_channels,
            out_channels: self.in_channels,
            kernel: self.kernel,
            stride: (1, 1),
            padding,
        })
    }

    /// The padding `k − 1 − p` of the convolution computing this one's adjoint at stride 1, if `p < k`.
    pub(super) fn full_correlation_padding(&self) -> Option<(usize, usize)> {
        let ((kh, kw), (ph, pw)) = (self.kernel, self.padding);
        (ph < kh && pw < kw).then(|| (kh - 1 - ph, kw - 1 - pw))
    }

    pub(super) fn rows(&self) -> usize {
        self.in_channels * self.kernel.0 * self.kernel.1
    }
}

/// Number of chunks the batch is split into (fixed, so that results do not depend on the machine).
pub(super) const CHUNKS: usize = 8;

/// The output columns `xo` whose input column `xo·sw + j − pw` lies inside `[0, w)`, as a range.
fn valid_columns(j: usize, (sw, pw): (usize, usize), w: usize, wo: usize) -> std::ops::Range<usize> {
    // xo·sw + j ≥ pw  and  xo·sw + j − pw ≤ w − 1
    let first = pw.saturating_sub(j).div_ceil(sw);
    let last = if w + pw > j { (w + pw - j - 1) / sw + 1 } else { 0 };
    first.min(wo)..last.min(wo).max(first.min(wo))
}

/// Writes the im2col matrix of `x: (C, H, W)` into `cols: (C·kh·kw, Ho·Wo)`.
pub(super) fn im2col<F: Float>(x: &ArrayView3<F>, g: &Geometry, (ho, wo): (usize, usize), cols: &mut Array2<F>) {
    let (_, h, w) = x.dim();
    let ((kh, kw), (sh, sw), (ph, pw)) = (g.kernel, g.stride, g.padding);
    let x = x.as_slice().expect("images are standard layout");
    let cols = cols.as_slice_mut().expect("cols is standard layout");
    for c in 0..g.in_channels {
        for i in 0..kh {
            for j in 0..kw {
                let row = &mut cols[((c * kh + i) * kw + j) * ho * wo..][..ho * wo];
                let valid = valid_columns(j, (sw, pw), w, wo);
                for (y, out) in row.chunks_exact_mut(wo).enumerate() {
                    let iy = (y * sh + i).wrapping_sub(ph);
                    if iy >= h {
                        out.fill(F::zero());
                        continue;
                    }
                    let src = &x[(c * h + iy) * w..][..w];
                    out[..valid.start].fill(F::zero());
                    out[valid.end..].fill(F::zero());
                    let first = valid.start * sw + j - pw;
                    if sw == 1 {
                        out[valid.clone()].copy_from_slice(&src[first..first + valid.len()]);
                    } else {
                        for (k, v) in out[valid.clone()].iter_mut().enumerate() {
                            *v = src[first + k * sw];
                        }
                    }
                }
            }
        }
    }
}

/// Adds every column of `cols: (C·kh·kw, Ho·Wo)` back into its window of `dx: (C, H, W)`.
pub(super) fn col2im<F: Float>(
    cols: &ArrayView2<F>,
    g: &Geometry,
    (ho, wo): (usize, usize),
    dx: &mut ArrayViewMut3<F>,
) {
    let (_, h, w) = dx.dim();
    let ((kh, kw), (sh, sw), (ph, pw)) = (g.kernel, g.stride, g.padding);
    let cols = cols.as_slice().expect("cols is standard layout");
    let dx = dx.as_slice_mut().expect("gradients are standard layout");
    for c in 0..g.in_channels {
        for i in 0..kh {
            for j in 0..kw {
                let row = &cols[((c * kh + i) * kw + j) * ho * wo..][..ho * wo];
                let valid = valid_columns(j, (sw, pw), w, wo);
                for (y, src) in row.chunks_exact(wo).enumerate() {
                    let iy = (y * sh + i).wrapping_sub(ph);
                    if iy >= h || valid.is_empty() {
                        continue;
                    }
                    let dst = &mut dx[(c * h + iy) * w..][..w];
                    let first = valid.start * sw + j - pw;
                    if sw == 1 {
                        for (d, &v) in dst[first..first + valid.len()].iter_mut().zip(&src[valid.clone()]) {
                            *d += v;
                        }
                    } else {
                        for (k, &v) in src[valid.clone()].iter().enumerate() {
                            dst[first + k * sw] += v;
                        }
                    }
                }
            }
        }
    }
}

/// `a` in standard (row-major) layout, copied only if it is not already.
pub(super) fn standard<F: Float>(a: Array4<F>) -> Array4<F> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// The convolution of a batch `x: (batch, C, H, W)` with the kernel matrix `wm: (O, C·kh·kw)`, output
/// `(batch, O, ho, wo)`: im2col and one product per image, the images spread over the cores.
pub(super) fn convolve<F: Float>(
    x: &Array4<F>,
    wm: &ArrayView2<F>,
    geom: &Geometry,
    (ho, wo): (usize, usize),
) -> Array4<F> {
    let batch = x.shape()[0];
    // Every element is written by its image's product (k > 0: the kernel is not empty).
    let mut out = Array4::zeros((batch, geom.out_channels, ho, wo));
    let chunk = batch.div_ceil(CHUNKS).max(1);
    out.axis_chunks_iter_mut(Axis(0), chunk).into_par_iter().zip(x.axis_chunks_iter(Axis(0), chunk)).for_each(
        |(mut out_chunk, x_chunk)| {
            let mut cols = Array2::zeros((geom.rows(), ho * wo));
            for (mut yb, xb) in out_chunk.outer_iter_mut().zip(x_chunk.outer_iter()) {
                im2col(&xb, geom, (ho, wo), &mut cols);
                let mut y = yb.view_mut().into_shape_with_order((geom.out_channels, ho * wo)).expect("contiguous");
                matmul_into(&mut y, wm, &cols.view(), false);
            }
        },
    );
    out
}

/// The adjoint of [`convolve`]: `g: (batch, O, Ho, Wo)` spread back through the kernel matrix
/// `wm: (O, C·kh·kw)` onto images of `(h, w)`, per image `col2im(wmᵀ · g)`; output `(batch, C, h, w)`.
pub(super) fn transpose_convolve<F: Float>(
    g: &Array4<F>,
    wm: &ArrayView2<F>,
    geom: &Geometry,
    (h, w): (usize, usize),
) -> Array4<F> {
    let (batch, _, ho, wo) = g.dim();
    let mut out = Array4::zeros((batch, geom.in_channels, h, w));
    let chunk = batch.div_ceil(CHUNKS).max(1);
    out.axis_chunks_iter_mut(Axis(0), chunk).into_par_iter().zip(g.axis_chunks_iter(Axis(0), chunk)).for_each(
        |(mut out_chunk, g_chunk)| {
            let mut cols = Array2::zeros((geom.rows(), ho * wo));
            for (mut yb, gb) in out_chunk.outer_iter_mut().zip(g_chunk.outer_iter()) {
                let gb = gb.to_shape((geom.out_channels, ho * wo)).expect("contiguous");
                matmul_into(&mut cols.view_mut(), &wm.t(), &gb.view(), false);
                col2im(&cols.view(), geom, (ho, wo), &mut yb);
            }
        },
    );
    out
}

/// A book-layout kernel `K: (C, O, kh, kw)` flipped in both spatial axes, as the matrix
/// `(C, O·kh·kw)`: the kernel of the convolution from `O` back to `C` channels that
/// [`Geometry::full_correlation`] describes.
pub(super) fn flipped_matrix<F: Float>(kernel: &ArrayD<F>) -> Array2<F> {
    let k = kernel.shape();
    let flipped = kernel.slice(ndarray::s![.., .., ..;-1, ..;-1]);
    let flipped = flipped.as_standard_layout();
    flipped.to_shape((k[0], k[1] * k[2] * k[3])).expect("sizes agree").into_owned()
}

/// 2-D convolution (cross-correlation) of `x: (batch, C, H, W)` with a kernel stored in the book's layout
/// `(C, O, kh, kw)`; output `(batch, O, Ho, Wo)`, `Ho = (H + 2·ph − kh) / sh + 1`.
///
/// The kernel's canonical layout is PyTorch's `(O, C, kh, kw)`. Add a bias with [`ChannelBiasAdd`].
pub struct Conv2DOp<F: Float> {
    kernel: Param<F>,
    stride: (usize, usize),
    padding: (usize, usize),
    input: Option<Array4<F>>,
}

impl<F: Float> Conv2DOp<F> {
    /// A convolution with `kernel: (in_channels, out_channels, kh, kw)`.
    ///
    /// # Panics
    /// If a stride is zero.
    pub fn new(kernel: Array4<F>, stride: (usize, usize), padding: (usize, usize)) -> Self {
        assert!(stride.0 > 0 && stride.1 > 0, "strides must be positive");
        Conv2DOp { kernel: Param::new(kernel.into_dyn(), Layout::SwapAxes01), stride, padding, input: None }
    }

    /// The shapes of this convolution.
    pub fn geometry(&self) -> Geometry {
        let k = self.kernel.value.shape();
        Geometry {
            in_channels: k[0],
            out_channels: k[1],
            kernel: (k[2], k[3]),
            stride: self.stride,
            padding: self.padding,
        }
    }

    /// The kernel as the matrix `Wm: (O, C·kh·kw)`.
    fn matrix(&self) -> Array2<F> {
        let g = self.geometry();
        let mut k = self.kernel.value.view();
        k.swap_axes(0, 1);
        k.as_standard_layout().into_owned().into_shape_with_order((g.out_channels, g.rows())).expect("sizes agree")
    }

    fn check_input(&self, input: &ArrayD<F>) -> Result<(Geometry, (usize, usize))> {
        let g = self.geometry();
        let expected = || format!("(batch, {}, height, width)", g.in_channels);
        if input.ndim() != 4 || input.shape()[1] != g.in_channels {
            return Err(Error::shape("input", expected(), input.shape()));
        }
        let size = g.output_size((input.shape()[2], input.shape()[3])).ok_or_else(|| {
            Error::shape(
                "input",
                format!("images of at least the kernel's size {:?} after padding", g.kernel),
                input.shape(),
            )
        })?;
        Ok((g, size))
    }

    /// `∂L/∂Wm` summed over the batch, as the kernel's gradient in its stored layout.
    fn kernel_grad(&mut self, g4: &Array4<F>) -> Result<()> {
        let x = self.input.as_ref().ok_or_else(|| no_forward("Conv2D"))?;
        let geom = self.geometry();
        let (ho, wo) = (g4.shape()[2], g4.shape()[3]);
        let batch = x.shape()[0];
        let chunk = batch.div_ceil(CHUNKS).max(1);
        let partials: Vec<Array2<F>> = (0..batch.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                // Accumulated as (∂L/∂Wm)ᵀ = Σ cols · (∂L/∂y)ᵀ: with few output channels the product
                // runs about a third faster in this orientation (7.9 against 5.7 ms for chapter 7's
                // second convolution at batch 60).
                let mut acc = Array2::zeros((geom.rows(), geom.out_channels));
                let mut cols = Array2::zeros((geom.rows(), ho * wo));
                for b in c * chunk..((c + 1) * chunk).min(batch) {
                    im2col(&x.index_axis(Axis(0), b), &geom, (ho, wo), &mut cols);
                    let gb = g4.index_axis(Axis(0), b);
                    let gb = gb.to_shape((geom.out_channels, ho * wo)).expect("contiguous output gradient");
                    matmul_into(&mut acc.view_mut(), &cols.view(), &gb.t(), true);
                }
                acc.reversed_axes()
            })
            .collect();
        let mut dw = Array2::zeros((geom.out_channels, geom.rows()));
        for p in &partials {
            dw += p;
        }
        let (kh, kw) = geom.kernel;
        let mut dw = dw.into_shape_with_order((geom.out_channels, geom.in_channels, kh, kw)).expect("sizes agree");
        dw.swap_axes(0, 1);
        self.kernel.grad = dw.as_standard_layout().into_owned().into_dyn();
        Ok(())
    }

    fn output_grad(&self, output_grad: ArrayD<F>) -> Result<Array4<F>> {
        let g = output_grad.into_dimensionality::<Ix4>().map_err(|e| Error::shape("output gradient", "4-D", e))?;
        Ok(standard(g))
    }
}

impl<F: Float> Operation<F> for Conv2DOp<F> {
    fn name(&self) -> &'static str {
        "Conv2D"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let (geom, size) = self.check_input(&input)?;
        let x = standard(input.into_dimensionality::<Ix4>().expect("checked"));
        let out = convolve(&x, &self.matrix().view(), &geom, size);
        self.input = Some(x);
        Ok(out.into_dyn())
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let (geom, size) = self.check_input(&input)?;
        let x = standard(input.into_dimensionality::<Ix4>().expect("checked"));
        Ok(convolve(&x, &self.matrix().view(), &geom, size).into_dyn())
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let g4 = self.output_grad(output_grad)?;
        self.kernel_grad(&g4)?;
        let x = self.input.as_ref().ok_or_else(|| no_forward("Conv2D"))?;
        let geom = self.geometry();
        let (h, w) = (x.shape()[2], x.shape()[3]);
        if let Some(full) = geom.full_correlation() {
            // ∂L/∂x = the convolution of ∂L/∂y with the flipped kernel: no col2im needed.
            return Ok(convolve(&g4, &flipped_matrix(&self.kernel.value).view(), &full, (h, w)).into_dyn());
        }
        Ok(transpose_convolve(&g4, &self.matrix().view(), &geom, (h, w)).into_dyn())
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        let g4 = self.output_grad(output_grad)?;
        self.kernel_grad(&g4)
    }

    fn param(&self) -> Option<(&'static str, &Param<F>)> {
        Some(("weight", &self.kernel))
    }

    fn param_mut(&mut self) -> Option<(&'static str, &mut Param<F>)> {
        Some(("weight", &mut self.kernel))
    }
}

/// Adds one bias per channel: `y[b][c][..] = x[b][c][..] + bias[c]`, `∂L/∂bias[c] = Σ_{b, pixels} ∂L/∂y[b][c]`.
pub struct ChannelBiasAdd<F: Float> {
    bias: Param<F>,
    forwarded: bool,
}

impl<F: Float> ChannelBiasAdd<F> {
    /// A per-channel bias `(channels,)`.
    pub fn new(bias: ndarray::Array1<F>) -> Self {
        ChannelBiasAdd { bias: Param::new(bias.into_dyn(), Layout::Canonical), forwarded: false }
    }
}

impl<F: Float> Operation<F> for ChannelBiasAdd<F> {
    fn name(&self) -> &'static str {
        "ChannelBiasAdd"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let y = self.infer(input)?;
        self.forwarded = true;
        Ok(y)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let c = self.bias.value.len();
        if input.ndim() < 2 || input.shape()[1] != c {
            return Err(Error::shape("input", format!("(batch, {c}, ...)"), input.shape()));
        }
        let mut y = if input.is_standard_layout() { input } else { input.as_standard_layout().into_owned() };
        let plane = y.len() / (y.shape()[0] * c);
        let bias = self.bias.value.as_slice().expect("a new vector is contiguous");
        for (i, p) in y.as_slice_mut().expect("standard layout").chunks_exact_mut(plane).enumerate() {
            let b = bias[i % c];
            p.iter_mut().for_each(|v| *v += b);
        }
        Ok(y)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        if !self.forwarded {
            return Err(no_forward("ChannelBiasAdd"));
        }
        let c = self.bias.value.len();
        let g = output_grad.as_standard_layout();
        let plane = g.len() / (g.shape()[0] * c);
        let mut grads = vec![F::zero(); c];
        for (i, p) in g.as_slice().expect("standard layout").chunks_exact(plane).enumerate() {
            grads[i % c] += p.iter().copied().sum::<F>();
        }
        self.bias.grad = ArrayD::from_shape_vec(self.bias.value.raw_dim(), grads).expect("one per channel");
        Ok(output_grad)
    }

    fn param(&self) -> Option<(&'static str, &Param<F>)> {
        Some(("bias", &self.bias))
    }

    fn param_mut(&mut self) -> Option<(&'static str, &mut Param<F>)> {
        Some(("bias", &mut self.bias))
    }
}
