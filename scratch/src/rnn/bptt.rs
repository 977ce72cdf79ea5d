//! Back-propagation through time of one cell: the steps in reverse, each turning the gradient that
//! reaches its hidden output into the gradients of its gate pre-activations, then every weight
//! gradient as one product over all steps:
//!
//! ```text
//! ∂L/∂W_ih = Σ_t ∂L/∂a_tᵀ x_t        ∂L/∂W_hh = Σ_t ∂L/∂a_tᵀ h_{t−1}      ∂L/∂b = Σ_t Σ_batch ∂L/∂a_t
//! ∂L/∂h_{t−1} = ∂L/∂a_t W_hh  (+ the cell's direct paths)            ∂L/∂x_t = ∂L/∂a_t W_ih
//! ```
//!
//! (the PyTorch GRU's recurrent side sees `[da_r, da_z, da_n ⊙ r]`, the book GRU's candidate rows
//! `r ⊙ h_{t−1}` instead of `h_{t−1}`; [`super::loops`] writes every case out). As forward, the
//! threads share each step by hidden units ([`super::threads`]): each computes the gradient reaching
//! its units' states from all the gate gradients of the step after, `(B, G·H) × (G·H, n)`, then its
//! units' gate gradients.

use std::ops::Range;

use ndarray::{s, Array2, ArrayD, ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis, Ix2, Zip};
use rayon::prelude::*;

use super::buffers::{gate_rows, reuse, split_units, step, step_mut, BackwardBuffers};
use super::cell::{matrix, Cell};
use super::kernels;
use super::product::{product, Panels};
use super::threads::{each, on_pool, unit_ranges};
use crate::linalg::{matmul, matmul_into_threaded};
use crate::simd::{dispatch, Simd, WithSimd};
use crate::spec::{CellKind, GruForm};
use crate::{Error, Float, Result};

/// One thread's part of the backward pass: its units, the recurrent weights that carry gradients to
/// their states packed for the step product, and its running gradients.
struct Backward<F> {
    units: Range<usize>,
    /// `W_hh`'s columns of the units (for the book GRU, of its reset and update gate rows only):
    /// `(G·H, n)`.
    recurrent: Panels<F>,
    /// The book GRU's `W_hn` columns of the units, for `∂L/∂(r ⊙ h)`.
    candidate: Option<Panels<F>>,
    /// A step's product, `(B, padded columns)`: the gradient reaching the units' states through the
    /// next step's gates.
    pre: Vec<F>,
    /// The LSTM's gradient reaching the units' cell states, `(B, n)`.
    dc: Vec<F>,
    /// The GRU's gradient reaching the units' previous hidden states by the direct paths (`dh ⊙ z`,
    /// and the book GRU's `∂L/∂(r ⊙ h) ⊙ r`), `(B, n)`.
    carry: Vec<F>,
}

/// What every thread reads at step `t`: the forward pass's values of the step, all units, the
/// gradient reaching the layer's output, and the gradients of the step after (empty at the last).
#[derive(Clone, Copy)]
struct StepIn<'a, F> {
    t: usize,
    steps: usize,
    gates: &'a [F],
    h_prev: &'a [F],
    c_prev: &'a [F],
    tanh_c: &'a [F],
    hn: &'a [F],
    output_grad: &'a [F],
    /// `∂L/∂a_{t+1}` on the recurrent side, `(B, G·H)`, or the book GRU's reset and update part of it.
    after: &'a [F],
    /// The book GRU's `∂L/∂a_n` of the step, all units, `(B, H)`, for its second part.
    da_n: &'a [F],
}

/// What one thread writes at one step: its units' columns of the gate gradients `(B, G, n)`, and
/// for the book GRU `∂L/∂a_n` again, contiguous, `(B, 1, n)`.
struct StepOut<'a, F> {
    da: ArrayViewMut3<'a, F>,
    d_recurrent: ArrayViewMut3<'a, F>,
    da_n: ArrayViewMut3<'a, F>,
}

/// One thread's step, compiled for each instruction-set level of [`crate::simd`]: the cell's step
/// backward, or the book GRU's second part once every thread has written `∂L/∂a_n`.
struct BackwardStep<'a, 'i, 'o, F: Float> {
    cell: &'a Cell<F>,
    thread: &'o mut Backward<F>,
    input: StepIn<'i, F>,
    out: StepOut<'o, F>,
    reset: bool,
}

impl<F: Float> WithSimd for BackwardStep<'_, '_, '_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        if self.reset {
            self.cell.reset_step_backward(simd, self.thread, self.input, self.out);
        } else {
            self.cell.step_backward(simd, self.thread, self.input, self.out);
        }
    }
}

