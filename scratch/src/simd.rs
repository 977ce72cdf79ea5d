//! Vector instructions for the hot loops, through the [`pulp`] crate (the SIMD layer of the `gemm`
//! crate the matrix products use).
//!
//! The crate is compiled for the baseline x86-64 instruction set (SSE2: four `f32` per register, no
//! fused multiply-add). A kernel written as a [`WithSimd`] operation is compiled for every level
//! `pulp` knows (AVX-512, AVX2 with FMA, and plain scalar code) and [`dispatch`] runs the widest one
//! the processor has, all in safe code:
//!
//! element-wise loops (dropout masks, activations) are plain Rust that the compiler vectorises for the
//! level it compiles them at.

pub(crate) use pulp::{Arch, Simd, WithSimd};

/// Runs `op` compiled for the widest instruction-set level this processor has.
#[inline]
pub(crate) fn dispatch<Op: WithSimd>(op: Op) -> Op::Output {
    Arch::new().dispatch(op)
}

