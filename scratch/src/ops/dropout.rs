//! Dropout: randomly zero activations during training.

use ndarray::ArrayD;

use super::{no_forward, Mode, Operation};
use crate::rng::RandomState;
use crate::{Error, Float, Result};

/// How dropout scales activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropoutStyle {
    /// PyTorch's inverted dropout: training computes `x ⊙ m / keep`, evaluation is the identity.
    Inverted,
    /// The book's (2019 lincoln) form: training computes `x ⊙ m`, evaluation `x · keep`.
    Book,
}

/// Dropout with keep probability `keep`: each element survives with probability `keep` (the book's
/// convention; PyTorch's `p` is `1 − keep`).
///
/// ```text
/// train (inverted):  y = x ⊙ m / keep,   ∂L/∂x = ∂L/∂y ⊙ m / keep,   m ~ Bernoulli(keep)
/// eval  (inverted):  y = x
/// ```
///
/// The mask comes from the operation's own generator, or from [`Dropout::inject_mask`] so that two
/// engines can be compared with the same mask.
pub struct Dropout<F> {
    keep: f64,
    style: DropoutStyle,
    rng: RandomState,
    injected: Option<ArrayD<F>>,
    /// The factor applied in the last forward pass: the scaled mask in training, a constant in evaluation.
    factor: Option<Factor<F>>,
}

enum Factor<F> {
    Mask(ArrayD<F>),
    Scalar(F),
}

impl<F: Float> Dropout<F> {
    /// Dropout keeping each element with probability `keep`, drawing masks from `rng`.
    ///
    /// # Errors
    /// If `keep` is not in `(0, 1]`.
    pub fn new(keep: f64, style: DropoutStyle, rng: RandomState) -> Result<Self> {
        if !(keep > 0.0 && keep <= 1.0) {
            return Err(Error::InvalidArgument(format!("dropout keep probability must be in (0, 1], got {keep}")));
        }
        Ok(Dropout { keep, style, rng, injected: None, factor: None })
    }

    /// Uses `mask` (of 0s and 1s, shaped like the next input) instead of a random one in the next training
    /// forward pass.
    pub fn inject_mask(&mut self, mask: ArrayD<F>) {
        self.injected = Some(mask);
    }

    /// The keep probability.
    pub fn keep(&self) -> f64 {
        self.keep
    }
}

impl<F: Float> Operation<F> for Dropout<F> {
    fn name(&self) -> &'static str {
        "Dropout"
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let keep = F::cast(self.keep);
        let factor = match (mode, self.style) {
            (Mode::Eval, DropoutStyle::Inverted) => Factor::Scalar(F::one()),
            (Mode::Eval, DropoutStyle::Book) => Factor::Scalar(keep),
            (Mode::Train, style) => {
                let mask = match self.injected.take() {
                    Some(m) if m.shape() == input.shape() => m,
                    Some(m) => return Err(Error::shape("injected mask", format!("{:?}", input.shape()), m.shape())),
                    None => self.rng.bernoulli_mask(self.keep, input.raw_dim()),
                };
                match style {
                    DropoutStyle::Inverted => Factor::Mask(mask / keep),
                    DropoutStyle::Book => Factor::Mask(mask),
                }
            }
        };
        let y = match &factor {
            Factor::Mask(m) => input * m,
            Factor::Scalar(s) => input * *s,
        };
        self.factor = Some(factor);
        Ok(y)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        match self.factor.as_ref().ok_or_else(|| no_forward("Dropout"))? {
            Factor::Mask(m) => Ok(output_grad * m),
            Factor::Scalar(s) => Ok(output_grad * *s),
        }
    }
}
