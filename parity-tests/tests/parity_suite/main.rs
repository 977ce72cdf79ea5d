//! Both engines compared: each module feeds the from-scratch engine and libtorch the same weights and
//! inputs and asserts matching outputs, losses, gradients and training trajectories, or compares them
//! with golden fixtures from Python PyTorch. One binary, so that the suite links libtorch once.

mod adam;
mod autodiff;
mod book;
mod checkpoints;
mod convolution;
mod errors;
mod losses;
mod networks;
mod operations;
mod optimizers;
mod pytorch_fixtures;
mod recurrent;
mod trajectories;
