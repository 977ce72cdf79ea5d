//! Losses on libtorch, as functions of the prediction and the target (as in PyTorch), with the same
//! reductions and target forms as the from-scratch engine's.

use scratch::spec::{CrossEntropyValue, LossSpec, MseReduction, Reduction};
use tch::{Kind, Tensor};

use crate::Result;

/// The loss `spec` describes, of `prediction` against `target`, as a scalar tensor to call `backward`
/// on.
///
/// # Errors
/// Shapes that do not fit (naming the loss and both shapes), an empty batch, or class indices out of
/// range.
pub fn loss(spec: LossSpec, prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (value, valid) = loss_unchecked(spec, prediction, target)?;
    match valid {
        Some(valid) => check_indices(&valid, prediction).map(|()| value),
        None => Ok(value),
    }
}

/// [`loss`], without reading from the device: with class-index targets, also a scalar tensor that is 1
/// if every index is valid and 0 if not (which the caller must read and check; rows of invalid indices
/// count as all-zero targets until then). For the training step, which reads it with everything else.
pub(crate) fn loss_unchecked(spec: LossSpec, prediction: &Tensor, target: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
    match spec {
        LossSpec::MeanSquaredError(reduction) => Ok((mse(prediction, target, reduction)?, None)),
        LossSpec::SoftmaxCrossEntropy { reduction, value } => {
            cross_entropy_unchecked(prediction, target, reduction, value)
        }
    }
}

/// The error for class indices that are not whole numbers in `0..C`, `C` the last axis of `logits`.
pub(crate) fn invalid_indices(logits: &Tensor) -> crate::Error {
    let classes = logits.size().last().copied().unwrap_or(0);
    scratch::Error::InvalidArgument(format!(
        "SoftmaxCrossEntropy: a target class index is not a whole number in 0..{classes}"
    ))
    .into()
}

/// Reads `valid` (see [`loss_unchecked`]): one read.
fn check_indices(valid: &Tensor, logits: &Tensor) -> Result<()> {
    if crate::sync::read(valid)?[0] == 1.0 {
        Ok(())
    } else {
        Err(invalid_indices(logits))
    }
}

fn empty(name: &str) -> crate::Error {
    scratch::Error::InvalidArgument(format!("{name}: empty batch")).into()
}

/// Checks a mean squared error's operands: the same shape, not empty.
fn same_shape(prediction: &Tensor, target: &Tensor) -> Result<()> {
    let (p, y) = (prediction.size(), target.size());
    if p != y {
        let want = format!("the prediction's shape {p:?}");
        return Err(scratch::Error::shape("MeanSquaredError: target", want, y).into());
    }
    if prediction.numel() == 0 {
        return Err(empty("MeanSquaredError"));
    }
    Ok(())
}

/// Mean squared error: `Σ (p − y)² / D`, `D` the rows (the book's), the elements (`nn.MSELoss()`) or 1
/// (`reduction='sum'`).
///
/// # Errors
/// Shapes that differ, or an empty batch.
pub fn mse(prediction: &Tensor, target: &Tensor, reduction: MseReduction) -> Result<Tensor> {
    same_shape(prediction, target)?;
    let sum = (prediction - target).square().sum(prediction.kind());
    Ok(match reduction {
        MseReduction::Rows => sum / prediction.size()[0] as f64,
        MseReduction::Mean => sum / prediction.numel() as f64,
        MseReduction::Sum => sum,
    })
}

/// Softmax then cross-entropy on logits, the classes on the last axis (`(N, C)` or `(batch, time, C)`,
/// whose positions are the rows), against one-hot (or probability) targets of the same shape, or class
/// indices (any integer or float kind holding whole numbers) shaped like the prediction without its
/// last axis; reduced by the mean or the sum over the rows. With [`CrossEntropyValue::BookBinarySum`]
/// the *value* is the book's printed quantity while the gradient stays that of the categorical
/// cross-entropy, as in the from-scratch engine.
///
/// ```
/// use scratch::spec::{CrossEntropyValue, Reduction};
/// use tch::Tensor;
///
/// let logits = Tensor::from_slice(&[2.0f64, 0.0, -1.0, 0.5, 0.5, 3.0]).reshape([2, 3]);
/// let indices = Tensor::from_slice(&[0i64, 2]);
/// let one_hot = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 0.0, 0.0, 1.0]).reshape([2, 3]);
/// let a = torch::loss::cross_entropy(&logits, &indices, Reduction::Mean, CrossEntropyValue::Categorical)?;
/// let b = torch::loss::cross_entropy(&logits, &one_hot, Reduction::Mean, CrossEntropyValue::Categorical)?;
/// assert!((a.double_value(&[]) - b.double_value(&[])).abs() < 1e-15);
/// # Ok::<(), torch::Error>(())
/// ```
///
/// # Errors
/// A target of another shape, an empty batch, or a class index that is not a whole number in `0..C`.
pub fn cross_entropy(
    logits: &Tensor,
    target: &Tensor,
    reduction: Reduction,
    value: CrossEntropyValue,
) -> Result<Tensor> {
    let (loss, valid) = cross_entropy_unchecked(logits, target, reduction, value)?;
    match valid {
        Some(valid) => check_indices(&valid, logits).map(|()| loss),
        None => Ok(loss),
    }
}

