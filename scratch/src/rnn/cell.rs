//! One cell of a stack, unrolled over a sequence: its parameters and its forward pass.

use ndarray::{s, Array2, ArrayD, ArrayView1, ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis, Ix2, Ix3};

use super::buffers::{block_columns, reuse, run_blocks, Trace};
use super::kernels;
use crate::linalg::{matmul_into, matmul_into_threaded};
use crate::param::{Layout, Param};
use crate::simd::{dispatch, Simd, WithSimd};
use crate::spec::{CellKind, GruForm, RecurrentSpec};
use crate::Float;

/// One cell's state: `h` `(batch, hidden)` and, for an LSTM, `c`.
pub(super) struct CellState<F> {
    pub h: Array2<F>,
    pub c: Option<Array2<F>>,
}

/// One cell of the stack unrolled over the sequence, with back-propagation through time
/// ([`super::bptt`]); its spec is the layer's with this cell's input size and one layer.
pub(super) struct Cell<F: Float> {
    pub spec: RecurrentSpec,
    /// The cell's index in the stack: the `k` of its parameters' `_l{k}`.
    pub index: usize,
    /// `(input, G·H)`, canonical `(G·H, input)`.
    pub weight_ih: Param<F>,
    /// `(H, G·H)`, canonical `(G·H, H)`.
    pub weight_hh: Param<F>,
    pub bias_ih: Param<F>,
    pub bias_hh: Option<Param<F>>,
    /// What the last forward pass in training kept.
    pub trace: Option<Trace<F>>,
    /// The backward pass's buffers, kept for the next call.
    pub backward_buffers: Option<super::buffers::BackwardBuffers<F>>,
}

/// A weight's stored value as a matrix.
pub(super) fn matrix<F>(p: &Param<F>) -> ArrayView2<'_, F> {
    p.value.view().into_dimensionality::<Ix2>().expect("a weight is a matrix")
}

/// `a` with `bias[r]` added to every element of row `r`.
fn add_to_rows<F: Float>(mut a: ArrayViewMut2<'_, F>, bias: ArrayView1<'_, F>) {
    a += &bias.insert_axis(Axis(1));
}

/// One block of batch columns of the per-step buffers, unrolled on its own thread.
struct ForwardBlock<'a, F> {
    gates: ArrayViewMut3<'a, F>,
    hs: ArrayViewMut3<'a, F>,
    cs: ArrayViewMut3<'a, F>,
    tanh_c: ArrayViewMut3<'a, F>,
    hn: ArrayViewMut3<'a, F>,
    rh: ArrayViewMut3<'a, F>,
}

/// [`Cell::unroll_block`], compiled for each instruction-set level of [`crate::simd`].
struct Unroll<'a, 'b, F: Float> {
    cell: &'a Cell<F>,
    w_hh: ArrayView2<'a, F>,
    block: ForwardBlock<'b, F>,
}

impl<F: Float> WithSimd for Unroll<'_, '_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        self.cell.unroll_block(&self.w_hh, self.block);
    }
}

impl<F: Float> Cell<F> {
    /// The parameters with their names, `weight_ih_l{k}`, ... (the order of
    /// [`RecurrentSpec::parameter_shapes`]).
    pub fn params(&self) -> Vec<(String, &Param<F>)> {
        let mut out = vec![&self.weight_ih, &self.weight_hh, &self.bias_ih];
        out.extend(self.bias_hh.as_ref());
        self.spec.cell_parameters().iter().map(|name| format!("{name}_l{}", self.index)).zip(out).collect()
    }

