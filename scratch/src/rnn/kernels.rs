//! The element-wise part of one time step of each cell, forward and backward.
//!
//! Every buffer is a `(features, batch)` matrix (feature-major: one row per unit, the batch along the
//! row), the layout the layer keeps its per-step states in; rows need not be adjacent, but each row
//! is contiguous. A gate buffer stacks `G` blocks of `H` rows. Backward functions take `dh`, the
//! gradient reaching this step's hidden output (from the layer above and from the next step), and
//! write the gradients of the gate pre-activations.

use ndarray::{s, ArrayView2, ArrayViewMut2, Axis};

use crate::Float;

/// The rows of `a` as slices.
#[inline(always)]
fn rows<'a, F>(a: &'a ArrayView2<'_, F>) -> impl Iterator<Item = &'a [F]> {
    a.rows().into_iter().map(|r| r.to_slice().expect("rows are contiguous"))
}

/// The rows of `a` as mutable slices.
#[inline(always)]
fn rows_mut<'a, F>(a: &'a mut ArrayViewMut2<'_, F>) -> impl Iterator<Item = &'a mut [F]> {
    a.rows_mut().into_iter().map(|r| r.into_slice().expect("rows are contiguous"))
}

/// Applies `f` to every element of rows `range` of `a`.
#[inline(always)]
fn apply<F: Float>(a: &mut ArrayViewMut2<'_, F>, range: std::ops::Range<usize>, f: impl Fn(F) -> F) {
    for row in rows_mut(&mut a.slice_mut(s![range, ..])) {
        row.iter_mut().for_each(|v| *v = f(*v));
    }
}

/// `c = a + b`.
#[inline(always)]
pub(super) fn sum_into<F: Float>(a: ArrayView2<'_, F>, b: ArrayView2<'_, F>, mut c: ArrayViewMut2<'_, F>) {
    for ((a, b), c) in rows(&a).zip(rows(&b)).zip(rows_mut(&mut c)) {
        add(a, b, c);
    }
}

/// `c = a + b` on rows.
#[inline(always)]
fn add<F: Float>(a: &[F], b: &[F], c: &mut [F]) {
    let n = c.len();
    let (a, b) = (&a[..n], &b[..n]);
    for j in 0..n {
        c[j] = a[j] + b[j];
    }
}

/// `h = tanh(a)`: `a` holds the pre-activation and becomes `h` too.
#[inline(always)]
pub(super) fn rnn_forward<F: Float>(mut a: ArrayViewMut2<'_, F>, mut h: ArrayViewMut2<'_, F>) {
    for (a, h) in rows_mut(&mut a).zip(rows_mut(&mut h)) {
        for (a, h) in a.iter_mut().zip(h) {
            *a = a.tanh_fast();
            *h = *a;
        }
    }
}

/// `∂L/∂a = dh ⊙ (1 − h²)`.
#[inline(always)]
pub(super) fn rnn_backward<F: Float>(h: ArrayView2<'_, F>, dh: ArrayView2<'_, F>, mut da: ArrayViewMut2<'_, F>) {
    for ((da, h), dh) in rows_mut(&mut da).zip(rows(&h)).zip(rows(&dh)) {
        for ((da, &h), &dh) in da.iter_mut().zip(h).zip(dh) {
            *da = dh * (F::one() - h * h);
        }
    }
}

