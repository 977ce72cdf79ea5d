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
//! `b` is read a row at a time (its columns are adjacent); `a` one element at a time, so it may be
//! read transposed (then the tile's `R` values for one `k` are adjacent). A row-major `a` is read
//! through one slice per row of the tile, so its tiles have fewer rows, leaving registers for the
//! row pointers. The causal structure decides, for each tile of rows `r0..r1`, which columns or
//! which `k` it needs ([`Causal`]); the kernels are compiled for each instruction-set level of
//! [`crate::simd`].

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

/// `out[i, c] = Σ_k a[i, k] · b[k, c]` over the part `causal` says. `b` must have adjacent columns,
/// and `a` adjacent columns or adjacent rows.
///
/// # Panics
/// If an operand or `out` is too small for `sizes`, or the layouts are not as above.
pub(super) fn product<F: Float>(a: Matrix<F>, b: Matrix<F>, out: MatrixMut<F>, sizes: Sizes, causal: Causal) {
    product_at(Arch::new(), a, b, out, sizes, causal);
}

/// [`product`] compiled for `arch`.
fn product_at<F: Float>(arch: Arch, a: Matrix<F>, b: Matrix<F>, out: MatrixMut<F>, sizes: Sizes, causal: Causal) {
    assert!(b.col == 1 && (a.col == 1 || a.row == 1), "product operands: {a:?}, {b:?}");
    if let (Some(a), Some(b)) = (a.cast(F::as_f32s(a.data)), b.cast(F::as_f32s(b.data))) {
        if let Some(out) = out.cast(F::as_f32s_mut) {
            arch.dispatch(Product { a, b, out, sizes, causal });
        }
    } else if let (Some(a), Some(b)) = (a.cast(F::as_f64s(a.data)), b.cast(F::as_f64s(b.data))) {
        if let Some(out) = out.cast(F::as_f64s_mut) {
            arch.dispatch(Product { a, b, out, sizes, causal });
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
}

impl<T: SimdFloat + Float> WithSimd for Product<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // Rows per tile: two registers of accumulators per row, and room for the loads; a row-major
        // `a` is read through one pointer per row, so fewer of them.
        match (S::REGISTER_COUNT >= 32, self.a.col == 1) {
            (_, true) => rows_in_tiles::<T, S, 4, false>(simd, self),
            (true, false) => rows_in_tiles::<T, S, 8, true>(simd, self),
            (false, false) => rows_in_tiles::<T, S, 4, true>(simd, self),
        }
    }
}

/// The product in tiles of `R` rows (then single rows), `a` read transposed with `AT`.
#[inline(always)]
fn rows_in_tiles<T: SimdFloat + Float, S: Simd, const R: usize, const AT: bool>(simd: S, p: Product<'_, T>) {
    let Product { a, b, mut out, sizes, causal } = p;
    let mut r0 = 0;
    while r0 + R <= sizes.rows {
        tile_row::<T, S, R, AT>(simd, (&a, &b), &mut out, (sizes, causal), r0);
        r0 += R;
    }
    while r0 < sizes.rows {
        tile_row::<T, S, 1, AT>(simd, (&a, &b), &mut out, (sizes, causal), r0);
        r0 += 1;
    }
}

/// Rows `r0..r0 + R` of the output: tiles of two registers of columns, then one, then single
/// columns.
#[inline(always)]
fn tile_row<T: SimdFloat + Float, S: Simd, const R: usize, const AT: bool>(
    simd: S,
    (a, b): (&Matrix<T>, &Matrix<T>),
    out: &mut MatrixMut<T>,
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
    let mut c0 = 0;
    while c0 + 2 * lanes <= end {
        tile::<T, S, R, 2, AT>(simd, a, b, out, (r0, c0), ks.clone());
        c0 += 2 * lanes;
    }
    if c0 + lanes <= end {
        tile::<T, S, R, 1, AT>(simd, a, b, out, (r0, c0), ks.clone());
        c0 += lanes;
    }
    for r in 0..R {
        let row = out.at(r0 + r, c0, end.saturating_sub(c0));
        for (c, v) in (c0..end).zip(row) {
            let mut sum = T::zero();
            for k in ks.clone() {
                sum = element(a, r0 + r, k) * b.data[b.offset + k * b.row + c] + sum;
            }
            *v = sum;
        }
    }
}

/// One tile: rows `r0..r0 + R`, `N` registers of columns from `c0`, summed over `ks`.
#[inline(always)]
fn tile<T: SimdFloat + Float, S: Simd, const R: usize, const N: usize, const AT: bool>(
    simd: S,
    a: &Matrix<T>,
    b: &Matrix<T>,
    out: &mut MatrixMut<T>,
    (r0, c0): (usize, usize),
    ks: Range<usize>,
) {
    let lanes = T::lanes::<S>();
    let mut acc = [[T::splat(simd, T::default()); N]; R];
    // A row-major `a`: each row of the tile as a slice, so that the loop indexes within known bounds.
    let a_rows: [&[T]; R] =
        std::array::from_fn(|r| if AT { &[][..] } else { &a.data[a.offset + (r0 + r) * a.row..][..ks.end] });
    for k in ks {
        let b_row = &b.data[b.offset + k * b.row + c0..][..N * lanes];
        let bv: [T::V<S>; N] = std::array::from_fn(|n| load::<T, S>(&b_row[n * lanes..(n + 1) * lanes]));
        // A transposed `a`: the tile's rows are adjacent in column k.
        let av: [T; R] = if AT {
            let column = &a.data[a.offset + k * a.col + r0..][..R];
            std::array::from_fn(|r| column[r])
        } else {
            std::array::from_fn(|r| a_rows[r][k])
        };
        for r in 0..R {
            let ar = T::splat(simd, av[r]);
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
        product_at(arch, am, bm, om, sizes, causal);
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
