//! Back-propagation through time of one cell: the steps in reverse, each turning the gradient that
//! reaches its hidden output into the gradients of its gate pre-activations, then every weight
//! gradient as one product over all steps:
//!
//! ```text
//! ∂L/∂W_ih = Σ_t ∂L/∂a_tᵀ x_t        ∂L/∂W_hh = Σ_t ∂L/∂a_tᵀ h_{t−1}      ∂L/∂b = Σ_t Σ_batch ∂L/∂a_t
//! ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂a_t  (+ the cell's direct paths)            ∂L/∂x_t = W_ihᵀ ∂L/∂a_t
//! ```
//!
//! (the PyTorch GRU's recurrent side sees `[da_r; da_z; da_n ⊙ r]`, the book GRU's candidate rows
//! `r ⊙ h_{t−1}` instead of `h_{t−1}`; [`super::loops`] writes every case out).

use ndarray::{s, Array2, ArrayD, ArrayView2, ArrayView3, ArrayViewMut3, Axis, Ix2, Ix3};

use super::buffers::{block_columns, merged, reuse, run_blocks, BackwardBuffers};
use super::cell::{matrix, Cell};
use super::kernels;
use crate::linalg::{matmul, matmul_into, matmul_into_threaded};
use crate::simd::{dispatch, Simd, WithSimd};
use crate::spec::{CellKind, GruForm};
use crate::{Error, Float, Result};

/// One block of batch columns for the backward pass: the forward pass's states (read), the gradient
/// reaching each step's hidden output, and the gate gradients (written; `d_recurrent` only for the
/// PyTorch GRU).
struct BackwardBlock<'a, F> {
    gates: ArrayView3<'a, F>,
    hs: ArrayView3<'a, F>,
    cs: ArrayView3<'a, F>,
    tanh_c: ArrayView3<'a, F>,
    hn: ArrayView3<'a, F>,
    d_hidden: ArrayView3<'a, F>,
    da: ArrayViewMut3<'a, F>,
    d_recurrent: ArrayViewMut3<'a, F>,
}

/// [`Cell::backward_block`], compiled for each instruction-set level of [`crate::simd`].
struct Backward<'a, 'b, F: Float> {
    cell: &'a Cell<F>,
    w_hh: ArrayView2<'a, F>,
    block: BackwardBlock<'b, F>,
}

impl<F: Float> WithSimd for Backward<'_, '_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        self.cell.backward_block(&self.w_hh, self.block);
    }
}