/// The LSTM step. `gates` holds the pre-activations `[a_i; a_f; a_g; a_o]` and is overwritten with the
/// activations `[i; f; g; o]`; then
///
/// ```text
/// c = f ⊙ c_prev + i ⊙ g,   tanh_c = tanh(c),   h = o ⊙ tanh_c
/// ```
#[inline(always)]
pub(super) fn lstm_forward<F: Float>(
    mut gates: ArrayViewMut2<'_, F>,
    c_prev: ArrayView2<'_, F>,
    mut c: ArrayViewMut2<'_, F>,
    mut tanh_c: ArrayViewMut2<'_, F>,
    mut h: ArrayViewMut2<'_, F>,
) {
    let n = c.nrows();
    apply(&mut gates, 0..2 * n, F::sigmoid_fast);
    apply(&mut gates, 2 * n..3 * n, F::tanh_fast);
    apply(&mut gates, 3 * n..4 * n, F::sigmoid_fast);
    let gates = gates.view();
    let (i, rest) = gates.split_at(Axis(0), n);
    let (f, rest) = rest.split_at(Axis(0), n);
    let (g, o) = rest.split_at(Axis(0), n);
    let inputs = rows(&i).zip(rows(&f)).zip(rows(&g).zip(rows(&o))).zip(rows(&c_prev));
    let outputs = rows_mut(&mut c).zip(rows_mut(&mut tanh_c)).zip(rows_mut(&mut h));
    for ((((i, f), (g, o)), c_prev), ((c, tanh_c), h)) in inputs.zip(outputs) {
        cell_state(i, f, g, c_prev, c);
        hidden_output(c, o, tanh_c, h);
    }
}

// The row loops below take their rows as separate slice arguments: the compiler then knows that the
// rows do not overlap and vectorises the loops without run-time overlap checks (with a dozen rows in
// one loop it gives up).

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
    gates: ArrayView2<'_, F>,
    (c_prev, tanh_c): (ArrayView2<'_, F>, ArrayView2<'_, F>),
    dh: ArrayView2<'_, F>,
    mut dc: ArrayViewMut2<'_, F>,
    mut da: ArrayViewMut2<'_, F>,
) {
    let n = dc.nrows();
    let (i, rest) = gates.split_at(Axis(0), n);
    let (f, rest) = rest.split_at(Axis(0), n);
    let (g, o) = rest.split_at(Axis(0), n);
    let (mut da_i, rest) = da.view_mut().split_at(Axis(0), n);
    let (mut da_f, rest) = rest.split_at(Axis(0), n);
    let (mut da_g, mut da_o) = rest.split_at(Axis(0), n);
    let gates = rows(&i).zip(rows(&f)).zip(rows(&g).zip(rows(&o)));
    let state = rows(&c_prev).zip(rows(&tanh_c)).zip(rows(&dh)).zip(rows_mut(&mut dc));
    let grads = rows_mut(&mut da_i).zip(rows_mut(&mut da_f)).zip(rows_mut(&mut da_g).zip(rows_mut(&mut da_o)));
    for ((((i, f), (g, o)), (((c_prev, tanh_c), dh), dc)), ((da_i, da_f), (da_g, da_o))) in gates.zip(state).zip(grads)
    {
        output_gate_backward(dh, o, tanh_c, dc, da_o);
        input_gates_backward(dc, i, g, da_i, da_g);
        forget_gate_backward(f, c_prev, dc, da_f);
    }
}

/// The reset and update gates of a GRU: rows `0..2H` of `gates` hold `[a_r; a_z]` (input and
/// recurrent products summed) and become `[r; z]`. In the book's form, `rh = r ⊙ h_prev` is written
/// for the candidate's recurrent product.
#[inline(always)]
pub(super) fn gru_gates<F: Float>(
    mut gates: ArrayViewMut2<'_, F>,
    h_prev: ArrayView2<'_, F>,
    rh: Option<ArrayViewMut2<'_, F>>,
) {
    let n = h_prev.nrows();
    apply(&mut gates, 0..2 * n, F::sigmoid_fast);
    if let Some(mut rh) = rh {
        let r = gates.slice(s![..n, ..]);
        for ((r, h_prev), rh) in rows(&r).zip(rows(&h_prev)).zip(rows_mut(&mut rh)) {
            let n = rh.len();
            // Slices of exactly n elements: no bounds checks in the loop, which then vectorises.
            let h_prev = &h_prev[..n];
            let r = &r[..n];
            for j in 0..n {
                rh[j] = r[j] * h_prev[j];
            }
        }
    }
}

