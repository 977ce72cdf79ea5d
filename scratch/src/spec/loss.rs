//! What a loss is: the function and its reduction, built by either engine.

/// What a mean squared error divides the sum of squares by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MseReduction {
    /// The book's convention: the number of rows (the batch size), `Σ (p − y)² / N`. For one output
    /// column this is the usual mean; for ten it is ten times the element mean.
    Rows,
    /// PyTorch's `nn.MSELoss()` (`reduction='mean'`): the number of elements.
    Mean,
    /// PyTorch's `reduction='sum'`: no division.
    Sum,
}

/// How a cross-entropy combines the losses of its rows (PyTorch's `reduction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over the rows (every position but the class axis): PyTorch's default.
    Mean,
    /// The sum over the rows: the book's chapter-6 sequence loss.
    Sum,
}

/// What a softmax cross-entropy reports as its value (its gradient is the same either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossEntropyValue {
    /// Categorical cross-entropy, `−Σ y log p`: the loss the gradient belongs to, and PyTorch's
    /// `cross_entropy`.
    Categorical,
    /// The book's printed number: binary cross-entropy on every class of the clipped softmax,
    /// `Σ [−y log p − (1 − y) log(1 − p)]` with `p` clipped to `[1e-9, 1 − 1e-9]`. It is not the loss
    /// the gradient belongs to (the book prints one and differentiates the other); use it only to
    /// compare with the book's printouts.
    BookBinarySum,
}

/// A loss, engine-neutral: the from-scratch engine builds it as a
/// [`Loss`](crate::losses::Loss) object ([`LossSpec::build`]), the libtorch engine computes it as a
/// function of the prediction and the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossSpec {
    /// Mean squared error with the given reduction.
    MeanSquaredError(MseReduction),
    /// Softmax then cross-entropy over the last axis, against one-hot (or probability) targets of the
    /// prediction's shape or class indices shaped like the prediction without its last axis.
    SoftmaxCrossEntropy {
        /// Mean or sum over the rows.
        reduction: Reduction,
        /// The value reported.
        value: CrossEntropyValue,
    },
}

impl LossSpec {
    /// The book's mean squared error, divided by the rows.
    pub const MSE: LossSpec = LossSpec::MeanSquaredError(MseReduction::Rows);

    /// Softmax cross-entropy averaged over the rows, PyTorch's `nn.CrossEntropyLoss()`.
    pub const CROSS_ENTROPY: LossSpec =
        LossSpec::SoftmaxCrossEntropy { reduction: Reduction::Mean, value: CrossEntropyValue::Categorical };

    /// Softmax cross-entropy summed over the rows (batch × time): the book's chapter-6 sequence loss.
    pub const CROSS_ENTROPY_SUM: LossSpec =
        LossSpec::SoftmaxCrossEntropy { reduction: Reduction::Sum, value: CrossEntropyValue::Categorical };

    /// The loss's name.
    pub fn name(self) -> &'static str {
        match self {
            LossSpec::MeanSquaredError(_) => "MeanSquaredError",
            LossSpec::SoftmaxCrossEntropy { .. } => "SoftmaxCrossEntropy",
        }
    }

    /// Whether the targets are classes (one-hot rows or indices) rather than real values.
    pub fn is_classification(self) -> bool {
        matches!(self, LossSpec::SoftmaxCrossEntropy { .. })
    }
}
