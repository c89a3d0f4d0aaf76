//! Command-line definitions and one short handler per subcommand.
//!
//! Handlers resolve options into the library's plain structs and call it; anything
//! worth testing lives in the library modules, not here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::slide::{self, Mpp, OpenOptions};

/// Exit codes of the contract in DESIGN.md.
pub mod exit {
    pub const OK: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const SOME_FAILED: u8 = 3;
    pub const MODEL: u8 = 4;
}

#[derive(Parser)]
#[command(
    name = "dirascope",
    version,
    about = "Score H&E skin-biopsy slides for the DIRA pattern against psoriasiform patterns. Research use only."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a slide's format, levels, MPP and associated images.
    Inspect(InspectArgs),
    /// Compare scored slides with reference labels: ROC, CIs, calibration, confusion.
    Validate(ValidateArgs),
    /// Score slides for the DIRA pattern and write reports into OUT.
    Score(ScoreArgs),
    /// Join the OUT folders of shard runs into one OUT (summary, errors, report page).
    Merge(MergeArgs),
    /// Render phantom H&E skin sections with ground truth (masks, truth.json).
    Synth(SynthArgs),
    /// Inspect and check models.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Check a model folder (manifest, sha256, ONNX shapes), describe it and
    /// run one batch of its sample phantom tiles.
    Check {
        /// Model folder holding model.toml (default: the bundled model).
        model_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ClassArg {
    Dira,
    PustularPsoriasis,
    Psoriasis,
    Normal,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Slide class; without it a --count set mixes the four classes equally (class = seed mod 4).
    #[arg(long, value_enum)]
    class: Option<ClassArg>,
    /// First seed; slide ids are <class>-<seed>.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of slides (seeds N..N+K); writes manifest.csv.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Level-0 microns per pixel.
    #[arg(long, default_value_t = 0.5)]
    mpp: f64,
    /// Slide width in millimetres.
    #[arg(long, default_value_t = 4.0)]
    width_mm: f64,
    /// Slide height in millimetres.
    #[arg(long, default_value_t = 3.0)]
    height_mm: f64,
    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Export a labelled PNG tile dataset (labels.csv) instead of slides.
    #[arg(long)]
    tiles: bool,
    /// Tile side in pixels (with --tiles).
    #[arg(long, default_value_t = 224)]
    tile_px: u32,
    /// Microns per pixel of the tiles (with --tiles).
    #[arg(long, default_value_t = 0.5)]
    tile_mpp: f64,
    /// Artefacts to add: a comma list of pen, fold, blur.
    #[arg(long, default_value = "")]
    artefacts: String,
    /// Level-0 pixels per mask pixel.
    #[arg(long, default_value_t = 8)]
    mask_downsample: u32,
    /// JPEG quality of the tiles (default: drawn per slide).
    #[arg(long)]
    jpeg_quality: Option<u8>,
    /// Renderer: 1.0 (real-tissue appearance, default) or 0.3 (the look model
    /// 1.2.0 was trained on; same anatomy and masks for a seed).
    #[arg(long, default_value = "1.0")]
    generator: String,
}

/// Raw `score` arguments; [`ScoreArgs::options`] turns them into the library's options.
#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    /// Slide files (SVS, TIFF, BigTIFF, OME-TIFF, PNG, JPEG).
    #[arg(required = true)]
    pub slides: Vec<PathBuf>,
    /// Output folder: OUT/<slide_id>/, OUT/summary.csv, OUT/report.html.
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// Model folder holding model.toml and the ONNX file (default: the bundled model).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Worker threads for reading and resampling tiles (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Microns per pixel of level 0, overriding the file (required where it has none).
    #[arg(long, value_name = "X")]
    pub mpp: Option<f64>,
    /// Keep tiles with at least this fraction of tissue (default: the model manifest's).
    #[arg(long, value_name = "F")]
    pub min_tissue: Option<f64>,
    /// Overlap between neighbouring tiles, in model pixels.
    #[arg(long, value_name = "PX", default_value_t = 0)]
    pub overlap: u32,
    /// Use this PNG as the tissue mask instead of detecting one (aspect must match the slide).
    #[arg(long, value_name = "PNG")]
    pub tissue_mask: Option<PathBuf>,
    /// Print the batch summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Score only shard K of N (1-based), split deterministically by slide id.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::batch::Shard>,
    /// Print the slides this command would score (CSV: slide_id,path) and exit
    /// without reading them; workflows use it to plan one job per slide.
    #[arg(long)]
    pub list: bool,
    /// Score every slide again, even where OUT holds a report made from the same
    /// model, configuration and slide bytes (which a rerun otherwise reuses).
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args)]
struct MergeArgs {
    /// OUT folders of `dirascope score` runs (shards, or one slide each).
    #[arg(required = true, value_name = "DIR")]
    inputs: Vec<PathBuf>,
    /// The merged output folder (not one of the inputs).
    #[arg(long, value_name = "OUT")]
    out: PathBuf,
    /// Print the merged summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl ScoreArgs {
    /// Resolves the raw arguments over `base` (the model manifest's defaults).
    pub fn options(
        &self,
        base: crate::score::ScoreOptions,
    ) -> Result<crate::score::ScoreOptions, Failure> {
        let mut o = base;
        o.open.mpp_override = mpp_option(self.mpp)?;
        if let Some(f) = self.min_tissue {
            if !(0.0..=1.0).contains(&f) {
                return Err(usage(format!(
                    "--min-tissue must be between 0 and 1, got {f}"
                )));
            }
            o.min_tissue = f;
        }
        if self.threads == Some(0) {
            return Err(usage("--threads must be at least 1"));
        }
        o.threads = self.threads;
        o.overlap_px = self.overlap;
        o.tissue_mask = self.tissue_mask.clone();
        Ok(o)
    }
}

