//! Dropout on libtorch, with the mask source as an explicit choice.

use std::cell::RefCell;

use scratch::ops::DropoutStyle;
use scratch::rng::RandomState;
use tch::Tensor;

use super::{module_by_checked_forward, Layer};
use crate::Result;

/// Where a [`Dropout`] draws its masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Masks {
    /// libtorch's own generator, on the device (`Tensor::dropout`): what a PyTorch user gets, and the
    /// fast choice on a GPU.
    #[default]
    Torch,
    /// The numpy-compatible generator, seeded from the layer's initial draw and drawn exactly as the
    /// from-scratch engine's `Dropout` draws (on the CPU, then copied to the device): both engines then
    /// drop the same units, and train identically. For parity checks and side-by-side comparisons (one
    /// upload per training forward pass: slow on a GPU).
    Shared,
}

/// Dropout keeping each element with probability `keep`: PyTorch's inverted dropout (training
/// computes `x ⊙ m / keep`, evaluation is the identity) or the book's form (`x ⊙ m`, then `x · keep`
/// in evaluation); see [`DropoutStyle`].
#[derive(Debug)]
pub struct Dropout {
    keep: f64,
    style: DropoutStyle,
    state: RefCell<MaskState>,
}

#[derive(Debug)]
struct MaskState {
    masks: Masks,
    /// The seed drawn at initialisation for the shared stream, and the stream.
    seed: u32,
    shared: RandomState,
    injected: Option<Tensor>,
}

impl Dropout {
    /// Dropout keeping each element with probability `keep` (checked by the layer's description),
    /// with `seed` (drawn at initialisation) for the shared mask stream; masks from libtorch's
    /// generator until [`Dropout::set_masks`] says otherwise.
    pub fn new(keep: f64, style: DropoutStyle, seed: u32) -> Self {
        let state = MaskState { masks: Masks::Torch, seed, shared: RandomState::new(seed), injected: None };
        Dropout { keep, style, state: RefCell::new(state) }
    }

    /// The keep probability.
    pub fn keep(&self) -> f64 {
        self.keep
    }

    /// Draws masks from `masks` from now on (the shared stream restarts from its seed).
    pub fn set_masks(&self, masks: Masks) {
        let mut state = self.state.borrow_mut();
        state.masks = masks;
        state.shared = RandomState::new(state.seed);
    }

    /// Restarts the shared stream from `seed` (a fresh initial draw).
    pub fn reseed(&self, seed: u32) {
        let mut state = self.state.borrow_mut();
        state.seed = seed;
        state.shared = RandomState::new(seed);
    }

    /// Whether a pass in training (`train`) or evaluation needs this dropout applied to explicit
    /// weights (the book's form, the shared stream's masks, or an injected mask), where a fused kernel
    /// with libtorch's own dropout would not do.
    pub fn needs_explicit(&self, train: bool) -> bool {
        let state = self.state.borrow();
        self.style == DropoutStyle::Book || (train && (state.masks == Masks::Shared || state.injected.is_some()))
    }

    /// Uses `mask` (0s and 1s shaped like the next input) in the next training forward pass instead of
    /// a drawn one.
    pub fn inject_mask(&self, mask: Tensor) {
        self.state.borrow_mut().injected = Some(mask);
    }

    /// Applies dropout, in training if `train`.
    ///
    /// # Errors
    /// An injected mask of another shape than `x`.
    pub fn apply(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            return Ok(match self.style {
                DropoutStyle::Inverted => x.shallow_clone(),
                DropoutStyle::Book => x * self.keep,
            });
        }
        let mut state = self.state.borrow_mut();
        let mask = match (state.injected.take(), state.masks, self.style) {
            (None, Masks::Torch, DropoutStyle::Inverted) => return Ok(x.dropout(1.0 - self.keep, true)),
            (None, Masks::Torch, DropoutStyle::Book) => x.ones_like().bernoulli_p(self.keep),
            (None, Masks::Shared, _) => {
                let shape: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
                let mask = state.shared.bernoulli_mask::<f64, _>(self.keep, ndarray::IxDyn(&shape));
                crate::sync::upload(&crate::convert::to_tensor(&mask), x.device())?
            }
            (Some(mask), _, _) if mask.size() == x.size() => mask,
            (Some(mask), _, _) => {
                return Err(
                    scratch::Error::shape("injected dropout mask", format!("{:?}", x.size()), mask.size()).into()
                )
            }
        };
        let mask = mask.to_device(x.device()).to_kind(x.kind());
        Ok(match self.style {
            // (mask / keep) first, as the from-scratch engine computes it, so that both round alike.
            DropoutStyle::Inverted => x * (mask / self.keep),
            DropoutStyle::Book => x * mask,
        })
    }
}

/// Dropout as a layer of its own (`nn.Dropout`): its shared mask stream is seeded by one draw when the
/// layer is (re)initialised, as the from-scratch layer's is.
impl Layer for Dropout {
    fn describe(&self) -> String {
        format!("Dropout(keep {})", self.keep)
    }

    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.apply(xs, train)
    }

    fn reinitialize(&self, rng: &mut RandomState) {
        self.reseed(rng.next_u32());
    }

    fn dropouts(&self) -> Vec<(String, &Dropout)> {
        vec![(String::new(), self)]
    }
}

module_by_checked_forward!(Dropout);
