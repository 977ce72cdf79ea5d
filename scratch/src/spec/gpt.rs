//! Chapter 8, beyond the book: a GPT, described the way nanoGPT's `GPT` module is written, so that its
//! parameters have nanoGPT's names (`transformer.wte.weight`, `transformer.h.0.attn.c_attn.weight`,
//! `lm_head.weight`, ...) and a `state_dict` of that module loads with no renaming.
//!
//! ```text
//! transformer.wte    Embedding(vocab, C)                 token embedding (its weight tied to lm_head's)
//! transformer.wpe    PositionEmbedding(context, C)       learned positions, added
//! transformer.drop   Dropout
//! transformer.h.i    x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))      for i in 0..layers
//!     attn           c_attn Dense(C -> 3C), causal self-attention (attn_dropout), c_proj Dense(C -> C), resid_dropout
//!     mlp            c_fc Dense(C -> 4C, gelu), c_proj Dense(4C -> C), dropout
//! transformer.ln_f   LayerNorm(C)
//! lm_head            Dense(C -> vocab, no bias) = wteᵀ
//! ```
//!
//! Weights start as GPT-2's: normal with standard deviation 0.02, biases zero, the two projections into
//! the residual stream (`c_proj`) scaled down to `0.02 / √(2·layers)`, layer normalisations at 1 and 0.

use super::{
    Activation, AttentionSpec, DenseSpec, DropoutSpec, EmbeddingSpec, LayerNormSpec, LayerSpec, Module, NetSpec,
    PositionEmbeddingSpec, WeightInit,
};
use crate::ops::GeluApproximation;
use crate::{Error, Result};

/// The sizes of a GPT.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GptConfig {
    /// Distinct tokens (characters).
    pub vocab: usize,
    /// The longest context, in tokens (nanoGPT's `block_size`).
    pub context: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// The width of the residual stream, `C` (nanoGPT's `n_embd`).
    pub width: usize,
    /// Dropout probability (PyTorch's `p`) everywhere nanoGPT has dropout; 0 leaves the dropout layers
    /// out.
    pub dropout: f64,
    /// Biases in the dense layers and layer normalisations.
    pub bias: bool,
}

