//! The core of multi-head causal self-attention.

use ndarray::{Array3, ArrayD};
use rayon::prelude::*;

use super::products::{product, Causal, Matrix, MatrixMut, Sizes};
use super::{dot, max, standard, sum};
use crate::layers::Layer;
use crate::ops::{no_forward, Dropout, DropoutStyle, Mode};
use crate::param::Param;
use crate::rng::RandomState;
use crate::simd::{dispatch, Simd, WithSimd};
use crate::spec::AttentionSpec;
use crate::{Error, Float, Result};

/// The parameter-free core of multi-head causal self-attention: what nanoGPT's
/// `CausalSelfAttention` computes between its input projection `c_attn` and its output projection
/// `c_proj` (and what PyTorch's `scaled_dot_product_attention(q, k, v, is_causal=True)` computes,
/// with the heads split and merged around it).
///
/// ```text
/// input X (B, T, 3C) = [Q | K | V] side by side,  C = H · hs   ->   output Y (B, T, C)
/// head h of Q, K, V, Y: columns h·hs..(h+1)·hs of its part (nanoGPT's view(B, T, H, hs))
///
/// forward, per sequence and head (q, k, v, y: (T, hs)):
///     S = q kᵀ / √hs,   P[i] = softmax(S[i, ..=i]) (P[i, j] = 0 for j > i),   P̃ = P ⊙ D,   y = P̃ v
/// backward, from ∂L/∂y:
///     ∂L/∂v = P̃ᵀ ∂L/∂y,   ∂L/∂P̃ = ∂L/∂y vᵀ,   ∂L/∂P = ∂L/∂P̃ ⊙ D
///     ∂L/∂S = P ⊙ (∂L/∂P − rowsum(∂L/∂P ⊙ P))
///     ∂L/∂q = ∂L/∂S k / √hs,   ∂L/∂k = ∂L/∂Sᵀ q / √hs
/// ```
///
/// `D` is the dropout factor (`mask / keep`, a [`Dropout`] over the shape `(B, H, T, T)` of the
/// attention weights, so that masks can be injected), or 1 without dropout.
///
/// Each sequence is one task (its heads one after the other), spread over the cores. A head's six
/// products are small (`T × hs` by `hs × T`, `T × T` by `T × hs`) and run in vector registers
/// straight from the operands and into the outputs' columns, in tiles of a few rows that each stop at
/// the diagonal, so the masked upper triangle is hardly computed; `k` (forward) and `v` (backward)
/// are transposed into the task's scratch space first, so that the scores' columns are adjacent. The softmax and its backward pass run over
/// whole registers with the masked part selected away. The attention weights `P` (and `P̃`) are kept
/// for the backward pass, their buffers reused from one call to the next.
///
/// [`CausalSelfAttention::infer`] runs the same computation without keeping anything.
///
/// ```
/// use scratch::layers::Layer;
/// use scratch::ops::Mode;
/// use scratch::rng::RandomState;
/// use scratch::spec::AttentionSpec;
/// use scratch::transformer::CausalSelfAttention;
///
/// let mut attn = CausalSelfAttention::<f32>::new(AttentionSpec::new(4), &mut RandomState::new(0))?;
/// let x = ndarray::Array3::<f32>::ones((2, 10, 3 * 32)).into_dyn();
/// let y = attn.forward(x, Mode::Train)?;
/// assert_eq!(y.shape(), &[2, 10, 32]);
/// assert_eq!(attn.backward(y)?.shape(), &[2, 10, 96]);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct CausalSelfAttention<F: Float> {
    spec: AttentionSpec,
    dropout: Option<Dropout<F>>,
    cache: Option<Cache<F>>,
}

/// What the backward pass needs from the forward pass.
struct Cache<F> {
    /// `X (B, T, 3C)`, standard layout.
    input: ArrayD<F>,
    dims: Dims,
    /// `P (B, H, T, T)`, zero above the diagonal.
    probs: Vec<F>,
    /// `P̃ = P ⊙ D (B, H, T, T)`, with dropout.
    dropped: Option<Vec<F>>,
}

/// The sizes of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dims {
    batch: usize,
    time: usize,
    /// `C`.
    width: usize,
    heads: usize,
    /// `hs = C / H`.
    head_size: usize,
}

impl Dims {
    /// `1 / √hs`.
    fn scale<F: Float>(&self) -> F {
        F::cast(1.0 / (self.head_size as f64).sqrt())
    }

