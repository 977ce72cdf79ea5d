//! A whole network: the shape of one input, the tree of modules, and the parameters two layers share.

use std::collections::BTreeMap;

use super::module::Node;
use super::{product, LayerSpec, Module};
use crate::{Error, Result};

/// A network: the shape of one input (without the batch axis), its [`Module`] tree and its tied
/// parameters.
///
/// ```
/// use scratch::spec::{Activation, DenseSpec, DropoutSpec, Module, NetSpec};
///
/// // nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 4))
/// let mlp = NetSpec::from_module(&[8], Module::sequential([
///     Module::from(DenseSpec::new(16)),
///     Activation::ReLU.into(),
///     DropoutSpec::drop(0.2).into(),
///     DenseSpec::new(4).into(),
/// ]));
/// let names: Vec<String> = mlp.parameter_shapes()?.into_iter().map(|(name, _)| name).collect();
/// assert_eq!(names, ["0.weight", "0.bias", "3.weight", "3.bias"]);
/// # Ok::<(), scratch::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NetSpec {
    /// `[features]`, `[time, features]` or `[channels, height, width]`.
    pub input: Vec<usize>,
    /// The modules.
    pub module: Module,
    /// Parameters that are another parameter (a language model's output weight and its token
    /// embedding), in the order they were declared.
    pub ties: Vec<Tie>,
}

/// One parameter used under two names: `parameter` is `source` (PyTorch's
/// `model.lm_head.weight = model.transformer.wte.weight`). Its gradient is the sum of both uses, and
/// checkpoints hold it under both names, as `state_dict()` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tie {
    /// The parameter that takes its value from `source` (`lm_head.weight`).
    pub parameter: String,
    /// The parameter it is (`transformer.wte.weight`), which comes first in the network.
    pub source: String,
}

impl NetSpec {
    /// The book's layout: `layers` applied in order, held in a module list called `layers`, so that
    /// the parameters are named `layers.{i}.weight`, `layers.{i}.bias`, ... (parameter-free layers
    /// take an index too).
    pub fn new(input: &[usize], layers: Vec<LayerSpec>) -> Self {
        Self::from_module(input, Module::block().child("layers", Module::sequential(layers)))
    }

    /// A network of `module` on inputs of shape `input`.
    pub fn from_module(input: &[usize], module: impl Into<Module>) -> Self {
        NetSpec { input: input.to_vec(), module: module.into(), ties: Vec::new() }
    }

    /// With `parameter` tied to `source` (see [`Tie`]), checked by [`NetSpec::check`].
    #[must_use]
    pub fn tie(mut self, parameter: impl Into<String>, source: impl Into<String>) -> Self {
        self.ties.push(Tie { parameter: parameter.into(), source: source.into() });
        self
    }

    /// The book's layers, when the network is in the book's layout ([`NetSpec::new`]).
    pub fn book_layers(&self) -> Option<Vec<&LayerSpec>> {
        let Module::Block(children) = &self.module else { return None };
        let [child] = children.as_slice() else { return None };
        let Module::Sequential(layers) = &child.module else { return None };
        if child.name.as_deref() != Some("layers") {
            return None;
        }
        layers
            .iter()
            .map(|m| match m {
                Module::Layer(layer) => Some(layer),
                _ => None,
            })
            .collect()
    }

