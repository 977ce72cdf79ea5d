//! The matrix product underneath every dense layer, in one place so that its implementation can be
//! measured and chosen.
//!
//! It calls the kernels of the `gemm` family of crates (`gemm-f32` and `gemm-f64`, without the `gemm`
//! crate above them, whose complex and half-precision kernels this crate never uses), which pick
//! AVX2/FMA or, with their `x86-v4` feature (enabled here), AVX-512 code at run time and split large
//! products across threads. On the project's 2-core AVX2 machines it reaches about 180 GFLOP/s in f32
//! (2 threads, 2048³), 90 % of the cores' peak; on 2 AVX-512 cores about 250 GFLOP/s, as fast as
//! libtorch's MKL (without `x86-v4`, half that). ndarray's default product (`matrixmultiply`) runs on
//! one core at a third of that (`examples/benches/bench.rs` measures all three).

use gemm_common::Parallelism;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::Float;

/// A matrix product `dst ← α dst + β lhs rhs` of the `gemm` family: `(m, n, k)`, then each matrix as
/// its pointer, column stride and row stride (`dst` with `read_dst`, whether to read it: without, `α`
/// is ignored), then `α`, `β`, three conjugation flags (ignored for real numbers) and the threading.
pub type GemmKernel<F> = unsafe fn(
    usize,
    usize,
    usize,
    *mut F,
    isize,
    isize,
    bool,
    *const F,
    isize,
    isize,
    *const F,
    isize,
    isize,
    F,
    F,
    bool,
    bool,
    bool,
    Parallelism,
);

/// How a product of `(m, k)` by `(k, n)` is run: on all cores when it has at least 2²¹ multiply-adds
/// and its output a side of at least 512, so that every core gets whole blocks of rows or columns;
/// otherwise on one thread, where waking the other threads and splitting a narrow output costs more
/// than it saves. Measured on 2 AVX-512 cores (GFLOP/s, one thread / two): 60×784×89 (the book's
/// layer) 91 / 62, its weight gradient 784×60×89 138 / 160, 60×10×12544 64 / 133, 256×784×512 155 /
/// 290.
fn parallelism(m: usize, k: usize, n: usize) -> Parallelism {
    split(m, k, n, 0)
}

/// As [`parallelism`], on `threads` threads (0: all of the pool's).
fn split(m: usize, k: usize, n: usize, threads: usize) -> Parallelism {
    if m * k * n >= 1 << 21 && m.max(n) >= 512 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// How a product that runs at the same time as another one (the two halves of a `rayon::join`) is run:
/// on half of the pool's threads, by the rule of [`parallelism`]; on one thread where the pool has
/// two or three, so that each product has a core to itself instead of both splitting across both.
fn half_parallelism(m: usize, k: usize, n: usize) -> Parallelism {
    match rayon::current_num_threads() / 2 {
        0 | 1 => Parallelism::None,
        half => split(m, k, n, half),
    }
}

/// `A B` for `A: (m, k)` and `B: (k, n)`, any strides (so transposed views cost nothing).
///
/// # Panics
/// If the inner dimensions differ; callers check shapes first and report them as errors.
pub fn matmul<F: Float>(a: &ArrayView2<F>, b: &ArrayView2<F>) -> Array2<F> {
    let ((m, k), n) = (a.dim(), b.ncols());
    new_product(a, b, parallelism(m, k, n))
}

/// As [`matmul`], for a product computed at the same time as another one (one half of a
/// `rayon::join`, the other half [`matmul_into_half`]): split over half of the threads only, and not
/// at all on a machine of two or three cores, where each of the two products has a core of its own.
///
/// # Panics
/// If the inner dimensions differ.
pub fn matmul_half<F: Float>(a: &ArrayView2<F>, b: &ArrayView2<F>) -> Array2<F> {
    let ((m, k), n) = (a.dim(), b.ncols());
    new_product(a, b, half_parallelism(m, k, n))
}

/// `A B` into a new array, run as `parallelism` says.
fn new_product<F: Float>(a: &ArrayView2<F>, b: &ArrayView2<F>, parallelism: Parallelism) -> Array2<F> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert_eq!(k, k2, "matmul: inner dimensions differ");
    if m == 0 || n == 0 || k == 0 {
        return Array2::zeros((m, n));
    }
    let mut c = Array2::<F>::uninit((m, n));
    let dst = Operand { ptr: c.as_mut_ptr().cast::<F>(), rs: c.strides()[0], cs: c.strides()[1] };
    // SAFETY: the pointers and strides describe the three arrays exactly (ndarray's own strides, in
    // elements), the shapes agree (checked above), and `c` is a separate, owned allocation. With
    // `read_dst = false` gemm never reads `c` and writes every one of its elements (k > 0), so it is
    // initialised afterwards.
    #[allow(unsafe_code)]
    unsafe {
        gemm((m, k, n), dst, false, Operand::of(a), Operand::of(b), parallelism);
        c.assume_init()
    }
}

