//! Chapter 5, convolutions: the chapter's loops ([`loops`]), the fast batch convolution used for training
//! ([`Conv2DOp`]), a per-channel bias, and pooling.

mod conv2d;
pub mod loops;
mod pool;

pub use conv2d::{ChannelBiasAdd, Conv2DOp, Geometry};
pub use pool::{Pool2D, PoolKind};
