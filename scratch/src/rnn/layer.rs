//! The recurrent layer: a stack of cells ([`super::cell`]) over `(batch, time, input)` sequences,
//! and the state it carries from one call to the next.

use ndarray::{Array2, Array3, ArrayD, Axis};

use super::cell::{Cell, CellState};
use crate::layers::Layer;
use crate::ops::Mode;
use crate::param::Param;
use crate::rng::RandomState;
use crate::spec::{CellKind, RecurrentSpec, StateMode, StateStart};
use crate::{Error, Float, Result};

/// The hidden state `h` of every cell of a stack, `(layers, batch, hidden)` (PyTorch's `h_n`), with
/// the cell states `c` of the same shape for an LSTM (`c_n`).
#[derive(Clone, Debug, PartialEq)]
pub struct State<F> {
    /// The hidden states.
    pub h: Array3<F>,
    /// The LSTM's cell states.
    pub c: Option<Array3<F>>,
}

/// A recurrent layer (RNN, LSTM or GRU, see [`CellKind`]) over `(batch, time, input)` sequences, a
/// stack of [`RecurrentSpec::layers`] cells: the book's `RNNLayer`, `LSTMLayer` and `GRULayer` (whose
/// output projection is a [`Dense`](crate::layers::Dense) layer after this one), PyTorch's `nn.RNN`,
/// `nn.LSTM` and `nn.GRU`.
///
/// For each cell, the input products of all steps are one matrix product, `(T·B, input) × (input,
/// G·H)`; each step then adds its recurrent product `(B, H) × (H, G·H)` and applies the cell
/// element-wise. Backward runs the steps in reverse, and the weight gradients are again one product
/// each over all steps:
///
/// ```text
/// ∂L/∂W_ih = Σ_t x_tᵀ ∂L/∂a_t        ∂L/∂W_hh = Σ_t h_{t−1}ᵀ ∂L/∂a_t      ∂L/∂b = Σ_t Σ_batch ∂L/∂a_t
/// ∂L/∂h_{t−1} = ∂L/∂a_t W_hh  (+ the cell's direct paths)
/// ```
///
/// The state carried between calls (see [`StateMode`]) is a constant: gradients stop at the start of
/// each call (truncated back-propagation through time).
///
/// ```
/// use scratch::layers::Layer;
/// use scratch::ops::Mode;
/// use scratch::rng::RandomState;
/// use scratch::rnn::Recurrent;
/// use scratch::spec::{CellKind, RecurrentSpec};
///
/// let spec = RecurrentSpec::new(CellKind::Lstm, 5, 8).layers(2);
/// let mut lstm = Recurrent::<f64>::new(spec, &mut RandomState::new(0))?;
/// let y = lstm.forward(ndarray::Array3::<f64>::ones((2, 7, 5)).into_dyn(), Mode::Train)?;
/// assert_eq!(y.shape(), &[2, 7, 8]);
/// assert_eq!(lstm.final_state().unwrap().h.shape(), &[2, 2, 8]);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct Recurrent<F: Float> {
    spec: RecurrentSpec,
    cells: Vec<Cell<F>>,
    carried: Option<State<F>>,
    last: Option<State<F>>,
}

impl<F: Float> Recurrent<F> {
    /// A layer as `spec` says, its weights drawn from `rng` ([`RecurrentSpec::draw`]).
    ///
    /// # Errors
    /// Invalid sizes or initialisation.
    pub fn new(spec: RecurrentSpec, rng: &mut RandomState) -> Result<Self> {
        let mut layer = Recurrent { spec, cells: Vec::new(), carried: None, last: None };
        layer.set_values(spec.draw(rng)?);
        Ok(layer)
    }

    /// Rebuilds the cells from drawn values, in the order of [`RecurrentSpec::parameter_shapes`].
    fn set_values(&mut self, values: Vec<(String, ArrayD<f64>)>) {
        let mut values = values.into_iter().map(|(_, v)| v);
        self.cells = (0..self.spec.layers)
            .map(|index| {
                let spec = RecurrentSpec { input: self.spec.input_of(index), layers: 1, ..self.spec };
                Cell::from_values(spec, index, &mut values)
            })
            .collect();
        self.reset_state();
    }

    /// The layer's description.
    pub fn spec(&self) -> &RecurrentSpec {
        &self.spec
    }

    /// The final state of the last forward pass: every cell's `h` (and `c`), `(layers, batch, hidden)`.
    pub fn final_state(&self) -> Option<&State<F>> {
        self.last.as_ref()
    }

