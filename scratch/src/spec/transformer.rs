//! What the building blocks of a GPT are (chapter 8, beyond the book): token and position
//! embeddings, layer normalisation and the core of causal self-attention, named and laid out as
//! nanoGPT's `GPT` module writes them (`wte`, `wpe`, `ln_1`, `attn`), so that both engines draw the
//! same initial weights from one description.
//!
//! Shapes are given without the batch axis, as [`LayerSpec::output_shape`](super::LayerSpec::output_shape)
//! takes them: a sequence of `T` positions is `[T]` (token indices) or `[T, C]` (vectors).

use ndarray::{Array1, Array2};

use crate::ops::DropoutStyle;
use crate::rng::RandomState;
use crate::transformer::check_length;
use crate::{Error, Result};

/// Checks that `std` is a usable standard deviation (finite, not negative).
fn validate_std(layer: &str, std: f64) -> Result<()> {
    if std.is_finite() && std >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{layer}: the standard deviation must be finite and not negative, got {std}"
        )))
    }
}

/// Checks that a `rows × dim` table is not empty and that it fits in memory (see [`crate::memory`]).
fn validate_table(layer: &str, rows_name: &str, rows: usize, dim: usize) -> Result<()> {
    if rows == 0 || dim == 0 {
        return Err(Error::InvalidArgument(format!(
            "{layer} needs at least one row and one column, got {rows_name} {rows}, dim {dim}"
        )));
    }
    crate::memory::check_parameters(&[&[rows, dim]])
}

/// A token embedding (PyTorch's `nn.Embedding`, nanoGPT's `wte`): each index `i` in `[0, vocab)` of
/// the input becomes row `i` of the weight.
///
/// ```text
/// input (B, T) of indices, weight (vocab, dim)  ->  output (B, T, dim)
/// ```
///
/// Parameter: `weight (vocab, dim)`, drawn `N(0, std²)` (PyTorch's default `std` is 1; nanoGPT
/// re-draws it with 0.02).
///
/// ```
/// use scratch::spec::EmbeddingSpec;
///
/// let wte = EmbeddingSpec::new(65, 128).std(0.02);
/// assert_eq!(wte.describe(), "Embedding(65, 128)");
/// assert_eq!(wte.output_shape(&[64])?, vec![64, 128]);
/// # Ok::<(), scratch::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingSpec {
    /// The number of distinct indices (rows of the weight).
    pub vocab: usize,
    /// The width of an embedding (columns of the weight).
    pub dim: usize,
    /// The standard deviation of the initial weight.
    pub std: f64,
}

impl EmbeddingSpec {
    /// `vocab` embeddings of width `dim`, drawn with standard deviation 1 (PyTorch's default).
    pub fn new(vocab: usize, dim: usize) -> Self {
        EmbeddingSpec { vocab, dim, std: 1.0 }
    }

    /// With initial weights drawn with standard deviation `std`.
    pub fn std(mut self, std: f64) -> Self {
        self.std = std;
        self
    }

    /// Checks the sizes and the standard deviation.
    ///
    /// # Errors
    /// A zero size, a table that does not fit in memory, or a negative or non-finite `std`.
    pub fn validate(&self) -> Result<()> {
        validate_table("Embedding", "vocab", self.vocab, self.dim)?;
        validate_std("Embedding", self.std)
    }

    /// A one-line description, as PyTorch prints the module: `Embedding(65, 128)`.
    pub fn describe(&self) -> String {
        format!("Embedding({}, {})", self.vocab, self.dim)
    }

    /// The output shape for indices of `shape` (without the batch axis): `shape` with `dim` appended.
    ///
    /// # Errors
    /// Invalid settings, or an empty shape (a sequence needs its time axis).
    pub fn output_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.validate()?;
        if shape.is_empty() {
            return Err(Error::shape("Embedding input", "[time] (token indices)", shape));
        }
        Ok(shape.iter().copied().chain([self.dim]).collect())
    }

    /// Draws the weight `(vocab, dim)` from `N(0, std²)`, in row-major order.
    pub fn draw(&self, rng: &mut RandomState) -> Array2<f64> {
        rng.normal(0.0, self.std, (self.vocab, self.dim))
    }
}