impl GptConfig {
    /// The token and position embedding tables of [`gpt`]`(self)`: their parameters' names and shapes,
    /// `(vocab, C)` and `(context, C)`.
    pub fn embedding_tables(&self) -> [(&'static str, (usize, usize)); 2] {
        [("transformer.wte.weight", (self.vocab, self.width)), ("transformer.wpe.weight", (self.context, self.width))]
    }

    /// The small model nanoGPT trains on Shakespeare's characters on a CPU: 4 blocks of 4 heads, width
    /// 128, context 64, no dropout, no biases.
    pub fn cpu(vocab: usize) -> Self {
        GptConfig { vocab, context: 64, layers: 4, heads: 4, width: 128, dropout: 0.0, bias: false }
    }

    /// nanoGPT's Shakespeare-character model for a GPU: 6 blocks of 6 heads, width 384, context 256,
    /// dropout 0.2, no biases.
    pub fn gpu(vocab: usize) -> Self {
        GptConfig { vocab, context: 256, layers: 6, heads: 6, width: 384, dropout: 0.2, bias: false }
    }
}

/// The GPT `config` describes (see the [module documentation](self)), on inputs of `config.context`
/// token indices; its output is the logits of the next token at every position, `[context, vocab]`.
///
/// ```
/// use scratch::spec::gpt::{gpt, GptConfig};
///
/// let spec = gpt(&GptConfig::cpu(65));
/// assert_eq!(spec.output_shape()?, vec![64, 65]);
/// let names: Vec<String> = spec.parameter_shapes()?.into_iter().map(|(n, _)| n).collect();
/// assert!(names.contains(&"transformer.h.3.attn.c_attn.weight".to_string()));
/// assert_eq!(spec.num_parameters()?, 65 * 128 + 64 * 128 + 4 * (12 * 128 * 128 + 2 * 128) + 128);
/// # Ok::<(), scratch::Error>(())
/// ```
pub fn gpt(config: &GptConfig) -> NetSpec {
    let GptConfig { vocab, context, layers, heads, width, dropout, bias } = *config;
    let normal = WeightInit::Normal { std: 0.02 };
    let projection = WeightInit::Normal { std: 0.02 / (2.0 * layers as f64).sqrt() };
    let keep = 1.0 - dropout;
    let dense = |n, init| DenseSpec::new(n).bias(bias).init(init);
    let norm = || LayerSpec::LayerNorm(LayerNormSpec::new(width).bias(bias));
    let with_dropout = |block: Module, name: &str| {
        if dropout > 0.0 {
            block.child(name, DropoutSpec::keep(keep))
        } else {
            block
        }
    };
    let core = if dropout > 0.0 { AttentionSpec::new(heads).dropout(keep) } else { AttentionSpec::new(heads) };
    let attn = Module::block()
        .child("c_attn", dense(3 * width, normal))
        .inline(LayerSpec::Attention(core))
        .child("c_proj", dense(width, projection));
    let gelu = Activation::Gelu(GeluApproximation::Exact);
    let mlp = Module::block()
        .child("c_fc", dense(4 * width, normal).activation(gelu))
        .child("c_proj", dense(width, projection));
    let block = Module::block()
        .inline(Module::residual(
            Module::block().child("ln_1", norm()).child("attn", with_dropout(attn, "resid_dropout")),
        ))
        .inline(Module::residual(Module::block().child("ln_2", norm()).child("mlp", with_dropout(mlp, "dropout"))));
    let embeddings = Module::block()
        .child("wte", LayerSpec::Embedding(EmbeddingSpec::new(vocab, width).std(0.02)))
        .child("wpe", LayerSpec::PositionEmbedding(PositionEmbeddingSpec::new(context, width).std(0.02)));
    let transformer = with_dropout(embeddings, "drop").child("h", Module::repeat(layers, block)).child("ln_f", norm());
    let net = Module::block()
        .child("transformer", transformer)
        .child("lm_head", DenseSpec::new(vocab).bias(false).init(normal));
    NetSpec::from_module(&[context], net).tie("lm_head.weight", "transformer.wte.weight")
}

/// The layers of one transformer block of [`gpt`], by their nanoGPT names (`transformer.h.{i}.ln_1`,
/// `.attn.c_attn`, `.attn.c_proj`, `.ln_2`, `.mlp.c_fc`, `.mlp.c_proj`).
#[derive(Debug)]
pub struct GptBlock<L> {
    /// The normalisation before attention.
    pub ln_1: L,
    /// The query, key and value projection.
    pub c_attn: L,
    /// The projection of the heads back into the residual stream.
    pub attn_proj: L,
    /// The normalisation before the MLP.
    pub ln_2: L,
    /// The MLP's widening layer (with its GELU).
    pub c_fc: L,
    /// The MLP's projection back into the residual stream.
    pub mlp_proj: L,
}

/// The layers a key-value-cache generator runs one position at a time, found in a network of either
/// engine that [`gpt`] describes; the embedding tables are parameters
/// ([`GptConfig::embedding_tables`]).
#[derive(Debug)]
pub struct GptParts<L> {
    /// Every block's layers, in order.
    pub blocks: Vec<GptBlock<L>>,
    /// The final normalisation.
    pub ln_f: L,
    /// The projection onto the vocabulary.
    pub lm_head: L,
}

impl<L> GptParts<L> {
    /// Every part of a network that [`gpt`]`(config)` describes, `layer(path)` answering the layer at a
    /// path (`None` where there is none).
    ///
    /// # Errors
    /// A missing layer, named (see [`not_a_gpt`]).
    pub fn find(config: &GptConfig, layer: impl Fn(&str) -> Option<L>) -> Result<Self> {
        let at = |path: String| layer(&path).ok_or_else(|| not_a_gpt(&format!("no layer {path}")));
        let blocks = (0..config.layers)
            .map(|i| {
                let part = |name: &str| at(format!("transformer.h.{i}.{name}"));
                Ok(GptBlock {
                    ln_1: part("ln_1")?,
                    c_attn: part("attn.c_attn")?,
                    attn_proj: part("attn.c_proj")?,
                    ln_2: part("ln_2")?,
                    c_fc: part("mlp.c_fc")?,
                    mlp_proj: part("mlp.c_proj")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GptParts { blocks, ln_f: at("transformer.ln_f".into())?, lm_head: at("lm_head".into())? })
    }
}

/// The error for a network that is not what [`gpt`] describes for a configuration.
pub fn not_a_gpt(what: &str) -> Error {
    Error::InvalidArgument(format!("not a GPT as spec::gpt::gpt describes it for its configuration: {what}"))
}
