//! One cell of a stack unrolled over a sequence: its parameters and its forward pass.
//!
//! With `T` steps, batch `B` and `G` gate blocks of `H` units, the input products of all steps are
//! one matrix product, `(T·B, input + 1) × (input + 1, G·H)`: the input with a column of ones times
//! `W_ihᵀ` above the additive biases, so that the biases cost no pass of their own. Each step then
//! adds its recurrent product `(B, H) × (H, G·H)` over the whole batch and applies the cell
//! element-wise ([`super::kernels`]); the threads share each step by hidden units
//! ([`super::threads`]).

use std::ops::Range;

use ndarray::{s, Array1, Array2, ArrayD, ArrayView2, ArrayViewMut3, Axis, Ix2, Ix3};
use rayon::prelude::*;

use super::buffers::{gate_rows, reuse, split_units, step, step_and_next, step_mut, Trace};
use super::kernels;
use super::product::{product, Panels};
use super::threads::{each, on_pool, unit_ranges};
use crate::linalg::matmul_into_threaded;
use crate::param::{Layout, Param};
use crate::simd::{dispatch, Simd, WithSimd};
use crate::spec::{Biases, CellKind, GruForm, RecurrentSpec};
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
    /// Stored `(input, G·H)`, `W_ihᵀ`; canonical `(G·H, input)`.
    pub weight_ih: Param<F>,
    /// Stored `(H, G·H)`, `W_hhᵀ`; canonical `(G·H, H)`.
    pub weight_hh: Param<F>,
    pub bias_ih: Param<F>,
    pub bias_hh: Option<Param<F>>,
    /// What the last forward pass kept.
    pub trace: Option<Trace<F>>,
    /// The backward pass's buffers, kept for the next call.
    pub backward_buffers: Option<super::buffers::BackwardBuffers<F>>,
}

/// A weight's stored value as a matrix.
pub(super) fn matrix<F>(p: &Param<F>) -> ArrayView2<'_, F> {
    p.value.view().into_dimensionality::<Ix2>().expect("a weight is a matrix")
}

/// One thread's part of the forward pass: its units, the recurrent weights of their gate rows packed
/// for the step product, and the product's output.
struct Forward<F> {
    units: Range<usize>,
    /// `W_hhᵀ`'s columns of the units' gate rows (for the book GRU, of the reset and update gates).
    recurrent: Panels<F>,
    /// The book GRU's candidate rows, which multiply `r ⊙ h` rather than `h`.
    candidate: Option<Panels<F>>,
    /// The PyTorch GRU's `b_hn` of the units (zeros without a second bias).
    b_hn: Vec<F>,
    /// A step's product, `(B, padded columns)`: the units' blocks of each gate, one after the other.
    pre: Vec<F>,
}

/// What one thread writes at one step: its units' columns of the step's gates `(B, G, n)`, next
/// states and kept values `(B, 1, n)` (no columns where the cell keeps none).
struct StepOut<'a, F> {
    gates: ArrayViewMut3<'a, F>,
    h: ArrayViewMut3<'a, F>,
    c: ArrayViewMut3<'a, F>,
    tanh_c: ArrayViewMut3<'a, F>,
    hn: ArrayViewMut3<'a, F>,
    rh: ArrayViewMut3<'a, F>,
}

/// A view without elements, for what a step does not write.
fn empty<'a, F>() -> ArrayViewMut3<'a, F> {
    ArrayViewMut3::from_shape((0, 0, 0), &mut []).expect("no elements")
}

/// What every thread reads at one step: the previous states, all units, `(B, H)` each.
#[derive(Clone, Copy)]
struct StepIn<'a, F> {
    h_prev: &'a [F],
    c_prev: &'a [F],
}

/// One thread's step, compiled for each instruction-set level of [`crate::simd`]: the cell's step,
/// or the book GRU's candidate once every thread has written `r ⊙ h`.
struct ForwardStep<'a, 'i, 'o, F: Float> {
    cell: &'a Cell<F>,
    thread: &'o mut Forward<F>,
    input: StepIn<'i, F>,
    out: StepOut<'o, F>,
    /// The book GRU's `r ⊙ h_prev`, all units, for the candidate.
    rh: Option<&'i [F]>,
}

impl<F: Float> WithSimd for ForwardStep<'_, '_, '_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        match self.rh {
            None => self.cell.step(simd, self.thread, self.input, self.out),
            Some(rh) => self.cell.candidate_step(simd, self.thread, self.input, rh, self.out),
        }
    }
}

