//! The `validate` stage: scored slides + reference labels -> metrics a paper can quote.
//!
//! It joins results to labels (listing every unmatched slide, never dropping one
//! silently), computes the confusion matrix of calls and, per score, AUROC with a
//! seeded bootstrap CI, operating points, Brier score and calibration, and writes
//! metrics.json, validation.md and PNG and SVG plots (one SVG pair per protocol
//! stratum where the labels name strata). It never runs the model.

pub mod geojson_truth;
pub mod metrics;
pub mod plot;
pub mod svg;
pub mod truth;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use self::metrics::{Case, Interval, OperatingPoint, ReliabilityBin, Resampling};

/// One scored slide as the validation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlideScores {
    pub slide_id: String,
    pub call: String,
    /// Score name -> value (for example `dira_pattern`, `subcorneal_pustule`).
    pub scores: BTreeMap<String, f64>,
}

/// The reference diagnosis of one slide.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub slide_id: String,
    pub label: String,
    pub patient_id: Option<String>,
    /// The protocol stratum (optional `stratum` column): one figure per stratum.
    pub stratum: Option<String>,
}

/// Which labels count as positive for one score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreTarget {
    pub score: String,
    pub positive_labels: Vec<String>,
    /// The threshold the model's manifest uses for this score.
    pub threshold: f64,
}

/// Options for [`validate`], with documented defaults.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateOptions {
    /// Sensitivity the second operating point must reach (default 0.95).
    pub target_sensitivity: f64,
    /// Bootstrap resamples (default 2000; at least 1000 is sensible).
    pub resamples: usize,
    /// Seed of the bootstrap (default 20260101).
    pub seed: u64,
    /// Bins of the reliability diagram (default 10).
    pub bins: usize,
    /// The scores to evaluate and what is positive for each.
    pub targets: Vec<ScoreTarget>,
}

impl ValidateOptions {
    /// Targets for phantom class names: the DIRA-pattern score against `positive`;
    /// each finding against the classes that carry it (histology.md's table) when the
    /// labels are phantom classes, else against `positive` too.
    pub fn phantom_defaults(positive: &str, thresholds: &BTreeMap<String, f64>) -> ValidateOptions {
        let phantom = |score: &str| -> Vec<String> {
            let v: &[&str] = match score {
                "subcorneal_pustule" => &["dira", "pustular-psoriasis"],
                "acantholysis" | "neutrophilic_eccrine_hidradenitis" => &["dira"],
                "psoriasiform" | "psoriasiform_pattern" => &["pustular-psoriasis", "psoriasis"],
                _ => &[],
            };
            v.iter().map(|s| s.to_string()).collect()
        };
        let names = [
            "dira_pattern",
            "psoriasiform_pattern",
            "subcorneal_pustule",
            "acantholysis",
            "neutrophilic_eccrine_hidradenitis",
            "psoriasiform",
        ];
        let targets = names
            .iter()
            .map(|&score| {
                let mut positive_labels = phantom(score);
                if score == "dira_pattern" || positive != "dira" || positive_labels.is_empty() {
                    positive_labels = vec![positive.to_string()];
                }
                ScoreTarget {
                    score: score.to_string(),
                    positive_labels,
                    threshold: thresholds.get(score).copied().unwrap_or(0.5),
                }
            })
            .collect();
        ValidateOptions {
            target_sensitivity: 0.95,
            resamples: 2000,
            seed: 20260101,
            bins: 10,
            targets,
        }
    }
}

/// Metrics for one score.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreMetrics {
    pub score: String,
    pub positive_labels: Vec<String>,
    pub positives: usize,
    pub negatives: usize,
    pub auroc: Option<f64>,
    pub auroc_ci95: Option<Interval>,
    pub at_manifest_threshold: OperatingPoint,
    pub at_target_sensitivity: Option<OperatingPoint>,
    pub brier: Option<f64>,
    pub ece: Option<f64>,
    pub reliability: Vec<ReliabilityBin>,
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
    /// 95% bootstrap band of the ROC: (1 - specificity, low, high sensitivity).
    #[serde(skip)]
    pub roc_band: Vec<(f64, f64, f64)>,
}

/// The figures of one protocol stratum (labels' `stratum` column).
#[derive(Debug, Clone)]
pub struct StratumFigures {
    pub stratum: String,
    pub slides: usize,
    pub scores: Vec<ScoreMetrics>,
}

