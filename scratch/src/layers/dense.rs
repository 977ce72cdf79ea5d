//! The fully connected layer.

use std::marker::PhantomData;

use ndarray::{Array1, Array2, ArrayD, ArrayView2, ArrayViewMut2, Axis, Ix2};
use rayon::prelude::*;

use super::{Layer, WeightInit};
use crate::linalg::{matmul, matmul_into_threaded};
use crate::ops::{no_forward, Activation, Dropout, DropoutStyle, Mode};
use crate::param::{Layout, Param};
use crate::rng::RandomState;
use crate::{Error, Float, Result};

/// The settings of a [`Dense`] layer; build one with [`Dense::builder`].
#[derive(Clone, Debug)]
pub struct DenseBuilder<F> {
    n_in: usize,
    neurons: usize,
    activation: Activation,
    init: WeightInit,
    dropout: Option<(f64, DropoutStyle)>,
    float: PhantomData<F>,
}

impl<F: Float> DenseBuilder<F> {
    /// The activation applied after `X W + B` (default [`Activation::Linear`]).
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// The weight initialisation (default [`WeightInit::Standard`], the book's).
    pub fn init(mut self, init: WeightInit) -> Self {
        self.init = init;
        self
    }

    /// Inverted dropout after the activation, keeping each unit with probability `keep`.
    pub fn dropout(self, keep: f64) -> Self {
        self.dropout_with(keep, DropoutStyle::Inverted)
    }

    /// Dropout after the activation in the given style.
    pub fn dropout_with(mut self, keep: f64, style: DropoutStyle) -> Self {
        self.dropout = Some((keep, style));
        self
    }

    /// Draws the parameters from `rng` and returns the layer.
    ///
    /// # Errors
    /// If a size is zero or the dropout probability is outside `(0, 1]`.
    pub fn build(self, rng: &mut RandomState) -> Result<Dense<F>> {
        if self.n_in == 0 || self.neurons == 0 {
            return Err(crate::Error::InvalidArgument(format!(
                "Dense needs at least one input and one neuron, got {} -> {}",
                self.n_in, self.neurons
            )));
        }
        if let Some((keep, style)) = self.dropout {
            Dropout::<F>::new(keep, style, RandomState::new(0))?;
        }
        let empty = || Param::new(ArrayD::zeros(ndarray::IxDyn(&[0, 0])), Layout::Canonical);
        let mut layer = Dense { config: self, weight: empty(), bias: empty(), dropout: None, cache: None };
        layer.reinitialize(rng);
        Ok(layer)
    }
}

/// The initial values of a dense layer; both engines initialise from this.
pub struct DenseDraw {
    /// The weight in the book's layout `(n_in, neurons)`.
    pub weight: Array2<f64>,
    /// The bias `(neurons,)`.
    pub bias: Array1<f64>,
    /// The seed of the dropout mask generator, if the layer has dropout.
    pub dropout_seed: Option<u32>,
}

impl DenseDraw {
    /// Draws `W` of shape `(n_in, neurons)`, then `B` of shape `(neurons,)`, in that order (the book's),
    /// with [`WeightInit::sample`]; with dropout, one more draw seeds the mask generator.
    pub fn new(rng: &mut RandomState, (n_in, neurons): (usize, usize), init: WeightInit, dropout: bool) -> Self {
        let weight = init.sample(rng, (n_in, neurons), (n_in, neurons));
        let bias = init.sample(rng, neurons, (n_in, neurons));
        DenseDraw { weight, bias, dropout_seed: dropout.then(|| rng.next_u32()) }
    }
}

