//! What a cell keeps from its forward pass for back-propagation through time, and the buffers of its
//! backward pass, both kept from one call to the next.
//!
//! `T` steps, batch `B`, `G` gate blocks of `H` units. Every buffer is time-major, one row per step
//! and sequence, `(T·B, features)`: one step is the `(B, features)` block of rows `t·B .. (t + 1)·B`,
//! which the step's product reads or writes whole, and all steps together are the matrix of the
//! weight gradients' products. A buffer that a cell does not use has no columns.

use std::ops::Range;

use ndarray::{Array, Array2, ArrayViewMut2, ArrayViewMut3, Axis, Dimension};

use crate::Float;

/// What the forward pass keeps.
pub(super) struct Trace<F> {
    /// The input and a column of ones, the additive biases' input: `(T·B, input + 1)`.
    pub x: Array2<F>,
    /// The input product's weights, `W_ihᵀ` above the additive biases: `(input + 1, G·H)`.
    pub weights: Array2<F>,
    /// The gate activations, `(T·B, G·H)`: `[i, f, g, o]` (LSTM), `[r, z, n]` (GRU), `h` (RNN).
    pub gates: Array2<F>,
    /// The hidden states `h_0 … h_T`: `((T + 1)·B, H)`.
    pub hs: Array2<F>,
    /// The LSTM's cell states `c_0 … c_T`: `((T + 1)·B, H)`.
    pub cs: Array2<F>,
    /// The LSTM's `tanh(c_t)`, `t = 1 … T`: `(T·B, H)`.
    pub tanh_c: Array2<F>,
    /// The PyTorch GRU's recurrent candidate term `W_hn h_{t−1} + b_hn`: `(T·B, H)`.
    pub hn: Array2<F>,
    /// The book GRU's reset state `r_t ⊙ h_{t−1}`, what `W_hn` multiplies: `(T·B, H)`.
    pub rh: Array2<F>,
    /// `B`.
    pub batch: usize,
}

impl<F> Trace<F> {
    /// `T`.
    pub fn steps(&self) -> usize {
        self.gates.nrows() / self.batch.max(1)
    }
}

/// The backward pass's buffers.
pub(super) struct BackwardBuffers<F> {
    /// The gradients of the gate pre-activations, `(T·B, G·H)`: what `W_ih` and `b_ih` see.
    pub da: Array2<F>,
    /// The PyTorch GRU's gradients of the recurrent pre-activations, `(T·B, G·H)`, what `W_hh` and
    /// `b_hh` see: `[da_r, da_z, da_n ⊙ r]` (the other cells' are `da` itself).
    pub d_recurrent: Array2<F>,
    /// The book GRU's `∂L/∂a_n` of one step, `(B, H)`: what `W_hn` carries back to `r ⊙ h`.
    pub da_n: Array2<F>,
    /// For the cells whose weights on both sides see `da` (RNN, LSTM): every step's input, a one and
    /// the previous hidden state side by side, `(T·B, input + 1 + H)`, the left operand of the one
    /// product that gives both weight gradients and the biases'.
    pub inputs: Array2<F>,
    /// That product, `(input + 1 + H, G·H)`: `∂L/∂W_ihᵀ`, `∂L/∂b` and `∂L/∂W_hhᵀ`, one above the other.
    pub weight_grads: Array2<F>,
}

/// `old` if it has shape `dim`, else a new array of zeros. The layer keeps its buffers from one call
/// to the next: allocating megabytes afresh at every call costs more than the arithmetic done in them
/// (every page is faulted in and cleared again).
pub(super) fn reuse<F: Float, D: Dimension>(old: Option<Array<F, D>>, dim: D) -> Array<F, D> {
    match old {
        Some(a) if a.raw_dim() == dim => a,
        _ => Array::zeros(dim),
    }
}

/// Step `t`'s rows of a time-major buffer of batch `batch`: a `(B, features)` block, rows contiguous.
pub(super) fn step<F>(a: &Array2<F>, t: usize, batch: usize) -> &[F] {
    let width = a.ncols();
    &a.as_slice().expect("buffers are contiguous")[t * batch * width..(t + 1) * batch * width]
}

/// Step `t`'s rows of a time-major buffer, writable.
pub(super) fn step_mut<F>(a: &mut Array2<F>, t: usize, batch: usize) -> ArrayViewMut2<'_, F> {
    a.slice_mut(ndarray::s![t * batch..(t + 1) * batch, ..])
}

/// Steps `t` (read) and `t + 1` (written) of a buffer that holds `T + 1` steps.
pub(super) fn step_and_next<F>(a: &mut Array2<F>, t: usize, batch: usize) -> (&[F], ArrayViewMut2<'_, F>) {
    let width = a.ncols();
    let data = a.as_slice_mut().expect("buffers are contiguous");
    let (done, rest) = data.split_at_mut((t + 1) * batch * width);
    let next = ArrayViewMut2::from_shape((batch, width), &mut rest[..batch * width]).expect("a step's rows");
    (&done[t * batch * width..], next)
}

/// A step's `(B, G·H)` block (`G` gate blocks of `H` units) as one `(B, G, n)` view per range of
/// units: every gate block's columns of those units. A buffer without columns gives views without
/// columns.
pub(super) fn split_units<'a, F>(
    a: ArrayViewMut2<'a, F>,
    gates: usize,
    units: &[Range<usize>],
) -> Vec<ArrayViewMut3<'a, F>> {
    let (rows, width) = a.dim();
    let hidden = width / gates;
    let mut rest = a.into_shape_with_order((rows, gates, hidden)).expect("a step's rows are contiguous");
    let mut parts = Vec::with_capacity(units.len());
    for u in units {
        let at = u.len().min(rest.dim().2);
        let (part, tail) = rest.split_at(Axis(2), at);
        parts.push(part);
        rest = tail;
    }
    parts
}

/// The `G` rows of `n` values of one batch row of a [`split_units`] view, as slices.
pub(super) fn gate_rows<'a, F, const G: usize>(row: ArrayViewMut2<'a, F>) -> [&'a mut [F]; G] {
    let mut rest = Some(row);
    std::array::from_fn(|_| {
        let (head, tail) = rest.take().expect("one row per gate block").split_at(Axis(0), 1);
        rest = Some(tail);
        head.into_slice().expect("unit ranges are contiguous")
    })
}