    pub fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        let names = self.spec.cell_parameters().iter().map(|name| format!("{name}_l{}", self.index));
        let mut out = vec![&mut self.weight_ih, &mut self.weight_hh, &mut self.bias_ih];
        out.extend(self.bias_hh.as_mut());
        names.zip(out).collect()
    }

    /// A cell from its canonical parameter values, in the order of [`Cell::params`].
    pub fn from_values(spec: RecurrentSpec, index: usize, values: &mut impl Iterator<Item = ArrayD<f64>>) -> Self {
        let mut next = |layout: Layout| {
            let v = values.next().expect("one value per parameter");
            Param::new(layout.from_canonical(&v.mapv(F::cast)), layout)
        };
        let (weight_ih, weight_hh) = (next(Layout::SwapAxes01), next(Layout::SwapAxes01));
        let bias_ih = next(Layout::Canonical);
        let bias_hh = (spec.biases == crate::spec::Biases::Two).then(|| next(Layout::Canonical));
        Cell { spec, index, weight_ih, weight_hh, bias_ih, bias_hh, trace: None, backward_buffers: None }
    }

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
                    kernels::lstm_forward(g, c_prev.view(), c_next, blk.tanh_c.index_axis_mut(Axis(1), t), next);
                }
                CellKind::Gru(form) => {
                    let (w_rz, w_n) = (w_hh.slice(s![..2 * h, ..]), w_hh.slice(s![2 * h.., ..]));
                    matmul_into(&mut g.slice_mut(s![..2 * h, ..]), &w_rz, &h_prev, true);
                    match form {
                        GruForm::PyTorch => {
                            let mut hn = blk.hn.index_axis_mut(Axis(1), t);
                            matmul_into(&mut hn, &w_n, &h_prev, false);
                            if let Some(b) = &self.bias_hh {
                                let b_hn = b.value.slice(s![2 * h..]).into_dimensionality().expect("a vector");
                                add_to_rows(hn.view_mut(), b_hn);
                            }
                            kernels::gru_gates(g.view_mut(), h_prev, None);
                            kernels::gru_output(g, Some(hn.view()), h_prev, next);
                        }
                        GruForm::Book => {
                            let mut rh = blk.rh.index_axis_mut(Axis(1), t);
                            kernels::gru_gates(g.view_mut(), h_prev, Some(rh.view_mut()));
                            matmul_into(&mut g.slice_mut(s![2 * h.., ..]), &w_n, &rh.view(), true);
                            kernels::gru_output(g, None, h_prev, next);
                        }
                    }
                }
            }
        }
    }

    /// Runs the cell over the sequence, the batch split in blocks over the threads, in the buffers of
    /// the previous call where they fit.
    fn unroll(&self, input: ArrayD<F>, start: CellState<F>, old: Option<Trace<F>>) -> Trace<F> {
        let (batch, steps, h) = (input.shape()[0], input.shape()[1], self.spec.hidden);
        let gh = self.spec.cell.gates() * h;
        let old = old.map(|t| (t.x, t.gates, t.hs, t.cs, t.tanh_c, t.hn, t.rh, t.w_ih, t.w_hh));
        let (old_x, old_gates, old_hs, old_cs, old_tanh_c, old_hn, old_rh, old_w_ih, old_w_hh) = match old {
            Some((a, b, c, d, e, f, g, h, i)) => {
                (Some(a), Some(b), Some(c), Some(d), Some(e), Some(f), Some(g), Some(h), Some(i))
            }
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
        let rows_if = |used: bool| if used { h } else { 0 };
        let cell = self.spec.cell;
        let mut tanh_c = reuse(old_tanh_c, ndarray::Dim([rows_if(cell == CellKind::Lstm), steps, batch]));
        let mut hn = reuse(old_hn, ndarray::Dim([rows_if(cell == CellKind::Gru(GruForm::PyTorch)), steps, batch]));
        let mut rh = reuse(old_rh, ndarray::Dim([rows_if(cell == CellKind::Gru(GruForm::Book)), steps, batch]));
        let cols = block_columns(batch);
        let blocks: Vec<ForwardBlock<'_, F>> = gates
            .axis_chunks_iter_mut(Axis(2), cols)
            .zip(hs.axis_chunks_iter_mut(Axis(2), cols))
            .zip(cs.axis_chunks_iter_mut(Axis(2), cols).zip(tanh_c.axis_chunks_iter_mut(Axis(2), cols)))
            .zip(hn.axis_chunks_iter_mut(Axis(2), cols).zip(rh.axis_chunks_iter_mut(Axis(2), cols)))
            .map(|(((gates, hs), (cs, tanh_c)), (hn, rh))| ForwardBlock { gates, hs, cs, tanh_c, hn, rh })
            .collect();
        run_blocks(blocks, |block| dispatch(Unroll { cell: self, w_hh: w_hh.view(), block }));
        Trace { x, gates, hs, cs, tanh_c, hn, rh, w_ih, w_hh }
    }

    /// The cell's output, the hidden states `h_1 … h_T` batch-major: `(B, T, H)`.
    fn output(trace: &Trace<F>) -> ArrayD<F> {
        trace.hs.slice(s![.., 1.., ..]).permuted_axes([2, 1, 0]).as_standard_layout().into_owned().into_dyn()
    }

    /// Runs the cell over `input` `(B, T, in)` from `start`: its output and its final state, and keeps
    /// what back-propagation through time needs.
    pub fn forward(&mut self, input: ArrayD<F>, start: CellState<F>) -> (ArrayD<F>, CellState<F>) {
        let steps = input.shape()[1];
        let old = self.trace.take();
        let trace = self.unroll(input, start, old);
        let last = CellState {
            h: trace.hs.index_axis(Axis(1), steps).t().as_standard_layout().into_owned(),
            c: (self.spec.cell == CellKind::Lstm)
                .then(|| trace.cs.index_axis(Axis(1), steps).t().as_standard_layout().into_owned()),
        };
        let y = Self::output(&trace);
        self.trace = Some(trace);
        (y, last)
    }

    /// The cell's output on `input` from `start`, nothing kept.
    pub fn infer(&self, input: ArrayD<F>, start: CellState<F>) -> ArrayD<F> {
        Self::output(&self.unroll(input, start, None))
    }
}
