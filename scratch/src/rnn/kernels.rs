//! The element-wise part of one time step of each cell, forward and backward, on one row of the batch
//! and a range of `n` hidden units.
//!
//! Each argument is a slice of `n` values (the units' part of one gate block or state row), except
//! `pre`: the row of the step's recurrent product ([`super::product`]), its blocks of `n` values one
//! after the other in the order of the gates. A gate slice holds the input side of the gate's
//! pre-activation (`W_ih x + b`) and is overwritten with the activation. Backward functions take the
//! two gradients reaching this step's hidden output, `d_out` from the layer above and `d_next` from
//! the next step's recurrent product, and write the gradients of the gate pre-activations.
//!
//! Each function is one pass over its slices, a vector register at a time ([`zip_map`]), with the
//! activations of [`crate::simd::math`]; it runs at the level of [`crate::simd`] that its caller
//! was dispatched to.

use crate::simd::{zip_map, Simd, SimdFloat};
use crate::Float;

/// `a + b`, `a − b`, `a · b` and `a · b + c` on registers of `F` at level `S`.
#[derive(Clone, Copy)]
struct Ops<S>(S);

impl<S: Simd> Ops<S> {
    #[inline(always)]
    fn add<F: Float>(self, a: F::V<S>, b: F::V<S>) -> F::V<S> {
        <F as SimdFloat>::add(self.0, a, b)
    }

    #[inline(always)]
    fn sub<F: Float>(self, a: F::V<S>, b: F::V<S>) -> F::V<S> {
        <F as SimdFloat>::sub(self.0, a, b)
    }

    #[inline(always)]
    fn mul<F: Float>(self, a: F::V<S>, b: F::V<S>) -> F::V<S> {
        <F as SimdFloat>::mul(self.0, a, b)
    }

    #[inline(always)]
    fn mul_add<F: Float>(self, a: F::V<S>, b: F::V<S>, c: F::V<S>) -> F::V<S> {
        <F as SimdFloat>::mul_add(self.0, a, b, c)
    }

    /// `x(1 − x)`: the logistic function's derivative from its value.
    #[inline(always)]
    fn logistic_slope<F: Float>(self, x: F::V<S>) -> F::V<S> {
        self.mul::<F>(x, self.sub::<F>(F::splat(self.0, F::one()), x))
    }

    /// `1 − x²`: `tanh`'s derivative from its value.
    #[inline(always)]
    fn tanh_slope<F: Float>(self, x: F::V<S>) -> F::V<S> {
        self.sub::<F>(F::splat(self.0, F::one()), self.mul::<F>(x, x))
    }
}

/// `h = tanh(a + pre)`, kept in the gate slice too.
#[inline(always)]
pub(super) fn rnn_forward<F: Float, S: Simd>(simd: S, pre: &[F], a: &mut [F], h: &mut [F]) {
    let ops = Ops(simd);
    zip_map!(simd, [pre], [a, h], |[pre], [a, _]| {
        let h = F::simd_tanh(simd, ops.add::<F>(a, pre));
        [h, h]
    });
}

/// `∂L/∂a = (d_out + d_next) ⊙ (1 − h²)`.
#[inline(always)]
pub(super) fn rnn_backward<F: Float, S: Simd>(simd: S, h: &[F], (d_out, d_next): (&[F], &[F]), da: &mut [F]) {
    let ops = Ops(simd);
    zip_map!(simd, [h, d_out, d_next], [da], |[h, d_out, d_next], _| {
        [ops.mul::<F>(ops.add::<F>(d_out, d_next), ops.tanh_slope::<F>(h))]
    });
}

/// The LSTM step. The gate slices hold the input sides of `[a_i; a_f; a_g; a_o]` and become the
/// activations `[i; f; g; o]`; then
///
/// ```text
/// c = f ⊙ c_prev + i ⊙ g,   tanh_c = tanh(c),   h = o ⊙ tanh_c
/// ```
///
/// One pass per gate, then one for the states: an activation is a long chain of dependent operations
/// (a polynomial, a division), which the processor overlaps across the iterations of a short loop.
/// The body of a single pass doing all of it is too long for that (about 300 instructions per
/// register, more than the processor looks ahead), and is slower.
#[inline(always)]
pub(super) fn lstm_forward<F: Float, S: Simd>(
    simd: S,
    pre: &[F],
    [i, f, g, o]: [&mut [F]; 4],
    c_prev: &[F],
    (c, tanh_c, h): (&mut [F], &mut [F], &mut [F]),
) {
    let (ops, n) = (Ops(simd), h.len());
    zip_map!(simd, [&pre[..n]], [&mut *i], |[p], [a]| [F::simd_sigmoid(simd, ops.add::<F>(a, p))]);
    zip_map!(simd, [&pre[n..2 * n]], [&mut *f], |[p], [a]| [F::simd_sigmoid(simd, ops.add::<F>(a, p))]);
    zip_map!(simd, [&pre[2 * n..3 * n]], [&mut *g], |[p], [a]| [F::simd_tanh(simd, ops.add::<F>(a, p))]);
    zip_map!(simd, [&pre[3 * n..4 * n]], [&mut *o], |[p], [a]| [F::simd_sigmoid(simd, ops.add::<F>(a, p))]);
    zip_map!(simd, [&*i, &*f, &*g, &*o, c_prev], [c, tanh_c, h], |[i, f, g, o, c_prev], _| {
        let c = ops.mul_add::<F>(f, c_prev, ops.mul::<F>(i, g));
        let tanh_c = F::simd_tanh(simd, c);
        [c, tanh_c, ops.mul::<F>(o, tanh_c)]
    });
}