    /// Sets the state the next call starts from: `h` `(layers, batch or 1, hidden)` and, for an LSTM,
    /// `c` of the same shape, as the carried state of [`StateMode::Carry`] and [`StateMode::CarryMean`]
    /// ([`StateMode::start`] says how a call starts from it: one row is repeated over the batch).
    ///
    /// # Errors
    /// If a shape is wrong, `c` is missing for an LSTM or given for another cell, or the layer's mode
    /// is [`StateMode::Reset`].
    pub fn set_state(&mut self, h: Array3<F>, c: Option<Array3<F>>) -> Result<()> {
        if self.spec.state == StateMode::Reset {
            return Err(Error::InvalidArgument("set_state on a layer that resets its state at every call".into()));
        }
        let want = format!("({}, batch, {})", self.spec.layers, self.spec.hidden);
        let (layers, rows, hidden) = h.dim();
        if layers != self.spec.layers || hidden != self.spec.hidden || rows == 0 {
            return Err(Error::shape("hidden state", want, h.shape()));
        }
        match (&c, self.spec.cell == CellKind::Lstm) {
            (Some(c), true) if c.dim() != h.dim() => return Err(Error::shape("cell state", want, c.shape())),
            (None, true) | (Some(_), false) => {
                return Err(Error::InvalidArgument("an LSTM, and only an LSTM, has a cell state".into()))
            }
            _ => {}
        }
        self.carried = Some(State { h, c });
        Ok(())
    }

    /// The state every cell starts a call on `input` from, checking the input's shape.
    fn starts(&self, input: &ArrayD<F>) -> Result<Vec<CellState<F>>> {
        let batch = match *input.shape() {
            [b, t, v] if v == self.spec.input && b > 0 && t > 0 => b,
            _ => {
                let want = format!("(batch > 0, time > 0, {})", self.spec.input);
                return Err(Error::shape("input", want, input.shape()));
            }
        };
        (0..self.cells.len()).map(|k| self.initial_state(k, batch)).collect()
    }

    /// The state cell `k` starts this call from, for a batch of `batch` (see [`StateMode::start`]).
    fn initial_state(&self, k: usize, batch: usize) -> Result<CellState<F>> {
        let h = self.spec.hidden;
        let zeros = || Array2::zeros((batch, h));
        let lstm = self.spec.cell == CellKind::Lstm;
        let start = self.spec.state.start(self.carried.as_ref().map(|s| s.h.len_of(Axis(1))), batch)?;
        let Some(carried) = self.carried.as_ref().filter(|_| start != StateStart::Zeros) else {
            return Ok(CellState { h: zeros(), c: lstm.then(zeros) });
        };
        let fit = |a: &Array3<F>| -> Array2<F> {
            let a = a.index_axis(Axis(0), k);
            match start {
                StateStart::Mean => {
                    let mean = a.mean_axis(Axis(0)).expect("a carried state has rows");
                    mean.broadcast((batch, h)).expect("one row broadcasts").to_owned()
                }
                StateStart::Broadcast => a.broadcast((batch, h)).expect("one row broadcasts").to_owned(),
                StateStart::Carried | StateStart::Zeros => a.to_owned(),
            }
        };
        let c = match &carried.c {
            Some(c) => Some(fit(c)),
            None => lstm.then(zeros),
        };
        Ok(CellState { h: fit(&carried.h), c })
    }

    /// Runs the cells backward from the gradient of the top cell's output; the input gradient of the
    /// bottom cell if `input_grad`.
    fn backward_cells(&mut self, output_grad: ArrayD<F>, input_grad: bool) -> Result<Option<ArrayD<F>>> {
        let mut grad = output_grad;
        for k in (0..self.cells.len()).rev() {
            match self.cells[k].backward(grad, input_grad || k > 0)? {
                Some(g) => grad = g,
                None => return Ok(None),
            }
        }
        Ok(Some(grad))
    }
}

impl<F: Float> Layer<F> for Recurrent<F> {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    /// `(batch, time, input)` to `(batch, time, hidden)`.
    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let starts = self.starts(&input)?;
        let mut y = input;
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        for (cell, start) in self.cells.iter_mut().zip(starts) {
            let (out, last) = cell.forward(y, start);
            y = out;
            hs.push(last.h);
            cs.extend(last.c);
        }
        let stack = |states: Vec<Array2<F>>| {
            let views: Vec<_> = states.iter().map(|a| a.view()).collect();
            ndarray::stack(Axis(0), &views).expect("states of one shape")
        };
        let last = State { h: stack(hs), c: (!cs.is_empty()).then(|| stack(cs)) };
        self.carried = (self.spec.state != StateMode::Reset).then(|| last.clone());
        self.last = Some(last);
        Ok(y)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let starts = self.starts(&input)?;
        Ok(self.cells.iter().zip(starts).fold(input, |y, (cell, start)| cell.infer(y, start)))
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        Ok(self.backward_cells(output_grad, true)?.expect("asked for"))
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.backward_cells(output_grad, false).map(drop)
    }

    fn params(&self) -> Vec<(String, &Param<F>)> {
        self.cells.iter().flat_map(Cell::params).collect()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        self.cells.iter_mut().flat_map(Cell::params_mut).collect()
    }

    fn reinitialize(&mut self, rng: &mut RandomState) {
        let values = self.spec.draw(rng).expect("the spec was valid when the layer was built");
        self.set_values(values);
    }

    fn reset_state(&mut self) {
        self.carried = None;
    }

    fn recurrent(&self) -> Option<&Recurrent<F>> {
        Some(self)
    }

    fn recurrent_mut(&mut self) -> Option<&mut Recurrent<F>> {
        Some(self)
    }
}
