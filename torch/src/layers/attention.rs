//! The core of causal multi-head self-attention on libtorch: `scaled_dot_product_attention`, or the
//! same computation written out where the dropout masks must be the from-scratch engine's.

use scratch::rng::RandomState;
use scratch::spec::AttentionSpec;
use tch::{Kind, Tensor};

use super::{module_by_checked_forward, Dropout, Layer};
use crate::Result;

/// `(B, T, 3C)` (q, k and v side by side, as `c_attn` gives them) to `(B, T, C)`: per head, `softmax(q
/// kᵀ / √hs)` over the earlier positions, dropout on those weights, times `v`; the heads merged side
/// by side (see [`AttentionSpec`]). No parameters.
///
/// It runs libtorch's `scaled_dot_product_attention` (`is_causal`), with its own dropout, unless the
/// dropout must draw the from-scratch engine's masks or one was injected
/// ([`Masks::Shared`](super::Masks)), or is the book's form: then it computes the same thing from
/// tensor operations, the masks applied by its [`Dropout`], named `attn_dropout` as nanoGPT's.
#[derive(Debug)]
pub struct CausalSelfAttention {
    spec: AttentionSpec,
    dropout: Option<Dropout>,
}

impl CausalSelfAttention {
    /// The attention `spec` describes, its dropout's shared stream seeded from `rng`.
    ///
    /// # Errors
    /// Invalid settings.
    pub fn new(spec: AttentionSpec, rng: &mut RandomState) -> Result<Self> {
        spec.validate()?;
        let dropout = spec.dropout.map(|(keep, style)| Dropout::new(keep, style, 0));
        let layer = CausalSelfAttention { spec, dropout };
        layer.reinitialize(rng);
        Ok(layer)
    }

    /// q, k, v as `(B, H, T, hs)`, and the width `C`.
    fn heads(&self, xs: &Tensor) -> Result<(Tensor, Tensor, Tensor, i64)> {
        let size = xs.size();
        let (b, t, width) = match size[..] {
            [b, t, w] if t > 0 => (b, t, w),
            _ => return Err(scratch::Error::shape("input", "(batch, time, 3C)", size).into()),
        };
        let c = self.spec.output_width(width as usize).ok_or_else(|| {
            let want = format!("(batch, time, 3C) with C a multiple of {} heads", self.spec.heads);
            scratch::Error::shape("input", want, &size)
        })? as i64;
        let (h, hs) = (self.spec.heads as i64, c / self.spec.heads as i64);
        let split = |i: i64| xs.narrow(2, i * c, c).reshape([b, t, h, hs]).transpose(1, 2);
        Ok((split(0), split(1), split(2), c))
    }
}

impl Layer for CausalSelfAttention {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (q, k, v, c) = self.heads(xs)?;
        let (b, t) = (xs.size()[0], xs.size()[1]);
        let explicit = self.dropout.as_ref().is_some_and(|d| d.needs_explicit(train));
        let y = if explicit {
            let hs = (c / self.spec.heads as i64) as f64;
            let causal = Tensor::ones([t, t], (Kind::Bool, xs.device())).triu(1);
            let scores = q.matmul(&k.transpose(-2, -1)) / hs.sqrt();
            let att = scores.masked_fill(&causal, f64::NEG_INFINITY).softmax(-1, scores.kind());
            let att = match &self.dropout {
                Some(d) => d.apply(&att, train)?,
                None => att,
            };
            att.matmul(&v)
        } else {
            let p = match (&self.dropout, train) {
                (Some(d), true) => 1.0 - d.keep(),
                _ => 0.0,
            };
            Tensor::f_scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, p, true, None, false)?
        };
        Ok(y.transpose(1, 2).reshape([b, t, c]))
    }

    fn reinitialize(&self, rng: &mut RandomState) {
        if let (Some(d), Some(seed)) = (&self.dropout, self.spec.draw(rng)) {
            d.reseed(seed);
        }
    }

    fn dropouts(&self) -> Vec<(String, &Dropout)> {
        self.dropout.iter().map(|d| ("attn_dropout".to_string(), d)).collect()
    }
}

module_by_checked_forward!(CausalSelfAttention);