/// Everything `validate` computes.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub schema_version: u32,
    pub tool_version: String,
    pub options: ValidateOptions,
    pub resampling: Resampling,
    pub slides_evaluated: usize,
    pub patients: Option<usize>,
    /// Slides with results but no label, and labels naming slides without results.
    pub unlabelled_slides: Vec<String>,
    pub labels_without_results: Vec<String>,
    /// label -> call -> count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// label -> slides called `out-of-distribution` (the model abstained), counted
    /// apart from the pattern calls; absent when none was.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub abstained: BTreeMap<String, usize>,
    pub scores: Vec<ScoreMetrics>,
    /// Tile-level AUROC per finding against phantom truth masks (`--truth`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tile_truth: Option<truth::TileTruth>,
    /// Per-stratum figures (labels with a `stratum` column); not in metrics.json.
    #[serde(skip)]
    pub strata: Vec<StratumFigures>,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error("no slide has both a result and a label (results: {results}, labels: {labels})")]
    NothingToEvaluate { results: usize, labels: usize },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Joins results to labels and computes every metric.
pub fn validate(
    results: &[SlideScores],
    labels: &[Label],
    options: &ValidateOptions,
) -> Result<Validation, ValidateError> {
    let by_id: BTreeMap<&str, &Label> = labels.iter().map(|l| (l.slide_id.as_str(), l)).collect();
    let result_ids: BTreeSet<&str> = results.iter().map(|r| r.slide_id.as_str()).collect();
    let unlabelled_slides: Vec<String> = results
        .iter()
        .filter(|r| !by_id.contains_key(r.slide_id.as_str()))
        .map(|r| r.slide_id.clone())
        .collect();
    let labels_without_results: Vec<String> = labels
        .iter()
        .filter(|l| !result_ids.contains(l.slide_id.as_str()))
        .map(|l| l.slide_id.clone())
        .collect();
    let mut joined: Vec<(&SlideScores, &Label)> = results
        .iter()
        .filter_map(|r| by_id.get(r.slide_id.as_str()).map(|l| (r, *l)))
        .collect();
    joined.sort_by(|a, b| a.0.slide_id.cmp(&b.0.slide_id));
    if joined.is_empty() {
        return Err(ValidateError::NothingToEvaluate {
            results: results.len(),
            labels: labels.len(),
        });
    }
    let clustered = joined.iter().all(|(_, l)| l.patient_id.is_some());
    let patient_index: BTreeMap<String, usize> = joined
        .iter()
        .map(|(r, l)| l.patient_id.clone().unwrap_or_else(|| r.slide_id.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, i))
        .collect();
    let resampling = if clustered {
        Resampling::ClusteredByPatient
    } else {
        Resampling::Stratified
    };
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (r, l) in &joined {
        *confusion
            .entry(l.label.clone())
            .or_default()
            .entry(r.call.clone())
            .or_default() += 1;
    }
    let abstained: BTreeMap<String, usize> = confusion
        .iter()
        .filter_map(|(label, calls)| {
            calls
                .get(crate::aggregate::Call::OutOfDistribution.as_str())
                .map(|n| (label.clone(), *n))
        })
        .collect();
    let scores = score_metrics(&joined, options, resampling, &patient_index);
    let strata_names: BTreeSet<&str> = joined
        .iter()
        .filter_map(|(_, l)| l.stratum.as_deref())
        .collect();
    let strata = strata_names
        .into_iter()
        .map(|name| {
            let subset: Vec<(&SlideScores, &Label)> = joined
                .iter()
                .filter(|(_, l)| l.stratum.as_deref() == Some(name))
                .copied()
                .collect();
            StratumFigures {
                stratum: name.to_string(),
                slides: subset.len(),
                scores: score_metrics(&subset, options, resampling, &patient_index),
            }
        })
        .collect();
    Ok(Validation {
        schema_version: 1,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        options: options.clone(),
        resampling,
        slides_evaluated: joined.len(),
        patients: clustered.then_some(patient_index.len()),
        unlabelled_slides,
        labels_without_results,
        confusion,
        abstained,
        scores,
        tile_truth: None,
        strata,
    })
}

