//! The element-wise part of one time step of each cell, forward and backward, on whole batches.
//!
//! Every function takes row-major `(batch, ·)` buffers as flat slices; the matrix products around
//! them are done by the layer. `hidden` is `H`; a gate buffer holds `G` blocks of `H` per row.
//! Backward functions take `dh`, the gradient reaching this step's hidden output (from the layer
//! above and from the next step), and write the gradients of the gate pre-activations.

use crate::Float;

/// `h = tanh(a)` in place: `a` holds the pre-activation and becomes `h`.
pub(super) fn rnn_forward<F: Float>(a: &mut [F], h: &mut [F]) {
    for (a, h) in a.iter_mut().zip(h) {
        *a = a.tanh_fast();
        *h = *a;
    }
}

/// `∂L/∂a = dh ⊙ (1 − h²)`.
pub(super) fn rnn_backward<F: Float>(h: &[F], dh: &[F], da: &mut [F]) {
    for ((da, &h), &dh) in da.iter_mut().zip(h).zip(dh) {
        *da = dh * (F::one() - h * h);
    }
}

/// The LSTM step. `gates` holds the pre-activations `[a_i, a_f, a_g, a_o]` per row and is overwritten
/// with the activations `[i, f, g, o]`; then
///
/// ```text
/// c = f ⊙ c_prev + i ⊙ g,   tanh_c = tanh(c),   h = o ⊙ tanh_c
/// ```
pub(super) fn lstm_forward<F: Float>(
    gates: &mut [F],
    c_prev: &[F],
    c: &mut [F],
    tanh_c: &mut [F],
    h: &mut [F],
    hidden: usize,
) {
    let rows = gates.chunks_exact_mut(4 * hidden).zip(c_prev.chunks_exact(hidden));
    let outs = c.chunks_exact_mut(hidden).zip(tanh_c.chunks_exact_mut(hidden)).zip(h.chunks_exact_mut(hidden));
    for ((g, c_prev), ((c, tanh_c), h)) in rows.zip(outs) {
        let (i, rest) = g.split_at_mut(hidden);
        let (f, rest) = rest.split_at_mut(hidden);
        let (g, o) = rest.split_at_mut(hidden);
        i.iter_mut().chain(f.iter_mut()).for_each(|v| *v = v.sigmoid_fast());
        g.iter_mut().for_each(|v| *v = v.tanh_fast());
        o.iter_mut().for_each(|v| *v = v.sigmoid_fast());
        for j in 0..hidden {
            c[j] = f[j] * c_prev[j] + i[j] * g[j];
            tanh_c[j] = c[j].tanh_fast();
            h[j] = o[j] * tanh_c[j];
        }
    }
}

/// The LSTM step backward. `dc` holds the gradient of this step's cell state coming from the next
/// step and is replaced by the gradient of `c_prev`:
///
/// ```text
/// dc   = dc + dh ⊙ o ⊙ (1 − tanh_c²)
/// da_i = dc ⊙ g ⊙ i(1 − i)        da_f = dc ⊙ c_prev ⊙ f(1 − f)
/// da_g = dc ⊙ i ⊙ (1 − g²)        da_o = dh ⊙ tanh_c ⊙ o(1 − o)
/// dc_prev = dc ⊙ f
/// ```
pub(super) fn lstm_backward<F: Float>(
    gates: &[F],
    c_prev: &[F],
    tanh_c: &[F],
    dh: &[F],
    dc: &mut [F],
    da: &mut [F],
    hidden: usize,
) {
    let one = F::one();
    let rows = gates.chunks_exact(4 * hidden).zip(da.chunks_exact_mut(4 * hidden));
    let state = c_prev.chunks_exact(hidden).zip(tanh_c.chunks_exact(hidden));
    let grads = dh.chunks_exact(hidden).zip(dc.chunks_exact_mut(hidden));
    for (((g, da), (c_prev, tanh_c)), (dh, dc)) in rows.zip(state).zip(grads) {
        let (i, rest) = g.split_at(hidden);
        let (f, rest) = rest.split_at(hidden);
        let (g, o) = rest.split_at(hidden);
        let (da_i, rest) = da.split_at_mut(hidden);
        let (da_f, rest) = rest.split_at_mut(hidden);
        let (da_g, da_o) = rest.split_at_mut(hidden);
        for j in 0..hidden {
            let d_c = dc[j] + dh[j] * o[j] * (one - tanh_c[j] * tanh_c[j]);
            da_i[j] = d_c * g[j] * i[j] * (one - i[j]);
            da_f[j] = d_c * c_prev[j] * f[j] * (one - f[j]);
            da_g[j] = d_c * i[j] * (one - g[j] * g[j]);
            da_o[j] = dh[j] * tanh_c[j] * o[j] * (one - o[j]);
            dc[j] = d_c * f[j];
        }
    }
}

/// The reset and update gates of a GRU: `gates[.., 0..2H]` holds `[a_r, a_z]` (input and recurrent
/// products summed) and becomes `[r, z]`. In the book's form, `rh = r ⊙ h_prev` is written for the
/// candidate's recurrent product.
pub(super) fn gru_gates<F: Float>(gates: &mut [F], h_prev: &[F], rh: Option<&mut [F]>, hidden: usize) {
    for g in gates.chunks_exact_mut(3 * hidden) {
        g[..2 * hidden].iter_mut().for_each(|v| *v = v.sigmoid_fast());
    }
    if let Some(rh) = rh {
        let rows = gates.chunks_exact(3 * hidden).zip(h_prev.chunks_exact(hidden)).zip(rh.chunks_exact_mut(hidden));
        for ((g, h_prev), rh) in rows {
            for j in 0..hidden {
                rh[j] = g[j] * h_prev[j];
            }
        }
    }
}

