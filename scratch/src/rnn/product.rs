//! The recurrent product of one step, `out = a · W`: `a` is `(B, k)`, one row per sequence of the
//! batch (the hidden states going forward, the gate gradients going back), and `W` `(k, n)` is the
//! same at every step (some of the columns of `W_hhᵀ` or of `W_hh`).
//!
//! `W` is packed once per call into panels of `N` vector registers of columns, `k`-major within a
//! panel, so that a step reads it front to back. A tile of `R` rows of `a` by one panel is summed
//! in `R × N` registers:
//!
//! ```text
//! out[b, l] = Σ_k a[b, k] · W[k, l]:   per k, N loads of the panel's row k and R broadcasts of a[b, k]
//! ```
//!
//! over blocks of [`DEPTH_BLOCK`] values of `k`, whose part of the panel stays in the first-level
//! cache while every tile of rows reads it. The kernels are compiled for each instruction-set level
//! of [`crate::simd`].

use std::ops::Range;

use ndarray::ArrayView2;

use crate::simd::{load, registers, store, Arch, Simd, SimdFloat, WithSimd};
use crate::Float;

/// Values of `k` summed per pass over a panel: 128 rows of a panel of 3 AVX-512 registers are 24 KiB
/// in `f32` and 48 KiB in `f64`.
const DEPTH_BLOCK: usize = 128;

/// Columns of a matrix `W` `(k, n)` packed for [`product`]: panels of `width` columns (the last one
/// padded with zeros), each `k`-major.
#[derive(Clone, Debug)]
pub(super) struct Panels<F> {
    arch: Arch,
    /// Vector registers per panel row.
    registers: usize,
    /// Columns per panel: `registers` vectors.
    width: usize,
    /// `k`.
    depth: usize,
    /// `panels × depth × width` values.
    data: Vec<F>,
}

/// Values of `F` per vector register at level `S`.
struct Lanes<F>(std::marker::PhantomData<F>);

impl<F: Float> WithSimd for Lanes<F> {
    type Output = usize;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> usize {
        if F::SINGLE {
            S::F32_LANES
        } else {
            S::F64_LANES
        }
    }
}

impl<F: Float> Panels<F> {
    /// Room for `columns` columns of depth `depth`, the panel width chosen for this processor: with 32
    /// vector registers three, or four or two where that pads less; with 16, two (a tile of six rows
    /// then holds its 12 accumulators, the panel row and a broadcast in registers, where wider panels
    /// spill accumulators to the stack at every `k`).
    fn new(depth: usize, columns: usize) -> Self {
        let arch = Arch::new();
        let lanes = arch.dispatch(Lanes::<F>(std::marker::PhantomData));
        let padded = |registers: usize| columns.div_ceil(registers * lanes) * registers * lanes;
        let choices: &[usize] = if registers(arch) >= 32 { &[3, 4, 2] } else { &[2] };
        let registers = choices.iter().copied().min_by_key(|&r| padded(r)).expect("a choice");
        let width = registers * lanes;
        let data = vec![F::zero(); columns.div_ceil(width) * depth * width];
        Panels { arch, registers, width, depth, data }
    }

    /// The columns of `w` `(k, n)` (rows contiguous) in `segments` of its columns, one after the other:
    /// the forward product's `W_hhᵀ` restricted to the gate rows of some units.
    pub fn columns(w: ArrayView2<'_, F>, segments: &[Range<usize>]) -> Self {
        let sources: Vec<usize> = segments.iter().flat_map(Range::clone).collect();
        let mut panels = Self::new(w.nrows(), sources.len());
        let (width, depth) = (panels.width, panels.depth);
        for (panel, sources) in panels.data.chunks_exact_mut((depth * width).max(1)).zip(sources.chunks(width)) {
            let runs = runs(sources);
            for (out, row) in panel.chunks_exact_mut(width).zip(w.rows()) {
                let row = row.to_slice().expect("rows are contiguous");
                for (at, run) in &runs {
                    out[*at..*at + run.len()].copy_from_slice(&row[run.clone()]);
                }
            }
        }
        panels
    }

