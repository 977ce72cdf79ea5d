//! Recurrent layers on libtorch: the same RNN, LSTM and GRU as the from-scratch engine's
//! [`scratch::rnn::Recurrent`], built from a [`RecurrentSpec`] with the same parameter names
//! (PyTorch's: `weight_ih_l0`, ...), layouts and initial values. Two kernels compute them:
//!
//! - [`Kernel::Fused`]: libtorch's fused recurrent kernels (`at::lstm`, `at::gru`, `at::rnn_tanh`,
//!   what `tch::nn::lstm` and PyTorch's `nn.LSTM` run; cuDNN on a GPU), for the PyTorch-form cells;
//! - [`Kernel::Cells`]: the cell written step by step from tensor operations, in the style of the
//!   book's chapter 6 nodes (every cell, and the only one for the book-form GRU, which libtorch does
//!   not have); autograd does back-propagation through time.

use std::borrow::Borrow;

use scratch::rng::RandomState;
use scratch::spec::{CellKind, GruForm, RecurrentSpec, StateStart};
use tch::{nn, Tensor};

use super::{module_by_checked_forward, parameter, set_values, Layer, StatePass};
use crate::Result;

/// How a [`Recurrent`] layer computes its cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernel {
    /// libtorch's fused kernel where it has the cell (not the book-form GRU, which falls back to
    /// [`Kernel::Cells`]).
    #[default]
    Fused,
    /// Step by step from tensor operations (every cell).
    Cells,
}

/// The state of a recurrent layer: the hidden state `h` of every cell, `(layers, batch, hidden)`
/// (PyTorch's `h_n`), and for an LSTM the cell state `c` of the same shape (`c_n`).
#[derive(Debug)]
pub struct RecurrentState {
    /// The hidden states.
    pub h: Tensor,
    /// The LSTM's cell states.
    pub c: Option<Tensor>,
}

impl RecurrentState {
    /// The same values, cut from the graph that computed them: the state a later call starts from
    /// (truncated back-propagation through time).
    pub fn detach(&self) -> Self {
        RecurrentState { h: self.h.detach(), c: self.c.as_ref().map(Tensor::detach) }
    }

    /// The number of rows (the batch of the call that left it).
    pub fn rows(&self) -> i64 {
        self.h.size().get(1).copied().unwrap_or(0)
    }
}

/// A recurrent layer on libtorch over `(batch, time, input)` sequences, `(batch, time, hidden)` out;
/// see [`RecurrentSpec`] for the cells and the parameters.
///
/// Like tch's recurrent modules it holds no state: [`Recurrent::seq_init`] takes the state a call
/// starts from and returns its final state; [`Recurrent::seq`] and the [`Layer`] forward pass start from
/// zeros. A network's forward pass with state ([`crate::Net::f_forward_state`]) starts each recurrent
/// layer from the state it left, as its description's [`StateMode`](scratch::spec::StateMode) says.
#[derive(Debug)]
pub struct Recurrent {
    spec: RecurrentSpec,
    kernel: Kernel,
    /// Per cell of the stack: `weight_ih`, `weight_hh`, `bias_ih` and, with two biases, `bias_hh`.
    weights: Vec<Vec<Tensor>>,
}

/// The recurrent layer `spec` describes, its parameters under `path` (of the path's kind and device),
/// drawn from `rng` exactly as the from-scratch layer draws them, computed by libtorch's fused kernel
/// where it has the cell; the counterpart of `tch::nn::lstm`, `nn::gru` and `nn::rnn`.
///
/// # Errors
/// Invalid sizes.
pub fn recurrent<'a>(path: impl Borrow<nn::Path<'a>>, spec: RecurrentSpec, rng: &mut RandomState) -> Result<Recurrent> {
    Recurrent::new(path, spec, Kernel::Fused, rng)
}

