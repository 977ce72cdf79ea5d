//! Token and position embeddings.

use ndarray::{s, ArrayD, Axis, Ix2, IxDyn};
use rayon::prelude::*;

use super::{rows_per_piece, standard};
use crate::gradcheck::unravel;
use crate::layers::Layer;
use crate::ops::{no_forward, Mode};
use crate::param::{Layout, Param};
use crate::rng::RandomState;
use crate::spec::{EmbeddingSpec, PositionEmbeddingSpec};
use crate::{Error, Float, Result};

/// A token embedding (PyTorch's `nn.Embedding`, nanoGPT's `wte`): a table lookup.
///
/// ```text
/// input (B, T) of indices in [0, V), weight W (V, C)  ->  output (B, T, C)
///
/// forward:   y[b, t] = W[x[b, t]]
/// backward:  ∂L/∂W[v] = Σ_{(b, t): x[b, t] = v} ∂L/∂y[b, t]      (rows scatter-added)
///            ∂L/∂x = 0
/// ```
///
/// The indices come as values of the network's float type (the type every layer passes on); each
/// must be an integer in `[0, V)`. They are not differentiable: the input gradient the backward
/// pass returns is all zeros, of the input's shape, so that the layer can stand first in a network
/// like any other. Any number of leading axes is accepted (`(…)` gives `(…, C)`).
///
/// Parameter: `weight (V, C)`, drawn `N(0, std²)` ([`EmbeddingSpec::draw`]).
///
/// ```
/// use scratch::layers::Layer;
/// use scratch::ops::Mode;
/// use scratch::rng::RandomState;
/// use scratch::spec::EmbeddingSpec;
/// use scratch::transformer::Embedding;
///
/// let mut wte = Embedding::<f32>::new(EmbeddingSpec::new(10, 4), &mut RandomState::new(0))?;
/// let y = wte.forward(ndarray::array![[1.0, 9.0, 1.0]].into_dyn(), Mode::Train)?;
/// assert_eq!(y.shape(), &[1, 3, 4]);
/// let err = wte.forward(ndarray::array![[1.0, 10.0]].into_dyn(), Mode::Train).unwrap_err();
/// assert!(err.to_string().contains("[0, 1]"));
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct Embedding<F: Float> {
    spec: EmbeddingSpec,
    /// `W (V, C)`.
    weight: Param<F>,
    /// The indices of the last forward pass and the input's shape.
    cache: Option<(Vec<usize>, Vec<usize>)>,
}

impl<F: Float> Embedding<F> {
    /// The layer `spec` describes, its weight drawn from `rng`.
    ///
    /// # Errors
    /// As [`EmbeddingSpec::validate`].
    pub fn new(spec: EmbeddingSpec, rng: &mut RandomState) -> Result<Self> {
        spec.validate()?;
        let weight = Param::new(ArrayD::zeros(IxDyn(&[spec.vocab, spec.dim])), Layout::Canonical);
        let mut layer = Embedding { spec, weight, cache: None };
        layer.reinitialize(rng);
        Ok(layer)
    }

    /// What the layer is.
    pub fn spec(&self) -> &EmbeddingSpec {
        &self.spec
    }

