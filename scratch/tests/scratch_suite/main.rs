//! The from-scratch engine's integration tests, in one binary so that the crate and its dependencies
//! are linked once for all of them (the mutation tests, which count every allocation, have their own).

mod common;

mod book_chapter2;
mod book_chapter3;
mod book_networks;
mod checkpoint;
mod convolution;
mod data_files;
mod generated;
mod generation;
mod gradients;
mod recurrent;
mod training;
mod transformer;