impl<F: Float> Cell<F> {
    /// A cell from its canonical parameter values, in the order of [`Cell::params`].
    pub fn from_values(spec: RecurrentSpec, index: usize, values: &mut impl Iterator<Item = ArrayD<f64>>) -> Self {
        let mut next = |layout: Layout| {
            let v = values.next().expect("one value per parameter");
            Param::new(layout.from_canonical(&v.mapv(F::cast)), layout)
        };
        let (weight_ih, weight_hh) = (next(Layout::SwapAxes01), next(Layout::SwapAxes01));
        let bias_ih = next(Layout::Canonical);
        let bias_hh = (spec.biases == Biases::Two).then(|| next(Layout::Canonical));
        Cell { spec, index, weight_ih, weight_hh, bias_ih, bias_hh, trace: None, backward_buffers: None }
    }

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

    /// `G·H`.
    pub fn gate_rows(&self) -> usize {
        self.spec.cell.gates() * self.spec.hidden
    }

    /// The biases added to the input products: `b_ih + b_hh`, except the PyTorch GRU's `b_hn`, which
    /// stays inside the reset gate's product.
    fn additive_bias(&self) -> Array1<F> {
        let h = self.spec.hidden;
        let mut bias = self.bias_ih.value.clone().into_dimensionality().expect("a vector");
        if let Some(b_hh) = &self.bias_hh {
            let additive = if self.spec.cell == CellKind::Gru(GruForm::PyTorch) { 2 * h } else { self.gate_rows() };
            bias.slice_mut(s![..additive]).zip_mut_with(&b_hh.value.slice(s![..additive]), |b, &c| *b += c);
        }
        bias
    }

    /// The PyTorch GRU's `b_hn` (zeros without a second bias).
    fn candidate_bias(&self) -> Array1<F> {
        let h = self.spec.hidden;
        match &self.bias_hh {
            Some(b) if self.spec.cell == CellKind::Gru(GruForm::PyTorch) => {
                b.value.slice(s![2 * h..]).to_owned().into_dimensionality().expect("a vector")
            }
            _ => Array1::zeros(h),
        }
    }

    /// The thread of units `units`: their gate rows of `W_hh`, packed.
    fn forward_thread(&self, units: Range<usize>, batch: usize) -> Forward<F> {
        let (h, w_hh) = (self.spec.hidden, matrix(&self.weight_hh));
        let segment = |g: usize| g * h + units.start..g * h + units.end;
        let (recurrent, candidate) = match self.spec.cell {
            CellKind::Gru(GruForm::Book) => {
                (Panels::columns(w_hh, &[segment(0), segment(1)]), Some(Panels::columns(w_hh, &[segment(2)])))
            }
            cell => (Panels::columns(w_hh, &(0..cell.gates()).map(segment).collect::<Vec<_>>()), None),
        };
        let pre = vec![
            F::zero();
            batch * recurrent.padded_columns().max(candidate.as_ref().map_or(0, Panels::padded_columns))
        ];
        let b_hn = self.candidate_bias().slice(s![units.clone()]).to_vec();
        Forward { units, recurrent, candidate, b_hn, pre }
    }

