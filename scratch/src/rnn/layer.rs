//! The recurrent layer of the from-scratch engine: a cell unrolled over a sequence, with
//! back-propagation through time.

use ndarray::{
    s, Array, Array2, Array3, ArrayD, ArrayView1, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis, Ix2, Ix3,
    ShapeBuilder,
};
use rayon::prelude::*;

use super::{kernels, simd};
use crate::layers::Layer;
use crate::linalg::{matmul, matmul_into, matmul_into_threaded};
use crate::ops::Mode;
use crate::param::{Layout, Param};
use crate::rng::RandomState;
use crate::spec::{Biases, CellKind, GruForm, RecurrentSpec, StateMode};
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

/// One cell's state: `h` `(batch, hidden)` and, for an LSTM, `c`.
struct CellState<F> {
    h: Array2<F>,
    c: Option<Array2<F>>,
}

/// What the forward pass keeps for back-propagation through time (`T` steps, batch `B`, `G` gates of
/// `H`). States are feature-major, `(features, time, batch)`: one step is a `(features, batch)`
/// matrix, the layout in which the per-step products run fastest, and all steps together are a
/// `(features, T·B)` matrix for the weight gradients. Buffers a cell does not use have no rows.
struct Cache<F> {
    /// The input, time-major: `(T·B, input)`.
    x: Array2<F>,
    /// The gate activations: `(G·H, T, B)`.
    gates: Array3<F>,
    /// The hidden states `h_0 … h_T`: `(H, T + 1, B)`.
    hs: Array3<F>,
    /// The LSTM's cell states `c_0 … c_T`: `(H, T + 1, B)`.
    cs: Array3<F>,
    /// Per step `(H, T, B)`: `tanh(c)` (LSTM), `W_hn h + b_hn` (PyTorch GRU) or `r ⊙ h` (book GRU).
    aux: Array3<F>,
    /// `W_ih` and `W_hh` in their canonical `(G·H, ·)` layout, contiguous.
    w_ih: Array2<F>,
    w_hh: Array2<F>,
}

/// The backward pass's buffers: the hidden-state gradient `(H, T, B)` feature-major, and the gate
/// gradients `(G·H, T, B)` (`dah`: the recurrent side of the PyTorch GRU's).
struct Gradients<F> {
    d_hidden: Array3<F>,
    da: Array3<F>,
    dah: Array3<F>,
}

/// `old` if it has shape `dim`, else a new array of zeros. The layer keeps its buffers from one call
/// to the next: allocating megabytes afresh at every call costs more than the arithmetic done in them
/// (every page is faulted in and cleared again).
fn reuse<F: Float, D: ndarray::Dimension>(old: Option<Array<F, D>>, dim: D) -> Array<F, D> {
    match old {
        Some(a) if a.raw_dim() == dim => a,
        _ => Array::zeros(dim),
    }
}

/// One block of batch columns of the per-step buffers, unrolled on its own thread: the recurrence of
/// each sequence is independent of the others.
struct ForwardBlock<'a, F> {
    gates: ArrayViewMut3<'a, F>,
    hs: ArrayViewMut3<'a, F>,
    cs: ArrayViewMut3<'a, F>,
    aux: ArrayViewMut3<'a, F>,
}

/// One block of batch columns for the backward pass: the states (read), the gradient reaching each
/// step's hidden output, and the gate gradients (written; `dah` only for the PyTorch GRU).
struct BackwardBlock<'a, F> {
    gates: ArrayView3<'a, F>,
    hs: ArrayView3<'a, F>,
    cs: ArrayView3<'a, F>,
    aux: ArrayView3<'a, F>,
    d_hidden: ArrayView3<'a, F>,
    da: ArrayViewMut3<'a, F>,
    dah: ArrayViewMut3<'a, F>,
}

/// Columns per block: the batch split evenly over the threads, in blocks of at least 8 sequences.
fn block_columns(batch: usize) -> usize {
    let blocks = rayon::current_num_threads().min(batch / 8).max(1);
    batch.div_ceil(blocks)
}

/// Runs `f` on every block, in parallel when there are several.
fn run_blocks<T: Send>(blocks: Vec<T>, f: impl Fn(T) + Sync + Send) {
    if blocks.len() == 1 {
        blocks.into_iter().for_each(f);
    } else {
        blocks.into_par_iter().for_each(f);
    }
}

