//! `dirascope selfcheck`: an installation check that needs no data. It renders one
//! small phantom slide per class with the product's own synth code in a temporary
//! folder, scores them with the product's batch pipeline and a model (the embedded
//! one by default), and compares each call with the call the phantom's class should
//! get. The model's sha256 is checked against its manifest when it loads.
//!
//! Like `wiring.rs` it only joins stages (synth, model, score, batch); it decides
//! nothing a stage decides, and prints nothing itself: the CLI prints [`Selfcheck`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::aggregate::Call;
use crate::batch::{self, BatchOptions, SlideJob};
use crate::model::{Model, ModelError, ModelSource};
use crate::report::ReportError;
use crate::score::{ScoreError, ScoreOptions, Scoring};
use crate::synth::{self, Generator, SlideClass, SynthError, SynthOptions};
use crate::wiring::ModelScorer;

/// The phantom set: one slide per class, with the seeds, size and scan settings of
/// the committed fixtures (`fixtures/phantoms/regenerate.sh`, chosen so that each
/// shows its class's findings clearly), rendered at the bundled model's 1 µm/px so
/// that rendering and scoring take seconds.
pub const PHANTOMS: [(SlideClass, u64); 4] = [
    (SlideClass::Dira, 3),
    (SlideClass::PustularPsoriasis, 2),
    (SlideClass::Psoriasis, 3),
    (SlideClass::Normal, 4),
];

/// Size and scan of each phantom.
const WIDTH_MM: f64 = 2.0;
const HEIGHT_MM: f64 = 1.5;
const MPP: f64 = 1.0;
const JPEG_QUALITY: u8 = 60;
/// The generator the bundled model (model 2) was trained on and its fixtures were
/// drawn with: synth 1.4 (kept byte for byte; the default is 1.6 now). Model 1.2.0 (`models/dirascope-phantom-v1`)
/// was trained on synth 0.3's cartoon phantoms and fails this check with `--model`:
/// on these phantoms it calls 1 of 4 right (2026-12-05).
const GENERATOR: Generator = Generator::V1_4;

/// What `selfcheck` is run with. `Default`: the embedded model, all cores, a
/// temporary folder removed afterwards.
#[derive(Debug, Clone)]
pub struct SelfcheckOptions {
    pub model: ModelSource,
    pub threads: Option<usize>,
    /// Keep the phantoms and the score run's OUT in this folder instead.
    pub keep: Option<PathBuf>,
}

