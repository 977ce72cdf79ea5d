//! Checkpoints: round trips, type conversion, mismatch reports, bad files, and a save killed half-way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayD, IxDyn};
use scratch::checkpoint::{self, partial_path};
use scratch::prelude::*;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoints").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn net<F: Float>(widths: &[usize], seed: u32) -> NeuralNetwork<F> {
    let mut rng = RandomState::new(seed);
    let layers: Vec<Box<dyn Layer<F>>> = widths
        .windows(2)
        .map(|w| {
            Box::new(Dense::new(w[0], DenseSpec::new(w[1]).activation(Activation::Tanh), &mut rng).unwrap())
                as Box<dyn Layer<F>>
        })
        .collect();
    NeuralNetwork::new(layers, MeanSquaredError::new())
}

#[test]
fn round_trip_restores_predictions_in_both_types() {
    let d = dir("round-trip");
    let x: Array2<f64> = RandomState::new(1).randn((5, 4));
    let a = net::<f64>(&[4, 6, 3], 1);
    a.save(d.join("a.safetensors")).unwrap();
    let mut b = net::<f64>(&[4, 6, 3], 2);
    assert_ne!(a.predict(&x).unwrap(), b.predict(&x).unwrap());
    b.load(d.join("a.safetensors")).unwrap();
    assert_eq!(a.predict(&x).unwrap(), b.predict(&x).unwrap());

    // An f64 checkpoint loads into an f32 model and back.
    let mut c = net::<f32>(&[4, 6, 3], 3);
    c.load(d.join("a.safetensors")).unwrap();
    let xf = x.mapv(|v| v as f32);
    let (pa, pc) = (a.predict(&x).unwrap(), c.predict(&xf).unwrap());
    assert!(pa.iter().zip(pc.iter()).all(|(a, c)| (a - f64::from(*c)).abs() < 1e-5));
    c.save(d.join("c.safetensors")).unwrap();
    let file = checkpoint::load::<f64>(&d.join("c.safetensors")).unwrap();
    assert_eq!(file.metadata["format"], checkpoint::FORMAT);
    assert_eq!(file.metadata["engine"], "scratch");
    let names: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.weight"]);
    // PyTorch's layout: weight (out, in), bias (out,).
    assert_eq!(file.tensors[1].1.shape(), &[6, 4]);
    assert_eq!(file.tensors[0].1.shape(), &[6]);
}