/// The GRU candidate and output. `gates[.., 2H..3H]` holds `a_n` without its recurrent term, which is
/// `hn` in the PyTorch form (`n = tanh(a_n + r ⊙ hn)`, `hn = W_hn h + b_hn`) and already added in the
/// book's form (`hn = None`). `n` is written over `a_n`, then `h = (1 − z) ⊙ n + z ⊙ h_prev`.
pub(super) fn gru_output<F: Float>(gates: &mut [F], hn: Option<&[F]>, h_prev: &[F], h: &mut [F], hidden: usize) {
    let one = F::one();
    let rows = gates.chunks_exact_mut(3 * hidden).zip(h_prev.chunks_exact(hidden)).zip(h.chunks_exact_mut(hidden));
    for (row, ((g, h_prev), h)) in rows.enumerate() {
        let (rz, n) = g.split_at_mut(2 * hidden);
        let (r, z) = rz.split_at(hidden);
        if let Some(hn) = hn {
            let hn = &hn[row * hidden..(row + 1) * hidden];
            for j in 0..hidden {
                n[j] += r[j] * hn[j];
            }
        }
        for j in 0..hidden {
            n[j] = n[j].tanh_fast();
            h[j] = (one - z[j]) * n[j] + z[j] * h_prev[j];
        }
    }
}

/// What the PyTorch-form GRU backward needs beyond the book form's: the recurrent candidate term `hn`
/// (read) and the recurrent-side gate gradients `dah` (written).
pub(super) struct ResetAfterProduct<'a, F> {
    pub hn: &'a [F],
    pub dah: &'a mut [F],
}

/// The GRU step backward, first part: from `dh`, the gradients of the update gate's and the
/// candidate's pre-activations, and the direct path to the previous state.
///
/// ```text
/// da_n = dh ⊙ (1 − z) ⊙ (1 − n²)     da_z = dh ⊙ (h_prev − n) ⊙ z(1 − z)     dh_prev = dh ⊙ z
/// ```
///
/// In the PyTorch form it also finishes the reset gate, `da_r = da_n ⊙ hn ⊙ r(1 − r)`, and writes the
/// recurrent-side gradient `dah = [da_r, da_z, da_n ⊙ r]`.
pub(super) fn gru_backward<F: Float>(
    gates: &[F],
    h_prev: &[F],
    dh: &[F],
    da: &mut [F],
    dh_prev: &mut [F],
    mut pytorch: Option<ResetAfterProduct<'_, F>>,
    hidden: usize,
) {
    let one = F::one();
    let g3 = 3 * hidden;
    for (row, ((g, h_prev), (dh, dh_prev))) in gates
        .chunks_exact(g3)
        .zip(h_prev.chunks_exact(hidden))
        .zip(dh.chunks_exact(hidden).zip(dh_prev.chunks_exact_mut(hidden)))
        .enumerate()
    {
        let da = &mut da[row * g3..(row + 1) * g3];
        for j in 0..hidden {
            let (z, n) = (g[hidden + j], g[2 * hidden + j]);
            da[hidden + j] = dh[j] * (h_prev[j] - n) * z * (one - z);
            da[2 * hidden + j] = dh[j] * (one - z) * (one - n * n);
            dh_prev[j] = dh[j] * z;
        }
        if let Some(ResetAfterProduct { hn, dah }) = pytorch.as_mut() {
            let hn = &hn[row * hidden..(row + 1) * hidden];
            let dah = &mut dah[row * g3..(row + 1) * g3];
            for j in 0..hidden {
                let r = g[j];
                da[j] = da[2 * hidden + j] * hn[j] * r * (one - r);
                dah[j] = da[j];
                dah[hidden + j] = da[hidden + j];
                dah[2 * hidden + j] = da[2 * hidden + j] * r;
            }
        }
    }
}

/// The book-form GRU's reset gate backward, once `d_rh = da_n W_hn` is known:
/// `da_r = d_rh ⊙ h_prev ⊙ r(1 − r)` and `dh_prev += d_rh ⊙ r`.
pub(super) fn gru_book_reset_backward<F: Float>(
    gates: &[F],
    h_prev: &[F],
    d_rh: &[F],
    da: &mut [F],
    dh_prev: &mut [F],
    hidden: usize,
) {
    let one = F::one();
    let g3 = 3 * hidden;
    for (row, (h_prev, (d_rh, dh_prev))) in
        h_prev.chunks_exact(hidden).zip(d_rh.chunks_exact(hidden).zip(dh_prev.chunks_exact_mut(hidden))).enumerate()
    {
        let g = &gates[row * g3..row * g3 + hidden];
        let da = &mut da[row * g3..row * g3 + hidden];
        for j in 0..hidden {
            da[j] = d_rh[j] * h_prev[j] * g[j] * (one - g[j]);
            dh_prev[j] += d_rh[j] * g[j];
        }
    }
}
