//! A convolutional layer at stride 1 computed image by image in one pass each way: the direct
//! convolution ([`super::direct`]), the bias, the activation and dropout while the image's output is
//! in cache, and in the backward pass the same steps reversed, with the kernel gradient and the input
//! gradient (the direct convolution of the padded gradient with the flipped kernel) from the same
//! padded gradient.
//!
//! ```text
//! forward:   Z = conv(X, K) + b,  A = f(Z),  Y = A ⊙ dropout factor     (batch, O, Ho, Wo), or flattened
//! backward:  ∂L/∂Z = ∂L/∂Y ⊙ dropout factor ⊙ f'(·)
//!            ∂L/∂b[o] = Σ ∂L/∂Z[·][o],  ∂L/∂K = Σ_images kernel grad(X, ∂L/∂Z)
//!            ∂L/∂X = conv(pad(∂L/∂Z, k − 1 − p), K flipped)
//! ```
//!
//! The images are split into [`CHUNKS`] groups spread over the cores; the gradients of each group are
//! added in order, so that results do not depend on the scheduling.

use ndarray::{Array1, Array4, ArrayD, Axis, Ix4, IxDyn};
use rayon::prelude::*;

use super::conv2d::{standard, Geometry, CHUNKS};
use super::direct::{self, LaneSums, PackedKernel, Padded, TILE};
use crate::ops::{no_forward, Activation, Dropout, Mode, Operation};
use crate::param::Param;
use crate::simd::Arch;
use crate::{Error, Float, Result};

/// A convolution at stride 1 with padding below the kernel size, its bias, activation, optional
/// flatten and dropout, computed in one pass each way.
pub(crate) struct FusedConv<F: Float> {
    /// The kernel in the book's layout `(C, O, kh, kw)`.
    pub(crate) kernel: Param<F>,
    /// The bias `(O,)`, if the layer has one.
    pub(crate) bias: Option<Param<F>>,
    /// The layer's dropout, if it has one.
    pub(crate) dropout: Option<Dropout<F>>,
    activation: Activation,
    geometry: Geometry,
    flatten: bool,
    cache: Option<Cache<F>>,
    /// One per group of images, kept from one call to the next: allocating them afresh at every call
    /// costs a page fault per page.
    workspaces: Vec<Workspace<F>>,
}

/// What the backward pass needs from the forward pass.
struct Cache<F> {
    /// `X`.
    input: Array4<F>,
    /// `f(Z)`, or `Z` where the activation's derivative needs its input; reused by the next forward
    /// pass.
    activated: Array4<F>,
}

/// The buffers of one group of images: the padded input (for the forward pass and the kernel
/// gradient), the padded output gradient (for the kernel gradient and the input gradient), and the
/// kernel gradient's lane sums.
struct Workspace<F> {
    /// The input and output sizes the buffers are for.
    sizes: ((usize, usize), (usize, usize)),
    xp: Padded<F>,
    gp: Padded<F>,
    sums: LaneSums<F>,
}

impl<F: Float> FusedConv<F> {
    /// Whether `geometry` is one this computes: stride 1 and padding below the kernel size (so that the
    /// input gradient is a convolution too).
    pub(crate) fn supports(geometry: &Geometry) -> bool {
        geometry.stride == (1, 1) && geometry.full_correlation_padding().is_some()
    }

    /// The layer with `kernel: (C, O, kh, kw)` (book layout), an optional bias `(O,)`, the activation,
    /// flatten and dropout.
    ///
    /// # Panics
    /// If `geometry` is not [`FusedConv::supports`]ed.
    pub(crate) fn new(
        kernel: Param<F>,
        bias: Option<Param<F>>,
        geometry: Geometry,
        activation: Activation,
        flatten: bool,
        dropout: Option<Dropout<F>>,
    ) -> Self {
        assert!(Self::supports(&geometry), "a direct convolution at stride 1 with padding below the kernel");
        FusedConv { kernel, bias, dropout, activation, geometry, flatten, cache: None, workspaces: Vec::new() }
    }

