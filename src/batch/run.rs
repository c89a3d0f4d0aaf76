//! Running a batch: each slide scored into a staged folder, or its earlier report
//! reused, each failure kept as one row, then the batch summaries written.
//!
//! Whatever one slide does (a broken file, a limit, a panic in a decoder), the batch
//! goes on; only failing to write the summaries ends it.

use std::path::Path;

use super::resume;
use super::staging::{self, StagedFolder};
use super::{BatchError, OutLock, Skipped, SlideJob};
use crate::report::{self, FailedSlide, ReportError, SlideReport};
use crate::score::{Scoring, Stage};

/// How a batch treats OUT. `Default`: reuse earlier reports, no progress bars.
#[derive(Debug, Clone, Default)]
pub struct BatchOptions {
    /// Score every slide again even when its earlier report still stands.
    pub force: bool,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

/// What a batch (or a merge) produced.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Every slide with a report, scored now or reused.
    pub reports: Vec<SlideReport>,
    pub failures: Vec<FailedSlide>,
    /// Ids of the slides whose earlier report was reused.
    pub reused: Vec<String>,
    /// Files discovery found and did not score on their own.
    pub skipped: Vec<Skipped>,
}

impl BatchOutcome {
    /// The summary `--json` prints.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let skipped: Vec<(String, String)> = self
            .skipped
            .iter()
            .map(|s| (s.path.display().to_string(), s.reason.clone()))
            .collect();
        report::json::batch_summary(&self.reports, &self.failures, &self.reused, &skipped)
    }

    /// The lines `score` ends with on stderr: slides scored (and how many of them
    /// were reused), failures, calls by kind and the path of the batch page.
    pub fn closing_lines(&self, out_dir: &Path) -> String {
        let mut calls: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in &self.reports {
            *calls.entry(r.result.call.as_str()).or_default() += 1;
        }
        let calls: Vec<String> = calls.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let reused = match self.reused.len() {
            0 => String::new(),
            n => format!(" ({n} reused from an earlier run)"),
        };
        let failed = match self.failures.len() {
            0 => "no errors".to_string(),
            n => format!(
                "{n} failed (listed in {})",
                out_dir.join("errors.csv").display()
            ),
        };
        let scored = match self.reports.len() {
            1 => "1 slide".to_string(),
            n => format!("{n} slides"),
        };
        format!(
            "dirascope: {scored} scored{reused}, {failed}\n\
             dirascope: calls: {}\n\
             dirascope: report: {}\n",
            if calls.is_empty() {
                "none".to_string()
            } else {
                calls.join(", ")
            },
            out_dir.join("report.html").display()
        )
    }
}

/// Scores `jobs` into `out_dir` (see [`BatchOptions`]), then writes
/// `OUT/summary.csv`, `OUT/errors.csv` and `OUT/report.html`. OUT is locked for the
/// whole run: another run into it is refused ([`OutLock`]).
pub fn run(
    jobs: &[SlideJob],
    out_dir: &Path,
    scoring: &Scoring,
    options: &BatchOptions,
) -> Result<BatchOutcome, BatchError> {
    let _lock = lock_out(out_dir)?;
    staging::remove_stale(out_dir)?;
    let progress = Progress::new(options.progress, jobs.len());
    let mut outcome = BatchOutcome::default();
    for job in jobs {
        progress.start(&job.slide_id);
        match one_slide(job, out_dir, scoring, options.force, progress.tiles()) {
            Ok(Slide::Reused(r)) => {
                outcome.reused.push(r.slide.id.clone());
                outcome.reports.push(r);
            }
            Ok(Slide::Scored(r)) => outcome.reports.push(r),
            Err(f) => {
                progress.println(&format!("dirascope: error: {}", f.message));
                outcome.failures.push(f);
            }
        }
        progress.slide_done();
    }
    progress.finish();
    report::sort_failures(&mut outcome.failures);
    write_summaries(out_dir, &outcome.reports, &outcome.failures)?;
    Ok(outcome)
}

/// Creates `out_dir` if needed and locks it, warning on stderr when the lock is
/// taken over from a run that died.
pub(super) fn lock_out(out_dir: &Path) -> Result<OutLock, BatchError> {
    std::fs::create_dir_all(out_dir).map_err(|e| ReportError::io(out_dir, e))?;
    let lock = OutLock::acquire(out_dir)?;
    if let Some(stale) = &lock.took_over {
        eprintln!(
            "dirascope: warning: {}: took over a stale lock left by pid {} on host {} (that run is gone)",
            out_dir.join(super::lock::LOCK_FILE).display(),
            stale.pid,
            stale.host
        );
    }
    Ok(lock)
}