#[derive(clap::Args)]
struct InspectArgs {
    /// The slide file (SVS, TIFF, BigTIFF, OME-TIFF, DICOM, PNG, JPEG), or a folder
    /// holding one DICOM whole-slide series.
    slide: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Write a thumbnail (longest side 1024 px) to this PNG.
    #[arg(long, value_name = "OUT.png")]
    thumbnail: Option<PathBuf>,
    /// Microns per pixel of level 0, overriding the file.
    #[arg(long)]
    mpp: Option<f64>,
}

#[derive(clap::Args)]
struct ValidateArgs {
    /// The --out folder of a score run (holding <slide>/report.json).
    #[arg(long, value_name = "OUT")]
    results: PathBuf,
    /// CSV with slide_id,label[,patient_id]: the reference diagnosis per slide.
    #[arg(long, value_name = "CSV")]
    labels: PathBuf,
    /// The label that counts as positive for the DIRA-pattern score.
    #[arg(long, default_value = "dira")]
    positive: String,
    /// Sensitivity the second operating point must reach.
    #[arg(long, default_value_t = 0.95)]
    target_sensitivity: f64,
    /// Bootstrap resamples for the AUROC confidence intervals.
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 20260101)]
    seed: u64,
    /// Output folder for metrics.json, validation.md, roc.png, reliability.png.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Phantom truth (the --out folder of `dirascope synth`): adds tile-level AUROC
    /// per finding from each slide's masks and the score run's tiles.csv.
    #[arg(long, value_name = "DIR")]
    truth: Option<PathBuf>,
    /// Mask coverage at which a tile counts as positive (with --truth); tiles with
    /// less but some coverage are left out. Repeat as FINDING=F for a finding of its
    /// own, e.g. --truth-min-fraction neutrophilic_eccrine_hidradenitis=0.1.
    #[arg(long, value_name = "F|FINDING=F", default_value = "0.01")]
    truth_min_fraction: Vec<String>,
}

/// An error with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: exit::OTHER,
            error: e.into(),
        }
    }
}

