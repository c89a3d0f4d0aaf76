//! Command-line definitions and the exit-code policy: parse arguments, call
//! the library, turn its errors into exit codes. No logic worth testing
//! lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for an invalid model or manifest (DESIGN.md).
pub const EXIT_MODEL: u8 = 4;
/// Exit code for bad usage.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "dirascope",
    version,
    about = "Score H&E skin-biopsy slides for the DIRA pattern (research use only)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and check models.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Check a model folder and run one sample batch through it.
    Check {
        /// Model folder holding model.toml (default: the bundled model).
        model_dir: Option<PathBuf>,
    },
}

/// Parse the command line, run it and return the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Model(ModelCommand::Check { model_dir }) => {
            let dir =
                model_dir.unwrap_or_else(|| PathBuf::from(dirascope::model::BUNDLED_MODEL_DIR));
            match dirascope::model::check::run(&dir) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_MODEL)
                }
            }
        }
    }
}