/// [`cross_entropy`] without the read: see [`loss_unchecked`].
fn cross_entropy_unchecked(
    logits: &Tensor,
    target: &Tensor,
    reduction: Reduction,
    value: CrossEntropyValue,
) -> Result<(Tensor, Option<Tensor>)> {
    let (targets, valid) = class_targets(logits, target)?;
    let (kind, p) = (logits.kind(), logits.size());
    let n = match reduction {
        Reduction::Mean => p[..p.len() - 1].iter().product::<i64>() as f64,
        Reduction::Sum => 1.0,
    };
    let log_p = logits.log_softmax(-1, kind);
    let categorical = -(&targets * &log_p).sum(kind) / n;
    let loss = match value {
        CrossEntropyValue::Categorical => categorical,
        CrossEntropyValue::BookBinarySum => {
            let binary = book_binary_rows(logits, &targets).sum(Kind::Double) / n;
            // The book's value, the categorical gradient.
            &categorical + (binary.to_kind(kind) - &categorical).detach()
        }
    };
    Ok((loss, valid))
}

/// PyTorch's `reduction='none'`: the loss of every element of a mean squared error, `(p − y)²` shaped
/// like the prediction, or of every row of a softmax cross-entropy (the prediction's shape without its
/// last axis), as the from-scratch engine's `scratch::losses::unreduced` computes them.
///
/// # Errors
/// As [`loss`].
pub fn unreduced(spec: LossSpec, prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    match spec {
        LossSpec::MeanSquaredError(_) => {
            same_shape(prediction, target)?;
            Ok((prediction - target).square())
        }
        LossSpec::SoftmaxCrossEntropy { value, .. } => {
            let (targets, valid) = class_targets(prediction, target)?;
            if let Some(valid) = valid {
                check_indices(&valid, prediction)?;
            }
            let kind = prediction.kind();
            Ok(match value {
                CrossEntropyValue::Categorical => {
                    -(&targets * prediction.log_softmax(-1, kind)).sum_dim_intlist(-1, false, kind)
                }
                CrossEntropyValue::BookBinarySum => book_binary_rows(prediction, &targets).to_kind(kind),
            })
        }
    }
}

/// The targets of a softmax cross-entropy as probability rows of the logits' shape and kind: `target`
/// itself when it has the logits' shape, or the one-hot rows of its class indices when it has the
/// logits' shape without the class axis, with the flag of [`one_hot_indices`] (not read here).
fn class_targets(logits: &Tensor, target: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
    let name = "SoftmaxCrossEntropy";
    let (p, y) = (logits.size(), target.size());
    let Some((&classes, outer)) = p.split_last().filter(|(_, outer)| !outer.is_empty()) else {
        let want = "(rows, classes) or (batch, time, classes)";
        return Err(scratch::Error::shape(format!("{name}: prediction"), want, p).into());
    };
    if logits.numel() == 0 {
        return Err(empty(name));
    }
    if y == p {
        return Ok((target.to_kind(logits.kind()), None));
    }
    if y != outer {
        let want = format!("one-hot rows of the prediction's shape {p:?} or class indices of shape {outer:?}");
        return Err(scratch::Error::shape(format!("{name}: target"), want, y).into());
    }
    let (rows, valid) = one_hot_indices(target, classes, logits.kind());
    Ok((rows, Some(valid)))
}

/// Class indices (any kind, shape `S`) as one-hot rows `S × classes` of `kind`, and a scalar tensor,
/// 1 if every index is a whole number in `0..classes` and 0 if not; on the indices' device, without
/// reading from it. Each row is `index == arange(classes)`, so that an invalid index gives a row of
/// zeros rather than an error (libtorch's `one_hot` checks its indices with reads on the CPU, and with
/// a device-side assertion, which ends the process's use of the GPU, on CUDA).
fn one_hot_indices(target: &Tensor, classes: i64, kind: Kind) -> (Tensor, Tensor) {
    let indices = target.to_kind(Kind::Double);
    let valid = indices
        .ge(0.0)
        .logical_and(&indices.lt(classes as f64))
        .logical_and(&indices.eq_tensor(&indices.floor()))
        .all();
    let range = Tensor::arange(classes, (Kind::Double, indices.device()));
    (indices.unsqueeze(-1).eq_tensor(&range).to_kind(kind), valid)
}

/// The book's printed value of every row (a tensor of the logits' shape without the class axis),
/// computed as the from-scratch engine computes it: in f64 whatever the kind (in f32, 1 − 1e-9 rounds
/// to 1), `1 − p_j` as the sum of the other classes' probabilities (exclusive prefix and suffix sums, no
/// cancellation near `p = 1`), and the clipping of `p` to `[1e-9, 1 − 1e-9]` as a clamp of both
/// logarithms.
fn book_binary_rows(logits: &Tensor, targets: &Tensor) -> Tensor {
    let x = logits.to_kind(Kind::Double);
    let classes = *x.size().last().expect("class_targets checked the shape");
    let e = (&x - x.amax(-1, true)).exp();
    let sum = e.sum_dim_intlist(-1, true, Kind::Double);
    let zero = e.narrow(-1, 0, 1).zeros_like();
    let before = Tensor::cat(&[&zero, &e.cumsum(-1, Kind::Double).narrow(-1, 0, classes - 1)], -1);
    let after = Tensor::cat(&[&e.flip([-1]).cumsum(-1, Kind::Double).narrow(-1, 0, classes - 1).flip([-1]), &zero], -1);
    let (lo, hi) = (1e-9f64.ln(), (-1e-9f64).ln_1p());
    let log_p = (&e / &sum).log().clamp(lo, hi);
    let log_q = ((before + after) / &sum).log().clamp(lo, hi);
    let y = targets.to_kind(Kind::Double);
    let not_y: Tensor = 1.0 - &y;
    -(&y * log_p + not_y * log_q).sum_dim_intlist(-1, false, Kind::Double)
}
