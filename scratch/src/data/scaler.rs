//! Standardisation of features, as scikit-learn's `StandardScaler`.

use ndarray::{Array1, Array2, Axis};

use crate::{Error, Result};

/// Per-column `(x − mean) / std` with the population standard deviation (ddof = 0); a constant column is
/// left centred (its std is taken as 1), as scikit-learn does.
#[derive(Clone, Debug)]
pub struct StandardScaler {
    /// Column means.
    pub mean: Array1<f64>,
    /// Column standard deviations (1 where a column is constant).
    pub std: Array1<f64>,
}

impl StandardScaler {
    /// Learns the column statistics of `x`, `(rows, columns)`.
    ///
    /// # Errors
    /// If `x` has no rows.
    pub fn fit(x: &Array2<f64>) -> Result<Self> {
        let mean =
            x.mean_axis(Axis(0)).ok_or_else(|| Error::InvalidArgument("StandardScaler: no rows to fit".into()))?;
        let std = x.std_axis(Axis(0), 0.0).mapv(|s| if s == 0.0 { 1.0 } else { s });
        Ok(StandardScaler { mean, std })
    }

    /// Standardises `x` with the learned statistics.
    pub fn transform(&self, x: &Array2<f64>) -> Array2<f64> {
        (x - &self.mean) / &self.std
    }

    /// Learns the statistics of `x` and standardises it.
    ///
    /// # Errors
    /// As [`StandardScaler::fit`].
    pub fn fit_transform(x: &Array2<f64>) -> Result<(Self, Array2<f64>)> {
        let scaler = Self::fit(x)?;
        let scaled = scaler.transform(x);
        Ok((scaler, scaled))
    }
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    use super::*;

    #[test]
    fn uses_the_population_std_and_leaves_constant_columns_centred() {
        let x = array![[1.0, 5.0], [3.0, 5.0]];
        let (s, z) = StandardScaler::fit_transform(&x).unwrap();
        assert!(StandardScaler::fit(&Array2::zeros((0, 3))).is_err());
        assert_eq!(s.std, array![1.0, 1.0]);
        assert_abs_diff_eq!(z, array![[-1.0, 0.0], [1.0, 0.0]]);
    }
}
