//! `dirascope calibrate`: fits a model folder's slide-rule thresholds on a labelled
//! calibration run and writes a new model folder (same ONNX, new `[rule]`).
//!
//! It owns the threshold fit and the new folder's `model.toml` and `calibration/`.
//! Scores come from each slide's `tiles.csv` under the given folder's aggregation and
//! rule shape (as `recall` computes them); the model is never run.
//!
//! **The fit** (as `training/rule_candidates.py` fitted model 1.x): for the DIRA
//! score, positives are the `dira` slides and negatives every other slide; for the
//! psoriasiform score, positives are `psoriasis` and `pustular-psoriasis`, negatives
//! `normal` (DIRA slides are called by their DIRA score first). On the grid
//! `T = 0.050, 0.055, ..., 0.955`, a threshold is admissible when the negatives at or
//! above `T - m` are at most `(1 - target specificity)` of them (none at the default
//! 1.0); among admissible thresholds those putting the most positives at or above
//! `T + m` are kept, and the threshold is the middle of their range, rounded to 3
//! decimals. `m` is the no-call margin: the model's, a given one, or (`auto`) the
//! largest on `0.000, 0.005, ..., 0.100` at which both scores still reach the target
//! sensitivity.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::aggregate::{self, Call};
use crate::recall::{self, RecallError, RuleSource};
use crate::report::{self, ReportError};
use crate::validate::{self, ValidateError};

/// The labels a calibration needs, each with at least one slide.
pub const CLASSES: [&str; 4] = ["dira", "pustular-psoriasis", "psoriasis", "normal"];

/// The call each class should get.
pub fn expected_call(label: &str) -> Option<Call> {
    match label {
        "dira" => Some(Call::DiraPattern),
        "pustular-psoriasis" | "psoriasis" => Some(Call::PsoriasiformPattern),
        "normal" => Some(Call::NoPustularPattern),
        _ => None,
    }
}

/// How to fit the no-call margin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MarginChoice {
    /// Keep the model folder's margin.
    Model,
    Fixed(f64),
    /// The largest margin at which both targets still hold.
    Auto,
}

#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    pub target_sensitivity: f64,
    pub target_specificity: f64,
    pub margin: MarginChoice,
    /// The new folder's version (default: the minor version bumped).
    pub version: Option<String>,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions {
            target_sensitivity: 0.95,
            target_specificity: 1.0,
            margin: MarginChoice::Model,
            version: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("{path}: the calibration needs slides of every class ({needed}); none labelled {missing} among the scored slides")]
    MissingClasses {
        path: PathBuf,
        missing: String,
        needed: String,
    },
    #[error("{path}: label '{label}' of slide '{slide}' is not one of {needed}")]
    UnknownLabel {
        path: PathBuf,
        slide: String,
        label: String,
        needed: String,
    },
    #[error("no threshold of the {score} score keeps the negatives' specificity at {target} with margin {margin} (highest negative {highest:.3})")]
    NoThreshold {
        score: &'static str,
        target: f64,
        margin: f64,
        highest: f64,
    },
    #[error("{path}: its slides were scored with different tile overlaps ({overlaps} px); a rule holds at one overlap, so calibrate on a run scored with one")]
    MixedOverlaps { path: PathBuf, overlaps: String },
    #[error("{0}: exists and is not empty; calibrate writes a new model folder")]
    OutExists(PathBuf),
    #[error("{path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error(transparent)]
    Recall(#[from] RecallError),
    #[error(transparent)]
    Labels(#[from] ValidateError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl CalibrateError {
    /// Errors in what the user asked for (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            CalibrateError::MissingClasses { .. }
                | CalibrateError::UnknownLabel { .. }
                | CalibrateError::OutExists(_)
                | CalibrateError::MixedOverlaps { .. }
                | CalibrateError::Labels(_)
        )
    }
}

/// One fitted threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub threshold: f64,
    /// Admissible thresholds giving the most positives: the range `threshold` is the middle of.
    pub range: (f64, f64),
    pub positives_above: usize,
    pub positives: usize,
    pub negatives_within: usize,
    pub negatives: usize,
}

impl Fit {
    pub fn sensitivity(&self) -> f64 {
        self.positives_above as f64 / self.positives.max(1) as f64
    }
}