pub fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: exit::USAGE,
        error: anyhow::anyhow!(message.into()),
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let result = match cli.command {
        Command::Inspect(args) => inspect(args),
        Command::Validate(args) => validate(args),
        Command::Synth(args) => synth(args),
        Command::Score(args) => score(args),
        Command::Merge(args) => merge(args),
        Command::Model(ModelCommand::Check { model_dir }) => model_check(model_dir),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("dirascope: error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn mpp_option(mpp: Option<f64>) -> Result<Option<Mpp>, Failure> {
    match mpp {
        None => Ok(None),
        Some(v) => Mpp::square(v).map(Some).ok_or_else(|| {
            usage(format!(
                "--mpp must be a positive number of microns per pixel, got {v}"
            ))
        }),
    }
}

fn inspect(args: InspectArgs) -> Result<u8, Failure> {
    let options = OpenOptions {
        mpp_override: mpp_option(args.mpp)?,
        ..OpenOptions::default()
    };
    let reader = slide::open(&args.slide, &options)?;
    let info = reader.info();
    if args.json {
        let mut value = serde_json::to_value(info)?;
        value["path"] = serde_json::json!(args.slide.display().to_string());
        value["width"] = serde_json::json!(info.width());
        value["height"] = serde_json::json!(info.height());
        value["mpp_x"] = serde_json::json!(info.mpp.map(|m| m.x));
        value["mpp_y"] = serde_json::json!(info.mpp.map(|m| m.y));
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", slide::describe(&args.slide, info));
    }
    if let Some(out) = args.thumbnail {
        let thumb = reader.thumbnail(1024)?;
        thumb
            .save(&out)
            .map_err(|e| anyhow::anyhow!("{}: cannot write thumbnail: {e}", out.display()))?;
    }
    Ok(exit::OK)
}

fn synth(args: SynthArgs) -> Result<u8, Failure> {
    use crate::synth::{self, SlideClass, Summary, SynthOptions, TileOptions};
    let class = args.class.map(|c| match c {
        ClassArg::Dira => SlideClass::Dira,
        ClassArg::PustularPsoriasis => SlideClass::PustularPsoriasis,
        ClassArg::Psoriasis => SlideClass::Psoriasis,
        ClassArg::Normal => SlideClass::Normal,
    });
    let artefacts = args
        .artefacts
        .parse()
        .map_err(|e: synth::SynthError| usage(e.to_string()))?;
    let generator = args
        .generator
        .parse()
        .map_err(|e: synth::SynthError| usage(e.to_string()))?;
    let options = SynthOptions {
        class,
        seed: args.seed,
        count: args.count,
        mpp: args.mpp,
        width_mm: args.width_mm,
        height_mm: args.height_mm,
        out: args.out,
        artefacts,
        mask_downsample: args.mask_downsample,
        jpeg_quality: args.jpeg_quality,
        tiles: args.tiles.then(|| TileOptions {
            tile_px: args.tile_px,
            tile_mpp: args.tile_mpp,
            ..TileOptions::default()
        }),
        generator,
    };
    match synth::run(&options) {
        Ok(Summary::Slides(slides)) => {
            for s in slides {
                println!("{}\t{}\t{}", s.slide_id, s.class, s.tiff.display());
            }
            Ok(exit::OK)
        }
        Ok(Summary::Tiles(t)) => {
            println!(
                "{} tiles from {} slides; labels in {}",
                t.tiles,
                t.slides,
                t.labels.display()
            );
            Ok(exit::OK)
        }
        Err(e) if e.is_usage() => Err(usage(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// `dirascope score`: find the slides, load the model (exit 4 if it is invalid),
/// refuse slides without an MPP (exit 2), score them all (reusing earlier reports
/// that still stand, unless `--force`); exit 3 if any failed.
fn score(args: ScoreArgs) -> Result<u8, Failure> {
    use std::io::IsTerminal;
    // Usage errors first, before any slide or model is read.
    let checked = args.options(crate::score::ScoreOptions::default())?;
    let jobs = crate::batch::discover(&args.slides).map_err(|e| usage(e.to_string()))?;
    if jobs.is_empty() {
        return Err(usage("no slides found in the given paths"));
    }
    let jobs: Vec<crate::batch::SlideJob> = jobs
        .into_iter()
        .filter(|j| args.shard.is_none_or(|s| s.contains(&j.slide_id)))
        .collect();
    if args.list {
        let mut table = csv::Writer::from_writer(std::io::stdout().lock());
        table.write_record(["slide_id", "path"])?;
        for j in &jobs {
            table.write_record([j.slide_id.as_str(), &j.path.to_string_lossy()])?;
        }
        table.flush()?;
        return Ok(exit::OK);
    }
    // One slide without an MPP is a usage error; in a batch it becomes an error row.
    let single: Vec<PathBuf> = match &jobs[..] {
        [job] => vec![job.path.clone()],
        _ => Vec::new(),
    };
    if let Some(path) = crate::score::first_without_mpp(&single, &checked.open) {
        return Err(usage(format!(
            "{}: the slide has no microns-per-pixel and cannot be tiled at the model's scale; pass --mpp (for example --mpp 0.5 for a 20x scan)",
            path.display()
        )));
    }
    let dir = args
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::model::BUNDLED_MODEL_DIR));
    let model = crate::model::Model::load(&dir).map_err(|e| Failure {
        code: exit::MODEL,
        error: e.into(),
    })?;
    let scorer = crate::wiring::ModelScorer::new(model);
    let options = args.options(scorer.options(crate::score::ScoreOptions::default()))?;
    let scoring = crate::score::Scoring::new(&scorer, scorer.info(), options)
        .map_err(|e| usage(e.to_string()))?;
    let batch_options = crate::batch::BatchOptions {
        force: args.force,
        progress: std::io::stderr().is_terminal() && !args.json,
    };
    let outcome = crate::batch::run(&jobs, &args.out, &scoring, &batch_options)?;
    if !outcome.reused.is_empty() {
        eprintln!(
            "dirascope: reused {} of {} slides scored earlier with the same model, configuration and slide bytes (--force scores them again)",
            outcome.reused.len(),
            jobs.len()
        );
    }
    finish_batch(&outcome, args.json)
}

/// Prints `--json` output if asked; exit 3 when any slide failed.
fn finish_batch(outcome: &crate::batch::BatchOutcome, json: bool) -> Result<u8, Failure> {
    if json {
        println!("{}", outcome.to_json()?);
    }
    Ok(if outcome.failures.is_empty() {
        exit::OK
    } else {
        exit::SOME_FAILED
    })
}

/// `dirascope merge`: join shard outputs; exit 2 for inputs that are not outputs or
/// share slide ids, 3 when the merged batch holds failed slides.
fn merge(args: MergeArgs) -> Result<u8, Failure> {
    let outcome = crate::batch::merge(&args.inputs, &args.out).map_err(|e| Failure {
        code: if e.is_usage() {
            exit::USAGE
        } else {
            exit::OTHER
        },
        error: e.into(),
    })?;
    finish_batch(&outcome, args.json)
}

/// Parses `--truth-min-fraction`: one general fraction and FINDING=F exceptions.
fn truth_fractions(
    values: &[String],
) -> Result<(f64, std::collections::BTreeMap<String, f64>), Failure> {
    let parse = |text: &str| -> Result<f64, Failure> {
        text.parse::<f64>()
            .ok()
            .filter(|f| *f > 0.0 && *f <= 1.0)
            .ok_or_else(|| {
                usage(format!(
                    "--truth-min-fraction: '{text}' is not a fraction in (0, 1]"
                ))
            })
    };
    let mut general = 0.01;
    let mut per_finding = std::collections::BTreeMap::new();
    for v in values {
        match v.split_once('=') {
            Some((finding, f)) => {
                per_finding.insert(finding.trim().to_string(), parse(f)?);
            }
            None => general = parse(v)?,
        }
    }
    Ok((general, per_finding))
}

/// `dirascope validate`: join results to labels, compute and write the metrics.
fn validate(args: ValidateArgs) -> Result<u8, Failure> {
    use crate::validate;
    if !(0.0..=1.0).contains(&args.target_sensitivity) {
        return Err(usage("--target-sensitivity must be between 0 and 1"));
    }
    if args.resamples < 100 {
        return Err(usage(
            "--resamples must be at least 100 (1000 or more for a paper)",
        ));
    }
    let (results, thresholds) = validate::read_results(&args.results)?;
    let labels = validate::read_labels(&args.labels)?;
    let mut options = validate::ValidateOptions::phantom_defaults(&args.positive, &thresholds);
    options.target_sensitivity = args.target_sensitivity;
    options.resamples = args.resamples;
    options.seed = args.seed;
    let (min_fraction, min_fraction_for) = truth_fractions(&args.truth_min_fraction)?;
    let mut v = validate::validate(&results, &labels, &options)?;
    if let Some(truth_dir) = &args.truth {
        let ids: Vec<String> = results.iter().map(|r| r.slide_id.clone()).collect();
        let truth_options = validate::truth::TruthOptions {
            min_fraction,
            min_fraction_for,
            resamples: args.resamples,
            seed: args.seed,
        };
        let t = validate::truth::tile_truth(&args.results, truth_dir, &ids, &truth_options)?;
        if let Some(unknown) = t
            .options
            .min_fraction_for
            .keys()
            .find(|k| !t.findings.iter().any(|f| &f.finding == *k))
        {
            return Err(usage(format!(
                "--truth-min-fraction names '{unknown}', which is no finding of the truth masks ({})",
                t.findings.iter().map(|f| f.finding.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        for id in &t.slides_without_truth {
            eprintln!("dirascope: warning: slide '{id}' has no truth file in {}; left out of the tile AUROC", truth_dir.display());
        }
        v.tile_truth = Some(t);
    }
    validate::write_outputs(&v, &args.out)?;
    for id in &v.unlabelled_slides {
        eprintln!("dirascope: warning: slide '{id}' has results but no label; not evaluated");
    }
    for id in &v.labels_without_results {
        eprintln!("dirascope: warning: label for '{id}' names no scored slide; not evaluated");
    }
    print!("{}", validate::markdown(&v));
    Ok(exit::OK)
}

fn model_check(model_dir: Option<PathBuf>) -> Result<u8, Failure> {
    let dir = model_dir.unwrap_or_else(|| PathBuf::from(crate::model::BUNDLED_MODEL_DIR));
    let report = crate::model::check::run(&dir).map_err(|e| Failure {
        code: exit::MODEL,
        error: e.into(),
    })?;
    print!("{report}");
    Ok(exit::OK)
}