/// Steps `t0 .. t0 + steps` of a `(features, T', B)` buffer as one `(features, steps·B)` matrix,
/// without copying.
fn merged<F>(a: &Array3<F>, t0: usize, steps: usize) -> ArrayView2<'_, F> {
    let (rows, span, batch) = a.dim();
    let data = &a.as_slice().expect("state buffers are contiguous")[(t0 * batch).min(a.len())..];
    let shape = (rows, steps * batch).strides((span * batch, 1));
    ArrayView2::from_shape(shape, data).expect("the steps lie inside the buffer")
}

/// `a` with `bias[r]` added to every element of row `r`.
fn add_to_rows<F: Float>(mut a: ArrayViewMut2<'_, F>, bias: ArrayView1<'_, F>) {
    a += &bias.insert_axis(Axis(1));
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

/// One cell of the stack unrolled over the sequence, with back-propagation through time; its spec is
/// the layer's with this cell's input size and one layer.
struct Cell<F: Float> {
    spec: RecurrentSpec,
    /// The cell's index in the stack: the `k` of its parameters' `_l{k}`.
    index: usize,
    /// `(input, G·H)`, canonical `(G·H, input)`.
    weight_ih: Param<F>,
    /// `(H, G·H)`, canonical `(G·H, H)`.
    weight_hh: Param<F>,
    bias_ih: Param<F>,
    bias_hh: Option<Param<F>>,
    cache: Option<Cache<F>>,
    gradients: Option<Gradients<F>>,
}

fn matrix<F>(p: &Param<F>) -> ArrayView2<'_, F> {
    p.value.view().into_dimensionality::<Ix2>().expect("a weight is a matrix")
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
                let mut next = |layout: Layout| {
                    let v = values.next().expect("one value per parameter");
                    Param::new(layout.from_canonical(&v.mapv(F::cast)), layout)
                };
                let (weight_ih, weight_hh) = (next(Layout::SwapAxes01), next(Layout::SwapAxes01));
                let bias_ih = next(Layout::Canonical);
                let bias_hh = (self.spec.biases == Biases::Two).then(|| next(Layout::Canonical));
                let spec = RecurrentSpec { input: self.spec.input_of(index), layers: 1, ..self.spec };
                Cell { spec, index, weight_ih, weight_hh, bias_ih, bias_hh, cache: None, gradients: None }
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
    /// `c` of the same shape. Used as the carried state of [`StateMode::Carry`] and
    /// [`StateMode::CarryMean`] (one row is broadcast over the batch).
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

    /// The state cell `k` starts this call from, for a batch of `batch`.
    fn initial_state(&self, k: usize, batch: usize) -> Result<CellState<F>> {
        let h = self.spec.hidden;
        let zeros = || Array2::zeros((batch, h));
        let lstm = self.spec.cell == CellKind::Lstm;
        let Some(carried) = self.carried.as_ref().filter(|_| self.spec.state != StateMode::Reset) else {
            return Ok(CellState { h: zeros(), c: lstm.then(zeros) });
        };
        let fit = |a: &Array3<F>| -> Result<Array2<F>> {
            let a = a.index_axis(Axis(0), k);
            if a.nrows() == batch {
                Ok(a.to_owned())
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
        let c = match &carried.c {
            Some(c) => Some(fit(c)?),
            None => lstm.then(zeros),
        };
        Ok(CellState { h: fit(&carried.h)?, c })
    }

    /// Runs the cells backward from the gradient of the top cell's output; the input gradient of the
    /// bottom cell if `input_grad`.
    fn backward_cells(&mut self, output_grad: ArrayD<F>, input_grad: bool) -> Result<Option<ArrayD<F>>> {
        let mut grad = output_grad;
        for k in (0..self.cells.len()).rev() {
            match self.cells[k].backward_impl(grad, input_grad || k > 0)? {
                Some(g) => grad = g,
                None => return Ok(None),
            }
        }
        Ok(Some(grad))
    }
}

impl<F: Float> Cell<F> {
    /// The canonical `(G·H, ·)` weight, contiguous, for the products in the feature-major layout.
    fn canonical(p: &Param<F>, old: Option<Array2<F>>) -> Array2<F> {
        let w = matrix(p);
        let mut out = reuse(old, w.t().raw_dim());
        out.assign(&w.t());
        out
    }

    /// The input products of every step plus the additive biases, written over `a`: `(G·H, T·B)`.
    fn input_products(&self, x: &Array2<F>, w_ih: &Array2<F>, a: &mut Array2<F>) {
        let (h, gh) = (self.spec.hidden, self.spec.cell.gates() * self.spec.hidden);
        let mut bias = self.bias_ih.value.clone();
        if let Some(b_hh) = &self.bias_hh {
            // A PyTorch GRU keeps b_hn inside the reset gate's product.
            let additive = if self.spec.cell == CellKind::Gru(GruForm::PyTorch) { 2 * h } else { gh };
            bias.slice_mut(s![..additive]).zip_mut_with(&b_hh.value.slice(s![..additive]), |b, &c| *b += c);
        }
        for (mut row, &b) in a.rows_mut().into_iter().zip(&bias) {
            row.fill(b);
        }
        matmul_into_threaded(&mut a.view_mut(), &w_ih.view(), &x.t(), true);
    }

    /// Runs the cell over the sequences of one block of batch columns.
    #[inline(always)]
    fn unroll_block(&self, w_hh: &ArrayView2<'_, F>, mut blk: ForwardBlock<'_, F>) {
        let h = self.spec.hidden;
        for t in 0..blk.gates.dim().1 {
            let (prev, next) = blk.hs.multi_slice_mut((s![.., t, ..], s![.., t + 1, ..]));
            let h_prev = prev.view();
            let mut g = blk.gates.index_axis_mut(Axis(1), t);
            match self.spec.cell {
                CellKind::Rnn => {
                    matmul_into(&mut g, w_hh, &h_prev, true);
                    kernels::rnn_forward(g, next);
                }
                CellKind::Lstm => {
                    matmul_into(&mut g, w_hh, &h_prev, true);
                    let (c_prev, c_next) = blk.cs.multi_slice_mut((s![.., t, ..], s![.., t + 1, ..]));
                    kernels::lstm_forward(g, c_prev.view(), c_next, blk.aux.index_axis_mut(Axis(1), t), next);
                }
                CellKind::Gru(form) => {
                    let (w_rz, w_n) = (w_hh.slice(s![..2 * h, ..]), w_hh.slice(s![2 * h.., ..]));
                    matmul_into(&mut g.slice_mut(s![..2 * h, ..]), &w_rz, &h_prev, true);
                    let mut extra = blk.aux.index_axis_mut(Axis(1), t);
                    match form {
                        GruForm::PyTorch => {
                            matmul_into(&mut extra, &w_n, &h_prev, false);
                            if let Some(b) = &self.bias_hh {
                                let b_hn = b.value.slice(s![2 * h..]).into_dimensionality().expect("a vector");
                                add_to_rows(extra.view_mut(), b_hn);
                            }
                            kernels::gru_gates(g.view_mut(), h_prev, None);
                            kernels::gru_output(g, Some(extra.view()), h_prev, next);
                        }
                        GruForm::Book => {
                            kernels::gru_gates(g.view_mut(), h_prev, Some(extra.view_mut()));
                            matmul_into(&mut g.slice_mut(s![2 * h.., ..]), &w_n, &extra.view(), true);
                            kernels::gru_output(g, None, h_prev, next);
                        }
                    }
                }
            }
        }
    }

    /// [`Recurrent::unroll_block`], with AVX2 and FMA where the processor has them (see
    /// [`simd::wide`]).
    fn unroll_block_dispatch(&self, w_hh: &ArrayView2<'_, F>, blk: ForwardBlock<'_, F>) {
        #[cfg(target_arch = "x86_64")]
        if simd::wide() {
            // SAFETY: the processor has AVX2 and FMA.
            #[allow(unsafe_code)]
            return unsafe { self.unroll_block_avx2(w_hh, blk) };
        }
        self.unroll_block(w_hh, blk)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn unroll_block_avx2(&self, w_hh: &ArrayView2<'_, F>, blk: ForwardBlock<'_, F>) {
        self.unroll_block(w_hh, blk)
    }

    /// [`Recurrent::backward_block`], with AVX2 and FMA where the processor has them.
    fn backward_block_dispatch(&self, w_hh: &ArrayView2<'_, F>, blk: BackwardBlock<'_, F>) {
        #[cfg(target_arch = "x86_64")]
        if simd::wide() {
            // SAFETY: the processor has AVX2 and FMA.
            #[allow(unsafe_code)]
            return unsafe { self.backward_block_avx2(w_hh, blk) };
        }
        self.backward_block(w_hh, blk)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn backward_block_avx2(&self, w_hh: &ArrayView2<'_, F>, blk: BackwardBlock<'_, F>) {
        self.backward_block(w_hh, blk)
    }

    /// Runs the cell over the sequence, the batch split in blocks over the threads, in the buffers of
    /// the previous call where they fit.
    fn unroll(&self, input: ArrayD<F>, start: CellState<F>, old: Option<Cache<F>>) -> Cache<F> {
        let (batch, steps, h) = (input.shape()[0], input.shape()[1], self.spec.hidden);
        let gh = self.spec.cell.gates() * h;
        let (old_x, old_gates, old_hs, old_cs, old_aux, old_w_ih, old_w_hh) = match old {
            Some(c) => (Some(c.x), Some(c.gates), Some(c.hs), Some(c.cs), Some(c.aux), Some(c.w_ih), Some(c.w_hh)),
            None => Default::default(),
        };
        // (B, T, in) to time-major (T·B, in).
        let mut x = reuse(old_x, ndarray::Dim([steps * batch, self.spec.input]));
        let time_major = input.into_dimensionality::<Ix3>().expect("checked").permuted_axes([1, 0, 2]);
        x.assign(&time_major.to_shape((steps * batch, self.spec.input)).expect("sizes agree"));
        let (w_ih, w_hh) = (Self::canonical(&self.weight_ih, old_w_ih), Self::canonical(&self.weight_hh, old_w_hh));
        let mut gates = reuse(
            old_gates.and_then(|g| g.into_shape_with_order((gh, steps * batch)).ok()),
            ndarray::Dim([gh, steps * batch]),
        );
        self.input_products(&x, &w_ih, &mut gates);
        let mut gates = gates.into_shape_with_order((gh, steps, batch)).expect("sizes agree");
        let mut hs = reuse(old_hs, ndarray::Dim([h, steps + 1, batch]));
        hs.index_axis_mut(Axis(1), 0).assign(&start.h.t());
        let mut cs = reuse(old_cs, ndarray::Dim([start.c.as_ref().map_or(0, |_| h), steps + 1, batch]));
        if let Some(c0) = &start.c {
            cs.index_axis_mut(Axis(1), 0).assign(&c0.t());
        }
        let aux_rows = if self.spec.cell == CellKind::Rnn { 0 } else { h };
        let mut aux = reuse(old_aux, ndarray::Dim([aux_rows, steps, batch]));
        let cols = block_columns(batch);
        let blocks: Vec<ForwardBlock<'_, F>> = gates
            .axis_chunks_iter_mut(Axis(2), cols)
            .zip(hs.axis_chunks_iter_mut(Axis(2), cols))
            .zip(cs.axis_chunks_iter_mut(Axis(2), cols).zip(aux.axis_chunks_iter_mut(Axis(2), cols)))
            .map(|((gates, hs), (cs, aux))| ForwardBlock { gates, hs, cs, aux })
            .collect();
        run_blocks(blocks, |blk| self.unroll_block_dispatch(&w_hh.view(), blk));
        Cache { x, gates, hs, cs, aux, w_ih, w_hh }
    }

    /// The cell's output, the hidden states `h_1 … h_T` batch-major: `(B, T, H)`.
    fn output(cache: &Cache<F>) -> ArrayD<F> {
        cache.hs.slice(s![.., 1.., ..]).permuted_axes([2, 1, 0]).as_standard_layout().into_owned().into_dyn()
    }

    /// Runs the cell over `input` `(B, T, in)` from `start`: its output and its final state.
    fn forward(&mut self, input: ArrayD<F>, start: CellState<F>) -> (ArrayD<F>, CellState<F>) {
        let steps = input.shape()[1];
        let old = self.cache.take();
        let cache = self.unroll(input, start, old);
        let last = CellState {
            h: cache.hs.index_axis(Axis(1), steps).t().as_standard_layout().into_owned(),
            c: (self.spec.cell == CellKind::Lstm)
                .then(|| cache.cs.index_axis(Axis(1), steps).t().as_standard_layout().into_owned()),
        };
        let y = Self::output(&cache);
        self.cache = Some(cache);
        (y, last)
    }

    /// The cell's output on `input` from `start`, nothing kept.
    fn infer(&self, input: ArrayD<F>, start: CellState<F>) -> ArrayD<F> {
        Self::output(&self.unroll(input, start, None))
    }

    /// Back-propagation through time over one block of batch columns: fills the gate gradients.
    #[inline(always)]
    fn backward_block(&self, w_hh: &ArrayView2<'_, F>, mut blk: BackwardBlock<'_, F>) {
        let (h, steps, cols) = (self.spec.hidden, blk.gates.dim().1, blk.gates.dim().2);
        let mut dh = Array2::<F>::zeros((h, cols));
        let mut dh_next = Array2::<F>::zeros((h, cols));
        let mut dc = Array2::<F>::zeros((if self.spec.cell == CellKind::Lstm { h } else { 0 }, cols));
        let mut d_rh = Array2::<F>::zeros((if self.spec.cell == CellKind::Gru(GruForm::Book) { h } else { 0 }, cols));
        for t in (0..steps).rev() {
            kernels::sum_into(blk.d_hidden.index_axis(Axis(1), t), dh_next.view(), dh.view_mut());
            let g = blk.gates.index_axis(Axis(1), t);
            let h_prev = blk.hs.index_axis(Axis(1), t);
            let mut da = blk.da.index_axis_mut(Axis(1), t);
            match self.spec.cell {
                CellKind::Rnn => {
                    kernels::rnn_backward(blk.hs.index_axis(Axis(1), t + 1), dh.view(), da.view_mut());
                    matmul_into(&mut dh_next.view_mut(), w_hh, &da.view(), false);
                }
                CellKind::Lstm => {
                    let state = (blk.cs.index_axis(Axis(1), t), blk.aux.index_axis(Axis(1), t));
                    kernels::lstm_backward(g, state, dh.view(), dc.view_mut(), da.view_mut());
                    matmul_into(&mut dh_next.view_mut(), w_hh, &da.view(), false);
                }
                CellKind::Gru(GruForm::PyTorch) => {
                    let mut dah = blk.dah.index_axis_mut(Axis(1), t);
                    let extra = kernels::ResetAfterProduct { hn: blk.aux.index_axis(Axis(1), t), dah: dah.view_mut() };
                    kernels::gru_backward(g, h_prev, dh.view(), da.view_mut(), dh_next.view_mut(), Some(extra));
                    matmul_into(&mut dh_next.view_mut(), w_hh, &dah.view(), true);
                }
                CellKind::Gru(GruForm::Book) => {
                    kernels::gru_backward(g, h_prev, dh.view(), da.view_mut(), dh_next.view_mut(), None);
                    let (w_rz, w_n) = (w_hh.slice(s![.., ..2 * h]), w_hh.slice(s![.., 2 * h..]));
                    matmul_into(&mut d_rh.view_mut(), &w_n, &da.slice(s![2 * h.., ..]), false);
                    kernels::gru_book_reset_backward(g, h_prev, d_rh.view(), da.view_mut(), dh_next.view_mut());
                    matmul_into(&mut dh_next.view_mut(), &w_rz, &da.slice(s![..2 * h, ..]), true);
                }
            }
        }
    }

    fn backward_impl(&mut self, output_grad: ArrayD<F>, input_grad: bool) -> Result<Option<ArrayD<F>>> {
        let cache =
            self.cache.take().ok_or_else(|| Error::InvalidArgument("Recurrent: backward before forward".into()))?;
        let (h, gh) = (self.spec.hidden, self.spec.cell.gates() * self.spec.hidden);
        let (steps, batch) = (cache.gates.dim().1, cache.gates.dim().2);
        let want = [batch, steps, h];
        if output_grad.shape() != want {
            self.cache = Some(cache);
            return Err(Error::shape("output gradient", format!("{want:?}"), output_grad.shape()));
        }
        let rows = steps * batch;
        let pytorch_gru = self.spec.cell == CellKind::Gru(GruForm::PyTorch);
        let old = self.gradients.take();
        let (old_dh, old_da, old_dah) = match old {
            Some(g) => (Some(g.d_hidden), Some(g.da), Some(g.dah)),
            None => Default::default(),
        };
        // (B, T, H) to feature-major (H, T, B).
        let mut d_hidden = reuse(old_dh, ndarray::Dim([h, steps, batch]));
        d_hidden.assign(&output_grad.into_dimensionality::<Ix3>().expect("checked").permuted_axes([2, 1, 0]));

        let mut da = reuse(old_da, ndarray::Dim([gh, steps, batch]));
        let mut dah = reuse(old_dah, ndarray::Dim([if pytorch_gru { gh } else { 0 }, steps, batch]));
        let cols = block_columns(batch);
        let blocks: Vec<BackwardBlock<'_, F>> = cache
            .gates
            .axis_chunks_iter(Axis(2), cols)
            .zip(cache.hs.axis_chunks_iter(Axis(2), cols))
            .zip(cache.cs.axis_chunks_iter(Axis(2), cols).zip(cache.aux.axis_chunks_iter(Axis(2), cols)))
            .zip(d_hidden.axis_chunks_iter(Axis(2), cols))
            .zip(da.axis_chunks_iter_mut(Axis(2), cols).zip(dah.axis_chunks_iter_mut(Axis(2), cols)))
            .map(|((((gates, hs), (cs, aux)), d_hidden), (da, dah))| BackwardBlock {
                gates,
                hs,
                cs,
                aux,
                d_hidden,
                da,
                dah,
            })
            .collect();
        let w_hh = matrix(&self.weight_hh);
        run_blocks(blocks, |blk| self.backward_block_dispatch(&w_hh, blk));

        {
            let da2 = da.view().into_shape_with_order((gh, rows)).expect("contiguous");
            let dah2 = dah.view().into_shape_with_order((dah.dim().0, rows)).expect("contiguous");
            let d_rec = if pytorch_gru { dah2 } else { da2 };
            let h_before = merged(&cache.hs, 0, steps);
            let mut dw_hh = self.weight_hh.grad.view_mut().into_dimensionality::<Ix2>().expect("a matrix");
            if self.spec.cell == CellKind::Gru(GruForm::Book) {
                let (rz, n) = (s![..2 * h, ..], s![2 * h.., ..]);
                matmul_into_threaded(&mut dw_hh.slice_mut(s![.., ..2 * h]), &h_before, &d_rec.slice(rz).t(), false);
                let rh = merged(&cache.aux, 0, steps);
                matmul_into_threaded(&mut dw_hh.slice_mut(s![.., 2 * h..]), &rh, &d_rec.slice(n).t(), false);
            } else {
                matmul_into_threaded(&mut dw_hh, &h_before, &d_rec.t(), false);
            }
            if let Some(b) = &mut self.bias_hh {
                b.grad = d_rec.sum_axis(Axis(1)).into_dyn();
            }
            let mut dw_ih = self.weight_ih.grad.view_mut().into_dimensionality::<Ix2>().expect("a matrix");
            matmul_into_threaded(&mut dw_ih, &cache.x.t(), &da2.t(), false);
            self.bias_ih.grad = da2.sum_axis(Axis(1)).into_dyn();
        }
        let dx = input_grad.then(|| {
            let da2 = da.view().into_shape_with_order((gh, rows)).expect("contiguous");
            let dx = matmul(&da2.t(), &matrix(&self.weight_ih).t());
            let dx = dx.into_shape_with_order((steps, batch, self.spec.input)).expect("sizes agree");
            dx.permuted_axes([1, 0, 2]).as_standard_layout().into_owned().into_dyn()
        });
        self.gradients = Some(Gradients { d_hidden, da, dah });
        self.cache = Some(cache);
        Ok(dx)
    }
}

impl<F: Float> Cell<F> {
    /// The parameters with their names, `weight_ih_l{k}`, ... (the order of
    /// [`RecurrentSpec::parameter_shapes`]).
    fn params(&self) -> Vec<(String, &Param<F>)> {
        let mut out = vec![&self.weight_ih, &self.weight_hh, &self.bias_ih];
        out.extend(self.bias_hh.as_ref());
        self.spec.cell_parameters().iter().map(|name| format!("{name}_l{}", self.index)).zip(out).collect()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        let names = self.spec.cell_parameters().iter().map(|name| format!("{name}_l{}", self.index));
        let mut out = vec![&mut self.weight_ih, &mut self.weight_hh, &mut self.bias_ih];
        out.extend(self.bias_hh.as_mut());
        names.zip(out).collect()
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
        self.carried = match self.spec.state {
            StateMode::Reset => None,
            StateMode::Carry => Some(last.clone()),
            StateMode::CarryMean => {
                let mean = |a: &Array3<F>| a.mean_axis(Axis(1)).expect("batch > 0").insert_axis(Axis(1));
                Some(State { h: mean(&last.h), c: last.c.as_ref().map(mean) })
            }
        };
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
