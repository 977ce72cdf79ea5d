//! Lets binaries and tests find libtorch's shared libraries at run time without `LD_LIBRARY_PATH`: adds
//! the canonical path of `$LIBTORCH/lib` (set by `.cargo/config.toml`) to their run-time search path.
//! The `parity-tests` and `examples` crates use this same file as their build script.
//!
//! Cargo passes a build script's linker settings to the package's own programs only, so a Cargo project
//! of one's own that depends on the `torch` crate needs that search path in its own settings:
//! `scripts/setup.py --project` writes them, and a build without them warns here.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    let setup = format!(
        "in the dlfs repository, run `make setup`; in a Cargo project of your own that depends on the `torch` \
         crate, run `python3 {} --project <your project's folder>`: it installs libtorch and writes the two \
         settings the project needs (LIBTORCH, and libtorch's folder as its programs' run-time search path) to \
         its .cargo/config.toml",
        repository.join("scripts").join("setup.py").display()
    );
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        panic!("LIBTORCH is not set: {setup}");
    };
    let lib = PathBuf::from(&libtorch).join("lib");
    let Ok(dir) = lib.canonicalize() else {
        panic!("libtorch not found at {}: {setup}", lib.display());
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    let out = std::env::var("OUT_DIR").unwrap_or_default();
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if !Path::new(&out).starts_with(repository.join("target")) && !rustflags.contains("-rpath") {
        println!(
            "cargo:warning=programs of this project will not find libtorch at run time (`libtorch_cpu.so: cannot \
             open shared object file`): {setup}"
        );
    }
}
