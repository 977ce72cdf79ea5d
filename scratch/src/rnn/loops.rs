//! Chapter 6's cells written as loops, so that every multiply-add of a step and of back-propagation
//! through time can be followed: forward and backward of the RNN, LSTM and both GRU forms over a
//! whole sequence, and of a stack of cells. No buffers are kept between calls, no work is shared
//! between threads, and the forward pass is recomputed by the backward one.
//!
//! For batch row `b` at step `t`, with `x = x[b, t, ·]`, `h = h_{t−1}[b, ·]` and `G` gate blocks of
//! `H` units stacked in the parameters (PyTorch's layouts and gate orders, see
//! [`CellKind`]), every cell starts from the two affine maps of row `r`
//! (`0 ≤ r < G·H`)
//!
//! ```text
//! xa[r] = b_ih[r] + Σ_i W_ih[r, i] · x[i]        ha[r] = b_hh[r] + Σ_j W_hh[r, j] · h[j]
//! ```
//!
//! (`b_hh = 0` with [`Biases::One`](crate::spec::Biases::One)), then, for unit `u`, with `σ` the
//! logistic function and blocks written `xa_i[u] = xa[0·H + u]`, `xa_f[u] = xa[1·H + u]`, and so on:
//!
//! ```text
//! RNN:        h'[u] = tanh(xa[u] + ha[u])
//! LSTM:       i = σ(xa_i + ha_i)   f = σ(xa_f + ha_f)   g = tanh(xa_g + ha_g)   o = σ(xa_o + ha_o)
//!             c'[u] = f · c[u] + i · g                   h'[u] = o · tanh(c'[u])
//! GRU:        r = σ(xa_r + ha_r)   z = σ(xa_z + ha_z)
//!   PyTorch:  n = tanh(xa_n + r · ha_n)
//!   book:     n = tanh(xa_n + b_hn[u] + Σ_j W_hn[u, j] · r[j] h[j])
//!             h'[u] = (1 − z) · n + z · h[u]
//! ```
//!
//! Back-propagation through time runs the steps in reverse. `dh` is the gradient reaching `h_t`: the
//! output gradient at `t` plus what step `t + 1` sends back; `dc` likewise for the LSTM's `c_t`. Each
//! step turns them into the gradients of the pre-activations (`da`, input side; `dha`, recurrent side,
//! which differs only in the PyTorch GRU's candidate), and those into every other gradient:
//!
//! ```text
//! ∂L/∂W_ih[r, i] += da[r] · x[i]        ∂L/∂b_ih[r] += da[r]        ∂L/∂x[i] = Σ_r W_ih[r, i] · da[r]
//! ∂L/∂W_hh[r, j] += dha[r] · h[j]       ∂L/∂b_hh[r] += dha[r]       ∂L/∂h[j] += Σ_r W_hh[r, j] · dha[r]
//! ```
//!
//! with, per cell (the book GRU's candidate row reads `r ⊙ h` instead of `h`, see [`backward`]):
//!
//! ```text
//! RNN:   da = dh · (1 − h'²)
//! LSTM:  dc ← dc + dh · o · (1 − tanh(c')²)
//!        da_i = dc · g · i(1 − i)    da_f = dc · c · f(1 − f)    da_g = dc · i · (1 − g²)
//!        da_o = dh · tanh(c') · o(1 − o)                         ∂L/∂c = dc · f
//! GRU:   da_n = dh · (1 − z) · (1 − n²)    da_z = dh · (h − n) · z(1 − z)    ∂L/∂h += dh · z
//! ```
//!
//! The fast [`Recurrent`] layer computes the same things with one matrix product
//! per step and per weight; the tests check the two against each other.

use ndarray::{s, Array1, Array2, Array3, ArrayView1, ArrayView2, Axis, Ix1, Ix2};

use super::Recurrent;
use crate::layers::Layer;
use crate::spec::{CellKind, GruForm};
use crate::Float;

/// One cell's parameters (or their gradients) in PyTorch's layout, `G` gate blocks of `H` rows.
#[derive(Clone, Debug, PartialEq)]
pub struct CellParams<F> {
    /// `W_ih`, `(G·H, input)`.
    pub weight_ih: Array2<F>,
    /// `W_hh`, `(G·H, H)`.
    pub weight_hh: Array2<F>,
    /// `b_ih`, `(G·H)`.
    pub bias_ih: Array1<F>,
    /// `b_hh`, `(G·H)`, if the cell has a second bias.
    pub bias_hh: Option<Array1<F>>,
}