/// The values of `units` in a row that starts at `buffer[offset]`.
#[inline(always)]
fn units_of<'a, F>(buffer: &'a [F], offset: usize, units: &Range<usize>) -> &'a [F] {
    &buffer[offset..][units.clone()]
}

/// A view without elements, for what a step does not write.
fn empty<'a, F>() -> ArrayViewMut3<'a, F> {
    ArrayViewMut3::from_shape((0, 0, 0), &mut []).expect("no elements")
}

/// Step `t` of a time-major buffer (written) and step `t + 1` (read; empty after the last step).
fn step_and_after<F>(a: &mut Array2<F>, t: usize, batch: usize) -> (ArrayViewMut2<'_, F>, &[F]) {
    let width = a.ncols();
    let data = a.as_slice_mut().expect("buffers are contiguous");
    let (upto, after) = data.split_at_mut((t + 1) * batch * width);
    let now = ArrayViewMut2::from_shape((batch, width), &mut upto[t * batch * width..]).expect("a step's rows");
    (now, &after[..after.len().min(batch * width)])
}

impl<F: Float> Cell<F> {
    /// The thread of units `units`: the columns of `W_hh` that carry gradients to them, packed.
    fn backward_thread(&self, units: Range<usize>, batch: usize) -> Backward<F> {
        let (h, gh, w_hh) = (self.spec.hidden, self.gate_rows(), matrix(&self.weight_hh));
        let (recurrent, candidate) = match self.spec.cell {
            CellKind::Gru(GruForm::Book) => (
                Panels::transposed_rows(w_hh, units.clone(), 0..2 * h),
                Some(Panels::transposed_rows(w_hh, units.clone(), 2 * h..3 * h)),
            ),
            _ => (Panels::transposed_rows(w_hh, units.clone(), 0..gh), None),
        };
        let padded = recurrent.padded_columns().max(candidate.as_ref().map_or(0, Panels::padded_columns));
        let n = units.len();
        let lstm = self.spec.cell == CellKind::Lstm;
        Backward {
            units,
            recurrent,
            candidate,
            pre: vec![F::zero(); batch * padded],
            dc: vec![F::zero(); if lstm { batch * n } else { 0 }],
            carry: vec![F::zero(); if lstm { 0 } else { batch * n }],
        }
    }