/// A learned position embedding (nanoGPT's `wpe`), added to its input: position `t` of every
/// sequence gets row `t` of the weight.
///
/// ```text
/// input (B, T, dim), weight (max_len, dim)  ->  output (B, T, dim) = input + weight[..T]   (T ≤ max_len)
/// ```
///
/// Parameter: `weight (max_len, dim)`, drawn `N(0, std²)` (nanoGPT re-draws it with 0.02).
///
/// ```
/// use scratch::spec::PositionEmbeddingSpec;
///
/// let wpe = PositionEmbeddingSpec::new(256, 128).std(0.02);
/// assert_eq!(wpe.output_shape(&[64, 128])?, vec![64, 128]);
/// assert!(wpe.output_shape(&[300, 128]).unwrap_err().to_string().contains("256"));
/// # Ok::<(), scratch::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PositionEmbeddingSpec {
    /// The longest sequence (rows of the weight): nanoGPT's `block_size`.
    pub max_len: usize,
    /// The width of an embedding.
    pub dim: usize,
    /// The standard deviation of the initial weight.
    pub std: f64,
}

impl PositionEmbeddingSpec {
    /// Positions `0..max_len` embedded in width `dim`, drawn with standard deviation 1 (PyTorch's
    /// `nn.Embedding` default).
    pub fn new(max_len: usize, dim: usize) -> Self {
        PositionEmbeddingSpec { max_len, dim, std: 1.0 }
    }

    /// With initial weights drawn with standard deviation `std`.
    pub fn std(mut self, std: f64) -> Self {
        self.std = std;
        self
    }

    /// Checks the sizes and the standard deviation.
    ///
    /// # Errors
    /// A zero size, a table that does not fit in memory, or a negative or non-finite `std`.
    pub fn validate(&self) -> Result<()> {
        validate_table("PositionEmbedding", "max_len", self.max_len, self.dim)?;
        validate_std("PositionEmbedding", self.std)
    }

    /// A one-line description: `PositionEmbedding(256, 128)`.
    pub fn describe(&self) -> String {
        format!("PositionEmbedding({}, {})", self.max_len, self.dim)
    }

    /// The output shape for an input of `shape` (without the batch axis): `[T, dim]` itself.
    ///
    /// # Errors
    /// Invalid settings, another shape, or a sequence longer than `max_len`.
    pub fn output_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.validate()?;
        match *shape {
            [t, dim] if dim == self.dim && t > 0 => {
                check_length(t, self.max_len)?;
                Ok(shape.to_vec())
            }
            _ => Err(Error::shape("PositionEmbedding input", format!("[time, {}]", self.dim), shape)),
        }
    }

    /// Draws the weight `(max_len, dim)` from `N(0, std²)`, in row-major order.
    pub fn draw(&self, rng: &mut RandomState) -> Array2<f64> {
        rng.normal(0.0, self.std, (self.max_len, self.dim))
    }
}

/// Layer normalisation over the last axis (PyTorch's `nn.LayerNorm(dim)`, nanoGPT's `LayerNorm`
/// with its optional bias):
///
/// ```text
/// input (…, dim)  ->  output (…, dim)
/// y = (x − mean(x)) / sqrt(var(x) + eps) ⊙ weight + bias     (mean and biased variance over the last axis)
/// ```
///
/// Parameters (with `affine`): `weight (dim,)`, starting at 1, and (with `bias` too) `bias (dim,)`,
/// starting at 0.
///
/// ```
/// use scratch::spec::LayerNormSpec;
///
/// let ln = LayerNormSpec::new(128).bias(false);
/// assert_eq!(ln.describe(), "LayerNorm(128, eps 0.00001, no bias)");
/// assert_eq!(ln.output_shape(&[64, 128])?, vec![64, 128]);
/// # Ok::<(), scratch::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormSpec {
    /// The width of the normalised axis.
    pub dim: usize,
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Whether the normalised values are scaled by a learned `weight` (PyTorch's
    /// `elementwise_affine`).
    pub affine: bool,
    /// Whether a learned `bias` is added too (only with `affine`; nanoGPT's `bias=False` drops it).
    pub bias: bool,
}

/// The initial values of a layer normalisation ([`LayerNormSpec::draw`]).
pub struct LayerNormDraw {
    /// `weight (dim,)`, ones; `None` without `affine`.
    pub weight: Option<Array1<f64>>,
    /// `bias (dim,)`, zeros; `None` without `affine` or without `bias`.
    pub bias: Option<Array1<f64>>,
}

impl LayerNormSpec {
    /// Normalisation over `dim` values with PyTorch's defaults: `eps` 1e-5, a weight and a bias.
    pub fn new(dim: usize) -> Self {
        LayerNormSpec { dim, eps: 1e-5, affine: true, bias: true }
    }

