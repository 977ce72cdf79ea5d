//! Recurrent networks (chapter 6): RNN, LSTM and GRU layers with back-propagation through time, and
//! the character-level language model they are trained as.
//!
//! One [`Recurrent`] layer covers the book's `RNNLayer`, `LSTMLayer` and `GRULayer`; its
//! [`CellKind`] picks the cell. Parameters are laid out as PyTorch's `nn.RNN`, `nn.LSTM` and
//! `nn.GRU` lay them out (see [`RecurrentSpec`]), so that a checkpoint of either engine loads into
//! the other. Layers stack as any other layers do: a network of `Recurrent` layers followed by a
//! softmax cross-entropy over the last axis is the book's `RNNModel`.

mod kernels;
mod language_model;
mod layer;
mod simd;
mod spec;

pub use language_model::{one_hot, sample_index, CharWindows};
pub use layer::{Recurrent, State};
pub use spec::{Biases, CellKind, GruForm, RecurrentInit, RecurrentSpec, StateMode};
