//! Where the torch engine computes: the CPU by default, a CUDA GPU when asked for and present.

use std::ffi::{CStr, CString};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// A device the user can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU (the default).
    #[default]
    Cpu,
    /// The first CUDA GPU.
    Cuda,
    /// The first CUDA GPU if libtorch can use one, the CPU otherwise ([`cuda_if_available`]).
    Auto,
}

/// The first CUDA GPU if libtorch can use one, the CPU otherwise: what `tch::Device::cuda_if_available()`
/// means to do, with libtorch's CUDA backend loaded first ([`load_cuda_backend`]), without which tch
/// sees no GPU even on a machine that has one. Use it wherever a tch program would call
/// `tch::Device::cuda_if_available()`.
///
/// ```
/// let device = torch::device::cuda_if_available();
/// assert!(device == tch::Device::Cpu || device.is_cuda());
/// ```
pub fn cuda_if_available() -> tch::Device {
    Device::Cuda.resolve().unwrap_or(tch::Device::Cpu)
}

/// Asking for a device this machine cannot provide.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// CUDA was asked for but is not usable.
    #[error(
        "CUDA was requested but is not available: {reason}. Use the CPU, or on a machine with an NVIDIA GPU \
         install the CUDA libtorch with `python3 scripts/setup.py --cuda`"
    )]
    CudaUnavailable {
        /// Why not.
        reason: String,
    },
    /// An unknown device name.
    #[error("unknown device \"{}\": expected `cpu`, `cuda` or `auto`", .0.escape_default())]
    Unknown(String),
}

/// Loads libtorch's CUDA library, once, so that libtorch registers its CUDA backend.
///
/// Rust links with `--as-needed`, and no symbol of `libtorch_cuda.so` is used directly, so the linker
/// drops it and `tch::Cuda::is_available()` stays false even on a GPU machine. Loading it at run time
/// (found through the executable's run path, which `torch/build.rs` sets) brings the backend in. On the
/// minimal CPU install the library is there but its CUDA dependencies are not, and loading fails with the
/// name of the missing library.
pub fn load_cuda_backend() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let name = CString::new("libtorch_cuda.so").expect("no interior NUL");
            // SAFETY: `name` is a valid C string; dlopen and dlerror have no other preconditions, and
            // the returned handle is kept open for the life of the process (never passed to dlclose).
            #[allow(unsafe_code)]
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns null or a valid C string describing the last dlopen failure.
                #[allow(unsafe_code)]
                let message = unsafe {
                    let e = libc::dlerror();
                    if e.is_null() {
                        "unknown dlopen error".to_string()
                    } else {
                        CStr::from_ptr(e).to_string_lossy().into_owned()
                    }
                };
                Err(message)
            } else {
                Ok(())
            }
        })
        .clone()
}

impl Device {
    /// The `tch` device, checking that CUDA is usable when asked for.
    ///
    /// # Errors
    /// [`DeviceError::CudaUnavailable`] if CUDA is asked for and cannot be used: libtorch's CUDA library
    /// does not load (the minimal CPU install), or libtorch sees no GPU.
    pub fn resolve(self) -> Result<tch::Device, DeviceError> {
        match self {
            Device::Cpu => Ok(tch::Device::Cpu),
            Device::Auto => Ok(cuda_if_available()),
            Device::Cuda => {
                load_cuda_backend().map_err(|e| DeviceError::CudaUnavailable {
                    reason: format!("libtorch's CUDA library does not load ({e})"),
                })?;
                if tch::Cuda::is_available() {
                    Ok(tch::Device::Cuda(0))
                } else {
                    Err(DeviceError::CudaUnavailable { reason: "libtorch finds no CUDA device".into() })
                }
            }
        }
    }
}

impl FromStr for Device {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            _ => Err(DeviceError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without a usable GPU (the CPU install of libtorch, or no device), `auto` and
    /// [`cuda_if_available`] give the CPU and `cuda` an error saying what to do; with one, all three
    /// give it.
    #[test]
    fn auto_falls_back_to_the_cpu_without_a_usable_gpu() {
        let auto = Device::Auto.resolve().expect("auto always resolves");
        match Device::Cuda.resolve() {
            Ok(gpu) => assert_eq!(auto, gpu),
            Err(e) => {
                assert_eq!(auto, tch::Device::Cpu);
                assert!(e.to_string().contains("CUDA was requested but is not available"), "{e}");
            }
        }
        assert_eq!(cuda_if_available(), auto);
        assert_eq!("AUTO".parse::<Device>().expect("a device"), Device::Auto);
    }
}