    /// Every node of the network with its path and shapes (see [`Module::walk`]).
    ///
    /// # Errors
    /// An input shape with a zero or no size; the first node that does not fit (see
    /// [`Module::walk`]).
    pub fn walk(&self) -> Result<Vec<Node<'_>>> {
        if self.input.is_empty() || self.input.contains(&0) {
            return Err(Error::shape("network input", "positive sizes", &self.input));
        }
        product(&self.input, "the network's input")?;
        self.module.walk(&self.input)
    }

    /// The shape of the network's output (without the batch axis).
    ///
    /// # Errors
    /// As [`NetSpec::walk`].
    pub fn output_shape(&self) -> Result<Vec<usize>> {
        Ok(self.walk()?.swap_remove(0).output)
    }

    /// Every parameter's full name and shape in PyTorch's layout, in the order the layers draw them,
    /// tied ones included (under both names, as `state_dict()` lists them).
    ///
    /// # Errors
    /// As [`NetSpec::walk`].
    pub fn parameter_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        Ok(Self::parameters_of(&self.walk()?))
    }

    /// The parameters of walked nodes.
    pub(crate) fn parameters_of(nodes: &[Node<'_>]) -> Vec<(String, Vec<usize>)> {
        nodes
            .iter()
            .filter_map(|node| match node.module {
                Module::Layer(layer) => Some((node, layer)),
                _ => None,
            })
            .flat_map(|(node, layer)| {
                layer.parameter_shapes(&node.input).into_iter().map(|(name, shape)| (node.join(&name), shape))
            })
            .collect()
    }

    /// Checks the whole description before anything is built: every layer fits its input and has valid
    /// settings, names are valid and no two parameters share one, the parameter count fits in memory's
    /// sizes, and every tie makes a dense layer's weight a parameter of the same shape that comes
    /// before it.
    ///
    /// # Errors
    /// The first problem, naming the node or the parameter.
    pub fn check(&self) -> Result<()> {
        self.num_parameters().map(drop)
    }

    /// The number of trainable numbers, a tied parameter counted once.
    ///
    /// # Errors
    /// As [`NetSpec::check`].
    pub fn num_parameters(&self) -> Result<usize> {
        let nodes = self.walk()?;
        let parameters = Self::parameters_of(&nodes);
        let dense_weights: Vec<String> = nodes
            .iter()
            .filter(|n| matches!(n.module, Module::Layer(LayerSpec::Dense(_))))
            .map(|n| n.join("weight"))
            .collect();
        let mut index = BTreeMap::new();
        for (i, (name, _)) in parameters.iter().enumerate() {
            if index.insert(name.as_str(), i).is_some() {
                return Err(Error::InvalidArgument(format!(
                    "two parameters are named {name}: give the layers that hold them names of their own"
                )));
            }
        }
        let mut tied = BTreeMap::new();
        for tie in &self.ties {
            let find = |name: &str| {
                index.get(name).copied().ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "tie {} = {}: the network has no parameter {name}",
                        tie.parameter, tie.source
                    ))
                })
            };
            let (at, source) = (find(&tie.parameter)?, find(&tie.source)?);
            let problem = if !dense_weights.contains(&tie.parameter) {
                Some("only a dense layer's weight can be tied to another parameter".to_string())
            } else if source >= at {
                Some("the source must come first in the network".to_string())
            } else if parameters[at].1 != parameters[source].1 {
                Some(format!("their shapes differ, {:?} and {:?}", parameters[at].1, parameters[source].1))
            } else if tied.contains_key(&source) || tied.insert(at, source).is_some() {
                Some("a parameter is tied at most once, to a parameter that is not tied".to_string())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(Error::InvalidArgument(format!("tie {} = {}: {problem}", tie.parameter, tie.source)));
            }
        }
        if let Some(at) = tied.keys().find(|at| tied.values().any(|source| source == *at)) {
            let name = &parameters[*at].0;
            return Err(Error::InvalidArgument(format!("{name} is tied, and is the source of another tie")));
        }
        parameters.iter().enumerate().filter(|(i, _)| !tied.contains_key(i)).try_fold(
            0usize,
            |total, (_, (name, shape))| {
                total
                    .checked_add(product(shape, name)?)
                    .ok_or_else(|| Error::InvalidArgument("the number of parameters overflows the largest size".into()))
            },
        )
    }

    /// Checks that the network's parameters fit in memory (see [`crate::memory`]), each layer's having
    /// been checked as the description was walked: the total, counting every parameter as
    /// [`crate::memory::parameter_bytes`] does.
    ///
    /// # Errors
    /// As [`NetSpec::check`], or a total that does not fit, naming it and the limit.
    pub fn check_memory(&self) -> Result<()> {
        let n = self.num_parameters()?;
        crate::memory::check(crate::memory::parameter_bytes(n as u128, 8), &format!("the network's {n} parameters"))
    }

    /// An estimate, in bytes, of the memory a training step on batches of `batch` holds, each value
    /// taking `value_bytes` (4 for `f32`, 8 for `f64`): the parameters with their gradients and two
    /// optimiser moments, and per example the input, every layer's output and its gradient, and what
    /// layers keep for their backward pass beyond their output: a convolution's patch matrix
    /// (`out_h · out_w · in · k²`), a recurrent layer's gates at every step (`T · layers · G · hidden`),
    /// attention's weights (`H · T²`, with scores and gradient). It errs on the large side, and
    /// saturates rather than overflows.
    ///
    /// ```
    /// use scratch::spec::gpt::{gpt, GptConfig};
    ///
    /// let spec = gpt(&GptConfig::cpu(65));
    /// let mib = spec.step_bytes(12, 4)? >> 20;
    /// assert!((10..1000).contains(&mib), "{mib} MiB");
    /// # Ok::<(), scratch::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`NetSpec::check`].
    pub fn step_bytes(&self, batch: usize, value_bytes: usize) -> Result<u128> {
        let parameters = self.num_parameters()? as u128;
        let values = |dims: &[usize]| crate::memory::count(&[dims]);
        let per_example = self.walk()?.iter().fold(values(&self.input), |total, node| {
            let kept = match node.module {
                Module::Layer(layer) => {
                    let extra = match (layer, node.input.as_slice(), node.output.as_slice()) {
                        (LayerSpec::Conv(c), [ci, h, w], [co, ho, wo]) => {
                            let (h, w, channels) = if c.transposed { (*h, *w, *co) } else { (*ho, *wo, *ci) };
                            values(&[2, h, w, channels, c.kernel, c.kernel])
                        }
                        (LayerSpec::Recurrent(r), [t, _], _) => {
                            values(&[2, *t, r.layers, r.cell.gates() + 1, r.hidden])
                        }
                        (LayerSpec::Attention(a), [t, _], _) => values(&[3, a.heads, *t, *t]),
                        _ => 0,
                    };
                    values(&node.output).saturating_mul(2).saturating_add(extra)
                }
                _ => 0,
            };
            total.saturating_add(kept)
        });
        let activations = per_example.saturating_mul(batch as u128).saturating_mul(value_bytes as u128);
        Ok(activations.saturating_add(parameters.saturating_mul(4 * value_bytes as u128 + 8)))
    }

    /// Checks that a training step on batches of `batch`, values of `value_bytes` bytes, fits in memory
    /// (see [`NetSpec::step_bytes`] and [`crate::memory`]).
    ///
    /// # Errors
    /// As [`NetSpec::check`], or a step that does not fit, naming the batch, the size and the limit.
    pub fn check_step(&self, batch: usize, value_bytes: usize) -> Result<()> {
        let bytes = self.step_bytes(batch, value_bytes)?;
        crate::memory::check(bytes, &format!("a training step on batches of {batch}"))
    }

    /// A short fingerprint of the whole description (FNV-1a, 64 bits, of its debug text, in hex),
    /// which checkpoints record under the metadata key `network`, so that one written for another
    /// description of a network with the same parameter names and shapes (another activation, another
    /// dropout) is recognised. Stable for a given description and version of this crate.
    pub fn fingerprint(&self) -> String {
        let hash = format!("{self:?}")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
        format!("{hash:016x}")
    }

    /// The network as a tree, one line per node: its name (indented by depth), what it is, its output
    /// shape and its parameters; then the total.
    ///
    /// # Errors
    /// As [`NetSpec::check`].
    pub fn summary(&self) -> Result<String> {
        let total = self.num_parameters()?;
        let nodes = self.walk()?;
        let rows = nodes
            .iter()
            .map(|node| {
                let parameters = match node.module {
                    Module::Layer(layer) => {
                        layer.parameter_shapes(&node.input).iter().map(|(_, s)| s.iter().product::<usize>()).sum()
                    }
                    _ => 0,
                };
                super::summary::Row {
                    depth: node.depth,
                    label: node.label.clone(),
                    what: describe(node),
                    output: Some(node.output.clone()),
                    parameters,
                }
            })
            .collect::<Vec<_>>();
        let tied: Vec<String> = self.ties.iter().map(|t| format!("{} = {}", t.parameter, t.source)).collect();
        Ok(super::summary::render(&self.input, &rows, total, &tied))
    }
}