/// A fully connected layer: `Y = activation(X W + B)`, optionally followed by dropout.
///
/// ```text
/// X: (batch, n_in), W: (n_in, neurons), B: (1, neurons)  ->  Y: (batch, neurons)
///
/// forward:   Z = X W + B,  A = f(Z),  Y = A ⊙ dropout factor
/// backward:  ∂L/∂Z = ∂L/∂Y ⊙ dropout factor ⊙ f'(·)
///            ∂L/∂B = Σ_batch ∂L/∂Z,  ∂L/∂W = Xᵀ ∂L/∂Z,  ∂L/∂X = ∂L/∂Z Wᵀ
/// ```
///
/// The book's operations ([`WeightMultiply`](crate::ops::WeightMultiply),
/// [`BiasAdd`](crate::ops::BiasAdd), the activation, [`Dropout`]) computed in one pass each way: the
/// product, then the bias, activation and dropout on each row while it is in cache; the gradients in
/// place, into buffers kept from one call to the next. Its parameters are named `weight` and `bias`.
///
/// ```
/// use scratch::layers::{Dense, Layer};
/// use scratch::ops::{Activation, Mode};
/// use scratch::rng::RandomState;
///
/// let mut layer: Dense<f64> = Dense::builder(3, 2).activation(Activation::Sigmoid).build(&mut RandomState::new(1))?;
/// let y = layer.forward(ndarray::Array2::zeros((4, 3)).into_dyn(), Mode::Eval)?;
/// assert_eq!(y.shape(), &[4, 2]);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct Dense<F: Float> {
    config: DenseBuilder<F>,
    /// `W: (n_in, neurons)`, the book's layout (PyTorch's transposed).
    weight: Param<F>,
    /// `B: (1, neurons)`.
    bias: Param<F>,
    dropout: Option<Dropout<F>>,
    cache: Option<Cache<F>>,
}

/// What the backward pass needs from the forward pass.
struct Cache<F> {
    /// `X`.
    input: Array2<F>,
    /// `A = f(Z)`, or `Z` for an activation whose derivative needs its input
    /// ([`Activation::derivative_from_input`]); the buffer is reused by the next forward pass.
    activated: Array2<F>,
}

/// Rows of at least this many elements in all are processed on all cores.
const PARALLEL_LEN: usize = 1 << 15;

/// Calls `f(first element, rows)` on pieces of whole rows of `a` and, alongside, of `b`, in parallel
/// when the arrays are large.
fn by_rows<F: Float>(
    a: &mut ArrayViewMut2<F>,
    b: Option<&mut ArrayViewMut2<F>>,
    f: impl Fn(usize, &mut [F], Option<&mut [F]>) + Sync,
) {
    let n = a.ncols().max(1);
    let rows = (PARALLEL_LEN / n).max(1);
    let piece = rows * n;
    let a = a.as_slice_mut().expect("standard layout");
    match b {
        Some(b) => {
            let b = b.as_slice_mut().expect("standard layout");
            a.par_chunks_mut(piece).zip(b.par_chunks_mut(piece)).enumerate().for_each(|(i, (a, b))| {
                f(i * piece, a, Some(b));
            });
        }
        None => a.par_chunks_mut(piece).enumerate().for_each(|(i, a)| f(i * piece, a, None)),
    }
}

impl<F: Float> Dense<F> {
    /// Settings for a dense layer from `n_in` inputs to `neurons` outputs.
    pub fn builder(n_in: usize, neurons: usize) -> DenseBuilder<F> {
        DenseBuilder {
            n_in,
            neurons,
            activation: Activation::Linear,
            init: WeightInit::Standard,
            dropout: None,
            float: PhantomData,
        }
    }

    /// The number of inputs.
    pub fn n_in(&self) -> usize {
        self.config.n_in
    }

    /// The number of outputs.
    pub fn neurons(&self) -> usize {
        self.config.neurons
    }

    fn w(&self) -> ArrayView2<'_, F> {
        self.weight.value.view().into_dimensionality::<Ix2>().expect("the weight is a matrix")
    }

    /// `∂L/∂Z` from `∂L/∂Y` (through dropout and the activation), and the gradients of `B` and `W`.
    fn param_grads(&mut self, output_grad: ArrayD<F>) -> Result<(Array2<F>, &Cache<F>)> {
        let cache = self.cache.as_ref().ok_or_else(|| no_forward("Dense"))?;
        let expected = cache.activated.dim();
        if output_grad.shape() != [expected.0, expected.1] {
            return Err(Error::shape(
                "Dense backward",
                format!("gradient {:?}", [expected.0, expected.1]),
                output_grad.shape(),
            ));
        }
        let mut g = output_grad.into_dimensionality::<Ix2>().expect("checked above");
        if !g.is_standard_layout() {
            g = g.as_standard_layout().into_owned();
        }
        let (activation, dropout) = (self.config.activation, self.dropout.as_ref());
        let cached = cache.activated.as_slice().expect("a buffer of the layer's");
        by_rows(&mut g.view_mut(), None, |offset, g, _| {
            if let Some(d) = dropout {
                d.apply(offset, g).expect("started by the forward pass");
            }
            activation.gradient(g, &cached[offset..offset + g.len()]);
        });
        // ∂L/∂B: the rows summed in order.
        let mut db = Array1::zeros(g.ncols());
        for row in g.axis_iter(Axis(0)) {
            db += &row;
        }
        self.bias.grad = db.insert_axis(Axis(0)).into_dyn();
        // ∂L/∂W = Xᵀ ∂L/∂Z, into the gradient's buffer.
        let shape = self.weight.value.raw_dim();
        if self.weight.grad.raw_dim() != shape {
            self.weight.grad = ArrayD::zeros(shape);
        }
        let mut dw = self.weight.grad.view_mut().into_dimensionality::<Ix2>().expect("the weight is a matrix");
        matmul_into_threaded(&mut dw, &cache.input.t(), &g.view(), false);
        Ok((g, cache))
    }
}

