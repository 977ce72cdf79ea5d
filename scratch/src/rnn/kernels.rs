//! The element-wise part of one time step of each cell, forward and backward, on one row of the batch
//! and a range of `n` hidden units.
//!
//! Each argument is a slice of `n` values (the units' part of one gate block or state row), except
//! `pre`: the row of the step's recurrent product ([`super::product`]), its blocks of `n` values one
//! after the other in the order of the gates. A gate slice holds the input side of the gate's
//! pre-activation (`W_ih x + b`) and is overwritten with the activation. Backward functions take `dh`,
//! the whole gradient reaching this step's hidden output, and write the gradients of the gate
//! pre-activations.
//!
//! The loops take their operands as separate slices cut to the same length: the compiler then knows
//! that they do not overlap and have no bounds to check, and vectorises them for the level of
//! [`crate::simd`] they are compiled at.

use crate::Float;

/// `a ← f(a + pre)`.
#[inline(always)]
fn activate<F: Float>(a: &mut [F], pre: &[F], f: impl Fn(F) -> F) {
    let pre = &pre[..a.len()];
    for (a, &p) in a.iter_mut().zip(pre) {
        *a = f(*a + p);
    }
}

/// `dh = d_out + d_next`: the gradient reaching a hidden state from the layer above and from the next
/// step's recurrent product.
#[inline(always)]
pub(super) fn sum2<F: Float>(d_out: &[F], d_next: &[F], dh: &mut [F]) {
    let n = dh.len();
    let (d_out, d_next) = (&d_out[..n], &d_next[..n]);
    for j in 0..n {
        dh[j] = d_out[j] + d_next[j];
    }
}

/// `dh = d_out + d_next + carry`: the gradient reaching a hidden state from the layer above, from the
/// next step's recurrent product, and from the next step's direct paths.
#[inline(always)]
pub(super) fn sum3<F: Float>(d_out: &[F], d_next: &[F], carry: &[F], dh: &mut [F]) {
    let n = dh.len();
    let (d_out, d_next, carry) = (&d_out[..n], &d_next[..n], &carry[..n]);
    for j in 0..n {
        dh[j] = d_out[j] + d_next[j] + carry[j];
    }
}

/// `h = tanh(a + pre)`, kept in the gate slice too.
#[inline(always)]
pub(super) fn rnn_forward<F: Float>(pre: &[F], a: &mut [F], h: &mut [F]) {
    activate(a, pre, F::tanh_fast);
    h.copy_from_slice(a);
}

/// `∂L/∂a = dh ⊙ (1 − h²)`.
#[inline(always)]
pub(super) fn rnn_backward<F: Float>(h: &[F], dh: &[F], da: &mut [F]) {
    let n = da.len();
    let (h, dh) = (&h[..n], &dh[..n]);
    for j in 0..n {
        da[j] = dh[j] * (F::one() - h[j] * h[j]);
    }
}

/// The LSTM step. The gate slices hold the input sides of `[a_i; a_f; a_g; a_o]` and become the
/// activations `[i; f; g; o]`; then
///
/// ```text
/// c = f ⊙ c_prev + i ⊙ g,   tanh_c = tanh(c),   h = o ⊙ tanh_c
/// ```
#[inline(always)]
pub(super) fn lstm_forward<F: Float>(
    pre: &[F],
    [i, f, g, o]: [&mut [F]; 4],
    c_prev: &[F],
    (c, tanh_c, h): (&mut [F], &mut [F], &mut [F]),
) {
    let n = h.len();
    activate(i, &pre[..n], F::sigmoid_fast);
    activate(f, &pre[n..2 * n], F::sigmoid_fast);
    activate(g, &pre[2 * n..3 * n], F::tanh_fast);
    activate(o, &pre[3 * n..4 * n], F::sigmoid_fast);
    cell_state(i, f, g, c_prev, c);
    hidden_output(c, o, tanh_c, h);
}

/// `c = f ⊙ c_prev + i ⊙ g`.
#[inline(always)]
fn cell_state<F: Float>(i: &[F], f: &[F], g: &[F], c_prev: &[F], c: &mut [F]) {
    let n = c.len();
    let (i, f, g, c_prev) = (&i[..n], &f[..n], &g[..n], &c_prev[..n]);
    for j in 0..n {
        c[j] = f[j] * c_prev[j] + i[j] * g[j];
    }
}