/// `C ← A B`, or `C ← C + A B` with `accumulate`, on one thread: for callers that already spread their
/// work over the cores (the convolution works image by image, the recurrent layer sequence by sequence).
///
/// # Panics
/// If the shapes do not agree.
pub fn matmul_into<F: Float>(c: &mut ArrayViewMut2<F>, a: &ArrayView2<F>, b: &ArrayView2<F>, accumulate: bool) {
    product_into(c, a, b, accumulate, |_, _, _| Parallelism::None);
}

/// `C ← A B`, or `C ← C + A B` with `accumulate`, for a product computed at the same time as another
/// one (see [`matmul_half`]).
///
/// # Panics
/// If the shapes do not agree.
pub fn matmul_into_half<F: Float>(c: &mut ArrayViewMut2<F>, a: &ArrayView2<F>, b: &ArrayView2<F>, accumulate: bool) {
    product_into(c, a, b, accumulate, half_parallelism);
}

/// `C ← A B`, or `C ← C + A B` with `accumulate`, into an existing array (so that a caller can keep
/// its buffers from one call to the next), split over the threads by the `gemm` crate when the
/// product is large, as [`matmul`].
///
/// # Panics
/// If the shapes do not agree.
pub fn matmul_into_threaded<F: Float>(
    c: &mut ArrayViewMut2<F>,
    a: &ArrayView2<F>,
    b: &ArrayView2<F>,
    accumulate: bool,
) {
    product_into(c, a, b, accumulate, parallelism);
}

fn product_into<F: Float>(
    c: &mut ArrayViewMut2<F>,
    a: &ArrayView2<F>,
    b: &ArrayView2<F>,
    accumulate: bool,
    parallelism: fn(usize, usize, usize) -> Parallelism,
) {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert!(k == k2 && c.dim() == (m, n), "matrix product: shapes {:?} x {:?} -> {:?}", a.dim(), b.dim(), c.dim());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(F::zero());
        }
        return;
    }
    let parallelism = parallelism(m, k, n);
    let dst = Operand { ptr: c.as_mut_ptr(), rs: c.strides()[0], cs: c.strides()[1] };
    // SAFETY: as in `matmul`: the pointers and strides describe the arrays exactly, the shapes agree,
    // and `c` is borrowed mutably, so it does not alias `a` or `b`. With `accumulate` gemm reads `c`
    // (initialised, since it is a view of an array); without, it writes every element.
    #[allow(unsafe_code)]
    unsafe {
        gemm((m, k, n), dst, accumulate, Operand::of(a), Operand::of(b), parallelism);
    }
}

/// A matrix in memory: its first element and its row and column strides, in elements (negative for
/// a reversed axis).
#[derive(Clone, Copy)]
struct Operand<P> {
    ptr: P,
    rs: isize,
    cs: isize,
}

impl<F> Operand<*const F> {
    fn of(x: &ArrayView2<F>) -> Self {
        Operand { ptr: x.as_ptr(), rs: x.strides()[0], cs: x.strides()[1] }
    }
}

