//! Reads from the device to the host. On a GPU each one waits until the device has finished the work
//! queued before it (a synchronisation), so the training step keeps them to one: it gathers everything
//! it must check into one tensor and reads that. Every such read of the crate goes through [`read`],
//! which counts them, so that tests can hold the training step to its budget (the same code runs on the
//! CPU).

use std::sync::atomic::{AtomicUsize, Ordering};

use tch::{Kind, Tensor};

use crate::Result;

static READS: AtomicUsize = AtomicUsize::new(0);

/// How many device-to-host reads the crate has made so far in this process.
pub fn host_reads() -> usize {
    READS.load(Ordering::Relaxed)
}

/// The values of `t` (any shape, device and kind) as `f64`, in row-major order: one read.
///
/// # Errors
/// If libtorch cannot copy the tensor.
pub fn read(t: &Tensor) -> Result<Vec<f64>> {
    READS.fetch_add(1, Ordering::Relaxed);
    let host = t.f_detach()?.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?.f_flatten(0, -1)?;
    Ok(Vec::<f64>::try_from(&host)?)
}
