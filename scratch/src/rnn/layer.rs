//! The recurrent layer of the from-scratch engine: a cell unrolled over a sequence, with
//! back-propagation through time.

use ndarray::{s, Array2, Array3, ArrayD, ArrayView2, ArrayViewMut2, Axis, Ix2, Ix3, Zip};

use super::kernels;
use super::spec::{Biases, CellKind, GruForm, RecurrentSpec, StateMode};
use crate::layers::Layer;
use crate::linalg::{matmul, matmul_into};
use crate::ops::Mode;
use crate::param::{Layout, Param};
use crate::rng::RandomState;
use crate::{Error, Float, Result};

/// A hidden state `h` `(batch, hidden)`, with the cell state `c` for an LSTM.
#[derive(Clone, Debug, PartialEq)]
pub struct State<F> {
    /// The hidden state.
    pub h: Array2<F>,
    /// The LSTM's cell state.
    pub c: Option<Array2<F>>,
}

/// What the forward pass keeps for back-propagation through time (`T` steps, batch `B`, `G` gates of
/// `H`).
struct Cache<F> {
    /// The input, time-major: `(T·B, input)`.
    x: Array2<F>,
    /// The gate activations: `(T, B, G·H)`.
    gates: Array3<F>,
    /// The hidden states `h_0 … h_T`: `(T + 1, B, H)`.
    hs: Array3<F>,
    /// The LSTM's cell states `c_0 … c_T`: `(T + 1, B, H)`.
    cs: Option<Array3<F>>,
    /// Per step `(T, B, H)`: `tanh(c)` (LSTM), `W_hn h + b_hn` (PyTorch GRU) or `r ⊙ h` (book GRU).
    aux: Option<Array3<F>>,
}

/// A recurrent layer (RNN, LSTM or GRU, see [`CellKind`]) over `(batch, time, input)` sequences,
/// with an optional output projection: the book's `RNNLayer`, `LSTMLayer` and `GRULayer`.
///
/// The input products of all steps are one matrix product, `(T·B, input) × (input, G·H)`; each step
/// then adds its recurrent product `(B, H) × (H, G·H)` and applies the cell element-wise. Backward
/// runs the steps in reverse, and the weight gradients are again one product each over all steps:
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
/// use scratch::rnn::{CellKind, Recurrent, RecurrentSpec};
///
/// let spec = RecurrentSpec::new(CellKind::Lstm, 5, 8).with_output(3);
/// let mut lstm = Recurrent::<f64>::new(spec, &mut RandomState::new(0))?;
/// let y = lstm.forward(ndarray::Array3::<f64>::ones((2, 7, 5)).into_dyn(), Mode::Train)?;
/// assert_eq!(y.shape(), &[2, 7, 3]);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct Recurrent<F: Float> {
    spec: RecurrentSpec,
    /// `(input, G·H)`, canonical `(G·H, input)`.
    weight_ih: Param<F>,
    /// `(H, G·H)`, canonical `(G·H, H)`.
    weight_hh: Param<F>,
    bias_ih: Param<F>,
    bias_hh: Option<Param<F>>,
    /// `weight_out` `(H, output)`, canonical `(output, H)`, and `bias_out`.
    projection: Option<(Param<F>, Param<F>)>,
    carried: Option<State<F>>,
    last: Option<State<F>>,
    cache: Option<Cache<F>>,
}

fn matrix<F>(p: &Param<F>) -> ArrayView2<'_, F> {
    p.value.view().into_dimensionality::<Ix2>().expect("a weight is a matrix")
}

fn flat<'a, F>(a: &ArrayView2<'a, F>) -> &'a [F] {
    a.to_slice().expect("step buffers are contiguous")
}

impl<F: Float> Recurrent<F> {
    /// A layer as `spec` says, its weights drawn from `rng` ([`RecurrentSpec::draw`]).
    ///
    /// # Errors
    /// Invalid sizes or initialisation.
    pub fn new(spec: RecurrentSpec, rng: &mut RandomState) -> Result<Self> {
        let values = spec.draw(rng)?;
        let param = |name: &str, layout: Layout| {
            let (_, v) = values.iter().find(|(n, _)| *n == name).expect("drawn");
            Param::new(layout.from_canonical(&v.mapv(F::cast)), layout)
        };
        Ok(Recurrent {
            spec,
            weight_ih: param("weight_ih", Layout::SwapAxes01),
            weight_hh: param("weight_hh", Layout::SwapAxes01),
            bias_ih: param("bias_ih", Layout::Canonical),
            bias_hh: (spec.biases == Biases::Two).then(|| param("bias_hh", Layout::Canonical)),
            projection: spec
                .output
                .map(|_| (param("weight_out", Layout::SwapAxes01), param("bias_out", Layout::Canonical))),
            carried: None,
            last: None,
            cache: None,
        })
    }