/// The GRU candidate and output. Rows `2H..3H` of `gates` hold `a_n` without its recurrent term, which
/// is `hn` in the PyTorch form (`n = tanh(a_n + r ⊙ hn)`, `hn = W_hn h + b_hn`) and already added in
/// the book's form (`hn = None`). `n` is written over `a_n`, then `h = (1 − z) ⊙ n + z ⊙ h_prev`.
#[inline(always)]
pub(super) fn gru_output<F: Float>(
    mut gates: ArrayViewMut2<'_, F>,
    hn: Option<ArrayView2<'_, F>>,
    h_prev: ArrayView2<'_, F>,
    mut h: ArrayViewMut2<'_, F>,
) {
    let one = F::one();
    let n = h.nrows();
    let (rz, mut cand) = gates.view_mut().split_at(Axis(0), 2 * n);
    let (r, z) = rz.split_at(Axis(0), n);
    let (r, z) = (r.view(), z.view());
    if let Some(hn) = hn {
        for ((cand, r), hn) in rows_mut(&mut cand).zip(rows(&r)).zip(rows(&hn)) {
            let n = cand.len();
            // Slices of exactly n elements: no bounds checks in the loop, which then vectorises.
            let hn = &hn[..n];
            let r = &r[..n];
            for j in 0..n {
                cand[j] += r[j] * hn[j];
            }
        }
    }
    for (((cand, z), h_prev), h) in rows_mut(&mut cand).zip(rows(&z)).zip(rows(&h_prev)).zip(rows_mut(&mut h)) {
        let n = h.len();
        // Slices of exactly n elements: no bounds checks in the loop, which then vectorises.
        let cand = &mut cand[..n];
        let h_prev = &h_prev[..n];
        let z = &z[..n];
        for j in 0..n {
            cand[j] = cand[j].tanh_fast();
            h[j] = (one - z[j]) * cand[j] + z[j] * h_prev[j];
        }
    }
}

/// What the PyTorch-form GRU backward needs beyond the book form's: the recurrent candidate term
/// `hn = W_hn h_prev + b_hn` (read) and the gradients of the recurrent pre-activations (written).
pub(super) struct ResetAfterProduct<'a, F> {
    pub hn: ArrayView2<'a, F>,
    pub d_recurrent: ArrayViewMut2<'a, F>,
}

