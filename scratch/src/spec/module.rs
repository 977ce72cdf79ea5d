//! A network's description as a tree of named modules, nested the way PyTorch modules nest, so that
//! every parameter's name is the path of names `state_dict()` gives the mirrored PyTorch module.
//!
//! | here | PyTorch | children's names |
//! |---|---|---|
//! | [`Module::Layer`] | one layer (`nn.Linear`, `nn.ReLU`, `nn.Dropout`, ...) | its parameters: `weight`, `bias` |
//! | [`Module::Sequential`] | `nn.Sequential(a, b, c)` | `0`, `1`, `2`, parameter-free layers included |
//! | [`Module::Block`] | a module with attributes, its `forward` applying them in turn | the attributes' names |
//! | [`Module::Repeat`] | `nn.ModuleList([Block() for _ in range(n)])`, iterated in `forward` | `0` … `n − 1` |
//! | [`Module::Residual`] | `x = x + f(x)` written in `forward` | none of its own: `f`'s names stay at its level |
//!
//! A child of a block may be unnamed ([`Child::inline`]): a parameter-free function called in
//! `forward` (`F.relu`, `F.max_pool2d`), or a group whose parameters belong to the enclosing module, as
//! the body of a residual connection does.
//!
//! ```
//! use scratch::spec::{Activation, ConvSpec, DenseSpec, DropoutSpec, LayerSpec, Module, NetSpec, PoolSpec};
//!
//! // PyTorch's MNIST example, written as its module is: attributes, and functions in `forward`.
//! let net = Module::block()
//!     .child("conv1", ConvSpec::new(1, 4, 3).padding(0).bias(true).activation(Activation::ReLU))
//!     .child("conv2", ConvSpec::new(4, 6, 3).padding(0).bias(true).activation(Activation::ReLU))
//!     .inline(PoolSpec::max(2, 2))
//!     .child("dropout1", DropoutSpec::drop(0.25))
//!     .inline(LayerSpec::Flatten)
//!     .child("fc1", DenseSpec::new(16).activation(Activation::ReLU))
//!     .child("dropout2", DropoutSpec::drop(0.5))
//!     .child("fc2", DenseSpec::new(10));
//! let spec = NetSpec::from_module(&[1, 12, 12], net);
//! let names: Vec<String> = spec.parameter_shapes()?.into_iter().map(|(name, _)| name).collect();
//! assert_eq!(names, ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
//! assert_eq!(spec.output_shape()?, vec![10]);
//! # Ok::<(), scratch::Error>(())
//! ```

use super::{ConvSpec, DenseSpec, DropoutSpec, LayerSpec, RecurrentSpec};
use crate::{Error, Result};

/// The most layers and containers a description may hold once its repetitions are counted: far more
/// than any network here, and few enough to walk in a moment.
pub const MAX_NODES: usize = 100_000;

/// A node of a network's description: a layer, or a container of modules (see the
/// [module documentation](self)).
#[derive(Clone, Debug, PartialEq)]
pub enum Module {
    /// One layer.
    Layer(LayerSpec),
    /// Modules applied in order, named by their index (`nn.Sequential`).
    Sequential(Vec<Module>),
    /// Modules applied in order, each under its own name or inline (a module with attributes).
    Block(Vec<Child>),
    /// `count` copies of `module`, each with its own weights, applied in order and named by index
    /// (`nn.ModuleList` of identical blocks).
    Repeat {
        /// How many copies.
        count: usize,
        /// The module copied.
        module: Box<Module>,
    },
    /// `x + f(x)`, where `f` gives an output of its input's shape; `f`'s parameters are named at the
    /// residual's level.
    Residual(Box<Module>),
}

/// A child of a [`Module::Block`]: a module under a name, or inline (its parameters named at the
/// block's level).
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    /// The attribute's name, or `None` for an inline child.
    pub name: Option<String>,
    /// The child.
    pub module: Module,
}

impl Child {
    /// `module` under `name`.
    pub fn named(name: impl Into<String>, module: impl Into<Module>) -> Self {
        Child { name: Some(name.into()), module: module.into() }
    }

    /// `module` without a name of its own.
    pub fn inline(module: impl Into<Module>) -> Self {
        Child { name: None, module: module.into() }
    }
}

impl Module {
    /// An empty block, to add children to with [`Module::child`] and [`Module::inline`].
    pub fn block() -> Self {
        Module::Block(Vec::new())
    }

