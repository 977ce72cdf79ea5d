//! Wider vectors for the element-wise cell kernels where the processor has them.
//!
//! The crate is compiled for the baseline x86-64 instruction set, so a loop of `exp` and `tanh`
//! vectorises four `f32` wide. The layer compiles its per-step loops a second time for AVX2 and FMA
//! (eight wide, fused multiply-adds) and runs that version on processors that have both; the kernels
//! are `#[inline(always)]` so that they are compiled into it.

/// Whether the processor has AVX2 and FMA (detected at run time, cached by the standard library).
#[cfg(target_arch = "x86_64")]
pub(super) fn wide() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}
