//! dirascope: score H&E skin-biopsy slides for the DIRA pattern.
pub mod model;
pub mod slide;
