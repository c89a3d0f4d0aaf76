//! dirascope: score H&E skin-biopsy slides for the DIRA pattern.
pub mod aggregate;
pub mod batch;
pub mod cli;
pub mod finding;
pub mod model;
pub mod qc;
pub mod real_split;
pub mod report;
pub mod score;
pub mod slide;
pub mod synth;
pub mod tiling;
pub mod tissue;
pub mod validate;
pub mod wiring;

pub use finding::Finding;