    fn check_input(&self, input: &ArrayD<F>) -> Result<(usize, usize)> {
        let g = &self.geometry;
        if input.ndim() != 4 || input.shape()[1] != g.in_channels {
            return Err(Error::shape("input", format!("(batch, {}, height, width)", g.in_channels), input.shape()));
        }
        g.output_size((input.shape()[2], input.shape()[3])).ok_or_else(|| {
            Error::shape(
                "input",
                format!("images of at least the kernel's size {:?} after padding", g.kernel),
                input.shape(),
            )
        })
    }

    /// Makes sure there are `groups` workspaces for images of `(h, w)` with outputs of `(ho, wo)`,
    /// keeping those of the last call if they fit.
    fn prepare(&mut self, groups: usize, (h, w): (usize, usize), (ho, wo): (usize, usize)) {
        let g = self.geometry;
        prepare(&mut self.workspaces, &g, groups, (h, w), (ho, wo));
    }

    /// The layer's output.
    pub(crate) fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let (ho, wo) = self.check_input(&input).map_err(|e| e.within("Conv2D"))?;
        let x = standard(input.into_dimensionality::<Ix4>().expect("checked"));
        let (batch, _, h, w) = x.dim();
        let dim = (batch, self.geometry.out_channels, ho, wo);
        let mut z = match self.cache.take() {
            Some(c) if c.activated.dim() == dim => c.activated,
            _ => Array4::zeros(dim),
        };
        let shape = self.output_shape(dim);
        if let Some(d) = &mut self.dropout {
            d.start(&shape, mode).map_err(|e| e.within("Dropout"))?;
        }
        let chunk = batch.div_ceil(CHUNKS).max(1);
        self.prepare(batch.div_ceil(chunk), (h, w), (ho, wo));
        let mut workspaces = std::mem::take(&mut self.workspaces);
        let y = self.compute(&x, &mut workspaces, &mut z, self.dropout.as_ref(), true);
        self.workspaces = workspaces;
        self.cache = Some(Cache { input: x, activated: z });
        Ok(y)
    }

    /// The layer's output in evaluation mode, nothing kept.
    pub(crate) fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let (ho, wo) = self.check_input(&input).map_err(|e| e.within("Conv2D"))?;
        let x = standard(input.into_dimensionality::<Ix4>().expect("checked"));
        let (batch, _, h, w) = x.dim();
        let mut z = Array4::zeros((batch, self.geometry.out_channels, ho, wo));
        let mut workspaces = Vec::new();
        prepare(&mut workspaces, &self.geometry, batch.div_ceil(batch.div_ceil(CHUNKS).max(1)), (h, w), (ho, wo));
        let y = self.compute(&x, &mut workspaces, &mut z, None, false);
        match &self.dropout {
            Some(d) => d.infer(y),
            None => Ok(y),
        }
    }
}

/// Makes sure `workspaces` holds `groups` workspaces for images of `(h, w)` with outputs of
/// `(ho, wo)` under geometry `g`, keeping those there if they fit.
fn prepare<F: Float>(
    workspaces: &mut Vec<Workspace<F>>,
    g: &Geometry,
    groups: usize,
    (h, w): (usize, usize),
    (ho, wo): (usize, usize),
) {
    let fits = |ws: &Workspace<F>| ws.sizes == ((h, w), (ho, wo));
    if workspaces.len() >= groups && workspaces.iter().all(fits) {
        return;
    }
    let ((kh, kw), (ph, pw)) = (g.kernel, g.padding);
    let (qh, qw) = g.full_correlation_padding().expect("supported geometry");
    // Rows for the input gradient's convolution (h outputs) and columns for it and for the kernel
    // gradient's whole tiles.
    let row = (w.div_ceil(TILE) * TILE + kw - 1).max(qw + wo.div_ceil(TILE) * TILE);
    let shape = (g.out_channels, g.in_channels, kh, kw);
    *workspaces = (0..groups)
        .map(|_| Workspace {
            sizes: ((h, w), (ho, wo)),
            xp: Padded::new(g.in_channels, (h, w), (ph, pw), (h + 2 * ph, wo.div_ceil(TILE) * TILE + kw - 1)),
            gp: Padded::new(g.out_channels, (ho, wo), (qh, qw), (h + kh - 1, row)),
            sums: LaneSums::new(shape),
        })
        .collect();
}

