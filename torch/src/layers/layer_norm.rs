//! Layer normalisation on libtorch (`nn.LayerNorm`, and nanoGPT's without a bias).

use scratch::rng::RandomState;
use scratch::spec::LayerNormSpec;
use tch::{nn, Tensor};

use super::{module_by_checked_forward, parameter, set_values, Layer};
use crate::Result;

/// `y = (x − mean) / sqrt(var + eps) · weight + bias` over the last axis (libtorch's `layer_norm`),
/// parameters `weight (dim,)` and `bias (dim,)` as the description has them.
#[derive(Debug)]
pub struct LayerNorm {
    spec: LayerNormSpec,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
}

impl LayerNorm {
    /// The normalisation `spec` describes, its parameters under `path` (weight 1, bias 0).
    ///
    /// # Errors
    /// Invalid settings.
    pub fn new(path: &nn::Path<'_>, spec: LayerNormSpec) -> Result<Self> {
        spec.validate()?;
        let weight = spec.affine.then(|| parameter(path, "weight", &[spec.dim]));
        let bias = spec.has_bias().then(|| parameter(path, "bias", &[spec.dim]));
        let layer = LayerNorm { spec, weight, bias };
        layer.reinitialize(&mut RandomState::new(0));
        Ok(layer)
    }
}

impl Layer for LayerNorm {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn f_forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        if xs.size().last() != Some(&(self.spec.dim as i64)) {
            return Err(scratch::Error::shape("input", format!("(…, {})", self.spec.dim), xs.size()).into());
        }
        Ok(xs.f_layer_norm([self.spec.dim as i64], self.weight.as_ref(), self.bias.as_ref(), self.spec.eps, true)?)
    }

    /// Sets the weight to 1 and the bias to 0 (nothing is drawn).
    fn reinitialize(&self, _rng: &mut RandomState) {
        let draw = self.spec.draw();
        if let (Some(w), Some(v)) = (&self.weight, draw.weight) {
            set_values(w, &v.into_dyn());
        }
        if let (Some(b), Some(v)) = (&self.bias, draw.bias) {
            set_values(b, &v.into_dyn());
        }
    }
}

module_by_checked_forward!(LayerNorm);