/// The GRU step backward, first part: from `dh`, the gradients of the update gate's and the
/// candidate's pre-activations, and the direct path to the previous state.
///
/// ```text
/// da_n = dh ⊙ (1 − z) ⊙ (1 − n²)     da_z = dh ⊙ (h_prev − n) ⊙ z(1 − z)     dh_prev = dh ⊙ z
/// ```
///
/// In the PyTorch form it also finishes the reset gate, `da_r = da_n ⊙ hn ⊙ r(1 − r)`, and writes the
/// gradients of the recurrent pre-activations, `d_recurrent = [da_r; da_z; da_n ⊙ r]`.
#[inline(always)]
pub(super) fn gru_backward<F: Float>(
    gates: ArrayView2<'_, F>,
    h_prev: ArrayView2<'_, F>,
    dh: ArrayView2<'_, F>,
    mut da: ArrayViewMut2<'_, F>,
    mut dh_prev: ArrayViewMut2<'_, F>,
    pytorch: Option<ResetAfterProduct<'_, F>>,
) {
    let one = F::one();
    let n = h_prev.nrows();
    let (r, rest) = gates.split_at(Axis(0), n);
    let (z, cand) = rest.split_at(Axis(0), n);
    let (mut da_r, rest) = da.view_mut().split_at(Axis(0), n);
    let (mut da_z, mut da_n) = rest.split_at(Axis(0), n);
    let inputs = rows(&z).zip(rows(&cand)).zip(rows(&h_prev).zip(rows(&dh)));
    let outputs = rows_mut(&mut da_z).zip(rows_mut(&mut da_n)).zip(rows_mut(&mut dh_prev));
    for (((z, cand), (h_prev, dh)), ((da_z, da_n), dh_prev)) in inputs.zip(outputs) {
        let n = dh.len();
        // Slices of exactly n elements: no bounds checks in the loop, which then vectorises.
        let cand = &cand[..n];
        let da_n = &mut da_n[..n];
        let da_z = &mut da_z[..n];
        let dh_prev = &mut dh_prev[..n];
        let h_prev = &h_prev[..n];
        let z = &z[..n];
        for j in 0..n {
            da_z[j] = dh[j] * (h_prev[j] - cand[j]) * z[j] * (one - z[j]);
            da_n[j] = dh[j] * (one - z[j]) * (one - cand[j] * cand[j]);
            dh_prev[j] = dh[j] * z[j];
        }
    }
    if let Some(ResetAfterProduct { hn, mut d_recurrent }) = pytorch {
        let (mut dah_r, rest) = d_recurrent.view_mut().split_at(Axis(0), n);
        let (mut dah_z, mut dah_n) = rest.split_at(Axis(0), n);
        for (((r, hn), (da_r, da_n)), ((dah_r, dah_n), (dah_z, da_z))) in rows(&r)
            .zip(rows(&hn))
            .zip(rows_mut(&mut da_r).zip(rows(&da_n.view())))
            .zip(rows_mut(&mut dah_r).zip(rows_mut(&mut dah_n)).zip(rows_mut(&mut dah_z).zip(rows(&da_z.view()))))
        {
            let n = r.len();
            // Slices of exactly n elements: no bounds checks in the loop, which then vectorises.
            let da_n = &da_n[..n];
            let da_r = &mut da_r[..n];
            let da_z = &da_z[..n];
            let dah_n = &mut dah_n[..n];
            let dah_r = &mut dah_r[..n];
            let dah_z = &mut dah_z[..n];
            let hn = &hn[..n];
            for j in 0..n {
                da_r[j] = da_n[j] * hn[j] * r[j] * (one - r[j]);
                dah_r[j] = da_r[j];
                dah_z[j] = da_z[j];
                dah_n[j] = da_n[j] * r[j];
            }
        }
    }
}

/// The book-form GRU's reset gate backward, once `d_rh = W_hnᵀ da_n` is known:
/// `da_r = d_rh ⊙ h_prev ⊙ r(1 − r)` and `dh_prev += d_rh ⊙ r`.
#[inline(always)]
pub(super) fn gru_book_reset_backward<F: Float>(
    gates: ArrayView2<'_, F>,
    h_prev: ArrayView2<'_, F>,
    d_rh: ArrayView2<'_, F>,
    mut da: ArrayViewMut2<'_, F>,
    mut dh_prev: ArrayViewMut2<'_, F>,
) {
    let one = F::one();
    let n = h_prev.nrows();
    let r = gates.slice(s![..n, ..]);
    let mut da_r = da.slice_mut(s![..n, ..]);
    let inputs = rows(&r).zip(rows(&h_prev)).zip(rows(&d_rh));
    for (((r, h_prev), d_rh), (da_r, dh_prev)) in inputs.zip(rows_mut(&mut da_r).zip(rows_mut(&mut dh_prev))) {
        let n = r.len();
        // Slices of exactly n elements: no bounds checks in the loop, which then vectorises.
        let d_rh = &d_rh[..n];
        let da_r = &mut da_r[..n];
        let dh_prev = &mut dh_prev[..n];
        let h_prev = &h_prev[..n];
        for j in 0..n {
            da_r[j] = d_rh[j] * h_prev[j] * r[j] * (one - r[j]);
            dh_prev[j] += d_rh[j] * r[j];
        }
    }
}
