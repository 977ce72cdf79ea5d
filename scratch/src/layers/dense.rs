//! The fully connected layer.

use ndarray::{Array1, Array2, ArrayD, ArrayView2, ArrayViewMut2, Axis, Ix2, IxDyn};
use rayon::prelude::*;

use super::Layer;
use crate::linalg::{matmul, matmul_half, matmul_into_half, matmul_into_threaded};
use crate::ops::{no_forward, scale_by, Activation, Dropout, Mode, Operation};
use crate::param::{Layout, Param};
use crate::rng::RandomState;
use crate::spec::DenseSpec;
use crate::{Error, Float, Result};

/// A fully connected layer: `Y = activation(X W + B)`, optionally followed by dropout, over the last
/// axis of its input (as `torch.nn.Linear`).
///
/// ```text
/// X: (batch, in), W: (in, neurons), B: (1, neurons)  ->  Y: (batch, neurons)
/// X: (batch, time, in)                               ->  Y: (batch, time, neurons)   (rows batch·time)
///
/// forward:   Z = X W + B,  A = f(Z),  Y = A ⊙ dropout factor
/// backward:  ∂L/∂Z = ∂L/∂Y ⊙ dropout factor ⊙ f'(·)
///            ∂L/∂B = Σ_rows ∂L/∂Z,  ∂L/∂W = Xᵀ ∂L/∂Z,  ∂L/∂X = ∂L/∂Z Wᵀ
/// ```
///
/// The book's operations ([`WeightMultiply`](crate::ops::WeightMultiply),
/// [`BiasAdd`](crate::ops::BiasAdd), the activation, [`Dropout`]) computed in one pass each way: the
/// product into the output, then the bias, activation and dropout on each piece of rows while it is
/// in cache (nothing more for a linear layer without bias or dropout); the gradients in place, the
/// two products of the backward pass (`∂L/∂W` and `∂L/∂X`) at the same time on different cores. The
/// activation keeps what its derivative needs, in a buffer reused from one call to the next: its
/// output, or its derivative itself for one whose derivative needs its input (GELU, computed once
/// for both), nothing for the identity. Its parameters are named `weight` and (unless the description
/// has none) `bias`.
///
/// ```
/// use scratch::layers::{Dense, Layer};
/// use scratch::ops::{Activation, Mode};
/// use scratch::rng::RandomState;
/// use scratch::spec::DenseSpec;
///
/// let mut layer = Dense::<f64>::new(3, DenseSpec::new(2).activation(Activation::Sigmoid), &mut RandomState::new(1))?;
/// let y = layer.forward(ndarray::Array2::zeros((4, 3)).into_dyn(), Mode::Eval)?;
/// assert_eq!(y.shape(), &[4, 2]);
/// let y = layer.forward(ndarray::Array3::zeros((4, 7, 3)).into_dyn(), Mode::Eval)?;
/// assert_eq!(y.shape(), &[4, 7, 2]);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct Dense<F: Float> {
    spec: DenseSpec,
    inputs: usize,
    /// `W: (in, neurons)`, the book's layout (PyTorch's transposed).
    weight: Param<F>,
    /// `B: (1, neurons)`, if the layer has a bias.
    bias: Option<Param<F>>,
    dropout: Option<Dropout<F>>,
    cache: Option<Cache<F>>,
    /// The leading axes of the last input when it had more than two (they are merged into rows).
    leading: Option<Vec<usize>>,
}

/// What the backward pass needs from the forward pass.
struct Cache<F> {
    /// `X`.
    input: Array2<F>,
    /// The rows and columns of `Z`.
    dim: (usize, usize),
    /// `A = f(Z)`, or `f'(Z)` for an activation whose derivative needs its input
    /// ([`Activation::derivative_from_input`]), or nothing for the identity (see [`kept`]); the buffer
    /// is reused by the next forward pass.
    kept: Option<Array2<F>>,
}

/// What the backward pass through `activation` needs, computed in the forward pass: `f'(Z)` where the
/// derivative needs the input, nothing for the identity, `A = f(Z)` otherwise.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kept {
    Nothing,
    Derivative,
    Output,
}

