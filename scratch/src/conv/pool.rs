//! Pooling: each output pixel summarises a window of its channel (the book describes pooling in chapter
//! 5's math but never implements it).

use ndarray::{Array4, ArrayD, Ix4};

use crate::ops::{no_forward, Mode, Operation};
use crate::{Error, Float, Result};

/// How a window is summarised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// The window's maximum; the gradient goes to the (first) maximal element.
    Max,
    /// The window's mean; the gradient is shared equally.
    Average,
}

/// The input shape and, for max pooling, the flat input index of each output's maximum.
type Cache = (Vec<usize>, Vec<usize>);

/// Pooling over `(k, k)` windows moved by `stride`, no padding: `(batch, C, H, W)` to
/// `(batch, C, (H − k) / stride + 1, (W − k) / stride + 1)`.
///
/// ```text
/// max:      y = max_{window} x,     ∂L/∂x = ∂L/∂y at the argmax, 0 elsewhere
/// average:  y = mean_{window} x,    ∂L/∂x = ∂L/∂y / k² over the window
/// ```
pub struct Pool2D<F> {
    kind: PoolKind,
    size: usize,
    stride: usize,
    cache: Option<Cache>,
    float: std::marker::PhantomData<F>,
}

impl<F: Float> Pool2D<F> {
    /// Pooling of `kind` over `size × size` windows with the given stride.
    ///
    /// # Errors
    /// If the size or the stride is zero.
    pub fn new(kind: PoolKind, size: usize, stride: usize) -> Result<Self> {
        if size == 0 || stride == 0 {
            return Err(Error::InvalidArgument(format!(
                "pooling needs a positive size and stride, got {size} and {stride}"
            )));
        }
        Ok(Pool2D { kind, size, stride, cache: None, float: std::marker::PhantomData })
    }

    /// The output height and width for an input of `(h, w)`.
    pub fn output_size(&self, (h, w): (usize, usize)) -> Option<(usize, usize)> {
        (h >= self.size && w >= self.size)
            .then(|| ((h - self.size) / self.stride + 1, (w - self.size) / self.stride + 1))
    }

    /// The pooled output and what the backward pass needs: the input's shape and, for max pooling,
    /// where each window's maximum is.
    fn compute(&self, input: ArrayD<F>) -> Result<(ArrayD<F>, Cache)> {
        let bad = || {
            Error::shape(
                "input",
                format!("(batch, channels, height, width) of at least {0}x{0}", self.size),
                input.shape(),
            )
        };
        if input.ndim() != 4 {
            return Err(bad());
        }
        let (ho, wo) = self.output_size((input.shape()[2], input.shape()[3])).ok_or_else(bad)?;
        let x = input.into_dimensionality::<Ix4>().expect("checked").as_standard_layout().into_owned();
        let (b, c, h, w) = x.dim();
        let xs = x.as_slice().expect("standard layout");
        let mut out = Array4::zeros((b, c, ho, wo));
        let mut argmax = Vec::new();
        let scale = F::cast(1.0 / (self.size * self.size) as f64);
        for (plane, o) in out.as_slice_mut().expect("standard layout").chunks_mut(ho * wo).enumerate() {
            let base = plane * h * w;
            for y in 0..ho {
                for x0 in 0..wo {
                    let (top, left) = (y * self.stride, x0 * self.stride);
                    let window =
                        (0..self.size).flat_map(|i| (0..self.size).map(move |j| base + (top + i) * w + left + j));
                    o[y * wo + x0] = match self.kind {
                        PoolKind::Max => {
                            let best = window.fold(None::<usize>, |best, k| match best {
                                Some(b) if xs[b] >= xs[k] => Some(b),
                                _ => Some(k),
                            });
                            let best = best.expect("a window is not empty");
                            argmax.push(best);
                            xs[best]
                        }
                        PoolKind::Average => window.map(|k| xs[k]).sum::<F>() * scale,
                    };
                }
            }
        }
        Ok((out.into_dyn(), (x.shape().to_vec(), argmax)))
    }
}

impl<F: Float> Operation<F> for Pool2D<F> {
    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "MaxPool2D",
            PoolKind::Average => "AvgPool2D",
        }
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let (out, cache) = self.compute(input)?;
        self.cache = Some(cache);
        Ok(out)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        self.compute(input).map(|(out, _)| out)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let (shape, argmax) = self.cache.as_ref().ok_or_else(|| no_forward(self.name()))?;
        let (h, w) = (shape[2], shape[3]);
        let g = output_grad.as_standard_layout();
        let gs = g.as_slice().expect("standard layout");
        let (ho, wo) = (g.shape()[2], g.shape()[3]);
        let mut dx = ArrayD::zeros(ndarray::IxDyn(shape));
        let d = dx.as_slice_mut().expect("standard layout");
        match self.kind {
            PoolKind::Max => {
                for (&k, &v) in argmax.iter().zip(gs) {
                    d[k] += v;
                }
            }
            PoolKind::Average => {
                let scale = F::cast(1.0 / (self.size * self.size) as f64);
                for (plane, gp) in gs.chunks(ho * wo).enumerate() {
                    let base = plane * h * w;
                    for y in 0..ho {
                        for x0 in 0..wo {
                            let v = gp[y * wo + x0] * scale;
                            for i in 0..self.size {
                                for j in 0..self.size {
                                    d[base + (y * self.stride + i) * w + x0 * self.stride + j] += v;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(dx)
    }
}
