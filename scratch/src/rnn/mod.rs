//! Recurrent networks (chapter 6): RNN, LSTM and GRU layers with back-propagation through time, and
//! the character-level language model they are trained as.
//!
//! One [`Recurrent`] layer covers the book's `RNNLayer`, `LSTMLayer` and `GRULayer`; its
//! [`CellKind`](crate::spec::CellKind) picks the cell. Parameters are named and laid out as PyTorch's
//! `nn.RNN`, `nn.LSTM` and `nn.GRU` name and lay them out (see
//! [`RecurrentSpec`](crate::spec::RecurrentSpec)), so that a checkpoint moves between either engine
//! and PyTorch. A `Recurrent` layer, a dense projection over the last axis and a softmax
//! cross-entropy are the book's `RNNModel` ([`crate::spec::book::language_model`]).

mod bptt;
mod buffers;
mod cell;
mod kernels;
mod language_model;
mod layer;
pub mod loops;
mod product;
mod threads;

pub use language_model::{one_hot, sample_index, CharWindows, Sampling};
pub use layer::{Recurrent, State};
