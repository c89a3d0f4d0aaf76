//! Command-line definitions and one short handler per subcommand.
//!
//! Handlers resolve options into the library's plain structs and call it; anything
//! worth testing lives in the library modules, not here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Printed;
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
    /// Recompute every slide's scores and call in OUT under another model folder's
    /// rule (same ONNX), from tiles.csv, without running the model.
    Recall(crate::rule_cli::RecallArgs),
    /// Fit a model folder's rule thresholds on a labelled calibration run and write
    /// a new model folder (same ONNX, new [rule], calibration/ figures).
    Calibrate(crate::rule_cli::CalibrateArgs),
    /// Render phantom H&E skin sections with ground truth (masks, truth.json).
    Synth(SynthArgs),
    /// Turn slides and their QuPath GeoJSON annotations into labelled training tiles.
    Tiles(TilesArgs),
    /// Inspect and check models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Check the installation: render one small phantom per class in a temporary
    /// folder, score them, compare the calls with the truth; exit 0 only on pass.
    Selfcheck(SelfcheckArgs),
}

#[derive(clap::Args)]
struct SelfcheckArgs {
    /// Model folder holding model.toml (default: the bundled model, embedded in the binary).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Keep the phantoms and the score output in this folder instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Check a model folder (manifest, sha256, ONNX shapes), describe it and
    /// run one batch of its sample phantom tiles; exit 4 when any check fails,
    /// tract's outputs against the folder's onnxruntime parity fixture included.
    Check {
        /// Model folder holding model.toml (default: the bundled model, embedded in
        /// the binary).
        model_dir: Option<PathBuf>,
    },
    /// Measure the stain of slides (their two stain vectors and densities) on the
    /// tiles `score` would read with this model, and print it as a model.toml
    /// `[stain]` table: run on slides like a model's training data, it is the
    /// reference `score --normalise-stain` maps slides onto.
    Stain(StainArgs),
}