    /// This block with `module` added under `name`.
    ///
    /// # Panics
    /// If `self` is not a [`Module::Block`] (a mistake in the program, not in its input).
    #[must_use]
    pub fn child(self, name: impl Into<String>, module: impl Into<Module>) -> Self {
        self.push(Child::named(name, module))
    }

    /// This block with `module` added inline (no name of its own).
    ///
    /// # Panics
    /// If `self` is not a [`Module::Block`].
    #[must_use]
    pub fn inline(self, module: impl Into<Module>) -> Self {
        self.push(Child::inline(module))
    }

    fn push(self, child: Child) -> Self {
        match self {
            Module::Block(mut children) => {
                children.push(child);
                Module::Block(children)
            }
            other => panic!("children are added to a Module::Block, not to {}", other.kind()),
        }
    }

    /// `modules` in order, named `0`, `1`, ... (`nn.Sequential`).
    pub fn sequential<M: Into<Module>>(modules: impl IntoIterator<Item = M>) -> Self {
        Module::Sequential(modules.into_iter().map(Into::into).collect())
    }

    /// `count` copies of `module`, each with its own weights.
    pub fn repeat(count: usize, module: impl Into<Module>) -> Self {
        Module::Repeat { count, module: Box::new(module.into()) }
    }

    /// `x + module(x)`.
    pub fn residual(module: impl Into<Module>) -> Self {
        Module::Residual(Box::new(module.into()))
    }

    /// What kind of node this is, in a word: the layer's kind, `Sequential`, `Block`, `Repeat` or
    /// `Residual`.
    pub fn kind(&self) -> &'static str {
        match self {
            Module::Layer(layer) => layer.kind(),
            Module::Sequential(_) => "Sequential",
            Module::Block(_) => "Block",
            Module::Repeat { .. } => "Repeat",
            Module::Residual(_) => "Residual",
        }
    }

    /// Every node of the description on inputs of `input` (without the batch axis), in the order the
    /// network computes, with its path and shapes; checks every layer, name and residual on the way.
    ///
    /// # Errors
    /// The first node that does not fit its input, has invalid settings or a bad name, naming its path;
    /// more than [`MAX_NODES`] nodes.
    pub fn walk(&self, input: &[usize]) -> Result<Vec<Node<'_>>> {
        let mut nodes = Vec::new();
        walk(self, Place { path: String::new(), label: String::new(), depth: 0 }, input, &mut nodes)?;
        Ok(nodes)
    }
}

/// One node of a walked description (see [`Module::walk`]).
#[derive(Clone, Debug)]
pub struct Node<'a> {
    /// The node's path, the prefix of its parameters' names (`transformer.h.0.attn`, `` for the root and
    /// the nodes inline in it).
    pub path: String,
    /// The name the node has in its parent (`attn`, `0`), empty for the root and inline nodes.
    pub label: String,
    /// How deep in the tree: 0 for the root.
    pub depth: usize,
    /// The node.
    pub module: &'a Module,
    /// Its input's shape, without the batch axis.
    pub input: Vec<usize>,
    /// Its output's shape.
    pub output: Vec<usize>,
}

impl Node<'_> {
    /// `path` joined with `name`: the full name of a parameter or child of this node.
    pub fn join(&self, name: &str) -> String {
        join(&self.path, name)
    }
}

/// `prefix.name`, or `name` alone under the root (and `prefix` alone for an empty name).
pub fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{name}"),
    }
}

/// Where a node is: its path, its label and its depth.
struct Place {
    path: String,
    label: String,
    depth: usize,
}

impl Place {
    fn child(&self, name: Option<&str>) -> Place {
        Place {
            path: name.map_or_else(|| self.path.clone(), |n| join(&self.path, n)),
            label: name.unwrap_or_default().to_string(),
            depth: self.depth + 1,
        }
    }

    /// How errors name the node: its path, or `(root)`.
    fn name(&self) -> &str {
        if self.path.is_empty() {
            "(root)"
        } else {
            &self.path
        }
    }
}

/// Checks a child's name: not empty, no `.` (the separator of paths), unique among its siblings.
fn check_name<'a>(name: &'a str, siblings: &mut Vec<&'a str>, parent: &Place) -> Result<()> {
    if name.is_empty() || name.contains('.') {
        return Err(Error::InvalidArgument(format!(
            "{}: a child's name must be non-empty and without '.', got {name:?}",
            parent.name()
        )));
    }
    if siblings.contains(&name) {
        return Err(Error::InvalidArgument(format!("{}: two children are named {name}", parent.name())));
    }
    siblings.push(name);
    Ok(())
}