    /// The elements of one sequence of the input (`T · 3C`).
    fn input_len(&self) -> usize {
        self.time * 3 * self.width
    }

    /// The elements of one sequence of the output (`T · C`).
    fn output_len(&self) -> usize {
        self.time * self.width
    }

    /// The attention weights of one head (`T · T`).
    fn area(&self) -> usize {
        self.time * self.time
    }

    /// The sizes of the products with `T` rows and `hs` columns.
    fn by_head(&self) -> Sizes {
        Sizes { rows: self.time, cols: self.head_size, inner: self.time }
    }

    /// The sizes of the products with `T` rows and `T` columns.
    fn by_time(&self) -> Sizes {
        Sizes { rows: self.time, cols: self.time, inner: self.head_size }
    }
}

/// `buffer` (if any) cut into `n` pieces of `len`, or `n` times `None`.
fn pieces<F>(buffer: Option<&mut [F]>, len: usize, n: usize) -> Vec<Option<&mut [F]>> {
    match buffer {
        Some(b) => b.chunks_mut(len.max(1)).map(Some).collect(),
        None => (0..n).map(|_| None).collect(),
    }
}

impl<F: Float> CausalSelfAttention<F> {
    /// The layer `spec` describes; with dropout, its mask generator is seeded from `rng` (one draw,
    /// [`AttentionSpec::draw`]).
    ///
    /// # Errors
    /// As [`AttentionSpec::validate`].
    pub fn new(spec: AttentionSpec, rng: &mut RandomState) -> Result<Self> {
        spec.validate()?;
        let mut layer = CausalSelfAttention { spec, dropout: None, cache: None };
        layer.reinitialize(rng);
        Ok(layer)
    }

    /// What the layer is.
    pub fn spec(&self) -> &AttentionSpec {
        &self.spec
    }

    /// The sizes of an input of `shape`, checked.
    fn dims(&self, shape: &[usize]) -> Result<Dims> {
        let heads = self.spec.heads;
        let bad = || {
            Error::shape(
                "CausalSelfAttention input",
                format!("(batch, time, 3C) with C a multiple of {heads} heads (q, k and v side by side)"),
                shape,
            )
        };
        let [batch, time, width3] = *shape else { return Err(bad()) };
        let width = self.spec.output_width(width3).ok_or_else(bad)?;
        let weights = [batch, heads, time, time].iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if weights.is_none_or(|n| n > isize::MAX as usize / std::mem::size_of::<F>()) {
            return Err(Error::InvalidArgument(format!(
                "CausalSelfAttention: the attention weights of {batch} sequences of {time} positions in {heads} heads \
                 do not fit in memory"
            )));
        }
        Ok(Dims { batch, time, width, heads, head_size: width / heads })
    }

    /// `Y (B, T, C)` for `x (B, T, 3C)`, sequence by sequence on all cores. `P` of each head goes to
    /// its piece of `probs` (or to scratch space), `P̃` to its piece of `dropped` when `dropout` is
    /// given.
    fn compute(
        &self,
        x: &[F],
        dims: Dims,
        probs: Option<&mut [F]>,
        dropped: Option<&mut [F]>,
        dropout: Option<&Dropout<F>>,
    ) -> Array3<F> {
        let Dims { batch, time, width, heads, .. } = dims;
        let mut y = Array3::zeros((batch, time, width));
        if y.is_empty() {
            return y;
        }
        let (area, weights) = (dims.area(), heads * dims.area());
        let probs = pieces(probs, weights, batch);
        let dropped = pieces(dropped, weights, batch);
        let ys = y.as_slice_mut().expect("a new array");
        let sequences = ys.par_chunks_mut(dims.output_len()).zip(x.par_chunks(dims.input_len()));
        sequences.zip(probs).zip(dropped).enumerate().for_each_init(
            Scratch::default,
            |scratch, (b, (((y, x), mut probs), mut dropped))| {
                for h in 0..heads {
                    let head = Head { x, dims, h, scale: dims.scale() };
                    let Scratch { transposed, square } = &mut *scratch;
                    let probs = match probs.as_deref_mut() {
                        Some(p) => &mut p[h * area..(h + 1) * area],
                        None => at_least(square, area),
                    };
                    let dropped = dropped.as_deref_mut().map(|d| &mut d[h * area..(h + 1) * area]);
                    let dropout = dropout.zip(dropped).map(|(d, buffer)| (d, (b * heads + h) * area, buffer));
                    head.forward(probs, dropout, y, transposed);
                }
            },
        );
        y
    }