    /// With `eps` added to the variance.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// With or without the learned weight and bias.
    pub fn affine(mut self, affine: bool) -> Self {
        self.affine = affine;
        self
    }

    /// With or without the learned bias (the weight stays).
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Whether the layer has a `bias` parameter.
    pub fn has_bias(&self) -> bool {
        self.affine && self.bias
    }

    /// Checks the width and `eps`.
    ///
    /// # Errors
    /// A zero width, or an `eps` that is negative or not finite.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(Error::InvalidArgument("LayerNorm needs at least one value to normalise, got dim 0".into()));
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "LayerNorm: eps must be finite and not negative, got {}",
                self.eps
            )));
        }
        Ok(())
    }

    /// A one-line description: `LayerNorm(128, eps 0.00001)`, with `no bias` or `no affine` when
    /// those are off.
    pub fn describe(&self) -> String {
        let extra = match (self.affine, self.bias) {
            (false, _) => ", no affine",
            (true, false) => ", no bias",
            (true, true) => "",
        };
        format!("LayerNorm({}, eps {}{extra})", self.dim, self.eps)
    }

    /// The output shape for an input of `shape` (without the batch axis): `shape` itself, whose last
    /// axis must be `dim`.
    ///
    /// # Errors
    /// Invalid settings, or a last axis of another size.
    pub fn output_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.validate()?;
        match shape.last() {
            Some(&d) if d == self.dim => Ok(shape.to_vec()),
            _ => Err(Error::shape("LayerNorm input", format!("[…, {}]", self.dim), shape)),
        }
    }

    /// The initial values: the weight at 1 and the bias at 0 (nothing is random; the name is that of
    /// the other descriptions' initial values).
    pub fn draw(&self) -> LayerNormDraw {
        LayerNormDraw {
            weight: self.affine.then(|| Array1::ones(self.dim)),
            bias: self.has_bias().then(|| Array1::zeros(self.dim)),
        }
    }
}

/// The parameter-free core of multi-head causal self-attention (what nanoGPT's
/// `CausalSelfAttention` computes between its two linear layers `c_attn` and `c_proj`):
///
/// ```text
/// input (B, T, 3C) = [q | k | v] (c_attn's output),  C = heads · hs   ->  output (B, T, C)
/// per head h (columns h·hs..(h+1)·hs of each part):
///     att = softmax(q kᵀ / √hs, positions j > i masked),  att = dropout(att),  y = att v
/// ```
///
/// The heads' outputs are merged back side by side, head `h` in columns `h·hs..(h+1)·hs`. There are
/// no parameters; dropout on the attention weights, as nanoGPT's `attn_dropout`, is optional.
///
/// ```
/// use scratch::spec::AttentionSpec;
///
/// let attn = AttentionSpec::new(4).dropout(0.9);
/// assert_eq!(attn.describe(), "CausalSelfAttention(4 heads, dropout keep 0.9)");
/// assert_eq!(attn.output_shape(&[64, 384])?, vec![64, 128]);
/// assert!(attn.output_shape(&[64, 381]).is_err());
/// # Ok::<(), scratch::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionSpec {
    /// The number of heads `H`; the width `C` must be a multiple of it.
    pub heads: usize,
    /// Dropout on the attention weights: keep probability and style.
    pub dropout: Option<(f64, DropoutStyle)>,
}

impl AttentionSpec {
    /// Attention with `heads` heads and no dropout.
    pub fn new(heads: usize) -> Self {
        AttentionSpec { heads, dropout: None }
    }

    /// With inverted dropout (PyTorch's) on the attention weights, keeping each with probability
    /// `keep` (nanoGPT's `dropout` is `1 − keep`).
    pub fn dropout(self, keep: f64) -> Self {
        self.dropout_with(keep, DropoutStyle::Inverted)
    }

    /// With dropout in the given style.
    pub fn dropout_with(mut self, keep: f64, style: DropoutStyle) -> Self {
        self.dropout = Some((keep, style));
        self
    }