#[test]
fn mismatches_are_listed_and_nothing_changes() {
    let d = dir("mismatch");
    net::<f64>(&[4, 6, 3], 1).save(d.join("small.safetensors")).unwrap();
    let mut other = net::<f64>(&[4, 7, 3, 2], 2);
    let before = other.named_parameters();
    let err = other.load(d.join("small.safetensors")).unwrap_err().to_string();
    for expected in [
        "small.safetensors",
        "layers.0.weight: the model has shape [7, 4], the file [6, 4]",
        "layers.1.weight: the model has shape [3, 7], the file [3, 6]",
        "missing tensor layers.2.weight (model shape [2, 3])",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    assert_eq!(other.named_parameters(), before);

    let mut smaller = net::<f64>(&[4, 6], 3);
    let err = smaller.load(d.join("small.safetensors")).unwrap_err().to_string();
    assert!(err.contains("unexpected tensor layers.1.weight [3, 6]"), "{err}");
}

#[test]
fn bad_files() {
    let d = dir("bad");
    let err = net::<f64>(&[2, 1], 1).load(d.join("absent.safetensors")).unwrap_err().to_string();
    assert!(err.contains("absent.safetensors") && err.contains("not found"), "{err}");
    std::fs::write(d.join("junk.safetensors"), b"this is not a checkpoint").unwrap();
    let err = net::<f64>(&[2, 1], 1).load(d.join("junk.safetensors")).unwrap_err().to_string();
    assert!(err.contains("junk.safetensors") && err.contains("not a safetensors file"), "{err}");
}

/// A safetensors file with the header `json` and the data `data`.
fn safetensors_file(json: &str, data: &[u8]) -> Vec<u8> {
    [&(json.len() as u64).to_le_bytes()[..], json.as_bytes(), data].concat()
}

#[test]
fn malformed_headers_and_offsets_are_errors() {
    let d = dir("malformed");
    let f64s = |n: usize| vec![0u8; 8 * n];
    let entry = |name: &str, dtype: &str, shape: &str, offsets: &str| {
        format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}"#)
    };
    let size = ((1u64 << 58) - 1) * 8;
    let near_2_64: Vec<String> = (0..8)
        .map(|i| {
            entry(&format!("t{i}"), "F64", &format!("[{}]", size / 8), &format!("[{},{}]", i * size, (i + 1) * size))
        })
        .collect();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            safetensors_file(
                &format!("{{{},{}}}", entry("a", "F64", "[1]", "[0,8]"), entry("a", "F64", "[1]", "[8,16]")),
                &f64s(2),
            ),
            "tensor name \"a\" appears twice",
        ),
        (
            safetensors_file(
                &format!("{{{},{}}}", entry("a", "F64", "[2]", "[0,16]"), entry("b", "F64", "[1]", "[8,16]")),
                &f64s(2),
            ),
            "tensor b: data_offsets [8, 16] overlap",
        ),
        (
            safetensors_file(&format!("{{{}}}", entry("a", "F64", "[4]", "[0,32]")), &f64s(2)),
            "go past the end of the data (16 bytes",
        ),
        (
            safetensors_file(&format!("{{{}}}", entry("a", "F64", "[1]", "[0,8]")), &f64s(2)),
            "cover 8 bytes of data but the file holds 16",
        ),
        (
            safetensors_file(&format!("{{{}}}", entry("a", "F64", "[3]", "[0,16]")), &f64s(2)),
            "data_offsets do not span the bytes its shape and dtype need",
        ),
        (
            safetensors_file(&format!("{{{}}}", entry("a", "BF16", "[4]", "[0,8]")), &f64s(1)),
            "dtype \"BF16\"; checkpoints hold F32 or F64",
        ),
        // Offsets near 2⁶⁴: eight tensors of 2⁵⁸ - 1 values, each one's size agreeing with its shape,
        // end 64 bytes before 2⁶⁴, and adding the header's length to that wraps around.
        (safetensors_file(&format!("{{{}}}", near_2_64.join(",")), &f64s(1)), "go past the end of the data"),
        (
            safetensors_file(&format!("{{{}}}", entry("a", "F64", "[4294967296,4294967296]", "[0,8]")), &f64s(1)),
            "overflows",
        ),
        (
            [&u64::MAX.to_le_bytes()[..], b"{}"].concat(),
            "the header's length is 18446744073709551615 bytes but only 2 follow it",
        ),
        (vec![1, 2, 3], "3 bytes is too short"),
    ];
    for (i, (bytes, expected)) in cases.into_iter().enumerate() {
        let path = d.join(format!("case{i}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        let err = checkpoint::load::<f64>(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("case{i}.safetensors")) && err.contains(expected), "case {i}: {err}");
    }
}

#[test]
fn non_finite_values_are_refused_naming_the_tensor() {
    let d = dir("non-finite");
    let path = d.join("model.safetensors");
    for bad in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
        // Saving refuses them: a file the project writes, it can read back.
        let mut weight = ArrayD::zeros(IxDyn(&[2, 3]));
        weight[[1, 0]] = bad;
        let tensors =
            [("layers.0.bias".to_string(), ArrayD::zeros(IxDyn(&[2]))), ("layers.0.weight".to_string(), weight)];
        let err = checkpoint::save::<f64>(&path, &tensors, &Default::default()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("tensor layers.0.weight: element 3 is {bad}; a checkpoint holds finite values only")),
            "{err}"
        );
        assert!(!path.exists() && !partial_path(&path).exists());
        // A file written elsewhere with them is refused by every loader, naming the tensor.
        let data: Vec<u8> = [0.0, 0.0, 0.0, bad].iter().flat_map(|v: &f64| v.to_le_bytes()).collect();
        let json = r#"{"layers.0.weight":{"dtype":"F64","shape":[2,2],"data_offsets":[0,32]}}"#;
        std::fs::write(&path, safetensors_file(json, &data)).unwrap();
        let err = checkpoint::load::<f64>(&path).unwrap_err().to_string();
        let expected = format!(
            "model.safetensors: tensor layers.0.weight: element 3 is {bad}; a checkpoint holds finite values only"
        );
        assert!(err.contains(&expected), "{err}");
        let err = net::<f64>(&[2, 2], 1).load(&path).unwrap_err().to_string();
        assert!(err.contains("layers.0.weight: element 3"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
    // A finite f64 beyond f32's range loads as f64 but not as f32.
    let tensors = [("w".to_string(), ArrayD::from_elem(IxDyn(&[1]), 1e300))];
    checkpoint::save::<f64>(&path, &tensors, &Default::default()).unwrap();
    assert_eq!(checkpoint::load::<f64>(&path).unwrap().tensors[0].1[[0]], 1e300);
    let err = checkpoint::load::<f32>(&path).unwrap_err().to_string();
    assert!(err.contains("tensor w: element 0 is 1e300, beyond the range of f32"), "{err}");
}

#[test]
fn paths_that_are_not_regular_files_are_refused() {
    let d = dir("not-regular");
    let err = checkpoint::load::<f64>(&d).unwrap_err().to_string();
    assert!(err.contains("not-regular: is a directory, not a file"), "{err}");
    if Path::new("/dev/zero").exists() {
        let err = checkpoint::load::<f64>(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(err.contains("/dev/zero: is not a regular file"), "{err}");
    }
    // A sparse file beyond the maximum is refused by its length alone.
    let big = d.join("big.safetensors");
    std::fs::File::create(&big).unwrap().set_len(checkpoint::MAX_FILE_BYTES + 1).unwrap();
    let err = checkpoint::load::<f64>(&big).unwrap_err().to_string();
    assert!(err.contains("big.safetensors: the file has 4294967297 bytes, more than the 4294967296"), "{err}");
    std::fs::remove_file(&big).unwrap();
}

#[test]
fn a_failed_save_leaves_no_partial_file_and_loading_ignores_partial_files() {
    let d = dir("failed-save");
    let model = net::<f64>(&[3, 2], 1);
    // The target is a non-empty folder: the rename over it fails.
    let target = d.join("model.safetensors");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    let err = model.save(&target).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(!partial_path(&target).exists(), "the failed save left {}", partial_path(&target).display());
    assert!(target.join("inside").exists());

    // Only a partial file: loading the target does not pick it up.
    let other = d.join("other.safetensors");
    model.save(&other).unwrap();
    std::fs::rename(&other, partial_path(&other)).unwrap();
    let err = net::<f64>(&[3, 2], 2).load(&other).unwrap_err().to_string();
    assert!(err.contains("other.safetensors not found"), "{err}");

    // Two tensors with one name are refused before anything is written.
    let twice = [("w".to_string(), ArrayD::<f64>::zeros(IxDyn(&[1]))), ("w".to_string(), ArrayD::zeros(IxDyn(&[1])))];
    let err = checkpoint::save(&d.join("twice.safetensors"), &twice, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("two tensors are named w"), "{err}");
    assert!(!d.join("twice.safetensors").exists() && !partial_path(&d.join("twice.safetensors")).exists());
}

const CHILD_ENV: &str = "DLFS_CHECKPOINT_CRASH_CHILD";

/// In the child process: save a large checkpoint to the given path (the parent kills it mid-way).
fn child_save(target: &Path) {
    let big = ArrayD::from_elem(IxDyn(&[40_000_000]), 1.5f64);
    checkpoint::save(target, &[("layers.0.weight".to_string(), big)], &Default::default()).unwrap();
}

#[test]
fn a_save_killed_half_way_keeps_the_previous_checkpoint() {
    if let Some(target) = std::env::var_os(CHILD_ENV) {
        child_save(Path::new(&target));
        return;
    }
    let d = dir("crash");
    let target = d.join("model.safetensors");
    let old = net::<f64>(&[3, 2], 7);
    old.save(&target).unwrap();
    let full_size = 8 + 40_000_000 * 8;

    let mut killed_mid_write = false;
    for _attempt in 0..5 {
        let _ = std::fs::remove_file(partial_path(&target));
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "checkpoint::a_save_killed_half_way_keeps_the_previous_checkpoint", "--nocapture"])
            .env(CHILD_ENV, &target)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let partial_size = loop {
            let size = std::fs::metadata(partial_path(&target)).map(|m| m.len()).unwrap_or(0);
            if size > 0 || start.elapsed() > Duration::from_secs(60) {
                break size;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever the timing, the target is a complete checkpoint: the old one unless the child
        // finished and renamed before the kill.
        let mut reloaded = net::<f64>(&[3, 2], 8);
        match reloaded.load(&target) {
            Ok(()) => assert_eq!(reloaded.named_parameters(), old.named_parameters()),
            Err(e) => {
                let file = checkpoint::load::<f64>(&target).unwrap_or_else(|_| panic!("the target is corrupt: {e}"));
                assert_eq!(file.tensors[0].1.len(), 40_000_000, "the new checkpoint is complete");
                old.save(&target).unwrap();
                continue;
            }
        }
        if partial_size > 0 && partial_size < full_size as u64 {
            killed_mid_write = true;
            break;
        }
    }
    assert!(killed_mid_write, "never caught the child in the middle of writing");
    // A later save replaces the leftover partial file and succeeds.
    old.save(&target).unwrap();
    assert!(!partial_path(&target).exists());
}