    /// `∂L/∂X (B, T, 3C)` from `∂L/∂Y (B, T, C)`.
    fn input_gradient(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let cache = self.cache.as_ref().ok_or_else(|| no_forward("CausalSelfAttention"))?;
        let dims = cache.dims;
        let Dims { batch, time, width, heads, .. } = dims;
        if output_grad.shape() != [batch, time, width] {
            return Err(Error::shape(
                "CausalSelfAttention backward",
                format!("gradient {:?}", [batch, time, width]),
                output_grad.shape(),
            ));
        }
        let mut dx = Array3::zeros((batch, time, 3 * width));
        if dx.is_empty() {
            return Ok(dx.into_dyn());
        }
        let g = standard(output_grad);
        let g = g.as_slice().expect("standard layout");
        let x = cache.input.as_slice().expect("standard layout");
        let (area, weights) = (dims.area(), heads * dims.area());
        let dropped = cache.dropped.as_deref().unwrap_or(&cache.probs);
        let dropout = self.dropout.as_ref().filter(|_| cache.dropped.is_some());
        let dxs = dx.as_slice_mut().expect("a new array");
        let sequences = dxs.par_chunks_mut(dims.input_len()).zip(x.par_chunks(dims.input_len()));
        let sequences = sequences.zip(g.par_chunks(dims.output_len()));
        let weights = cache.probs.par_chunks(weights).zip(dropped.par_chunks(weights));
        sequences.zip(weights).enumerate().for_each_init(Scratch::default, |scratch, (b, (((dx, x), g), (p, pd)))| {
            for h in 0..heads {
                let head = Head { x, dims, h, scale: dims.scale() };
                let weights = Weights {
                    probs: &p[h * area..(h + 1) * area],
                    dropped: &pd[h * area..(h + 1) * area],
                    dropout: dropout.map(|d| (d, (b * heads + h) * area)),
                };
                head.backward(g, weights, dx, scratch);
            }
        });
        Ok(dx.into_dyn())
    }
}

/// One head's attention weights as the backward pass reads them.
struct Weights<'a, F> {
    /// `P (T, T)`.
    probs: &'a [F],
    /// `P̃ (T, T)` (`P` itself without dropout).
    dropped: &'a [F],
    /// The dropout and the offset of this head's weights in its `(B, H, T, T)` array.
    dropout: Option<(&'a Dropout<F>, usize)>,
}

/// Working space of one task, allocated when first used: a transposed operand `(hs, T)`, and the
/// attention weights `(T, T)` ([`CausalSelfAttention::infer`]) or their gradient (the backward
/// pass).
#[derive(Default)]
struct Scratch<F> {
    transposed: Vec<F>,
    square: Vec<F>,
}

/// `buffer` with at least `len` elements.
fn at_least<F: Float>(buffer: &mut Vec<F>, len: usize) -> &mut [F] {
    if buffer.len() < len {
        buffer.resize(len, F::zero());
    }
    &mut buffer[..len]
}

/// Head `h` of one sequence `x (T, 3C)`.
struct Head<'a, F> {
    x: &'a [F],
    dims: Dims,
    h: usize,
    scale: F,
}

