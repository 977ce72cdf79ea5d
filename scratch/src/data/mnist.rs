//! MNIST (and Fashion-MNIST) in the IDX format: 28×28 grey-scale images and their digit labels.
//!
//! An IDX file is a big-endian header, a magic number `0x0000_08DD` (`08`: unsigned bytes, `DD`: the
//! number of dimensions), one `u32` per dimension, then the data in row-major order. Images are
//! `0x0803` (count, rows, columns), labels `0x0801` (count). Files may be gzip-compressed (`.gz`).

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::{read, SETUP_HINT};
use crate::{Error, Float, Result};

/// A training and a test set of images and labels.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// `(60000, rows · cols)` pixels, 0 to 255.
    pub train_images: Array2<u8>,
    /// `60000` labels, 0 to 9.
    pub train_labels: Vec<u8>,
    /// `(10000, rows · cols)`.
    pub test_images: Array2<u8>,
    /// `10000` labels.
    pub test_labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

/// The four files of a data set under `dir`, or their `.gz` versions.
///
/// # Errors
/// A missing file (naming it and the command that fetches it), or a malformed one: a wrong magic number,
/// a size that disagrees with the header, a label above 9, different numbers of images and labels.
pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
    let dir = dir.as_ref();
    let (train_images, rows, cols) = read_images(&locate(dir, "train-images-idx3-ubyte"))?;
    let train_labels = read_labels(&locate(dir, "train-labels-idx1-ubyte"))?;
    let (test_images, test_rows, test_cols) = read_images(&locate(dir, "t10k-images-idx3-ubyte"))?;
    let test_labels = read_labels(&locate(dir, "t10k-labels-idx1-ubyte"))?;
    for (what, images, labels) in [("train", &train_images, &train_labels), ("t10k", &test_images, &test_labels)] {
        if images.nrows() != labels.len() {
            return Err(Error::bad_file(dir, format!("{what}: {} images but {} labels", images.nrows(), labels.len())));
        }
    }
    if (rows, cols) != (test_rows, test_cols) {
        return Err(Error::bad_file(
            dir,
            format!("train images are {rows}x{cols}, test images {test_rows}x{test_cols}"),
        ));
    }
    Ok(Mnist { train_images, train_labels, test_images, test_labels, rows, cols })
}

/// `dir/name` if it exists, else `dir/name.gz` if that exists, else `dir/name` (reported as missing).
fn locate(dir: &Path, name: &str) -> PathBuf {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if !plain.exists() && gz.exists() {
        gz
    } else {
        plain
    }
}

fn hint_for(path: &Path) -> String {
    if path.to_string_lossy().contains("fashion") {
        "run `make setup` (or `python3 scripts/setup.py`) in the repository root to download it; Fashion-MNIST comes \
         from Debian's dataset-fashion-mnist package, so it needs `apt-get`"
            .into()
    } else {
        SETUP_HINT.into()
    }
}

/// The file's bytes, decompressed if it ends in `.gz`.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = read(path, &hint_for(path))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::bad_file(path, format!("not a valid gzip file: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX header with `dims` dimensions and the given magic number; returns the dimensions and
/// checks that the payload has exactly their product of bytes.
fn parse_idx<'a>(path: &Path, bytes: &'a [u8], magic: u32, what: &str) -> Result<(Vec<usize>, &'a [u8])> {
    let dims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * dims;
    if bytes.len() < header_len {
        return Err(Error::bad_file(path, format!("{} bytes is too short for an IDX {what} header", bytes.len())));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().expect("four bytes"));
    if word(0) != magic {
        return Err(Error::bad_file(
            path,
            format!("magic number {:#010x} is not that of IDX {what} ({magic:#010x})", word(0)),
        ));
    }
    let shape: Vec<usize> = (1..=dims).map(|i| word(i) as usize).collect();
    let expected = shape.iter().product::<usize>();
    let payload = &bytes[header_len..];
    if payload.len() != expected {
        return Err(Error::bad_file(
            path,
            format!("header says {shape:?} ({expected} bytes of data) but the file has {} (truncated?)", payload.len()),
        ));
    }
    Ok((shape, payload))
}

/// Reads an IDX image file: `(count, rows · cols)` pixels and the image size.
///
/// # Errors
/// As [`load`].
pub fn read_images(path: &Path) -> Result<(Array2<u8>, usize, usize)> {
    let bytes = read_maybe_gz(path)?;
    let (shape, payload) = parse_idx(path, &bytes, 0x0803, "images")?;
    let (n, rows, cols) = (shape[0], shape[1], shape[2]);
    let images = Array2::from_shape_vec((n, rows * cols), payload.to_vec()).expect("size checked");
    Ok((images, rows, cols))
}

/// Reads an IDX label file.
///
/// # Errors
/// As [`load`].
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gz(path)?;
    let (_, payload) = parse_idx(path, &bytes, 0x0801, "labels")?;
    if let Some((i, &l)) = payload.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(Error::bad_file(path, format!("label {i} is {l}, not a digit 0-9")));
    }
    Ok(payload.to_vec())
}

impl Mnist {
    /// The book's chapter-4 scaling: subtract the mean of all training pixels and divide by their
    /// (population) standard deviation, both sets with the training statistics. Returns
    /// `(train, test)`, each `(count, rows · cols)`.
    pub fn book_scaled<F: Float>(&self) -> (Array2<F>, Array2<F>) {
        let (mean, std) = pixel_statistics(&self.train_images);
        let scale = |a: &Array2<u8>| a.mapv(|p| F::cast((f64::from(p) - mean) / std));
        (scale(&self.train_images), scale(&self.test_images))
    }
}

/// The mean and population standard deviation of every pixel, from a histogram of the 256 values, so
/// that no rounding accumulates over the 47 million pixels (train: 33.3184214498 and 78.5674899834).
pub fn pixel_statistics(images: &Array2<u8>) -> (f64, f64) {
    let mut counts = [0u64; 256];
    for &p in images {
        counts[usize::from(p)] += 1;
    }
    let n = images.len() as f64;
    let sum: u64 = counts.iter().enumerate().map(|(v, &c)| v as u64 * c).sum();
    let mean = sum as f64 / n;
    let var = counts.iter().enumerate().map(|(v, &c)| c as f64 * (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// One-hot rows: row `i` has a 1 in column `labels[i]`, `(count, classes)`.
pub fn one_hot<F: Float>(labels: &[u8], classes: usize) -> Array2<F> {
    let mut out = Array2::zeros((labels.len(), classes));
    for (i, &l) in labels.iter().enumerate() {
        out[[i, usize::from(l)]] = F::one();
    }
    out
}