/// Walks `module` at `place` on inputs of `input`, appending its nodes; returns its output's shape.
fn walk<'a>(module: &'a Module, place: Place, input: &[usize], nodes: &mut Vec<Node<'a>>) -> Result<Vec<usize>> {
    if nodes.len() >= MAX_NODES {
        return Err(Error::InvalidArgument(format!("the description has more than {MAX_NODES} layers and containers")));
    }
    let at = nodes.len();
    nodes.push(Node {
        path: place.path.clone(),
        label: place.label.clone(),
        depth: place.depth,
        module,
        input: input.to_vec(),
        output: Vec::new(),
    });
    let output = match module {
        Module::Layer(layer) => layer.output_shape(input).map_err(|e| {
            let at = if place.path.is_empty() { String::new() } else { format!("{} ", place.path) };
            e.within(&format!("{at}{}", layer.describe(input)))
        })?,
        Module::Sequential(children) => {
            let mut shape = input.to_vec();
            for (i, child) in children.iter().enumerate() {
                shape = walk(child, place.child(Some(&i.to_string())), &shape, nodes)?;
            }
            shape
        }
        Module::Block(children) => {
            let mut names = Vec::new();
            let mut shape = input.to_vec();
            for child in children {
                if let Some(name) = &child.name {
                    check_name(name, &mut names, &place)?;
                }
                shape = walk(&child.module, place.child(child.name.as_deref()), &shape, nodes)?;
            }
            shape
        }
        Module::Repeat { count, module: copy } => {
            if count.saturating_add(nodes.len()) > MAX_NODES {
                return Err(Error::InvalidArgument(format!(
                    "{}: {count} copies make more than {MAX_NODES} layers and containers",
                    place.name()
                )));
            }
            let mut shape = input.to_vec();
            for i in 0..*count {
                shape = walk(copy, place.child(Some(&i.to_string())), &shape, nodes)?;
            }
            shape
        }
        Module::Residual(body) => {
            let shape = walk(body, place.child(None), input, nodes)?;
            if shape != input {
                return Err(Error::shape(
                    format!("{} residual connection", place.name()),
                    format!("the body to keep its input's shape {input:?}"),
                    &shape,
                ));
            }
            shape
        }
    };
    nodes[at].output.clone_from(&output);
    Ok(output)
}

/// How an engine builds its network from a description: its layers, a sequence of named children
/// (what [`Module::Sequential`], [`Module::Block`] and [`Module::Repeat`] all are once built) and a
/// residual connection. [`Module::build`] walks the tree and calls these in order, so that every
/// engine draws its layers' weights in the same order.
pub trait Builder {
    /// What a built module is (`Box<dyn Layer<F>>`, ...).
    type Output;
    /// The layer `layer` at `path` on inputs of `input` (without the batch axis).
    ///
    /// # Errors
    /// A layer the engine cannot build.
    fn layer(&mut self, path: &str, layer: &LayerSpec, input: &[usize]) -> Result<Self::Output>;
    /// A container at `path` applying `children` in order, each under its name (or inline).
    ///
    /// # Errors
    /// As the engine decides.
    fn sequence(&mut self, path: &str, children: Vec<(Option<String>, Self::Output)>) -> Result<Self::Output>;
    /// `x + body(x)` at `path`.
    ///
    /// # Errors
    /// As the engine decides.
    fn residual(&mut self, path: &str, body: Self::Output) -> Result<Self::Output>;
}

impl Module {
    /// Builds the module with `builder` on inputs of `input`, depth first in the order the network
    /// computes. Check the description first ([`NetSpec::check`](super::NetSpec::check)): shapes are
    /// taken to fit.
    ///
    /// # Errors
    /// A node that does not fit its input, or whatever the builder returns.
    pub fn build<B: Builder>(&self, input: &[usize], builder: &mut B) -> Result<B::Output> {
        Ok(build(self, "", input, builder)?.0)
    }
}