impl<F: Float> CellParams<F> {
    /// Zeros of the same shapes: where gradients are summed.
    pub fn zeros_like(&self) -> Self {
        CellParams {
            weight_ih: Array2::zeros(self.weight_ih.raw_dim()),
            weight_hh: Array2::zeros(self.weight_hh.raw_dim()),
            bias_ih: Array1::zeros(self.bias_ih.raw_dim()),
            bias_hh: self.bias_hh.as_ref().map(|b| Array1::zeros(b.raw_dim())),
        }
    }

    /// Hidden units `H`, for a cell of `gates` gate blocks.
    fn hidden(&self) -> usize {
        self.weight_hh.ncols()
    }

    /// `b_hh[r]`, zero without a second bias.
    fn b_hh(&self, r: usize) -> F {
        self.bias_hh.as_ref().map_or(F::zero(), |b| b[r])
    }
}

/// The parameters of every cell of `layer`, in the stack's order, from their canonical values.
pub fn parameters<F: Float>(layer: &Recurrent<F>) -> Vec<CellParams<F>> {
    let params = layer.params();
    let value = |name: String| {
        params.iter().find(|(n, _)| *n == name).map(|(_, p)| p.to_canonical()).expect("a parameter of the layer")
    };
    (0..layer.spec().layers)
        .map(|k| CellParams {
            weight_ih: value(format!("weight_ih_l{k}")).into_dimensionality::<Ix2>().expect("a matrix"),
            weight_hh: value(format!("weight_hh_l{k}")).into_dimensionality::<Ix2>().expect("a matrix"),
            bias_ih: value(format!("bias_ih_l{k}")).into_dimensionality::<Ix1>().expect("a vector"),
            bias_hh: params
                .iter()
                .any(|(n, _)| *n == format!("bias_hh_l{k}"))
                .then(|| value(format!("bias_hh_l{k}")).into_dimensionality::<Ix1>().expect("a vector")),
        })
        .collect()
}

/// The gradients of every cell of `layer` after a backward pass, as [`parameters`] orders them.
pub fn gradients<F: Float>(layer: &Recurrent<F>) -> Vec<CellParams<F>> {
    let params = layer.params();
    let grad = |name: String| {
        params.iter().find(|(n, _)| *n == name).map(|(_, p)| p.grad_canonical()).expect("a parameter of the layer")
    };
    (0..layer.spec().layers)
        .map(|k| CellParams {
            weight_ih: grad(format!("weight_ih_l{k}")).into_dimensionality::<Ix2>().expect("a matrix"),
            weight_hh: grad(format!("weight_hh_l{k}")).into_dimensionality::<Ix2>().expect("a matrix"),
            bias_ih: grad(format!("bias_ih_l{k}")).into_dimensionality::<Ix1>().expect("a vector"),
            bias_hh: params
                .iter()
                .any(|(n, _)| *n == format!("bias_hh_l{k}"))
                .then(|| grad(format!("bias_hh_l{k}")).into_dimensionality::<Ix1>().expect("a vector")),
        })
        .collect()
}

/// The logistic function.
fn sigmoid<F: Float>(x: F) -> F {
    F::one() / (F::one() + (-x).exp())
}

/// `bias[r] + Σ_i w[r, i] · v[i]` for every row `r`.
fn affine<F: Float>(w: &Array2<F>, bias: impl Fn(usize) -> F, v: ArrayView1<'_, F>) -> Array1<F> {
    let mut out = Array1::zeros(w.nrows());
    for r in 0..w.nrows() {
        let mut sum = bias(r);
        for i in 0..w.ncols() {
            sum += w[[r, i]] * v[i];
        }
        out[r] = sum;
    }
    out
}

/// What one step of one batch row computes, kept for its backward pass: the gate activations in the
/// parameters' block order (`[i; f; g; o]`, `[r; z; n]`, or `[h']` for the RNN), `ha` (the recurrent
/// affine map, `W_hh h + b_hh`; for the book GRU's candidate block `W_hn (r ⊙ h) + b_hn`), and the new
/// state.
#[derive(Clone, Debug)]
struct Step<F> {
    gates: Array1<F>,
    ha: Array1<F>,
    h: Array1<F>,
    c: Option<Array1<F>>,
}