impl<F: Float> Layer<F> for Dense<F> {
    fn describe(&self) -> String {
        let c = &self.config;
        let dropout = c.dropout.map(|(keep, _)| format!(", dropout keep {keep}")).unwrap_or_default();
        format!("Dense({} -> {}, {}{dropout})", c.n_in, c.neurons, c.activation.name())
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let (n_in, n) = (self.config.n_in, self.config.neurons);
        let shape_error =
            |got: &[usize]| Error::shape("input", format!("(batch, {n_in})"), got).within("WeightMultiply");
        if input.ndim() != 2 {
            return Err(Error::shape("input", "a 2-D array (batch, features)", input.shape()).within("WeightMultiply"));
        }
        if input.shape()[1] != n_in {
            return Err(shape_error(input.shape()));
        }
        let x = input.into_dimensionality::<Ix2>().expect("checked above");
        let batch = x.nrows();
        let mut z = match self.cache.take() {
            Some(c) if c.activated.dim() == (batch, n) => c.activated,
            _ => Array2::zeros((batch, n)),
        };
        matmul_into_threaded(&mut z.view_mut(), &x.view(), &self.w(), false);
        let activation = self.config.activation;
        let bias = self.bias.value.as_slice().expect("a bias is contiguous");
        let mut y = Array2::zeros((batch, n));
        if let Some(d) = &mut self.dropout {
            d.start(&[batch, n], mode).map_err(|e| e.within("Dropout"))?;
        }
        let dropout = self.dropout.as_ref();
        // Per piece of rows: Z += B, A = f(Z) (kept, or Z kept), Y = A ⊙ dropout.
        by_rows(&mut z.view_mut(), Some(&mut y.view_mut()), |offset, z, y| {
            let y = y.expect("both arrays");
            for row in z.chunks_exact_mut(n.max(1)) {
                row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
            }
            if activation.derivative_from_input() {
                y.copy_from_slice(z);
                activation.apply(y);
            } else {
                activation.apply(z);
                y.copy_from_slice(z);
            }
            if let Some(d) = dropout {
                d.apply(offset, y).expect("started above");
            }
        });
        self.cache = Some(Cache { input: x, activated: z });
        Ok(y.into_dyn())
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let (g, _) = self.param_grads(output_grad)?;
        Ok(matmul(&g.view(), &self.w().t()).into_dyn())
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.param_grads(output_grad).map(drop)
    }

    fn params(&self) -> Vec<(&'static str, &Param<F>)> {
        vec![("weight", &self.weight), ("bias", &self.bias)]
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param<F>)> {
        vec![("weight", &mut self.weight), ("bias", &mut self.bias)]
    }

    fn dropout_mut(&mut self) -> Option<&mut Dropout<F>> {
        self.dropout.as_mut()
    }

    /// Draws fresh values as [`DenseDraw::new`] says.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let c = &self.config;
        let draw = DenseDraw::new(rng, (c.n_in, c.neurons), c.init, c.dropout.is_some());
        let cast = |v: f64| F::cast(v);
        self.weight = Param::new(draw.weight.mapv(cast).into_dyn(), Layout::SwapAxes01);
        self.bias = Param::new(draw.bias.mapv(cast).insert_axis(Axis(0)).into_dyn(), Layout::RowVector);
        self.dropout = c.dropout.zip(draw.dropout_seed).map(|((keep, style), seed)| {
            Dropout::new(keep, style, RandomState::new(seed)).expect("validated by build")
        });
        self.cache = None;
    }

    fn reseeds_in_book(&self) -> bool {
        true
    }
}