/// `C ← A B` (`read_dst` false) or `C ← C + A B` for `A: (m, k)`, `B: (k, n)`, `C: (m, n)`, with the
/// kernel of [`Float::gemm_kernel`].
///
/// The kernels run fastest on a column-major `C` and take strides of one sign only; so, as the `gemm`
/// crate's own entry point does, a row-major product is computed as its transpose (`Cᵀ = Bᵀ Aᵀ`: swap
/// the operands and each matrix's two strides), and a reversed axis is walked from its other end (the
/// pointer moved to the last element, the stride negated, on every matrix that shares the axis).
///
/// # Safety
/// The operands must describe valid matrices of those shapes; `C` must not overlap `A` or `B`, and must
/// be initialised when `read_dst` is set.
#[allow(unsafe_code)]
unsafe fn gemm<F: Float>(
    (m, k, n): (usize, usize, usize),
    dst: Operand<*mut F>,
    read_dst: bool,
    lhs: Operand<*const F>,
    rhs: Operand<*const F>,
    parallelism: Parallelism,
) {
    let (m, n, mut dst, mut lhs, mut rhs) = if dst.cs.abs() < dst.rs.abs() {
        let t = |o: Operand<*const F>| Operand { ptr: o.ptr, rs: o.cs, cs: o.rs };
        (n, m, Operand { ptr: dst.ptr, rs: dst.cs, cs: dst.rs }, t(rhs), t(lhs))
    } else {
        (m, n, dst, lhs, rhs)
    };
    // Offsets to the last element of an axis of `len` elements, with wrapping arithmetic as the
    // pointers only move within their allocations.
    let last = |len: usize, stride: isize| (len as isize - 1).wrapping_mul(stride);
    if dst.rs < 0 && m > 0 {
        dst.ptr = dst.ptr.wrapping_offset(last(m, dst.rs));
        lhs.ptr = lhs.ptr.wrapping_offset(last(m, lhs.rs));
        (dst.rs, lhs.rs) = (-dst.rs, -lhs.rs);
    }
    if dst.cs < 0 && n > 0 {
        dst.ptr = dst.ptr.wrapping_offset(last(n, dst.cs));
        rhs.ptr = rhs.ptr.wrapping_offset(last(n, rhs.cs));
        (dst.cs, rhs.cs) = (-dst.cs, -rhs.cs);
    }
    if lhs.cs < 0 && k > 0 {
        lhs.ptr = lhs.ptr.wrapping_offset(last(k, lhs.cs));
        rhs.ptr = rhs.ptr.wrapping_offset(last(k, rhs.rs));
        (lhs.cs, rhs.rs) = (-lhs.cs, -rhs.rs);
    }
    // SAFETY: the caller's contract, and the operands still describe the same matrices (or their
    // transposes, consistently), now with the strides the kernel takes.
    unsafe {
        F::gemm_kernel()(
            m,
            n,
            k,
            dst.ptr,
            dst.cs,
            dst.rs,
            read_dst,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            F::one(),
            F::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{s, Array2};

    use super::*;
    use crate::rng::RandomState;

    fn naive(a: &ArrayView2<f64>, b: &ArrayView2<f64>) -> Array2<f64> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| (0..a.ncols()).map(|l| a[[i, l]] * b[[l, j]]).sum())
    }

    #[test]
    fn matches_the_definition_for_every_layout_and_size() {
        let mut rng = RandomState::new(1);
        for (m, k, n) in [(1, 1, 1), (3, 5, 2), (60, 784, 89), (7, 1, 9), (130, 67, 70), (0, 3, 2)] {
            let a: Array2<f64> = rng.randn((m, k));
            let b: Array2<f64> = rng.randn((k, n));
            let at: Array2<f64> = a.t().as_standard_layout().into_owned();
            let bt: Array2<f64> = b.t().as_standard_layout().into_owned();
            let expected = naive(&a.view(), &b.view());
            for (x, y) in [(a.view(), b.view()), (at.t(), b.view()), (a.view(), bt.t()), (at.t(), bt.t())] {
                let mut into = Array2::zeros((m, n));
                matmul_into_half(&mut into.view_mut(), &x, &y, false);
                for got in [matmul(&x, &y), matmul_half(&x, &y), into] {
                    assert_eq!(got.dim(), (m, n));
                    assert!(got.iter().zip(&expected).all(|(g, e)| (g - e).abs() < 1e-12 * (1.0 + e.abs())));
                }
            }
        }
        let (a, b): (Array2<f64>, Array2<f64>) = (rng.randn((30, 20)), rng.randn((20, 10)));
        let mut c: Array2<f64> = rng.randn((30, 10));
        let expected = &c + &naive(&a.view(), &b.view());
        matmul_into(&mut c.view_mut(), &a.view(), &b.view(), true);
        assert!(c.iter().zip(&expected).all(|(g, e)| (g - e).abs() < 1e-12 * (1.0 + e.abs())));
        matmul_into(&mut c.view_mut(), &a.view(), &b.view(), false);
        assert!(c.iter().zip(&naive(&a.view(), &b.view())).all(|(g, e)| (g - e).abs() < 1e-12 * (1.0 + e.abs())));

        // Reversed axes (negative strides), in each operand and in the output, both layouts of it.
        let (a, b): (Array2<f64>, Array2<f64>) = (rng.randn((9, 7)), rng.randn((7, 11)));
        let expected = naive(&a.view(), &b.view());
        for (ra, rb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a_rev = if ra { a.slice(s![..;-1, ..;-1]) } else { a.view() };
            let b_rev = if rb { b.slice(s![..;-1, ..;-1]) } else { b.view() };
            // Reversing the inner axis of both leaves the product unchanged; reversing the rows of A
            // or the columns of B reverses those of the product.
            let (a_rev, b_rev) = match (ra, rb) {
                (true, false) => (a_rev, b.slice(s![..;-1, ..])),
                (false, true) => (a.slice(s![.., ..;-1]), b_rev),
                _ => (a_rev, b_rev),
            };
            let want = |i: usize, j: usize| expected[[if ra { 8 - i } else { i }, if rb { 10 - j } else { j }]];
            for transposed_output in [false, true] {
                let mut out =
                    if transposed_output { Array2::zeros((11, 9)).reversed_axes() } else { Array2::zeros((9, 11)) };
                matmul_into(&mut out.slice_mut(s![..;-1, ..;-1]), &a_rev, &b_rev, false);
                let got = matmul(&a_rev, &b_rev);
                for ((i, j), e) in got.indexed_iter() {
                    assert!((e - want(i, j)).abs() < 1e-12, "reversed ({ra}, {rb}) at ({i}, {j})");
                    assert!((out[[8 - i, 10 - j]] - want(i, j)).abs() < 1e-12, "into a reversed output");
                }
            }
        }

        let a: Array2<f32> = rng.randn((40, 50));
        let b: Array2<f32> = rng.randn((50, 60));
        let expected = a.dot(&b);
        assert!(matmul(&a.view(), &b.view()).iter().zip(&expected).all(|(g, e)| (g - e).abs() < 1e-4));
    }
}