impl<F: Float> Cell<F> {
    /// Back-propagation through time over one block of batch columns: fills the gate gradients.
    /// `w_hh` is the stored `(H, G·H)` layout, `W_hhᵀ`.
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
                    let state = (blk.cs.index_axis(Axis(1), t), blk.tanh_c.index_axis(Axis(1), t));
                    kernels::lstm_backward(g, state, dh.view(), dc.view_mut(), da.view_mut());
                    matmul_into(&mut dh_next.view_mut(), w_hh, &da.view(), false);
                }
                CellKind::Gru(GruForm::PyTorch) => {
                    let mut d_rec = blk.d_recurrent.index_axis_mut(Axis(1), t);
                    let extra =
                        kernels::ResetAfterProduct { hn: blk.hn.index_axis(Axis(1), t), d_recurrent: d_rec.view_mut() };
                    kernels::gru_backward(g, h_prev, dh.view(), da.view_mut(), dh_next.view_mut(), Some(extra));
                    matmul_into(&mut dh_next.view_mut(), w_hh, &d_rec.view(), true);
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

    /// Back-propagation through time from `output_grad` `(B, T, H)`: every parameter gradient, and
    /// the input gradient `(B, T, input)` if `input_grad`.
    ///
    /// # Errors
    /// Before a forward pass, or if `output_grad` has the wrong shape.
    pub fn backward(&mut self, output_grad: ArrayD<F>, input_grad: bool) -> Result<Option<ArrayD<F>>> {
        let trace =
            self.trace.take().ok_or_else(|| Error::InvalidArgument("Recurrent: backward before forward".into()))?;
        let (h, gh) = (self.spec.hidden, self.spec.cell.gates() * self.spec.hidden);
        let (steps, batch) = (trace.gates.dim().1, trace.gates.dim().2);
        let want = [batch, steps, h];
        if output_grad.shape() != want {
            self.trace = Some(trace);
            return Err(Error::shape("output gradient", format!("{want:?}"), output_grad.shape()));
        }
        let rows = steps * batch;
        let pytorch_gru = self.spec.cell == CellKind::Gru(GruForm::PyTorch);
        let (old_dh, old_da, old_d_rec) = match self.backward_buffers.take() {
            Some(b) => (Some(b.d_hidden), Some(b.da), Some(b.d_recurrent)),
            None => Default::default(),
        };
        // (B, T, H) to feature-major (H, T, B).
        let mut d_hidden = reuse(old_dh, ndarray::Dim([h, steps, batch]));
        d_hidden.assign(&output_grad.into_dimensionality::<Ix3>().expect("checked").permuted_axes([2, 1, 0]));

        let mut da = reuse(old_da, ndarray::Dim([gh, steps, batch]));
        let mut d_recurrent = reuse(old_d_rec, ndarray::Dim([if pytorch_gru { gh } else { 0 }, steps, batch]));
        let cols = block_columns(batch);
        let blocks: Vec<BackwardBlock<'_, F>> = trace
            .gates
            .axis_chunks_iter(Axis(2), cols)
            .zip(trace.hs.axis_chunks_iter(Axis(2), cols))
            .zip(trace.cs.axis_chunks_iter(Axis(2), cols).zip(trace.tanh_c.axis_chunks_iter(Axis(2), cols)))
            .zip(trace.hn.axis_chunks_iter(Axis(2), cols).zip(d_hidden.axis_chunks_iter(Axis(2), cols)))
            .zip(da.axis_chunks_iter_mut(Axis(2), cols).zip(d_recurrent.axis_chunks_iter_mut(Axis(2), cols)))
            .map(|((((gates, hs), (cs, tanh_c)), (hn, d_hidden)), (da, d_recurrent))| BackwardBlock {
                gates,
                hs,
                cs,
                tanh_c,
                hn,
                d_hidden,
                da,
                d_recurrent,
            })
            .collect();
        let w_hh = matrix(&self.weight_hh);
        run_blocks(blocks, |block| dispatch(Backward { cell: self, w_hh: w_hh.view(), block }));

        {
            let da2 = da.view().into_shape_with_order((gh, rows)).expect("contiguous");
            let d_rec2 = d_recurrent.view().into_shape_with_order((d_recurrent.dim().0, rows)).expect("contiguous");
            let d_rec = if pytorch_gru { d_rec2 } else { da2 };
            let h_before = merged(&trace.hs, 0, steps);
            let mut dw_hh = self.weight_hh.grad.view_mut().into_dimensionality::<Ix2>().expect("a matrix");
            if self.spec.cell == CellKind::Gru(GruForm::Book) {
                let (rz, n) = (s![..2 * h, ..], s![2 * h.., ..]);
                matmul_into_threaded(&mut dw_hh.slice_mut(s![.., ..2 * h]), &h_before, &d_rec.slice(rz).t(), false);
                let rh = merged(&trace.rh, 0, steps);
                matmul_into_threaded(&mut dw_hh.slice_mut(s![.., 2 * h..]), &rh, &d_rec.slice(n).t(), false);
            } else {
                matmul_into_threaded(&mut dw_hh, &h_before, &d_rec.t(), false);
            }
            if let Some(b) = &mut self.bias_hh {
                b.grad = d_rec.sum_axis(Axis(1)).into_dyn();
            }
            let mut dw_ih = self.weight_ih.grad.view_mut().into_dimensionality::<Ix2>().expect("a matrix");
            matmul_into_threaded(&mut dw_ih, &trace.x.t(), &da2.t(), false);
            self.bias_ih.grad = da2.sum_axis(Axis(1)).into_dyn();
        }
        let dx = input_grad.then(|| {
            let da2 = da.view().into_shape_with_order((gh, rows)).expect("contiguous");
            let dx = matmul(&da2.t(), &matrix(&self.weight_ih).t());
            let dx = dx.into_shape_with_order((steps, batch, self.spec.input)).expect("sizes agree");
            dx.permuted_axes([1, 0, 2]).as_standard_layout().into_owned().into_dyn()
        });
        self.backward_buffers = Some(BackwardBuffers { d_hidden, da, d_recurrent });
        self.trace = Some(trace);
        Ok(dx)
    }
}