    /// The input's values as indices, checked.
    fn indices(&self, input: &ArrayD<F>) -> Result<Vec<usize>> {
        let vocab = self.spec.vocab;
        input
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let index = v.to_usize().filter(|&i| F::from_usize(i) == Some(v) && i < vocab);
                index.ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "Embedding: the index at position {:?} is {v}, not an integer in [0, {vocab})",
                        unravel(k, input.shape())
                    ))
                })
            })
            .collect()
    }

    /// The output and the indices.
    fn compute(&self, input: &ArrayD<F>) -> Result<(ArrayD<F>, Vec<usize>)> {
        if input.ndim() == 0 {
            return Err(Error::shape("Embedding input", "(batch, time) of token indices", input.shape()));
        }
        let indices = self.indices(input)?;
        let c = self.spec.dim;
        let shape: Vec<usize> = input.shape().iter().copied().chain([c]).collect();
        let mut y = ArrayD::zeros(IxDyn(&shape));
        let table = self.weight.value.as_slice().expect("a parameter is contiguous");
        let piece = rows_per_piece(c);
        y.as_slice_mut().expect("a new array").par_chunks_mut(piece * c).zip(indices.par_chunks(piece)).for_each(
            |(ys, indices)| {
                for (y, &i) in ys.chunks_exact_mut(c).zip(indices) {
                    y.copy_from_slice(&table[i * c..(i + 1) * c]);
                }
            },
        );
        Ok((y, indices))
    }

    /// `∂L/∂W`, rows scatter-added in the order of the positions; returns the input's shape.
    fn weight_gradient(&mut self, output_grad: ArrayD<F>) -> Result<Vec<usize>> {
        let (indices, shape) = self.cache.as_ref().ok_or_else(|| no_forward("Embedding"))?;
        let c = self.spec.dim;
        let expected: Vec<usize> = shape.iter().copied().chain([c]).collect();
        if output_grad.shape() != expected.as_slice() {
            return Err(Error::shape("Embedding backward", format!("gradient {expected:?}"), output_grad.shape()));
        }
        let g = standard(output_grad);
        let g = g.as_slice().expect("standard layout");
        let mut dw = std::mem::replace(&mut self.weight.grad, ArrayD::zeros(IxDyn(&[0])));
        if dw.shape() != self.weight.value.shape() {
            dw = ArrayD::zeros(self.weight.value.raw_dim());
        } else {
            dw.fill(F::zero());
        }
        let table = dw.as_slice_mut().expect("a parameter is contiguous");
        for (g, &i) in g.chunks_exact(c).zip(indices) {
            table[i * c..(i + 1) * c].iter_mut().zip(g).for_each(|(d, &g)| *d += g);
        }
        self.weight.grad = dw;
        Ok(shape.clone())
    }
}

impl<F: Float> Layer<F> for Embedding<F> {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        self.cache = None;
        let (y, indices) = self.compute(&input)?;
        self.cache = Some((indices, input.shape().to_vec()));
        Ok(y)
    }

    /// The output for `input` without keeping anything for a backward pass (evaluation).
    ///
    /// # Errors
    /// As [`Layer::forward`]: an index that is not an integer in `[0, V)`.
    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        Ok(self.compute(&input)?.0)
    }

    /// Stores `∂L/∂W` and returns zeros of the input's shape: indices have no gradient.
    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let shape = self.weight_gradient(output_grad)?;
        Ok(ArrayD::zeros(IxDyn(&shape)))
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.weight_gradient(output_grad).map(drop)
    }

    fn params(&self) -> Vec<(String, &Param<F>)> {
        vec![("weight".into(), &self.weight)]
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        vec![("weight".into(), &mut self.weight)]
    }

    /// Draws a fresh weight as [`EmbeddingSpec::draw`] says.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        self.weight = Param::new(self.spec.draw(rng).mapv(F::cast).into_dyn(), Layout::Canonical);
        self.cache = None;
    }
}

/// The error for a sequence of `t` positions where at most `max_len` are embedded.
pub(crate) fn check_length(t: usize, max_len: usize) -> Result<()> {
    if t > max_len {
        return Err(Error::InvalidArgument(format!(
            "PositionEmbedding: a sequence of {t} positions is longer than the {max_len} the layer embeds (max_len)"
        )));
    }
    Ok(())
}

