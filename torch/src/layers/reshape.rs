//! Flatten and reshape on libtorch.

use scratch::rng::RandomState;
use tch::Tensor;

use super::{module_by_checked_forward, Layer};
use crate::Result;

/// `(batch, ...)` to `(batch, n)` (flatten), or `(batch, n)` to `(batch, shape...)`.
#[derive(Debug)]
pub struct Reshape {
    /// The shape of each row after the layer; `None` flattens.
    shape: Option<Vec<i64>>,
}

impl Reshape {
    /// Flattens every row.
    pub fn flatten() -> Self {
        Reshape { shape: None }
    }

    /// Reshapes every row to `shape`.
    pub fn to(shape: &[usize]) -> Self {
        Reshape { shape: Some(shape.iter().map(|&d| d as i64).collect()) }
    }
}

impl Layer for Reshape {
    fn describe(&self) -> String {
        match &self.shape {
            None => "Flatten".into(),
            Some(s) => format!("Reshape({s:?})"),
        }
    }

    fn f_forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let size = xs.size();
        match &self.shape {
            None if !size.is_empty() => Ok(xs.reshape([size[0], size[1..].iter().product::<i64>()])),
            None => Err(scratch::Error::shape("input", "(batch, ...)", size).into()),
            Some(shape) => {
                let n: i64 = shape.iter().product();
                if size.len() != 2 || size[1] != n {
                    return Err(scratch::Error::shape("input", format!("(batch, {n})"), size).into());
                }
                let target: Vec<i64> = std::iter::once(size[0]).chain(shape.iter().copied()).collect();
                Ok(xs.reshape(target.as_slice()))
            }
        }
    }

    fn reinitialize(&self, _rng: &mut RandomState) {}
}

module_by_checked_forward!(Reshape);
