//! MNIST (and Fashion-MNIST) in the IDX format: 28×28 grey-scale images and their digit labels.
//!
//! An IDX file is a big-endian header, a magic number `0x0000_08DD` (`08`: unsigned bytes, `DD`: the
//! number of dimensions), one `u32` per dimension, then the data in row-major order. Images are
//! `0x0803` (count, rows, columns), labels `0x0801` (count). Files may be gzip-compressed (`.gz`).

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use ndarray::Array2;

use super::read::{self, Opened};
use super::SETUP_HINT;
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
/// A missing file (naming it and the command that fetches it), a path that is not a regular file, or a
/// malformed one: a wrong magic number, dimensions whose product overflows or exceeds
/// [`MAX_DATA_BYTES`] or is 0, data shorter or longer than the header says, a corrupt gzip stream, a
/// label above 9, different numbers of images and labels.
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

/// The most data bytes (the product of the dimensions) an IDX file may declare: 1 GiB, over twenty times
/// MNIST's largest file (60000 · 28 · 28 bytes, 47 MB). A header that declares more is refused before
/// any data is read, so that a corrupt or hostile header (or a small gzip file that decompresses to
/// gigabytes) cannot make the loader read or allocate without bound.
pub const MAX_DATA_BYTES: u64 = 1 << 30;

/// How many times its size deflate can expand a stream at most (1032); only used to size a buffer.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// Reads an IDX file (gzip-compressed if its name ends in `.gz`) with `magic` as its magic number (its
/// low byte is the number of dimensions); returns the dimensions and the data, whose length is their
/// product.
///
/// Every size comes from the header and is checked before it is used: the product of the dimensions
/// with checked arithmetic, against [`MAX_DATA_BYTES`], and, for a plain file, against the file's
/// length before the data is read. A gzip file is decompressed as a stream (all its members, as `cat
/// a.gz b.gz` makes), and never beyond one byte more than the header promises.
fn read_idx(path: &Path, magic: u32, what: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let hint = hint_for(path);
    let Opened { file, len } = read::open(path, &hint)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let gzip_error = |e: std::io::Error| match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::InvalidData | ErrorKind::UnexpectedEof => {
                Error::bad_file(path, format!("not a valid gzip file: {e}"))
            }
            _ => Error::Io { path: path.to_owned(), error: e },
        };
        let capacity_bound = len.saturating_mul(DEFLATE_MAX_RATIO);
        parse_idx(path, MultiGzDecoder::new(file), None, capacity_bound, magic, what, gzip_error)
    } else {
        let io_error = |e| read::io_error(path, &hint, e);
        parse_idx(path, file, Some(len), len, magic, what, io_error)
    }
}

