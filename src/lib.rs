//! dirascope: score H&E skin-biopsy slides for the DIRA pattern.
pub mod aggregate;
pub mod annotations;
pub mod batch;
pub mod calibrate;
pub mod cli;
pub mod finding;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod qc;
pub mod real_split;
pub mod recall;
pub mod report;
pub mod rule_cli;
pub mod score;
pub mod selfcheck;
pub mod slide;
pub mod stain;
pub mod synth;
pub mod tiling;
pub mod tissue;
pub mod validate;
pub mod wiring;

pub use finding::Finding;