/// Builds `module` at `path`; returns it and its output's shape.
fn build<B: Builder>(module: &Module, path: &str, input: &[usize], b: &mut B) -> Result<(B::Output, Vec<usize>)> {
    let chain = |named: Vec<(Option<String>, &Module)>, b: &mut B| {
        let mut shape = input.to_vec();
        let mut children = Vec::with_capacity(named.len());
        for (name, child) in named {
            let (built, out) =
                build(child, &name.as_deref().map_or_else(|| path.to_string(), |n| join(path, n)), &shape, b)?;
            children.push((name, built));
            shape = out;
        }
        Ok::<_, Error>((b.sequence(path, children)?, shape))
    };
    match module {
        Module::Layer(layer) => {
            let out = layer.output_shape(input)?;
            Ok((b.layer(path, layer, input)?, out))
        }
        Module::Sequential(children) => {
            chain(children.iter().enumerate().map(|(i, c)| (Some(i.to_string()), c)).collect(), b)
        }
        Module::Block(children) => chain(children.iter().map(|c| (c.name.clone(), &c.module)).collect(), b),
        Module::Repeat { count, module } => chain((0..*count).map(|i| (Some(i.to_string()), &**module)).collect(), b),
        Module::Residual(body) => {
            let (body, out) = build(body, path, input, b)?;
            Ok((b.residual(path, body)?, out))
        }
    }
}

impl From<LayerSpec> for Module {
    fn from(layer: LayerSpec) -> Self {
        Module::Layer(layer)
    }
}

impl From<DenseSpec> for Module {
    fn from(dense: DenseSpec) -> Self {
        Module::Layer(LayerSpec::Dense(dense))
    }
}

impl From<ConvSpec> for Module {
    fn from(conv: ConvSpec) -> Self {
        Module::Layer(LayerSpec::Conv(conv))
    }
}

impl From<RecurrentSpec> for Module {
    fn from(recurrent: RecurrentSpec) -> Self {
        Module::Layer(LayerSpec::Recurrent(recurrent))
    }
}

impl From<DropoutSpec> for Module {
    fn from(dropout: DropoutSpec) -> Self {
        Module::Layer(LayerSpec::Dropout(dropout))
    }
}

impl From<super::PoolSpec> for Module {
    fn from(pool: super::PoolSpec) -> Self {
        Module::Layer(LayerSpec::Pool(pool))
    }
}

impl From<crate::ops::Activation> for Module {
    fn from(activation: crate::ops::Activation) -> Self {
        Module::Layer(LayerSpec::Activation(activation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Activation;

    fn dense(n: usize) -> Module {
        DenseSpec::new(n).into()
    }

    #[test]
    fn paths_follow_pytorchs_naming() {
        let block = Module::block().child("fc1", dense(4)).inline(Activation::ReLU).child("fc2", dense(4));
        let net = Module::block()
            .child("inp", dense(4))
            .child("blocks", Module::repeat(2, Module::residual(block)))
            .child("head", Module::sequential([dense(3), Activation::Tanh.into(), dense(2)]));
        let paths: Vec<(String, usize)> = net.walk(&[5]).unwrap().into_iter().map(|n| (n.path, n.depth)).collect();
        let expected = [
            ("", 0),
            ("inp", 1),
            ("blocks", 1),
            ("blocks.0", 2),
            ("blocks.0", 3),
            ("blocks.0.fc1", 4),
            ("blocks.0", 4),
            ("blocks.0.fc2", 4),
            ("blocks.1", 2),
            ("blocks.1", 3),
            ("blocks.1.fc1", 4),
            ("blocks.1", 4),
            ("blocks.1.fc2", 4),
            ("head", 1),
            ("head.0", 2),
            ("head.1", 2),
            ("head.2", 2),
        ];
        assert_eq!(paths, expected.map(|(p, d)| (p.to_string(), d)));
    }

    #[test]
    fn a_residual_must_keep_the_shape_and_names_are_checked() {
        let err = Module::residual(dense(3)).walk(&[4]).unwrap_err().to_string();
        assert!(err.contains("(root) residual connection") && err.contains("[3]"), "{err}");
        let err = Module::block().child("a", dense(3)).child("a", dense(3)).walk(&[4]).unwrap_err().to_string();
        assert!(err.contains("two children are named a"), "{err}");
        let err = Module::block().child("a.b", dense(3)).walk(&[4]).unwrap_err().to_string();
        assert!(err.contains("without '.'"), "{err}");
        let err = Module::block().child("x", Module::sequential([dense(3), dense(0)])).walk(&[4]).unwrap_err();
        assert!(err.to_string().contains("x.1 Dense(3 -> 0"), "{err}");
    }

    #[test]
    fn huge_repetitions_are_refused_before_walking() {
        let err = Module::repeat(usize::MAX, Activation::ReLU).walk(&[4]).unwrap_err().to_string();
        assert!(err.contains("copies make more than"), "{err}");
    }
}
