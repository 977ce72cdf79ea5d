//! Checkpoints: a model's named parameters in one [safetensors] file, readable by both engines (and by
//! PyTorch's `safetensors.torch.load_file`).
//!
//! The layout, shared by the `scratch` and `torch` crates:
//!
//! * one tensor per parameter, named as the model names it: `layers.{i}.weight`, `layers.{i}.bias`, ...;
//! * each in PyTorch's layout: a dense weight is `(out, in)`, a bias `(out,)`, a convolution kernel
//!   `(out_channels, in_channels, k, k)` (the from-scratch engine converts its `(in, out)` weights in
//!   [`crate::param::Layout`]);
//! * dtype `F32` or `F64`, as the model that saved it; loading converts to the loading model's type;
//! * the metadata key `format` is `dlfs-checkpoint/1`; callers may add their own keys.
//!
//! Saving is atomic: the bytes go to `<file>.partial`, are flushed to disk, and only then renamed over
//! the target, so a process killed during a save leaves the previous checkpoint intact; a save that
//! fails removes its `.partial` file. Loading reads only the named file, never a `.partial` one.
//!
//! Loading trusts nothing in the file: it reads a regular file of at most [`MAX_FILE_BYTES`], parses the
//! header (of at most the format's 100 MB) with the `safetensors` crate's types and checks (offsets that
//! overlap, leave gaps or disagree with a shape are errors, sizes are computed with checked arithmetic),
//! refuses a tensor name or metadata key given twice, compares the tensors' extent with the file's real
//! length before decoding, and refuses a dtype other than F32 and F64, and a tensor holding a NaN or an
//! infinity, naming the tensor.
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

mod header;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError};

use crate::data::read;
use crate::param::Param;
use crate::{Error, Float, Result};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "dlfs-checkpoint/1";

/// The largest checkpoint [`load`] reads: 4 GiB, a billion `f32` parameters (the book's models have
/// under a million). A larger file is refused before anything is read.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// The longest header [`load`] parses: the safetensors format's limit.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A parameter name and its value in the canonical layout.
pub type NamedArray<F> = (String, ArrayD<F>);

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io { path: path.to_owned(), error }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::bad_file(path, reason)
}

/// The little-endian bytes of `values`, as `F32` when `F` is `f32` and `F64` otherwise.
fn encode<F: Float>(values: &ArrayD<F>) -> (Dtype, Vec<u8>) {
    let standard = values.as_standard_layout();
    let mut bytes = Vec::with_capacity(values.len() * std::mem::size_of::<F>());
    if F::SINGLE {
        standard.iter().for_each(|v| bytes.extend((v.as_f64() as f32).to_le_bytes()));
        (Dtype::F32, bytes)
    } else {
        standard.iter().for_each(|v| bytes.extend(v.as_f64().to_le_bytes()));
        (Dtype::F64, bytes)
    }
}

/// The values of tensor `name` from its little-endian `bytes`, converted to `F`; refuses a dtype other than
/// F32 and F64, and a value that is not finite, or that is not finite once converted (an `f64` beyond
/// `f32`'s range), naming the tensor.
fn decode<F: Float>(path: &Path, name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<F>> {
    let values: Vec<f64> = match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        other => return Err(bad(path, format!("tensor {name} has dtype \"{other}\"; checkpoints hold F32 or F64"))),
    };
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let converted = F::cast(v);
            if !v.is_finite() {
                Err(bad(path, format!("tensor {name}: element {i} is {v}; a checkpoint holds finite values only")))
            } else if !converted.is_finite() {
                Err(bad(path, format!("tensor {name}: element {i} is {v:e}, beyond the range of {}", F::NAME)))
            } else {
                Ok(converted)
            }
        })
        .collect()
}

/// The first value of a tensor that is not finite, as `tensor {name}: element {i} is {v}`.
fn first_not_finite<F: Float>(name: &str, values: &ArrayD<F>) -> Option<String> {
    let (i, v) = values.iter().enumerate().find(|(_, v)| !v.is_finite())?;
    Some(format!("tensor {name}: element {i} is {}", v.as_f64()))
}