impl<F: Float> Head<'_, F> {
    /// Column `h · hs` of block `part` (0, 1, 2: q, k, v) of a sequence `(T, n·C)`, as a matrix
    /// `(T, hs)` with rows `n·C` apart.
    fn column(&self, part: usize, parts: usize) -> (usize, usize) {
        (part * self.dims.width + self.h * self.dims.head_size, parts * self.dims.width)
    }

    /// q, k or v (`part` 0, 1, 2) of this head, `(T, hs)`.
    fn part(&self, part: usize) -> Matrix<'_, F> {
        let (offset, row) = self.column(part, 3);
        Matrix::rows(self.x, offset, row)
    }

    /// The forward pass: `P` into `probs`, `P̃` into the dropout's buffer, `y = P̃ v` into this head's
    /// columns of the sequence's output `(T, C)`.
    fn forward(
        &self,
        probs: &mut [F],
        dropout: Option<(&Dropout<F>, usize, &mut [F])>,
        y: &mut [F],
        transposed: &mut Vec<F>,
    ) {
        let Dims { time, head_size, .. } = self.dims;
        // S = q kᵀ, each tile of rows as far as the diagonal (unscaled: the softmax scales).
        let kt = at_least(transposed, head_size * time);
        transpose(self.part(1), (time, head_size), kt);
        let kt = Matrix::rows(&kt[..], 0, time);
        let scores = MatrixMut { data: &mut *probs, offset: 0, row: time };
        product(self.part(0), kt, scores, self.dims.by_time(), Causal::Columns);
        dispatch(Softmax { probs: &mut *probs, time, scale: self.scale });
        let weights: &[F] = match dropout {
            Some((d, offset, dropped)) => {
                dropped.copy_from_slice(probs);
                for i in 0..time {
                    d.apply(offset + i * time, &mut dropped[i * time..=i * time + i]).expect("started by the layer");
                }
                dropped
            }
            None => probs,
        };
        let (offset, row) = self.column(0, 1);
        let y = MatrixMut { data: y, offset, row };
        product(Matrix::rows(weights, 0, time), self.part(2), y, self.dims.by_head(), Causal::Lower);
    }

    /// The backward pass from the sequence's `∂L/∂Y (T, C)`, into this head's columns of its
    /// `∂L/∂X (T, 3C)`.
    fn backward(&self, g: &[F], weights: Weights<F>, dx: &mut [F], scratch: &mut Scratch<F>) {
        let Dims { time, head_size, .. } = self.dims;
        let (by_head, by_time) = (self.dims.by_head(), self.dims.by_time());
        let Scratch { transposed, square } = scratch;
        let (offset, row) = self.column(0, 1);
        let dy = Matrix::rows(g, offset, row);
        fn out<'d, F: Float>(head: &Head<F>, dx: &'d mut [F], part: usize) -> MatrixMut<'d, F> {
            let (offset, row) = head.column(part, 3);
            MatrixMut { data: dx, offset, row }
        }
        // ∂L/∂v = P̃ᵀ ∂L/∂y.
        product(Matrix::transposed(weights.dropped, 0, time), dy, out(self, dx, 2), by_head, Causal::Upper);
        // ∂L/∂P̃ = ∂L/∂y vᵀ as far as the diagonal, then ∂L/∂P and ∂L/∂S in place.
        let vt = at_least(transposed, head_size * time);
        transpose(self.part(2), (time, head_size), vt);
        let ds = at_least(square, time * time);
        let scores = MatrixMut { data: &mut *ds, offset: 0, row: time };
        product(dy, Matrix::rows(&vt[..], 0, time), scores, by_time, Causal::Columns);
        if let Some((d, offset)) = weights.dropout {
            for i in 0..time {
                d.apply(offset + i * time, &mut ds[i * time..=i * time + i]).expect("started by the forward pass");
            }
        }
        dispatch(SoftmaxBackward { probs: weights.probs, grad: &mut *ds, time, scale: self.scale });
        // ∂L/∂q = ∂L/∂S k and ∂L/∂k = ∂L/∂Sᵀ q (the scale is in ∂L/∂S).
        let ds = &ds[..];
        product(Matrix::rows(ds, 0, time), self.part(1), out(self, dx, 0), by_head, Causal::Lower);
        product(Matrix::transposed(ds, 0, time), self.part(0), out(self, dx, 1), by_head, Causal::Upper);
    }
}

/// `m (T, hs)` transposed into `out (hs, T)`, eight rows at a time (eight adjacent values written
/// for each column).
fn transpose<F: Float>(m: Matrix<F>, (time, head_size): (usize, usize), out: &mut [F]) {
    const ROWS: usize = 8;
    let row = |t: usize| &m.data[m.offset + t * m.row..][..head_size];
    let mut t0 = 0;
    while t0 + ROWS <= time {
        let rows: [&[F]; ROWS] = std::array::from_fn(|r| row(t0 + r));
        for d in 0..head_size {
            let dst = &mut out[d * time + t0..][..ROWS];
            for r in 0..ROWS {
                dst[r] = rows[r][d];
            }
        }
        t0 += ROWS;
    }
    for t in t0..time {
        for (d, &v) in row(t).iter().enumerate() {
            out[d * time + t] = v;
        }
    }
}

/// `n` rounded up to whole registers of the widest kind (16 `f32`), at most `time`: how much of a row
/// of the attention weights is computed with the masked part selected away, so that no row ends in a
/// partial register.
fn whole_registers(n: usize, time: usize) -> usize {
    (n.div_ceil(16) * 16).min(time)
}