/// `tanh_c = tanh(c)`, `h = o ⊙ tanh_c`.
#[inline(always)]
fn hidden_output<F: Float>(c: &[F], o: &[F], tanh_c: &mut [F], h: &mut [F]) {
    let n = h.len();
    let (c, o, tanh_c) = (&c[..n], &o[..n], &mut tanh_c[..n]);
    for j in 0..n {
        tanh_c[j] = c[j].tanh_fast();
        h[j] = o[j] * tanh_c[j];
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
#[inline(always)]
pub(super) fn lstm_backward<F: Float>(
    [i, f, g, o]: [&[F]; 4],
    (c_prev, tanh_c): (&[F], &[F]),
    dh: &[F],
    dc: &mut [F],
    [da_i, da_f, da_g, da_o]: [&mut [F]; 4],
) {
    output_gate_backward(dh, o, tanh_c, dc, da_o);
    input_gates_backward(dc, i, g, da_i, da_g);
    forget_gate_backward(f, c_prev, dc, da_f);
}

/// `dc += dh ⊙ o ⊙ (1 − tanh_c²)`, `da_o = dh ⊙ tanh_c ⊙ o(1 − o)`.
#[inline(always)]
fn output_gate_backward<F: Float>(dh: &[F], o: &[F], tanh_c: &[F], dc: &mut [F], da_o: &mut [F]) {
    let (n, one) = (dc.len(), F::one());
    let (dh, o, tanh_c, da_o) = (&dh[..n], &o[..n], &tanh_c[..n], &mut da_o[..n]);
    for j in 0..n {
        dc[j] += dh[j] * o[j] * (one - tanh_c[j] * tanh_c[j]);
        da_o[j] = dh[j] * tanh_c[j] * o[j] * (one - o[j]);
    }
}

/// `da_i = dc ⊙ g ⊙ i(1 − i)`, `da_g = dc ⊙ i ⊙ (1 − g²)`.
#[inline(always)]
fn input_gates_backward<F: Float>(dc: &[F], i: &[F], g: &[F], da_i: &mut [F], da_g: &mut [F]) {
    let (n, one) = (dc.len(), F::one());
    let (i, g, da_i, da_g) = (&i[..n], &g[..n], &mut da_i[..n], &mut da_g[..n]);
    for j in 0..n {
        da_i[j] = dc[j] * g[j] * i[j] * (one - i[j]);
        da_g[j] = dc[j] * i[j] * (one - g[j] * g[j]);
    }
}

/// `da_f = dc ⊙ c_prev ⊙ f(1 − f)`, then `dc ← dc ⊙ f` (the gradient of `c_prev`).
#[inline(always)]
fn forget_gate_backward<F: Float>(f: &[F], c_prev: &[F], dc: &mut [F], da_f: &mut [F]) {
    let (n, one) = (dc.len(), F::one());
    let (f, c_prev, da_f) = (&f[..n], &c_prev[..n], &mut da_f[..n]);
    for j in 0..n {
        da_f[j] = dc[j] * c_prev[j] * f[j] * (one - f[j]);
        dc[j] *= f[j];
    }
}

/// The reset and update gates of a GRU: `r = σ(a_r + pre_r)`, `z = σ(a_z + pre_z)`.
#[inline(always)]
pub(super) fn gru_gates<F: Float>(pre: &[F], r: &mut [F], z: &mut [F]) {
    let n = r.len();
    activate(r, &pre[..n], F::sigmoid_fast);
    activate(z, &pre[n..2 * n], F::sigmoid_fast);
}

/// The PyTorch GRU's candidate and output, after [`gru_gates`]: `pre_n = W_hn h_prev`, and
///
/// ```text
/// hn = pre_n + b_hn,   n = tanh(a_n + r ⊙ hn),   h = (1 − z) ⊙ n + z ⊙ h_prev
/// ```
#[inline(always)]
pub(super) fn gru_output_after_product<F: Float>(
    (pre_n, b_hn): (&[F], &[F]),
    (r, z): (&[F], &[F]),
    cand: &mut [F],
    h_prev: &[F],
    (hn, h): (&mut [F], &mut [F]),
) {
    let (n, one) = (h.len(), F::one());
    let (pre_n, b_hn, r, z, cand, h_prev, hn) =
        (&pre_n[..n], &b_hn[..n], &r[..n], &z[..n], &mut cand[..n], &h_prev[..n], &mut hn[..n]);
    for j in 0..n {
        hn[j] = pre_n[j] + b_hn[j];
        cand[j] = (cand[j] + r[j] * hn[j]).tanh_fast();
        h[j] = (one - z[j]) * cand[j] + z[j] * h_prev[j];
    }
}

/// The book GRU's reset state, after [`gru_gates`]: `rh = r ⊙ h_prev`, what `W_hn` multiplies.
#[inline(always)]
pub(super) fn gru_reset_state<F: Float>(r: &[F], h_prev: &[F], rh: &mut [F]) {
    let n = rh.len();
    let (r, h_prev) = (&r[..n], &h_prev[..n]);
    for j in 0..n {
        rh[j] = r[j] * h_prev[j];
    }
}

/// The book GRU's candidate and output, once `pre_n = W_hn (r ⊙ h_prev)` is known:
/// `n = tanh(a_n + pre_n)`, `h = (1 − z) ⊙ n + z ⊙ h_prev`.
#[inline(always)]
pub(super) fn gru_output_before_product<F: Float>(pre_n: &[F], z: &[F], cand: &mut [F], h_prev: &[F], h: &mut [F]) {
    let (n, one) = (h.len(), F::one());
    let (pre_n, z, cand, h_prev) = (&pre_n[..n], &z[..n], &mut cand[..n], &h_prev[..n]);
    for j in 0..n {
        cand[j] = (cand[j] + pre_n[j]).tanh_fast();
        h[j] = (one - z[j]) * cand[j] + z[j] * h_prev[j];
    }
}

/// The GRU step backward, first part: from `dh`, the gradients of the update gate's and the
/// candidate's pre-activations, and the direct path to the previous state, which is written to
/// `carry`:
///
/// ```text
/// da_n = dh ⊙ (1 − z) ⊙ (1 − n²)     da_z = dh ⊙ (h_prev − n) ⊙ z(1 − z)     carry = dh ⊙ z
/// ```
#[inline(always)]
pub(super) fn gru_backward<F: Float>(
    (z, cand): (&[F], &[F]),
    h_prev: &[F],
    dh: &[F],
    (da_z, da_n): (&mut [F], &mut [F]),
    carry: &mut [F],
) {
    let (n, one) = (dh.len(), F::one());
    let (z, cand, h_prev, da_z, da_n, carry) =
        (&z[..n], &cand[..n], &h_prev[..n], &mut da_z[..n], &mut da_n[..n], &mut carry[..n]);
    for j in 0..n {
        da_z[j] = dh[j] * (h_prev[j] - cand[j]) * z[j] * (one - z[j]);
        da_n[j] = dh[j] * (one - z[j]) * (one - cand[j] * cand[j]);
        carry[j] = dh[j] * z[j];
    }
}

/// The PyTorch GRU's reset gate backward, after [`gru_backward`]: `da_r = da_n ⊙ hn ⊙ r(1 − r)`, and
/// the gradients of the recurrent pre-activations `[da_r; da_z; da_n ⊙ r]`.
#[inline(always)]
pub(super) fn gru_reset_backward_after_product<F: Float>(
    (r, hn): (&[F], &[F]),
    (da_z, da_n): (&[F], &[F]),
    da_r: &mut [F],
    [d_rec_r, d_rec_z, d_rec_n]: [&mut [F]; 3],
) {
    let (n, one) = (da_r.len(), F::one());
    let (r, hn, da_z, da_n) = (&r[..n], &hn[..n], &da_z[..n], &da_n[..n]);
    let (d_rec_r, d_rec_z, d_rec_n) = (&mut d_rec_r[..n], &mut d_rec_z[..n], &mut d_rec_n[..n]);
    for j in 0..n {
        da_r[j] = da_n[j] * hn[j] * r[j] * (one - r[j]);
        d_rec_r[j] = da_r[j];
        d_rec_z[j] = da_z[j];
        d_rec_n[j] = da_n[j] * r[j];
    }
}

/// The book GRU's reset gate backward, once `d_rh = W_hnᵀ da_n` is known:
/// `da_r = d_rh ⊙ h_prev ⊙ r(1 − r)` and `carry += d_rh ⊙ r`.
#[inline(always)]
pub(super) fn gru_reset_backward_before_product<F: Float>(
    r: &[F],
    h_prev: &[F],
    d_rh: &[F],
    da_r: &mut [F],
    carry: &mut [F],
) {
    let (n, one) = (da_r.len(), F::one());
    let (r, h_prev, d_rh, carry) = (&r[..n], &h_prev[..n], &d_rh[..n], &mut carry[..n]);
    for j in 0..n {
        da_r[j] = d_rh[j] * h_prev[j] * r[j] * (one - r[j]);
        carry[j] += d_rh[j] * r[j];
    }
}