impl<F: Float> FusedConv<F> {
    /// The kernel as [`direct::forward`] needs it: `w[o][c][i][j] = K[c][o][i][j]`.
    fn packed(&self, arch: Arch) -> PackedKernel<F> {
        let k = self.kernel.value.view().into_dimensionality::<Ix4>().expect("a 4-D kernel");
        let (c, o, kh, kw) = k.dim();
        PackedKernel::new(arch, (o, c, kh, kw), |o, c, i, j| k[[c, o, i, j]])
    }

    /// The flipped kernel of the input gradient, from `O` to `C` channels:
    /// `w'[c][o][i][j] = K[c][o][kh − 1 − i][kw − 1 − j]`.
    fn flipped(&self, arch: Arch) -> PackedKernel<F> {
        let k = self.kernel.value.view().into_dimensionality::<Ix4>().expect("a 4-D kernel");
        let (c, o, kh, kw) = k.dim();
        PackedKernel::new(arch, (c, o, kh, kw), |c, o, i, j| k[[c, o, kh - 1 - i, kw - 1 - j]])
    }

    /// The shape of the layer's output for `(batch, O, ho, wo)`.
    fn output_shape(&self, (batch, o, ho, wo): (usize, usize, usize, usize)) -> Vec<usize> {
        if self.flatten {
            vec![batch, o * ho * wo]
        } else {
            vec![batch, o, ho, wo]
        }
    }

    /// The convolution, bias, activation and (in training, `dropout` started) dropout of `x` into a
    /// new output, `z` keeping what the backward pass needs (when `keep`).
    fn compute(
        &self,
        x: &Array4<F>,
        workspaces: &mut [Workspace<F>],
        z: &mut Array4<F>,
        dropout: Option<&Dropout<F>>,
        keep: bool,
    ) -> ArrayD<F> {
        let (batch, o, ho, wo) = z.dim();
        let mut y = ArrayD::zeros(IxDyn(&self.output_shape((batch, o, ho, wo))));
        let arch = Arch::new();
        let kernel = self.packed(arch);
        let chunk = batch.div_ceil(CHUNKS).max(1);
        let bias = self.bias.as_ref().map(|b| b.value.as_slice().expect("a vector").to_vec());
        let activation = self.activation;
        let image = o * ho * wo;
        let ys = y.as_slice_mut().expect("a new array");
        z.as_slice_mut()
            .expect("a buffer of the layer's")
            .par_chunks_mut(chunk * image)
            .zip(ys.par_chunks_mut(chunk * image))
            .zip(x.axis_chunks_iter(Axis(0), chunk).into_par_iter())
            .zip(workspaces.par_iter_mut())
            .enumerate()
            .for_each(|(n, (((z, y), x), buffers))| {
                for (b, ((z, y), x)) in
                    z.chunks_exact_mut(image).zip(y.chunks_exact_mut(image)).zip(x.outer_iter()).enumerate()
                {
                    buffers.xp.load(x.as_slice().expect("standard layout"));
                    direct::forward(&buffers.xp, &kernel, (ho, wo), z);
                    if let Some(bias) = &bias {
                        for (plane, &b) in z.chunks_exact_mut(ho * wo).zip(bias) {
                            plane.iter_mut().for_each(|v| *v += b);
                        }
                    }
                    if keep {
                        activation.apply_keeping(z, y);
                    } else {
                        y.copy_from_slice(z);
                        activation.apply(y);
                    }
                    if let Some(d) = dropout {
                        d.apply((n * chunk + b) * image, y).expect("started by the caller");
                    }
                }
            });
        y
    }

    /// Stores the gradients of the kernel and the bias and, with `input_grad`, returns `∂L/∂X`.
    pub(crate) fn backward(&mut self, output_grad: ArrayD<F>, input_grad: bool) -> Result<Option<ArrayD<F>>> {
        let cache = self.cache.take().ok_or_else(|| no_forward("Conv2D"))?;
        let result = self.backward_from(&cache, output_grad, input_grad);
        self.cache = Some(cache);
        result
    }