/// The threshold grid: 0.050 to 0.955 in steps of 0.005, computed as numpy's
/// `arange(0.05, 0.96, 0.005)` computes it (step taken as `(0.05 + 0.005) - 0.05`),
/// so that midpoints and their rounding agree with `training/rule_candidates.py`.
fn grid() -> impl Iterator<Item = f64> {
    let (start, step) = (0.05f64, 0.005f64);
    let delta = (start + step) - start;
    (0..182).map(move |i| start + i as f64 * delta)
}

/// Rounds to 3 decimals as the decimal expansion says (as Python's `round`).
fn round3(x: f64) -> f64 {
    format!("{x:.3}").parse().unwrap_or(x)
}

/// Fits one threshold (see the module header); None when no threshold is admissible.
pub fn fit_threshold(
    pos: &[f64],
    neg: &[f64],
    margin: f64,
    target_specificity: f64,
) -> Option<Fit> {
    let allowed = ((1.0 - target_specificity) * neg.len() as f64 + 1e-9).floor() as usize;
    let mut best: Option<(usize, f64, f64)> = None;
    for t in grid() {
        let within = neg.iter().filter(|&&x| x >= t - margin).count();
        if within > allowed {
            continue;
        }
        let n = pos.iter().filter(|&&x| x >= t + margin).count();
        best = match best {
            Some((b, lo, _)) if n == b => Some((b, lo, t)),
            Some((b, _, _)) if n < b => best,
            _ => Some((n, t, t)),
        };
    }
    let (above, lo, hi) = best?;
    let threshold = round3((lo + hi) / 2.0);
    Some(Fit {
        threshold,
        range: (lo, hi),
        positives_above: above,
        positives: pos.len(),
        negatives_within: neg.iter().filter(|&&x| x >= threshold - margin).count(),
        negatives: neg.len(),
    })
}

/// `--margin auto`: the widest no-call margin in 0-0.1 (steps of 0.005) whose
/// fit, from `fit(m)`, still `meets` the targets; None when none does.
fn widest_margin<F>(
    fit: impl Fn(f64) -> Option<F>,
    meets: impl Fn(&F) -> bool,
) -> Option<(f64, F)> {
    (0..=20).rev().find_map(|i| {
        let m = i as f64 * 0.005;
        fit(m).filter(|f| meets(f)).map(|f| (round3(m), f))
    })
}

/// One calibration slide's scores and calls.
#[derive(Debug, Clone)]
pub struct CalSlide {
    pub slide_id: String,
    pub label: String,
    pub dira: f64,
    pub psoriasiform: f64,
    pub finding_scores: Vec<f64>,
    pub call_before: Call,
    pub call_after: Call,
}

/// Everything `calibrate` decided.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub model_dir: PathBuf,
    pub out_dir: PathBuf,
    pub version_before: String,
    pub version_after: String,
    pub dira_rule: &'static str,
    pub margin_before: f64,
    pub margin: f64,
    /// The tile overlap of the source folder and of the run fitted on (the new
    /// folder's).
    pub overlap_before: u32,
    pub overlap_px: u32,
    pub dira_before: f64,
    pub psoriasiform_before: f64,
    pub dira: Fit,
    pub psoriasiform: Fit,
    pub classes: Vec<String>,
    pub slides: Vec<CalSlide>,
    pub warnings: Vec<String>,
}

impl Calibration {
    pub fn right(&self, after: bool) -> usize {
        self.slides
            .iter()
            .filter(|s| {
                let call = if after { s.call_after } else { s.call_before };
                expected_call(&s.label) == Some(call)
            })
            .count()
    }