/// Writes the batch pages of `out_dir` from its slides' reports and failures, the
/// same way for a run and for a merge (rows sorted by slide id).
pub fn write_summaries(
    out_dir: &Path,
    reports: &[SlideReport],
    failures: &[FailedSlide],
) -> Result<(), ReportError> {
    let table = |name: &str, bytes: Result<Vec<u8>, String>| {
        let path = out_dir.join(name);
        let bytes = bytes.map_err(|reason| ReportError::Encode {
            path: path.clone(),
            reason,
        })?;
        report::write_atomic(&path, &bytes)
    };
    table("summary.csv", report::csv::summary_csv(reports))?;
    table("errors.csv", report::csv::errors_csv(failures))?;
    report::html::write_index(&out_dir.join("report.html"), reports, failures)
}

enum Slide {
    Scored(SlideReport),
    Reused(SlideReport),
}

/// One slide: reuse its earlier report, or score it into a staged folder that
/// replaces the earlier one only when complete. A failed slide leaves no folder,
/// not even an earlier one: that was made from other inputs, and OUT must not show
/// a result for a slide its errors.csv lists.
fn one_slide(
    job: &SlideJob,
    out_dir: &Path,
    scoring: &Scoring,
    force: bool,
    tiles: Option<&indicatif::ProgressBar>,
) -> Result<Slide, FailedSlide> {
    let name = report::safe_name(&job.slide_id);
    let target = out_dir.join(&name);
    let failed = |stage: Stage, kind: &str, message: String| {
        let cleanup = staging::remove_folder(out_dir, &name)
            .err()
            .map_or(String::new(), |e| {
                format!(" (and its earlier folder could not be removed: {e})")
            });
        FailedSlide {
            slide_id: job.slide_id.clone(),
            path: job.path.display().to_string(),
            stage,
            kind: kind.to_string(),
            message: message + &cleanup,
        }
    };
    if std::fs::symlink_metadata(&job.path).is_err() {
        let message = format!("{}: no such file or folder", job.path.display());
        return Err(failed(Stage::Discover, "missing", message));
    }
    // A named pipe or a device is refused unopened, before resume would hash it.
    if let Err(e) = crate::slide::check_file_kind(&job.path) {
        return Err(failed(Stage::Open, e.kind(), e.to_string()));
    }
    if !force {
        if let Some(r) = resume::reusable(&target, job, scoring) {
            return Ok(Slide::Reused(r));
        }
    }
    let staged = StagedFolder::create(out_dir, &name)
        .map_err(|e| failed(Stage::Report, "io", e.to_string()))?;
    let scored = scoring.score_slide(&job.slide_id, &job.path, staged.path(), tiles);
    match scored {
        Ok(r) => match staged.commit() {
            Ok(()) => Ok(Slide::Scored(r)),
            Err(e) => Err(failed(Stage::Report, "io", e.to_string())),
        },
        Err(e) => {
            drop(staged);
            Err(failed(e.stage, e.kind(), e.to_string()))
        }
    }
}

/// The slide and tile progress bars on a terminal; plain stderr lines otherwise.
struct Progress {
    bars: Option<(
        indicatif::MultiProgress,
        indicatif::ProgressBar,
        indicatif::ProgressBar,
    )>,
}

impl Progress {
    fn new(show: bool, slides: usize) -> Progress {
        let style = |template: &str| {
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        };
        let bars = show.then(|| {
            let multi = indicatif::MultiProgress::new();
            let slide_bar = multi.add(indicatif::ProgressBar::new(slides as u64));
            slide_bar.set_style(style("slides {bar:30} {pos}/{len} {msg}"));
            let tile_bar = multi.add(indicatif::ProgressBar::new(0));
            tile_bar.set_style(style("tiles  {bar:30} {pos}/{len} {per_sec}"));
            (multi, slide_bar, tile_bar)
        });
        Progress { bars }
    }

    fn start(&self, slide_id: &str) {
        if let Some((_, slides, _)) = &self.bars {
            slides.set_message(slide_id.to_string());
        }
    }

    fn tiles(&self) -> Option<&indicatif::ProgressBar> {
        self.bars.as_ref().map(|b| &b.2)
    }