    /// The transpose of rows `rows` of `w` (rows contiguous), restricted to its columns `depth`: the
    /// backward product's `W_hh` restricted to some units' columns, from the stored `W_hhᵀ`.
    pub fn transposed_rows(w: ArrayView2<'_, F>, rows: Range<usize>, depth: Range<usize>) -> Self {
        let mut panels = Self::new(depth.len(), rows.len());
        let (width, k) = (panels.width, panels.depth);
        let sources: Vec<&[F]> =
            rows.map(|u| &w.row(u).to_slice().expect("rows are contiguous")[depth.clone()]).collect();
        for (panel, sources) in panels.data.chunks_exact_mut((k * width).max(1)).zip(sources.chunks(width)) {
            // Source by source: each row is read front to back and written down its column of the
            // panel, one value per panel row.
            for (i, row) in sources.iter().enumerate() {
                for (out, &v) in panel[i..].iter_mut().step_by(width).zip(row.iter()) {
                    *out = v;
                }
            }
        }
        panels
    }

    /// The columns of the product's output: the columns packed, padded to whole panels.
    pub fn padded_columns(&self) -> usize {
        self.data.len() / self.depth.max(1)
    }
}

/// `out[b, l] = Σ_k a[b, k] · W[k, l]` (or `+=` with `accumulate`) for the `rows` rows of `a`, each
/// `a[b · a_stride ..][..k]`, and every padded column of `panels`: `out` is `(rows,`
/// [`Panels::padded_columns`]`)`, rows contiguous.
///
/// # Panics
/// If `a` or `out` is too short.
pub(super) fn product<F: Float>(
    a: &[F],
    a_stride: usize,
    rows: usize,
    panels: &Panels<F>,
    out: &mut [F],
    accumulate: bool,
) {
    let padded = panels.padded_columns();
    assert!(out.len() >= rows * padded, "product output: {} for {rows} x {padded}", out.len());
    if rows == 0 || padded == 0 {
        return;
    }
    if panels.depth == 0 {
        if !accumulate {
            out[..rows * padded].fill(F::zero());
        }
        return;
    }
    assert!(a.len() >= (rows - 1) * a_stride + panels.depth, "product operand too short");
    if let (Some(a), Some(data), Some(out)) = (F::as_f32s(a), F::as_f32s(&panels.data), F::as_f32s_mut(out)) {
        panels.arch.dispatch(Product { a, a_stride, rows, panels: View::of(panels, data), out, accumulate });
    } else if let (Some(a), Some(data), Some(out)) = (F::as_f64s(a), F::as_f64s(&panels.data), F::as_f64s_mut(out)) {
        panels.arch.dispatch(Product { a, a_stride, rows, panels: View::of(panels, data), out, accumulate });
    }
}

/// The panels' data as one float type.
#[derive(Clone, Copy)]
struct View<'a, T> {
    registers: usize,
    width: usize,
    depth: usize,
    data: &'a [T],
}

impl<'a, T> View<'a, T> {
    fn of<F>(p: &Panels<F>, data: &'a [T]) -> Self {
        View { registers: p.registers, width: p.width, depth: p.depth, data }
    }
}

/// The consecutive runs of `sources`: each as where it starts among them and the columns it covers.
fn runs(sources: &[usize]) -> Vec<(usize, Range<usize>)> {
    let mut runs: Vec<(usize, Range<usize>)> = Vec::new();
    for (at, &c) in sources.iter().enumerate() {
        match runs.last_mut() {
            Some((_, run)) if run.end == c => run.end += 1,
            _ => runs.push((at, c..c + 1)),
        }
    }
    runs
}

/// [`product`] for one float type, compiled for each level.
struct Product<'a, T> {
    a: &'a [T],
    a_stride: usize,
    rows: usize,
    panels: View<'a, T>,
    out: &'a mut [T],
    accumulate: bool,
}