/// What [`Cache::kept`] holds for `activation`.
fn kept(activation: Activation) -> Kept {
    match activation {
        Activation::Linear => Kept::Nothing,
        a if a.derivative_from_input() => Kept::Derivative,
        _ => Kept::Output,
    }
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

/// `a` with its leading axes merged into rows, `(rows, last)`: the same buffer when `a` is in standard
/// layout, else a copy.
fn rows<F: Float>(a: ArrayD<F>) -> ArrayD<F> {
    let last = a.shape().last().copied().unwrap_or(1);
    let rows = a.len() / last.max(1);
    let a = if a.is_standard_layout() { a } else { a.as_standard_layout().into_owned() };
    a.into_shape_with_order(IxDyn(&[rows, last])).expect("sizes agree")
}

/// `a`, `(rows, last)`, reshaped to `leading + [last]`.
fn unrows<F: Float>(a: ArrayD<F>, leading: &[usize]) -> ArrayD<F> {
    let shape: Vec<usize> = leading.iter().copied().chain([a.shape()[1]]).collect();
    a.into_shape_with_order(IxDyn(&shape)).expect("sizes agree")
}

impl<F: Float> Dense<F> {
    /// The layer `spec` describes on `inputs` inputs, drawn from `rng` ([`DenseSpec::draw`]).
    ///
    /// # Errors
    /// As [`DenseSpec::validate`].
    pub fn new(inputs: usize, spec: DenseSpec, rng: &mut RandomState) -> Result<Self> {
        spec.validate(inputs)?;
        let weight = Param::new(ArrayD::zeros(IxDyn(&[0, 0])), Layout::Canonical);
        let mut layer = Dense { spec, inputs, weight, bias: None, dropout: None, cache: None, leading: None };
        layer.reinitialize(rng);
        Ok(layer)
    }

    /// What the layer is.
    pub fn spec(&self) -> &DenseSpec {
        &self.spec
    }

    /// The number of inputs.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    fn w(&self) -> ArrayView2<'_, F> {
        self.weight.value.view().into_dimensionality::<Ix2>().expect("the weight is a matrix")
    }

    /// `∂L/∂Z` from `∂L/∂Y` (through dropout and the activation), and the gradient of `B`.
    fn output_gradient(&mut self, output_grad: ArrayD<F>) -> Result<Array2<F>> {
        let cache = self.cache.as_ref().ok_or_else(|| no_forward("Dense"))?;
        let expected = cache.dim;
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
        let (activation, dropout) = (self.spec.activation, self.dropout.as_ref());
        if let Some(cached) = &cache.kept {
            let (cached, kept) = (cached.as_slice().expect("a buffer of the layer's"), kept(activation));
            by_rows(&mut g.view_mut(), None, |offset, g, _| {
                if let Some(d) = dropout {
                    d.apply(offset, g).expect("started by the forward pass");
                }
                let cached = &cached[offset..offset + g.len()];
                match kept {
                    Kept::Derivative => scale_by(g, cached),
                    _ => activation.gradient(g, cached),
                }
            });
        } else if let Some(d) = dropout {
            by_rows(&mut g.view_mut(), None, |offset, g, _| d.apply(offset, g).expect("started by the forward pass"));
        }
        // ∂L/∂B: the rows summed in order.
        if let Some(bias) = &mut self.bias {
            let mut db = Array1::zeros(g.ncols());
            for row in g.axis_iter(Axis(0)) {
                db += &row;
            }
            bias.grad = db.insert_axis(Axis(0)).into_dyn();
        }
        Ok(g)
    }

    /// `W`, its gradient's buffer (shaped as `W`) and `X`, for the products of the backward pass.
    fn product_operands(&mut self) -> (ArrayView2<'_, F>, ArrayViewMut2<'_, F>, ArrayView2<'_, F>) {
        let weight = &mut self.weight;
        if weight.grad.raw_dim() != weight.value.raw_dim() {
            weight.grad = ArrayD::zeros(weight.value.raw_dim());
        }
        let w = weight.value.view().into_dimensionality::<Ix2>().expect("the weight is a matrix");
        let dw = weight.grad.view_mut().into_dimensionality::<Ix2>().expect("the weight is a matrix");
        let x = self.cache.as_ref().expect("checked by output_gradient").input.view();
        (w, dw, x)
    }

    /// Checks that an input of `shape` is `(batch, in)` or `(batch, time, in)`, before any reshaping
    /// (so that an error shows the shape as given).
    fn check_width(&self, shape: &[usize]) -> Result<()> {
        if (2..=3).contains(&shape.len()) && shape.last() == Some(&self.inputs) {
            Ok(())
        } else {
            Err(Error::shape("input", format!("(batch, {0}) or (batch, time, {0})", self.inputs), shape))
        }
    }

    /// `input` as the matrix `(batch, in)`, or an error naming the shape the layer needs.
    fn check_rows(&self, input: ArrayD<F>) -> Result<Array2<F>> {
        let n_in = self.inputs;
        if input.ndim() != 2 || input.shape()[1] != n_in {
            return Err(Error::shape("input", format!("(batch, {n_in})"), input.shape()));
        }
        Ok(input.into_dimensionality::<Ix2>().expect("checked above"))
    }

    /// `z_row += B` for every row of a piece of rows.
    fn add_bias(&self, z: &mut [F]) {
        if let Some(bias) = &self.bias {
            let bias = bias.value.as_slice().expect("a bias is contiguous");
            for row in z.chunks_exact_mut(bias.len().max(1)) {
                row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
            }
        }
    }

    fn forward_rows(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let x = self.check_rows(input)?;
        let (batch, n) = (x.nrows(), self.spec.neurons);
        let activation = self.spec.activation;
        let kept = kept(activation);
        let mut buffer = match self.cache.take() {
            Some(Cache { kept: Some(k), .. }) if k.dim() == (batch, n) => Some(k),
            _ => None,
        };
        let mut cached = (kept != Kept::Nothing).then(|| buffer.take().unwrap_or_else(|| Array2::zeros((batch, n))));
        let mut y = matmul(&x.view(), &self.w());
        if let Some(d) = &mut self.dropout {
            d.start(&[batch, n], mode).map_err(|e| e.within("Dropout"))?;
        }
        let dropout = self.dropout.as_ref();
        // Per piece of rows: Z = XW + B in Y, then Y = f(Z) keeping A or f'(Z), then Y = A ⊙ dropout.
        if self.bias.is_some() || kept != Kept::Nothing || dropout.is_some() {
            by_rows(&mut y.view_mut(), cached.as_mut().map(|c| c.view_mut()).as_mut(), |offset, y, cached| {
                self.add_bias(y);
                match (kept, cached) {
                    (Kept::Derivative, Some(d)) => activation.apply_with_derivative(y, d),
                    (Kept::Output, Some(a)) => {
                        activation.apply(y);
                        a.copy_from_slice(y);
                    }
                    _ => {}
                }
                if let Some(d) = dropout {
                    d.apply(offset, y).expect("started above");
                }
            });
        }
        self.cache = Some(Cache { input: x, dim: (batch, n), kept: cached });
        Ok(y.into_dyn())
    }

    /// The output in evaluation mode, nothing cached.
    fn infer_rows(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let x = self.check_rows(input)?;
        let mut z = matmul(&x.view(), &self.w());
        let activation = self.spec.activation;
        by_rows(&mut z.view_mut(), None, |_, z, _| {
            self.add_bias(z);
            activation.apply(z);
        });
        match &self.dropout {
            Some(d) => d.infer(z.into_dyn()),
            None => Ok(z.into_dyn()),
        }
    }
}

