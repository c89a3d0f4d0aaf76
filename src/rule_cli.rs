//! Arguments and handlers of `dirascope recall` and `dirascope calibrate` (the slide
//! rule recomputed or refitted from a score run's tiles, without the model).
//!
//! Kept apart from `cli.rs` so the main command table stays short; the work is in
//! [`crate::recall`] and [`crate::calibrate`].

use std::path::PathBuf;

use crate::calibrate::{self, CalibrateOptions, MarginChoice};
use crate::cli::{exit, usage, Failure};

#[derive(clap::Args)]
pub struct RecallArgs {
    /// The --out folder of a score run (summary.csv, <slide>/report.json, tiles.csv).
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// Model folder whose slide rule to apply; its ONNX sha256 must be the run's.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
}

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// The --out folder of a score run on the calibration slides.
    #[arg(long, value_name = "OUT")]
    pub results: PathBuf,
    /// CSV with slide_id,label; labels dira, pustular-psoriasis, psoriasis, normal.
    #[arg(long, value_name = "CSV")]
    pub labels: PathBuf,
    /// Model folder whose aggregation and rule shape to calibrate (the run's ONNX).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// The new model folder (must not exist or be empty).
    #[arg(long, value_name = "NEW_MODEL_DIR")]
    pub out: PathBuf,
    /// Share of positives each pattern score should put beyond its no-call band.
    #[arg(long, default_value_t = 0.95)]
    pub target_sensitivity: f64,
    /// Share of negatives that must stay below the no-call band (1: all of them).
    #[arg(long, default_value_t = 1.0)]
    pub target_specificity: f64,
    /// No-call margin: a number, `model` (keep the folder's) or `auto` (the largest
    /// in 0-0.1 at which both scores reach the target sensitivity).
    #[arg(long, default_value = "model")]
    pub margin: String,
    /// Version of the new folder (default: the minor version bumped).
    #[arg(long)]
    pub version: Option<String>,
}

/// `dirascope recall`: exit 4 for a model folder with other weights or tiling, 2 for
/// an OUT that is not a score run.
pub fn recall(args: RecallArgs) -> Result<u8, Failure> {
    let outcome = crate::recall::recall(&args.out, &args.model).map_err(|e| Failure {
        code: if e.is_model() {
            exit::MODEL
        } else if matches!(e, crate::recall::RecallError::NotAnOutput { .. }) {
            exit::USAGE
        } else {
            exit::OTHER
        },
        error: e.into(),
    })?;
    let mut text = format!(
        "recalled {} slides in {} under {}; {} calls changed\n",
        outcome.slides,
        args.out.display(),
        args.model.display(),
        outcome.changed.len()
    );
    for (id, before, after) in &outcome.changed {
        text.push_str(&format!("  {id}: {before} -> {after}\n"));
    }
    emit(&text)?;
    Ok(exit::OK)
}

/// `dirascope calibrate`: exit 2 for labels lacking a class or an existing --out.
pub fn calibrate(args: CalibrateArgs) -> Result<u8, Failure> {
    for (name, v) in [
        ("--target-sensitivity", args.target_sensitivity),
        ("--target-specificity", args.target_specificity),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(usage(format!("{name} must be between 0 and 1, got {v}")));
        }
    }
    let margin = match args.margin.as_str() {
        "model" => MarginChoice::Model,
        "auto" => MarginChoice::Auto,
        m => match m.parse::<f64>() {
            Ok(v) if (0.0..0.5).contains(&v) => MarginChoice::Fixed(v),
            _ => {
                return Err(usage(format!(
                    "--margin must be model, auto or a number in [0, 0.5), got '{m}'"
                )))
            }
        },
    };
    let options = CalibrateOptions {
        target_sensitivity: args.target_sensitivity,
        target_specificity: args.target_specificity,
        margin,
        version: args.version,
    };
    let c = calibrate::calibrate(
        &args.results,
        &args.labels,
        &args.model,
        &args.out,
        &options,
    )
    .map_err(|e| Failure {
        code: if e.is_usage() {
            exit::USAGE
        } else if matches!(&e, calibrate::CalibrateError::Recall(r) if r.is_model()) {
            exit::MODEL
        } else {
            exit::OTHER
        },
        error: e.into(),
    })?;
    emit(&c.summary())?;
    Ok(exit::OK)
}

/// Prints through the one stdout writer: a closed pipe stops only the printing (the
/// reports and the model folder are written), a full disk is an error.
fn emit(text: &str) -> Result<(), Failure> {
    crate::output::print(text).map(|_| ()).map_err(|e| Failure {
        code: exit::OTHER,
        error: anyhow::anyhow!("cannot write to standard output: {e}"),
    })
}
