//! Layers applied in order, each under a name: what `nn.Sequential`, a module with attributes and an
//! `nn.ModuleList` of blocks all are once built.

use ndarray::ArrayD;

use super::{context, Layer};
use crate::ops::Mode;
use crate::spec::module::join;
use crate::{Float, Result};

/// Children applied in order: `y = f_n(… f_2(f_1(x)))`, and backward in reverse. Each child has a
/// name (its parameters' prefix: `0`, `conv1`, `h`) or none (inline: named at this level).
pub struct Sequential<F: Float> {
    /// The container's own path in the network (the prefix of its children's).
    path: String,
    children: Vec<Child<F>>,
}

struct Child<F: Float> {
    name: Option<String>,
    layer: Box<dyn Layer<F>>,
    /// How errors name the child: its path and, for a layer that is not a container, its description.
    context: Option<String>,
}

impl<F: Float> Sequential<F> {
    /// `children` applied in order, the container sitting at `path` in the network (for error
    /// messages: `transformer.h.0.attn`, empty at the root).
    pub fn new(path: &str, children: Vec<(Option<String>, Box<dyn Layer<F>>)>) -> Self {
        let children = children
            .into_iter()
            .map(|(name, layer)| {
                let at = name.as_deref().map_or_else(|| path.to_string(), |n| join(path, n));
                let context = layer.children().is_empty().then(|| context(&at, &layer.describe()));
                Child { name, layer, context }
            })
            .collect();
        Sequential { path: path.to_string(), children }
    }

    /// Names an error of child `i` by the child's path, if the child is a layer (a container's own
    /// children name themselves).
    fn named(&self, i: usize) -> impl FnOnce(crate::Error) -> crate::Error + '_ {
        move |e| match &self.children[i].context {
            Some(context) => e.within(context),
            None => e,
        }
    }
}

impl<F: Float> Layer<F> for Sequential<F> {
    fn describe(&self) -> String {
        let at = if self.path.is_empty() { String::new() } else { format!(" {}", self.path) };
        format!("Sequential{at} ({} children)", self.children.len())
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let mut x = input;
        for i in 0..self.children.len() {
            x = self.children[i].layer.forward(x, mode).map_err(|e| self.named(i)(e))?;
        }
        Ok(x)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let mut x = input;
        for (i, child) in self.children.iter().enumerate() {
            x = child.layer.infer(x).map_err(self.named(i))?;
        }
        Ok(x)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let mut g = output_grad;
        for i in (0..self.children.len()).rev() {
            g = self.children[i].layer.backward(g).map_err(|e| self.named(i)(e))?;
        }
        Ok(g)
    }

    /// The backward pass without the input gradient: the first child is spared computing its own.
    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        let mut g = output_grad;
        for i in (1..self.children.len()).rev() {
            g = self.children[i].layer.backward(g).map_err(|e| self.named(i)(e))?;
        }
        match self.children.first_mut() {
            Some(first) => first.layer.backward_params(g).map_err(|e| self.named(0)(e)),
            None => Ok(()),
        }
    }

    fn children(&self) -> Vec<(Option<&str>, &dyn Layer<F>)> {
        self.children.iter().map(|c| (c.name.as_deref(), c.layer.as_ref())).collect()
    }

    fn children_mut(&mut self) -> Vec<(Option<&str>, &mut dyn Layer<F>)> {
        self.children.iter_mut().map(|c| (c.name.as_deref(), c.layer.as_mut() as &mut dyn Layer<F>)).collect()
    }
}
