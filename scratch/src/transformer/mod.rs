//! Chapter 8, beyond the book: the from-scratch building blocks of a GPT, named as nanoGPT's `GPT`
//! module names them.
//!
//! | block | nanoGPT | here |
//! |---|---|---|
//! | token embedding | `wte` | [`Embedding`] |
//! | position embedding | `wpe` | [`PositionEmbedding`] |
//! | layer normalisation | `ln_1`, `ln_2`, `ln_f` | [`LayerNorm`] |
//! | causal self-attention (between `c_attn` and `c_proj`) | `attn` | [`CausalSelfAttention`] |
//! | GELU in the MLP | `gelu` | [`Activation::Gelu`](crate::ops::Activation::Gelu) |
//! | generation with a key-value cache | `generate` | [`Generator`] |
//!
//! Every layer's forward and backward pass is written by hand; [`loops`] has the plain reference of
//! each, written as loops over indices, which the tests compare the fast layers with. Each layer
//! computes its output in a function of `&self` that returns what the backward pass needs, so that
//! its `infer` (evaluation without keeping anything) shares the code of its `forward`.

mod attention;
mod embedding;
mod generate;
mod layer_norm;
pub mod loops;
mod products;

pub use attention::CausalSelfAttention;
pub(crate) use embedding::check_length;
pub use embedding::{Embedding, PositionEmbedding};
pub use generate::Generator;
pub use layer_norm::LayerNorm;

use ndarray::ArrayD;

use crate::Float;

/// Arrays with at least this many elements are processed on all cores, in pieces of whole rows.
const PARALLEL_LEN: usize = 1 << 15;

/// The number of rows of `width` elements in one piece of work: all of them below
/// [`PARALLEL_LEN`] elements, else pieces of about that size.
fn rows_per_piece(width: usize) -> usize {
    (PARALLEL_LEN / width.max(1)).max(1)
}

/// `a` in standard (row-major) layout, copied only if it is not already.
fn standard<F: Float>(a: ArrayD<F>) -> ArrayD<F> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// Independent partial sums in [`sum`] and [`dot`]: enough for the compiler to keep them in vector
/// registers instead of adding one element after another.
const LANES: usize = 16;

/// `Σ a`, in [`LANES`] interleaved partial sums (vectorised).
#[inline(always)]
fn sum<F: Float>(a: &[F]) -> F {
    let mut acc = [F::zero(); LANES];
    let chunks = a.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (s, &v) in acc.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    acc.iter().fold(F::zero(), |s, &v| s + v) + tail.iter().fold(F::zero(), |s, &v| s + v)
}

/// The largest element of `a` (−∞ if it is empty), in [`LANES`] interleaved partial maxima
/// (vectorised).
#[inline(always)]
fn max<F: Float>(a: &[F]) -> F {
    let mut acc = [F::neg_infinity(); LANES];
    let chunks = a.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in acc.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    acc.iter().chain(tail).fold(F::neg_infinity(), |m, &v| if v > m { v } else { m })
}

/// `Σ a ⊙ b` over the shorter of the two, in [`LANES`] interleaved partial sums (vectorised).
#[inline(always)]
fn dot<F: Float>(a: &[F], b: &[F]) -> F {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [F::zero(); LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = a_chunks.remainder().iter().zip(b_chunks.remainder()).fold(F::zero(), |s, (&x, &y)| s + x * y);
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for ((s, &x), &y) in acc.iter_mut().zip(ca).zip(cb) {
            *s += x * y;
        }
    }
    acc.iter().fold(F::zero(), |s, &v| s + v) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_dot_products_of_every_length() {
        for n in [0, 1, 5, 16, 17, 40, 129] {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
            let plain_sum: f64 = a.iter().sum();
            let plain_dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((sum(&a) - plain_sum).abs() < 1e-13, "{n}");
            assert!((dot(&a, &b) - plain_dot).abs() < 1e-13, "{n}");
            assert_eq!(max(&a), a.iter().copied().fold(f64::NEG_INFINITY, f64::max), "{n}");
        }
    }
}