/// The causal softmax of one head's scores in place: row `i` of `probs (T, T)` holds `q_i · k_j` for
/// `j ≤ i` (and anything beyond) and becomes `softmax(scale · S[i, ..=i])`, then zeros.
struct Softmax<'a, F> {
    probs: &'a mut [F],
    time: usize,
    scale: F,
}

impl<F: Float> WithSimd for Softmax<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let (time, scale) = (self.time, self.scale);
        for (i, row) in self.probs.chunks_exact_mut(time.max(1)).enumerate() {
            let (row, masked) = row.split_at_mut(whole_registers(i + 1, time));
            let m = max(&row[..=i]);
            for (j, v) in row.iter_mut().enumerate() {
                let e = ((*v - m) * scale).exp_fast();
                *v = if j <= i { e } else { F::zero() };
            }
            let r = F::one() / sum(row);
            row.iter_mut().for_each(|v| *v *= r);
            masked.fill(F::zero());
        }
    }
}

/// The softmax's backward pass for one head, in place: row `i` of `grad (T, T)` holds `∂L/∂P[i, ..=i]`
/// (and anything beyond) and becomes `∂L/∂S[i] · scale = scale · P ⊙ (∂L/∂P − ∂L/∂P · P)`, then
/// zeros.
struct SoftmaxBackward<'a, F> {
    probs: &'a [F],
    grad: &'a mut [F],
    time: usize,
    scale: F,
}

impl<F: Float> WithSimd for SoftmaxBackward<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let (time, scale) = (self.time, self.scale);
        let rows = self.grad.chunks_exact_mut(time.max(1)).zip(self.probs.chunks_exact(time.max(1)));
        for (i, (g, p)) in rows.enumerate() {
            let (g, masked) = g.split_at_mut(whole_registers(i + 1, time));
            let r = dot(&g[..=i], &p[..=i]);
            for (j, (g, &p)) in g.iter_mut().zip(p).enumerate() {
                let v = scale * p * (*g - r);
                *g = if j <= i { v } else { F::zero() };
            }
            masked.fill(F::zero());
        }
    }
}