    /// Step `t` backward for one thread's units: the gradient reaching their hidden states, then the
    /// gate gradients (for the book GRU, of the update gate and the candidate).
    #[inline(always)]
    fn step_backward<'b, S: Simd>(
        &self,
        simd: S,
        thread: &mut Backward<F>,
        input: StepIn<'b, F>,
        mut out: StepOut<'_, F>,
    ) {
        let (hidden, gh, batch) = (self.spec.hidden, self.gate_rows(), out.da.dim().0);
        let Backward { units, recurrent, pre, dc, carry, .. } = thread;
        let n = units.len();
        let padded = recurrent.padded_columns();
        if input.t + 1 == input.steps {
            // Nothing comes back from after the last step.
            pre.fill(F::zero());
            dc.fill(F::zero());
            carry.fill(F::zero());
        } else {
            product(input.after, gh, batch, recurrent, pre, false);
        }
        for b in 0..batch {
            let at = |buffer: &'b [F], width: usize, block: usize| units_of(buffer, b * width + block * hidden, units);
            let d_out = &input.output_grad[(b * input.steps + input.t) * hidden..][units.clone()];
            let d_next = &pre[b * padded..][..n];
            let gate = |block: usize| at(input.gates, gh, block);
            match self.spec.cell {
                CellKind::Rnn => {
                    let [da] = gate_rows::<F, 1>(out.da.index_axis_mut(Axis(0), b));
                    kernels::rnn_backward(simd, gate(0), (d_out, d_next), da);
                }
                CellKind::Lstm => {
                    let state = (at(input.c_prev, hidden, 0), at(input.tanh_c, hidden, 0));
                    let da = gate_rows::<F, 4>(out.da.index_axis_mut(Axis(0), b));
                    kernels::lstm_backward(
                        simd,
                        [gate(0), gate(1), gate(2), gate(3)],
                        state,
                        (d_out, d_next),
                        &mut dc[b * n..(b + 1) * n],
                        da,
                    );
                }
                CellKind::Gru(form) => {
                    let carry = &mut carry[b * n..(b + 1) * n];
                    let [da_r, da_z, da_n] = gate_rows::<F, 3>(out.da.index_axis_mut(Axis(0), b));
                    let h_prev = at(input.h_prev, hidden, 0);
                    kernels::gru_backward(simd, (gate(1), gate(2)), h_prev, (d_out, d_next), (da_z, da_n), carry);
                    match form {
                        GruForm::PyTorch => {
                            let d_rec = gate_rows::<F, 3>(out.d_recurrent.index_axis_mut(Axis(0), b));
                            let hn = at(input.hn, hidden, 0);
                            kernels::gru_reset_backward_after_product(simd, (gate(0), hn), (da_z, da_n), da_r, d_rec);
                        }
                        GruForm::Book => {
                            let [copy] = gate_rows::<F, 1>(out.da_n.index_axis_mut(Axis(0), b));
                            copy.copy_from_slice(da_n);
                        }
                    }
                }
            }
        }
    }

    /// The book GRU's reset gate backward for one thread's units, once `∂L/∂a_n` is written for all
    /// units: `∂L/∂(r ⊙ h) = ∂L/∂a_n W_hn`, then `∂L/∂a_r` and the direct path to `h_prev`.
    #[inline(always)]
    fn reset_step_backward<S: Simd>(
        &self,
        simd: S,
        thread: &mut Backward<F>,
        input: StepIn<'_, F>,
        mut out: StepOut<'_, F>,
    ) {
        let (hidden, batch) = (self.spec.hidden, out.da.dim().0);
        let (units, n) = (thread.units.clone(), thread.units.len());
        let gh = self.gate_rows();
        let panels = thread.candidate.as_ref().expect("the book GRU's candidate weights");
        product(input.da_n, hidden, batch, panels, &mut thread.pre, false);
        let padded = panels.padded_columns();
        for b in 0..batch {
            let d_rh = &thread.pre[b * padded..][..n];
            let r = &input.gates[b * gh..][units.clone()];
            let h_prev = &input.h_prev[b * hidden..][units.clone()];
            let [da_r, _, _] = gate_rows::<F, 3>(out.da.index_axis_mut(Axis(0), b));
            kernels::gru_reset_backward_before_product(
                simd,
                r,
                h_prev,
                d_rh,
                da_r,
                &mut thread.carry[b * n..(b + 1) * n],
            );
        }
    }

    /// Back-propagation through time from `output_grad` `(B, T, H)`: every parameter gradient, and
    /// the input gradient `(B, T, input)` if `input_grad`.
    ///
    /// # Errors
    /// Before a forward pass, or if `output_grad` has the wrong shape.
    pub fn backward(&mut self, output_grad: ArrayD<F>, input_grad: bool) -> Result<Option<ArrayD<F>>> {
        let trace =
            self.trace.take().ok_or_else(|| Error::InvalidArgument("Recurrent: backward before forward".into()))?;
        let (batch, steps, hidden, gh) = (trace.batch, trace.steps(), self.spec.hidden, self.gate_rows());
        let want = [batch, steps, hidden];
        if output_grad.shape() != want {
            self.trace = Some(trace);
            return Err(Error::shape("output gradient", format!("{want:?}"), output_grad.shape()));
        }
        let output_grad = output_grad.as_standard_layout();
        let output_grad = output_grad.as_slice().expect("standard layout");
        let (cell, rows) = (self.spec.cell, steps * batch);
        let (pytorch_gru, book_gru) = (cell == CellKind::Gru(GruForm::PyTorch), cell == CellKind::Gru(GruForm::Book));
        let [old_da, old_d_rec, old_da_n, old_inputs, old_weight_grads] = match self.backward_buffers.take() {
            Some(b) => [b.da, b.d_recurrent, b.da_n, b.inputs, b.weight_grads].map(Some),
            None => Default::default(),
        };
        let mut da = reuse(old_da, ndarray::Dim([rows, gh]));
        let mut d_recurrent = reuse(old_d_rec, ndarray::Dim([rows, if pytorch_gru { gh } else { 0 }]));
        let mut da_n = reuse(old_da_n, ndarray::Dim([batch, if book_gru { hidden } else { 0 }]));

        let units = unit_ranges(batch, cell.gates(), hidden);
        on_pool(units.len(), || {
            let mut threads: Vec<Backward<F>> = if units.len() > 1 {
                units.par_iter().map(|u| self.backward_thread(u.clone(), batch)).collect()
            } else {
                units.iter().map(|u| self.backward_thread(u.clone(), batch)).collect()
            };
            for t in (0..steps).rev() {
                let (da_t, da_after) = step_and_after(&mut da, t, batch);
                let (d_rec_t, d_rec_after) = step_and_after(&mut d_recurrent, t, batch);
                let input = StepIn {
                    t,
                    steps,
                    gates: step(&trace.gates, t, batch),
                    h_prev: step(&trace.hs, t, batch),
                    c_prev: step(&trace.cs, t, batch),
                    tanh_c: step(&trace.tanh_c, t, batch),
                    hn: step(&trace.hn, t, batch),
                    output_grad,
                    after: if pytorch_gru { d_rec_after } else { da_after },
                    da_n: &[],
                };
                let outs = split_units(da_t, cell.gates(), &units)
                    .into_iter()
                    .zip(split_units(d_rec_t, cell.gates(), &units))
                    .zip(split_units(da_n.view_mut(), 1, &units))
                    .map(|((da, d_recurrent), da_n)| StepOut { da, d_recurrent, da_n });
                let work: Vec<_> = threads.iter_mut().zip(outs).collect();
                each(work, |(thread, out)| dispatch(BackwardStep { cell: self, thread, input, out, reset: false }));
                if book_gru {
                    let input = StepIn {
                        t,
                        steps,
                        gates: step(&trace.gates, t, batch),
                        h_prev: step(&trace.hs, t, batch),
                        c_prev: &[],
                        tanh_c: &[],
                        hn: &[],
                        output_grad,
                        after: &[],
                        da_n: da_n.as_slice().expect("contiguous"),
                    };
                    let outs = split_units(step_mut(&mut da, t, batch), cell.gates(), &units)
                        .into_iter()
                        .map(|da| StepOut { da, d_recurrent: empty(), da_n: empty() });
                    let work: Vec<_> = threads.iter_mut().zip(outs).collect();
                    each(work, |(thread, out)| dispatch(BackwardStep { cell: self, thread, input, out, reset: true }));
                }
            }
        });

        // The weight gradients, each one product over all steps, in the stored layouts (W_ihᵀ, W_hhᵀ):
        // for the RNN and the LSTM, whose two sides see the same `da`, one product
        // `[x_t, 1, h_{t−1}]ᵀ · da` split in three (one wide product runs faster than a thin one over the
        // few input columns and a second one; the row of the ones is the biases' gradient).
        let h_before = trace.hs.slice(s![..rows, ..]);
        let d_rec = if pytorch_gru { d_recurrent.view() } else { da.view() };
        let mut dw_hh = self.weight_hh.grad.view_mut().into_dimensionality::<Ix2>().expect("a matrix");
        let mut dw_ih = self.weight_ih.grad.view_mut().into_dimensionality::<Ix2>().expect("a matrix");
        let one_product = matches!(cell, CellKind::Rnn | CellKind::Lstm);
        let input = self.spec.input;
        let stacked = if one_product { input + 1 + hidden } else { 0 };
        let mut inputs = reuse(old_inputs, ndarray::Dim([rows, stacked]));
        let mut weight_grads = reuse(old_weight_grads, ndarray::Dim([stacked, gh]));
        let bias_grad = if one_product {
            // Copies of a few megabytes, row by row on all threads.
            Zip::from(inputs.rows_mut()).and(trace.x.rows()).and(h_before.rows()).par_for_each(|mut row, x, h| {
                row.slice_mut(s![..=input]).assign(&x);
                row.slice_mut(s![input + 1..]).assign(&h);
            });
            matmul_into_threaded(&mut weight_grads.view_mut(), &inputs.t(), &da.view(), false);
            let rows = |grad: &mut ArrayViewMut2<'_, F>, from: ArrayView2<'_, F>| {
                Zip::from(grad.rows_mut()).and(from.rows()).par_for_each(|mut to, from| to.assign(&from));
            };
            rows(&mut dw_ih, weight_grads.slice(s![..input, ..]));
            rows(&mut dw_hh, weight_grads.slice(s![input + 1.., ..]));
            weight_grads.row(input).to_owned()
        } else {
            if book_gru {
                let (rz, n) = (s![.., ..2 * hidden], s![.., 2 * hidden..]);
                matmul_into_threaded(&mut dw_hh.slice_mut(rz), &h_before.t(), &d_rec.slice(rz), false);
                matmul_into_threaded(&mut dw_hh.slice_mut(n), &trace.rh.t(), &d_rec.slice(n), false);
            } else {
                matmul_into_threaded(&mut dw_hh, &h_before.t(), &d_rec, false);
            }
            matmul_into_threaded(&mut dw_ih, &trace.x.slice(s![.., ..input]).t(), &da.view(), false);
            da.sum_axis(Axis(0))
        }
        .into_dyn();
        if let Some(b) = &mut self.bias_hh {
            b.grad = if pytorch_gru { d_rec.sum_axis(Axis(0)).into_dyn() } else { bias_grad.clone() };
        }
        self.bias_ih.grad = bias_grad;
        let dx = input_grad.then(|| {
            let dx = matmul(&da.view(), &matrix(&self.weight_ih).t());
            let dx = dx.into_shape_with_order((steps, batch, self.spec.input)).expect("sizes agree");
            dx.permuted_axes([1, 0, 2]).as_standard_layout().into_owned().into_dyn()
        });
        self.backward_buffers = Some(BackwardBuffers { da, d_recurrent, da_n, inputs, weight_grads });
        self.trace = Some(trace);
        Ok(dx)
    }
}
