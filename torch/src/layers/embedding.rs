//! Token and position embeddings on libtorch (nanoGPT's `wte` and `wpe`).

use scratch::rng::RandomState;
use scratch::spec::{EmbeddingSpec, PositionEmbeddingSpec};
use tch::{nn, Kind, Tensor};

use super::{module_by_checked_forward, parameter, set_values, Layer};
use crate::Result;

/// A token embedding (`nn.Embedding`): `(B, T)` indices to `(B, T, dim)`, parameter `weight (vocab,
/// dim)`, drawn as the from-scratch engine's [`Embedding`](scratch::transformer::Embedding) draws it.
/// The indices are `Int64`, as PyTorch takes them, or whole numbers in a float tensor (as the
/// from-scratch engine takes them), checked.
#[derive(Debug)]
pub struct Embedding {
    spec: EmbeddingSpec,
    weight: Tensor,
}

impl Embedding {
    /// The embedding `spec` describes, its `weight` under `path`, drawn from `rng`.
    ///
    /// # Errors
    /// Invalid sizes.
    pub fn new(path: &nn::Path<'_>, spec: EmbeddingSpec, rng: &mut RandomState) -> Result<Self> {
        spec.validate()?;
        let layer = Embedding { spec, weight: parameter(path, "weight", &[spec.vocab, spec.dim]) };
        layer.reinitialize(rng);
        Ok(layer)
    }

    /// `xs` as `Int64` indices, checking that float indices are whole numbers.
    fn indices(&self, xs: &Tensor) -> Result<Tensor> {
        if xs.kind() == Kind::Int64 {
            return Ok(xs.shallow_clone());
        }
        let whole = tch::no_grad(|| xs.eq_tensor(&xs.round()).all());
        if !bool::try_from(&whole).unwrap_or(false) {
            return Err(scratch::Error::InvalidArgument("token indices must be whole numbers".into()).into());
        }
        Ok(xs.to_kind(Kind::Int64))
    }
}

impl Layer for Embedding {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn f_forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        if xs.dim() != 2 {
            return Err(scratch::Error::shape("input", "(batch, time) token indices", xs.size()).into());
        }
        let indices = self.indices(xs)?;
        Tensor::f_embedding(&self.weight, &indices, -1, false, false).map_err(|e| {
            let what = format!("token indices must be in [0, {}): {e}", self.spec.vocab);
            scratch::Error::InvalidArgument(what).into()
        })
    }

    fn reinitialize(&self, rng: &mut RandomState) {
        set_values(&self.weight, &self.spec.draw(rng).into_dyn());
    }
}

module_by_checked_forward!(Embedding);

/// A learned position embedding added to its input (nanoGPT's `wpe`, added to the token embedding):
/// `(B, T, dim)` to `(B, T, dim) + weight[..T]`, parameter `weight (max_len, dim)`.
#[derive(Debug)]
pub struct PositionEmbedding {
    spec: PositionEmbeddingSpec,
    weight: Tensor,
}

impl PositionEmbedding {
    /// The position embedding `spec` describes, its `weight` under `path`, drawn from `rng`.
    ///
    /// # Errors
    /// Invalid sizes.
    pub fn new(path: &nn::Path<'_>, spec: PositionEmbeddingSpec, rng: &mut RandomState) -> Result<Self> {
        spec.validate()?;
        let layer = PositionEmbedding { spec, weight: parameter(path, "weight", &[spec.max_len, spec.dim]) };
        layer.reinitialize(rng);
        Ok(layer)
    }
}

impl Layer for PositionEmbedding {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn f_forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let size = xs.size();
        match size[..] {
            [_, t, c] if c == self.spec.dim as i64 && t > 0 && t <= self.spec.max_len as i64 => {
                Ok(xs + self.weight.narrow(0, 0, t))
            }
            _ => {
                let want = format!("(batch, at most {} positions, {})", self.spec.max_len, self.spec.dim);
                Err(scratch::Error::shape("input", want, size).into())
            }
        }
    }

    fn reinitialize(&self, rng: &mut RandomState) {
        set_values(&self.weight, &self.spec.draw(rng).into_dyn());
    }
}

module_by_checked_forward!(PositionEmbedding);