    /// Checks the number of heads and the dropout probability.
    ///
    /// # Errors
    /// No heads, or a keep probability outside `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if self.heads == 0 {
            return Err(Error::InvalidArgument("CausalSelfAttention needs at least one head".into()));
        }
        super::validate_dropout(self.dropout)
    }

    /// A one-line description: `CausalSelfAttention(4 heads, dropout keep 0.9)`.
    pub fn describe(&self) -> String {
        let dropout = self.dropout.map(|(keep, _)| format!(", dropout keep {keep}")).unwrap_or_default();
        format!("CausalSelfAttention({} heads{dropout})", self.heads)
    }

    /// The width `C` of the output for a last input axis of `width` (`3C`), if it splits into three
    /// equal parts and `C` into the heads.
    pub fn output_width(&self, width: usize) -> Option<usize> {
        let c = width / 3;
        (self.heads > 0 && c > 0 && width % 3 == 0 && c % self.heads == 0).then_some(c)
    }

    /// The output shape for an input of `shape` (without the batch axis): `[T, 3C]` gives `[T, C]`.
    ///
    /// # Errors
    /// Invalid settings, or a shape that is not `[T, 3C]` with `C` a positive multiple of the heads.
    pub fn output_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.validate()?;
        let bad = || {
            Error::shape(
                "CausalSelfAttention input",
                format!("[time, 3C] with C a multiple of {} heads (q, k and v side by side)", self.heads),
                shape,
            )
        };
        match *shape {
            [t, width] if t > 0 => Ok(vec![t, self.output_width(width).ok_or_else(bad)?]),
            _ => Err(bad()),
        }
    }

    /// Draws the seed of the dropout mask generator (one draw), if there is dropout.
    pub fn draw(&self, rng: &mut RandomState) -> Option<u32> {
        self.dropout.map(|_| rng.next_u32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_layers_and_bad_settings_are_refused() {
        assert_eq!(EmbeddingSpec::new(65, 8).output_shape(&[5]).unwrap(), vec![5, 8]);
        assert!(EmbeddingSpec::new(65, 8).output_shape(&[]).is_err());
        assert!(EmbeddingSpec::new(0, 8).validate().is_err());
        assert!(EmbeddingSpec::new(usize::MAX / 2, 3)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("parameters would need"));
        assert!(EmbeddingSpec::new(5, 8).std(-1.0).validate().is_err());
        assert!(EmbeddingSpec::new(5, 8).std(f64::NAN).validate().is_err());

        let wpe = PositionEmbeddingSpec::new(16, 8);
        assert_eq!(wpe.output_shape(&[16, 8]).unwrap(), vec![16, 8]);
        let err = wpe.output_shape(&[17, 8]).unwrap_err().to_string();
        assert!(err.contains("17") && err.contains("16"), "{err}");
        assert!(wpe.output_shape(&[4, 9]).is_err());
        assert!(PositionEmbeddingSpec::new(usize::MAX, 2).validate().is_err());

        let ln = LayerNormSpec::new(8);
        assert_eq!((ln.eps, ln.affine, ln.bias), (1e-5, true, true));
        assert_eq!(ln.output_shape(&[3, 8]).unwrap(), vec![3, 8]);
        assert!(ln.output_shape(&[3, 7]).is_err());
        assert!(ln.output_shape(&[]).is_err());
        assert!(LayerNormSpec::new(0).validate().is_err());
        assert!(ln.eps(-1.0).validate().is_err());
        assert_eq!(ln.affine(false).describe(), "LayerNorm(8, eps 0.00001, no affine)");
        assert!(!ln.affine(false).has_bias());
        let draw = ln.bias(false).draw();
        assert_eq!((draw.weight.unwrap().sum(), draw.bias.is_none()), (8.0, true));

        let attn = AttentionSpec::new(2);
        assert_eq!(attn.output_shape(&[5, 12]).unwrap(), vec![5, 4]);
        assert!(attn.output_shape(&[5, 9]).is_err(), "C = 3 is not a multiple of 2 heads");
        assert!(attn.output_shape(&[5, 0]).is_err());
        assert!(attn.output_shape(&[0, 12]).is_err());
        assert!(attn.output_shape(&[12]).is_err());
        assert!(AttentionSpec::new(0).validate().is_err());
        assert!(attn.dropout(0.0).validate().is_err());
        assert_eq!(attn.describe(), "CausalSelfAttention(2 heads)");
    }

    #[test]
    fn draws_have_the_shapes_and_scales_of_the_description() {
        let mut rng = RandomState::new(3);
        let w = EmbeddingSpec::new(200, 100).std(0.02).draw(&mut rng);
        assert_eq!(w.dim(), (200, 100));
        let std = (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).sqrt();
        assert!((std / 0.02 - 1.0).abs() < 0.02, "{std}");
        assert_eq!(PositionEmbeddingSpec::new(7, 3).draw(&mut rng).dim(), (7, 3));
        assert_eq!(AttentionSpec::new(1).draw(&mut rng), None);
        assert!(AttentionSpec::new(1).dropout(0.5).draw(&mut rng).is_some());
    }
}