    /// One step of one thread: the recurrent product of its units' gate rows, then the cell (for the
    /// book GRU, the reset and update gates and `r ⊙ h`).
    #[inline(always)]
    fn step<S: Simd>(&self, simd: S, thread: &mut Forward<F>, input: StepIn<'_, F>, mut out: StepOut<'_, F>) {
        let (hidden, batch) = (self.spec.hidden, out.gates.dim().0);
        let units = thread.units.clone();
        product(input.h_prev, hidden, batch, &thread.recurrent, &mut thread.pre, false);
        let padded = thread.recurrent.padded_columns();
        for b in 0..batch {
            let pre = &thread.pre[b * padded..(b + 1) * padded];
            let h_prev = &input.h_prev[b * hidden..][units.clone()];
            let gates = out.gates.index_axis_mut(Axis(0), b);
            let [h] = gate_rows::<F, 1>(out.h.index_axis_mut(Axis(0), b));
            match self.spec.cell {
                CellKind::Rnn => {
                    let [a] = gate_rows::<F, 1>(gates);
                    kernels::rnn_forward(simd, pre, a, h);
                }
                CellKind::Lstm => {
                    let c_prev = &input.c_prev[b * hidden..][units.clone()];
                    let [c] = gate_rows::<F, 1>(out.c.index_axis_mut(Axis(0), b));
                    let [tanh_c] = gate_rows::<F, 1>(out.tanh_c.index_axis_mut(Axis(0), b));
                    kernels::lstm_forward(simd, pre, gate_rows::<F, 4>(gates), c_prev, (c, tanh_c, h));
                }
                CellKind::Gru(GruForm::PyTorch) => {
                    let [r, z, cand] = gate_rows::<F, 3>(gates);
                    let [hn] = gate_rows::<F, 1>(out.hn.index_axis_mut(Axis(0), b));
                    let n = units.len();
                    kernels::gru_gates(simd, pre, r, z);
                    kernels::gru_output_after_product(
                        simd,
                        (&pre[2 * n..3 * n], &thread.b_hn),
                        (r, z),
                        cand,
                        h_prev,
                        (hn, h),
                    );
                }
                CellKind::Gru(GruForm::Book) => {
                    let [r, z, _] = gate_rows::<F, 3>(gates);
                    let [rh] = gate_rows::<F, 1>(out.rh.index_axis_mut(Axis(0), b));
                    kernels::gru_gates(simd, pre, r, z);
                    kernels::gru_reset_state(simd, r, h_prev, rh);
                }
            }
        }
    }

    /// The book GRU's candidate and output for one thread's units, once `rh = r ⊙ h_prev` is written
    /// for all units.
    #[inline(always)]
    fn candidate_step<S: Simd>(
        &self,
        simd: S,
        thread: &mut Forward<F>,
        input: StepIn<'_, F>,
        rh: &[F],
        mut out: StepOut<'_, F>,
    ) {
        let (hidden, batch) = (self.spec.hidden, out.gates.dim().0);
        let units = thread.units.clone();
        let panels = thread.candidate.as_ref().expect("the book GRU's candidate weights");
        product(rh, hidden, batch, panels, &mut thread.pre, false);
        let padded = panels.padded_columns();
        for b in 0..batch {
            let pre = &thread.pre[b * padded..(b + 1) * padded];
            let h_prev = &input.h_prev[b * hidden..][units.clone()];
            let [_, z, cand] = gate_rows::<F, 3>(out.gates.index_axis_mut(Axis(0), b));
            let [h] = gate_rows::<F, 1>(out.h.index_axis_mut(Axis(0), b));
            kernels::gru_output_before_product(simd, pre, z, cand, h_prev, h);
        }
    }

