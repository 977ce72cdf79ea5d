//! What a cell keeps from its forward pass for back-propagation through time, and the buffers of its
//! backward pass, both kept from one call to the next.
//!
//! `T` steps, batch `B`, `G` gate blocks of `H` units. States are feature-major, `(features, time,
//! batch)`: one step is a `(features, B)` matrix, the layout of the per-step products, and all steps
//! together are a `(features, T·B)` matrix for the weight gradients ([`merged`]). A buffer that a
//! cell does not use has no rows.

use ndarray::{Array, Array2, Array3, ArrayView2, ShapeBuilder};

use crate::Float;

/// What the forward pass keeps.
pub(super) struct Trace<F> {
    /// The input, time-major: `(T·B, input)`.
    pub x: Array2<F>,
    /// The gate activations, `(G·H, T, B)`: `[i; f; g; o]` (LSTM), `[r; z; n]` (GRU), `h` (RNN).
    pub gates: Array3<F>,
    /// The hidden states `h_0 … h_T`: `(H, T + 1, B)`.
    pub hs: Array3<F>,
    /// The LSTM's cell states `c_0 … c_T`: `(H, T + 1, B)`.
    pub cs: Array3<F>,
    /// The LSTM's `tanh(c_t)`, `t = 1 … T`: `(H, T, B)`.
    pub tanh_c: Array3<F>,
    /// The PyTorch GRU's recurrent candidate term `W_hn h_{t−1} + b_hn`: `(H, T, B)`.
    pub hn: Array3<F>,
    /// The book GRU's reset state `r_t ⊙ h_{t−1}`, what `W_hn` multiplies: `(H, T, B)`.
    pub rh: Array3<F>,
    /// `W_ih` in its canonical `(G·H, input)` layout, contiguous.
    pub w_ih: Array2<F>,
    /// `W_hh` in its canonical `(G·H, H)` layout, contiguous.
    pub w_hh: Array2<F>,
}

/// The backward pass's buffers.
pub(super) struct BackwardBuffers<F> {
    /// The gradient reaching each step's hidden output from the layer above, `(H, T, B)`.
    pub d_hidden: Array3<F>,
    /// The gradients of the gate pre-activations, `(G·H, T, B)`: what `W_ih` and `b_ih` see.
    pub da: Array3<F>,
    /// The PyTorch GRU's gradients of the recurrent pre-activations, `(G·H, T, B)`, what `W_hh` and
    /// `b_hh` see: `[da_r; da_z; da_n ⊙ r]` (the other cells' are `da` itself).
    pub d_recurrent: Array3<F>,
}

/// `old` if it has shape `dim`, else a new array of zeros. The layer keeps its buffers from one call
/// to the next: allocating megabytes afresh at every call costs more than the arithmetic done in them
/// (every page is faulted in and cleared again).
pub(super) fn reuse<F: Float, D: ndarray::Dimension>(old: Option<Array<F, D>>, dim: D) -> Array<F, D> {
    match old {
        Some(a) if a.raw_dim() == dim => a,
        _ => Array::zeros(dim),
    }
}

/// Steps `t0 .. t0 + steps` of a `(features, T', B)` buffer as one `(features, steps·B)` matrix,
/// without copying.
pub(super) fn merged<F>(a: &Array3<F>, t0: usize, steps: usize) -> ArrayView2<'_, F> {
    let (rows, span, batch) = a.dim();
    let data = &a.as_slice().expect("state buffers are contiguous")[(t0 * batch).min(a.len())..];
    let shape = (rows, steps * batch).strides((span * batch, 1));
    ArrayView2::from_shape(shape, data).expect("the steps lie inside the buffer")
}

/// Columns per block when the batch is split over the threads: evenly, in blocks of at least 8
/// sequences (the recurrence of each sequence is independent of the others).
pub(super) fn block_columns(batch: usize) -> usize {
    let blocks = rayon::current_num_threads().min(batch / 8).max(1);
    batch.div_ceil(blocks)
}

/// Runs `f` on every block, in parallel when there are several.
pub(super) fn run_blocks<T: Send>(blocks: Vec<T>, f: impl Fn(T) + Sync + Send) {
    use rayon::prelude::*;
    if blocks.len() == 1 {
        blocks.into_iter().for_each(f);
    } else {
        blocks.into_par_iter().for_each(f);
    }
}
