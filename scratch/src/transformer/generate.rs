//! Generating text with a GPT one token at a time, with a key-value cache: each block keeps the keys
//! and values of the positions seen so far, so that a new token costs one position of every layer
//! instead of a pass over the whole context.
//!
//! ```text
//! x = wte[token] + wpe[position]                                   (1, 1, C)
//! per block:  q, k, v = c_attn(ln_1(x));  append k, v to the block's cache
//!             y_h = softmax(q_h · [k_h of every cached position] / √hs) · [v_h of every cached position]
//!             x = x + c_proj(y);  x = x + mlp(ln_2(x))
//! logits = lm_head(ln_f(x))                                         (vocab,)
//! ```
//!
//! The position embedding is absolute, so a context that outgrows the model's is cut: the cache is
//! rebuilt from the last half of the context (one position at a time), and generation goes on from
//! there. Within the context, the logits are those of the whole network on the same tokens (tested in the crate's suite, `generation.rs`).

use std::collections::HashMap;

use ndarray::{Array1, ArrayD, ArrayView2, Ix2, IxDyn};

use crate::layers::Layer;
use crate::network::NeuralNetwork;
use crate::rng::RandomState;
use crate::rnn::Sampling;
use crate::spec::gpt::{not_a_gpt, GptConfig, GptParts};
use crate::{Error, Float, Result};

/// A GPT (a network built from [`gpt`](crate::spec::gpt::gpt)) generating one token at a time from
/// its key-value cache. It borrows the network: its weights are the network's.
pub struct Generator<'a, F: Float> {
    wte: ArrayView2<'a, F>,
    wpe: ArrayView2<'a, F>,
    parts: GptParts<&'a dyn Layer<F>>,
    heads: usize,
    /// Each block's cached keys and values, `(positions, C)` row after row.
    cache: Vec<(Vec<F>, Vec<F>)>,
    /// The tokens the cache holds, in order.
    tokens: Vec<usize>,
}

/// A parameter of `net` as a matrix of `shape`, or an error naming it.
fn matrix<'a, F: Float>(net: &'a NeuralNetwork<F>, name: &str, shape: (usize, usize)) -> Result<ArrayView2<'a, F>> {
    let param = net.params().into_iter().find(|(n, _)| n == name).map(|(_, p)| p);
    let value = param.ok_or_else(|| not_a_gpt(&format!("no parameter {name}")))?.value.view();
    value
        .into_dimensionality::<Ix2>()
        .ok()
        .filter(|m| m.dim() == shape)
        .ok_or_else(|| not_a_gpt(&format!("{name} is not ({}, {})", shape.0, shape.1)))
}

impl<'a, F: Float> Generator<'a, F> {
    /// A generator over `net`, which [`gpt`](crate::spec::gpt::gpt)`(config)` describes, its cache empty.
    ///
    /// # Errors
    /// A network without the layers and parameters of that description.
    pub fn new(net: &'a NeuralNetwork<F>, config: &GptConfig) -> Result<Self> {
        let leaves: HashMap<String, &'a dyn Layer<F>> = net.leaves().into_iter().collect();
        let parts = GptParts::find(config, |path| leaves.get(path).copied())?;
        let [(wte, wte_shape), (wpe, wpe_shape)] = config.embedding_tables();
        Ok(Generator {
            wte: matrix(net, wte, wte_shape)?,
            wpe: matrix(net, wpe, wpe_shape)?,
            parts,
            heads: config.heads,
            cache: vec![(Vec::new(), Vec::new()); config.layers],
            tokens: Vec::new(),
        })
    }