#[derive(clap::Args)]
struct StainArgs {
    /// Slide files (SVS, TIFF, BigTIFF, OME-TIFF, DICOM, PNG, JPEG); their tiles are
    /// pooled into one profile.
    #[arg(required = true)]
    slides: Vec<PathBuf>,
    /// Model folder whose tile size and MPP the tiles are read at (default: the
    /// bundled model).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Microns per pixel of level 0, overriding the files.
    #[arg(long, value_name = "X")]
    mpp: Option<f64>,
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
    /// Level-0 microns per pixel (default 0.5; with --implant-into, the slide's own
    /// unless given).
    #[arg(long)]
    mpp: Option<f64>,
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
    /// Renderer: 1.15 (real-tissue appearance, default; 1.0 to 1.3 name the same
    /// line), 1.16 (1.15 with a grain in the stain, colour noise a few microns across
    /// and each stain's colour fitted to the real images; not the default, 4-8% more
    /// CPU; with --implant-into, 1.15's implants), 1.17 (1.15 with the reticular
    /// collagen redrawn: bundles in domains of their own direction, crimped, some cut
    /// across; not the default; with --implant-into, 1.15's implants), 1.18 (1.17's
    /// collagen in 1.16's stain; not the default), 1.14 (1.15 without the coil's clear and dark cells and the duct's
    /// cuticle; with --implant-into, 1.15's implants), 1.13 (1.14 with hidradenitis, its mask and the neutrophils round an
    /// inflamed coil, over the coil's whole disc and 35 um beyond rather than within
    /// 35 um of its tubules; with --implant-into, 1.14's implants), 1.12 (1.13
    /// without knife lines; with --implant-into, 1.13's implants),
    /// 1.11 (1.12 without the lymphocytes round vessels), 1.10 (1.11 with
    /// synth 0.3's vessels: a ring of dark blocks round red dots; with
    /// --implant-into, 1.11's implants), 1.9 (1.10 with eccrine coils as round tubules scattered over a disc;
    /// with --implant-into, 1.10's implants), 1.8 (1.9 without hair follicles and
    /// sebaceous glands; with --implant-into, 1.9's implants), 1.7 (1.8's phantoms; with --implant-into, the implants model 2 was
    /// trained on, without synth 1.4's lesion cells and the scanner's optics), 1.6
    /// (1.7 with round pale papillae cut across and a sparser basal layer), 1.5 (1.6
    /// without basal melanin), 1.4 (the look model 2 was trained on) or 0.3 (the look
    /// model 1.2.0 was trained on), the older ones kept byte for byte; all draw the
    /// same lesions for a seed, and the same finding masks but for 1.14's hidradenitis.
    #[arg(long, default_value = "1.15")]
    generator: String,
    /// Draw lesions (and sham normal structures) into this real normal-skin slide
    /// instead of rendering a phantom: ids <class>-implant-<seed>, masks and truth as
    /// for phantoms, lossless output unless --jpeg-quality. --mpp then overrides the
    /// slide's own MPP (needed where the file has none).
    #[arg(long, value_name = "SLIDE")]
    implant_into: Option<PathBuf>,
    /// With --implant-into (generator 1.8 or later): sigma in µm of the optics the drawn
    /// structures are seen through before they are blended in (default 0.5; 0: as
    /// sharp as drawn).
    #[arg(long, value_name = "UM")]
    optics_um: Option<f32>,
    /// Render synth 1.0's corneum, epidermis and dermis with this real slide's own
    /// texture and stain (its train part where training/real_split.toml lists it).
    #[arg(long, value_name = "SLIDE")]
    texture_from: Option<PathBuf>,
    /// MPP of the --texture-from slide where the file has none (and the real split
    /// does not list it).
    #[arg(long, value_name = "MPP")]
    texture_mpp: Option<f64>,
    /// With --implant-into: implant into this part (train or test) of the real split
    /// in training/real_split.toml only; the output is that crop.
    #[arg(long, value_name = "PART")]
    part: Option<String>,
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
    /// Model folder holding model.toml and the ONNX file (default: the bundled
    /// model, embedded in the binary).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Start N tile workers, each reading, resampling and scoring its own tiles with
    /// its own model session; no other thread works (default: the usable cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Microns per pixel of level 0, overriding the file (required where it has none).
    #[arg(long, value_name = "X")]
    pub mpp: Option<f64>,
    /// Keep tiles with at least this fraction of tissue (default: the model manifest's).
    #[arg(long, value_name = "F")]
    pub min_tissue: Option<f64>,
    /// Overlap between neighbouring tiles, in model pixels (default: the model
    /// manifest's, the overlap its rule was fitted at; 0 for the bundled model).
    #[arg(long, value_name = "PX")]
    pub overlap: Option<u32>,
    /// Use this PNG as the tissue mask instead of detecting one (aspect must match the slide).
    #[arg(long, value_name = "PNG")]
    pub tissue_mask: Option<PathBuf>,
    /// QC's stain check refuses a slide as not H&E when its eosin-like stain vector
    /// is more than DEG degrees from eosin's (default 33; 180 turns that part of
    /// the check off). For a lab whose H&E it refuses: see docs/stain.md.
    #[arg(long, value_name = "DEG")]
    pub max_eosin_angle: Option<f64>,
    /// Map each slide's stains onto the model's training stain (the `[stain]` table
    /// of its model.toml) before the model sees the tiles: vectors and densities
    /// measured on 64 of the slide's tiles (Macenko's normalisation). QC measures
    /// the slide as scanned. Opt-in: the model's rule was fitted without it; see
    /// docs/stain.md for what it changes.
    #[arg(long)]
    pub normalise_stain: bool,
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
    /// Print no closing summary on stderr (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
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
        o.threads = Some(crate::pipeline::resolve_threads(self.threads));
        if let Some(px) = self.overlap {
            o.overlap_px = px;
        }
        o.tissue_mask = self.tissue_mask.clone();
        if let Some(deg) = self.max_eosin_angle {
            if !(0.0..=180.0).contains(&deg) {
                return Err(usage(format!(
                    "--max-eosin-angle must be between 0 and 180 degrees, got {deg}"
                )));
            }
            o.qc.max_eosin_angle_deg = deg;
        }
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
    /// A pathologist's truth: a folder of QuPath GeoJSON exports (<slide_id>.geojson);
    /// adds tile-level AUROC per finding as --truth does for phantoms. Needs --mapping.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "truth",
        requires = "mapping"
    )]
    truth_geojson: Option<PathBuf>,
    /// Class names -> finding keys for --truth-geojson (as for `dirascope tiles`).
    #[arg(long, value_name = "TOML", requires = "truth_geojson")]
    mapping: Option<PathBuf>,
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
        Command::Tiles(args) => tiles(args),
        Command::Score(args) => score(args),
        Command::Merge(args) => merge(args),
        Command::Recall(args) => crate::rule_cli::recall(args),
        Command::Calibrate(args) => crate::rule_cli::calibrate(args),
        Command::Model(ModelCommand::Check { model_dir }) => model_check(model_dir),
        Command::Model(ModelCommand::Stain(args)) => model_stain(args),
        Command::Selfcheck(args) => selfcheck(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("dirascope: error: {}", error_chain(&f.error));
            ExitCode::from(f.code)
        }
    }
}

