//! Vector instructions for the hot loops, through the [`pulp`] crate (the SIMD layer of the `gemm`
//! crate the matrix products use).
//!
//! The crate is compiled for the baseline x86-64 instruction set (SSE2: four `f32` per register, no
//! fused multiply-add). A kernel written as a [`WithSimd`] operation is compiled for every level
//! `pulp` knows (AVX-512, AVX2 with FMA, and plain scalar code) and [`dispatch`] runs the widest one
//! the processor has, all in safe code:
//!
//! * element-wise loops (dropout masks, activations) are plain Rust that the compiler vectorises for
//!   the level it compiles them at;
//! * the register blocks of the products and the direct convolution are written with explicit
//!   vectors ([`SimdFloat`]), where the compiler's own choice of which loop to vectorise is not
//!   reliable;
//! * so are the recurrent cells' element-wise steps ([`zip_map`] with the functions of [`math`]):
//!   the compiler does not fuse a multiply and an add that the source writes apart, so the
//!   polynomials of `exp` and `tanh` only get fused multiply-adds when written as such.

pub(crate) mod math;

use pulp::bytemuck::{self, Pod};
pub(crate) use pulp::{Arch, Simd, WithSimd};

/// Runs `op` compiled for the widest instruction-set level this processor has.
#[inline]
pub(crate) fn dispatch<Op: WithSimd>(op: Op) -> Op::Output {
    Arch::new().dispatch(op)
}

/// `op` on every element of `values`, compiled for the widest instruction-set level this processor
/// has (the compiler vectorises the loop for it where it can).
#[inline]
pub(crate) fn for_each<T, Op: Fn(&mut T)>(values: &mut [T], op: Op) {
    struct ForEach<'a, T, Op> {
        values: &'a mut [T],
        op: Op,
    }

    impl<T, Op: Fn(&mut T)> WithSimd for ForEach<'_, T, Op> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) {
            self.values.iter_mut().for_each(self.op);
        }
    }

    dispatch(ForEach { values, op });
}

/// The levels this processor runs, widest first: what a test of a kernel should cover.
#[cfg(test)]
pub(crate) fn levels() -> Vec<Arch> {
    let mut levels = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        levels.extend(pulp::x86::V4::try_new().map(Arch::V4));
        levels.extend(pulp::x86::V3::try_new().map(Arch::V3));
    }
    levels.push(Arch::Scalar);
    levels
}

/// Vector registers at level `arch`, as `pulp` counts them.
pub(crate) fn registers(arch: Arch) -> usize {
    struct Count;
    impl WithSimd for Count {
        type Output = usize;

        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> usize {
            S::REGISTER_COUNT
        }
    }
    arch.dispatch(Count)
}

/// A float type's vector register at level `S`, and the operations the kernels use. Public only
/// because [`crate::Float`] requires it (through [`math::VectorMath`]); this module is private, so no
/// other crate can name it, and `f32` and `f64` stay the only floats.
pub trait SimdFloat: Pod + Default + PartialEq + std::fmt::Debug + Send + Sync {
    /// One register of this type.
    type V<S: Simd>: Copy + Pod;

    /// Values in one register.
    fn lanes<S: Simd>() -> usize;

    /// Every lane `x`.
    fn splat<S: Simd>(simd: S, x: Self) -> Self::V<S>;

    /// `a · b + c`, fused where the level has FMA.
    fn mul_add<S: Simd>(simd: S, a: Self::V<S>, b: Self::V<S>, c: Self::V<S>) -> Self::V<S>;