/// A learned position embedding added to its input (nanoGPT's `wpe`, added to `wte`'s output).
///
/// ```text
/// input X (B, T, C), weight W (T_max, C), T ≤ T_max  ->  output (B, T, C)
///
/// forward:   y[b, t] = x[b, t] + W[t]
/// backward:  ∂L/∂x = ∂L/∂y,   ∂L/∂W[t] = Σ_b ∂L/∂y[b, t] for t < T, 0 for the rows beyond
/// ```
///
/// Parameter: `weight (T_max, C)`, drawn `N(0, std²)` ([`PositionEmbeddingSpec::draw`]).
///
/// ```
/// use scratch::layers::Layer;
/// use scratch::ops::Mode;
/// use scratch::rng::RandomState;
/// use scratch::spec::PositionEmbeddingSpec;
/// use scratch::transformer::PositionEmbedding;
///
/// let mut wpe = PositionEmbedding::<f32>::new(PositionEmbeddingSpec::new(8, 4), &mut RandomState::new(0))?;
/// assert_eq!(wpe.forward(ndarray::Array3::zeros((2, 5, 4)).into_dyn(), Mode::Train)?.shape(), &[2, 5, 4]);
/// assert!(wpe.forward(ndarray::Array3::zeros((2, 9, 4)).into_dyn(), Mode::Train).is_err());
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct PositionEmbedding<F: Float> {
    spec: PositionEmbeddingSpec,
    /// `W (T_max, C)`.
    weight: Param<F>,
    /// The input's shape in the last forward pass.
    cache: Option<Vec<usize>>,
}

impl<F: Float> PositionEmbedding<F> {
    /// The layer `spec` describes, its weight drawn from `rng`.
    ///
    /// # Errors
    /// As [`PositionEmbeddingSpec::validate`].
    pub fn new(spec: PositionEmbeddingSpec, rng: &mut RandomState) -> Result<Self> {
        spec.validate()?;
        let weight = Param::new(ArrayD::zeros(IxDyn(&[spec.max_len, spec.dim])), Layout::Canonical);
        let mut layer = PositionEmbedding { spec, weight, cache: None };
        layer.reinitialize(rng);
        Ok(layer)
    }

    /// What the layer is.
    pub fn spec(&self) -> &PositionEmbeddingSpec {
        &self.spec
    }

    /// `x + W[..T]`, in the input's buffer.
    fn compute(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let c = self.spec.dim;
        let t = match *input.shape() {
            [_, t, width] if width == c => t,
            _ => return Err(Error::shape("PositionEmbedding input", format!("(batch, time, {c})"), input.shape())),
        };
        check_length(t, self.spec.max_len)?;
        let mut x = standard(input);
        if t == 0 {
            return Ok(x);
        }
        let table = &self.weight.value.as_slice().expect("a parameter is contiguous")[..t * c];
        let sequences = rows_per_piece(t * c);
        x.as_slice_mut().expect("standard layout").par_chunks_mut(sequences * t * c).for_each(|xs| {
            for x in xs.chunks_exact_mut(t * c) {
                x.iter_mut().zip(table).for_each(|(x, &w)| *x += w);
            }
        });
        Ok(x)
    }

    /// `∂L/∂W`: the gradient summed over the batch in its first `T` rows.
    fn weight_gradient(&mut self, output_grad: &ArrayD<F>) -> Result<()> {
        let shape = self.cache.as_ref().ok_or_else(|| no_forward("PositionEmbedding"))?;
        if output_grad.shape() != shape.as_slice() {
            return Err(Error::shape("PositionEmbedding backward", format!("gradient {shape:?}"), output_grad.shape()));
        }
        let t = shape[1];
        let mut dw = std::mem::replace(&mut self.weight.grad, ArrayD::zeros(IxDyn(&[0])));
        if dw.shape() != self.weight.value.shape() {
            dw = ArrayD::zeros(self.weight.value.raw_dim());
        } else {
            dw.fill(F::zero());
        }
        {
            let mut dw = dw.view_mut().into_dimensionality::<Ix2>().expect("the weight is a matrix");
            let mut rows = dw.slice_mut(s![..t, ..]);
            for g in output_grad.axis_iter(Axis(0)) {
                let g = g.into_dimensionality::<Ix2>().expect("checked above");
                rows += &g;
            }
        }
        self.weight.grad = dw;
        Ok(())
    }
}

