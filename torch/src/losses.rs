//! Losses on libtorch, with the same reductions as the from-scratch engine.

use scratch::losses::{CrossEntropyValue, MseReduction};
use tch::{Kind, Tensor};

use crate::Result;

/// A loss of predictions against targets of the same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `Σ (p − y)² / D`, `D` the rows (the book's) or the elements (`nn.MSELoss()`).
    MeanSquaredError(MseReduction),
    /// Softmax then cross-entropy on logits against one-hot targets of the same shape, the classes on
    /// the last axis: `−Σ y ⊙ log_softmax(x) / N`, `N` the number of rows (every position but the last
    /// axis). With [`CrossEntropyValue::BookBinarySum`] the *value* is the book's
    /// printed quantity while the gradient stays that of the categorical cross-entropy, as in the
    /// from-scratch engine.
    SoftmaxCrossEntropy(CrossEntropyValue),
    /// Categorical cross-entropy summed over every row (batch × time), not averaged: the reduction of
    /// the book's chapter 6 (`scratch::losses::SoftmaxCrossEntropy::summed`).
    SoftmaxCrossEntropySum,
}

impl Loss {
    /// The loss's name, as the from-scratch engine names it.
    pub fn name(self) -> &'static str {
        match self {
            Loss::MeanSquaredError(_) => "MeanSquaredError",
            Loss::SoftmaxCrossEntropy(_) => "SoftmaxCrossEntropy",
            Loss::SoftmaxCrossEntropySum => "SoftmaxCrossEntropy (summed)",
        }
    }

    /// The loss as a scalar tensor to call `backward` on.
    ///
    /// # Errors
    /// If the shapes differ (naming the loss and both shapes) or the batch is empty.
    pub fn forward(self, prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
        let (p, y) = (prediction.size(), target.size());
        if p != y {
            return Err(scratch::Error::shape(
                format!("{}: target", self.name()),
                format!("the prediction's shape {p:?}"),
                y,
            )
            .into());
        }
        if prediction.numel() == 0 {
            return Err(scratch::Error::InvalidArgument(format!("{}: empty batch", self.name())).into());
        }
        let batch = p[0] as f64;
        Ok(match self {
            Loss::MeanSquaredError(reduction) => {
                let sum = (prediction - target).square().sum(prediction.kind());
                match reduction {
                    MseReduction::Rows => sum / batch,
                    MseReduction::Elements => sum / prediction.numel() as f64,
                }
            }
            Loss::SoftmaxCrossEntropySum => {
                -(target * prediction.log_softmax(-1, prediction.kind())).sum(prediction.kind())
            }
            Loss::SoftmaxCrossEntropy(value) => {
                // Rows: every position but the last axis, the classes.
                let rows = prediction.numel() as f64 / *p.last().unwrap_or(&1) as f64;
                let log_p = prediction.log_softmax(-1, prediction.kind());
                let categorical = -(target * &log_p).sum(prediction.kind()) / rows;
                match value {
                    CrossEntropyValue::Categorical => categorical,
                    CrossEntropyValue::BookBinarySum => {
                        // In f64 whatever the kind: in f32, 1 − 1e-9 rounds to 1 and log(1 − p) to −∞.
                        let p = log_p.to_kind(Kind::Double).exp().clamp(1e-9, 1.0 - 1e-9);
                        let y = target.to_kind(Kind::Double);
                        let (one_minus_y, one_minus_p): (Tensor, Tensor) = (1.0 - &y, 1.0 - &p);
                        let binary = -(&y * p.log() + one_minus_y * one_minus_p.log()).sum(Kind::Double) / rows;
                        // The book's value, the categorical gradient.
                        &categorical + (binary.to_kind(prediction.kind()) - &categorical).detach()
                    }
                }
            }
        })
    }
}