/// The LSTM step backward. `dc` holds the gradient of this step's cell state coming from the next
/// step and is replaced by the gradient of `c_prev`:
///
/// ```text
/// dh   = d_out + d_next
/// dc   = dc + dh ⊙ o ⊙ (1 − tanh_c²)
/// da_i = dc ⊙ g ⊙ i(1 − i)        da_f = dc ⊙ c_prev ⊙ f(1 − f)
/// da_g = dc ⊙ i ⊙ (1 − g²)        da_o = dh ⊙ tanh_c ⊙ o(1 − o)
/// dc_prev = dc ⊙ f
/// ```
#[inline(always)]
pub(super) fn lstm_backward<F: Float, S: Simd>(
    simd: S,
    [i, f, g, o]: [&[F]; 4],
    (c_prev, tanh_c): (&[F], &[F]),
    (d_out, d_next): (&[F], &[F]),
    dc: &mut [F],
    [da_i, da_f, da_g, da_o]: [&mut [F]; 4],
) {
    let ops = Ops(simd);
    zip_map!(
        simd,
        [i, f, g, o, c_prev, tanh_c, d_out, d_next],
        [dc, da_i, da_f, da_g, da_o],
        |[i, f, g, o, c_prev, tanh_c, d_out, d_next], [dc, ..]| {
            let dh = ops.add::<F>(d_out, d_next);
            let dc = ops.mul_add::<F>(ops.mul::<F>(dh, o), ops.tanh_slope::<F>(tanh_c), dc);
            let da_i = ops.mul::<F>(ops.mul::<F>(dc, g), ops.logistic_slope::<F>(i));
            let da_f = ops.mul::<F>(ops.mul::<F>(dc, c_prev), ops.logistic_slope::<F>(f));
            let da_g = ops.mul::<F>(ops.mul::<F>(dc, i), ops.tanh_slope::<F>(g));
            let da_o = ops.mul::<F>(ops.mul::<F>(dh, tanh_c), ops.logistic_slope::<F>(o));
            [ops.mul::<F>(dc, f), da_i, da_f, da_g, da_o]
        }
    );
}

/// The reset and update gates of a GRU: `r = σ(a_r + pre_r)`, `z = σ(a_z + pre_z)`.
#[inline(always)]
pub(super) fn gru_gates<F: Float, S: Simd>(simd: S, pre: &[F], r: &mut [F], z: &mut [F]) {
    let (ops, n) = (Ops(simd), r.len());
    zip_map!(simd, [&pre[..n], &pre[n..2 * n]], [r, z], |[pr, pz], [ar, az]| {
        [F::simd_sigmoid(simd, ops.add::<F>(ar, pr)), F::simd_sigmoid(simd, ops.add::<F>(az, pz))]
    });
}

/// `h = (1 − z) ⊙ n + z ⊙ h_prev`, as `n + z ⊙ (h_prev − n)`.
#[inline(always)]
fn interpolate<F: Float, S: Simd>(ops: Ops<S>, z: F::V<S>, cand: F::V<S>, h_prev: F::V<S>) -> F::V<S> {
    ops.mul_add::<F>(z, ops.sub::<F>(h_prev, cand), cand)
}

/// The PyTorch GRU's candidate and output, after [`gru_gates`]: `pre_n = W_hn h_prev`, and
///
/// ```text
/// hn = pre_n + b_hn,   n = tanh(a_n + r ⊙ hn),   h = (1 − z) ⊙ n + z ⊙ h_prev
/// ```
#[inline(always)]
pub(super) fn gru_output_after_product<F: Float, S: Simd>(
    simd: S,
    (pre_n, b_hn): (&[F], &[F]),
    (r, z): (&[F], &[F]),
    cand: &mut [F],
    h_prev: &[F],
    (hn, h): (&mut [F], &mut [F]),
) {
    let ops = Ops(simd);
    zip_map!(simd, [pre_n, b_hn, r, z, h_prev], [cand, hn, h], |[pre_n, b_hn, r, z, h_prev], [a_n, ..]| {
        let hn = ops.add::<F>(pre_n, b_hn);
        let cand = F::simd_tanh(simd, ops.mul_add::<F>(r, hn, a_n));
        [cand, hn, interpolate::<F, S>(ops, z, cand, h_prev)]
    });
}