/// One step of one batch row: from input `x`, hidden state `h` and (LSTM) cell state `c`.
fn step<F: Float>(
    cell: CellKind,
    p: &CellParams<F>,
    x: ArrayView1<'_, F>,
    h: ArrayView1<'_, F>,
    c: Option<ArrayView1<'_, F>>,
) -> Step<F> {
    let hidden = p.hidden();
    let one = F::one();
    let xa = affine(&p.weight_ih, |r| p.bias_ih[r], x);
    let mut ha = affine(&p.weight_hh, |r| p.b_hh(r), h);
    let mut gates = Array1::zeros(xa.len());
    let mut h_new = Array1::zeros(hidden);
    let mut c_new = None;
    match cell {
        CellKind::Rnn => {
            for u in 0..hidden {
                gates[u] = (xa[u] + ha[u]).tanh();
                h_new[u] = gates[u];
            }
        }
        CellKind::Lstm => {
            let c = c.expect("an LSTM has a cell state");
            let mut c_next = Array1::zeros(hidden);
            for u in 0..hidden {
                let i = sigmoid(xa[u] + ha[u]);
                let f = sigmoid(xa[hidden + u] + ha[hidden + u]);
                let g = (xa[2 * hidden + u] + ha[2 * hidden + u]).tanh();
                let o = sigmoid(xa[3 * hidden + u] + ha[3 * hidden + u]);
                c_next[u] = f * c[u] + i * g;
                h_new[u] = o * c_next[u].tanh();
                for (block, value) in [i, f, g, o].into_iter().enumerate() {
                    gates[block * hidden + u] = value;
                }
            }
            c_new = Some(c_next);
        }
        CellKind::Gru(form) => {
            for u in 0..hidden {
                gates[u] = sigmoid(xa[u] + ha[u]);
                gates[hidden + u] = sigmoid(xa[hidden + u] + ha[hidden + u]);
            }
            if form == GruForm::Book {
                // The candidate's recurrent term reads r ⊙ h instead of h.
                for u in 0..hidden {
                    let mut sum = p.b_hh(2 * hidden + u);
                    for j in 0..hidden {
                        sum += p.weight_hh[[2 * hidden + u, j]] * gates[j] * h[j];
                    }
                    ha[2 * hidden + u] = sum;
                }
            }
            for u in 0..hidden {
                let (r, z) = (gates[u], gates[hidden + u]);
                let n = match form {
                    GruForm::PyTorch => (xa[2 * hidden + u] + r * ha[2 * hidden + u]).tanh(),
                    GruForm::Book => (xa[2 * hidden + u] + ha[2 * hidden + u]).tanh(),
                };
                gates[2 * hidden + u] = n;
                h_new[u] = (one - z) * n + z * h[u];
            }
        }
    }
    Step { gates, ha, h: h_new, c: c_new }
}

/// A cell's output over a sequence and its final state.
#[derive(Clone, Debug, PartialEq)]
pub struct Unrolled<F> {
    /// The hidden states `h_1 … h_T`, `(batch, time, hidden)`.
    pub output: Array3<F>,
    /// The final hidden state `h_T`, `(batch, hidden)`.
    pub h: Array2<F>,
    /// The LSTM's final cell state `c_T`.
    pub c: Option<Array2<F>>,
}

/// Every step of every batch row, in order: `steps[b][t]`.
fn run<F: Float>(
    cell: CellKind,
    p: &CellParams<F>,
    x: &Array3<F>,
    h0: &Array2<F>,
    c0: Option<&Array2<F>>,
) -> Vec<Vec<Step<F>>> {
    let (batch, time, _) = x.dim();
    (0..batch)
        .map(|b| {
            let mut h = h0.row(b).to_owned();
            let mut c = c0.map(|c| c.row(b).to_owned());
            let mut steps = Vec::with_capacity(time);
            for t in 0..time {
                let s = step(cell, p, x.slice(s![b, t, ..]), h.view(), c.as_ref().map(|c| c.view()));
                h = s.h.clone();
                c = s.c.clone();
                steps.push(s);
            }
            steps
        })
        .collect()
}

/// One cell over `x` `(batch, time, input)` from `h0` `(batch, hidden)` and, for an LSTM, `c0`.
///
/// # Panics
/// If the shapes disagree, or `c0` is missing for an LSTM.
pub fn forward<F: Float>(
    cell: CellKind,
    p: &CellParams<F>,
    x: &Array3<F>,
    h0: &Array2<F>,
    c0: Option<&Array2<F>>,
) -> Unrolled<F> {
    let (batch, time, _) = x.dim();
    let hidden = p.hidden();
    let steps = run(cell, p, x, h0, c0);
    let mut output = Array3::zeros((batch, time, hidden));
    for (b, row) in steps.iter().enumerate() {
        for (t, s) in row.iter().enumerate() {
            output.slice_mut(s![b, t, ..]).assign(&s.h);
        }
    }
    let h = Array2::from_shape_fn((batch, hidden), |(b, u)| output[[b, time - 1, u]]);
    let c = (cell == CellKind::Lstm)
        .then(|| Array2::from_shape_fn((batch, hidden), |(b, u)| steps[b][time - 1].c.as_ref().expect("LSTM")[u]));
    Unrolled { output, h, c }
}

