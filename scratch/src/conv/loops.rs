//! Chapter 5's convolutions written as loops, so that every multiply-add can be followed: 1-D (one input
//! and a batch), 2-D single-channel, and 2-D multi-channel on a batch, each with the gradients of its
//! input and of its kernel.
//!
//! All are cross-correlations with "same" zero padding (`p = k / 2` on each side, odd `k`) and stride 1,
//! as in the book:
//!
//! ```text
//! out[o]         = Σ_p param[p] · in_pad[o + p]
//! ∂L/∂in[i]      = Σ_p ∂L/∂out_pad[i + k − 1 − p] · param[p]      (the kernel flipped)
//! ∂L/∂param[p]   = Σ_o in_pad[o + p] · ∂L/∂out[o]
//! ```
//!
//! The fast [`Conv2DOp`](super::Conv2DOp) operation computes the same thing with matrix products; the tests
//! check the two against each other and against the numbers the chapter's notebook printed.

use ndarray::{s, Array1, Array2, Array3, Array4};

use crate::Float;

/// `inp` with `num` zeros on each side.
pub fn pad_1d<F: Float>(inp: &Array1<F>, num: usize) -> Array1<F> {
    let mut out = Array1::zeros(inp.len() + 2 * num);
    out.slice_mut(s![num..num + inp.len()]).assign(inp);
    out
}

/// `out[o] = Σ_p param[p] · inp_pad[o + p]`, same length as `inp`.
pub fn conv_1d<F: Float>(inp: &Array1<F>, param: &Array1<F>) -> Array1<F> {
    let inp_pad = pad_1d(inp, param.len() / 2);
    let mut out = Array1::zeros(inp.len());
    for o in 0..out.len() {
        for p in 0..param.len() {
            out[o] += param[p] * inp_pad[o + p];
        }
    }
    out
}

/// The sum of [`conv_1d`]'s output: the scalar the chapter differentiates.
pub fn conv_1d_sum<F: Float>(inp: &Array1<F>, param: &Array1<F>) -> F {
    conv_1d(inp, param).sum()
}

/// `∂L/∂param[p] = Σ_o inp_pad[o + p] · ∂L/∂out[o]`.
pub fn param_grad_1d<F: Float>(inp: &Array1<F>, param: &Array1<F>, output_grad: &Array1<F>) -> Array1<F> {
    let inp_pad = pad_1d(inp, param.len() / 2);
    let mut grad = Array1::zeros(param.len());
    for o in 0..inp.len() {
        for p in 0..param.len() {
            grad[p] += inp_pad[o + p] * output_grad[o];
        }
    }
    grad
}

/// `∂L/∂inp[i] = Σ_f ∂L/∂out_pad[i + k − 1 − f] · param[f]`: the output gradient correlated with the
/// flipped kernel.
pub fn input_grad_1d<F: Float>(inp: &Array1<F>, param: &Array1<F>, output_grad: &Array1<F>) -> Array1<F> {
    let k = param.len();
    let out_pad = pad_1d(output_grad, k / 2);
    let mut grad = Array1::zeros(inp.len());
    for i in 0..inp.len() {
        for f in 0..k {
            grad[i] += out_pad[i + k - f - 1] * param[f];
        }
    }
    grad
}

/// [`conv_1d`] of every row of `inp` (batch, length).
pub fn conv_1d_batch<F: Float>(inp: &Array2<F>, param: &Array1<F>) -> Array2<F> {
    let mut out = Array2::zeros(inp.raw_dim());
    for (i, row) in inp.rows().into_iter().enumerate() {
        out.row_mut(i).assign(&conv_1d(&row.to_owned(), param));
    }
    out
}

/// [`input_grad_1d`] of every row.
pub fn input_grad_1d_batch<F: Float>(inp: &Array2<F>, param: &Array1<F>, output_grad: &Array2<F>) -> Array2<F> {
    let mut grad = Array2::zeros(inp.raw_dim());
    for i in 0..inp.nrows() {
        let g = input_grad_1d(&inp.row(i).to_owned(), param, &output_grad.row(i).to_owned());
        grad.row_mut(i).assign(&g);
    }
    grad
}

/// The kernel gradient summed over the batch: `Σ_i Σ_o inp_pad[i][o + p] · ∂L/∂out[i][o]`.
pub fn param_grad_1d_batch<F: Float>(inp: &Array2<F>, param: &Array1<F>, output_grad: &Array2<F>) -> Array1<F> {
    let mut grad = Array1::zeros(param.len());
    for i in 0..inp.nrows() {
        grad += &param_grad_1d(&inp.row(i).to_owned(), param, &output_grad.row(i).to_owned());
    }
    grad
}

/// A `(h, w)` image with `num` zeros around it.
pub fn pad_2d<F: Float>(img: &Array2<F>, num: usize) -> Array2<F> {
    let (h, w) = img.dim();
    let mut out = Array2::zeros((h + 2 * num, w + 2 * num));
    out.slice_mut(s![num..num + h, num..num + w]).assign(img);
    out
}

