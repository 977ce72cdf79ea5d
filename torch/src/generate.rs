//! Generating text with a GPT on libtorch one token at a time, with a key-value cache: the
//! counterpart of the from-scratch engine's [`scratch::transformer::Generator`], the same steps on
//! tensors (the new position's query against every cached key through
//! `scaled_dot_product_attention`), drawing with the same [`Sampling`] from the same generator.

use std::collections::HashMap;

use scratch::rng::RandomState;
use scratch::rnn::Sampling;
use scratch::spec::gpt::{not_a_gpt, GptConfig, GptParts};
use tch::Tensor;

use crate::layers::Layer;
use crate::{Net, Result};

/// A GPT (a [`Net`] built from [`gpt`](scratch::spec::gpt::gpt)) generating one token at a time from
/// its key-value cache, on the network's device.
pub struct Generator<'a> {
    wte: Tensor,
    wpe: Tensor,
    parts: GptParts<&'a dyn Layer>,
    heads: i64,
    /// Each block's cached keys and values, `(1, heads, positions, hs)`.
    cache: Vec<Option<(Tensor, Tensor)>>,
    tokens: Vec<usize>,
}

impl<'a> Generator<'a> {
    /// A generator over `net`, which [`gpt`](scratch::spec::gpt::gpt)`(config)` describes, its cache
    /// empty.
    ///
    /// # Errors
    /// A network without the layers and parameters of that description.
    pub fn new(net: &'a Net, config: &GptConfig) -> Result<Self> {
        let leaves: HashMap<String, &'a dyn Layer> = net.leaves().into_iter().collect();
        let parts = GptParts::find(config, |path| leaves.get(path).copied())?;
        let params: HashMap<String, Tensor> = net.named_parameters().into_iter().collect();
        let matrix = |name: &str, (rows, columns): (usize, usize)| {
            let t = params.get(name).ok_or_else(|| not_a_gpt(&format!("no parameter {name}")))?;
            if t.size() != [rows as i64, columns as i64] {
                return Err(not_a_gpt(&format!("{name} is not ({rows}, {columns})")));
            }
            Ok(t.detach())
        };
        let [(wte, wte_shape), (wpe, wpe_shape)] = config.embedding_tables();
        Ok(Generator {
            wte: matrix(wte, wte_shape)?,
            wpe: matrix(wpe, wpe_shape)?,
            parts,
            heads: config.heads as i64,
            cache: (0..config.layers).map(|_| None).collect(),
            tokens: Vec::new(),
        })
    }

    /// Forgets every cached position.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.cache.iter_mut().for_each(|c| *c = None);
    }

    /// The tokens the cache holds.
    pub fn tokens(&self) -> &[usize] {
        &self.tokens
    }

    /// Feeds `token` at the next position and returns the logits of the token after it, `(vocab,)` on
    /// the network's device. When the context is full, the cache is first rebuilt from its last half.
    ///
    /// # Errors
    /// A token outside the vocabulary.
    pub fn push(&mut self, token: usize) -> Result<Tensor> {
        let vocab = self.wte.size()[0] as usize;
        if token >= vocab {
            let what = format!("token {token} is outside the vocabulary of {vocab}");
            return Err(scratch::Error::InvalidArgument(what).into());
        }
        let context = self.wpe.size()[0] as usize;
        if self.tokens.len() == context {
            let kept = self.tokens[context - context / 2..].to_vec();
            self.reset();
            for t in kept {
                drop(self.step(t)?);
            }
        }
        self.step(token)
    }

    /// One position through every layer, appending to the caches.
    fn step(&mut self, token: usize) -> Result<Tensor> {
        tch::no_grad(|| {
            let c = self.wte.size()[1];
            let (h, hs) = (self.heads, c / self.heads);
            let mut x = (self.wte.get(token as i64) + self.wpe.get(self.tokens.len() as i64)).view([1, 1, c]);
            for (b, cache) in self.parts.blocks.iter().zip(&mut self.cache) {
                let qkv = b.c_attn.f_forward_t(&b.ln_1.f_forward_t(&x, false)?, false)?;
                let part = |i: i64| qkv.narrow(2, i * c, c).view([1, 1, h, hs]).transpose(1, 2);
                let (q, k, v) = (part(0), part(1), part(2));
                let (keys, values) = match cache.take() {
                    Some((keys, values)) => (Tensor::cat(&[keys, k], 2), Tensor::cat(&[values, v], 2)),
                    None => (k, v),
                };
                let y = Tensor::f_scaled_dot_product_attention(
                    &q,
                    &keys,
                    &values,
                    None::<Tensor>,
                    0.0,
                    false,
                    None,
                    false,
                )?;
                *cache = Some((keys, values));
                x = &x + b.attn_proj.f_forward_t(&y.transpose(1, 2).reshape([1, 1, c]), false)?;
                let m = b.mlp_proj.f_forward_t(&b.c_fc.f_forward_t(&b.ln_2.f_forward_t(&x, false)?, false)?, false)?;
                x = &x + m;
            }
            let logits = self.parts.lm_head.f_forward_t(&self.parts.ln_f.f_forward_t(&x, false)?, false)?;
            self.tokens.push(token);
            Ok(logits.view([-1]))
        })
    }

    /// Feeds `prompt`, then draws `count` tokens one at a time with `sampling` (on the host, from the
    /// numpy-compatible generator, as the from-scratch engine draws); returns the tokens drawn.
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
            let what = "generation needs a prompt of at least one token".to_string();
            return Err(scratch::Error::InvalidArgument(what).into());
        };
        for &t in first {
            drop(self.push(t)?);
        }
        let mut logits = self.push(last)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let scores = crate::sync::read(&logits)?;
            let next = sampling.sample(ndarray::ArrayView1::from(&scores), rng)?;
            out.push(next);
            logits = self.push(next)?;
        }
        Ok(out)
    }
}