/// A cell's gradients: of its input and of its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients<F> {
    /// `∂L/∂x`, `(batch, time, input)`.
    pub input: Array3<F>,
    /// `∂L/∂W_ih`, `∂L/∂W_hh`, `∂L/∂b_ih`, `∂L/∂b_hh`.
    pub params: CellParams<F>,
}

/// Back-propagation through time of one cell: the gradients for `output_grad` `(batch, time, hidden)`
/// reaching the outputs of [`forward`] on the same arguments (none reaching its final state).
///
/// The book GRU's candidate row reads `rh = r ⊙ h`: its recurrent weight gradient is `dha_n · rh[j]`,
/// the gradient of `rh` is `d_rh[j] = Σ_u W_hn[u, j] · da_n[u]`, which reaches the reset gate,
/// `da_r = d_rh · h · r(1 − r)`, and the state, `∂L/∂h += d_rh · r`.
///
/// # Panics
/// As [`forward`].
pub fn backward<F: Float>(
    cell: CellKind,
    p: &CellParams<F>,
    x: &Array3<F>,
    h0: &Array2<F>,
    c0: Option<&Array2<F>>,
    output_grad: &Array3<F>,
) -> Gradients<F> {
    let (batch, time, input) = x.dim();
    let hidden = p.hidden();
    let rows = p.weight_hh.nrows();
    let one = F::one();
    let steps = run(cell, p, x, h0, c0);
    let mut grads = p.zeros_like();
    let mut dx = Array3::zeros((batch, time, input));
    for b in 0..batch {
        // The gradients reaching h_t and c_t from step t + 1.
        let mut dh_next = Array1::<F>::zeros(hidden);
        let mut dc_next = Array1::<F>::zeros(hidden);
        for t in (0..time).rev() {
            let s = &steps[b][t];
            let h_prev = if t == 0 { h0.row(b).to_owned() } else { steps[b][t - 1].h.clone() };
            let c_prev = match (t, c0) {
                (0, Some(c0)) => Some(c0.row(b).to_owned()),
                (0, None) => None,
                _ => steps[b][t - 1].c.clone(),
            };
            let mut dh = Array1::<F>::zeros(hidden);
            for u in 0..hidden {
                dh[u] = output_grad[[b, t, u]] + dh_next[u];
            }
            // Gradients of the pre-activations: input side `da`, recurrent side `dha`.
            let mut da = Array1::<F>::zeros(rows);
            let mut dh_prev = Array1::<F>::zeros(hidden);
            let g = &s.gates;
            match cell {
                CellKind::Rnn => {
                    for u in 0..hidden {
                        da[u] = dh[u] * (one - s.h[u] * s.h[u]);
                    }
                }
                CellKind::Lstm => {
                    let (c, c_prev) = (s.c.as_ref().expect("LSTM"), c_prev.expect("LSTM"));
                    for u in 0..hidden {
                        let (i, f, gg, o) = (g[u], g[hidden + u], g[2 * hidden + u], g[3 * hidden + u]);
                        let tanh_c = c[u].tanh();
                        let dc = dc_next[u] + dh[u] * o * (one - tanh_c * tanh_c);
                        da[u] = dc * gg * i * (one - i);
                        da[hidden + u] = dc * c_prev[u] * f * (one - f);
                        da[2 * hidden + u] = dc * i * (one - gg * gg);
                        da[3 * hidden + u] = dh[u] * tanh_c * o * (one - o);
                        dc_next[u] = dc * f;
                    }
                }
                CellKind::Gru(_) => {
                    for u in 0..hidden {
                        let (z, n) = (g[hidden + u], g[2 * hidden + u]);
                        da[2 * hidden + u] = dh[u] * (one - z) * (one - n * n);
                        da[hidden + u] = dh[u] * (h_prev[u] - n) * z * (one - z);
                        dh_prev[u] += dh[u] * z;
                    }
                }
            }
            let mut dha = da.clone();
            match cell {
                CellKind::Gru(GruForm::PyTorch) => {
                    // n = tanh(xa_n + r · ha_n): ha_n's gradient is da_n · r, r's is da_n · ha_n.
                    for u in 0..hidden {
                        let r = g[u];
                        da[u] = da[2 * hidden + u] * s.ha[2 * hidden + u] * r * (one - r);
                        dha[u] = da[u];
                        dha[2 * hidden + u] = da[2 * hidden + u] * r;
                    }
                }
                CellKind::Gru(GruForm::Book) => {
                    // The candidate's recurrent product reads rh = r ⊙ h_prev.
                    for j in 0..hidden {
                        let mut d_rh = F::zero();
                        for u in 0..hidden {
                            d_rh += p.weight_hh[[2 * hidden + u, j]] * da[2 * hidden + u];
                        }
                        let r = g[j];
                        da[j] = d_rh * h_prev[j] * r * (one - r);
                        dha[j] = da[j];
                        dh_prev[j] += d_rh * r;
                    }
                }
                _ => {}
            }
            // The affine maps' gradients.
            for r in 0..rows {
                for i in 0..input {
                    grads.weight_ih[[r, i]] += da[r] * x[[b, t, i]];
                    dx[[b, t, i]] += p.weight_ih[[r, i]] * da[r];
                }
                grads.bias_ih[r] += da[r];
                if let Some(bias) = &mut grads.bias_hh {
                    bias[r] += dha[r];
                }
            }
            for r in 0..rows {
                let book_candidate = cell == CellKind::Gru(GruForm::Book) && r >= 2 * hidden;
                for j in 0..hidden {
                    // What row r of W_hh multiplies: h_prev, or for the book GRU's candidate r ⊙ h_prev.
                    let read = if book_candidate { g[j] * h_prev[j] } else { h_prev[j] };
                    grads.weight_hh[[r, j]] += dha[r] * read;
                    if !book_candidate {
                        dh_prev[j] += p.weight_hh[[r, j]] * dha[r];
                    }
                }
            }
            dh_next = dh_prev;
        }
    }
    Gradients { input: dx, params: grads }
}

