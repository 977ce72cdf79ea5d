//! The `dlfs` program's command line: listing, and the checks it makes before training anything, each
//! failing fast with a message that says what to change (and no backtrace: every run here has
//! `RUST_BACKTRACE=1`). The corpora are tiny ones written for the test; nothing trains for long.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use examples::experiments::listing;
use examples::language_model::WORKS;

fn dlfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlfs")).args(args).env("RUST_BACKTRACE", "1").output().expect("dlfs runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `dlfs` expecting an error; returns its standard error, having checked that it failed with a
/// message and no backtrace, and printed no results.
fn fails(args: &[&str]) -> String {
    let out = dlfs(args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    assert!(err.contains("error: "), "{args:?}: {err}");
    assert!(!err.to_lowercase().contains("stack backtrace"), "{args:?} printed a backtrace: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(text(&out.stdout).is_empty(), "{args:?} printed results: {}", text(&out.stdout));
    for mark in ["Some(", "None", "Os {", " { ", "Error("] {
        assert!(!err.contains(mark), "{args:?}: debug formatting ({mark}) in: {err}");
    }
    err
}

/// A folder for one test, removed at the end.
struct Folder(PathBuf);

impl Folder {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("dlfs-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Folder(dir)
    }

    fn path(&self, relative: &str) -> String {
        self.0.join(relative).to_str().unwrap().to_string()
    }

    /// A data folder whose Shakespeare corpus is `text` for each work.
    fn with_corpus(name: &str, text: &str) -> Self {
        let folder = Folder::new(name);
        let dir = folder.0.join("text").join("shakespeare");
        std::fs::create_dir_all(&dir).unwrap();
        for work in WORKS {
            std::fs::write(dir.join(format!("{work}.txt")), text).unwrap();
        }
        folder
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A corpus of 8 × 480 characters: long enough for a batch of windows and a held-out window, with a
/// vocabulary of 26 characters (no `!`).
fn small_corpus(name: &str) -> Folder {
    Folder::with_corpus(name, &"ROMEO. What light through yonder window breaks?\n".repeat(10))
}

#[test]
fn list_names_every_experiment_of_the_book() {
    let out = dlfs(&["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    for name in
        ["boston", "ch4-glorot", "ch5-cnn", "ch6-lstm", "ch6-gru-book", "ch7-convnet", "ch7-lstm", "ch7-autoencoder"]
    {
        assert!(listing.contains(name), "{name} missing from:\n{listing}");
    }
    assert!(!listing.contains("4a-") && !listing.contains("5-demo"), "{listing}");
}

#[test]
fn the_readme_table_of_experiments_is_the_registry_s() {
    let out = dlfs(&["list", "--markdown"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let generated = text(&out.stdout);
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme.find(listing::BEGIN).expect("the README marks its table of experiments");
    let end = readme[start..].find(listing::END).expect("the README marks the end of its table") + start;
    let table = &readme[start..end + listing::END.len()];
    assert!(
        format!("{table}\n") == generated,
        "README.md's table of experiments differs from the registry's; replace it with the output of \
         `dlfs list --markdown`:\n{generated}"
    );
}

#[test]
fn unknown_or_repeated_experiments_fail_before_anything_runs() {
    let err = fails(&["run", "boston", "ch9-nothing"]);
    assert!(err.contains("unknown experiment \"ch9-nothing\"") && err.contains("dlfs list"), "{err}");
    let err = fails(&["run", "boston", "ch6-rnn", "boston"]);
    assert!(err.contains("boston is named twice"), "{err}");
}

#[test]
fn counts_must_be_positive() {
    for flag in ["--epochs", "--iterations", "--hidden", "--layers"] {
        for value in ["0", "-2"] {
            let err = fails(&["run", "ch7-convnet", flag, value]);
            assert!(err.contains("at least 1") && err.contains(flag), "{flag} {value}: {err}");
        }
    }
}

#[test]
fn learning_rates_must_be_finite_and_positive_and_temperatures_finite_and_not_negative() {
    for value in ["-1", "0", "nan", "inf"] {
        let err = fails(&["run", "ch6-lstm", "--lr", value]);
        assert!(err.contains("finite number above 0") && err.contains("--lr"), "--lr {value}: {err}");
    }
    for value in ["-1", "nan", "inf"] {
        let err = fails(&["run", "ch6-lstm", "--temperature", value]);
        assert!(err.contains("finite number of at least 0") && err.contains("--temperature"), "{value}: {err}");
    }
}

#[test]
fn greedy_sampling_at_temperature_0_runs() {
    let data = small_corpus("greedy");
    let args = ["run", "ch6-rnn", "--temperature", "0", "--iterations", "1", "--hidden", "4", "--engine", "scratch"];
    let out = dlfs(&[&args[..], &["--quiet", "--data", &data.path(""), "--out", &data.path("out")]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn the_prompt_must_not_be_empty() {
    let err = fails(&["run", "ch6-lstm", "--prompt", ""]);
    assert!(err.contains("--prompt") && err.contains("at least one character"), "{err}");
}

#[test]
fn options_an_experiment_does_not_use_are_named_and_missing_data_says_what_to_run() {
    let empty = Folder::new("no-data");
    let err = fails(&["run", "divergence", "--engine", "torch", "--epochs", "3", "--data", &empty.path("")]);
    assert!(err.contains("note: divergence does not use --engine, --epochs"), "{err}");
    assert!(err.contains("not found") && err.contains("make setup"), "{err}");
    // The cause comes after the context, on its own line.
    let err = fails(&["run", "ch6-rnn", "--data", &empty.path("")]);
    assert!(err.contains("error: loading the Shakespeare corpus\ncaused by: "), "{err}");
}

#[test]
fn cuda_is_checked_before_anything_runs_whichever_engines_run() {
    if torch::Device::Cuda.resolve().is_ok() {
        eprintln!("skipped: this machine has CUDA");
        return;
    }
    let empty = Folder::new("cuda");
    for engine in ["torch", "both"] {
        // No data: the device is checked before any is loaded.
        let err = fails(&["run", "ch4-glorot", "--device", "cuda", "--engine", engine, "--data", &empty.path("")]);
        assert!(err.contains("--device cuda: CUDA was requested but is not available"), "{engine}: {err}");
    }
    // The from-scratch engine alone does not use the device: a note, and the run goes on (to the data).
    let err = fails(&["run", "ch4-glorot", "--device", "cuda", "--engine", "scratch", "--data", &empty.path("")]);
    assert!(err.contains("note: --device applies to the torch engine") && err.contains("not found"), "{err}");
}

#[test]
fn a_checkpoint_to_resume_from_must_exist_and_fit_the_network() {
    let data = small_corpus("resume");
    let (dir, out) = (data.path(""), data.path("out"));
    let missing = data.path("missing.safetensors");
    let err = fails(&["run", "ch6-lstm", "--resume", &missing, "--data", &dir, "--out", &out]);
    assert!(err.contains(&format!("--resume {missing}")) && err.contains("dlfs run"), "{err}");
    let err = fails(&["run", "ch6-lstm", "--resume", &dir, "--data", &dir, "--out", &out]);
    assert!(err.contains("not a regular file"), "{err}");
    let garbage = data.path("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let err = fails(&["run", "ch6-lstm", "--resume", &garbage, "--data", &dir, "--out", &out]);
    assert!(err.contains("not a checkpoint;") && err.contains("caused by: "), "{err}");
}

#[test]
fn a_checkpoint_resumes_only_the_experiment_and_description_that_wrote_it() {
    let data = small_corpus("resume-other");
    let (dir, out) = (data.path(""), data.path("out"));
    let tiny = ["--iterations", "1", "--hidden", "4", "--engine", "scratch", "--quiet", "--data", &dir, "--out", &out];
    let trained = dlfs(&[&["run", "ch6-gru"], &tiny[..]].concat());
    assert!(trained.status.success(), "{}", text(&trained.stderr));
    let checkpoint = data.path("out/ch6-gru-scratch.safetensors");
    // Same parameter names and shapes, another experiment.
    let err = fails(&[&["run", "ch6-gru-book", "--resume", &checkpoint], &tiny[..]].concat());
    assert!(err.contains("written by `dlfs run ch6-gru`, not ch6-gru-book"), "{err}");
    // Same experiment, another description of its network.
    let other = ["--iterations", "1", "--hidden", "5", "--engine", "scratch", "--data", &dir, "--out", &out];
    let err = fails(&[&["run", "ch6-gru", "--resume", &checkpoint], &other[..]].concat());
    assert!(err.contains("another description of ch6-gru's network"), "{err}");
    // A file that records neither, as older versions wrote them.
    let old = data.path("old.safetensors");
    let tensors = scratch::checkpoint::load::<f32>(Path::new(&checkpoint)).unwrap().tensors;
    scratch::checkpoint::save(Path::new(&old), &tensors, &Default::default()).unwrap();
    let err = fails(&[&["run", "ch6-gru", "--resume", &old], &tiny[..]].concat());
    assert!(err.contains("does not record the experiment that wrote it"), "{err}");
    let resumed = dlfs(&[&["run", "ch6-gru", "--resume", &checkpoint], &tiny[..]].concat());
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
}

#[test]
fn sizes_that_overflow_or_do_not_fit_in_memory_are_refused_before_training() {
    let data = small_corpus("sizes");
    let (dir, out) = (data.path(""), data.path("out"));
    for (flag, size, expected) in [
        ("--hidden", "4611686018427387904", ["LSTM(", "is more than the largest size"]),
        ("--hidden", "1000000", ["parameters would need", "more than"]),
        ("--layers", "1000000", ["parameters would need", "more than"]),
    ] {
        let started = Instant::now();
        let err = fails(&["run", "ch6-lstm", flag, size, "--data", &dir, "--out", &out]);
        assert!(expected.iter().all(|e| err.contains(e)), "{flag} {size}: {err}");
        assert!(!err.contains("validation loss"), "trained: {err}");
        assert!(started.elapsed() < Duration::from_secs(10), "{flag} {size}: {:?}", started.elapsed());
    }
    let err = fails(&["run", "ch8-gpt", "--context", "100000", "--batch", "4096", "--data", &dir, "--out", &out]);
    assert!(err.contains("a training step on batches of 4096 would need "), "{err}");
}

/// The resident memory of process `pid` in bytes, from `/proc`.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn training_windows_are_drawn_as_training_goes_not_all_before_it() {
    let data = small_corpus("windows");
    let args = ["run", "ch6-lstm", "--iterations", "1000000000", "--hidden", "4", "--engine", "scratch", "--quiet"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlfs"))
        .args(args)
        .args(["--data", &data.path(""), "--out", &data.path("out")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let resident = resident_bytes(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    // Drawing a billion batches of windows up front took gigabytes within seconds.
    let resident = resident.expect("the run is still training");
    assert!(resident < 300 << 20, "{} MiB resident after 4 s", resident >> 20);
}

#[test]
fn a_corpus_too_short_for_one_training_window_is_found_before_training() {
    let data = Folder::with_corpus("short", "ROMEO.\n");
    let err = fails(&["run", "ch6-lstm", "--data", &data.path(""), "--out", &data.path("out")]);
    assert!(err.contains("the corpus is too short") && err.contains("--data"), "{err}");
    assert!(!err.contains("validation loss"), "trained: {err}");
}

#[test]
fn a_prompt_outside_the_vocabulary_is_found_before_training() {
    let data = small_corpus("prompt");
    let err = fails(&["run", "ch6-gru", "--prompt", "RO!ME%O!", "--data", &data.path(""), "--out", &data.path("out")]);
    assert!(err.contains("--prompt \"RO!ME%O!\": '!', '%' not in the vocabulary"), "{err}");
    assert!(!err.contains("validation loss"), "trained: {err}");
    // Characters as a person reads them, control characters escaped.
    let err = fails(&["run", "ch6-gru", "--prompt", "RO€\t", "--data", &data.path(""), "--out", &data.path("out")]);
    assert!(err.contains("--prompt \"RO€\\t\": '€', '\\t' not in the vocabulary"), "{err}");
}

#[test]
fn missing_fashion_images_are_found_before_any_experiment_trains() {
    let data = small_corpus("fashion");
    let (dir, out) = (data.path(""), data.path("out"));
    let err = fails(&["run", "ch6-lstm", "ch4-glorot", "--dataset", "fashion", "--data", &dir, "--out", &out]);
    assert!(err.contains("fashion-mnist") && err.contains("not found"), "{err}");
    assert!(err.contains("note: ch6-lstm does not use --dataset"), "{err}");
    assert!(!err.contains("validation loss"), "ch6-lstm trained first: {err}");
}

#[test]
fn an_output_folder_that_cannot_be_written_is_found_first() {
    let data = small_corpus("out");
    let file = data.path("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = fails(&["run", "ch6-lstm", "--data", &data.path(""), "--out", &format!("{file}/out")]);
    assert!(err.contains("--out") && err.contains("cannot create the folder"), "{err}");
}

#[test]
fn a_language_model_that_blows_up_stops_with_an_error_instead_of_a_result() {
    let data = small_corpus("diverge");
    for engine in ["scratch", "torch"] {
        let started = Instant::now();
        let args = ["run", "ch6-lstm", "--lr", "1e30", "--iterations", "3", "--hidden", "4", "--engine", engine];
        let err = fails(&[&args[..], &["--data", &data.path(""), "--out", &data.path("out"), "--quiet"]].concat());
        assert!(err.contains(&format!("ch6-lstm: the {engine} engine")), "{err}");
        assert!(err.contains("training diverged at epoch 1, batch "), "{err}");
        assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    }
}

/// The program of the README's section on a project of one's own, between its `cat > src/main.rs` and
/// the end of that file's text.
fn readme_program() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme.find("<!-- own-project:begin -->").expect("the README marks its own-project section");
    let section = &readme[start..];
    let open = "cat > src/main.rs <<'RUST'\n";
    let from = section.find(open).expect("the section writes src/main.rs") + open.len();
    let to = section[from..].find("\nRUST\n").expect("the section ends src/main.rs") + from;
    format!("{}\n", &section[from..to])
}

/// The README's own-project program is `examples/own_project.rs` (which `cargo test` compiles against
/// the crates as they are), and it runs: it trains, saves, loads the weights into libtorch and prints
/// the two engines' agreement. `scripts/outside-project.sh` also runs the section's commands verbatim,
/// from a new Cargo project outside the workspace.
#[test]
fn the_readme_program_is_the_own_project_example_and_runs() {
    assert!(
        readme_program() == include_str!("../examples/own_project.rs"),
        "the program in README.md's section on a project of one's own differs from \
         examples/examples/own_project.rs; make them the same"
    );
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let program = deps.with_file_name("examples").join("own_project");
    assert!(
        program.is_file(),
        "{} not found: `cargo test -p examples` builds it (a test named alone does not)",
        program.display()
    );
    let dir = Folder::new("own-project");
    let out = Command::new(&program).current_dir(&dir.0).output().expect("the example runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("predictions within") && stdout.contains("97 parameters"), "{stdout}");
}