/// The book GRU's reset state, after [`gru_gates`]: `rh = r ⊙ h_prev`, what `W_hn` multiplies.
#[inline(always)]
pub(super) fn gru_reset_state<F: Float, S: Simd>(simd: S, r: &[F], h_prev: &[F], rh: &mut [F]) {
    let ops = Ops(simd);
    zip_map!(simd, [r, h_prev], [rh], |[r, h_prev], _| [ops.mul::<F>(r, h_prev)]);
}

/// The book GRU's candidate and output, once `pre_n = W_hn (r ⊙ h_prev)` is known:
/// `n = tanh(a_n + pre_n)`, `h = (1 − z) ⊙ n + z ⊙ h_prev`.
#[inline(always)]
pub(super) fn gru_output_before_product<F: Float, S: Simd>(
    simd: S,
    pre_n: &[F],
    z: &[F],
    cand: &mut [F],
    h_prev: &[F],
    h: &mut [F],
) {
    let ops = Ops(simd);
    zip_map!(simd, [pre_n, z, h_prev], [cand, h], |[pre_n, z, h_prev], [a_n, _]| {
        let cand = F::simd_tanh(simd, ops.add::<F>(a_n, pre_n));
        [cand, interpolate::<F, S>(ops, z, cand, h_prev)]
    });
}

/// The GRU step backward, first part: from the gradient reaching the hidden output,
/// `dh = d_out + d_next + carry` (`carry` the direct paths from the next step), the gradients of the
/// update gate's and the candidate's pre-activations, and this step's direct path to the previous
/// state, which replaces `carry`:
///
/// ```text
/// da_n = dh ⊙ (1 − z) ⊙ (1 − n²)     da_z = dh ⊙ (h_prev − n) ⊙ z(1 − z)     carry = dh ⊙ z
/// ```
#[inline(always)]
pub(super) fn gru_backward<F: Float, S: Simd>(
    simd: S,
    (z, cand): (&[F], &[F]),
    h_prev: &[F],
    (d_out, d_next): (&[F], &[F]),
    (da_z, da_n): (&mut [F], &mut [F]),
    carry: &mut [F],
) {
    let ops = Ops(simd);
    let one = F::splat(simd, F::one());
    zip_map!(
        simd,
        [z, cand, h_prev, d_out, d_next],
        [carry, da_z, da_n],
        |[z, cand, h_prev, d_out, d_next], [carry, ..]| {
            let dh = ops.add::<F>(ops.add::<F>(d_out, d_next), carry);
            let da_z = ops.mul::<F>(ops.mul::<F>(dh, ops.sub::<F>(h_prev, cand)), ops.logistic_slope::<F>(z));
            let da_n = ops.mul::<F>(ops.mul::<F>(dh, ops.sub::<F>(one, z)), ops.tanh_slope::<F>(cand));
            [ops.mul::<F>(dh, z), da_z, da_n]
        }
    );
}

/// The PyTorch GRU's reset gate backward, after [`gru_backward`]: `da_r = da_n ⊙ hn ⊙ r(1 − r)`, and
/// the gradients of the recurrent pre-activations `[da_r; da_z; da_n ⊙ r]`.
#[inline(always)]
pub(super) fn gru_reset_backward_after_product<F: Float, S: Simd>(
    simd: S,
    (r, hn): (&[F], &[F]),
    (da_z, da_n): (&[F], &[F]),
    da_r: &mut [F],
    [d_rec_r, d_rec_z, d_rec_n]: [&mut [F]; 3],
) {
    let ops = Ops(simd);
    zip_map!(simd, [r, hn, da_z, da_n], [da_r, d_rec_r, d_rec_z, d_rec_n], |[r, hn, da_z, da_n], _| {
        let da_r = ops.mul::<F>(ops.mul::<F>(da_n, hn), ops.logistic_slope::<F>(r));
        [da_r, da_r, da_z, ops.mul::<F>(da_n, r)]
    });
}

/// The book GRU's reset gate backward, once `d_rh = W_hnᵀ da_n` is known:
/// `da_r = d_rh ⊙ h_prev ⊙ r(1 − r)` and `carry += d_rh ⊙ r`.
#[inline(always)]
pub(super) fn gru_reset_backward_before_product<F: Float, S: Simd>(
    simd: S,
    r: &[F],
    h_prev: &[F],
    d_rh: &[F],
    da_r: &mut [F],
    carry: &mut [F],
) {
    let ops = Ops(simd);
    zip_map!(simd, [r, h_prev, d_rh], [da_r, carry], |[r, h_prev, d_rh], [_, carry]| {
        let da_r = ops.mul::<F>(ops.mul::<F>(d_rh, h_prev), ops.logistic_slope::<F>(r));
        [da_r, ops.mul_add::<F>(d_rh, r, carry)]
    });
}