impl<F: Float> Layer<F> for Dense<F> {
    fn describe(&self) -> String {
        self.spec.describe(self.inputs)
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        self.check_width(input.shape())?;
        if input.ndim() <= 2 {
            self.leading = None;
            return self.forward_rows(input, mode);
        }
        let leading = input.shape()[..input.ndim() - 1].to_vec();
        let y = unrows(self.forward_rows(rows(input), mode)?, &leading);
        self.leading = Some(leading);
        Ok(y)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        self.check_width(input.shape())?;
        if input.ndim() <= 2 {
            return self.infer_rows(input);
        }
        let leading = input.shape()[..input.ndim() - 1].to_vec();
        Ok(unrows(self.infer_rows(rows(input))?, &leading))
    }

    /// `∂L/∂W = Xᵀ ∂L/∂Z` (into the gradient's buffer) and `∂L/∂X = ∂L/∂Z Wᵀ`, at the same time.
    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let leading = self.leading.clone();
        let output_grad = if leading.is_some() { rows(output_grad) } else { output_grad };
        let g = self.output_gradient(output_grad)?;
        let (w, mut dw, x) = self.product_operands();
        let (_, dx) =
            rayon::join(|| matmul_into_half(&mut dw, &x.t(), &g.view(), false), || matmul_half(&g.view(), &w.t()));
        let dx = dx.into_dyn();
        Ok(match leading {
            Some(leading) => unrows(dx, &leading),
            None => dx,
        })
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        let output_grad = if self.leading.is_some() { rows(output_grad) } else { output_grad };
        let g = self.output_gradient(output_grad)?;
        let (_, mut dw, x) = self.product_operands();
        matmul_into_threaded(&mut dw, &x.t(), &g.view(), false);
        Ok(())
    }

    fn params(&self) -> Vec<(String, &Param<F>)> {
        std::iter::once(("weight".into(), &self.weight)).chain(self.bias.as_ref().map(|b| ("bias".into(), b))).collect()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        std::iter::once(("weight".into(), &mut self.weight))
            .chain(self.bias.as_mut().map(|b| ("bias".into(), b)))
            .collect()
    }

    fn dropouts_mut(&mut self) -> Vec<(String, &mut Dropout<F>)> {
        self.dropout.iter_mut().map(|d| (String::new(), d)).collect()
    }

    /// Draws fresh values as [`DenseSpec::draw`] says.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let spec = &self.spec;
        let draw = spec.draw(rng, self.inputs);
        let cast = |v: f64| F::cast(v);
        self.weight = Param::new(draw.weight.mapv(cast).into_dyn(), Layout::SwapAxes01);
        self.bias = draw.bias.map(|b| Param::new(b.mapv(cast).insert_axis(Axis(0)).into_dyn(), Layout::RowVector));
        self.dropout = spec.dropout.zip(draw.dropout_seed).map(|((keep, style), seed)| {
            Dropout::new(keep, style, RandomState::new(seed)).expect("validated when the layer was built")
        });
        self.cache = None;
    }

    fn reseeds_in_book(&self) -> bool {
        true
    }
}
