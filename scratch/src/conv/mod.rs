//! Chapter 5, convolutions: the chapter's loops ([`loops`]), the fast batch convolution used for training
//! ([`Conv2DOp`]), a per-channel bias, pooling, and chapter 7's transposed convolution
//! ([`ConvTranspose2DOp`]).

mod conv2d;
mod direct;
mod fused;
pub mod loops;
mod pool;
mod transpose;

pub use conv2d::{ChannelBiasAdd, Conv2DOp, Geometry};
pub(crate) use fused::FusedConv;
pub use pool::{Pool2D, PoolKind};
pub use transpose::ConvTranspose2DOp;
