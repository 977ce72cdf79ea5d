//! Side-by-side programs for *Deep Learning from Scratch*: the experiments of the book, run with the
//! from-scratch engine (`scratch`) and the libtorch engine (`torch`), with tables and plots.
//!
//! The `dlfs` binary is the front door: `dlfs list`, `dlfs run <experiment>`, `dlfs reproduce`,
//! `dlfs tour`.

pub mod boston;
pub mod divergence;
pub mod language_model;
pub mod mnist;
pub mod plot;
pub mod progress;
pub mod reproduce;
pub mod table;
