//! What dropout is, as a layer of its own (`nn.Dropout`) or folded into a dense or convolutional
//! layer.

use crate::ops::DropoutStyle;
use crate::rng::RandomState;
use crate::{Error, Result};

/// Dropout keeping each element with probability `keep` (the book's convention; PyTorch's `p` is
/// `1 − keep`), in the given style.
///
/// ```
/// use scratch::spec::DropoutSpec;
///
/// assert_eq!(DropoutSpec::drop(0.25), DropoutSpec::keep(0.75));
/// assert_eq!(DropoutSpec::drop(0.25).describe(), "Dropout(keep 0.75)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutSpec {
    /// The probability that an element is kept.
    pub keep: f64,
    /// Inverted (PyTorch's) or the book's.
    pub style: DropoutStyle,
}

impl DropoutSpec {
    /// Inverted dropout keeping each element with probability `keep`.
    pub fn keep(keep: f64) -> Self {
        DropoutSpec { keep, style: DropoutStyle::Inverted }
    }

    /// Inverted dropout zeroing each element with probability `p`: PyTorch's `nn.Dropout(p)`.
    pub fn drop(p: f64) -> Self {
        Self::keep(1.0 - p)
    }

    /// With the given style.
    #[must_use]
    pub fn style(mut self, style: DropoutStyle) -> Self {
        self.style = style;
        self
    }

    /// Checks that the keep probability is in `(0, 1]`.
    ///
    /// # Errors
    /// A keep probability outside `(0, 1]` (or NaN).
    pub fn validate(&self) -> Result<()> {
        validate_keep(self.keep)
    }

    /// The seed of the mask generator: one draw from `rng`, after the layer's weights.
    pub fn draw(&self, rng: &mut RandomState) -> u32 {
        rng.next_u32()
    }

    /// `Dropout(keep 0.75)`.
    pub fn describe(&self) -> String {
        format!("Dropout(keep {})", self.keep)
    }
}

/// Checks a keep probability: it must be in `(0, 1]`.
///
/// # Errors
/// One outside, or NaN.
pub(crate) fn validate_keep(keep: f64) -> Result<()> {
    if keep > 0.0 && keep <= 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("dropout keep probability must be in (0, 1], got {keep}")))
    }
}

/// Checks a layer's optional dropout.
pub(crate) fn validate_dropout(dropout: Option<(f64, DropoutStyle)>) -> Result<()> {
    dropout.map_or(Ok(()), |(keep, _)| validate_keep(keep))
}
