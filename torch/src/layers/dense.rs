//! The fully connected layer on libtorch.

use std::borrow::Borrow;

use scratch::param::Layout;
use scratch::rng::RandomState;
use scratch::spec::DenseSpec;
use tch::{nn, Tensor};

use super::{activate, module_by_checked_forward, parameter, set_values, Dropout, Layer};
use crate::Result;

/// A fully connected layer, `activation(x Wᵀ + b)` over the last axis, then optional dropout: the
/// book's chapter-7 `DenseLayer` (`nn.Linear`, activation, `nn.Dropout`).
///
/// Parameters `weight: (neurons, inputs)` and, unless the description has none, `bias: (neurons,)`:
/// PyTorch's layout and names.
#[derive(Debug)]
pub struct Dense {
    spec: DenseSpec,
    inputs: usize,
    weight: Tensor,
    bias: Option<Tensor>,
    dropout: Option<Dropout>,
}

/// A dense layer on `inputs` inputs as `spec` describes, its parameters `weight` and `bias` under
/// `path` (of the path's kind and device), drawn from `rng` as the from-scratch `Dense` draws them;
/// the counterpart of `tch::nn::linear`.
///
/// # Errors
/// Invalid settings (see [`DenseSpec::validate`]).
pub fn dense<'a>(
    path: impl Borrow<nn::Path<'a>>,
    inputs: usize,
    spec: DenseSpec,
    rng: &mut RandomState,
) -> Result<Dense> {
    build(path.borrow(), inputs, spec, rng, None)
}

/// As [`dense`]; with `shared`, the weight is that tensor (another layer's parameter, registered under
/// this layer's name too but trained once).
pub(super) fn build(
    path: &nn::Path<'_>,
    inputs: usize,
    spec: DenseSpec,
    rng: &mut RandomState,
    shared: Option<Tensor>,
) -> Result<Dense> {
    spec.validate(inputs)?;
    let weight = match shared {
        Some(tensor) => path.add("weight", tensor, false),
        None => parameter(path, "weight", &[spec.neurons, inputs]),
    };
    let bias = spec.bias.then(|| parameter(path, "bias", &[spec.neurons]));
    let dropout = spec.dropout.map(|(keep, style)| Dropout::new(keep, style, 0));
    let layer = Dense { spec, inputs, weight, bias, dropout };
    layer.reinitialize(rng);
    Ok(layer)
}

impl Layer for Dense {
    fn describe(&self) -> String {
        self.spec.describe(self.inputs)
    }

    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let size = xs.size();
        if !(2..=3).contains(&size.len()) || size.last() != Some(&(self.inputs as i64)) {
            let want = format!("(batch, {0}) or (batch, time, {0})", self.inputs);
            return Err(scratch::Error::shape("input", want, size).into());
        }
        let y = activate(&xs.linear(&self.weight, self.bias.as_ref()), self.spec.activation);
        match &self.dropout {
            Some(d) => d.apply(&y, train),
            None => Ok(y),
        }
    }

    /// Draws as [`DenseSpec::draw`] says, then turns the book's `(inputs, neurons)` weight into
    /// `(neurons, inputs)` with the from-scratch engine's own conversion ([`Layout`]). A shared weight
    /// takes this draw too: the last draw of a tied parameter is its value, in both engines.
    fn reinitialize(&self, rng: &mut RandomState) {
        let draw = self.spec.draw(rng, self.inputs);
        set_values(&self.weight, &Layout::SwapAxes01.to_canonical(&draw.weight.into_dyn()));
        if let (Some(b), Some(values)) = (&self.bias, draw.bias) {
            set_values(b, &values.into_dyn());
        }
        if let (Some(d), Some(seed)) = (&self.dropout, draw.dropout_seed) {
            d.reseed(seed);
        }
    }

    fn reseeds_in_book(&self) -> bool {
        true
    }

    fn dropouts(&self) -> Vec<(String, &Dropout)> {
        self.dropout.iter().map(|d| (String::new(), d)).collect()
    }
}

module_by_checked_forward!(Dense);
