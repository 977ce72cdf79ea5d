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
//! the target, so a process killed during a save leaves the previous checkpoint intact.
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::param::Param;
use crate::{Error, Float, Result};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "dlfs-checkpoint/1";

/// A parameter name and its value in the canonical layout.
pub type NamedArray<F> = (String, ArrayD<F>);

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
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

fn decode<F: Float>(path: &Path, name: &str, view: &TensorView<'_>) -> Result<ArrayD<F>> {
    let data = view.data();
    let values: Vec<F> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| F::cast(f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes")))))
            .collect(),
        Dtype::F64 => {
            data.chunks_exact(8).map(|c| F::cast(f64::from_le_bytes(c.try_into().expect("8 bytes")))).collect()
        }
        other => return Err(bad(path, format!("tensor {name} has dtype {other:?}; checkpoints hold F32 or F64"))),
    };
    ArrayD::from_shape_vec(IxDyn(view.shape()), values)
        .map_err(|_| bad(path, format!("tensor {name}: its data does not match its shape {:?}", view.shape())))
}

/// Writes `tensors` to `path` atomically (see the [module documentation](self)).
///
/// # Errors
/// If the file cannot be written; the previous file at `path`, if any, is then unchanged.
pub fn save<F: Float>(path: &Path, tensors: &[NamedArray<F>], metadata: &BTreeMap<String, String>) -> Result<()> {
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, a)| {
            let (dtype, bytes) = encode(a);
            (n.clone(), dtype, a.shape().to_vec(), bytes)
        })
        .collect();
    let views = encoded.iter().map(|(n, dtype, shape, bytes)| {
        let view = TensorView::new(*dtype, shape.clone(), bytes).expect("the byte count matches the shape");
        (n.as_str(), view)
    });
    let mut info: HashMap<String, String> = metadata.clone().into_iter().collect();
    info.insert("format".into(), FORMAT.into());
    let bytes = safetensors::tensor::serialize(views, &Some(info))
        .map_err(|e| bad(path, format!("cannot serialise the checkpoint: {e:?}")))?;
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
    let mut file = File::create(&partial).map_err(io_error(&partial))?;
    file.write_all(bytes).map_err(io_error(&partial))?;
    file.sync_all().map_err(io_error(&partial))?;
    drop(file);
    std::fs::rename(&partial, path).map_err(io_error(path))?;
    // Make the rename itself durable.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A checkpoint read from a file.
#[derive(Clone, Debug)]
pub struct Checkpoint<F> {
    /// The tensors, in the file's (name) order.
    pub tensors: Vec<NamedArray<F>>,
    /// The metadata, including `format`.
    pub metadata: BTreeMap<String, String>,
}

/// Reads a checkpoint, converting its values to `F`.
///
/// # Errors
/// A missing file, or one that is not a safetensors file of F32/F64 tensors.
pub fn load<F: Float>(path: &Path) -> Result<Checkpoint<F>> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => {
            Error::MissingFile { path: path.to_owned(), hint: "save a checkpoint there first".into() }
        }
        _ => Error::Io { path: path.to_owned(), source },
    })?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, format!("not a safetensors file: {e:?}")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, format!("not a safetensors file: {e:?}")))?;
    let metadata: BTreeMap<String, String> = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let mut tensors = file
        .tensors()
        .iter()
        .map(|(name, view)| Ok((name.clone(), decode(path, name, view)?)))
        .collect::<Result<Vec<_>>>()?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Checkpoint { tensors, metadata })
}

/// Every difference between the tensors a model expects (`expected`: name and canonical shape) and
/// `tensors`: tensors the model needs but the list lacks, tensors the model does not have, and shapes
/// that differ (both shapes given). Empty when they match.
pub fn mismatches<F>(expected: &[(String, Vec<usize>)], tensors: &[NamedArray<F>]) -> Vec<String> {
    let by_name: BTreeMap<&str, &ArrayD<F>> = tensors.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let mut problems = Vec::new();
    for (name, shape) in expected {
        match by_name.get(name.as_str()) {
            None => problems.push(format!("missing tensor {name} (model shape {shape:?})")),
            Some(a) if a.shape() != shape.as_slice() => {
                problems.push(format!("{name}: the model has shape {shape:?}, the file {:?}", a.shape()))
            }
            Some(_) => {}
        }
    }
    let wanted: std::collections::BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    for (name, a) in tensors {
        if !wanted.contains(name.as_str()) {
            problems.push(format!("unexpected tensor {name} {:?} (not in the model)", a.shape()));
        }
    }
    problems
}

/// The error for a non-empty list of [`mismatches`] of `source` (a file, or `(tensors)`).
pub fn mismatch_error(source: &Path, problems: &[String]) -> Error {
    bad(source, format!("does not match the model:\n  {}", problems.join("\n  ")))
}

/// Sets each of `params` (name, parameter) from the tensor of the same name, in the canonical layout.
///
/// # Errors
/// [`Error::BadFile`] listing every [mismatch](mismatches) at once; nothing is changed unless everything
/// matches.
pub fn apply<F: Float>(source: &Path, params: Vec<(String, &mut Param<F>)>, tensors: &[NamedArray<F>]) -> Result<()> {
    let expected: Vec<(String, Vec<usize>)> = params.iter().map(|(n, p)| (n.clone(), p.canonical_shape())).collect();
    let problems = mismatches(&expected, tensors);
    if !problems.is_empty() {
        return Err(mismatch_error(source, &problems));
    }
    let by_name: BTreeMap<&str, &ArrayD<F>> = tensors.iter().map(|(n, a)| (n.as_str(), a)).collect();
    for (name, p) in params {
        p.set_canonical(by_name[name.as_str()], &name)?;
    }
    Ok(())
}
