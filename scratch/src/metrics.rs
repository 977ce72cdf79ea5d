//! Evaluation metrics.

use ndarray::{ArrayBase, ArrayView2, Axis, Data, Dimension};

use crate::Float;

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

/// The fraction of rows whose largest score is at the label's index.
pub fn accuracy<F: Float>(scores: &ArrayView2<F>, labels: &[usize]) -> f64 {
    let hits = argmax_rows(scores).iter().zip(labels).filter(|(p, y)| p == y).count();
    hits as f64 / labels.len() as f64
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
        assert_eq!(accuracy(&s.view(), &[1, 1, 0]), 2.0 / 3.0);
    }
}
