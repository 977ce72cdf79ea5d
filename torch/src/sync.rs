//! Copies between the host and the device. On a GPU each read from the device waits until the device has
//! finished the work queued before it (a synchronisation), and so does a copy of ordinary (pageable)
//! host memory to the device: the CUDA runtime drains the stream before it stages the copy. The
//! training loop keeps both out of the step but for one read: the data sets are uploaded once per fit,
//! each epoch's batch order once per epoch, and a step gathers everything it must check (the loss, the
//! finiteness of every gradient, the validity of class-index targets) into one tensor and reads that.
//!
//! Every such read of the crate goes through [`read`], and every upload of host data on the training
//! path (data sets, batch orders, dropout masks drawn from the shared stream) through [`upload`]; both
//! count, so that tests hold the training step to its budget. The same code runs on the CPU, where the
//! copies cost nothing but are counted alike. (Not counted: [`Net::input`](crate::Net::input) on a
//! caller's tensor, and setting parameters from arrays.)

use std::cell::Cell;

use tch::{Kind, Tensor};

use crate::Result;

thread_local! {
    static READS: Cell<usize> = const { Cell::new(0) };
    static UPLOADS: Cell<usize> = const { Cell::new(0) };
}

/// How many device-to-host reads the crate has made so far on this thread (training runs on the
/// thread that calls it, so that concurrent runs, or tests, count apart).
pub fn host_reads() -> usize {
    READS.with(Cell::get)
}

/// How many uploads of host data to the device the crate has made so far on this thread (see the
/// [module documentation](self) for which are counted).
pub fn uploads() -> usize {
    UPLOADS.with(Cell::get)
}

/// The values of `t` (any shape, device and kind) as `f64`, in row-major order: one read.
///
/// # Errors
/// If libtorch cannot copy the tensor.
pub fn read(t: &Tensor) -> Result<Vec<f64>> {
    READS.with(|n| n.set(n.get() + 1));
    let host = t.f_detach()?.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?.f_flatten(0, -1)?;
    Ok(Vec::<f64>::try_from(&host)?)
}

/// `host` (a tensor made from host data) on `device`: one upload.
///
/// # Errors
/// If libtorch cannot copy the tensor (the device is out of memory).
pub fn upload(host: &Tensor, device: tch::Device) -> Result<Tensor> {
    UPLOADS.with(|n| n.set(n.get() + 1));
    Ok(host.f_to_device(device)?)
}
