//! When training has diverged: the rule shared by [`fit_loop`](super::fit_loop) (so by both engines'
//! trainers) and by hand-written loops such as the character language models'.
//!
//! Training has diverged, and stops with [`Error::Diverged`] naming the epoch and batch, when
//!
//! 1. a batch loss is not finite (NaN or ±∞), or
//! 2. an evaluation loss is not finite, or
//! 3. an evaluation loss is more than [`GROWTH`] (1000) times the *reference*: the first evaluation
//!    with a positive loss.
//!
//! Rules 1 and 2 catch the arithmetic overflowing. Rule 3 catches a run that stays finite while it
//! blows up: at a learning rate of 10³⁰ a character model's weights jump to about 10³⁰ after one step,
//! the gates saturate, and every loss after that is a finite 10³¹ nats per character, which a loop
//! without rule 3 reports as a result. The bound is relative because losses have no common scale (a
//! mean squared error is in the targets' units squared); it is wide because it must never stop a run
//! that is only noisy or over-fitting: those move an evaluation loss by a factor of a few (an MNIST
//! classifier over-fitting from 0.07 to 0.2 nats), while a factor of 1000 over the first evaluation is a
//! model far worse than one that predicts a constant (for 10 classes, 1000 × 0.07 nats = 70 nats: the
//! right class given a probability of e⁻⁷⁰ on average). A loss that is bounded (the book's MSE on
//! sigmoid outputs is at most the number of outputs) never reaches the bound from an ordinary first
//! evaluation, and then only rules 1 and 2 apply. A first evaluation loss of exactly 0 (a perfect fit)
//! gives no scale, so the reference is the first *positive* evaluation loss.

use crate::{Error, Result};

/// How many times the reference an evaluation loss may grow before training counts as diverged.
pub const GROWTH: f64 = 1e3;

/// Applies the rule of the [module documentation](self) to the losses of one training run, in order.
///
/// ```
/// use scratch::train::Divergence;
///
/// let mut rule = Divergence::default();
/// rule.batch(2.3, 1, 1)?;
/// rule.evaluation(2.0, 1, 100)?; // the reference
/// rule.evaluation(1500.0, 2, 100)?; // 750 times: noisy, not diverged
/// let err = rule.evaluation(2500.0, 3, 100).unwrap_err();
/// assert!(err.to_string().contains("epoch 3, batch 100"));
/// # Ok::<(), scratch::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Divergence {
    /// The first positive evaluation loss.
    reference: Option<f64>,
}

/// A loss as a message shows it: four decimals, or four significant digits in scientific notation
/// when it is very large or very small.
fn show(v: f64) -> String {
    if v == 0.0 || (1e-3..1e6).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

impl Divergence {
    /// The training loss of batch `batch` (from 1) of epoch `epoch` (from 1).
    ///
    /// # Errors
    /// [`Error::Diverged`] if `loss` is not finite.
    pub fn batch(&self, loss: f64, epoch: usize, batch: usize) -> Result<()> {
        if loss.is_finite() {
            Ok(())
        } else {
            Err(Error::not_finite(epoch, batch, "the loss"))
        }
    }

    /// An evaluation loss, measured after batch `batch` of epoch `epoch`; the first positive one becomes
    /// the reference.
    ///
    /// # Errors
    /// [`Error::Diverged`] if `loss` is not finite, or more than [`GROWTH`] times the reference.
    pub fn evaluation(&mut self, loss: f64, epoch: usize, batch: usize) -> Result<()> {
        if !loss.is_finite() {
            return Err(Error::not_finite(epoch, batch, "the evaluation loss"));
        }
        match self.reference {
            Some(reference) if loss > GROWTH * reference => Err(Error::Diverged {
                epoch,
                batch,
                what: format!(
                    "the evaluation loss {} is more than {GROWTH} times the first evaluation's {}; lower the \
                     learning rate",
                    show(loss),
                    show(reference)
                ),
            }),
            Some(_) => Ok(()),
            None => {
                if loss > 0.0 {
                    self.reference = Some(loss);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_losses_diverge_and_name_where() {
        let mut rule = Divergence::default();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = rule.batch(v, 2, 7).unwrap_err();
            assert!(matches!(err, Error::Diverged { epoch: 2, batch: 7, .. }), "{err}");
            assert_eq!(err.to_string(), "training diverged at epoch 2, batch 7: the loss is not finite");
            let err = rule.evaluation(v, 3, 9).unwrap_err().to_string();
            assert_eq!(err, "training diverged at epoch 3, batch 9: the evaluation loss is not finite");
        }
        rule.batch(1e300, 1, 1).unwrap();
    }

    #[test]
    fn growth_is_measured_from_the_first_positive_evaluation() {
        let mut rule = Divergence::default();
        rule.evaluation(0.0, 1, 1).unwrap();
        rule.evaluation(0.5, 1, 2).unwrap();
        rule.evaluation(0.0, 1, 3).unwrap();
        rule.evaluation(500.0, 1, 4).unwrap();
        let err = rule.evaluation(500.1, 1, 5).unwrap_err().to_string();
        assert!(err.contains("epoch 1, batch 5") && err.contains("500.1000") && err.contains("0.5000"), "{err}");
        assert!(err.contains("1000 times the first evaluation's"), "{err}");
        let err = rule.evaluation(1.234e31, 1, 6).unwrap_err().to_string();
        assert!(err.contains("1.234e31"), "{err}");
    }
}
