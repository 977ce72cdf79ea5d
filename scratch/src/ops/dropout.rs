//! Dropout: randomly zero activations during training.

use ndarray::ArrayD;
use rayon::prelude::*;

use super::{no_forward, Mode, Operation};
use crate::rng::{BernoulliMask, RandomState};
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
/// The mask comes from the operation's own generator, one draw per training pass seeding a
/// [`BernoulliMask`] (computed again in the backward pass rather than stored), or from
/// [`Dropout::inject_mask`] so that two engines can be compared with the same mask.
///
/// Layers apply it to their output in place, piece by piece ([`Dropout::start`] then
/// [`Dropout::apply`] on each piece), in the same pass as their activation.
pub struct Dropout<F> {
    keep: f64,
    style: DropoutStyle,
    rng: RandomState,
    injected: Option<ArrayD<F>>,
    /// The factor of the last forward pass.
    factor: Option<Factor<F>>,
}

/// What dropout multiplies its input by in one pass.
enum Factor<F> {
    /// The same number for every element (evaluation).
    Scalar(F),
    /// `scale` where the mask is 1, 0 where it is 0.
    Drawn { mask: BernoulliMask, scale: F, len: usize },
    /// An injected mask, already scaled.
    Injected(ArrayD<F>),
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

    /// Draws masks from a generator seeded with `seed` from now on.
    pub fn reseed(&mut self, seed: u32) {
        self.rng = RandomState::new(seed);
    }

    /// Starts a forward pass on an input of `shape`: draws the mask (one draw of the generator) or
    /// takes the injected one, for [`Dropout::apply`].
    ///
    /// # Errors
    /// If an injected mask does not have the input's shape.
    pub fn start(&mut self, shape: &[usize], mode: Mode) -> Result<()> {
        let (keep, style) = (F::cast(self.keep), self.style);
        // What a mask value m becomes: m / keep (inverted) or m itself (book).
        let scaled = move |m: F| match style {
            DropoutStyle::Inverted => m / keep,
            DropoutStyle::Book => m,
        };
        let scale = scaled(F::one());
        self.factor = Some(match (mode, self.style) {
            (Mode::Eval, DropoutStyle::Inverted) => Factor::Scalar(F::one()),
            (Mode::Eval, DropoutStyle::Book) => Factor::Scalar(keep),
            (Mode::Train, _) => match self.injected.take() {
                Some(m) if m.shape() == shape => Factor::Injected(standard(m).mapv_into(scaled)),
                Some(m) => return Err(Error::shape("injected mask", format!("{shape:?}"), m.shape())),
                None => Factor::Drawn { mask: self.rng.bernoulli(self.keep), scale, len: shape.iter().product() },
            },
        });
        Ok(())
    }

    /// Multiplies `values`, the elements `offset..offset + values.len()` (row-major) of the array of the
    /// last [`Dropout::start`], by the factor in place: the forward pass on the input and the backward
    /// pass on its gradient alike.
    ///
    /// # Errors
    /// Before any forward pass.
    ///
    /// # Panics
    /// If the range is outside the array.
    pub fn apply(&self, offset: usize, values: &mut [F]) -> Result<()> {
        match self.factor.as_ref().ok_or_else(|| no_forward("Dropout"))? {
            Factor::Scalar(s) => values.iter_mut().for_each(|v| *v *= *s),
            Factor::Drawn { mask, scale, len } => {
                assert!(offset + values.len() <= *len, "dropout: elements past the input");
                mask.scale(offset, values, *scale);
            }
            Factor::Injected(m) => {
                let m = &m.as_slice().expect("standard layout")[offset..offset + values.len()];
                values.iter_mut().zip(m).for_each(|(v, &m)| *v *= m);
            }
        }
        Ok(())
    }

    /// [`Dropout::apply`] on a whole array, spread over the cores.
    fn apply_all(&self, a: ArrayD<F>) -> Result<ArrayD<F>> {
        let mut a = standard(a);
        let values = a.as_slice_mut().expect("standard layout");
        values
            .par_chunks_mut(BernoulliMask::CHUNK)
            .enumerate()
            .try_for_each(|(i, chunk)| self.apply(i * BernoulliMask::CHUNK, chunk))?;
        Ok(a)
    }
}

/// `a` in standard (row-major) layout, copied only if it is not already.
fn standard<F: Float>(a: ArrayD<F>) -> ArrayD<F> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

impl<F: Float> Operation<F> for Dropout<F> {
    fn name(&self) -> &'static str {
        "Dropout"
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        self.start(input.shape(), mode)?;
        self.apply_all(input)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        Ok(match self.style {
            DropoutStyle::Inverted => input,
            DropoutStyle::Book => input * F::cast(self.keep),
        })
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        if let Some(Factor::Drawn { len, .. }) = &self.factor {
            if output_grad.len() != *len {
                return Err(Error::shape("output gradient", format!("{len} elements"), output_grad.shape()));
            }
        }
        self.apply_all(output_grad)
    }
}
