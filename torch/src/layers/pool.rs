//! Pooling on libtorch.

use scratch::rng::RandomState;
use scratch::spec::{PoolKind, PoolSpec};
use tch::Tensor;

use super::{module_by_checked_forward, Layer};
use crate::Result;

/// Max or average pooling (`max_pool2d` / `avg_pool2d`), no padding, as [`PoolSpec`] describes.
#[derive(Debug)]
pub struct Pool2D {
    spec: PoolSpec,
}

impl Pool2D {
    /// The pooling `spec` describes.
    pub fn new(spec: PoolSpec) -> Self {
        Pool2D { spec }
    }
}

impl Layer for Pool2D {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn f_forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let size = xs.size();
        let fits = matches!(size[..], [_, _, h, w] if self.spec.output_size((h as usize, w as usize)).is_some());
        if !fits {
            let want = format!("(batch, channels, height, width) of at least {0}x{0}", self.spec.size);
            return Err(scratch::Error::shape("input", want, size).into());
        }
        let (k, s) = (self.spec.size as i64, self.spec.stride as i64);
        Ok(match self.spec.kind {
            PoolKind::Max => xs.max_pool2d([k, k], [s, s], [0, 0], [1, 1], false),
            PoolKind::Average => xs.avg_pool2d([k, k], [s, s], [0, 0], false, true, None::<i64>),
        })
    }

    fn reinitialize(&self, _rng: &mut RandomState) {}
}

module_by_checked_forward!(Pool2D);
