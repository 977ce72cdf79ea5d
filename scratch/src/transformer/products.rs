//! The small matrix products of one attention head (`T × hs` by `hs × T`, `T × T` by `T × hs`), in
//! vector registers, each restricted to the part the causal mask leaves.
//!
//! A general matrix product (the `gemm` crate) packs its operands into blocks first, which costs as
//! much as the product itself at these sizes; here a tile of `R` output rows by one or two
//! registers of columns is summed in registers straight from the operands:
//!
//! ```text
//! out[i, c] = Σ_k a[i, k] · b[k, c]:   per k, one or two loads of b's row k, R broadcasts of a[i, k]
//! ```
//!
//! `b` is read a row at a time (its columns are adjacent); `a` as the `R` values of one column of
//! the tile's rows for each `k`: adjacent already when `a` is read transposed, copied so (a tile of
//! rows at a time) when it is row-major, so that the loop reads one stream rather than `R`. The
//! causal structure decides, for each tile of rows `r0..r1`, which columns or which `k` it needs
//! ([`Causal`]); the kernels are compiled for each instruction-set level of [`crate::simd`].

use std::ops::Range;

use crate::simd::{load, store, Arch, Simd, SimdFloat, WithSimd};
use crate::Float;

/// A matrix operand: element `(i, k)` is `data[offset + i · row + k · col]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Matrix<'a, F> {
    pub data: &'a [F],
    pub offset: usize,
    pub row: usize,
    pub col: usize,
}

impl<'a, F> Matrix<'a, F> {
    /// The matrix whose rows start `row` apart in `data`, from `offset`.
    pub fn rows(data: &'a [F], offset: usize, row: usize) -> Self {
        Matrix { data, offset, row, col: 1 }
    }

    /// The transpose of the matrix whose rows start `row` apart in `data`, from `offset`.
    pub fn transposed(data: &'a [F], offset: usize, row: usize) -> Self {
        Matrix { data, offset, row: 1, col: row }
    }

    /// The same matrix over another element type, if `data` can be seen as one.
    fn cast<T>(self, data: Option<&'a [T]>) -> Option<Matrix<'a, T>> {
        data.map(|data| Matrix { data, offset: self.offset, row: self.row, col: self.col })
    }
}

/// Which part of a product a tile of output rows `r0..r1` needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Causal {
    /// Columns below `r1`, rounded up to whole registers: the scores `S[i, j]` for `j ≤ i` (the
    /// columns beyond are left as they were).
    Columns,
    /// `k < r1`: `a` is zero above its diagonal (`P̃ v`, `∂L/∂S k`).
    Lower,
    /// `k ≥ r0`: `a` is zero below its diagonal (`P̃ᵀ ∂L/∂y`, `∂L/∂Sᵀ q`, `a` read transposed).
    Upper,
}

/// The sizes of a product: `out (rows, cols) = a (rows, inner) · b (inner, cols)`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sizes {
    pub rows: usize,
    pub cols: usize,
    pub inner: usize,
}

/// An output matrix: row `i` starts at `data[offset + i · row]`, its columns adjacent.
#[derive(Debug)]
pub(super) struct MatrixMut<'a, F> {
    pub data: &'a mut [F],
    pub offset: usize,
    pub row: usize,
}

impl<'a, F> MatrixMut<'a, F> {
    /// The same matrix over another element type, if `data` can be seen as one.
    fn cast<T>(self, data: impl FnOnce(&'a mut [F]) -> Option<&'a mut [T]>) -> Option<MatrixMut<'a, T>> {
        let (offset, row) = (self.offset, self.row);
        data(self.data).map(|data| MatrixMut { data, offset, row })
    }

    /// Columns `c0..c0 + n` of row `i`.
    #[inline(always)]
    fn at(&mut self, i: usize, c0: usize, n: usize) -> &mut [F] {
        &mut self.data[self.offset + i * self.row + c0..][..n]
    }
}

/// The most rows in a tile, at any level: [`product`]'s packing space holds this many times the
/// inner size.
const MAX_TILE: usize = 8;

/// `out[i, c] = Σ_k a[i, k] · b[k, c]` over the part `causal` says. `b` must have adjacent columns,
/// and `a` adjacent columns or adjacent rows; `packed` is working space (grown as needed).
///
/// # Panics
/// If an operand or `out` is too small for `sizes`, or the layouts are not as above.
pub(super) fn product<F: Float>(
    a: Matrix<F>,
    b: Matrix<F>,
    out: MatrixMut<F>,
    sizes: Sizes,
    causal: Causal,
    packed: &mut Vec<F>,
) {
    product_at(Arch::new(), a, b, out, sizes, causal, packed);
}