/// Single-channel 2-D convolution of a batch `(batch, h, w)` with a `(k, k)` kernel:
/// `out[i][y][x] = Σ_{p,q} param[p][q] · in_pad[i][y + p][x + q]`.
pub fn conv_2d<F: Float>(imgs: &Array3<F>, param: &Array2<F>) -> Array3<F> {
    let k = param.nrows();
    let mut out = Array3::zeros(imgs.raw_dim());
    for (i, img) in imgs.outer_iter().enumerate() {
        let pad = pad_2d(&img.to_owned(), k / 2);
        for y in 0..img.nrows() {
            for x in 0..img.ncols() {
                for p in 0..k {
                    for q in 0..k {
                        out[[i, y, x]] += param[[p, q]] * pad[[y + p, x + q]];
                    }
                }
            }
        }
    }
    out
}

/// The input gradient of [`conv_2d`]: the padded output gradient correlated with the flipped kernel.
pub fn input_grad_2d<F: Float>(imgs: &Array3<F>, param: &Array2<F>, output_grad: &Array3<F>) -> Array3<F> {
    let k = param.nrows();
    let mut grad = Array3::zeros(imgs.raw_dim());
    for (i, g) in output_grad.outer_iter().enumerate() {
        let pad = pad_2d(&g.to_owned(), k / 2);
        for y in 0..g.nrows() {
            for x in 0..g.ncols() {
                for p in 0..k {
                    for q in 0..k {
                        grad[[i, y, x]] += pad[[y + k - p - 1, x + k - q - 1]] * param[[p, q]];
                    }
                }
            }
        }
    }
    grad
}

/// The kernel gradient of [`conv_2d`], summed over the batch.
pub fn param_grad_2d<F: Float>(imgs: &Array3<F>, param: &Array2<F>, output_grad: &Array3<F>) -> Array2<F> {
    let k = param.nrows();
    let mut grad = Array2::zeros(param.raw_dim());
    for (i, img) in imgs.outer_iter().enumerate() {
        let pad = pad_2d(&img.to_owned(), k / 2);
        for y in 0..img.nrows() {
            for x in 0..img.ncols() {
                for p in 0..k {
                    for q in 0..k {
                        grad[[p, q]] += pad[[y + p, x + q]] * output_grad[[i, y, x]];
                    }
                }
            }
        }
    }
    grad
}

/// Multi-channel 2-D convolution of a batch `(batch, in_ch, h, w)` with the book's kernel layout
/// `(in_ch, out_ch, k, k)`:
///
/// ```text
/// out[i][o][y][x] = Σ_c Σ_{p,q} param[c][o][p][q] · in_pad[i][c][y + p][x + q]
/// ```
pub fn conv_2d_multi<F: Float>(inp: &Array4<F>, param: &Array4<F>) -> Array4<F> {
    let (batch, in_ch, h, w) = inp.dim();
    let (_, out_ch, k, _) = param.dim();
    let mut out = Array4::zeros((batch, out_ch, h, w));
    for i in 0..batch {
        for c in 0..in_ch {
            let pad = pad_2d(&inp.slice(s![i, c, .., ..]).to_owned(), k / 2);
            for o in 0..out_ch {
                for y in 0..h {
                    for x in 0..w {
                        for p in 0..k {
                            for q in 0..k {
                                out[[i, o, y, x]] += param[[c, o, p, q]] * pad[[y + p, x + q]];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The input gradient of [`conv_2d_multi`]: every output channel's padded gradient correlated with the
/// flipped kernel from that channel.
pub fn input_grad_2d_multi<F: Float>(inp: &Array4<F>, param: &Array4<F>, output_grad: &Array4<F>) -> Array4<F> {
    let (batch, in_ch, h, w) = inp.dim();
    let (_, out_ch, k, _) = param.dim();
    let mut grad = Array4::zeros(inp.raw_dim());
    for i in 0..batch {
        for o in 0..out_ch {
            let pad = pad_2d(&output_grad.slice(s![i, o, .., ..]).to_owned(), k / 2);
            for c in 0..in_ch {
                for y in 0..h {
                    for x in 0..w {
                        for p in 0..k {
                            for q in 0..k {
                                grad[[i, c, y, x]] += pad[[y + k - p - 1, x + k - q - 1]] * param[[c, o, p, q]];
                            }
                        }
                    }
                }
            }
        }
    }
    grad
}

/// The kernel gradient of [`conv_2d_multi`], `(in_ch, out_ch, k, k)`, summed over the batch.
pub fn param_grad_2d_multi<F: Float>(inp: &Array4<F>, param: &Array4<F>, output_grad: &Array4<F>) -> Array4<F> {
    let (batch, in_ch, h, w) = inp.dim();
    let (_, out_ch, k, _) = param.dim();
    let mut grad = Array4::zeros(param.raw_dim());
    for i in 0..batch {
        for c in 0..in_ch {
            let pad = pad_2d(&inp.slice(s![i, c, .., ..]).to_owned(), k / 2);
            for o in 0..out_ch {
                for y in 0..h {
                    for x in 0..w {
                        for p in 0..k {
                            for q in 0..k {
                                grad[[c, o, p, q]] += pad[[y + p, x + q]] * output_grad[[i, o, y, x]];
                            }
                        }
                    }
                }
            }
        }
    }
    grad
}