    /// Runs the cell over the sequence from `start`, in the buffers of the previous call where they
    /// fit.
    fn unroll(&self, input: ArrayD<F>, start: CellState<F>, old: Option<Trace<F>>) -> Trace<F> {
        let (batch, steps, hidden) = (input.shape()[0], input.shape()[1], self.spec.hidden);
        let (cell, gh, rows) = (self.spec.cell, self.gate_rows(), steps * batch);
        let old = old.map(|t| [t.x, t.weights, t.gates, t.hs, t.cs, t.tanh_c, t.hn, t.rh]);
        let [old_x, old_weights, old_gates, old_hs, old_cs, old_tanh_c, old_hn, old_rh] = match old {
            Some(buffers) => buffers.map(Some),
            None => Default::default(),
        };
        // (B, T, in) to time-major (T·B, in), then a column of ones.
        let n_in = self.spec.input;
        let mut x = reuse(old_x, ndarray::Dim([rows, n_in + 1]));
        let time_major = input.into_dimensionality::<Ix3>().expect("checked").permuted_axes([1, 0, 2]);
        x.slice_mut(s![.., ..n_in]).assign(&time_major.to_shape((rows, n_in)).expect("sizes agree"));
        x.column_mut(n_in).fill(F::one());
        // The input products of every step, with the additive biases.
        let mut weights = reuse(old_weights, ndarray::Dim([n_in + 1, gh]));
        weights.slice_mut(s![..n_in, ..]).assign(&matrix(&self.weight_ih));
        weights.row_mut(n_in).assign(&self.additive_bias());
        let mut gates = reuse(old_gates, ndarray::Dim([rows, gh]));
        matmul_into_threaded(&mut gates.view_mut(), &x.view(), &weights.view(), false);

        let kept = |used: bool| if used { hidden } else { 0 };
        let mut hs = reuse(old_hs, ndarray::Dim([rows + batch, hidden]));
        hs.slice_mut(s![..batch, ..]).assign(&start.h);
        let mut cs = reuse(old_cs, ndarray::Dim([rows + batch, kept(start.c.is_some())]));
        if let Some(c0) = &start.c {
            cs.slice_mut(s![..batch, ..]).assign(c0);
        }
        let mut tanh_c = reuse(old_tanh_c, ndarray::Dim([rows, kept(cell == CellKind::Lstm)]));
        let mut hn = reuse(old_hn, ndarray::Dim([rows, kept(cell == CellKind::Gru(GruForm::PyTorch))]));
        let mut rh = reuse(old_rh, ndarray::Dim([rows, kept(cell == CellKind::Gru(GruForm::Book))]));

        let units = unit_ranges(batch, cell.gates(), hidden);
        on_pool(units.len(), || {
            let mut threads: Vec<Forward<F>> = if units.len() > 1 {
                units.par_iter().map(|u| self.forward_thread(u.clone(), batch)).collect()
            } else {
                units.iter().map(|u| self.forward_thread(u.clone(), batch)).collect()
            };
            for t in 0..steps {
                let (h_prev, h_next) = step_and_next(&mut hs, t, batch);
                let (c_prev, c_next) = step_and_next(&mut cs, t, batch);
                let input = StepIn { h_prev, c_prev };
                let outs = split_units(step_mut(&mut gates, t, batch), cell.gates(), &units)
                    .into_iter()
                    .zip(split_units(h_next, 1, &units))
                    .zip(split_units(c_next, 1, &units))
                    .zip(split_units(step_mut(&mut tanh_c, t, batch), 1, &units))
                    .zip(split_units(step_mut(&mut hn, t, batch), 1, &units))
                    .zip(split_units(step_mut(&mut rh, t, batch), 1, &units))
                    .map(|(((((gates, h), c), tanh_c), hn), rh)| StepOut { gates, h, c, tanh_c, hn, rh });
                let work: Vec<_> = threads.iter_mut().zip(outs).collect();
                each(work, |(thread, out)| dispatch(ForwardStep { cell: self, thread, input, out, rh: None }));
                if cell == CellKind::Gru(GruForm::Book) {
                    let rh = step(&rh, t, batch);
                    let (h_prev, h_next) = step_and_next(&mut hs, t, batch);
                    let input = StepIn { h_prev, c_prev: &[] };
                    let outs = split_units(step_mut(&mut gates, t, batch), cell.gates(), &units)
                        .into_iter()
                        .zip(split_units(h_next, 1, &units))
                        .map(|(gates, h)| StepOut { gates, h, c: empty(), tanh_c: empty(), hn: empty(), rh: empty() });
                    let work: Vec<_> = threads.iter_mut().zip(outs).collect();
                    each(work, |(thread, out)| dispatch(ForwardStep { cell: self, thread, input, out, rh: Some(rh) }));
                }
            }
        });
        Trace { x, weights, gates, hs, cs, tanh_c, hn, rh, batch }
    }

    /// The cell's output, the hidden states `h_1 … h_T` batch-major: `(B, T, H)`.
    fn output(trace: &Trace<F>) -> ArrayD<F> {
        let (batch, steps, hidden) = (trace.batch, trace.steps(), trace.hs.ncols());
        let hs = trace.hs.slice(s![batch.., ..]);
        let hs = hs.into_shape_with_order((steps, batch, hidden)).expect("time-major steps");
        hs.permuted_axes([1, 0, 2]).as_standard_layout().into_owned().into_dyn()
    }

    /// Runs the cell over `input` `(B, T, in)` from `start`: its output and its final state, and keeps
    /// what back-propagation through time needs.
    pub fn forward(&mut self, input: ArrayD<F>, start: CellState<F>) -> (ArrayD<F>, CellState<F>) {
        let old = self.trace.take();
        let trace = self.unroll(input, start, old);
        let last = s![trace.steps() * trace.batch.., ..];
        let state = CellState {
            h: trace.hs.slice(last).to_owned(),
            c: (self.spec.cell == CellKind::Lstm).then(|| trace.cs.slice(last).to_owned()),
        };
        let y = Self::output(&trace);
        self.trace = Some(trace);
        (y, state)
    }

    /// The cell's output on `input` from `start`, nothing kept.
    pub fn infer(&self, input: ArrayD<F>, start: CellState<F>) -> ArrayD<F> {
        Self::output(&self.unroll(input, start, None))
    }
}