    /// What changed, for the terminal.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let n = self.slides.len();
        let _ = writeln!(
            s,
            "calibrated {} ({} rule) on {n} slides -> {}",
            self.model_dir.display(),
            self.dira_rule,
            self.out_dir.display()
        );
        let line = |s: &mut String, name: &str, a: String, b: String| {
            let mark = if a == b { "unchanged" } else { "changed" };
            let _ = writeln!(s, "  {name:<24} {a:>8} -> {b:<8} ({mark})");
        };
        line(
            &mut s,
            "version",
            self.version_before.clone(),
            self.version_after.clone(),
        );
        line(
            &mut s,
            "rule.dira_threshold",
            format!("{:.3}", self.dira_before),
            format!("{:.3}", self.dira.threshold),
        );
        line(
            &mut s,
            "rule.psoriasiform_threshold",
            format!("{:.3}", self.psoriasiform_before),
            format!("{:.3}", self.psoriasiform.threshold),
        );
        line(
            &mut s,
            "rule.no_call_margin",
            format!("{:.3}", self.margin_before),
            format!("{:.3}", self.margin),
        );
        if self.overlap_px != self.overlap_before {
            line(
                &mut s,
                "aggregation.overlap_px",
                self.overlap_before.to_string(),
                self.overlap_px.to_string(),
            );
        }
        let _ = writeln!(
            s,
            "  DIRA at or above T + m: {}/{} DIRA slides; non-DIRA slides at or above T - m: {}/{}",
            self.dira.positives_above,
            self.dira.positives,
            self.dira.negatives_within,
            self.dira.negatives
        );
        let _ = writeln!(
            s,
            "  psoriasiform at or above T + m: {}/{} psoriasis slides; normal at or above T - m: {}/{}",
            self.psoriasiform.positives_above,
            self.psoriasiform.positives,
            self.psoriasiform.negatives_within,
            self.psoriasiform.negatives
        );
        let _ = writeln!(
            s,
            "  calls as expected on the calibration set: {}/{n} before, {}/{n} after",
            self.right(false),
            self.right(true)
        );
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        s
    }
}

