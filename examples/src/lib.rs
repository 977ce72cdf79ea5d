//! Side-by-side programs for *Deep Learning from Scratch*: the experiments of the book, run with the
//! from-scratch engine (`scratch`) and the libtorch engine (`torch`), with tables and plots.
//!
//! The `dlfs` binary is the front door: `dlfs list`, `dlfs run <experiment>`, `dlfs reproduce`,
//! `dlfs tour`. Every experiment is one entry of the registry in [`experiments`]; the other modules
//! train them.

pub mod autoencoder;
pub mod boston;
pub mod divergence;
pub mod engine;
pub mod experiments;
pub mod gpt;
pub mod language_model;
pub mod metrics;
pub mod mnist;
pub mod plot;
pub mod progress;
pub mod reproduce;
pub mod table;
pub mod write;