/// [`product`] compiled for `arch`.
fn product_at<F: Float>(
    arch: Arch,
    a: Matrix<F>,
    b: Matrix<F>,
    out: MatrixMut<F>,
    sizes: Sizes,
    causal: Causal,
    packed: &mut Vec<F>,
) {
    assert!(b.col == 1 && (a.col == 1 || a.row == 1), "product operands: {a:?}, {b:?}");
    if packed.len() < MAX_TILE * sizes.inner {
        packed.resize(MAX_TILE * sizes.inner, F::zero());
    }
    if let (Some(a), Some(b)) = (a.cast(F::as_f32s(a.data)), b.cast(F::as_f32s(b.data))) {
        if let (Some(out), Some(packed)) = (out.cast(F::as_f32s_mut), F::as_f32s_mut(packed)) {
            arch.dispatch(Product { a, b, out, sizes, causal, packed });
        }
    } else if let (Some(a), Some(b)) = (a.cast(F::as_f64s(a.data)), b.cast(F::as_f64s(b.data))) {
        if let (Some(out), Some(packed)) = (out.cast(F::as_f64s_mut), F::as_f64s_mut(packed)) {
            arch.dispatch(Product { a, b, out, sizes, causal, packed });
        }
    }
}

/// [`product`] for one float type, compiled for each level.
struct Product<'a, T> {
    a: Matrix<'a, T>,
    b: Matrix<'a, T>,
    out: MatrixMut<'a, T>,
    sizes: Sizes,
    causal: Causal,
    packed: &'a mut [T],
}

impl<T: SimdFloat + Float> WithSimd for Product<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // Rows per tile: two registers of accumulators per row, and room for the loads.
        if S::REGISTER_COUNT >= 32 {
            rows_in_tiles::<T, S, MAX_TILE>(simd, self);
        } else {
            rows_in_tiles::<T, S, 4>(simd, self);
        }
    }
}

/// The product in tiles of `R` rows (then single rows).
#[inline(always)]
fn rows_in_tiles<T: SimdFloat + Float, S: Simd, const R: usize>(simd: S, p: Product<'_, T>) {
    let Product { a, b, mut out, sizes, causal, packed } = p;
    let mut r0 = 0;
    while r0 + R <= sizes.rows {
        tile_row::<T, S, R>(simd, (&a, &b), &mut out, packed, (sizes, causal), r0);
        r0 += R;
    }
    while r0 < sizes.rows {
        tile_row::<T, S, 1>(simd, (&a, &b), &mut out, packed, (sizes, causal), r0);
        r0 += 1;
    }
}

/// Rows `r0..r0 + R` of the output: tiles of two registers of columns, then one, then single
/// columns. A row-major `a` is first copied into `packed`, column after column, so that the tiles
/// read it as they read a transposed one: `R` adjacent values per `k`.
#[inline(always)]
fn tile_row<T: SimdFloat + Float, S: Simd, const R: usize>(
    simd: S,
    (a, b): (&Matrix<T>, &Matrix<T>),
    out: &mut MatrixMut<T>,
    packed: &mut [T],
    (Sizes { cols, inner, .. }, causal): (Sizes, Causal),
    r0: usize,
) {
    let lanes = T::lanes::<S>();
    let r1 = r0 + R;
    let (end, ks) = match causal {
        Causal::Columns => ((r1.div_ceil(lanes) * lanes).min(cols), 0..inner),
        Causal::Lower => (cols, 0..r1.min(inner)),
        Causal::Upper => (cols, r0.min(inner)..inner),
    };
    // Column `k` of the tile's rows of `a` is `columns[(k − ks.start) · stride..][..R]`.
    let (columns, stride): (&[T], usize) = if a.col == 1 {
        for k in ks.clone() {
            let column = &mut packed[(k - ks.start) * R..][..R];
            for (r, v) in column.iter_mut().enumerate() {
                *v = element(a, r0 + r, k);
            }
        }
        (packed, R)
    } else {
        (&a.data[a.offset + ks.start * a.col + r0..], a.col)
    };
    let a = (columns, stride);
    let mut c0 = 0;
    while c0 + 2 * lanes <= end {
        tile::<T, S, R, 2>(simd, a, b, out, (r0, c0), ks.clone());
        c0 += 2 * lanes;
    }
    if c0 + lanes <= end {
        tile::<T, S, R, 1>(simd, a, b, out, (r0, c0), ks.clone());
        c0 += lanes;
    }
    for r in 0..R {
        let row = out.at(r0 + r, c0, end.saturating_sub(c0));
        for (c, v) in (c0..end).zip(row) {
            let mut sum = T::zero();
            for k in ks.clone() {
                sum = columns[(k - ks.start) * stride + r] * b.data[b.offset + k * b.row + c] + sum;
            }
            *v = sum;
        }
    }
}

