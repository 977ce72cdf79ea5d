//! Layers applied in order, each under a name: what `nn.Sequential`, a module with attributes and an
//! `nn.ModuleList` of blocks all are once built.

use scratch::spec::module::join;
use tch::Tensor;

use super::{context, module_by_checked_forward, Layer};
use crate::state::StatePass;
use crate::Result;

/// Children applied in order; each has a name (its parameters' prefix: `0`, `conv1`, `h`) or none
/// (inline: named at this level). Their parameters live under those names in the `VarStore`.
#[derive(Debug)]
pub struct Sequential {
    path: String,
    children: Vec<Child>,
}

#[derive(Debug)]
struct Child {
    name: Option<String>,
    layer: Box<dyn Layer>,
    /// How errors name the child: its path and, for a layer that is not a container, its description.
    context: Option<String>,
}

impl Sequential {
    /// `children` applied in order, the container sitting at `path` in the network (for error
    /// messages; empty at the root).
    pub fn new(path: &str, children: Vec<(Option<String>, Box<dyn Layer>)>) -> Self {
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
}

impl Layer for Sequential {
    fn describe(&self) -> String {
        let at = if self.path.is_empty() { String::new() } else { format!(" {}", self.path) };
        format!("Sequential{at} ({} children)", self.children.len())
    }

    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.f_forward_state(xs, train, &mut StatePass::zeros())
    }

    fn f_forward_state(&self, xs: &Tensor, train: bool, state: &mut StatePass<'_>) -> Result<Tensor> {
        let mut x = xs.shallow_clone();
        for child in &self.children {
            x = child.layer.f_forward_state(&x, train, state).map_err(|e| match (e, &child.context) {
                (crate::Error::Scratch(e), Some(context)) => e.within(context).into(),
                (other, _) => other,
            })?;
        }
        Ok(x)
    }

    fn children(&self) -> Vec<(Option<&str>, &dyn Layer)> {
        self.children.iter().map(|c| (c.name.as_deref(), c.layer.as_ref())).collect()
    }
}

module_by_checked_forward!(Sequential);