    /// The layer's description.
    pub fn spec(&self) -> &RecurrentSpec {
        &self.spec
    }

    /// The final state of the last forward pass.
    pub fn final_state(&self) -> Option<&State<F>> {
        self.last.as_ref()
    }

    /// Sets the state the next call starts from: `h` `(batch or 1, hidden)` and, for an LSTM, `c` of
    /// the same shape. Used as the carried state of [`StateMode::Carry`] and [`StateMode::CarryMean`]
    /// (one row is broadcast over the batch).
    ///
    /// # Errors
    /// If a shape is wrong, `c` is missing for an LSTM or given for another cell, or the layer's mode
    /// is [`StateMode::Reset`].
    pub fn set_state(&mut self, h: Array2<F>, c: Option<Array2<F>>) -> Result<()> {
        if self.spec.state == StateMode::Reset {
            return Err(Error::InvalidArgument("set_state on a layer that resets its state at every call".into()));
        }
        let want = format!("(batch, {})", self.spec.hidden);
        if h.ncols() != self.spec.hidden || h.nrows() == 0 {
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

    fn initial_state(&self, batch: usize) -> Result<State<F>> {
        let h = self.spec.hidden;
        let zeros = || Array2::zeros((batch, h));
        let with_lstm_c = |c: Option<Array2<F>>| c.or_else(|| (self.spec.cell == CellKind::Lstm).then(zeros));
        let Some(carried) = self.carried.as_ref().filter(|_| self.spec.state != StateMode::Reset) else {
            return Ok(State { h: zeros(), c: with_lstm_c(None) });
        };
        let fit = |a: &Array2<F>| -> Result<Array2<F>> {
            if a.nrows() == batch {
                Ok(a.clone())
            } else if a.nrows() == 1 {
                Ok(a.broadcast((batch, h)).expect("one row broadcasts").to_owned())
            } else {
                Err(Error::InvalidArgument(format!(
                    "the carried state has batch {}, this batch has {batch}: call reset_state() first, or carry \
                     the batch mean (StateMode::CarryMean)",
                    a.nrows()
                )))
            }
        };
        Ok(State { h: fit(&carried.h)?, c: with_lstm_c(carried.c.as_ref().map(fit).transpose()?) })
    }

    /// The input products of every step plus the additive biases: `(T, B, G·H)`.
    fn input_products(&self, x: &Array2<F>, steps: usize, batch: usize) -> Array3<F> {
        let gh = self.spec.cell.gates() * self.spec.hidden;
        let mut a = matmul(&x.view(), &matrix(&self.weight_ih));
        a += &self.bias_ih.value;
        if let Some(b_hh) = &self.bias_hh {
            // A PyTorch GRU keeps b_hn inside the reset gate's product.
            let additive = if self.spec.cell == CellKind::Gru(GruForm::PyTorch) { 2 * self.spec.hidden } else { gh };
            let b_hh = b_hh.value.slice(s![..additive]);
            let b_hh = b_hh.broadcast((a.nrows(), additive)).expect("a row broadcasts");
            a.slice_mut(s![.., ..additive]).zip_mut_with(&b_hh, |a, &b| *a += b);
        }
        a.into_shape_with_order((steps, batch, gh)).expect("sizes agree")
    }

    /// Runs the cell over the sequence.
    fn unroll(&self, x: Array2<F>, steps: usize, batch: usize, start: State<F>) -> Cache<F> {
        let h = self.spec.hidden;
        let cell = self.spec.cell;
        let w_hh = matrix(&self.weight_hh);
        let mut gates = self.input_products(&x, steps, batch);
        let mut hs = Array3::zeros((steps + 1, batch, h));
        hs.index_axis_mut(Axis(0), 0).assign(&start.h);
        let mut cs = start.c.map(|c0| {
            let mut cs = Array3::zeros((steps + 1, batch, h));
            cs.index_axis_mut(Axis(0), 0).assign(&c0);
            cs
        });
        let mut aux = matches!(cell, CellKind::Lstm | CellKind::Gru(_)).then(|| Array3::zeros((steps, batch, h)));
        for t in 0..steps {
            let (done, mut rest) = hs.view_mut().split_at(Axis(0), t + 1);
            let h_prev = done.index_axis(Axis(0), t);
            let mut h_next = rest.index_axis_mut(Axis(0), 0);
            let h_next = h_next.as_slice_mut().expect("contiguous");
            let mut g = gates.index_axis_mut(Axis(0), t);
            match cell {
                CellKind::Rnn => {
                    matmul_into(&mut g, &h_prev, &w_hh, true);
                    kernels::rnn_forward(g.as_slice_mut().expect("contiguous"), h_next);
                }
                CellKind::Lstm => {
                    matmul_into(&mut g, &h_prev, &w_hh, true);
                    let cs = cs.as_mut().expect("an LSTM has cell states");
                    let (c_done, mut c_rest) = cs.view_mut().split_at(Axis(0), t + 1);
                    let mut tanh_c = aux.as_mut().expect("kept").index_axis_mut(Axis(0), t);
                    kernels::lstm_forward(
                        g.as_slice_mut().expect("contiguous"),
                        flat(&c_done.index_axis(Axis(0), t)),
                        c_rest.index_axis_mut(Axis(0), 0).as_slice_mut().expect("contiguous"),
                        tanh_c.as_slice_mut().expect("contiguous"),
                        h_next,
                        h,
                    );
                }
                CellKind::Gru(form) => {
                    matmul_into(&mut g.slice_mut(s![.., ..2 * h]), &h_prev, &w_hh.slice(s![.., ..2 * h]), true);
                    let mut extra = aux.as_mut().expect("kept").index_axis_mut(Axis(0), t);
                    let w_hn = w_hh.slice(s![.., 2 * h..]);
                    match form {
                        GruForm::PyTorch => {
                            matmul_into(&mut extra, &h_prev, &w_hn, false);
                            if let Some(b) = &self.bias_hh {
                                extra += &b.value.slice(s![2 * h..]);
                            }
                            let g = g.as_slice_mut().expect("contiguous");
                            kernels::gru_gates(g, flat(&h_prev), None, h);
                            kernels::gru_output(g, Some(flat(&extra.view())), flat(&h_prev), h_next, h);
                        }
                        GruForm::Book => {
                            kernels::gru_gates(
                                g.as_slice_mut().expect("contiguous"),
                                flat(&h_prev),
                                Some(extra.as_slice_mut().expect("contiguous")),
                                h,
                            );
                            matmul_into(&mut g.slice_mut(s![.., 2 * h..]), &extra.view(), &w_hn, true);
                            kernels::gru_output(g.as_slice_mut().expect("contiguous"), None, flat(&h_prev), h_next, h);
                        }
                    }
                }
            }
        }
        Cache { x, gates, hs, cs, aux }
    }

    /// The layer's output from the hidden states `h_1 … h_T`, batch-major `(B, T, ·)`.
    fn output(&self, cache: &Cache<F>, steps: usize, batch: usize) -> ArrayD<F> {
        let h = self.spec.hidden;
        let hidden = cache.hs.slice(s![1.., .., ..]);
        let time_major = match &self.projection {
            Some((w, b)) => {
                let hidden = hidden.to_shape((steps * batch, h)).expect("contiguous");
                let mut y = matmul(&hidden.view(), &matrix(w));
                y += &b.value;
                y.into_shape_with_order((steps, batch, self.spec.output_width())).expect("sizes agree")
            }
            None => hidden.to_owned(),
        };
        time_major.permuted_axes([1, 0, 2]).as_standard_layout().into_owned().into_dyn()
    }

    fn backward_impl(&mut self, output_grad: ArrayD<F>, input_grad: bool) -> Result<Option<ArrayD<F>>> {
        let cache =
            self.cache.take().ok_or_else(|| Error::InvalidArgument("Recurrent: backward before forward".into()))?;
        let (h, gh) = (self.spec.hidden, self.spec.cell.gates() * self.spec.hidden);
        let (steps, batch) = (cache.gates.shape()[0], cache.gates.shape()[1]);
        let want = [batch, steps, self.spec.output_width()];
        if output_grad.shape() != want {
            self.cache = Some(cache);
            return Err(Error::shape("output gradient", format!("{want:?}"), output_grad.shape()));
        }
        let rows = steps * batch;
        let dy = output_grad
            .into_dimensionality::<Ix3>()
            .expect("checked")
            .permuted_axes([1, 0, 2])
            .as_standard_layout()
            .into_owned();
        let dy = dy.into_shape_with_order((rows, want[2])).expect("sizes agree");
        let hs = cache.hs.view().into_shape_with_order(((steps + 1) * batch, h)).expect("contiguous");
        let d_hidden = match &mut self.projection {
            Some((w, b)) => {
                w.grad = matmul(&hs.slice(s![batch.., ..]).t(), &dy.view()).into_dyn();
                b.grad = dy.sum_axis(Axis(0)).into_dyn();
                matmul(&dy.view(), &matrix(w).t())
            }
            None => dy,
        };
        let d_hidden = d_hidden.into_shape_with_order((steps, batch, h)).expect("sizes agree");

        let w_hh = matrix(&self.weight_hh);
        let cell = self.spec.cell;
        let mut da = Array3::<F>::zeros((steps, batch, gh));
        let mut dah = (cell == CellKind::Gru(GruForm::PyTorch)).then(|| Array3::<F>::zeros((steps, batch, gh)));
        let mut dh = Array2::<F>::zeros((batch, h));
        let mut dh_next = Array2::<F>::zeros((batch, h));
        let mut dc = Array2::<F>::zeros((batch, h));
        let mut d_rh = Array2::<F>::zeros((batch, h));
        for t in (0..steps).rev() {
            Zip::from(&mut dh).and(&d_hidden.index_axis(Axis(0), t)).and(&dh_next).for_each(|d, &a, &b| *d = a + b);
            let g = cache.gates.index_axis(Axis(0), t);
            let h_prev = cache.hs.index_axis(Axis(0), t);
            let mut da_t = da.index_axis_mut(Axis(0), t);
            let dh_s = dh.as_slice().expect("contiguous");
            match cell {
                CellKind::Rnn => {
                    kernels::rnn_backward(flat(&cache.hs.index_axis(Axis(0), t + 1)), dh_s, slice_mut(&mut da_t));
                    matmul_into(&mut dh_next.view_mut(), &da_t.view(), &w_hh.t(), false);
                }
                CellKind::Lstm => {
                    let cs = cache.cs.as_ref().expect("an LSTM has cell states");
                    let tanh_c = cache.aux.as_ref().expect("kept").index_axis(Axis(0), t);
                    kernels::lstm_backward(
                        flat(&g),
                        flat(&cs.index_axis(Axis(0), t)),
                        flat(&tanh_c),
                        dh_s,
                        dc.as_slice_mut().expect("contiguous"),
                        slice_mut(&mut da_t),
                        h,
                    );
                    matmul_into(&mut dh_next.view_mut(), &da_t.view(), &w_hh.t(), false);
                }
                CellKind::Gru(GruForm::PyTorch) => {
                    let hn = cache.aux.as_ref().expect("kept").index_axis(Axis(0), t);
                    let mut dah_t = dah.as_mut().expect("kept").index_axis_mut(Axis(0), t);
                    kernels::gru_backward(
                        flat(&g),
                        flat(&h_prev),
                        dh_s,
                        slice_mut(&mut da_t),
                        dh_next.as_slice_mut().expect("contiguous"),
                        Some(kernels::ResetAfterProduct { hn: flat(&hn), dah: slice_mut(&mut dah_t) }),
                        h,
                    );
                    matmul_into(&mut dh_next.view_mut(), &dah_t.view(), &w_hh.t(), true);
                }
                CellKind::Gru(GruForm::Book) => {
                    kernels::gru_backward(
                        flat(&g),
                        flat(&h_prev),
                        dh_s,
                        slice_mut(&mut da_t),
                        dh_next.as_slice_mut().expect("contiguous"),
                        None,
                        h,
                    );
                    let w_hn = w_hh.slice(s![.., 2 * h..]);
                    matmul_into(&mut d_rh.view_mut(), &da_t.slice(s![.., 2 * h..]), &w_hn.t(), false);
                    kernels::gru_book_reset_backward(
                        flat(&g),
                        flat(&h_prev),
                        d_rh.as_slice().expect("contiguous"),
                        slice_mut(&mut da_t),
                        dh_next.as_slice_mut().expect("contiguous"),
                        h,
                    );
                    let w_hrz = w_hh.slice(s![.., ..2 * h]);
                    matmul_into(&mut dh_next.view_mut(), &da_t.slice(s![.., ..2 * h]), &w_hrz.t(), true);
                }
            }
        }

        let da = da.into_shape_with_order((rows, gh)).expect("sizes agree");
        let dah = dah.map(|a| a.into_shape_with_order((rows, gh)).expect("sizes agree"));
        let d_rec = dah.as_ref().unwrap_or(&da);
        let h_before = hs.slice(s![..rows, ..]);
        let mut dw_hh = Array2::<F>::zeros((h, gh));
        match (cell, &cache.aux) {
            (CellKind::Gru(GruForm::Book), Some(rh)) => {
                let rh = rh.view().into_shape_with_order((rows, h)).expect("contiguous");
                let (rz, n) = (s![.., ..2 * h], s![.., 2 * h..]);
                matmul_into(&mut dw_hh.slice_mut(rz), &h_before.t(), &d_rec.slice(rz), false);
                matmul_into(&mut dw_hh.slice_mut(n), &rh.t(), &d_rec.slice(n), false);
            }
            _ => matmul_into(&mut dw_hh.view_mut(), &h_before.t(), &d_rec.view(), false),
        }
        self.weight_hh.grad = dw_hh.into_dyn();
        if let Some(b) = &mut self.bias_hh {
            b.grad = d_rec.sum_axis(Axis(0)).into_dyn();
        }
        self.weight_ih.grad = matmul(&cache.x.t(), &da.view()).into_dyn();
        self.bias_ih.grad = da.sum_axis(Axis(0)).into_dyn();
        let dx = input_grad.then(|| {
            let dx = matmul(&da.view(), &matrix(&self.weight_ih).t());
            let dx = dx.into_shape_with_order((steps, batch, self.spec.input)).expect("sizes agree");
            dx.permuted_axes([1, 0, 2]).as_standard_layout().into_owned().into_dyn()
        });
        self.cache = Some(cache);
        Ok(dx)
    }
}

fn slice_mut<'a, F>(a: &'a mut ArrayViewMut2<'_, F>) -> &'a mut [F] {
    a.as_slice_mut().expect("step buffers are contiguous")
}

impl<F: Float> Layer<F> for Recurrent<F> {
    fn describe(&self) -> String {
        let s = &self.spec;
        match s.output {
            Some(o) => format!("{}({} -> {} -> {o})", s.cell.name(), s.input, s.hidden),
            None => format!("{}({} -> {})", s.cell.name(), s.input, s.hidden),
        }
    }

    /// `(batch, time, input)` to `(batch, time, output)`.
    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let (batch, steps) = match *input.shape() {
            [b, t, v] if v == self.spec.input && b > 0 && t > 0 => (b, t),
            _ => {
                let want = format!("(batch > 0, time > 0, {})", self.spec.input);
                return Err(Error::shape("input", want, input.shape()));
            }
        };
        let start = self.initial_state(batch)?;
        let x = input
            .into_dimensionality::<Ix3>()
            .expect("checked")
            .permuted_axes([1, 0, 2])
            .as_standard_layout()
            .into_owned();
        let x = x.into_shape_with_order((steps * batch, self.spec.input)).expect("sizes agree");
        let cache = self.unroll(x, steps, batch, start);
        let last = State {
            h: cache.hs.index_axis(Axis(0), steps).to_owned(),
            c: cache.cs.as_ref().map(|cs| cs.index_axis(Axis(0), steps).to_owned()),
        };
        self.carried = match self.spec.state {
            StateMode::Reset => None,
            StateMode::Carry => Some(last.clone()),
            StateMode::CarryMean => {
                let mean = |a: &Array2<F>| a.mean_axis(Axis(0)).expect("batch > 0").insert_axis(Axis(0));
                Some(State { h: mean(&last.h), c: last.c.as_ref().map(mean) })
            }
        };
        self.last = Some(last);
        let y = self.output(&cache, steps, batch);
        self.cache = Some(cache);
        Ok(y)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        Ok(self.backward_impl(output_grad, true)?.expect("asked for"))
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.backward_impl(output_grad, false).map(drop)
    }

    fn params(&self) -> Vec<(&'static str, &Param<F>)> {
        let mut out = vec![("weight_ih", &self.weight_ih), ("weight_hh", &self.weight_hh), ("bias_ih", &self.bias_ih)];
        out.extend(self.bias_hh.as_ref().map(|b| ("bias_hh", b)));
        if let Some((w, b)) = &self.projection {
            out.extend([("weight_out", w), ("bias_out", b)]);
        }
        out
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param<F>)> {
        let mut out = vec![
            ("weight_ih", &mut self.weight_ih),
            ("weight_hh", &mut self.weight_hh),
            ("bias_ih", &mut self.bias_ih),
        ];
        out.extend(self.bias_hh.as_mut().map(|b| ("bias_hh", b)));
        if let Some((w, b)) = &mut self.projection {
            out.extend([("weight_out", w), ("bias_out", b)]);
        }
        out
    }

    fn reinitialize(&mut self, rng: &mut RandomState) {
        let values = self.spec.draw(rng).expect("the spec was valid when the layer was built");
        for ((name, p), (_, v)) in self.params_mut().into_iter().zip(values) {
            p.set_canonical(&v.mapv(F::cast), name).expect("same shapes");
        }
        self.reset_state();
    }

    fn reset_state(&mut self) {
        self.carried = None;
    }
}
