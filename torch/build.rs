//! Lets binaries and tests find libtorch's shared libraries at run time without `LD_LIBRARY_PATH`: adds
//! the canonical path of `$LIBTORCH/lib` (set by `.cargo/config.toml`) to their run-time search path.
//! The `parity-tests` and `examples` crates use this same file as their build script.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        panic!("LIBTORCH is not set: run `make setup` in the repository root (it installs libtorch into .torch/)");
    };
    let lib = PathBuf::from(&libtorch).join("lib");
    match lib.canonicalize() {
        Ok(dir) => println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display()),
        Err(_) => panic!(
            "libtorch not found at {}: run `make setup` in the repository root (it installs libtorch into .torch/)",
            lib.display()
        ),
    }
}