/// Every target's metrics on `joined` (all slides, or one stratum's).
fn score_metrics(
    joined: &[(&SlideScores, &Label)],
    options: &ValidateOptions,
    resampling: Resampling,
    patient_index: &BTreeMap<String, usize>,
) -> Vec<ScoreMetrics> {
    let mut scores = Vec::new();
    for (k, target) in options.targets.iter().enumerate() {
        let cases: Vec<Case> = joined
            .iter()
            .filter_map(|(r, l)| {
                let score = *r.scores.get(&target.score)?;
                let patient = l.patient_id.clone().unwrap_or_else(|| r.slide_id.clone());
                Some(Case {
                    score,
                    positive: target.positive_labels.contains(&l.label),
                    cluster: patient_index[&patient],
                })
            })
            .collect();
        if cases.is_empty() {
            continue;
        }
        let (reliability, ece) = metrics::calibration(&cases, options.bins);
        let at_target = metrics::threshold_for_sensitivity(&cases, options.target_sensitivity)
            .map(|t| metrics::operating_point(&cases, t));
        scores.push(ScoreMetrics {
            score: target.score.clone(),
            positive_labels: target.positive_labels.clone(),
            positives: cases.iter().filter(|c| c.positive).count(),
            negatives: cases.iter().filter(|c| !c.positive).count(),
            auroc: metrics::auroc(&cases),
            auroc_ci95: metrics::bootstrap(
                &cases,
                resampling,
                options.resamples,
                options.seed.wrapping_add(k as u64),
                metrics::auroc,
            ),
            at_manifest_threshold: metrics::operating_point(&cases, target.threshold),
            at_target_sensitivity: at_target,
            brier: metrics::brier(&cases),
            ece,
            reliability,
            roc: metrics::roc_curve(&cases),
            roc_band: metrics::roc_band(
                &cases,
                resampling,
                options.resamples,
                options.seed.wrapping_add(k as u64),
            ),
        });
    }
    scores
}

/// Reads `labels.csv`: `slide_id,label[,patient_id][,...]`.
pub fn read_labels(path: &Path) -> Result<Vec<Label>, ValidateError> {
    let err = |reason: String| ValidateError::Input {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(id_col), Some(label_col)) = (col("slide_id"), col("label")) else {
        return Err(err(format!(
            "needs columns slide_id and label, found: {}",
            headers.iter().collect::<Vec<_>>().join(",")
        )));
    };
    let patient_col = col("patient_id");
    let stratum_col = col("stratum");
    let mut labels = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| err(format!("row {}: {e}", i + 2)))?;
        let id = row.get(id_col).unwrap_or("").trim().to_string();
        if id.is_empty() {
            return Err(err(format!("row {}: empty slide_id", i + 2)));
        }
        if !seen.insert(id.clone()) {
            return Err(err(format!("row {}: slide_id '{id}' appears twice", i + 2)));
        }
        labels.push(Label {
            slide_id: id,
            label: row.get(label_col).unwrap_or("").trim().to_string(),
            patient_id: patient_col
                .and_then(|c| row.get(c))
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty()),
            stratum: stratum_col
                .and_then(|c| row.get(c))
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty()),
        });
    }
    Ok(labels)
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.3}"))
}

