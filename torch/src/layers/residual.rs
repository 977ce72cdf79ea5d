//! A residual connection: `x + f(x)`.

use tch::Tensor;

use super::{module_by_checked_forward, Layer};
use crate::state::StatePass;
use crate::Result;

/// `y = x + f(x)`, with `f` (the body) keeping its input's shape; the body's parameters are named at
/// the residual's level. Autograd carries the gradient past `f` and through it.
#[derive(Debug)]
pub struct Residual {
    path: String,
    body: Box<dyn Layer>,
}

impl Residual {
    /// `x + body(x)`, sitting at `path` in the network (for error messages).
    pub fn new(path: &str, body: Box<dyn Layer>) -> Self {
        Residual { path: path.to_string(), body }
    }
}

impl Layer for Residual {
    fn describe(&self) -> String {
        let at = if self.path.is_empty() { "(root)" } else { &self.path };
        format!("{at} residual connection")
    }

    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.f_forward_state(xs, train, &mut StatePass::zeros())
    }

    fn f_forward_state(&self, xs: &Tensor, train: bool, state: &mut StatePass<'_>) -> Result<Tensor> {
        let fx = self.body.f_forward_state(xs, train, state)?;
        if fx.size() != xs.size() {
            let want = format!("the body to keep the shape {:?}", xs.size());
            return Err(scratch::Error::shape(self.describe(), want, fx.size()).into());
        }
        Ok(xs + fx)
    }

    fn children(&self) -> Vec<(Option<&str>, &dyn Layer)> {
        vec![(None, self.body.as_ref())]
    }
}

module_by_checked_forward!(Residual);