    fn backward_from(
        &mut self,
        cache: &Cache<F>,
        output_grad: ArrayD<F>,
        input_grad: bool,
    ) -> Result<Option<ArrayD<F>>> {
        let (batch, o, ho, wo) = cache.activated.dim();
        let shape = self.output_shape((batch, o, ho, wo));
        if output_grad.shape() != shape.as_slice() {
            return Err(Error::shape("Conv2D backward", format!("gradient {shape:?}"), output_grad.shape()));
        }
        let (_, c, h, w) = cache.input.dim();
        let (kh, kw) = self.geometry.kernel;
        let mut g =
            if output_grad.is_standard_layout() { output_grad } else { output_grad.as_standard_layout().into_owned() };
        let mut dx = input_grad.then(|| Array4::<F>::zeros((batch, c, h, w)));
        let arch = Arch::new();
        let flipped = input_grad.then(|| self.flipped(arch));
        let chunk = batch.div_ceil(CHUNKS).max(1);
        let groups = batch.div_ceil(chunk);
        self.prepare(groups, (h, w), (ho, wo));
        let (activation, dropout) = (self.activation, self.dropout.as_ref());
        let image = o * ho * wo;
        let cached = cache.activated.as_slice().expect("a buffer of the layer's");
        let mut dx_chunks: Vec<Option<&mut [F]>> = match &mut dx {
            Some(dx) => dx.as_slice_mut().expect("a new array").chunks_mut(chunk * c * h * w).map(Some).collect(),
            None => (0..groups).map(|_| None).collect(),
        };
        let db: Vec<Vec<F>> = g
            .as_slice_mut()
            .expect("standard layout")
            .par_chunks_mut(chunk * image)
            .zip(dx_chunks.par_iter_mut())
            .zip(cache.input.axis_chunks_iter(Axis(0), chunk).into_par_iter())
            .zip(self.workspaces.par_iter_mut())
            .enumerate()
            .map(|(n, (((g, dx), x), ws))| {
                ws.sums.clear();
                let mut db = vec![F::zero(); o];
                for (b, (g, x)) in g.chunks_exact_mut(image).zip(x.outer_iter()).enumerate() {
                    let offset = (n * chunk + b) * image;
                    if let Some(d) = dropout {
                        d.apply(offset, g).expect("started by the forward pass");
                    }
                    activation.gradient(g, &cached[offset..offset + image]);
                    for (d, plane) in db.iter_mut().zip(g.chunks_exact(ho * wo)) {
                        *d += sum(plane);
                    }
                    ws.gp.load(g);
                    ws.xp.load(x.as_slice().expect("standard layout"));
                    direct::kernel_grad(arch, &ws.xp, &ws.gp, &mut ws.sums);
                    if let (Some(dx), Some(flipped)) = (dx.as_deref_mut(), &flipped) {
                        let dx = &mut dx[b * c * h * w..(b + 1) * c * h * w];
                        direct::forward(&ws.gp, flipped, (h, w), dx);
                    }
                }
                db
            })
            .collect();
        // The groups' gradients added in order.
        let mut dw = vec![F::zero(); o * c * kh * kw];
        for ws in &self.workspaces[..groups] {
            ws.sums.reduce_into(&mut dw);
        }
        // (O, C, kh, kw) to the book's (C, O, kh, kw).
        let mut dw = Array4::from_shape_vec((o, c, kh, kw), dw).expect("sizes agree");
        dw.swap_axes(0, 1);
        self.kernel.grad = dw.as_standard_layout().into_owned().into_dyn();
        if let Some(bias) = &mut self.bias {
            let mut total = Array1::zeros(o);
            for partial in &db {
                total.iter_mut().zip(partial).for_each(|(d, &p)| *d += p);
            }
            bias.grad = total.into_dyn();
        }
        Ok(dx.map(|dx| dx.into_dyn()))
    }
}

/// `Σ values` as 16 interleaved partial sums added at the end (independent additions, which the
/// compiler vectorises, where one running sum would wait for every addition in turn).
fn sum<F: Float>(values: &[F]) -> F {
    let mut partial = [F::zero(); 16];
    let chunks = values.chunks_exact(16);
    let rest = chunks.remainder().iter().fold(F::zero(), |s, &v| s + v);
    for chunk in chunks {
        for (p, &v) in partial.iter_mut().zip(chunk) {
            *p += v;
        }
    }
    partial.iter().fold(rest, |s, &p| s + p)
}