impl Default for SelfcheckOptions {
    fn default() -> Self {
        SelfcheckOptions {
            model: ModelSource::Bundled,
            threads: None,
            keep: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SelfcheckError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("rendering the phantoms: {0}")]
    Synth(#[from] SynthError),
    #[error("scoring the phantoms: {0}")]
    Score(#[from] ScoreError),
    #[error("scoring the phantoms: {0}")]
    Report(#[from] ReportError),
    #[error("scoring the phantoms: {0}")]
    Batch(#[from] crate::batch::BatchError),
    #[error("{}: cannot create the work folder: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The call a phantom of `class` should get: pustular psoriasis is a psoriasiform
/// pattern (no acantholysis, no hidradenitis), normal skin has no pustular pattern.
pub fn expected_call(class: SlideClass) -> Call {
    match class {
        SlideClass::Dira => Call::DiraPattern,
        SlideClass::PustularPsoriasis | SlideClass::Psoriasis => Call::PsoriasiformPattern,
        SlideClass::Normal => Call::NoPustularPattern,
    }
}

/// One phantom's outcome.
#[derive(Debug, Clone)]
pub struct SlideCheck {
    pub slide_id: String,
    pub class: SlideClass,
    pub expected: Call,
    /// The call and the DIRA / psoriasiform scores, or why the slide failed.
    pub got: Result<(Call, f64, f64), String>,
}

impl SlideCheck {
    pub fn passed(&self) -> bool {
        matches!(self.got, Ok((call, _, _)) if call == self.expected)
    }
}

/// The whole check.
#[derive(Debug, Clone)]
pub struct Selfcheck {
    pub model_name: String,
    pub model_version: String,
    pub sha256: String,
    pub source: ModelSource,
    pub slides: Vec<SlideCheck>,
    pub render_s: f64,
    pub score_s: f64,
}

impl Selfcheck {
    /// Every phantom got its expected call.
    pub fn passed(&self) -> bool {
        !self.slides.is_empty() && self.slides.iter().all(SlideCheck::passed)
    }

    /// The figures and the verdict, as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "model      {} {} ({})",
            self.model_name, self.model_version, self.source
        );
        let _ = writeln!(out, "sha256     {} matches the manifest", self.sha256);
        let _ = writeln!(
            out,
            "phantoms   {} slides, {WIDTH_MM} x {HEIGHT_MM} mm at {MPP} um/px: rendered in {:.1} s, scored in {:.1} s",
            self.slides.len(),
            self.render_s,
            self.score_s
        );
        let _ = writeln!(
            out,
            "  {:<22} {:<20} {:<22} {:<22} {:>6} {:>6}",
            "slide", "truth", "expected call", "call", "DIRA", "psor."
        );
        for s in &self.slides {
            let (call, dira, psor) = match &s.got {
                Ok((call, d, p)) => (call.to_string(), format!("{d:.3}"), format!("{p:.3}")),
                Err(e) => (format!("error: {e}"), "-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "  {:<22} {:<20} {:<22} {:<22} {:>6} {:>6}  {}",
                s.slide_id,
                s.class.as_str(),
                s.expected.as_str(),
                call,
                dira,
                psor,
                if s.passed() { "ok" } else { "WRONG" }
            );
        }
        let right = self.slides.iter().filter(|s| s.passed()).count();
        let _ = writeln!(
            out,
            "selfcheck  {}: {right} of {} calls as expected",
            if self.passed() { "pass" } else { "FAIL" },
            self.slides.len()
        );
        out
    }
}

/// Renders, scores and compares (see the module note).
pub fn run(options: &SelfcheckOptions) -> Result<Selfcheck, SelfcheckError> {
    // The model first: an invalid or altered model ends the check before any work.
    let model = Model::load_source(&options.model)?;
    let (model_name, model_version, sha256) = (
        model.manifest.name.clone(),
        model.manifest.version.clone(),
        model.manifest.sha256.to_ascii_lowercase(),
    );
    let temp;
    let work: &Path = match &options.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| SelfcheckError::Io {
                path: dir.clone(),
                source,
            })?;
            dir
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("dirascope-selfcheck-")
                .tempdir()
                .map_err(|source| SelfcheckError::Io {
                    path: std::env::temp_dir(),
                    source,
                })?;
            temp.path()
        }
    };

    let started = Instant::now();
    let phantoms = work.join("phantoms");
    let mut jobs = Vec::new();
    for (class, seed) in PHANTOMS {
        let synth_options = SynthOptions {
            class: Some(class),
            seed,
            count: 1,
            mpp: MPP,
            width_mm: WIDTH_MM,
            height_mm: HEIGHT_MM,
            out: phantoms.clone(),
            jpeg_quality: Some(JPEG_QUALITY),
            generator: GENERATOR,
            ..SynthOptions::default()
        };
        if let synth::Summary::Slides(slides) = synth::run(&synth_options)? {
            jobs.extend(slides.into_iter().map(|s| {
                let job = SlideJob {
                    slide_id: s.slide_id,
                    path: s.tiff,
                    extra: Default::default(),
                };
                (job, s.class)
            }));
        }
    }
    let render_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let scorer = ModelScorer::new(model);
    let mut score_options = scorer.options(ScoreOptions::default());
    score_options.threads = options.threads;
    let scoring = Scoring::new(&scorer, scorer.info(), score_options)?;
    let slide_jobs: Vec<SlideJob> = jobs.iter().map(|(j, _)| j.clone()).collect();
    let outcome = batch::run(
        &slide_jobs,
        &work.join("out"),
        &scoring,
        &BatchOptions::default(),
    )?;
    let score_s = started.elapsed().as_secs_f64();

    let slides = jobs
        .iter()
        .map(|(job, class)| {
            let report = outcome.reports.iter().find(|r| r.slide.id == job.slide_id);
            let failure = outcome.failures.iter().find(|f| f.slide_id == job.slide_id);
            let got = match (report, failure) {
                (Some(r), _) => Ok((
                    r.result.call,
                    r.result.dira_score,
                    r.result.psoriasiform_score,
                )),
                (None, Some(f)) => Err(f.message.clone()),
                (None, None) => Err("neither scored nor listed as failed".to_string()),
            };
            SlideCheck {
                slide_id: job.slide_id.clone(),
                class: *class,
                expected: expected_call(*class),
                got,
            }
        })
        .collect();
    Ok(Selfcheck {
        model_name,
        model_version,
        sha256,
        source: options.model.clone(),
        slides,
        render_s,
        score_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_wrong_or_failed_slide_fails_the_check() {
        let slide = |class, got| SlideCheck {
            slide_id: "x".into(),
            class,
            expected: expected_call(class),
            got,
        };
        let mut check = Selfcheck {
            model_name: "m".into(),
            model_version: "1".into(),
            sha256: "ab".into(),
            source: ModelSource::Bundled,
            slides: vec![
                slide(SlideClass::Dira, Ok((Call::DiraPattern, 0.9, 0.1))),
                slide(SlideClass::Normal, Ok((Call::NoPustularPattern, 0.1, 0.1))),
            ],
            render_s: 1.0,
            score_s: 1.0,
        };
        assert!(check.passed());
        assert!(check.render().contains("selfcheck  pass: 2 of 2"));
        check.slides[1].got = Ok((Call::PsoriasiformPattern, 0.1, 0.7));
        assert!(!check.passed());
        assert!(check.render().contains("WRONG"));
        check.slides[1].got = Err("broken".into());
        assert!(!check.passed() && check.render().contains("error: broken"));
        check.slides.clear();
        assert!(!check.passed(), "no slide checked is no pass");
    }
}
