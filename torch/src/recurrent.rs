//! Recurrent layers on libtorch: the same RNN, LSTM and GRU as the from-scratch engine's
//! [`scratch::rnn::Recurrent`], built from a [`RecurrentSpec`] with the same parameter names, layouts
//! and initial values. Two kernels compute them:
//!
//! - [`Kernel::Cells`]: the cell written step by step from tensor operations, in the style of the
//!   book's chapter 6 nodes (every cell and both GRU forms); autograd does back-propagation through
//!   time;
//! - [`Kernel::Builtin`]: libtorch's fused recurrent kernels (`at::lstm`, `at::gru`, `at::rnn_tanh`,
//!   what `tch::nn::lstm` and `tch::nn::gru` call), the fast path for the PyTorch-form cells.

use scratch::ops::Mode;
use scratch::rng::RandomState;
use scratch::rnn::{Biases, CellKind, GruForm, RecurrentSpec, StateMode};
use tch::{nn, Kind, Tensor};

use crate::layers::{set_values, Layer};
use crate::Result;

/// How a [`Recurrent`] layer computes its cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Step by step from tensor operations (every cell).
    Cells,
    /// libtorch's fused recurrent kernel (not the book-form GRU).
    Builtin,
}

/// A hidden state `(batch, hidden)` and, for an LSTM, a cell state.
type State = (Tensor, Option<Tensor>);

/// A recurrent layer on libtorch over `(batch, time, input)` sequences; see
/// [`scratch::rnn::RecurrentSpec`] for the cells, the parameters and the state between calls.
#[derive(Debug)]
pub struct Recurrent {
    spec: RecurrentSpec,
    kernel: Kernel,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Option<Tensor>,
    projection: Option<(Tensor, Tensor)>,
    carried: Option<State>,
    last: Option<State>,
}

impl Recurrent {
    /// A layer under `path` holding values of `kind`, drawn from `rng` exactly as the from-scratch
    /// layer draws them.
    ///
    /// # Errors
    /// Invalid sizes, or the builtin kernel asked for the book-form GRU (libtorch has none).
    pub fn new(
        path: &nn::Path<'_>,
        spec: RecurrentSpec,
        kernel: Kernel,
        kind: Kind,
        rng: &mut RandomState,
    ) -> Result<Self> {
        if kernel == Kernel::Builtin && spec.cell == CellKind::Gru(GruForm::Book) {
            return Err(scratch::Error::InvalidArgument(
                "libtorch has no book-form GRU kernel: use Kernel::Cells or GruForm::PyTorch".into(),
            )
            .into());
        }
        spec.validate()?;
        let options = (kind, path.device());
        let mut vars = spec.parameter_shapes().into_iter().map(|(name, shape)| {
            let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            path.add(name, Tensor::zeros(shape.as_slice(), options), true)
        });
        let mut next = || vars.next().expect("one variable per parameter");
        let (weight_ih, weight_hh, bias_ih) = (next(), next(), next());
        let bias_hh = (spec.biases == Biases::Two).then(&mut next);
        let projection = spec.output.map(|_| (next(), next()));
        let mut layer =
            Recurrent { spec, kernel, weight_ih, weight_hh, bias_ih, bias_hh, projection, carried: None, last: None };
        layer.reinitialize(rng);
        Ok(layer)
    }

    /// The final state of the last forward pass: `h` and, for an LSTM, `c`.
    pub fn final_state(&self) -> Option<(&Tensor, Option<&Tensor>)> {
        self.last.as_ref().map(|(h, c)| (h, c.as_ref()))
    }

    fn initial_state(&self, batch: i64, like: &Tensor) -> Result<State> {
        let zeros = || Tensor::zeros([batch, self.spec.hidden as i64], (like.kind(), like.device()));
        let lstm = self.spec.cell == CellKind::Lstm;
        let Some((h, c)) = self.carried.as_ref().filter(|_| self.spec.state != StateMode::Reset) else {
            return Ok((zeros(), lstm.then(zeros)));
        };
        let fit = |a: &Tensor| -> Result<Tensor> {
            match a.size()[0] {
                rows if rows == batch => Ok(a.shallow_clone()),
                1 => Ok(a.expand([batch, self.spec.hidden as i64], false)),
                rows => Err(scratch::Error::InvalidArgument(format!(
                    "the carried state has batch {rows}, this batch has {batch}: call reset_state() first, or \
                     carry the batch mean (StateMode::CarryMean)"
                ))
                .into()),
            }
        };
        Ok((fit(h)?, c.as_ref().map(fit).transpose()?))
    }