impl Recurrent {
    /// As [`recurrent`], with the given kernel.
    ///
    /// # Errors
    /// Invalid sizes.
    pub fn new<'a>(
        path: impl Borrow<nn::Path<'a>>,
        spec: RecurrentSpec,
        kernel: Kernel,
        rng: &mut RandomState,
    ) -> Result<Self> {
        spec.validate()?;
        let path = path.borrow();
        let shapes = spec.parameter_shapes();
        let per_cell = spec.cell_parameters().len();
        let weights = shapes
            .chunks(per_cell)
            .map(|cell| cell.iter().map(|(name, shape)| parameter(path, name, shape)).collect())
            .collect();
        let kernel = if spec.cell == CellKind::Gru(GruForm::Book) { Kernel::Cells } else { kernel };
        let layer = Recurrent { spec, kernel, weights };
        layer.reinitialize(rng);
        Ok(layer)
    }

    /// The layer's description.
    pub fn spec(&self) -> &RecurrentSpec {
        &self.spec
    }

    /// The kernel that computes the cells.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Zeros: the state a call starts from when nothing is carried.
    pub fn zero_state(&self, batch: i64, (kind, device): (tch::Kind, tch::Device)) -> RecurrentState {
        let (layers, hidden) = (self.spec.layers as i64, self.spec.hidden as i64);
        let zeros = || Tensor::zeros([layers, batch, hidden], (kind, device));
        RecurrentState { h: zeros(), c: (self.spec.cell == CellKind::Lstm).then(zeros) }
    }

    /// The output `(batch, time, hidden)` on `xs` and the final state, starting from zeros (tch's
    /// `RNN::seq`).
    ///
    /// # Errors
    /// An input of the wrong shape.
    pub fn seq(&self, xs: &Tensor, train: bool) -> Result<(Tensor, RecurrentState)> {
        let batch = self.batch_of(xs)?;
        self.run(xs, self.zero_state(batch, (xs.kind(), xs.device())), train)
    }

    /// The output `(batch, time, hidden)` on `xs` and the final state, starting from `state`, which
    /// must have the batch's rows (tch's `RNN::seq_init`). Gradients flow into `state`; detach it to
    /// stop them ([`RecurrentState::detach`]).
    ///
    /// # Errors
    /// An input or a state of the wrong shape.
    pub fn seq_init(&self, xs: &Tensor, state: &RecurrentState, train: bool) -> Result<(Tensor, RecurrentState)> {
        let batch = self.batch_of(xs)?;
        self.check_state(state, Some(batch))?;
        let start = RecurrentState { h: state.h.shallow_clone(), c: state.c.as_ref().map(Tensor::shallow_clone) };
        self.run(xs, start, train)
    }

    /// Checks that `state` is this layer's: `(layers, rows, hidden)` tensors (`rows` the given number,
    /// or any), a cell state for an LSTM and for nothing else.
    fn check_state(&self, state: &RecurrentState, rows: Option<i64>) -> Result<()> {
        let (layers, hidden) = (self.spec.layers as i64, self.spec.hidden as i64);
        let want = match rows {
            Some(rows) => format!("({layers}, {rows}, {hidden})"),
            None => format!("({layers}, rows, {hidden})"),
        };
        let fits = |t: &Tensor| match t.size()[..] {
            [l, r, h] => l == layers && h == hidden && r > 0 && rows.is_none_or(|rows| r == rows),
            _ => false,
        };
        if !fits(&state.h) {
            return Err(scratch::Error::shape("hidden state", want, state.h.size()).into());
        }
        match (&state.c, self.spec.cell == CellKind::Lstm) {
            (Some(c), true) if !fits(c) || c.size() != state.h.size() => {
                Err(scratch::Error::shape("cell state", want, c.size()).into())
            }
            (None, true) | (Some(_), false) => {
                Err(scratch::Error::InvalidArgument("an LSTM, and only an LSTM, has a cell state".into()).into())
            }
            _ => Ok(()),
        }
    }

    /// The batch size of an input `(batch > 0, time > 0, input)`.
    fn batch_of(&self, xs: &Tensor) -> Result<i64> {
        match xs.size()[..] {
            [b, t, v] if v == self.spec.input as i64 && b > 0 && t > 0 => Ok(b),
            _ => {
                let want = format!("(batch > 0, time > 0, {})", self.spec.input);
                Err(scratch::Error::shape("input", want, xs.size()).into())
            }
        }
    }

    /// The state a call on `batch` rows starts from when the layer carried `carried`, as the
    /// description's [`StateMode::start`](scratch::spec::StateMode::start) says.
    ///
    /// # Errors
    /// A carried state that is not this layer's, or whose rows do not fit the batch.
    fn start(&self, carried: Option<&RecurrentState>, batch: i64, like: &Tensor) -> Result<RecurrentState> {
        let rows = carried.map(|s| s.rows() as usize);
        let start = self.spec.state.start(rows, batch as usize)?;
        let Some(carried) = carried.filter(|_| start != StateStart::Zeros) else {
            return Ok(self.zero_state(batch, (like.kind(), like.device())));
        };
        self.check_state(carried, None)?;
        let shape = [self.spec.layers as i64, batch, self.spec.hidden as i64];
        let fit = |t: &Tensor| match start {
            StateStart::Mean => t.mean_dim(1, true, t.kind()).expand(shape, false),
            StateStart::Broadcast => t.expand(shape, false),
            StateStart::Carried | StateStart::Zeros => t.shallow_clone(),
        };
        Ok(RecurrentState { h: fit(&carried.h), c: carried.c.as_ref().map(fit) })
    }

    /// Every cell over `xs` from `start`, with the layer's kernel.
    fn run(&self, xs: &Tensor, start: RecurrentState, train: bool) -> Result<(Tensor, RecurrentState)> {
        Ok(match self.kernel {
            Kernel::Cells => self.all_cells(xs, start),
            Kernel::Fused => self.fused(xs, start, train),
        })
    }

    /// One cell of the stack step by step: `(batch, time, hidden)` and the cell's final state.
    fn cells(
        &self,
        w: &[Tensor],
        x: &Tensor,
        mut h: Tensor,
        mut c: Option<Tensor>,
    ) -> (Tensor, Tensor, Option<Tensor>) {
        let hidden = self.spec.hidden as i64;
        let (weight_ih, weight_hh, bias_ih, bias_hh) = (&w[0], &w[1], &w[2], w.get(3));
        let mut a_x = x.matmul(&weight_ih.tr()) + bias_ih;
        let rz_only = self.spec.cell == CellKind::Gru(GruForm::PyTorch);
        if let (Some(b), false) = (bias_hh, rz_only) {
            a_x += b;
        }
        let steps = x.size()[1];
        let mut outputs = Vec::with_capacity(steps as usize);
        for t in 0..steps {
            let a = a_x.select(1, t);
            h = match self.spec.cell {
                CellKind::Rnn => (a + h.matmul(&weight_hh.tr())).tanh(),
                CellKind::Lstm => {
                    let g = (a + h.matmul(&weight_hh.tr())).chunk(4, -1);
                    let (i, f, gg, o) = (g[0].sigmoid(), g[1].sigmoid(), g[2].tanh(), g[3].sigmoid());
                    let c_prev = c.take().unwrap_or_else(|| h.zeros_like());
                    let c_new = f * c_prev + i * gg;
                    let h_new = o * c_new.tanh();
                    c = Some(c_new);
                    h_new
                }
                CellKind::Gru(GruForm::PyTorch) => {
                    let mut ah = h.matmul(&weight_hh.tr());
                    if let Some(b) = bias_hh {
                        ah += b;
                    }
                    let (ax, ah) = (a.chunk(3, -1), ah.chunk(3, -1));
                    let r = (&ax[0] + &ah[0]).sigmoid();
                    let z = (&ax[1] + &ah[1]).sigmoid();
                    let n = (&ax[2] + r * &ah[2]).tanh();
                    (1.0 - &z) * n + z * &h
                }
                CellKind::Gru(GruForm::Book) => {
                    let w_rz = weight_hh.narrow(0, 0, 2 * hidden);
                    let w_n = weight_hh.narrow(0, 2 * hidden, hidden);
                    let ax = a.chunk(3, -1);
                    let rz = (a.narrow(-1, 0, 2 * hidden) + h.matmul(&w_rz.tr())).sigmoid().chunk(2, -1);
                    let (r, z) = (&rz[0], &rz[1]);
                    let n = (&ax[2] + (r * &h).matmul(&w_n.tr())).tanh();
                    (1.0 - z) * n + z * &h
                }
            };
            outputs.push(h.shallow_clone());
        }
        (Tensor::stack(&outputs, 1), h, c)
    }

    /// Every cell step by step: the top cell's `(batch, time, hidden)` and the stacked final states.
    fn all_cells(&self, x: &Tensor, RecurrentState { h: h0, c: c0 }: RecurrentState) -> (Tensor, RecurrentState) {
        let mut y = x.shallow_clone();
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        for (k, w) in self.weights.iter().enumerate() {
            let k = k as i64;
            let (out, h, c) = self.cells(w, &y, h0.select(0, k), c0.as_ref().map(|c| c.select(0, k)));
            y = out;
            hs.push(h);
            cs.extend(c);
        }
        let c = (!cs.is_empty()).then(|| Tensor::stack(&cs, 0));
        (y, RecurrentState { h: Tensor::stack(&hs, 0), c })
    }

    /// libtorch's fused kernel over the whole stack: `(batch, time, hidden)` and the final state.
    fn fused(
        &self,
        x: &Tensor,
        RecurrentState { h: h0, c: c0 }: RecurrentState,
        train: bool,
    ) -> (Tensor, RecurrentState) {
        let zero_biases: Vec<Tensor> =
            self.weights.iter().filter(|w| w.len() == 3).map(|w| w[2].zeros_like()).collect();
        let mut zeros = zero_biases.iter();
        let params: Vec<&Tensor> = self
            .weights
            .iter()
            .flat_map(|w| {
                let second_bias = if w.len() == 4 { &w[3] } else { zeros.next().expect("one zero bias per cell") };
                [&w[0], &w[1], &w[2], second_bias]
            })
            .collect();
        let layers = self.spec.layers as i64;
        match self.spec.cell {
            CellKind::Lstm => {
                let c0 = c0.unwrap_or_else(|| h0.zeros_like());
                let (y, h, c) = x.lstm(&[&h0, &c0], &params, true, layers, 0.0, train, false, true);
                (y, RecurrentState { h, c: Some(c) })
            }
            CellKind::Gru(_) => {
                let (y, h) = x.gru(&h0, &params, true, layers, 0.0, train, false, true);
                (y, RecurrentState { h, c: None })
            }
            CellKind::Rnn => {
                let (y, h) = x.rnn_tanh(&h0, &params, true, layers, 0.0, train, false, true);
                (y, RecurrentState { h, c: None })
            }
        }
    }
}

impl Layer for Recurrent {
    fn describe(&self) -> String {
        let kernel = match self.kernel {
            Kernel::Fused => "libtorch's fused kernel",
            Kernel::Cells => "step-by-step cells",
        };
        format!("{} ({kernel})", self.spec.describe())
    }

    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.seq(xs, train)?.0)
    }

    /// Starts from the state this layer left in `state` (as its description's mode says) and leaves
    /// its final state there.
    fn f_forward_state(&self, xs: &Tensor, train: bool, state: &mut StatePass<'_>) -> Result<Tensor> {
        let start = self.start(state.carried(), self.batch_of(xs)?, xs)?;
        let (y, last) = self.run(xs, start, train)?;
        state.leave(last);
        Ok(y)
    }

    /// Draws as [`RecurrentSpec::draw`] says (canonical layout, so no conversion).
    fn reinitialize(&self, rng: &mut RandomState) {
        let values = self.spec.draw(rng).expect("the spec was validated when the layer was built");
        for (p, (_, v)) in self.weights.iter().flatten().zip(values) {
            set_values(p, &v);
        }
    }

    fn recurrent(&self) -> Option<&Recurrent> {
        Some(self)
    }
}

module_by_checked_forward!(Recurrent);