    fn println(&self, line: &str) {
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn slide_done(&self) {
        if let Some((_, slides, _)) = &self.bars {
            slides.inc(1);
        }
    }

    fn finish(&self) {
        if let Some((_, slides, tiles)) = &self.bars {
            tiles.finish_and_clear();
            slides.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::testing::{model, options, write_slide, ColourScorer};
    use crate::score::ScoreOptions;

    fn job(path: &Path) -> SlideJob {
        SlideJob {
            slide_id: path.file_stem().unwrap().to_string_lossy().into_owned(),
            path: path.to_path_buf(),
            extra: Default::default(),
        }
    }

    fn batch(jobs: &[SlideJob], out: &Path, options: ScoreOptions, force: bool) -> BatchOutcome {
        let scorer = ColourScorer::new(4);
        let scoring = Scoring::new(&scorer, model(), options).unwrap();
        let batch_options = BatchOptions {
            force,
            progress: false,
        };
        run(jobs, out, &scoring, &batch_options).unwrap()
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    /// Two slides and a file that is not one.
    fn slides(dir: &Path) -> Vec<SlideJob> {
        let (blue, red, bad) = (
            dir.join("blue.tif"),
            dir.join("red.tif"),
            dir.join("bad.svs"),
        );
        write_slide(&blue, Some([120, 80, 220]));
        write_slide(&red, Some([230, 120, 160]));
        std::fs::write(&bad, "not a slide").unwrap();
        vec![job(&blue), job(&red), job(&bad)]
    }

    #[test]
    fn a_rerun_reuses_reports_made_from_the_same_inputs_only() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = slides(dir.path());
        let out = dir.path().join("out");
        let first = batch(&jobs, &out, options(1), false);
        assert_eq!((first.reports.len(), first.failures.len()), (2, 1));
        assert!(first.reused.is_empty());
        let summary = read(&out.join("summary.csv"));
        let errors = read(&out.join("errors.csv"));

        let again = batch(&jobs, &out, options(2), false);
        assert_eq!(
            again.reused,
            ["blue", "red"],
            "threads do not change outputs"
        );
        assert_eq!(read(&out.join("summary.csv")), summary);
        assert_eq!(read(&out.join("errors.csv")), errors);
        assert_eq!(again.reports, first.reports);

        assert!(batch(&jobs, &out, options(1), true).reused.is_empty());
        let mut changed = options(1);
        changed.min_tissue = 0.9;
        assert!(batch(&jobs, &out, changed, false).reused.is_empty());
        // Back to the first options: the reports on disk were made with 0.9.
        assert!(batch(&jobs, &out, options(1), false).reused.is_empty());
        write_slide(&jobs[0].path, Some([110, 80, 220]));
        assert_eq!(batch(&jobs, &out, options(1), false).reused, ["red"]);
    }

    #[test]
    fn errors_table_names_stage_kind_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut jobs = slides(dir.path());
        jobs.push(job(&dir.path().join("gone.svs")));
        let out = dir.path().join("out");
        let outcome = batch(&jobs, &out, options(1), false);
        let text = String::from_utf8(read(&out.join("errors.csv"))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "slide_id,path,stage,kind,message");
        assert!(lines[1].starts_with("bad,"), "{text}");
        assert!(lines[1].contains(",open,unsupported,"), "{text}");
        assert!(lines[2].starts_with("gone,"), "{text}");
        assert!(lines[2].contains(",discover,missing,"), "{text}");
        assert!(lines[2].contains("gone.svs: no such file"), "{text}");
        assert_eq!(outcome.failures.len(), 2);
    }

    #[test]
    fn a_slide_that_now_fails_loses_its_earlier_folder_and_stale_folders_go() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = slides(dir.path());
        let out = dir.path().join("out");
        batch(&jobs, &out, options(1), false);
        assert!(out.join("blue/report.json").is_file());
        std::fs::create_dir(out.join(".red.partial-99999")).unwrap();
        std::fs::write(&jobs[0].path, "now broken").unwrap();
        let outcome = batch(&jobs, &out, options(1), false);
        let failed: Vec<&str> = outcome
            .failures
            .iter()
            .map(|f| f.slide_id.as_str())
            .collect();
        assert_eq!(failed, ["bad", "blue"]);
        assert!(!out.join("blue").exists());
        assert!(!out.join(".red.partial-99999").exists());
        assert_eq!(outcome.reused, ["red"]);
    }
}