/// A stack's output and final states: every cell's `h` (and `c`), `(layers, batch, hidden)`.
#[derive(Clone, Debug, PartialEq)]
pub struct StackUnrolled<F> {
    /// The last cell's hidden states, `(batch, time, hidden)`.
    pub output: Array3<F>,
    /// Every cell's final hidden state.
    pub h: Array3<F>,
    /// Every cell's final cell state (LSTM).
    pub c: Option<Array3<F>>,
}

/// A stack of cells over `x`: cell `k` reads the output of cell `k − 1` and starts from `h0[k]`
/// (and `c0[k]`).
///
/// # Panics
/// As [`forward`].
pub fn forward_stack<F: Float>(
    cell: CellKind,
    params: &[CellParams<F>],
    x: &Array3<F>,
    h0: &Array3<F>,
    c0: Option<&Array3<F>>,
) -> StackUnrolled<F> {
    let mut y = x.clone();
    let (mut hs, mut cs) = (Vec::new(), Vec::new());
    for (k, p) in params.iter().enumerate() {
        let c0k = c0.map(|c| c.index_axis(Axis(0), k).to_owned());
        let out = forward(cell, p, &y, &h0.index_axis(Axis(0), k).to_owned(), c0k.as_ref());
        y = out.output;
        hs.push(out.h);
        cs.extend(out.c);
    }
    let stack = |a: &[Array2<F>]| {
        let views: Vec<ArrayView2<'_, F>> = a.iter().map(|a| a.view()).collect();
        ndarray::stack(Axis(0), &views).expect("states of one shape")
    };
    StackUnrolled { output: y, h: stack(&hs), c: (!cs.is_empty()).then(|| stack(&cs)) }
}

/// Back-propagation through time of a stack: the input gradient and every cell's parameter
/// gradients, for `output_grad` reaching the last cell's output.
///
/// # Panics
/// As [`forward`].
pub fn backward_stack<F: Float>(
    cell: CellKind,
    params: &[CellParams<F>],
    x: &Array3<F>,
    h0: &Array3<F>,
    c0: Option<&Array3<F>>,
    output_grad: &Array3<F>,
) -> (Array3<F>, Vec<CellParams<F>>) {
    // Every cell's input, from the forward pass.
    let mut inputs = vec![x.clone()];
    for (k, p) in params.iter().enumerate().take(params.len() - 1) {
        let c0k = c0.map(|c| c.index_axis(Axis(0), k).to_owned());
        let out = forward(cell, p, &inputs[k], &h0.index_axis(Axis(0), k).to_owned(), c0k.as_ref());
        inputs.push(out.output);
    }
    let mut grad = output_grad.clone();
    let mut grads = Vec::new();
    for (k, p) in params.iter().enumerate().rev() {
        let c0k = c0.map(|c| c.index_axis(Axis(0), k).to_owned());
        let g = backward(cell, p, &inputs[k], &h0.index_axis(Axis(0), k).to_owned(), c0k.as_ref(), &grad);
        grad = g.input;
        grads.push(g.params);
    }
    grads.reverse();
    (grad, grads)
}
