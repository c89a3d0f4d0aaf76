//! dirascope: score H&E skin-biopsy slides for the DIRA pattern.
pub mod batch;
pub mod cli;
pub mod model;
pub mod slide;
pub mod synth;
pub mod validate;
