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
//! * the direct convolution's register blocks are written with explicit vectors ([`SimdFloat`]),
//!   where the compiler's own choice of which loop to vectorise is not reliable.

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

/// A float type's vector register at level `S`, and the operations the kernels use.
pub(crate) trait SimdFloat: Pod + Default + PartialEq + std::fmt::Debug + Send + Sync {
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
}

impl SimdFloat for f32 {
    type V<S: Simd> = S::f32s;

    #[inline(always)]
    fn lanes<S: Simd>() -> usize {
        S::F32_LANES
    }

    #[inline(always)]
    fn splat<S: Simd>(simd: S, x: f32) -> S::f32s {
        simd.splat_f32s(x)
    }

    #[inline(always)]
    fn mul_add<S: Simd>(simd: S, a: S::f32s, b: S::f32s, c: S::f32s) -> S::f32s {
        simd.mul_add_e_f32s(a, b, c)
    }

    #[inline(always)]
    fn add<S: Simd>(simd: S, a: S::f32s, b: S::f32s) -> S::f32s {
        simd.add_f32s(a, b)
    }
}

impl SimdFloat for f64 {
    type V<S: Simd> = S::f64s;

    #[inline(always)]
    fn lanes<S: Simd>() -> usize {
        S::F64_LANES
    }

    #[inline(always)]
    fn splat<S: Simd>(simd: S, x: f64) -> S::f64s {
        simd.splat_f64s(x)
    }

    #[inline(always)]
    fn mul_add<S: Simd>(simd: S, a: S::f64s, b: S::f64s, c: S::f64s) -> S::f64s {
        simd.mul_add_e_f64s(a, b, c)
    }

    #[inline(always)]
    fn add<S: Simd>(simd: S, a: S::f64s, b: S::f64s) -> S::f64s {
        simd.add_f64s(a, b)
    }
}

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
