//! Where the torch engine computes: the CPU by default, a CUDA GPU when asked for and present.

use std::fmt;
use std::str::FromStr;

/// A device the user can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU (the default).
    #[default]
    Cpu,
    /// The first CUDA GPU.
    Cuda,
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
    #[error("unknown device {0:?}: expected `cpu` or `cuda`")]
    Unknown(String),
}

impl Device {
    /// The `tch` device, checking that CUDA is usable when asked for.
    ///
    /// # Errors
    /// [`DeviceError::CudaUnavailable`] if CUDA is asked for and libtorch reports no GPU.
    pub fn resolve(self) -> Result<tch::Device, DeviceError> {
        match self {
            Device::Cpu => Ok(tch::Device::Cpu),
            Device::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            Device::Cuda => Err(DeviceError::CudaUnavailable { reason: "libtorch reports no CUDA device".into() }),
        }
    }
}

impl FromStr for Device {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            _ => Err(DeviceError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        })
    }
}