    /// The step-by-step cell: hidden states `(batch, time, hidden)` and the final state.
    fn cells(&self, x: &Tensor, (mut h, mut c): State) -> (Tensor, State) {
        let hidden = self.spec.hidden as i64;
        let mut a_x = x.matmul(&self.weight_ih.tr()) + &self.bias_ih;
        let rz_only = self.spec.cell == CellKind::Gru(GruForm::PyTorch);
        if let (Some(b), false) = (&self.bias_hh, rz_only) {
            a_x += b;
        }
        let mut outputs = Vec::with_capacity(x.size()[1] as usize);
        for t in 0..x.size()[1] {
            let a = a_x.select(1, t);
            h = match self.spec.cell {
                CellKind::Rnn => (a + h.matmul(&self.weight_hh.tr())).tanh(),
                CellKind::Lstm => {
                    let g = (a + h.matmul(&self.weight_hh.tr())).chunk(4, -1);
                    let (i, f, gg, o) = (g[0].sigmoid(), g[1].sigmoid(), g[2].tanh(), g[3].sigmoid());
                    let c_new = f * c.as_ref().expect("an LSTM has a cell state") + i * gg;
                    let h_new = o * c_new.tanh();
                    c = Some(c_new);
                    h_new
                }
                CellKind::Gru(GruForm::PyTorch) => {
                    let mut ah = h.matmul(&self.weight_hh.tr());
                    if let Some(b) = &self.bias_hh {
                        ah += b;
                    }
                    let (ax, ah) = (a.chunk(3, -1), ah.chunk(3, -1));
                    let r = (&ax[0] + &ah[0]).sigmoid();
                    let z = (&ax[1] + &ah[1]).sigmoid();
                    let n = (&ax[2] + r * &ah[2]).tanh();
                    (1.0 - &z) * n + z * &h
                }
                CellKind::Gru(GruForm::Book) => {
                    let w_rz = self.weight_hh.narrow(0, 0, 2 * hidden);
                    let w_n = self.weight_hh.narrow(0, 2 * hidden, hidden);
                    let ax = a.chunk(3, -1);
                    let rz = (a.narrow(-1, 0, 2 * hidden) + h.matmul(&w_rz.tr())).sigmoid().chunk(2, -1);
                    let (r, z) = (&rz[0], &rz[1]);
                    let n = (&ax[2] + (r * &h).matmul(&w_n.tr())).tanh();
                    (1.0 - z) * n + z * &h
                }
            };
            outputs.push(h.shallow_clone());
        }
        (Tensor::stack(&outputs, 1), (h, c))
    }

    /// libtorch's fused kernel: hidden states `(batch, time, hidden)` and the final state.
    fn builtin(&self, x: &Tensor, (h, c): State, train: bool) -> (Tensor, State) {
        let bias_hh = self.bias_hh.as_ref().map_or_else(|| self.bias_ih.zeros_like(), Tensor::shallow_clone);
        let params = [&self.weight_ih, &self.weight_hh, &self.bias_ih, &bias_hh];
        let h0 = h.unsqueeze(0);
        match self.spec.cell {
            CellKind::Lstm => {
                let c0 = c.expect("an LSTM has a cell state").unsqueeze(0);
                let (y, h, c) = x.lstm(&[&h0, &c0], &params, true, 1, 0.0, train, false, true);
                (y, (h.squeeze_dim(0), Some(c.squeeze_dim(0))))
            }
            CellKind::Gru(_) => {
                let (y, h) = x.gru(&h0, &params, true, 1, 0.0, train, false, true);
                (y, (h.squeeze_dim(0), None))
            }
            CellKind::Rnn => {
                let (y, h) = x.rnn_tanh(&h0, &params, true, 1, 0.0, train, false, true);
                (y, (h.squeeze_dim(0), None))
            }
        }
    }
}

impl Layer for Recurrent {
    fn describe(&self) -> String {
        let s = &self.spec;
        let projection = s.output.map(|o| format!(" -> {o}")).unwrap_or_default();
        format!("{}({} -> {}{projection}, {:?} kernel)", s.cell.name(), s.input, s.hidden, self.kernel)
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let size = x.size();
        let (batch, steps) = match size[..] {
            [b, t, v] if v == self.spec.input as i64 && b > 0 && t > 0 => (b, t),
            _ => {
                let want = format!("(batch > 0, time > 0, {})", self.spec.input);
                return Err(scratch::Error::shape("input", want, size).into());
            }
        };
        let start = self.initial_state(batch, x)?;
        let (hidden, last) = match self.kernel {
            Kernel::Cells => self.cells(x, start),
            Kernel::Builtin => self.builtin(x, start, mode == Mode::Train),
        };
        debug_assert_eq!(hidden.size()[1], steps);
        let detach = |(h, c): &State, f: &dyn Fn(&Tensor) -> Tensor| (f(h), c.as_ref().map(f));
        self.carried = match self.spec.state {
            StateMode::Reset => None,
            StateMode::Carry => Some(detach(&last, &|t| t.detach())),
            StateMode::CarryMean => Some(detach(&last, &|t| t.mean_dim(0, true, t.kind()).detach())),
        };
        self.last = Some(last);
        Ok(match &self.projection {
            Some((w, b)) => hidden.linear(w, Some(b)),
            None => hidden,
        })
    }

    fn params(&self) -> Vec<(&'static str, Tensor)> {
        let mut out = vec![
            ("weight_ih", self.weight_ih.shallow_clone()),
            ("weight_hh", self.weight_hh.shallow_clone()),
            ("bias_ih", self.bias_ih.shallow_clone()),
        ];
        out.extend(self.bias_hh.as_ref().map(|b| ("bias_hh", b.shallow_clone())));
        if let Some((w, b)) = &self.projection {
            out.extend([("weight_out", w.shallow_clone()), ("bias_out", b.shallow_clone())]);
        }
        out
    }

    /// Draws as [`RecurrentSpec::draw`] says (canonical layout, so no conversion).
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let values = self.spec.draw(rng).expect("the spec was validated when the layer was built");
        let mut params: Vec<&mut Tensor> = vec![&mut self.weight_ih, &mut self.weight_hh, &mut self.bias_ih];
        params.extend(self.bias_hh.as_mut());
        if let Some((w, b)) = &mut self.projection {
            params.extend([w, b]);
        }
        for (p, (_, v)) in params.into_iter().zip(values) {
            set_values(p, &v);
        }
        self.carried = None;
    }

    fn reset_state(&mut self) {
        self.carried = None;
    }
}