/// Fits the rule of `model_dir` on the scored run `results` with `labels` and writes
/// the new model folder `out_dir`.
pub fn calibrate(
    results: &Path,
    labels_path: &Path,
    model_dir: &Path,
    out_dir: &Path,
    options: &CalibrateOptions,
) -> Result<Calibration, CalibrateError> {
    if out_dir.exists()
        && std::fs::read_dir(out_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(CalibrateError::OutExists(out_dir.to_path_buf()));
    }
    let source = RuleSource::load(model_dir)?;
    let run = recall::read_run(results)?;
    let labels = validate::read_labels(labels_path)?;
    let by_id: BTreeMap<&str, &str> = labels
        .iter()
        .map(|l| (l.slide_id.as_str(), l.label.as_str()))
        .collect();
    let needed = CLASSES.join(", ");
    let mut slides = Vec::new();
    for s in &run.slides {
        source.check_except_overlap(&s.report)?;
        let Some(&label) = by_id.get(s.report.slide.id.as_str()) else {
            continue;
        };
        if expected_call(label).is_none() {
            return Err(CalibrateError::UnknownLabel {
                path: labels_path.to_path_buf(),
                slide: s.report.slide.id.clone(),
                label: label.to_string(),
                needed,
            });
        }
        let params = source.params(&s.report);
        let r = recall::rescore(s, &params)?;
        slides.push((s, label.to_string(), params, r));
    }
    // The rule is fitted at the overlap the run was scored with, and the new
    // folder declares it.
    let overlaps: BTreeSet<u32> = slides
        .iter()
        .map(|s| s.0.report.audit.configuration.tiling.overlap_px)
        .collect();
    if overlaps.len() > 1 {
        return Err(CalibrateError::MixedOverlaps {
            path: results.to_path_buf(),
            overlaps: overlaps
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let overlap_px = overlaps.first().copied().unwrap_or(0);
    let present: BTreeSet<&str> = slides.iter().map(|s| s.1.as_str()).collect();
    let missing: Vec<&str> = CLASSES
        .iter()
        .copied()
        .filter(|c| !present.contains(c))
        .collect();
    if !missing.is_empty() {
        return Err(CalibrateError::MissingClasses {
            path: labels_path.to_path_buf(),
            missing: missing.join(", "),
            needed,
        });
    }
    let rule = &source.manifest.rule;
    let dira_of = |label: &str| label == "dira";
    let pick = |f: &dyn Fn(&str) -> bool, score: &dyn Fn(&aggregate::SlideResult) -> f64| {
        slides
            .iter()
            .filter(|s| f(&s.1))
            .map(|s| score(&s.3))
            .collect::<Vec<f64>>()
    };
    let dira_pos = pick(&|l| dira_of(l), &|r| r.dira_score);
    let dira_neg = pick(&|l| !dira_of(l), &|r| r.dira_score);
    let ps_pos = pick(&|l| l == "psoriasis" || l == "pustular-psoriasis", &|r| {
        r.psoriasiform_score
    });
    let ps_neg = pick(&|l| l == "normal", &|r| r.psoriasiform_score);
    let fit_both = |m: f64| -> Result<(Fit, Fit), CalibrateError> {
        let no = |score: &'static str, neg: &[f64]| CalibrateError::NoThreshold {
            score,
            target: options.target_specificity,
            margin: m,
            highest: neg.iter().copied().fold(0.0, f64::max),
        };
        let d = fit_threshold(&dira_pos, &dira_neg, m, options.target_specificity)
            .ok_or_else(|| no("DIRA-pattern", &dira_neg))?;
        let p = fit_threshold(&ps_pos, &ps_neg, m, options.target_specificity)
            .ok_or_else(|| no("psoriasiform", &ps_neg))?;
        Ok((d, p))
    };
    let meets = |(d, p): &(Fit, Fit)| {
        d.sensitivity() >= options.target_sensitivity - 1e-12
            && p.sensitivity() >= options.target_sensitivity - 1e-12
    };
    let mut warnings = Vec::new();
    let (margin, (dira, psoriasiform)) = match options.margin {
        MarginChoice::Model => (rule.no_call_margin, fit_both(rule.no_call_margin)?),
        MarginChoice::Fixed(m) => (m, fit_both(m)?),
        MarginChoice::Auto => match widest_margin(|m| fit_both(m).ok(), meets) {
            Some(c) => c,
            None => {
                warnings.push(format!(
                    "no margin in 0-0.1 reaches the target sensitivity {}; kept the model's {}",
                    options.target_sensitivity, rule.no_call_margin
                ));
                (rule.no_call_margin, fit_both(rule.no_call_margin)?)
            }
        },
    };
    for (name, f) in [("DIRA-pattern", &dira), ("psoriasiform", &psoriasiform)] {
        if f.sensitivity() < options.target_sensitivity - 1e-12 {
            warnings.push(format!(
                "the {name} score reaches sensitivity {}/{} = {:.3} beyond the no-call band, below the target {}",
                f.positives_above,
                f.positives,
                f.sensitivity(),
                options.target_sensitivity
            ));
        }
    }
    let version_before = source.manifest.version.clone();
    let version_after = options
        .version
        .clone()
        .unwrap_or_else(|| bump_minor(&version_before));
    let cal_slides: Vec<CalSlide> = slides
        .iter()
        .map(|(s, label, params, r)| {
            let mut p = params.clone();
            p.dira_threshold = dira.threshold;
            p.psoriasiform_threshold = psoriasiform.threshold;
            p.no_call_margin = margin;
            let after = recall::rescore(s, &p).map(|a| a.call).unwrap_or(r.call);
            CalSlide {
                slide_id: s.report.slide.id.clone(),
                label: label.clone(),
                dira: r.dira_score,
                psoriasiform: r.psoriasiform_score,
                finding_scores: r.findings.iter().map(|f| f.score).collect(),
                call_before: r.call,
                call_after: after,
            }
        })
        .collect();
    let calibration = Calibration {
        model_dir: model_dir.to_path_buf(),
        out_dir: out_dir.to_path_buf(),
        version_before,
        version_after,
        dira_rule: source.params(&slides[0].0.report).dira_rule.as_str(),
        margin_before: rule.no_call_margin,
        margin,
        overlap_before: source.manifest.aggregation.overlap_px,
        overlap_px,
        dira_before: rule.dira_threshold,
        psoriasiform_before: rule.psoriasiform_threshold,
        dira,
        psoriasiform,
        classes: slides[0].0.report.model.classes.clone(),
        slides: cal_slides,
        warnings,
    };
    write_model_folder(&source, &calibration, results, labels_path)?;
    Ok(calibration)
}

/// `a.b.c` -> `a.(b+1).0`; anything else gets `-calibrated` appended.
pub fn bump_minor(version: &str) -> String {
    let parts: Vec<&str> = version.split('.').collect();
    match parts[..] {
        [a, b, c] if [a, b, c].iter().all(|p| p.parse::<u64>().is_ok()) => {
            let b: u64 = b.parse().unwrap_or(0);
            format!("{a}.{}.0", b + 1)
        }
        _ => format!("{version}-calibrated"),
    }
}

/// Sets `key = value` in TOML `section` ("" for the top level), replacing the line
/// that holds it or adding it right after the section header; comments and every
/// other line stay as they are.
pub fn set_toml_value(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut done = false;
    let mut header_at = if section.is_empty() { Some(0) } else { None };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            current = trimmed.trim_matches(|c| c == '[' || c == ']').to_string();
            out.push(line.to_string());
            if current == section {
                header_at = Some(out.len());
            }
            continue;
        }
        let is_key = trimmed
            .split_once('=')
            .is_some_and(|(k, _)| k.trim() == key);
        if !done && current == section && is_key {
            out.push(format!("{key} = {value}"));
            done = true;
        } else {
            out.push(line.to_string());
        }
    }
    if !done {
        let at = header_at.unwrap_or(out.len());
        if header_at.is_none() {
            out.push(format!("[{section}]"));
        }
        out.insert(at.min(out.len()), format!("{key} = {value}"));
    }
    out.join("\n") + "\n"
}