    /// `a + b`.
    fn add<S: Simd>(simd: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;

    /// `a − b`.
    fn sub<S: Simd>(simd: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;

    /// `a · b`.
    fn mul<S: Simd>(simd: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;

    /// `a / b`.
    fn div<S: Simd>(simd: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;

    /// The first `values.len()` lanes from `values` (fewer than [`SimdFloat::lanes`]), the others 0.
    fn partial_load<S: Simd>(simd: S, values: &[Self]) -> Self::V<S>;

    /// Writes the first `values.len()` lanes of `v` to `values` (fewer than [`SimdFloat::lanes`]).
    fn partial_store<S: Simd>(simd: S, values: &mut [Self], v: Self::V<S>);
}

/// [`SimdFloat`] for one float type: its register type, lane count and `pulp`'s operations on it.
macro_rules! simd_float {
    ($t:ty, $v:ident, $lanes:ident, $splat:ident, $mul_add:ident, $add:ident, $sub:ident, $mul:ident, $div:ident, $load:ident, $store:ident) => {
        impl SimdFloat for $t {
            type V<S: Simd> = S::$v;

            #[inline(always)]
            fn lanes<S: Simd>() -> usize {
                S::$lanes
            }

            #[inline(always)]
            fn splat<S: Simd>(simd: S, x: $t) -> S::$v {
                simd.$splat(x)
            }

            #[inline(always)]
            fn mul_add<S: Simd>(simd: S, a: S::$v, b: S::$v, c: S::$v) -> S::$v {
                simd.$mul_add(a, b, c)
            }

            #[inline(always)]
            fn add<S: Simd>(simd: S, a: S::$v, b: S::$v) -> S::$v {
                simd.$add(a, b)
            }

            #[inline(always)]
            fn sub<S: Simd>(simd: S, a: S::$v, b: S::$v) -> S::$v {
                simd.$sub(a, b)
            }

            #[inline(always)]
            fn mul<S: Simd>(simd: S, a: S::$v, b: S::$v) -> S::$v {
                simd.$mul(a, b)
            }

            #[inline(always)]
            fn div<S: Simd>(simd: S, a: S::$v, b: S::$v) -> S::$v {
                simd.$div(a, b)
            }

            #[inline(always)]
            fn partial_load<S: Simd>(simd: S, values: &[$t]) -> S::$v {
                simd.$load(values)
            }

            #[inline(always)]
            fn partial_store<S: Simd>(simd: S, values: &mut [$t], v: S::$v) {
                simd.$store(values, v)
            }
        }
    };
}

#[rustfmt::skip]
simd_float!(f32, f32s, F32_LANES, splat_f32s, mul_add_e_f32s, add_f32s, sub_f32s, mul_f32s, div_f32s, partial_load_f32s, partial_store_f32s);
#[rustfmt::skip]
simd_float!(f64, f64s, F64_LANES, splat_f64s, mul_add_e_f64s, add_f64s, sub_f64s, mul_f64s, div_f64s, partial_load_f64s, partial_store_f64s);

/// The register holding `values`, exactly [`SimdFloat::lanes`] of them (an unaligned load).
///
/// # Panics
/// If `values` has another length.
#[inline(always)]
pub(crate) fn load<T: SimdFloat, S: Simd>(values: &[T]) -> T::V<S> {
    bytemuck::pod_read_unaligned(bytemuck::cast_slice(values))
}

/// Writes `v` to `values`, exactly [`SimdFloat::lanes`] of them.
///
/// # Panics
/// If `values` has another length.
#[inline(always)]
pub(crate) fn store<T: SimdFloat, S: Simd>(values: &mut [T], v: T::V<S>) {
    bytemuck::cast_slice_mut::<T, u8>(values).copy_from_slice(bytemuck::bytes_of(&v));
}

/// `T`'s lanes per register at level `S`, the type taken from `values`.
#[inline(always)]
pub(crate) fn lanes_of<T: SimdFloat, S: Simd>(_: S, _values: &[T]) -> usize {
    T::lanes::<S>()
}

/// `zip_map!(simd, [inputs], [outputs], |[x, ...], [y, ...]| body)`: runs `body` over slices of equal
/// length one vector register at a time, `x, ...` the registers of the inputs and `y, ...` the current
/// registers of the outputs; `body` gives the outputs' new registers, as an array. The length is the
/// first output's; a last part shorter than a register is loaded padded with zeros and stored
/// partially. Panics if an input is shorter.
///
/// A macro rather than a function taking a closure: a closure is compiled without the instruction
/// set of the level its caller was dispatched to, so every vector operation inside it would become
/// a call.
macro_rules! zip_map {
    ($simd:expr, [$($input:expr),+ $(,)?], [$($output:expr),+ $(,)?], |$x:pat_param, $y:pat_param| $body:expr) => {{
        let simd = $simd;
        let outputs = [$($output),+];
        let n = outputs[0].len();
        // Every slice cut to the same length, so that no access in the loop needs a bounds check.
        let mut outputs = outputs.map(|output| &mut output[..n]);
        let inputs = [$(&$input[..n]),+];
        let lanes = $crate::simd::lanes_of(simd, &outputs[0][..]);
        let mut j = 0;
        while j + lanes <= n {
            let mut xs = [$crate::simd::load(&inputs[0][j..j + lanes]); { [$(stringify!($input)),+].len() }];
            for (x, input) in xs.iter_mut().zip(&inputs) {
                *x = $crate::simd::load(&input[j..j + lanes]);
            }
            let mut ys = [xs[0]; { [$(stringify!($output)),+].len() }];
            for (y, output) in ys.iter_mut().zip(&outputs) {
                *y = $crate::simd::load(&output[j..j + lanes]);
            }
            let $x = xs;
            let $y = ys;
            for (output, v) in outputs.iter_mut().zip($body) {
                $crate::simd::store(&mut output[j..j + lanes], v);
            }
            j += lanes;
        }
        if j < n {
            let mut xs = [$crate::simd::SimdFloat::partial_load(simd, &inputs[0][j..]); { [$(stringify!($input)),+].len() }];
            for (x, input) in xs.iter_mut().zip(&inputs) {
                *x = $crate::simd::SimdFloat::partial_load(simd, &input[j..]);
            }
            let mut ys = [xs[0]; { [$(stringify!($output)),+].len() }];
            for (y, output) in ys.iter_mut().zip(&outputs) {
                *y = $crate::simd::SimdFloat::partial_load(simd, &output[j..]);
            }
            let $x = xs;
            let $y = ys;
            for (output, v) in outputs.iter_mut().zip($body) {
                $crate::simd::SimdFloat::partial_store(simd, &mut output[j..], v);
            }
        }
    }};
}
pub(crate) use zip_map;