impl<T: SimdFloat + Float> WithSimd for Product<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // Rows per tile: as many as leave room for the accumulators (24 of 32 registers, 12 of 16), the
        // panel row and a broadcast. With 16 registers the panels are two wide ([`Panels::new`]).
        match (S::REGISTER_COUNT >= 32, self.panels.registers) {
            (true, 4) => panels::<T, S, 6, 5, 4>(simd, self),
            (true, 3) => panels::<T, S, 8, 7, 3>(simd, self),
            (true, _) => panels::<T, S, 12, 11, 2>(simd, self),
            (false, _) => panels::<T, S, 6, 5, 2>(simd, self),
        }
    }
}

/// Every panel, in blocks of `k`, in tiles of `R` rows and `SHORT = R − 1` rows (then 4, 2 and 1).
///
/// A tile keeps its accumulators in flight while the fused multiply-adds of the others finish; one of
/// 2 rows has too few (4, where about 10 hide the latency) and waits on them. So the rows are cut into
/// tiles of both sizes where that covers them all (32 rows are two tiles of 6 and four of 5, not five
/// of 6 and one of 2), and the smaller tiles only take what is left otherwise.
#[inline(always)]
fn panels<T: SimdFloat + Float, S: Simd, const R: usize, const SHORT: usize, const N: usize>(
    simd: S,
    p: Product<'_, T>,
) {
    let Product { a, a_stride, rows, panels, out, accumulate } = p;
    let (width, depth) = (panels.width, panels.depth);
    debug_assert_eq!(width, N * T::lanes::<S>());
    debug_assert_eq!(SHORT + 1, R);
    let padded = panels.data.len() / depth;
    let short_tiles = (0..R).find(|&s| s * SHORT <= rows && (rows - s * SHORT) % R == 0).unwrap_or(0);
    for (index, panel) in panels.data.chunks_exact(depth * width).enumerate() {
        let c0 = index * width;
        let mut k0 = 0;
        while k0 < depth {
            let k1 = (k0 + DEPTH_BLOCK).min(depth);
            let block = Block { a, a_stride, panel: &panel[k0 * width..k1 * width], k0, c0, padded };
            let add = accumulate || k0 > 0;
            let mut r0 = 0;
            for _ in 0..short_tiles {
                tile::<T, S, SHORT, N>(simd, &block, out, r0, add);
                r0 += SHORT;
            }
            while r0 + R <= rows {
                tile::<T, S, R, N>(simd, &block, out, r0, add);
                r0 += R;
            }
            while r0 < rows {
                match rows - r0 {
                    n if n >= 4 && R > 4 => {
                        tile::<T, S, 4, N>(simd, &block, out, r0, add);
                        r0 += 4;
                    }
                    n if n >= 2 && R > 2 => {
                        tile::<T, S, 2, N>(simd, &block, out, r0, add);
                        r0 += 2;
                    }
                    _ => {
                        tile::<T, S, 1, N>(simd, &block, out, r0, add);
                        r0 += 1;
                    }
                }
            }
            k0 = k1;
        }
    }
}

/// One block of `k` of one panel: `a`'s columns from `k0`, the panel's rows, and where the panel's
/// columns start in the output.
struct Block<'a, T> {
    a: &'a [T],
    a_stride: usize,
    panel: &'a [T],
    k0: usize,
    c0: usize,
    padded: usize,
}

