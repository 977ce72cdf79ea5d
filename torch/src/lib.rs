//! *Deep Learning from Scratch* on libtorch, through [`tch`].

/// The libtorch version this crate is built against.
pub fn libtorch_version() -> String {
    tch::utils::version_cudnn().map(|_| String::new()).unwrap_or_default();
    "2.11.0".into()
}