impl<F: Float> Layer<F> for CausalSelfAttention<F> {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let old = self.cache.take();
        let dims = self.dims(input.shape())?;
        let len = dims.batch * dims.heads * dims.area();
        let reuse = |buffer: Option<Vec<F>>| match buffer {
            Some(b) if b.len() == len => b,
            _ => vec![F::zero(); len],
        };
        let (old_probs, old_dropped) = old.map(|c| (Some(c.probs), c.dropped)).unwrap_or_default();
        let mut probs = reuse(old_probs);
        let mut dropped = match &mut self.dropout {
            Some(d) => {
                d.start(&[dims.batch, dims.heads, dims.time, dims.time], mode).map_err(|e| e.within("Dropout"))?;
                Some(reuse(old_dropped))
            }
            None => None,
        };
        let x = standard(input);
        let xs = x.as_slice().expect("standard layout");
        let y = self.compute(xs, dims, Some(&mut probs), dropped.as_deref_mut(), self.dropout.as_ref());
        self.cache = Some(Cache { input: x, dims, probs, dropped });
        Ok(y.into_dyn())
    }

    /// The output for `input` without keeping anything for a backward pass (evaluation: no dropout
    /// mask; the book's dropout style scales by the keep probability).
    ///
    /// # Errors
    /// As [`Layer::forward`]: an input that is not `(B, T, 3C)` with `C` a multiple of the heads.
    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let dims = self.dims(input.shape())?;
        let x = standard(input);
        let mut y = self.compute(x.as_slice().expect("standard layout"), dims, None, None, None);
        if let Some((keep, DropoutStyle::Book)) = self.spec.dropout {
            y.mapv_inplace(|v| v * F::cast(keep));
        }
        Ok(y.into_dyn())
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        self.input_gradient(output_grad)
    }

    fn params(&self) -> Vec<(String, &Param<F>)> {
        Vec::new()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        Vec::new()
    }

    /// The dropout on the attention weights, named `attn_dropout` as nanoGPT's.
    fn dropouts_mut(&mut self) -> Vec<(String, &mut Dropout<F>)> {
        self.dropout.iter_mut().map(|d| ("attn_dropout".to_string(), d)).collect()
    }

    /// Seeds a fresh dropout mask generator from `rng` (one draw), if there is dropout.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        self.dropout = self.spec.dropout.zip(self.spec.draw(rng)).map(|((keep, style), seed)| {
            Dropout::new(keep, style, RandomState::new(seed)).expect("validated when the layer was built")
        });
        self.cache = None;
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, Array4, ArrayD, Ix3};

    use super::*;
    use crate::transformer::loops;

    /// `(B, T, C, H)`: a single position, one head, head sizes that fill no vector, sequences longer
    /// than a block and not a multiple of it, and the GPT configuration.
    const SHAPES: [(usize, usize, usize, usize); 7] =
        [(1, 1, 4, 1), (2, 5, 12, 3), (3, 7, 8, 1), (1, 17, 6, 2), (2, 33, 20, 2), (1, 40, 24, 4), (2, 64, 128, 4)];

    /// The largest `|a − b| / max(1, |b|)`.
    fn difference<F: Float>(a: &ArrayD<F>, b: &ArrayD<f64>) -> f64 {
        assert_eq!(a.shape(), b.shape());
        a.iter().zip(b).map(|(&a, &b)| (a.as_f64() - b).abs() / b.abs().max(1.0)).fold(0.0, f64::max)
    }

    /// The layer's output and input gradient against the loops, for every shape, with and without an
    /// injected dropout mask, in `F`; the loops run in f64 on the same values.
    fn matches_the_loops<F: Float>(tolerance: f64) {
        let mut rng = RandomState::new(4);
        for (batch, time, width, heads) in SHAPES {
            for keep in [None, Some(0.7)] {
                let spec = keep.map_or(AttentionSpec::new(heads), |k| AttentionSpec::new(heads).dropout(k));
                let mut layer = CausalSelfAttention::<F>::new(spec, &mut rng).unwrap();
                let x: Array3<F> = rng.randn((batch, time, 3 * width));
                let g: Array3<F> = rng.randn((batch, time, width));
                let mask = keep.map(|k| rng.bernoulli_mask::<F, _>(k, ndarray::Dim([batch, heads, time, time])));
                if let Some(m) = &mask {
                    layer.dropouts_mut()[0].1.inject_mask(m.clone().into_dyn());
                }
                let y = layer.forward(x.clone().into_dyn(), Mode::Train).unwrap();
                let dx = layer.backward(g.clone().into_dyn()).unwrap();
                let x64 = x.mapv(F::as_f64);
                let factor: Option<Array4<f64>> = mask.zip(keep).map(|(m, k)| m.mapv(|v| v.as_f64() / k));
                let (y_ref, _) = loops::attention_forward(&x64, heads, factor.as_ref());
                let dx_ref = loops::attention_backward(&x64, heads, factor.as_ref(), &g.mapv(F::as_f64));
                let case = format!("{} (B, T, C, H) = {:?}, keep {keep:?}", F::NAME, (batch, time, width, heads));
                let (ey, edx) = (difference(&y, &y_ref.into_dyn()), difference(&dx, &dx_ref.into_dyn()));
                assert!(ey < tolerance && edx < tolerance, "{case}: output {ey:e}, input gradient {edx:e}");
            }
        }
    }

    #[test]
    fn matches_the_loops_f64() {
        matches_the_loops::<f64>(1e-12);
    }

    #[test]
    fn matches_the_loops_f32() {
        matches_the_loops::<f32>(2e-5);
    }

    #[test]
    fn drawn_masks_are_those_of_the_layers_generator() {
        let (batch, time, width, heads, keep) = (2, 9, 12, 3, 0.6);
        let mut rng = RandomState::new(11);
        let mut layer = CausalSelfAttention::<f64>::new(AttentionSpec::new(heads).dropout(keep), &mut rng).unwrap();
        // The layer seeded its mask generator with the first draw of a generator seeded 11.
        let mut masks = RandomState::new(RandomState::new(11).next_u32());
        let x: Array3<f64> = rng.randn((batch, time, 3 * width));
        let g: Array3<f64> = rng.randn((batch, time, width));
        for _ in 0..2 {
            let mask: Array4<f64> = masks.bernoulli_mask(keep, ndarray::Dim([batch, heads, time, time]));
            let factor = mask.mapv(|m| m / keep);
            let y = layer.forward(x.clone().into_dyn(), Mode::Train).unwrap();
            let dx = layer.backward(g.clone().into_dyn()).unwrap();
            let (y_ref, _) = loops::attention_forward(&x, heads, Some(&factor));
            let dx_ref = loops::attention_backward(&x, heads, Some(&factor), &g);
            assert!(difference(&y, &y_ref.into_dyn()) < 1e-12);
            assert!(difference(&dx, &dx_ref.into_dyn()) < 1e-12);
        }
    }

    #[test]
    fn evaluation_and_inference_skip_the_mask() {
        let (batch, time, width, heads, keep) = (2, 6, 8, 2, 0.8);
        let mut rng = RandomState::new(2);
        let x: Array3<f64> = rng.randn((batch, time, 3 * width));
        let (plain, _) = loops::attention_forward(&x, heads, None);
        for (style, factor) in [(DropoutStyle::Inverted, 1.0), (DropoutStyle::Book, keep)] {
            let spec = AttentionSpec::new(heads).dropout_with(keep, style);
            let mut layer = CausalSelfAttention::<f64>::new(spec, &mut rng).unwrap();
            let expected = (&plain * factor).into_dyn();
            assert!(difference(&layer.infer(x.clone().into_dyn()).unwrap(), &expected) < 1e-12, "{style:?}");
            assert!(difference(&layer.forward(x.clone().into_dyn(), Mode::Eval).unwrap(), &expected) < 1e-12);
        }
        let layer = CausalSelfAttention::<f64>::new(AttentionSpec::new(heads), &mut rng).unwrap();
        assert!(difference(&layer.infer(x.clone().into_dyn()).unwrap(), &plain.into_dyn()) < 1e-12);
    }

    #[test]
    fn the_weights_are_causal_softmaxes() {
        let mut rng = RandomState::new(8);
        let mut layer = CausalSelfAttention::<f64>::new(AttentionSpec::new(2), &mut rng).unwrap();
        let x: Array3<f64> = rng.randn((2, 20, 12));
        layer.forward(x.clone().into_dyn(), Mode::Train).unwrap();
        let cache = layer.cache.as_ref().unwrap();
        let p = Array4::from_shape_vec((2, 2, 20, 20), cache.probs.clone()).unwrap();
        let (_, p_ref) = loops::attention_forward(&x, 2, None);
        assert!(difference(&p.clone().into_dyn(), &p_ref.into_dyn()) < 1e-14);
        for row in p.lanes(ndarray::Axis(3)) {
            assert!((row.sum() - 1.0).abs() < 1e-14);
        }
        assert!(p.indexed_iter().all(|((_, _, i, j), &v)| j <= i || v == 0.0));
    }

    #[test]
    fn bad_shapes_and_calls_are_errors() {
        let mut rng = RandomState::new(1);
        let mut layer = CausalSelfAttention::<f32>::new(AttentionSpec::new(4), &mut rng).unwrap();
        assert!(layer.backward(ArrayD::zeros(ndarray::IxDyn(&[1, 2, 8]))).unwrap_err().to_string().contains("before"));
        for shape in [vec![2, 3, 24 + 1], vec![2, 3, 18], vec![3, 24], vec![1, 2, 3, 24], vec![2, 3, 0]] {
            let err = layer.forward(ArrayD::zeros(ndarray::IxDyn(&shape)), Mode::Train).unwrap_err();
            assert!(err.to_string().contains("CausalSelfAttention input"), "{shape:?}: {err}");
        }
        layer.forward(ArrayD::zeros(ndarray::IxDyn(&[2, 3, 24])), Mode::Train).unwrap();
        let err = layer.backward(ArrayD::zeros(ndarray::IxDyn(&[2, 3, 24]))).unwrap_err();
        assert!(err.to_string().contains("[2, 3, 8]"), "{err}");
        // An empty batch or sequence is no error.
        let y = layer.forward(ArrayD::zeros(ndarray::IxDyn(&[0, 3, 24])), Mode::Train).unwrap();
        assert_eq!(y.shape(), &[0, 3, 8]);
        assert_eq!(layer.backward(y).unwrap().shape(), &[0, 3, 24]);
        let y = layer.forward(ArrayD::zeros(ndarray::IxDyn(&[2, 0, 24])), Mode::Train).unwrap();
        assert_eq!(layer.backward(y).unwrap().shape(), &[2, 0, 24]);
        let x = Array3::<f32>::zeros((1, 2, 24)).into_dyn().into_dimensionality::<Ix3>().unwrap();
        assert_eq!(layer.infer(x.into_dyn()).unwrap().shape(), &[1, 2, 8]);
    }
}
