//! The `dlfs` program's command line: listing, and the errors and notes it gives before training
//! anything (no data or training needed).

use std::process::{Command, Output};

fn dlfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlfs")).args(args).env("RUST_BACKTRACE", "0").output().expect("dlfs runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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
}

#[test]
fn unknown_experiments_fail_before_anything_runs() {
    let out = dlfs(&["run", "boston", "ch9-nothing"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("unknown experiment \"ch9-nothing\"") && err.contains("dlfs list"), "{err}");
    assert!(text(&out.stdout).is_empty(), "boston must not run first");
}

#[test]
fn counts_must_be_positive() {
    for flag in ["--epochs", "--iterations", "--hidden", "--layers"] {
        let out = dlfs(&["run", "ch7-convnet", flag, "0"]);
        assert!(!out.status.success(), "{flag} 0 accepted");
        assert!(text(&out.stderr).contains("at least 1"), "{flag}: {}", text(&out.stderr));
    }
}

#[test]
fn options_an_experiment_does_not_use_are_named_and_missing_data_says_what_to_run() {
    let empty = std::env::temp_dir().join(format!("dlfs-no-data-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = dlfs(&["run", "divergence", "--engine", "torch", "--epochs", "3", "--data", empty.to_str().unwrap()]);
    std::fs::remove_dir_all(&empty).unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("note: divergence does not use --epochs, --engine"), "{err}");
    assert!(err.contains("not found") && err.contains("make setup"), "{err}");
}