impl<F: Float> Layer<F> for PositionEmbedding<F> {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        self.cache = None;
        let shape = input.shape().to_vec();
        let y = self.compute(input)?;
        self.cache = Some(shape);
        Ok(y)
    }

    /// The output for `input` without keeping anything for a backward pass (evaluation).
    ///
    /// # Errors
    /// As [`Layer::forward`]: an input that is not `(B, T, C)`, or `T > T_max`.
    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        self.compute(input)
    }

    /// Stores `∂L/∂W` and passes `∂L/∂y` on as `∂L/∂x`.
    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        self.weight_gradient(&output_grad)?;
        Ok(output_grad)
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.weight_gradient(&output_grad)
    }

    fn params(&self) -> Vec<(String, &Param<F>)> {
        vec![("weight".into(), &self.weight)]
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        vec![("weight".into(), &mut self.weight)]
    }

    /// Draws a fresh weight as [`PositionEmbeddingSpec::draw`] says.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        self.weight = Param::new(self.spec.draw(rng).mapv(F::cast).into_dyn(), Layout::Canonical);
        self.cache = None;
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Array3, ArrayD, IxDyn};

    use super::*;
    use crate::transformer::loops;

    /// Random indices `(B, T)` below `vocab`.
    fn indices(rng: &mut RandomState, (batch, time): (usize, usize), vocab: usize) -> Array2<usize> {
        Array2::from_shape_fn((batch, time), |_| rng.randint(0, vocab as i64).unwrap() as usize)
    }

    fn token_embedding_matches_the_loops<F: Float>() {
        let mut rng = RandomState::new(9);
        // The last is large enough to be split over the cores.
        for (batch, time, vocab, dim) in [(1, 1, 1, 1), (2, 5, 7, 3), (3, 9, 65, 16), (8, 512, 50, 16)] {
            let mut layer = Embedding::<F>::new(EmbeddingSpec::new(vocab, dim), &mut rng).unwrap();
            let idx = indices(&mut rng, (batch, time), vocab);
            let x = idx.mapv(|i| F::cast(i as f64)).into_dyn();
            let g: Array3<F> = rng.randn((batch, time, dim));
            let y = layer.forward(x.clone(), Mode::Train).unwrap();
            assert_eq!(layer.infer(x.clone()).unwrap(), y);
            let dx = layer.backward(g.clone().into_dyn()).unwrap();
            assert!(dx.shape() == [batch, time] && dx.iter().all(|&v| v == F::zero()), "indices have no gradient");
            let w = layer.weight.value.clone().into_dimensionality().unwrap();
            assert_eq!(y, loops::embedding_forward(&idx, &w).into_dyn());
            let dw = loops::embedding_backward(&idx, vocab, &g.mapv(F::as_f64));
            let worst = layer.weight.grad.iter().zip(&dw).map(|(&a, &b)| (a.as_f64() - b).abs()).fold(0.0, f64::max);
            assert!(worst < if F::SINGLE { 1e-5 } else { 1e-12 }, "{worst}");
        }
    }

    #[test]
    fn token_embedding_matches_the_loops_f64() {
        token_embedding_matches_the_loops::<f64>();
    }

    #[test]
    fn token_embedding_matches_the_loops_f32() {
        token_embedding_matches_the_loops::<f32>();
    }

    #[test]
    fn bad_indices_are_named_with_their_position() {
        let mut layer = Embedding::<f64>::new(EmbeddingSpec::new(10, 4), &mut RandomState::new(0)).unwrap();
        for bad in [2.5, -1.0, 10.0, f64::NAN, f64::INFINITY, 1e300] {
            let x = ndarray::array![[0.0, 1.0, 2.0], [3.0, bad, 4.0]].into_dyn();
            let err = layer.forward(x, Mode::Train).unwrap_err().to_string();
            assert!(err.contains("[1, 1]") && err.contains(&format!("{bad}")) && err.contains("[0, 10)"), "{err}");
        }
        assert!(layer.backward(ArrayD::zeros(IxDyn(&[1, 3, 4]))).unwrap_err().to_string().contains("before forward"));
        assert!(layer.forward(ArrayD::zeros(IxDyn(&[])), Mode::Train).is_err());
        layer.forward(ArrayD::zeros(IxDyn(&[2, 3])), Mode::Train).unwrap();
        let err = layer.backward(ArrayD::zeros(IxDyn(&[2, 3, 5]))).unwrap_err().to_string();
        assert!(err.contains("[2, 3, 4]"), "{err}");
    }

    fn position_embedding_matches_the_loops<F: Float>() {
        let mut rng = RandomState::new(10);
        for (batch, time, max_len, dim) in [(1, 1, 1, 1), (2, 5, 7, 3), (3, 16, 16, 8), (6, 256, 300, 32)] {
            let mut layer = PositionEmbedding::<F>::new(PositionEmbeddingSpec::new(max_len, dim), &mut rng).unwrap();
            let x: Array3<F> = rng.randn((batch, time, dim));
            let g: Array3<F> = rng.randn((batch, time, dim));
            let y = layer.forward(x.clone().into_dyn(), Mode::Train).unwrap();
            assert_eq!(layer.infer(x.clone().into_dyn()).unwrap(), y);
            let dx = layer.backward(g.clone().into_dyn()).unwrap();
            let w = layer.weight.value.mapv(F::as_f64).into_dimensionality().unwrap();
            let y_ref = loops::position_embedding_forward(&x.mapv(F::as_f64), &w);
            let (dx_ref, dw_ref) = loops::position_embedding_backward(max_len, &g.mapv(F::as_f64));
            let tolerance = if F::SINGLE { 1e-5 } else { 1e-12 };
            let worst = |a: &ArrayD<F>, b: &ArrayD<f64>| {
                assert_eq!(a.shape(), b.shape());
                a.iter().zip(b).map(|(&a, &b)| (a.as_f64() - b).abs()).fold(0.0, f64::max)
            };
            assert!(worst(&y, &y_ref.into_dyn()) < tolerance);
            assert!(worst(&dx, &dx_ref.into_dyn()) < tolerance);
            assert!(worst(&layer.weight.grad, &dw_ref.into_dyn()) < tolerance);
        }
    }

    #[test]
    fn position_embedding_matches_the_loops_f64() {
        position_embedding_matches_the_loops::<f64>();
    }

    #[test]
    fn position_embedding_matches_the_loops_f32() {
        position_embedding_matches_the_loops::<f32>();
    }

    #[test]
    fn sequences_longer_than_the_table_are_refused_naming_both_lengths() {
        let mut layer =
            PositionEmbedding::<f32>::new(PositionEmbeddingSpec::new(8, 4), &mut RandomState::new(0)).unwrap();
        let err = layer.forward(ArrayD::zeros(IxDyn(&[2, 9, 4])), Mode::Train).unwrap_err().to_string();
        assert!(err.contains('9') && err.contains('8'), "{err}");
        for shape in [vec![2, 8, 5], vec![8, 4], vec![1, 2, 8, 4]] {
            let err = layer.forward(ArrayD::zeros(IxDyn(&shape)), Mode::Train).unwrap_err().to_string();
            assert!(err.contains("PositionEmbedding input"), "{err}");
        }
        assert!(layer.backward(ArrayD::zeros(IxDyn(&[2, 8, 4]))).unwrap_err().to_string().contains("before forward"));
        let y = layer.forward(ArrayD::zeros(IxDyn(&[2, 0, 4])), Mode::Train).unwrap();
        assert_eq!(layer.backward(y).unwrap().shape(), &[2, 0, 4]);
        assert!(layer.weight.grad.iter().all(|&v| v == 0.0));
    }
}
