//! The matrix product underneath every dense layer, in one place so that its implementation can be
//! measured and chosen.

use ndarray::{Array2, ArrayView2};

use crate::Float;

/// `A B` for `A: (m, k)` and `B: (k, n)`, any strides (so transposed views cost nothing).
///
/// # Panics
/// If the inner dimensions differ; callers check shapes first and report them as errors.
pub fn matmul<F: Float>(a: &ArrayView2<F>, b: &ArrayView2<F>) -> Array2<F> {
    a.dot(b)
}