/// The tables of `validation.md`.
pub fn markdown(v: &Validation) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Validation\n");
    let _ = writeln!(
        s,
        "dirascope {}; {} slides evaluated; bootstrap: {} resamples, {}, seed {}; research use only.\n",
        v.tool_version,
        v.slides_evaluated,
        v.options.resamples,
        match v.resampling {
            Resampling::Stratified => "stratified by label".to_string(),
            Resampling::ClusteredByPatient =>
                format!("clustered by patient ({} patients)", v.patients.unwrap_or(0)),
        },
        v.options.seed
    );
    if !v.unlabelled_slides.is_empty() || !v.labels_without_results.is_empty() {
        let _ = writeln!(s, "## Not evaluated\n");
        let _ = writeln!(
            s,
            "- slides with results but no label ({}): {}",
            v.unlabelled_slides.len(),
            v.unlabelled_slides.join(", ")
        );
        let _ = writeln!(
            s,
            "- labels naming slides without results ({}): {}\n",
            v.labels_without_results.len(),
            v.labels_without_results.join(", ")
        );
    }
    let calls: BTreeSet<&String> = v.confusion.values().flat_map(|m| m.keys()).collect();
    let _ = writeln!(s, "## Calls by reference label\n");
    let _ = write!(s, "| label |");
    for c in &calls {
        let _ = write!(s, " {c} |");
    }
    let _ = write!(s, "\n|---|");
    for _ in &calls {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s);
    for (label, row) in &v.confusion {
        let _ = write!(s, "| {label} |");
        for c in &calls {
            let _ = write!(s, " {} |", row.get(*c).copied().unwrap_or(0));
        }
        let _ = writeln!(s);
    }
    if !v.abstained.is_empty() {
        let total: usize = v.abstained.values().sum();
        let by_label: Vec<String> = v
            .abstained
            .iter()
            .map(|(label, n)| format!("{label} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "\n## Abstentions\n\n{total} of {} slides were called out-of-distribution: the model abstained, their tissue being unlike its training data ({}). They are counted apart from the pattern calls above; the score metrics below still include their scores.",
            v.slides_evaluated,
            by_label.join(", ")
        );
    }
    let _ = writeln!(s, "\n## Scores\n");
    let _ = writeln!(
        s,
        "| score | positive labels | n+ / n- | AUROC (95% CI) | threshold | sens | spec | PPV | NPV | thr @ sens {:.2} | sens | spec | Brier | ECE |",
        v.options.target_sensitivity
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for m in &v.scores {
        let ci = m
            .auroc_ci95
            .map_or(String::new(), |c| format!(" ({:.3}–{:.3})", c.low, c.high));
        let op = &m.at_manifest_threshold;
        let (tt, ts, tsp) = match &m.at_target_sensitivity {
            Some(t) => (
                format!("{:.3}", t.threshold),
                fmt_opt(t.sensitivity),
                fmt_opt(t.specificity),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} / {} | {}{} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.score,
            m.positive_labels.join(", "),
            m.positives,
            m.negatives,
            fmt_opt(m.auroc),
            ci,
            op.threshold,
            fmt_opt(op.sensitivity),
            fmt_opt(op.specificity),
            fmt_opt(op.ppv),
            fmt_opt(op.npv),
            tt,
            ts,
            tsp,
            fmt_opt(m.brier),
            fmt_opt(m.ece)
        );
    }
    if let Some(t) = &v.tile_truth {
        let _ = writeln!(s, "\n## Tile-level AUROC against {}\n", t.source);
        let _ = writeln!(
            s,
            "{} slides, {} scored tiles; a tile is positive when the finding's mask covers at least the stated fraction of it, negative when it covers none, left out in between; 95% CI by resampling whole slides.\n",
            t.slides, t.tiles
        );
        if !t.slides_without_truth.is_empty() {
            let _ = writeln!(
                s,
                "Slides without a truth file ({}): {}\n",
                t.slides_without_truth.len(),
                t.slides_without_truth.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "| finding | positive at | n+ / n- | excluded | AUROC (95% CI) |\n|---|---:|---|---:|---|"
        );
        for m in &t.findings {
            let ci = m
                .auroc_ci95
                .map_or(String::new(), |c| format!(" ({:.3}–{:.3})", c.low, c.high));
            let _ = writeln!(
                s,
                "| {} | {} | {} / {} | {} | {}{} |",
                m.finding,
                m.min_fraction,
                m.positives,
                m.negatives,
                m.excluded,
                fmt_opt(m.auroc),
                ci
            );
        }
    }
    s
}

/// Writes metrics.json, validation.md, roc.png and reliability.png into `out`, the
/// same figures as SVG (roc.svg, reliability.svg), and with a `stratum` column in the
/// labels one pair of SVG figures per stratum in `strata/`.
pub fn write_outputs(v: &Validation, out: &Path) -> Result<(), ValidateError> {
    let write = |name: &str, bytes: &[u8]| -> Result<(), ValidateError> {
        let path = out.join(name);
        let file = path
            .file_name()
            .map_or(String::new(), |f| f.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(".{file}.partial"));
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| ValidateError::Write { path, source })
    };
    std::fs::create_dir_all(out).map_err(|source| ValidateError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_string_pretty(v).unwrap_or_default();
    write("metrics.json", json.as_bytes())?;
    write("validation.md", markdown(v).as_bytes())?;
    const COLORS: [[u8; 3]; 6] = [
        [200, 30, 30],
        [30, 90, 200],
        [230, 140, 0],
        [120, 40, 160],
        [20, 150, 80],
        [90, 90, 90],
    ];
    let labels: Vec<String> = v
        .scores
        .iter()
        .map(|m| format!("{} {}", m.score, fmt_opt(m.auroc)))
        .collect();
    let roc: Vec<plot::Series> = v
        .scores
        .iter()
        .zip(&labels)
        .enumerate()
        .map(|(i, (m, label))| plot::Series {
            label,
            color: COLORS[i % COLORS.len()],
            points: &m.roc,
            markers: false,
        })
        .collect();
    let img = plot::unit_plot("ROC", "1 - specificity", "sensitivity", &roc);
    let reliability_points: Vec<Vec<(f64, f64)>> = v
        .scores
        .iter()
        .map(|m| {
            m.reliability
                .iter()
                .filter_map(|b| Some((b.mean_score?, b.fraction_positive?)))
                .collect()
        })
        .collect();
    let rel: Vec<plot::Series> = v
        .scores
        .iter()
        .zip(&reliability_points)
        .enumerate()
        .map(|(i, (m, points))| plot::Series {
            label: &m.score,
            color: COLORS[i % COLORS.len()],
            points,
            markers: true,
        })
        .collect();
    let rel_img = plot::unit_plot("Reliability", "mean score", "fraction positive", &rel);
    write("roc.svg", roc_svg("ROC, all slides", &v.scores).as_bytes())?;
    write(
        "reliability.svg",
        reliability_svg("Reliability, all slides", &v.scores).as_bytes(),
    )?;
    if !v.strata.is_empty() {
        let dir = out.join("strata");
        std::fs::create_dir_all(&dir).map_err(|source| ValidateError::Write {
            path: dir.clone(),
            source,
        })?;
        for st in &v.strata {
            let name = crate::report::safe_name(&st.stratum);
            let title =
                |what: &str| format!("{what}, stratum {} ({} slides)", st.stratum, st.slides);
            write(
                &format!("strata/roc_{name}.svg"),
                roc_svg(&title("ROC"), &st.scores).as_bytes(),
            )?;
            write(
                &format!("strata/reliability_{name}.svg"),
                reliability_svg(&title("Reliability"), &st.scores).as_bytes(),
            )?;
        }
    }
    for (name, img) in [("roc.png", img), ("reliability.png", rel_img)] {
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .map_err(|e| ValidateError::Write {
                path: out.join(name),
                source: std::io::Error::other(e),
            })?;
        write(name, &bytes)?;
    }
    Ok(())
}

/// The ROC figure as SVG: every score's curve with its bootstrap band and AUROC.
fn roc_svg(title: &str, scores: &[ScoreMetrics]) -> String {
    let curves: Vec<svg::Curve> = scores
        .iter()
        .map(|m| svg::Curve {
            label: format!(
                "{} {} ({}+/{}-)",
                m.score,
                fmt_opt(m.auroc),
                m.positives,
                m.negatives
            ),
            points: &m.roc,
            band: m.roc_band.clone(),
            counts: None,
        })
        .collect();
    svg::unit_plot(title, "1 - specificity", "sensitivity", &curves)
}

/// The reliability figure as SVG: each bin's mean score against its fraction
/// positive, with the bin's slide count beside it.
fn reliability_svg(title: &str, scores: &[ScoreMetrics]) -> String {
    // Per score: the (mean score, fraction positive) points and each bin's count.
    type BinPoints = (Vec<(f64, f64)>, Vec<usize>);
    let points: Vec<BinPoints> = scores
        .iter()
        .map(|m| {
            m.reliability
                .iter()
                .filter_map(|b| Some(((b.mean_score?, b.fraction_positive?), b.count)))
                .unzip()
        })
        .collect();
    let curves: Vec<svg::Curve> = scores
        .iter()
        .zip(&points)
        .map(|(m, (p, counts))| svg::Curve {
            label: format!("{} (ECE {})", m.score, fmt_opt(m.ece)),
            points: p,
            band: Vec::new(),
            counts: Some(counts.clone()),
        })
        .collect();
    svg::unit_plot(title, "mean score", "fraction positive", &curves)
}

/// Reads every `RESULTS/<slide>/report.json`: the call, the pattern scores and each
/// finding's slide score, plus the thresholds the run used (`parameters.aggregate`).
pub fn read_results(
    dir: &Path,
) -> Result<(Vec<SlideScores>, BTreeMap<String, f64>), ValidateError> {
    let err = |path: &Path, reason: String| ValidateError::Input {
        path: path.to_path_buf(),
        reason,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e.to_string()))?
        .filter_map(|e| e.ok())
        // Hidden folders are slides in transit (see batch::staging), not results.
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path().join("report.json"))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let mut results = Vec::new();
    let mut thresholds = BTreeMap::new();
    for path in entries {
        let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(&path, format!("not JSON: {e}")))?;
        let id = v["slide"]["id"]
            .as_str()
            .ok_or_else(|| err(&path, "no slide.id".into()))?;
        let r = &v["result"];
        let mut scores = BTreeMap::new();
        for (name, key) in [
            ("dira_pattern", "dira_score"),
            ("psoriasiform_pattern", "psoriasiform_score"),
        ] {
            if let Some(x) = r[key].as_f64() {
                scores.insert(name.to_string(), x);
            }
        }
        for f in r["findings"].as_array().into_iter().flatten() {
            // `score` is the slide score the rule used; reports before it had only
            // `top_k_mean`, which was that score then.
            let x = f["score"].as_f64().or_else(|| f["top_k_mean"].as_f64());
            if let (Some(k), Some(x)) = (f["key"].as_str(), x) {
                scores.insert(k.to_string(), x);
            }
        }
        let agg = &v["parameters"]["aggregate"];
        if let Some(t) = agg["dira_threshold"].as_f64() {
            thresholds.insert("dira_pattern".to_string(), t);
        }
        if let Some(t) = agg["psoriasiform_threshold"].as_f64() {
            thresholds.insert("psoriasiform_pattern".to_string(), t);
        }
        if let Some(t) = agg["tile_threshold"].as_f64() {
            for k in [
                "subcorneal_pustule",
                "acantholysis",
                "neutrophilic_eccrine_hidradenitis",
                "psoriasiform",
            ] {
                thresholds.entry(k.to_string()).or_insert(t);
            }
        }
        results.push(SlideScores {
            slide_id: id.to_string(),
            call: r["call"].as_str().unwrap_or("unknown").to_string(),
            scores,
        });
    }
    if results.is_empty() {
        return Err(err(
            dir,
            "no <slide>/report.json found; pass the --out folder of a score run".into(),
        ));
    }
    Ok((results, thresholds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slide(id: &str, call: &str, dira: f64) -> SlideScores {
        SlideScores {
            slide_id: id.into(),
            call: call.into(),
            scores: BTreeMap::from([("dira_pattern".to_string(), dira)]),
        }
    }

    fn label(id: &str, label: &str) -> Label {
        Label {
            slide_id: id.into(),
            label: label.into(),
            patient_id: None,
            stratum: None,
        }
    }

    #[test]
    fn unmatched_slides_and_labels_are_listed_not_dropped() {
        let results = vec![
            slide("a", "dira-pattern", 0.9),
            slide("b", "no-pustular-pattern", 0.1),
            slide("orphan", "mixed", 0.5),
        ];
        let labels = vec![
            label("a", "dira"),
            label("b", "normal"),
            label("ghost", "dira"),
        ];
        let options = ValidateOptions::phantom_defaults("dira", &BTreeMap::new());
        let v = validate(&results, &labels, &options).unwrap();
        assert_eq!(v.unlabelled_slides, vec!["orphan"]);
        assert_eq!(v.labels_without_results, vec!["ghost"]);
        assert_eq!(v.slides_evaluated, 2);
        assert_eq!(v.confusion["dira"]["dira-pattern"], 1);
        assert_eq!(v.scores[0].auroc, Some(1.0));
        let md = markdown(&v);
        assert!(md.contains("orphan") && md.contains("ghost"), "{md}");
    }

    #[test]
    fn nothing_in_common_is_an_error() {
        let options = ValidateOptions::phantom_defaults("dira", &BTreeMap::new());
        let err = validate(&[slide("a", "x", 0.1)], &[label("b", "dira")], &options).unwrap_err();
        assert!(err.to_string().contains("no slide has both"));
    }
}