    /// Forgets every cached position.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.cache.iter_mut().for_each(|(k, v)| {
            k.clear();
            v.clear();
        });
    }

    /// The tokens the cache holds.
    pub fn tokens(&self) -> &[usize] {
        &self.tokens
    }

    /// Feeds `token` at the next position and returns the logits of the token after it, `(vocab,)`.
    /// When the context is full, the cache is first rebuilt from its last half.
    ///
    /// # Errors
    /// A token outside the vocabulary.
    pub fn push(&mut self, token: usize) -> Result<Array1<F>> {
        if token >= self.wte.nrows() {
            return Err(Error::InvalidArgument(format!(
                "token {token} is outside the vocabulary of {}",
                self.wte.nrows()
            )));
        }
        let context = self.wpe.nrows();
        if self.tokens.len() == context {
            let kept = self.tokens[context - context / 2..].to_vec();
            self.reset();
            for t in kept {
                self.step(t)?;
            }
        }
        self.step(token)
    }

    /// One position through every layer, appending to the caches.
    fn step(&mut self, token: usize) -> Result<Array1<F>> {
        let position = self.tokens.len();
        let row = &self.wte.row(token) + &self.wpe.row(position);
        let mut x = row.into_shape_with_order(IxDyn(&[1, 1, self.wte.ncols()])).expect("one row");
        for (i, b) in self.parts.blocks.iter().enumerate() {
            let qkv = b.c_attn.infer(b.ln_1.infer(x.clone())?)?;
            let y = attend(&mut self.cache[i], qkv, self.heads);
            x = x + b.attn_proj.infer(y)?;
            let h = b.mlp_proj.infer(b.c_fc.infer(b.ln_2.infer(x.clone())?)?)?;
            x = x + h;
        }
        let logits = self.parts.lm_head.infer(self.parts.ln_f.infer(x)?)?;
        self.tokens.push(token);
        let vocab = logits.len();
        Ok(logits.into_shape_with_order(vocab).expect("one position's logits"))
    }

    /// Feeds `prompt`, then draws `count` tokens one at a time with `sampling`; returns the tokens
    /// drawn.
    ///
    /// # Errors
    /// An empty prompt, a token outside the vocabulary, or invalid sampling settings.
    pub fn generate(
        &mut self,
        prompt: &[usize],
        count: usize,
        sampling: &Sampling,
        rng: &mut RandomState,
    ) -> Result<Vec<usize>> {
        sampling.validate()?;
        let Some((&last, first)) = prompt.split_last() else {
            return Err(Error::InvalidArgument("generation needs a prompt of at least one token".into()));
        };
        for &t in first {
            self.push(t)?;
        }
        let mut logits = self.push(last)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let next = sampling.sample(logits.view(), rng)?;
            out.push(next);
            logits = self.push(next)?;
        }
        Ok(out)
    }
}

/// One position's attention over a block's cache: `qkv` `(1, 1, 3C)` (its k and v appended to the
/// cache first) to `(1, 1, C)`, each head's query against every cached key of that head.
fn attend<F: Float>((keys, values): &mut (Vec<F>, Vec<F>), qkv: ArrayD<F>, heads: usize) -> ArrayD<F> {
    let qkv = qkv.as_standard_layout();
    let qkv = qkv.as_slice().expect("standard layout");
    let c = qkv.len() / 3;
    let (q, k, v) = (&qkv[..c], &qkv[c..2 * c], &qkv[2 * c..]);
    keys.extend_from_slice(k);
    values.extend_from_slice(v);
    let positions = keys.len() / c;
    let hs = c / heads;
    let scale = F::cast(1.0 / (hs as f64).sqrt());
    let mut y = vec![F::zero(); c];
    let mut scores = vec![F::zero(); positions];
    for h in 0..heads {
        let head = h * hs..(h + 1) * hs;
        for (j, s) in scores.iter_mut().enumerate() {
            let key = &keys[j * c..(j + 1) * c][head.clone()];
            *s = q[head.clone()].iter().zip(key).fold(F::zero(), |acc, (&a, &b)| acc + a * b) * scale;
        }
        let max = scores.iter().copied().fold(F::neg_infinity(), F::max);
        scores.iter_mut().for_each(|s| *s = (*s - max).exp());
        let sum = scores.iter().copied().fold(F::zero(), |a, b| a + b);
        for (j, &p) in scores.iter().enumerate() {
            let value = &values[j * c..(j + 1) * c][head.clone()];
            y[head.clone()].iter_mut().zip(value).for_each(|(o, &v)| *o += p / sum * v);
        }
    }
    ArrayD::from_shape_vec(IxDyn(&[1, 1, c]), y).expect("C values")
}
