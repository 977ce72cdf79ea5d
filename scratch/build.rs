//! Sets `cfg(shared_instances)` where the crate is compiled at an optimisation level of 0 or 1 (or for
//! size): there the compiler shares the generic code a crate instantiates with the crates that depend on
//! it, and [`instances`](src/instances.rs) instantiates the engine once for `f32` and `f64` so that every
//! test binary and program above it links that code instead of compiling its own. At levels 2 and 3
//! nothing is shared, and the instances would only be compiled for nothing.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_instances)");
    println!("cargo::rerun-if-changed=build.rs");
    let level = std::env::var("OPT_LEVEL").unwrap_or_default();
    if matches!(level.as_str(), "0" | "1" | "s" | "z") {
        println!("cargo::rustc-cfg=shared_instances");
    }
}