/// One tile: rows `r0..r0 + R`, `N` registers of columns from `c0`, summed over `ks`; `a` is given
/// by its columns for the tile's rows, `columns[(k − ks.start) · stride..][..R]`.
#[inline(always)]
fn tile<T: SimdFloat + Float, S: Simd, const R: usize, const N: usize>(
    simd: S,
    (columns, stride): (&[T], usize),
    b: &Matrix<T>,
    out: &mut MatrixMut<T>,
    (r0, c0): (usize, usize),
    ks: Range<usize>,
) {
    let lanes = T::lanes::<S>();
    let mut acc = [[T::splat(simd, T::default()); N]; R];
    for (i, k) in ks.enumerate() {
        let b_row = &b.data[b.offset + k * b.row + c0..][..N * lanes];
        let bv: [T::V<S>; N] = std::array::from_fn(|n| load::<T, S>(&b_row[n * lanes..(n + 1) * lanes]));
        let column = &columns[i * stride..][..R];
        for r in 0..R {
            let ar = T::splat(simd, column[r]);
            for n in 0..N {
                acc[r][n] = <T as SimdFloat>::mul_add(simd, ar, bv[n], acc[r][n]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let row = out.at(r0 + r, c0, N * lanes);
        for (n, v) in acc.iter().enumerate() {
            store::<T, S>(&mut row[n * lanes..(n + 1) * lanes], *v);
        }
    }
}

/// `a[i, k]`.
#[inline(always)]
fn element<T: Copy>(a: &Matrix<T>, i: usize, k: usize) -> T {
    a.data[a.offset + i * a.row + k * a.col]
}

#[cfg(test)]
mod tests {
    use ndarray::{s, Array2};

    use super::*;
    use crate::rng::RandomState;
    use crate::simd::levels;

    /// `a` with the triangle `causal` assumes to be zero set to zero.
    fn triangular(mut a: Array2<f64>, causal: Causal) -> Array2<f64> {
        for ((i, k), v) in a.indexed_iter_mut() {
            if (causal == Causal::Lower && k > i) || (causal == Causal::Upper && k < i) {
                *v = 0.0;
            }
        }
        a
    }

    /// The product at `arch` in `T`, with `a` stored as given (or transposed) and `b` inside a wider
    /// array from an offset, as the heads are; the output has two spare columns per row, NaN where
    /// the product does not write.
    fn computed<T: Float>(
        arch: Arch,
        a: &Array2<f64>,
        transposed: bool,
        b: &Array2<f64>,
        causal: Causal,
    ) -> Array2<f64> {
        let ((rows, inner), cols) = (a.dim(), b.ncols());
        let view = if transposed { a.t() } else { a.view() };
        let stored: Vec<T> = view.iter().map(|&v| T::cast(v)).collect();
        let am =
            if transposed { Matrix::transposed(&stored[..], 0, rows) } else { Matrix::rows(&stored[..], 0, inner) };
        let mut wide = Array2::<f64>::zeros((inner, cols + 5));
        wide.slice_mut(s![.., 3..3 + cols]).assign(b);
        let wide: Vec<T> = wide.iter().map(|&v| T::cast(v)).collect();
        let mut out = vec![T::nan(); rows * (cols + 2)];
        let (bm, sizes) = (Matrix::rows(&wide[..], 3, cols + 5), Sizes { rows, cols, inner });
        let om = MatrixMut { data: &mut out[..], offset: 0, row: cols + 2 };
        product_at(arch, am, bm, om, sizes, causal, &mut Vec::new());
        Array2::from_shape_fn((rows, cols), |(i, c)| out[i * (cols + 2) + c].as_f64())
    }

    #[test]
    fn every_level_layout_and_causal_part_matches_the_definition() {
        let mut rng = RandomState::new(3);
        for arch in levels() {
            for (rows, inner, cols) in [(1, 1, 1), (5, 3, 7), (9, 33, 17), (16, 32, 64), (64, 64, 32), (13, 13, 40)] {
                for causal in [Causal::Columns, Causal::Lower, Causal::Upper] {
                    // Lower and Upper products have a square `a`, zero in one triangle.
                    let inner = if causal == Causal::Columns { inner } else { rows };
                    let a = triangular(rng.randn((rows, inner)), causal);
                    let b: Array2<f64> = rng.randn((inner, cols));
                    let expected = a.dot(&b);
                    for transposed in [false, true].into_iter().filter(|&t| !t || causal != Causal::Columns) {
                        let case = format!("{arch:?} {causal:?} transposed {transposed} {:?}", (rows, inner, cols));
                        for (got, tolerance) in [
                            (computed::<f64>(arch, &a, transposed, &b, causal), 1e-12),
                            (computed::<f32>(arch, &a, transposed, &b, causal), 1e-4),
                        ] {
                            for ((i, c), &got) in got.indexed_iter() {
                                // The scores' columns past the diagonal may be left as they were.
                                if causal == Causal::Columns && c > i && got.is_nan() {
                                    continue;
                                }
                                let want = expected[[i, c]];
                                assert!((got - want).abs() < tolerance, "{case} at ({i}, {c}): {got} vs {want}");
                            }
                        }
                    }
                }
            }
        }
    }
}