/// Writes `tensors` to `path` atomically (see the [module documentation](self)). A checkpoint holds
/// finite values only: one the project writes, it can read back.
///
/// # Errors
/// [`Error::InvalidArgument`] if two tensors have the same name or a value is not finite (naming it);
/// otherwise if the file cannot be written: the previous file at `path`, if any, is then unchanged,
/// and no `.partial` file is left.
pub fn save<F: Float>(path: &Path, tensors: &[NamedArray<F>], metadata: &BTreeMap<String, String>) -> Result<()> {
    // Checked here: the crate's serialiser indexes out of bounds on a repeated name.
    let mut names = BTreeSet::new();
    if let Some((name, _)) = tensors.iter().find(|(n, _)| !names.insert(n.as_str())) {
        return Err(Error::InvalidArgument(format!("checkpoint {}: two tensors are named {name}", path.display())));
    }
    if let Some(problem) = tensors.iter().find_map(|(n, a)| first_not_finite(n, a)) {
        return Err(Error::InvalidArgument(format!(
            "checkpoint {}: {problem}; a checkpoint holds finite values only (did training diverge?)",
            path.display()
        )));
    }
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, a)| {
            let (dtype, bytes) = encode(a);
            (n.clone(), dtype, a.shape().to_vec(), bytes)
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(n, dtype, shape, bytes)| Ok((n.as_str(), TensorView::new(*dtype, shape.clone(), bytes)?)))
        .collect::<std::result::Result<Vec<_>, SafeTensorError>>();
    // `format` last, so that it replaces a caller's key of that name.
    let info = metadata.clone().into_iter().chain([("format".to_owned(), FORMAT.to_owned())]).collect();
    let bytes = views
        .and_then(|views| safetensors::serialize(views, Some(info)))
        .map_err(|e| bad(path, format!("cannot serialise the checkpoint: {e}")))?;
    write_atomically(path, &bytes)
}

/// `<path>.partial`, where a save writes before renaming.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let partial = partial_path(path);
    let written = write_and_rename(&partial, path, bytes);
    if written.is_err() {
        // Best effort: the error being reported is the write's, not this one's.
        let _ = std::fs::remove_file(&partial);
    }
    written?;
    // Make the rename itself durable.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes `bytes` to `partial`, flushes it to disk and renames it to `path`.
fn write_and_rename(partial: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(partial).map_err(io_error(partial))?;
    file.write_all(bytes).map_err(io_error(partial))?;
    file.sync_all().map_err(io_error(partial))?;
    drop(file);
    std::fs::rename(partial, path).map_err(io_error(path))
}

/// A checkpoint read from a file.
#[derive(Clone, Debug)]
pub struct Checkpoint<F> {
    /// The tensors, in the file's (name) order.
    pub tensors: Vec<NamedArray<F>>,
    /// The metadata, including `format`.
    pub metadata: BTreeMap<String, String>,
}