/// Rows `r0..r0 + R` by one panel over one block of `k`, added to `out` with `add`.
#[inline(always)]
fn tile<T: SimdFloat + Float, S: Simd, const R: usize, const N: usize>(
    simd: S,
    block: &Block<'_, T>,
    out: &mut [T],
    r0: usize,
    add: bool,
) {
    let lanes = T::lanes::<S>();
    let width = N * lanes;
    let depth = block.panel.len() / width;
    let a_rows: [&[T]; R] = std::array::from_fn(|r| &block.a[(r0 + r) * block.a_stride + block.k0..][..depth]);
    let mut acc = [[T::splat(simd, T::default()); N]; R];
    for (k, w) in block.panel.chunks_exact(width).enumerate() {
        let wv: [T::V<S>; N] = std::array::from_fn(|n| load::<T, S>(&w[n * lanes..(n + 1) * lanes]));
        for r in 0..R {
            let ar = T::splat(simd, a_rows[r][k]);
            for n in 0..N {
                acc[r][n] = <T as SimdFloat>::mul_add(simd, ar, wv[n], acc[r][n]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let row = &mut out[(r0 + r) * block.padded + block.c0..][..width];
        for (n, &v) in acc.iter().enumerate() {
            let o = &mut row[n * lanes..(n + 1) * lanes];
            let v = if add { <T as SimdFloat>::add(simd, load::<T, S>(o), v) } else { v };
            store::<T, S>(o, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{s, Array2};

    use super::*;
    use crate::rng::RandomState;

    /// Every width and remainder of rows, from both packings, against the definition.
    #[test]
    fn matches_the_definition() {
        let mut rng = RandomState::new(3);
        for (rows, k, n) in [(1, 1, 1), (3, 5, 7), (13, 300, 37), (32, 256, 130), (9, 129, 64)] {
            let a: Array2<f64> = rng.randn((rows, k + 2));
            let w: Array2<f64> = rng.randn((k, n + 5));
            let segments = [1..1 + n / 2, 3 + n / 2..3 + n];
            let panels = Panels::columns(w.view(), &segments);
            assert_eq!(panels.padded_columns() % panels.width, 0);
            assert!(panels.padded_columns() - n < panels.width, "one padded panel at most");
            let mut out = vec![1.0; rows * panels.padded_columns()];
            product(&a.as_slice().unwrap()[1..], k + 2, rows, &panels, &mut out, true);
            let cols: Vec<usize> = segments.iter().flat_map(|s| s.clone()).collect();
            for b in 0..rows {
                for (l, &c) in cols.iter().enumerate() {
                    let expected: f64 = 1.0 + (0..k).map(|i| a[[b, i + 1]] * w[[i, c]]).sum::<f64>();
                    let got = out[b * panels.padded_columns() + l];
                    assert!((got - expected).abs() < 1e-12 * (1.0 + expected.abs()), "{rows}x{k}x{n} [{b}, {l}]");
                }
            }
            // The transposed packing of the same columns, into a fresh output.
            let wt = w.t().as_standard_layout().into_owned();
            let panels = Panels::transposed_rows(wt.view(), 2..2 + n, 0..k);
            let mut out = vec![f64::NAN; rows * panels.padded_columns()];
            product(&a.as_slice().unwrap()[1..], k + 2, rows, &panels, &mut out, false);
            let expected = a.slice(s![.., 1..k + 1]).dot(&w.slice(s![.., 2..2 + n]));
            for b in 0..rows {
                for l in 0..n {
                    let (got, e) = (out[b * panels.padded_columns() + l], expected[[b, l]]);
                    assert!((got - e).abs() < 1e-12 * (1.0 + e.abs()), "transposed {rows}x{k}x{n} [{b}, {l}]");
                }
            }
        }
    }

    #[test]
    fn single_precision_matches() {
        let mut rng = RandomState::new(4);
        let a: Array2<f32> = rng.randn((32, 256));
        let w: Array2<f32> = rng.randn((256, 512));
        let panels = Panels::columns(w.view(), &[0..256, 256..512]);
        let mut out = vec![0.0; 32 * panels.padded_columns()];
        product(a.as_slice().unwrap(), 256, 32, &panels, &mut out, false);
        let expected = a.dot(&w);
        for b in 0..32 {
            for l in 0..512 {
                assert!((out[b * panels.padded_columns() + l] - expected[[b, l]]).abs() < 1e-3);
            }
        }
    }
}
