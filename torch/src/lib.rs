//! *Deep Learning from Scratch* on libtorch, through [`tch`], in the style of the book's chapter 7.
//!
//! The models here are the same as in the `scratch` crate, with the same parameter names
//! (`layers.0.weight`, ...) in PyTorch's layout, so that a model moves between the engines through a
//! checkpoint and the `parity-tests` crate can prove both compute the same thing.

pub mod convert;
pub mod device;

pub use device::Device;