/// The comment lines of the TOML `[rule]` section of `text`.
fn rule_comments(text: &str) -> Vec<&str> {
    let mut in_rule = false;
    text.lines()
        .filter(|l| {
            let t = l.trim();
            if t.starts_with('[') {
                in_rule = t == "[rule]";
            }
            in_rule && t.starts_with('#')
        })
        .collect()
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> CalibrateError {
    CalibrateError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Copies `from` into `to` recursively, leaving out the folders that describe the
/// old rule (`validation/`, `calibration/`) and `model.toml` (written anew).
fn copy_model_files(from: &Path, to: &Path, top: bool) -> Result<(), CalibrateError> {
    std::fs::create_dir_all(to).map_err(|e| write_err(to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| write_err(from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| write_err(from, e))?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        if top && ["validation", "calibration", "model.toml"].contains(&name_s.as_ref()) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if src.is_dir() {
            copy_model_files(&src, &dst, false)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| write_err(&dst, e))?;
        }
    }
    Ok(())
}

fn write_model_folder(
    source: &RuleSource,
    c: &Calibration,
    results: &Path,
    labels: &Path,
) -> Result<(), CalibrateError> {
    let out = &c.out_dir;
    copy_model_files(&source.dir, out, true)?;
    let toml_path = source.dir.join("model.toml");
    let mut text = std::fs::read_to_string(&toml_path).map_err(|e| write_err(&toml_path, e))?;
    text = set_toml_value(&text, "", "version", &format!("{:?}", c.version_after));
    for (key, v) in [
        ("dira_threshold", c.dira.threshold),
        ("psoriasiform_threshold", c.psoriasiform.threshold),
        ("no_call_margin", c.margin),
    ] {
        text = set_toml_value(&text, "rule", key, &format!("{v}"));
    }
    if c.overlap_px != c.overlap_before {
        text = set_toml_value(
            &text,
            "aggregation",
            "overlap_px",
            &c.overlap_px.to_string(),
        );
    }
    let stamp = "# Thresholds fitted by dirascope calibrate";
    let inherited = "# Other comments in this section predate this calibration";
    // Hand-written notes in [rule] describe the source's thresholds, not these: say so.
    let notes = rule_comments(&text)
        .iter()
        .any(|l| !l.starts_with(stamp) && !l.starts_with(inherited));
    let heading = format!(
        "[rule]\n{stamp} on {} slides (calibration/calibration.md).{}",
        c.slides.len(),
        if notes {
            format!(
                "\n{inherited} (source version {}): its thresholds replaced the ones they describe.",
                c.version_before
            )
        } else {
            String::new()
        }
    );
    text = text
        .lines()
        .filter(|l| !l.starts_with(stamp) && !l.starts_with(inherited))
        .map(|l| match l.trim() {
            "[rule]" => heading.clone(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let path = out.join("model.toml");
    report::write_atomic(&path, text.as_bytes())?;
    crate::model::manifest::Manifest::from_file(&path).map_err(|e| write_err(&path, e))?;
    let cal = out.join("calibration");
    report::write_atomic(
        &cal.join("calibration.md"),
        markdown(c, results, labels).as_bytes(),
    )?;
    report::write_atomic(&cal.join("scores.csv"), scores_csv(c).as_bytes())?;
    report::write_atomic(
        &cal.join("dira_scores.svg"),
        strip_svg(c, "DIRA-pattern score", |s| s.dira, &c.dira).as_bytes(),
    )?;
    report::write_atomic(
        &cal.join("psoriasiform_scores.svg"),
        strip_svg(c, "psoriasiform score", |s| s.psoriasiform, &c.psoriasiform).as_bytes(),
    )?;
    Ok(())
}

fn scores_csv(c: &Calibration) -> String {
    let mut s = String::from("slide_id,label,dira_score,psoriasiform_score");
    for k in &c.classes {
        let _ = write!(s, ",{k}");
    }
    s.push_str(",call_before,call_after\n");
    for x in &c.slides {
        let _ = write!(
            s,
            "{},{},{},{}",
            x.slide_id,
            x.label,
            report::csv::f6(x.dira),
            report::csv::f6(x.psoriasiform)
        );
        for v in &x.finding_scores {
            let _ = write!(s, ",{}", report::csv::f6(*v));
        }
        let _ = writeln!(s, ",{},{}", x.call_before, x.call_after);
    }
    s
}

fn markdown(c: &Calibration, results: &Path, labels: &Path) -> String {
    let mut s = String::from("# Calibration\n\n");
    let _ = writeln!(
        s,
        "`dirascope calibrate --results {} --labels {} --model {}` (dirascope {}).\n",
        results.display(),
        labels.display(),
        c.model_dir.display(),
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(s, "```\n{}```\n", c.summary());
    let _ = writeln!(s, "| label | slides | DIRA score min-max | psoriasiform score min-max | calls right after |\n|---|---:|---|---|---:|");
    for label in CLASSES {
        let xs: Vec<&CalSlide> = c.slides.iter().filter(|x| x.label == label).collect();
        let range = |f: &dyn Fn(&CalSlide) -> f64| {
            let lo = xs.iter().map(|x| f(x)).fold(f64::INFINITY, f64::min);
            let hi = xs.iter().map(|x| f(x)).fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.3}-{hi:.3}")
        };
        let right = xs
            .iter()
            .filter(|x| expected_call(label) == Some(x.call_after))
            .count();
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {right}/{} |",
            xs.len(),
            range(&|x| x.dira),
            range(&|x| x.psoriasiform),
            xs.len()
        );
    }
    s.push_str("\nEvery slide's scores and calls: scores.csv. Figures: dira_scores.svg, psoriasiform_scores.svg.\n");
    s
}

/// A strip plot of one score by class with the threshold and its no-call band.
fn strip_svg(c: &Calibration, title: &str, score: fn(&CalSlide) -> f64, fit: &Fit) -> String {
    let (w, h, left, right, top, row) = (640.0, 300.0, 150.0, 20.0, 40.0, 55.0);
    let x = |v: f64| left + v.clamp(0.0, 1.0) * (w - left - right);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"22\" font-size=\"14\">{} on the calibration set</text>",
        left,
        report::html::escape(title)
    );
    let (lo, hi) = (x(fit.threshold - c.margin), x(fit.threshold + c.margin));
    let bottom = top + row * CLASSES.len() as f64;
    let _ = writeln!(
        s,
        "<rect x=\"{lo:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{}\" fill=\"#dddddd\"/>",
        (hi - lo).max(0.5),
        bottom - top
    );
    let t = x(fit.threshold);
    let _ = writeln!(
        s,
        "<line x1=\"{t:.1}\" y1=\"{top}\" x2=\"{t:.1}\" y2=\"{bottom}\" stroke=\"black\" stroke-dasharray=\"4 3\"/>"
    );
    let _ = writeln!(
        s,
        "<text x=\"{t:.1}\" y=\"{}\" text-anchor=\"middle\">T = {:.3}, band ±{:.3}</text>",
        top - 4.0,
        fit.threshold,
        c.margin
    );
    for (i, label) in CLASSES.iter().enumerate() {
        let y = top + row * (i as f64 + 0.5);
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            left - 8.0,
            y + 4.0
        );
        let xs: Vec<&CalSlide> = c.slides.iter().filter(|x| x.label == *label).collect();
        for (j, slide) in xs.iter().enumerate() {
            let jitter = ((j % 7) as f64 - 3.0) * 4.0;
            let right = expected_call(label) == Some(slide.call_after);
            let colour = if right { "#1f77b4" } else { "#d62728" };
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"none\" stroke=\"{colour}\"><title>{} {:.3} {}</title></circle>",
                x(score(slide)),
                y + jitter,
                report::html::escape(&slide.slide_id),
                score(slide),
                slide.call_after
            );
        }
    }
    for k in 0..=10 {
        let v = k as f64 / 10.0;
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{bottom}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"black\"/><text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\">{v:.1}</text>",
            x(v),
            bottom + 4.0,
            bottom + 18.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\">circles: slides (red: call not as expected after calibration); grey: no-call band</text>",
        left,
        h - 8.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_the_middle_of_the_best_range() {
        // Negatives up to 0.302, positives from 0.412: with m = 0.03 admissible T > 0.332,
        // every positive at T + m for T <= 0.382: range 0.335..0.380 -> 0.3575.
        let f = fit_threshold(&[0.412, 0.5, 0.9], &[0.1, 0.302], 0.03, 1.0).unwrap();
        assert_eq!(f.positives_above, 3);
        assert!((f.range.0 - 0.335).abs() < 1e-9 && (f.range.1 - 0.38).abs() < 1e-9);
        assert!((f.threshold - 0.357).abs() < 1e-9 || (f.threshold - 0.358).abs() < 1e-9);
        assert_eq!((f.negatives_within, f.negatives), (0, 2));
        // A specificity target of 0.5 lets one of two negatives into the band.
        let f = fit_threshold(&[0.25, 0.9], &[0.1, 0.3], 0.03, 0.5).unwrap();
        assert_eq!(f.positives_above, 2);
        // Nothing admissible: a negative at 1.0.
        assert!(fit_threshold(&[0.9], &[1.0], 0.03, 1.0).is_none());
    }

    #[test]
    fn auto_margin_is_the_widest_band_that_keeps_every_positive_beyond_it() {
        // Negatives up to 0.50, positives from 0.60: a band of 2m fits in the gap
        // of 0.10 only for m < 0.05 on the 0.005 threshold grid.
        let (pos, neg) = ([0.6, 0.7, 0.95], [0.1, 0.3, 0.5]);
        let fit = |m: f64| fit_threshold(&pos, &neg, m, 1.0);
        let all = |f: &Fit| f.positives_above == f.positives;
        let (m, f) = widest_margin(fit, all).unwrap();
        assert!((m - 0.045).abs() < 1e-9, "{m}");
        assert_eq!(f.positives_above, 3);
        assert!(
            f.threshold - m > 0.5 && f.threshold + m <= 0.6 + 1e-9,
            "{f:?}"
        );
        // Classes that overlap leave no margin at all that meets the target.
        let fit = |m: f64| fit_threshold(&[0.4, 0.9], &[0.5], m, 1.0);
        assert!(widest_margin(fit, all).is_none());
    }

    #[test]
    fn versions_and_toml_edits() {
        assert_eq!(bump_minor("1.2.0"), "1.3.0");
        assert_eq!(bump_minor("beta"), "beta-calibrated");
        let text =
            "name = \"x\"\nversion = \"1.2.0\"\n\n[rule]\n# keep me\ndira_threshold = 0.342\n";
        let t = set_toml_value(text, "rule", "dira_threshold", "0.4");
        let t = set_toml_value(&t, "", "version", "\"1.3.0\"");
        let t = set_toml_value(&t, "rule", "dira_rule", "\"two-of-three\"");
        assert_eq!(
            t,
            "name = \"x\"\nversion = \"1.3.0\"\n\n[rule]\ndira_rule = \"two-of-three\"\n# keep me\ndira_threshold = 0.4\n"
        );
    }
}
