//! Evaluation metrics.

use ndarray::{ArrayBase, ArrayView2, Axis, Data, Dimension};

use crate::{Error, Float, Result};

/// Mean absolute error, `mean |p − y|`, over every element.
pub fn mae<F: Float, S: Data<Elem = F>, T: Data<Elem = F>, D: Dimension>(
    prediction: &ArrayBase<S, D>,
    target: &ArrayBase<T, D>,
) -> f64 {
    let sum: f64 = prediction.iter().zip(target).map(|(&p, &y)| (p - y).abs().as_f64()).sum();
    sum / prediction.len() as f64
}

/// Root mean squared error, `sqrt(mean (p − y)²)`, over every element.
pub fn rmse<F: Float, S: Data<Elem = F>, T: Data<Elem = F>, D: Dimension>(
    prediction: &ArrayBase<S, D>,
    target: &ArrayBase<T, D>,
) -> f64 {
    let sum: f64 = prediction.iter().zip(target).map(|(&p, &y)| (p - y).as_f64().powi(2)).sum();
    (sum / prediction.len() as f64).sqrt()
}

/// The index of the largest value of each row (the first one on ties, like numpy's `argmax`).
pub fn argmax_rows<F: Float>(scores: &ArrayView2<F>) -> Vec<usize> {
    scores
        .axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// The fraction of rows whose largest score is at the label's index: `scores` as a network predicts
/// them, `(rows, classes)` or `(batch, time, classes)` (every position but the last axis a row), and
/// one label per row, of any unsigned type (`u8` as the MNIST loaders give them, `usize`, ...).
///
/// ```
/// let scores = ndarray::array![[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]].into_dyn();
/// assert_eq!(scratch::metrics::accuracy(&scores, &[1u8, 1, 0])?, 2.0 / 3.0);
/// # Ok::<(), scratch::Error>(())
/// ```
///
/// # Errors
/// Scores without a class axis, or a number of rows that is not the number of labels.
pub fn accuracy<F, S, D, L>(scores: &ArrayBase<S, D>, labels: &[L]) -> Result<f64>
where
    F: Float,
    S: Data<Elem = F>,
    D: Dimension,
    L: Copy + Into<usize>,
{
    let classes = scores.shape().last().copied().filter(|&c| c > 0);
    let rows = classes.map(|c| scores.len() / c);
    let (Some(classes), Some(rows)) = (classes, rows) else {
        return Err(Error::shape("accuracy scores", "(rows, classes)", scores.shape()));
    };
    if rows != labels.len() || rows == 0 {
        return Err(Error::shape("accuracy scores", format!("{} rows, one per label", labels.len()), scores.shape()));
    }
    let standard = scores.as_standard_layout();
    let matrix = standard.to_shape((rows, classes)).expect("the sizes agree");
    let hits = argmax_rows(&matrix.view()).iter().zip(labels).filter(|&(&p, &y)| p == y.into()).count();
    Ok(hits as f64 / rows as f64)
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn regression_metrics() {
        let p = array![[1.0], [2.0], [4.0]];
        let y = array![[1.0], [3.0], [2.0]];
        assert_eq!(mae(&p, &y), 1.0);
        assert_eq!(rmse(&p, &y), (5.0f64 / 3.0).sqrt());
    }

    #[test]
    fn accuracy_counts_argmax_hits() {
        let s = array![[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]];
        assert_eq!(argmax_rows(&s.view()), vec![1, 0, 0]);
        assert_eq!(accuracy(&s, &[1usize, 1, 0]).unwrap(), 2.0 / 3.0);
        let sequences = s.clone().into_shape_with_order((1, 3, 2)).unwrap();
        assert_eq!(accuracy(&sequences, &[1u8, 1, 0]).unwrap(), 2.0 / 3.0);
        assert!(accuracy(&s, &[1u8, 1]).unwrap_err().to_string().contains("2 rows, one per label"));
    }
}