/// Parses an IDX stream (see [`read_idx`]). `file_len` is the length of a plain file, known before
/// reading; `capacity_bound` is an upper bound on the data's length, to size the buffer.
fn parse_idx(
    path: &Path,
    mut source: impl Read,
    file_len: Option<u64>,
    capacity_bound: u64,
    magic: u32,
    what: &str,
    read_error: impl Fn(std::io::Error) -> Error,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let dims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * dims;
    let header = read::read_at_most(&mut source, header_len as u64, header_len).map_err(&read_error)?;
    if header.len() < header_len {
        return Err(Error::bad_file(path, format!("{} bytes is too short for an IDX {what} header", header.len())));
    }
    let words: Vec<u32> = header.chunks_exact(4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]])).collect();
    if words[0] != magic {
        return Err(Error::bad_file(
            path,
            format!("magic number {:#010x} is not that of IDX {what} ({magic:#010x})", words[0]),
        ));
    }
    let shape = &words[1..];
    let Some(expected) = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(u64::from(d))) else {
        return Err(Error::bad_file(
            path,
            format!("header says {}, whose product overflows 64 bits: the header is corrupt", join_dims(shape)),
        ));
    };
    if expected == 0 {
        return Err(Error::bad_file(path, format!("header says {}: no data (a dimension is 0)", join_dims(shape))));
    }
    if expected > MAX_DATA_BYTES {
        return Err(Error::bad_file(
            path,
            format!(
                "header says {} ({expected} bytes of data), more than the {MAX_DATA_BYTES} this loader \
                 accepts (mnist::MAX_DATA_BYTES)",
                join_dims(shape)
            ),
        ));
    }
    let dims = join_dims(shape);
    let wrong_length = |got: u64| {
        let what = if got < expected {
            format!("the file has {got} (truncated?)")
        } else {
            format!("the file has {} bytes more (trailing data)", got - expected)
        };
        Error::bad_file(path, format!("header says {dims} ({expected} bytes of data) but {what}"))
    };
    if let Some(len) = file_len {
        let got = len.saturating_sub(header_len as u64);
        if got != expected {
            return Err(wrong_length(got));
        }
    }
    // A capacity hint only: the smaller of the header's promise and what the file can hold.
    let capacity = usize::try_from(expected.min(capacity_bound)).unwrap_or(0);
    let data = read::read_at_most(&mut source, expected + 1, capacity).map_err(&read_error)?;
    let got = data.len() as u64;
    if got > expected {
        // More data than promised: read the rest of the stream (without keeping it) to tell a damaged
        // compressed stream, which fails on the way, from an intact one that holds more.
        let rest = std::io::copy(&mut (&mut source).take(capacity_bound), &mut std::io::sink()).map_err(&read_error)?;
        return Err(wrong_length(got + rest));
    }
    if got < expected {
        return Err(wrong_length(got));
    }
    let shape = shape.iter().map(|&d| d as usize).collect();
    Ok((shape, data))
}

/// An IDX header's dimensions as a person writes them: `60000 × 28 × 28`.
fn join_dims(shape: &[u32]) -> String {
    shape.iter().map(u32::to_string).collect::<Vec<_>>().join(" × ")
}

/// Reads an IDX image file: `(count, rows · cols)` pixels and the image size.
///
/// # Errors
/// As [`load`].
pub fn read_images(path: &Path) -> Result<(Array2<u8>, usize, usize)> {
    let (shape, data) = read_idx(path, 0x0803, "images")?;
    let (n, rows, cols) = (shape[0], shape[1], shape[2]);
    let images =
        Array2::from_shape_vec((n, rows * cols), data).expect("read_idx returns n · rows · cols bytes, at most 1 GiB");
    Ok((images, rows, cols))
}

/// Reads an IDX label file.
///
/// # Errors
/// As [`load`].
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let (_, labels) = read_idx(path, 0x0801, "labels")?;
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(Error::bad_file(path, format!("label {i} is {l}, not a digit 0-9")));
    }
    Ok(labels)
}

impl Mnist {
    /// The book's chapter-4 scaling: subtract the mean of all training pixels and divide by their
    /// (population) standard deviation, both sets with the training statistics. Returns
    /// `(train, test)`, each `(count, rows · cols)`. If every training pixel has the same value, the
    /// sets are only centred (the deviation is taken as 1, as [`super::StandardScaler`] does), rather
    /// than divided by 0.
    pub fn book_scaled<F: Float>(&self) -> (Array2<F>, Array2<F>) {
        let (mean, std) = pixel_statistics(&self.train_images);
        let std = if std == 0.0 { 1.0 } else { std };
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
///
/// # Errors
/// If a label is not below `classes` (labels from [`read_labels`] are digits, below 10).
pub fn one_hot<F: Float>(labels: &[u8], classes: usize) -> Result<Array2<F>> {
    let mut out = Array2::zeros((labels.len(), classes));
    for (mut row, &l) in out.rows_mut().into_iter().zip(labels) {
        let cell = row
            .get_mut(usize::from(l))
            .ok_or_else(|| Error::InvalidArgument(format!("one_hot: label {l} is not below the {classes} classes")))?;
        *cell = F::one();
    }
    Ok(out)
}
