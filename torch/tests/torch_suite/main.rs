//! The torch engine's integration tests, in one binary so that libtorch and the crate are linked once
//! for all of them.

mod state;
mod sync;
mod tch_interop;