/// Reads a checkpoint, converting its values to `F` (see the [module documentation](self) for what is
/// checked).
///
/// # Errors
/// A missing file; a path that is not a regular file or is larger than [`MAX_FILE_BYTES`]; a file that is
/// not a safetensors file of F32/F64 tensors, or whose header is malformed or disagrees with its data; a
/// tensor holding a value that is not finite (or, for an `f32` model, beyond `f32`'s range).
pub fn load<F: Float>(path: &Path) -> Result<Checkpoint<F>> {
    let bytes = read::read(path, "save a checkpoint there first", MAX_FILE_BYTES, "checkpoint::MAX_FILE_BYTES")?;
    let not_safetensors = |reason: String| bad(path, format!("not a safetensors file: {reason}"));
    let Some((len_bytes, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(not_safetensors(format!("{} bytes is too short for the header's length", bytes.len())));
    };
    let header_len = u64::from_le_bytes(*len_bytes);
    let Some(header_bytes) = usize::try_from(header_len).ok().and_then(|n| rest.get(..n)) else {
        return Err(not_safetensors(format!(
            "the header's length is {header_len} bytes but only {} follow it",
            rest.len()
        )));
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(not_safetensors(format!(
            "the header's length is {header_len} bytes, more than the format's {MAX_HEADER_BYTES}"
        )));
    }
    let data = &rest[header_bytes.len()..];
    let text = std::str::from_utf8(header_bytes).map_err(|_| not_safetensors("the header is not UTF-8 text".into()))?;
    let header =
        header::parse(text, data.len()).map_err(|reason| bad(path, format!("safetensors header: {reason}")))?;
    let tensors = header
        .tensors
        .into_iter()
        .map(|(name, info)| {
            let (start, end) = info.data_offsets;
            let bytes =
                data.get(start..end).ok_or_else(|| bad(path, format!("tensor {name}: offsets out of range")))?;
            let values = decode::<F>(path, &name, info.dtype, bytes)?;
            let array = ArrayD::from_shape_vec(IxDyn(&info.shape), values)
                .map_err(|e| bad(path, format!("tensor {name}: shape {:?}: {e}", info.shape)))?;
            Ok((name, array))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    Ok(Checkpoint { tensors: tensors.into_iter().collect(), metadata: header.metadata })
}

/// How the names in a checkpoint become the model's names when loading: prefixes replaced in order,
/// each where a name starts with it (names without it are left alone).
///
/// ```
/// use scratch::checkpoint::Rename;
///
/// // A model saved from DistributedDataParallel, whose every name starts with `module.`.
/// let ddp = Rename::strip_prefix("module.");
/// assert_eq!(ddp.apply("module.fc1.weight"), "fc1.weight");
/// assert_eq!(ddp.apply("fc1.weight"), "fc1.weight");
/// let both = Rename::strip_prefix("module.").replace_prefix("enc.", "encoder.");
/// assert_eq!(both.apply("module.enc.0.weight"), "encoder.0.weight");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rename {
    /// `(from, to)` prefixes, applied in order.
    rules: Vec<(String, String)>,
}

impl Rename {
    /// Names that start with `prefix` lose it.
    pub fn strip_prefix(prefix: impl Into<String>) -> Self {
        Rename::default().replace_prefix(prefix, "")
    }

    /// Every name gains `prefix`.
    pub fn add_prefix(prefix: impl Into<String>) -> Self {
        Rename::default().replace_prefix("", prefix)
    }

    /// Then, names that start with `from` have it replaced by `to`.
    #[must_use]
    pub fn replace_prefix(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.rules.push((from.into(), to.into()));
        self
    }

    /// The model's name for the checkpoint's `name`.
    pub fn apply(&self, name: &str) -> String {
        self.rules.iter().fold(name.to_string(), |name, (from, to)| match name.strip_prefix(from.as_str()) {
            Some(rest) => format!("{to}{rest}"),
            None => name,
        })
    }
}

/// Matches a checkpoint's `tensors` (renamed by `rename`) to the parameters a model `expects` (full
/// name and shape in PyTorch's layout). A parameter tied to another (`ties`: `(parameter, source)`)
/// may be absent, and then takes its source's tensor; present, it must equal its source's.
///
/// # Errors
/// [`Error::BadFile`] listing every problem at once: two names renamed to one, tensors the model needs
/// but the checkpoint lacks, tensors the model does not have, shapes that differ (both given), tied
/// tensors whose values differ.
pub fn match_tensors<'t, F: Float>(
    source: &Path,
    expects: &[(String, Vec<usize>)],
    tensors: &'t [NamedArray<F>],
    rename: &Rename,
    ties: &[(String, String)],
) -> Result<BTreeMap<String, &'t ArrayD<F>>> {
    let mut problems = Vec::new();
    let mut by_name: BTreeMap<String, (&str, &ArrayD<F>)> = BTreeMap::new();
    for (name, a) in tensors {
        let renamed = rename.apply(name);
        if let Some((other, _)) = by_name.insert(renamed.clone(), (name, a)) {
            problems.push(format!("{other} and {name} are both renamed {renamed}"));
        }
    }
    let origin = |name: &str, file: &str| if name == file { String::new() } else { format!(" ({file} in the file)") };
    let tied_to = |name: &str| ties.iter().find(|(t, _)| t == name).map(|(_, s)| s.as_str());
    let mut matched = BTreeMap::new();
    for (name, shape) in expects {
        match (by_name.get(name), tied_to(name)) {
            (None, Some(_)) => {}
            (None, None) => problems.push(format!("missing tensor {name} (model shape {shape:?})")),
            (Some((file, a)), _) if a.shape() != shape.as_slice() => problems.push(format!(
                "{name}: the model has shape {shape:?}, the file {:?}{}",
                a.shape(),
                origin(name, file)
            )),
            (Some((_, a)), _) => match first_not_finite(name, a) {
                Some(problem) => problems.push(format!("{problem}; a checkpoint holds finite values only")),
                None => {
                    matched.insert(name.clone(), *a);
                }
            },
        }
    }
    for (name, (file, a)) in &by_name {
        if !expects.iter().any(|(n, _)| n == name) {
            problems.push(format!("unexpected tensor {name} {:?} (not in the model){}", a.shape(), origin(name, file)));
        }
    }
    for (tied, source) in ties {
        match (matched.get(tied), matched.get(source)) {
            (Some(a), Some(b)) if a != b => {
                problems.push(format!("{tied} is {source} in the model, but the file gives them different values"))
            }
            (None, Some(b)) => {
                matched.insert(tied.clone(), *b);
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(matched)
    } else {
        Err(bad(source, format!("does not match the model:\n  {}", problems.join("\n  "))))
    }
}

/// Sets each of `params` (full name, parameter) from the tensor of the same name (after `rename`), in
/// the canonical layout; see [`match_tensors`].
///
/// # Errors
/// As [`match_tensors`]; nothing is changed unless everything matches.
pub fn apply<F: Float>(
    source: &Path,
    params: Vec<(String, &mut Param<F>)>,
    tensors: &[NamedArray<F>],
    rename: &Rename,
    ties: &[(String, String)],
) -> Result<()> {
    let expects: Vec<(String, Vec<usize>)> = params.iter().map(|(n, p)| (n.clone(), p.canonical_shape())).collect();
    let matched = match_tensors(source, &expects, tensors, rename, ties)?;
    for (name, p) in params {
        p.set_canonical(matched[name.as_str()], &name)?;
    }
    Ok(())
}
