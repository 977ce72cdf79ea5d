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
use std::cell::RefCell;

use scratch::rng::RandomState;
use scratch::spec::{CellKind, GruForm, RecurrentSpec, StateMode};
use tch::{nn, Tensor};

use super::{module_by_checked_forward, parameter, set_values, Layer};
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

/// The hidden state `(layers, batch, hidden)` and, for an LSTM, the cell state.
type State = (Tensor, Option<Tensor>);

/// A recurrent layer on libtorch over `(batch, time, input)` sequences, `(batch, time, hidden)` out;
/// see [`RecurrentSpec`] for the cells, the parameters and the state between calls.
#[derive(Debug)]
pub struct Recurrent {
    spec: RecurrentSpec,
    kernel: Kernel,
    /// Per cell of the stack: `weight_ih`, `weight_hh`, `bias_ih` and, with two biases, `bias_hh`.
    weights: Vec<Vec<Tensor>>,
    state: RefCell<States>,
}

#[derive(Debug, Default)]
struct States {
    carried: Option<State>,
    last: Option<State>,
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
        let layer = Recurrent { spec, kernel, weights, state: RefCell::default() };
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

    /// The final state of the last forward pass: `h` `(layers, batch, hidden)` (PyTorch's `h_n`) and,
    /// for an LSTM, `c` (`c_n`).
    pub fn final_state(&self) -> Option<(Tensor, Option<Tensor>)> {
        let state = self.state.borrow();
        state.last.as_ref().map(|(h, c)| (h.shallow_clone(), c.as_ref().map(Tensor::shallow_clone)))
    }

    /// Forgets the state carried between calls.
    pub fn reset_state(&self) {
        self.state.borrow_mut().carried = None;
    }

    fn initial_state(&self, batch: i64, like: &Tensor) -> Result<State> {
        let (layers, hidden) = (self.spec.layers as i64, self.spec.hidden as i64);
        let zeros = || Tensor::zeros([layers, batch, hidden], (like.kind(), like.device()));
        let lstm = self.spec.cell == CellKind::Lstm;
        let state = self.state.borrow();
        let Some((h, c)) = state.carried.as_ref().filter(|_| self.spec.state != StateMode::Reset) else {
            return Ok((zeros(), lstm.then(zeros)));
        };
        let fit = |a: &Tensor| -> Result<Tensor> {
            match a.size()[1] {
                rows if rows == batch => Ok(a.shallow_clone()),
                1 => Ok(a.expand([layers, batch, hidden], false)),
                rows => Err(scratch::Error::InvalidArgument(format!(
                    "the carried state has batch {rows}, this batch has {batch}: call reset_state() first, or \
                     carry the batch mean (StateMode::CarryMean)"
                ))
                .into()),
            }
        };
        Ok((fit(h)?, c.as_ref().map(fit).transpose()?))
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
    fn all_cells(&self, x: &Tensor, (h0, c0): State) -> (Tensor, State) {
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
        (y, (Tensor::stack(&hs, 0), c))
    }

    /// libtorch's fused kernel over the whole stack: `(batch, time, hidden)` and the final state.
    fn fused(&self, x: &Tensor, (h0, c0): State, train: bool) -> (Tensor, State) {
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
                (y, (h, Some(c)))
            }
            CellKind::Gru(_) => {
                let (y, h) = x.gru(&h0, &params, true, layers, 0.0, train, false, true);
                (y, (h, None))
            }
            CellKind::Rnn => {
                let (y, h) = x.rnn_tanh(&h0, &params, true, layers, 0.0, train, false, true);
                (y, (h, None))
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
        let size = xs.size();
        let batch = match size[..] {
            [b, t, v] if v == self.spec.input as i64 && b > 0 && t > 0 => b,
            _ => {
                let want = format!("(batch > 0, time > 0, {})", self.spec.input);
                return Err(scratch::Error::shape("input", want, size).into());
            }
        };
        let start = self.initial_state(batch, xs)?;
        let (hidden, last) = match self.kernel {
            Kernel::Cells => self.all_cells(xs, start),
            Kernel::Fused => self.fused(xs, start, train),
        };
        let detach = |(h, c): &State, f: &dyn Fn(&Tensor) -> Tensor| (f(h), c.as_ref().map(f));
        let mut state = self.state.borrow_mut();
        state.carried = match self.spec.state {
            StateMode::Reset => None,
            StateMode::Carry => Some(detach(&last, &|t| t.detach())),
            StateMode::CarryMean => Some(detach(&last, &|t| t.mean_dim(1, true, t.kind()).detach())),
        };
        state.last = Some(last);
        Ok(hidden)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        let names = self.spec.parameter_shapes().into_iter().map(|(name, _)| name);
        names.zip(self.weights.iter().flatten().map(Tensor::shallow_clone)).collect()
    }

    /// Draws as [`RecurrentSpec::draw`] says (canonical layout, so no conversion).
    fn reinitialize(&self, rng: &mut RandomState) {
        let values = self.spec.draw(rng).expect("the spec was validated when the layer was built");
        for (p, (_, v)) in self.weights.iter().flatten().zip(values) {
            set_values(p, &v);
        }
        self.reset_state();
    }

    fn recurrent(&self) -> Option<&Recurrent> {
        Some(self)
    }
}

module_by_checked_forward!(Recurrent);