/// What a node is, in a few words: the layer's description, or the container's kind.
fn describe(node: &Node<'_>) -> String {
    match node.module {
        Module::Layer(layer) => layer.describe(&node.input),
        Module::Sequential(children) => format!("Sequential({} modules)", children.len()),
        Module::Block(_) => "Block".into(),
        Module::Repeat { count, .. } => format!("Repeat({count} copies)"),
        Module::Residual(_) => "Residual (x + f(x))".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DenseSpec;

    #[test]
    fn the_book_layout_keeps_its_names() {
        let spec = NetSpec::new(
            &[4],
            vec![LayerSpec::Dense(DenseSpec::new(3)), LayerSpec::Flatten, LayerSpec::Dense(DenseSpec::new(2))],
        );
        let names: Vec<String> = spec.parameter_shapes().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]);
        assert_eq!(spec.book_layers().unwrap().len(), 3);
    }

    fn two_squares() -> NetSpec {
        NetSpec::from_module(&[4], Module::block().child("a", DenseSpec::new(4)).child("b", DenseSpec::new(4)))
    }

    #[test]
    fn ties_join_two_parameters_of_one_shape_source_first() {
        let tied = two_squares().tie("b.weight", "a.weight");
        assert_eq!(tied.num_parameters().unwrap(), 16 + 4 + 4);
        assert_eq!(two_squares().num_parameters().unwrap(), 2 * (16 + 4));
        let err = |spec: NetSpec| spec.check().unwrap_err().to_string();
        assert!(err(two_squares().tie("a.weight", "b.weight")).contains("source must come first"));
        assert!(err(two_squares().tie("b.weight", "a.bias")).contains("shapes differ"));
        assert!(err(two_squares().tie("b.bias", "a.bias")).contains("only a dense layer's weight"));
        assert!(err(two_squares().tie("b.weight", "c.weight")).contains("no parameter c.weight"));
        let twice = two_squares().tie("b.weight", "a.weight").tie("b.weight", "a.weight");
        assert!(err(twice).contains("tied at most once"));
    }

    #[test]
    fn two_inline_layers_cannot_hold_parameters_of_one_name() {
        let spec = NetSpec::from_module(&[4], Module::block().inline(DenseSpec::new(4)).inline(DenseSpec::new(4)));
        assert!(spec.check().unwrap_err().to_string().contains("two parameters are named weight"));
    }
}