/// Prints `text` on stdout; any error but a closed pipe (a full disk) is exit 1.
fn emit(text: &str) -> Result<Printed, Failure> {
    crate::output::print(text).map_err(|e| Failure {
        code: exit::OTHER,
        error: anyhow::anyhow!("cannot write to standard output: {e}"),
    })
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
    let text = if args.json {
        let mut value = serde_json::to_value(info)?;
        value["path"] = serde_json::json!(args.slide.display().to_string());
        value["width"] = serde_json::json!(info.width());
        value["height"] = serde_json::json!(info.height());
        value["mpp_x"] = serde_json::json!(info.mpp.map(|m| m.x));
        value["mpp_y"] = serde_json::json!(info.mpp.map(|m| m.y));
        serde_json::to_string_pretty(&value)? + "\n"
    } else {
        slide::describe(&args.slide, info)
    };
    // A closed pipe (`| head`) ends the command quietly, as ripgrep does.
    if emit(&text)? == Printed::PipeClosed {
        return Ok(exit::OK);
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
    if let Some(slide) = args.implant_into.clone() {
        return implant(args.part.clone(), slide, class, &args);
    }
    if args.part.is_some() {
        return Err(usage("--part goes with --implant-into"));
    }
    if args.optics_um.is_some() {
        return Err(usage("--optics-um goes with --implant-into"));
    }
    let artefacts = args
        .artefacts
        .parse()
        .map_err(|e: synth::SynthError| usage(e.to_string()))?;
    let generator = args
        .generator
        .parse()
        .map_err(|e: synth::SynthError| usage(e.to_string()))?;
    if args.texture_from.is_some() && args.implant_into.is_some() {
        return Err(usage(
            "--texture-from and --implant-into do not go together",
        ));
    }
    let texture = match &args.texture_from {
        Some(slide) => Some(std::sync::Arc::new(
            synth::TextureBank::from_slide(slide, args.texture_mpp)
                .map_err(|e| usage(e.to_string()))?,
        )),
        None => None,
    };
    let options = SynthOptions {
        class,
        seed: args.seed,
        count: args.count,
        mpp: args.mpp.unwrap_or(0.5),
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
        texture,
    };
    match synth::run(&options) {
        // The files are written: a closed pipe only stops the listing.
        Ok(Summary::Slides(slides)) => emit_slides(&slides),
        Ok(Summary::Tiles(t)) => {
            emit(&format!(
                "{} tiles from {} slides; labels in {}\n",
                t.tiles,
                t.slides,
                t.labels.display()
            ))?;
            Ok(exit::OK)
        }
        Err(e) if e.is_usage() => Err(usage(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// One line a slide written: id, class, TIFF path.
fn emit_slides(slides: &[crate::synth::SlideOutput]) -> Result<u8, Failure> {
    let lines: String = slides
        .iter()
        .map(|s| format!("{}\t{}\t{}\n", s.slide_id, s.class, s.tiff.display()))
        .collect();
    emit(&lines)?;
    Ok(exit::OK)
}

/// `dirascope synth --implant-into`: lesions drawn into a real slide; the options
/// that only shape a phantom (size, artefacts, generator, tiles) are refused.
fn implant(
    part: Option<String>,
    slide: PathBuf,
    class: Option<crate::synth::SlideClass>,
    args: &SynthArgs,
) -> Result<u8, Failure> {
    use crate::real_split::Part;
    use crate::synth::{self, ImplantOptions};
    if args.tiles || !args.artefacts.is_empty() {
        return Err(usage(
            "--implant-into writes slides: --tiles and --artefacts do not apply",
        ));
    }
    let generator: crate::synth::Generator = args
        .generator
        .parse()
        .map_err(|e: crate::synth::SynthError| usage(e.to_string()))?;
    if generator < crate::synth::Generator::V1_4 {
        return Err(usage(
            "--implant-into draws with a synth 1.x generator (1.4 to 1.18), not 0.3",
        ));
    }
    if let Some(o) = args.optics_um {
        if !(0.0..=5.0).contains(&o) || generator < crate::synth::Generator::V1_8 {
            return Err(usage(format!(
                "--optics-um must be between 0 and 5 and goes with generator 1.8 or later, got {o}"
            )));
        }
    }
    let part = match part.as_deref() {
        None => None,
        Some("train") => Some(Part::Train),
        Some("test") => Some(Part::Test),
        Some(other) => {
            return Err(usage(format!(
                "--part must be train or test, got '{other}'"
            )))
        }
    };
    let options = ImplantOptions {
        slide,
        class,
        seed: args.seed,
        count: args.count,
        mpp: args.mpp,
        part,
        out: args.out.clone(),
        mask_downsample: args.mask_downsample,
        jpeg_quality: args.jpeg_quality,
        generator,
        optics_um: args.optics_um.unwrap_or(synth::OPTICS_UM),
    };
    match synth::implant_into(&options) {
        Ok(slides) => emit_slides(&slides),
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
    let found = crate::batch::discover(&args.slides).map_err(|e| usage(e.to_string()))?;
    for s in &found.skipped {
        eprintln!("dirascope: skipped {}: {}", s.path.display(), s.reason);
    }
    if found.jobs.is_empty() {
        return Err(usage("no slides found in the given paths"));
    }
    let jobs: Vec<crate::batch::SlideJob> = found
        .jobs
        .into_iter()
        .filter(|j| args.shard.is_none_or(|s| s.contains(&j.slide_id)))
        .collect();
    if args.list {
        let mut table = csv::Writer::from_writer(Vec::new());
        table.write_record(["slide_id", "path"])?;
        for j in &jobs {
            table.write_record([j.slide_id.as_str(), &j.path.to_string_lossy()])?;
        }
        emit(&String::from_utf8_lossy(&table.into_inner()?))?;
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
    let scorer = load_scorer(args.model.clone())?;
    let mut options = args.options(scorer.options(crate::score::ScoreOptions::default()))?;
    if args.normalise_stain {
        let m = scorer.manifest();
        options.normalise_stain = Some(m.stain.clone().ok_or_else(|| {
            usage(format!(
                "--normalise-stain: model {} {} has no [stain] table in its model.toml (the stain it was trained on); measure one with `dirascope model stain --model DIR SLIDES...` on slides like its training data",
                m.name, m.version
            ))
        })?);
    }
    if !args.quiet {
        // Said before the run as well as in every report: a call from a rule
        // applied off the tiling it was fitted at is not what its card measured.
        for w in options.off_rule() {
            eprintln!("dirascope: warning: {w} (report.json audit.warnings)");
        }
    }
    let scoring = crate::score::Scoring::new(&scorer, scorer.info(), options)
        .map_err(|e| usage(e.to_string()))?;
    let batch_options = crate::batch::BatchOptions {
        force: args.force,
        progress: std::io::stderr().is_terminal() && !args.json,
    };
    let mut outcome = crate::batch::run(&jobs, &args.out, &scoring, &batch_options)?;
    outcome.skipped = found.skipped;
    if !args.quiet {
        // stderr that cannot be written (closed) is no reason to fail a batch.
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        if !outcome.reused.is_empty() {
            let _ = writeln!(
                err,
                "dirascope: reused {} of {} slides scored earlier with the same model, configuration and slide bytes (--force scores them again)",
                outcome.reused.len(),
                jobs.len()
            );
        }
        let _ = write!(err, "{}", outcome.closing_lines(&args.out));
    }
    finish_batch(&outcome, args.json)
}

/// The model in `--model DIR` (or the bundled one) as a scorer; exit 4 when it
/// cannot be loaded.
fn load_scorer(dir: Option<PathBuf>) -> Result<crate::wiring::ModelScorer, Failure> {
    let source = crate::model::ModelSource::from_option(dir);
    let model = crate::model::Model::load_source(&source).map_err(|e| Failure {
        code: exit::MODEL,
        error: e.into(),
    })?;
    Ok(crate::wiring::ModelScorer::new(model))
}

/// `dirascope model stain`: the pooled stain profile of some slides as a `[stain]`
/// table on stdout, each slide's on stderr; a slide that cannot be read is an
/// error line and the rest go on (exit 3 then).
fn model_stain(args: StainArgs) -> Result<u8, Failure> {
    let scorer = load_scorer(args.model.clone())?;
    let mut options = scorer.options(crate::score::ScoreOptions::default());
    options.open.mpp_override = mpp_option(args.mpp)?;
    options.hash_slides = false;
    let scoring = crate::score::Scoring::new(&scorer, scorer.info(), options)
        .map_err(|e| usage(e.to_string()))?;
    let (mut pooled, mut failed) = (Vec::new(), 0);
    for path in &args.slides {
        match scoring.stain_sample(path) {
            Ok(tiles) => {
                match crate::stain::StainProfile::measure(&tiles) {
                    Some(p) => eprintln!(
                        "{}: {} tiles, hematoxylin {:.3?}, eosin {:.3?}, max concentration {:.3?}",
                        path.display(),
                        tiles.len(),
                        p.hematoxylin,
                        p.eosin,
                        p.max_concentration
                    ),
                    None => eprintln!(
                        "{}: {} tiles, too few stained pixels for a profile of its own",
                        path.display(),
                        tiles.len()
                    ),
                }
                pooled.extend(tiles);
            }
            Err(e) => {
                failed += 1;
                eprintln!("dirascope: error: {}", error_chain(&anyhow::Error::from(e)));
            }
        }
    }
    let m = scorer.manifest();
    let Some(p) = crate::stain::StainProfile::measure(&pooled) else {
        return Err(Failure {
            code: exit::SOME_FAILED,
            error: anyhow::anyhow!(
                "the slides' tiles hold too few stained pixels for a stain profile"
            ),
        });
    };
    let names: Vec<String> = args
        .slides
        .iter()
        .map(|p| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let v = |x: [f64; 3]| format!("[{:.4}, {:.4}, {:.4}]", x[0], x[1], x[2]);
    emit(&format!(
        "# Stain of {} tiles ({}x{} px at {} um/px, as model {} {} reads them) from: {}\n\
         [stain]\nhematoxylin = {}\neosin = {}\nmax_concentration = [{:.4}, {:.4}]\n",
        pooled.len(),
        m.input.tile_px,
        m.input.tile_px,
        m.input.mpp,
        m.name,
        m.version,
        names.join(", "),
        v(p.hematoxylin),
        v(p.eosin),
        p.max_concentration[0],
        p.max_concentration[1]
    ))?;
    Ok(if failed == 0 {
        exit::OK
    } else {
        exit::SOME_FAILED
    })
}

/// Prints `--json` output if asked (a closed pipe only stops the printing: the
/// work is done); exit 3 when any slide failed.
fn finish_batch(outcome: &crate::batch::BatchOutcome, json: bool) -> Result<u8, Failure> {
    if json {
        emit(&(outcome.to_json()? + "\n"))?;
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
    let ids: Vec<String> = results.iter().map(|r| r.slide_id.clone()).collect();
    let truth_options = validate::truth::TruthOptions {
        min_fraction,
        min_fraction_for,
        resamples: args.resamples,
        seed: args.seed,
    };
    if let Some(truth_dir) = &args.truth {
        let t = validate::truth::tile_truth(&args.results, truth_dir, &ids, &truth_options)?;
        v.tile_truth = Some(t);
    }
    if let (Some(dir), Some(mapping)) = (&args.truth_geojson, &args.mapping) {
        let mapping = crate::annotations::mapping::Mapping::read(mapping)
            .map_err(|e| usage(e.to_string()))?;
        v.tile_truth = Some(validate::geojson_truth::tile_truth_geojson(
            &args.results,
            dir,
            &mapping,
            &ids,
            &truth_options,
        )?);
    }
    if let Some(t) = &v.tile_truth {
        let truth_dir = args.truth.as_ref().or(args.truth_geojson.as_ref());
        let truth_dir = truth_dir.map_or(String::new(), |d| d.display().to_string());
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
            eprintln!("dirascope: warning: slide '{id}' has no truth file in {truth_dir}; left out of the tile AUROC");
        }
    }
    validate::write_outputs(&v, &args.out)?;
    for id in &v.unlabelled_slides {
        eprintln!("dirascope: warning: slide '{id}' has results but no label; not evaluated");
    }
    for id in &v.labels_without_results {
        eprintln!("dirascope: warning: label for '{id}' names no scored slide; not evaluated");
    }
    emit(&validate::markdown(&v))?;
    Ok(exit::OK)
}

/// The error and its causes, `: `-joined, each cause left out where the text
/// before it already says it (many errors put their source in their own message,
/// and anyhow's `{:#}` would print it twice).
fn error_chain(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn model_check(model_dir: Option<PathBuf>) -> Result<u8, Failure> {
    let source = crate::model::ModelSource::from_option(model_dir);
    let report = crate::model::check::run(&source).map_err(|e| Failure {
        code: exit::MODEL,
        error: e.into(),
    })?;
    emit(&report.text)?;
    match report.parity {
        Some(p) if !p.passed() => Err(Failure {
            code: exit::MODEL,
            error: anyhow::anyhow!(
                "{source}: tract's outputs differ from onnxruntime's by {:.2e} on the {} parity tiles, \
                 over the fixture's tolerance {:.0e}; this build does not run the model as it was exported",
                p.max_abs_diff(),
                p.tiles,
                p.tolerance
            ),
        }),
        _ => Ok(exit::OK),
    }
}

/// `dirascope selfcheck`: exit 0 on pass, 1 on a wrong call, 4 for an invalid model.
fn selfcheck(args: SelfcheckArgs) -> Result<u8, Failure> {
    use crate::selfcheck::{self, SelfcheckError, SelfcheckOptions};
    use std::io::Write;
    if args.threads == Some(0) {
        return Err(usage("--threads must be at least 1"));
    }
    let options = SelfcheckOptions {
        model: crate::model::ModelSource::from_option(args.model),
        threads: args.threads,
        keep: args.keep,
    };
    let check = selfcheck::run(&options).map_err(|e| Failure {
        code: match e {
            SelfcheckError::Model(_) => exit::MODEL,
            _ => exit::OTHER,
        },
        error: e.into(),
    })?;
    // A closed stdout ends the printing only; the verdict is the exit code.
    let _ = write!(std::io::stdout().lock(), "{}", check.render());
    Ok(if check.passed() {
        exit::OK
    } else {
        exit::OTHER
    })
}

#[derive(clap::Args)]
struct TilesArgs {
    /// Slide files or folders (as for `score`); slide ids are the file names without extension.
    #[arg(long, required = true, num_args = 1..)]
    slides: Vec<PathBuf>,
    /// Folder of QuPath GeoJSON exports, one <slide_id>.geojson per slide.
    #[arg(long, value_name = "DIR")]
    annotations: PathBuf,
    /// Class names -> finding keys, negative regions, exhaustively annotated slides.
    #[arg(long, value_name = "TOML")]
    mapping: PathBuf,
    /// Output folder (must not exist, or be empty): labels.csv, manifest.csv, tiles/.
    #[arg(long, value_name = "DATA")]
    out: PathBuf,
    /// Model folder whose tile size, MPP and minimum tissue the tiles follow
    /// (default: the bundled model).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Worker threads (default: all cores); the output is the same for any count.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Microns per pixel of level 0, overriding the files.
    #[arg(long, value_name = "X")]
    mpp: Option<f64>,
}

/// `dirascope tiles`: labelled training tiles from annotated slides; exit 2 for
/// inputs that do not fit together (unknown classes, a file without a slide).
fn tiles(args: TilesArgs) -> Result<u8, Failure> {
    use crate::annotations::{export, mapping::Mapping};
    let threads = match args.threads {
        Some(0) => return Err(usage("--threads must be at least 1")),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let found = crate::batch::discover(&args.slides).map_err(|e| usage(e.to_string()))?;
    for s in &found.skipped {
        eprintln!("dirascope: skipped {}: {}", s.path.display(), s.reason);
    }
    let slides = found.jobs;
    if slides.is_empty() {
        return Err(usage("no slides found in the given paths"));
    }
    let mapping = Mapping::read(&args.mapping).map_err(|e| usage(e.to_string()))?;
    // The tiles follow the model's input; the bundled model is the embedded one.
    let source = crate::model::ModelSource::from_option(args.model.clone());
    let manifest = crate::model::Model::manifest_of(&source).map_err(|e| Failure {
        code: exit::MODEL,
        error: e.into(),
    })?;
    let open = OpenOptions {
        mpp_override: mpp_option(args.mpp)?,
        ..OpenOptions::default()
    };
    let options = export::TilesOptions {
        slides,
        annotations: args.annotations,
        mapping,
        out: args.out,
        tile_px: manifest.input.tile_px,
        model_mpp: manifest.input.mpp,
        min_tissue: manifest.aggregation.min_tissue,
        open,
        tissue: crate::tissue::TissueOptions::default(),
        threads,
    };
    let s = export::export(&options).map_err(|e| Failure {
        code: if e.is_usage() {
            exit::USAGE
        } else {
            exit::OTHER
        },
        error: e.into(),
    })?;
    // Like synth: a closed stdout stops the printing only; the tiles are written.
    emit(&format!(
        "{} tiles from {} slides in {}/labels.csv; tiles with {}: {}; {} tissue tiles left out (not annotated)\n",
        s.tiles,
        s.slides,
        options.out.display(),
        crate::finding::Finding::ALL.map(|f| f.key()).join("/"),
        s.with_finding.map(|n| n.to_string()).join("/"),
        s.left_out
    ))?;
    if s.skipped_objects + s.skipped_unclassified + s.skipped_not_areas > 0 {
        eprintln!(
            "dirascope: skipped {} detection/cell objects, {} unclassified annotations, {} point/line annotations",
            s.skipped_objects, s.skipped_unclassified, s.skipped_not_areas
        );
    }
    Ok(exit::OK)
}
