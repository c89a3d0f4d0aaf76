//! The `aggregate` stage: tile probabilities -> one slide result (scores, call, evidence).
//!
//! It owns the per-finding summaries, the pattern scores, the call rule and the choice
//! of evidence tiles. It never reads pixels or files, and its output does not depend on
//! the order tiles arrive in: tiles are sorted by grid position first, and every sum
//! runs in that fixed order.
//!
//! **Finding scores** (each in 0..=1): every finding gets one slide score from its
//! tile probabilities, by the method [`AggregateParams::finding_scores`] names for it:
//! the mean of the top k tiles, k growing with the slide (`top-k-mean`, the default);
//! the mean of a fixed small number of top tiles (`top-n-mean`); or the largest mean
//! of a 3 x 3 grid neighbourhood (`max-3x3-mean`: each tile with its scored
//! neighbours, tiles off the grid or without enough tissue left out of the mean).
//! The last two are for findings a few tiles across whatever the biopsy's size: a
//! top-5% mean dilutes a pustule on two tiles of a 60-tile slide to a fifth of its
//! probability, and ever more on larger slides; the neighbourhood mean keeps a
//! lesion's support while one stray tile among tissue neighbours counts a ninth.
//! `lesion` scores lesions rather than neighbourhoods: tiles at or above the tile
//! threshold form 8-connected lesions, each scored by the mean of its few best tiles
//! (a one-tile pustule at 0.99 scores 0.99, where a 3 x 3 mean gives it 0.11 to
//! 0.25), optionally lowered in log-odds by `ln(n / reference_tiles)` so that a
//! large biopsy's many chances for one stray false tile do not raise its score.
//!
//! **Edge depth**: a finding listed in [`AggregateParams::max_edge_depth`] is read
//! only from tiles within that many grid steps of the tissue's edge (its score,
//! summary and evidence all leave deeper tiles out). A tile's depth is its
//! chessboard distance, in grid steps, to the nearest grid cell with no scored tile
//! (glass, too little tissue, or off the slide): 1 for a tile touching the edge.
//! It is for findings that lie at the surface by definition: DIRA's acantholysis
//! is superficial, in the upper epidermis (histology.md), so a tile deep in the
//! dermis that looks acantholytic (a vessel cut across, a cleft) is not evidence of
//! it. The epidermis is not the only edge (the deep margin and the biopsy's sides
//! are too); depth 1 leaves those in and removes the dermis between them.
//!
//! **Pattern scores** (each in 0..=1), from the finding scores
//! `P` (subcorneal pustule), `A` (acantholysis), `H` (neutrophilic eccrine
//! hidradenitis), `S` (psoriasiform):
//! - `dira`, by the rule shape [`DiraRule`]:
//!   - `two-of-three`: the second highest of `P`, `A`, `H`. It is high exactly when
//!     at least two of the three DIRA findings are: pustule + superficial
//!     acantholysis, pustule + hidradenitis, or acantholysis + hidradenitis (all
//!     three a fortiori). A pustule alone scores at most its acantholysis or
//!     hidradenitis, so pustular psoriasis is not DIRA by its pustules.
//!   - `pustule-and-one` (manifests up to model 1.2.0): `sqrt(P * max(A, H))`, the
//!     geometric mean of the pustule and the stronger of the two findings that set
//!     DIRA apart from psoriasis. A pustule alone (`A = H = 0`) scores 0; so does
//!     acantholysis with hidradenitis but no pustule.
//! - `psoriasiform = S`.
//!
//! **Call**, in this order of precedence: the QC gate (`qc-fail`, then
//! `insufficient-tissue`; no tissue tiles also gives `insufficient-tissue`); then,
//! for a model with an out-of-distribution detector, `out-of-distribution` when
//! more than its `max_fraction` of the scored tissue tiles have a distance above its
//! threshold (tissue unlike anything the model was trained on: its pattern scores
//! mean nothing there); then the pattern calls. `other_reasons` lists the gates
//! that also applied below the one that won. With thresholds `Td`, `Ts` and margin `m`, a score is
//! *positive* if `>= T + m`, *negative* if `< T - m`, and in the *no-call band*
//! otherwise:
//! - DIRA positive -> `dira-pattern`, whatever the psoriasiform score: the DIRA
//!   pattern shares psoriasiform change (parakeratosis, hypogranulosis, some
//!   acanthosis) and is told apart by the findings the DIRA score needs, so
//!   psoriasiform change beside them does not argue against it (`call_reason`
//!   mentions it);
//! - DIRA negative and psoriasiform positive -> `psoriasiform-pattern`;
//! - both negative -> `no-pustular-pattern`;
//! - a score inside its band (and no DIRA call) -> `mixed`: no confident call.
//!   `call_reason` says which score.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::finding::Finding;
use crate::qc::Gate;
use crate::slide::Rect;

/// The four finding keys, in the order DESIGN.md lists them ([`Finding::ALL`]).
pub const PUSTULE: &str = Finding::SubcornealPustule.key();
pub const ACANTHOLYSIS: &str = Finding::Acantholysis.key();
pub const HIDRADENITIS: &str = Finding::NeutrophilicEccrineHidradenitis.key();
pub const PSORIASIFORM: &str = Finding::Psoriasiform.key();
pub const FINDINGS: [&str; 4] = [PUSTULE, ACANTHOLYSIS, HIDRADENITIS, PSORIASIFORM];

/// How one finding's tile probabilities become its slide score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum FindingScore {
    /// Mean of the top k tiles, k = [`top_k`] (grows with the slide).
    TopKMean,
    /// Mean of the `n` highest tiles (all of them if fewer): a fixed count, so a
    /// finding a few tiles across keeps its weight on a large slide.
    TopNMean { n: usize },
    /// For each tile, the mean over it and the scored tiles among its 8 grid
    /// neighbours; the slide score is the largest such mean.
    #[serde(rename = "max-3x3-mean")]
    Max3x3Mean,
    /// Lesion evidence: tiles at or above the tile threshold form 8-connected
    /// lesions on the grid; a lesion scores the mean of its `top` highest tiles (all
    /// of them when it has fewer, so a one-tile lesion scores its own probability),
    /// and the slide score is its best lesion's (the highest tile when no tile
    /// reaches the threshold). With `reference_tiles > 0`, a slide of `n` tiles
    /// beyond that many has the score's log-odds lowered by `ln(n /
    /// reference_tiles)`: the chance of a stray false tile grows with the number of
    /// tiles looked at, so the same peak is weaker evidence on a larger biopsy.
    #[serde(rename = "lesion")]
    Lesion { top: usize, reference_tiles: usize },
}

/// How the DIRA-pattern score combines the three findings that set DIRA apart
/// (see the module header). Older manifests name none and get `PustuleAndOne`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiraRule {
    /// `sqrt(P * max(A, H))`: a pustule and one of acantholysis or hidradenitis
    /// (rule shape of model folders up to 1.2.0).
    #[default]
    PustuleAndOne,
    /// The second highest of `P`, `A`, `H`: any two of the three findings.
    TwoOfThree,
}

impl DiraRule {
    pub fn is_pustule_and_one(&self) -> bool {
        *self == DiraRule::PustuleAndOne
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            DiraRule::PustuleAndOne => "pustule-and-one",
            DiraRule::TwoOfThree => "two-of-three",
        }
    }
}

/// Parameters of aggregation and of the call rule. The model manifest's
/// `[aggregation]` and `[rule]` tables supply them; `Default` is: top 5% of tissue
/// tiles but at least 5 for every finding, a tile is positive at p >= 0.5, DIRA and
/// psoriasiform thresholds 0.5, no-call margin 0.05, 8 evidence tiles per finding,
/// tile area 0 (set it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateParams {
    pub top_k_fraction: f64,
    pub top_k_min: usize,
    /// Slide-score method by finding key; a finding not listed uses
    /// [`FindingScore::TopKMean`].
    pub finding_scores: BTreeMap<String, FindingScore>,
    /// Findings read only from tiles at most this many grid steps from the tissue's
    /// edge (see the module header), by finding key; a finding not listed uses every
    /// tile. Absent from reports of rules without it, so their bytes stay as they were.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_edge_depth: BTreeMap<String, u32>,
    pub tile_threshold: f64,
    /// Slide area one tile stands for in µm² (the grid stride's area).
    pub tile_area_um2: f64,
    /// How the DIRA score combines P, A and H; absent from reports made with the
    /// default shape, so their bytes stay as they were.
    #[serde(default, skip_serializing_if = "DiraRule::is_pustule_and_one")]
    pub dira_rule: DiraRule,
    pub dira_threshold: f64,
    pub psoriasiform_threshold: f64,
    pub no_call_margin: f64,
    pub evidence_per_finding: usize,
    /// The out-of-distribution gate, for a model with that output; absent from
    /// reports of models without one, so their bytes stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood: Option<OodParams>,
}

/// When tiles and slides count as unlike the model's training data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OodParams {
    /// A tile is out of distribution when its distance is above this.
    pub threshold: f64,
    /// The slide is, when more than this fraction of its scored tiles are.
    pub max_fraction: f64,
}

/// A slide's out-of-distribution measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodSummary {
    /// Scored tissue tiles with a distance above the threshold.
    pub tiles_over: usize,
    /// `tiles_over` over the scored tissue tiles (0 for none).
    pub fraction: f64,
    /// Median distance over the scored tissue tiles.
    pub median_distance: f64,
    pub threshold: f64,
    pub max_fraction: f64,
    /// Whether the gate applied (`fraction > max_fraction`).
    pub out_of_distribution: bool,
}

impl Default for AggregateParams {
    fn default() -> Self {
        AggregateParams {
            top_k_fraction: 0.05,
            top_k_min: 5,
            finding_scores: BTreeMap::new(),
            max_edge_depth: BTreeMap::new(),
            tile_threshold: 0.5,
            tile_area_um2: 0.0,
            dira_rule: DiraRule::PustuleAndOne,
            dira_threshold: 0.5,
            psoriasiform_threshold: 0.5,
            no_call_margin: 0.05,
            evidence_per_finding: 8,
            ood: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error("the model has no class '{key}' (its classes: {classes}); the DIRA rule needs all of {needed}")]
    MissingClass {
        key: String,
        classes: String,
        needed: String,
    },
    #[error(
        "tile {index} has no out-of-distribution distance, but the model declares an [ood] output"
    )]
    MissingOod { index: usize },
    #[error("tile {index} has {got} probabilities but the model has {expected} classes")]
    ProbabilityCount {
        index: usize,
        got: usize,
        expected: usize,
    },
}

/// One scored tile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TileScore {
    pub col: u32,
    pub row: u32,
    pub level0: Rect,
    pub tissue_fraction: f64,
    /// One probability per class, in the model's class order.
    pub probabilities: Vec<f32>,
    /// The model's out-of-distribution distance, where it has that output.
    pub ood: Option<f32>,
}

/// The slide's summary of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingSummary {
    pub key: String,
    /// The slide score the pattern scores use, by the finding's method.
    pub score: f64,
    /// How many tiles `score` averages (top tiles, or the best neighbourhood).
    pub score_tiles: usize,
    pub top_k_mean: f64,
    pub max: f64,
    pub positive_tiles: usize,
    pub positive_area_mm2: f64,
    /// Tiles in the largest 4-connected group of positive tiles on the grid.
    pub largest_cluster_tiles: usize,
    pub largest_cluster_mm2: f64,
}

/// One evidence tile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub finding: String,
    pub rank: usize,
    pub probability: f64,
    pub col: u32,
    pub row: u32,
    /// Level-0 rectangle.
    pub x: i64,
    pub y: i64,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Call {
    DiraPattern,
    PsoriasiformPattern,
    Mixed,
    NoPustularPattern,
    InsufficientTissue,
    QcFail,
    OutOfDistribution,
}

impl Call {
    pub fn as_str(&self) -> &'static str {
        match self {
            Call::DiraPattern => "dira-pattern",
            Call::PsoriasiformPattern => "psoriasiform-pattern",
            Call::Mixed => "mixed",
            Call::NoPustularPattern => "no-pustular-pattern",
            Call::InsufficientTissue => "insufficient-tissue",
            Call::QcFail => "qc-fail",
            Call::OutOfDistribution => "out-of-distribution",
        }
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a score sits against its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Band {
    Positive,
    NoCall,
    Negative,
}

/// The slide-level result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlideResult {
    pub tiles: usize,
    /// k used for the top-k means.
    pub k: usize,
    pub findings: Vec<FindingSummary>,
    pub dira_score: f64,
    pub psoriasiform_score: f64,
    pub dira_band: Band,
    pub psoriasiform_band: Band,
    pub call: Call,
    pub call_reason: String,
    /// Gates that also applied, below the call in precedence (QC, tissue,
    /// out-of-distribution), each with its reason; absent when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_reasons: Vec<String>,
    /// The out-of-distribution measurement, for a model with a detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood: Option<OodSummary>,
    pub evidence: Vec<Evidence>,
}

/// Indices of the four findings in a model's class list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassMap {
    pub pustule: usize,
    pub acantholysis: usize,
    pub hidradenitis: usize,
    pub psoriasiform: usize,
}

impl ClassMap {
    pub fn new(classes: &[String]) -> Result<ClassMap, AggregateError> {
        let find = |key: &str| {
            classes
                .iter()
                .position(|c| c == key)
                .ok_or_else(|| AggregateError::MissingClass {
                    key: key.to_string(),
                    classes: classes.join(", "),
                    needed: FINDINGS.join(", "),
                })
        };
        Ok(ClassMap {
            pustule: find(PUSTULE)?,
            acantholysis: find(ACANTHOLYSIS)?,
            hidradenitis: find(HIDRADENITIS)?,
            psoriasiform: find(PSORIASIFORM)?,
        })
    }
}

/// k for `n` tissue tiles: `ceil(fraction * n)`, at least `top_k_min`, at most `n`.
pub fn top_k(n: usize, params: &AggregateParams) -> usize {
    let k = (params.top_k_fraction * n as f64).ceil() as usize;
    k.max(params.top_k_min).min(n)
}

/// One finding's slide score by `method`, and how many tiles it averages.
/// `order`: the tiles in grid order; `ranked`: this finding's probabilities,
/// highest first; `c`: the finding's class index.
fn finding_score(
    method: FindingScore,
    order: &[&TileScore],
    ranked: &[f64],
    c: usize,
    params: &AggregateParams,
) -> (f64, usize) {
    let n = ranked.len();
    match method {
        FindingScore::TopKMean => {
            let k = top_k(n, params);
            (mean_of_top(ranked, k), k)
        }
        FindingScore::TopNMean { n: count } => {
            let count = count.min(n);
            (mean_of_top(ranked, count), count)
        }
        FindingScore::Max3x3Mean => max_3x3_mean(order, c),
        FindingScore::Lesion {
            top,
            reference_tiles,
        } => {
            let (score, counted) = best_lesion(order, c, top, params.tile_threshold);
            (area_corrected(score, n, reference_tiles), counted)
        }
    }
}

/// The best lesion's score (see [`FindingScore::Lesion`]) and its tile count in
/// that score; the highest tile when none reaches `threshold`; (0, 0) for no tiles.
fn best_lesion(order: &[&TileScore], c: usize, top: usize, threshold: f64) -> (f64, usize) {
    let p = |t: &TileScore| t.probabilities[c] as f64;
    let at: BTreeMap<(u32, u32), f64> = order
        .iter()
        .filter(|t| p(t) >= threshold)
        .map(|t| ((t.col, t.row), p(t)))
        .collect();
    if at.is_empty() {
        let highest = order
            .iter()
            .map(|t| p(t))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        return highest.map_or((0.0, 0), |v| (v, 1));
    }
    let mut best = (0.0, 0);
    let mut seen: std::collections::BTreeSet<(u32, u32)> = Default::default();
    for &start in at.keys() {
        if !seen.insert(start) {
            continue;
        }
        let mut lesion = Vec::new();
        let mut stack = vec![start];
        while let Some((col, row)) = stack.pop() {
            lesion.push(at[&(col, row)]);
            for r in row.saturating_sub(1)..=row.saturating_add(1) {
                for cl in col.saturating_sub(1)..=col.saturating_add(1) {
                    if at.contains_key(&(cl, r)) && seen.insert((cl, r)) {
                        stack.push((cl, r));
                    }
                }
            }
        }
        lesion.sort_by(|a, b| b.total_cmp(a));
        let count = top.max(1).min(lesion.len());
        let mean = mean_of_top(&lesion, count);
        if best.1 == 0 || mean > best.0 {
            best = (mean, count);
        }
    }
    best
}

/// `score` with its log-odds lowered by `ln(n / reference)` when `n > reference > 0`.
fn area_corrected(score: f64, n: usize, reference: usize) -> f64 {
    if reference == 0 || n <= reference {
        return score;
    }
    let s = score.clamp(1e-9, 1.0 - 1e-9);
    let logit = (s / (1.0 - s)).ln() - (n as f64 / reference as f64).ln();
    1.0 / (1.0 + (-logit).exp())
}

/// The largest mean over a tile and the scored tiles among its 8 grid neighbours,
/// with the number of tiles in that mean; (0, 0) for no tiles. Ties keep the first
/// tile in grid order.
fn max_3x3_mean(order: &[&TileScore], c: usize) -> (f64, usize) {
    let at: BTreeMap<(u32, u32), f64> = order
        .iter()
        .map(|t| ((t.col, t.row), t.probabilities[c] as f64))
        .collect();
    let mut best = (0.0, 0);
    for t in order {
        let (mut sum, mut count) = (0.0, 0);
        for row in t.row.saturating_sub(1)..=t.row.saturating_add(1) {
            for col in t.col.saturating_sub(1)..=t.col.saturating_add(1) {
                if let Some(p) = at.get(&(col, row)) {
                    sum += p;
                    count += 1;
                }
            }
        }
        let mean = sum / count as f64;
        if count > 0 && (best.1 == 0 || mean > best.0) {
            best = (mean, count);
        }
    }
    best
}

/// Mean of the first `count` of `ranked` (highest first); 0 when `count` is 0.
fn mean_of_top(ranked: &[f64], count: usize) -> f64 {
    if count == 0 {
        0.0
    } else {
        ranked[..count].iter().sum::<f64>() / count as f64
    }
}

/// The DIRA-pattern score from the finding scores by `rule` (see the module header).
pub fn dira_score(rule: DiraRule, pustule: f64, acantholysis: f64, hidradenitis: f64) -> f64 {
    match rule {
        DiraRule::PustuleAndOne => {
            (pustule.max(0.0) * acantholysis.max(hidradenitis).max(0.0)).sqrt()
        }
        DiraRule::TwoOfThree => {
            let mut v = [pustule, acantholysis, hidradenitis].map(|x| x.max(0.0));
            v.sort_by(|a, b| b.total_cmp(a));
            v[1]
        }
    }
}

fn band(score: f64, threshold: f64, margin: f64) -> Band {
    if score >= threshold + margin {
        Band::Positive
    } else if score < threshold - margin {
        Band::Negative
    } else {
        Band::NoCall
    }
}

/// Aggregates `tiles` (any order) into a slide result. `gate` is QC's verdict.
pub fn aggregate(
    classes: &[String],
    tiles: &[TileScore],
    gate: Option<Gate>,
    params: &AggregateParams,
) -> Result<SlideResult, AggregateError> {
    let map = ClassMap::new(classes)?;
    for (index, t) in tiles.iter().enumerate() {
        if t.probabilities.len() != classes.len() {
            return Err(AggregateError::ProbabilityCount {
                index,
                got: t.probabilities.len(),
                expected: classes.len(),
            });
        }
        if params.ood.is_some() && t.ood.is_none() {
            return Err(AggregateError::MissingOod { index });
        }
    }
    // Fixed order: by grid position (then by rectangle, for overlapping grids).
    let mut order: Vec<&TileScore> = tiles.iter().collect();
    order.sort_by(|a, b| {
        (a.row, a.col, a.level0.y, a.level0.x).cmp(&(b.row, b.col, b.level0.y, b.level0.x))
    });
    let n = order.len();
    let k = top_k(n, params);
    let tile_mm2 = params.tile_area_um2 / 1e6;
    let depths = if params.max_edge_depth.is_empty() {
        Vec::new()
    } else {
        edge_depths(&order)
    };
    let mut findings = Vec::with_capacity(classes.len());
    let mut evidence = Vec::new();
    for (c, key) in classes.iter().enumerate() {
        let p = |t: &TileScore| t.probabilities[c] as f64;
        // The tiles this finding is read from: all, or those near the edge.
        let order: Vec<&TileScore> = match params.max_edge_depth.get(key) {
            Some(&max) => order
                .iter()
                .zip(&depths)
                .filter(|(_, &d)| d <= max)
                .map(|(t, _)| *t)
                .collect(),
            None => order.clone(),
        };
        let k = top_k(order.len(), params);
        // Ranked by probability, ties by grid position (the stable sort keeps it).
        let mut ranked: Vec<&TileScore> = order.clone();
        ranked.sort_by(|a, b| p(b).total_cmp(&p(a)));
        let ranked_p: Vec<f64> = ranked.iter().map(|t| p(t)).collect();
        let top_k_mean = mean_of_top(&ranked_p, k);
        let method = params
            .finding_scores
            .get(key)
            .copied()
            .unwrap_or(FindingScore::TopKMean);
        let (score, counted) = finding_score(method, &order, &ranked_p, c, params);
        let max = ranked_p.first().copied().unwrap_or(0.0);
        let positive: Vec<&TileScore> = order
            .iter()
            .copied()
            .filter(|t| p(t) >= params.tile_threshold)
            .collect();
        let largest = largest_cluster(&positive);
        findings.push(FindingSummary {
            key: key.clone(),
            score,
            score_tiles: counted,
            top_k_mean,
            max,
            positive_tiles: positive.len(),
            positive_area_mm2: positive.len() as f64 * tile_mm2,
            largest_cluster_tiles: largest,
            largest_cluster_mm2: largest as f64 * tile_mm2,
        });
        for (rank, t) in ranked.iter().take(params.evidence_per_finding).enumerate() {
            evidence.push(Evidence {
                finding: key.clone(),
                rank: rank + 1,
                probability: p(t),
                col: t.col,
                row: t.row,
                x: t.level0.x,
                y: t.level0.y,
                width: t.level0.width,
                height: t.level0.height,
            });
        }
    }
    let score = |i: usize| findings[i].score;
    let dira = dira_score(
        params.dira_rule,
        score(map.pustule),
        score(map.acantholysis),
        score(map.hidradenitis),
    );
    let psoriasiform = score(map.psoriasiform);
    let dira_band = band(dira, params.dira_threshold, params.no_call_margin);
    let psoriasiform_band = band(
        psoriasiform,
        params.psoriasiform_threshold,
        params.no_call_margin,
    );
    let ood = params.ood.map(|o| ood_summary(&order, o));
    let (call, call_reason, other_reasons) =
        decide(gate, n, ood.as_ref(), dira_band, psoriasiform_band);
    Ok(SlideResult {
        tiles: n,
        k,
        findings,
        dira_score: dira,
        psoriasiform_score: psoriasiform,
        dira_band,
        psoriasiform_band,
        call,
        call_reason,
        other_reasons,
        ood,
        evidence,
    })
}

/// Each tile's depth (see the module header): the chessboard distance in grid
/// steps from its cell to the nearest cell with no tile, 1 for a tile on the edge;
/// in the order of `order`. A breadth-first walk inward from the edge tiles: within
/// the tissue, the walk's 8-connected steps are exactly the chessboard distance.
fn edge_depths(order: &[&TileScore]) -> Vec<u32> {
    let cells: std::collections::BTreeSet<(i64, i64)> = order
        .iter()
        .map(|t| (i64::from(t.col), i64::from(t.row)))
        .collect();
    let neighbours =
        |(c, r): (i64, i64)| (-1..=1).flat_map(move |dr| (-1..=1).map(move |dc| (c + dc, r + dr)));
    let mut depth: BTreeMap<(i64, i64), u32> = BTreeMap::new();
    let mut frontier: Vec<(i64, i64)> = cells
        .iter()
        .copied()
        .filter(|&cell| neighbours(cell).any(|n| !cells.contains(&n)))
        .collect();
    for &cell in &frontier {
        depth.insert(cell, 1);
    }
    let mut d = 1;
    while !frontier.is_empty() {
        d += 1;
        let mut next = Vec::new();
        for cell in frontier {
            for n in neighbours(cell) {
                if cells.contains(&n) && !depth.contains_key(&n) {
                    depth.insert(n, d);
                    next.push(n);
                }
            }
        }
        frontier = next;
    }
    order
        .iter()
        .map(|t| depth[&(i64::from(t.col), i64::from(t.row))])
        .collect()
}

/// How many of the scored tiles are over the OOD threshold, and whether that is
/// more than the slide may have.
fn ood_summary(order: &[&TileScore], params: OodParams) -> OodSummary {
    let distances: Vec<f64> = order
        .iter()
        .map(|t| t.ood.map_or(f64::NAN, f64::from))
        .collect();
    // NaN (a distance the graph could not compute) counts as unlike the training data.
    let tiles_over = distances
        .iter()
        .filter(|d| d.is_nan() || **d > params.threshold)
        .count();
    let n = distances.len();
    let fraction = if n == 0 {
        0.0
    } else {
        tiles_over as f64 / n as f64
    };
    OodSummary {
        tiles_over,
        fraction,
        median_distance: crate::qc::median(&distances).unwrap_or(0.0),
        threshold: params.threshold,
        max_fraction: params.max_fraction,
        out_of_distribution: n > 0 && fraction > params.max_fraction,
    }
}

/// The call, its reason, and the gates that also applied below it (precedence:
/// QC fail, too little tissue, out of distribution, then the pattern rule).
fn decide(
    gate: Option<Gate>,
    tiles: usize,
    ood: Option<&OodSummary>,
    dira: Band,
    psoriasiform: Band,
) -> (Call, String, Vec<String>) {
    let mut gates: Vec<(Call, String)> = Vec::new();
    match gate {
        Some(Gate::QcFail) => {
            gates.push((Call::QcFail, "a quality check failed (see qc flags)".into()))
        }
        Some(Gate::InsufficientTissue) => gates.push((
            Call::InsufficientTissue,
            "too little tissue (see qc flags)".into(),
        )),
        None => {}
    }
    if tiles == 0 && gate.is_none() {
        gates.push((
            Call::InsufficientTissue,
            "no tile holds enough tissue".into(),
        ));
    }
    if let Some(o) = ood.filter(|o| o.out_of_distribution) {
        gates.push((
            Call::OutOfDistribution,
            format!(
                "{:.0}% of tissue tiles are unlike the training data ({} of {} over the out-of-distribution threshold {}; the slide limit is {:.0}%)",
                100.0 * o.fraction,
                o.tiles_over,
                tiles,
                o.threshold,
                100.0 * o.max_fraction
            ),
        ));
    }
    let mut gates = gates.into_iter();
    if let Some((call, reason)) = gates.next() {
        return (call, reason, gates.map(|(_, r)| r).collect());
    }
    let (call, reason) = pattern_call(dira, psoriasiform);
    (call, reason.to_string(), Vec::new())
}

/// The pattern rule on the two bands (no gate applied).
fn pattern_call(dira: Band, psoriasiform: Band) -> (Call, &'static str) {
    use Band::*;
    match (dira, psoriasiform) {
        (Positive, Negative) => (Call::DiraPattern, "DIRA-pattern score above threshold"),
        (Positive, _) => (
            Call::DiraPattern,
            "DIRA-pattern score above threshold, with psoriasiform change",
        ),
        (NoCall, _) => (
            Call::Mixed,
            "the DIRA-pattern score is inside the no-call band",
        ),
        (Negative, Positive) => (
            Call::PsoriasiformPattern,
            "psoriasiform score above threshold",
        ),
        (Negative, Negative) => (
            Call::NoPustularPattern,
            "both pattern scores below threshold",
        ),
        (Negative, NoCall) => (
            Call::Mixed,
            "the psoriasiform score is inside the no-call band",
        ),
    }
}

/// Size of the largest 4-connected group of `tiles` on the grid (by col, row).
fn largest_cluster(tiles: &[&TileScore]) -> usize {
    use std::collections::BTreeSet;
    let cells: BTreeSet<(u32, u32)> = tiles.iter().map(|t| (t.col, t.row)).collect();
    let mut seen: BTreeSet<(u32, u32)> = BTreeSet::new();
    let mut best = 0;
    for &start in &cells {
        if !seen.insert(start) {
            continue;
        }
        let mut size = 0;
        let mut stack = vec![start];
        while let Some((c, r)) = stack.pop() {
            size += 1;
            let mut next = vec![(c + 1, r), (c, r + 1)];
            if c > 0 {
                next.push((c - 1, r));
            }
            if r > 0 {
                next.push((c, r - 1));
            }
            for n in next {
                if cells.contains(&n) && seen.insert(n) {
                    stack.push(n);
                }
            }
        }
        best = best.max(size);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn classes() -> Vec<String> {
        FINDINGS.iter().map(|s| s.to_string()).collect()
    }

    fn tile(col: u32, row: u32, p: [f32; 4]) -> TileScore {
        TileScore {
            col,
            row,
            level0: Rect::new(col as i64 * 100, row as i64 * 100, 100, 100),
            tissue_fraction: 1.0,
            probabilities: p.to_vec(),
            ood: None,
        }
    }

    fn params() -> AggregateParams {
        AggregateParams {
            top_k_fraction: 0.5,
            top_k_min: 1,
            tile_area_um2: 2500.0,
            evidence_per_finding: 2,
            ..AggregateParams::default()
        }
    }

    /// Four DIRA-looking tiles, `over` of them with an OOD distance above 2.0.
    fn ood_tiles(over: usize) -> Vec<TileScore> {
        (0..4)
            .map(|i| TileScore {
                ood: Some(if i < over { 3.0 } else { 1.0 }),
                ..tile(i as u32, 0, [0.95, 0.95, 0.95, 0.0])
            })
            .collect()
    }

    fn ood_params(max_fraction: f64) -> AggregateParams {
        AggregateParams {
            ood: Some(OodParams {
                threshold: 2.0,
                max_fraction,
            }),
            ..params()
        }
    }

    #[test]
    fn more_tiles_over_the_ood_threshold_than_allowed_abstain_with_the_share() {
        let r = aggregate(&classes(), &ood_tiles(3), None, &ood_params(0.5)).unwrap();
        assert_eq!(r.call, Call::OutOfDistribution);
        assert!(
            r.call_reason
                .starts_with("75% of tissue tiles are unlike the training data (3 of 4"),
            "{}",
            r.call_reason
        );
        let o = r.ood.unwrap();
        assert_eq!(
            (o.tiles_over, o.fraction, o.median_distance),
            (3, 0.75, 3.0)
        );
        // The scores are still computed: a pathologist can see what it would have said.
        assert!(r.dira_score > 0.9);
        // At the limit itself the slide is in distribution and the pattern rule calls.
        let r = aggregate(&classes(), &ood_tiles(2), None, &ood_params(0.5)).unwrap();
        assert_eq!(r.call, Call::DiraPattern);
        assert!(!r.ood.unwrap().out_of_distribution);
        assert!(r.other_reasons.is_empty());
    }

    #[test]
    fn qc_and_tissue_gates_come_before_ood_and_every_reason_is_kept() {
        let r = aggregate(
            &classes(),
            &ood_tiles(4),
            Some(Gate::QcFail),
            &ood_params(0.5),
        )
        .unwrap();
        assert_eq!(r.call, Call::QcFail);
        assert_eq!(r.other_reasons.len(), 1);
        assert!(r.other_reasons[0].starts_with("100% of tissue tiles are unlike"));
        let r = aggregate(
            &classes(),
            &ood_tiles(4),
            Some(Gate::InsufficientTissue),
            &ood_params(0.5),
        )
        .unwrap();
        assert_eq!(r.call, Call::InsufficientTissue);
        assert_eq!(r.other_reasons.len(), 1);
        // No tissue tiles: insufficient tissue, no OOD verdict on nothing.
        let r = aggregate(&classes(), &[], None, &ood_params(0.0)).unwrap();
        assert_eq!(r.call, Call::InsufficientTissue);
        assert!(r.other_reasons.is_empty());
    }

    #[test]
    fn a_model_with_ood_needs_a_distance_on_every_tile() {
        let mut tiles = ood_tiles(0);
        tiles[2].ood = None;
        assert!(matches!(
            aggregate(&classes(), &tiles, None, &ood_params(0.5)),
            Err(AggregateError::MissingOod { index: 2 })
        ));
        // Without [ood] the distances are ignored and nothing is reported.
        let r = aggregate(&classes(), &ood_tiles(4), None, &params()).unwrap();
        assert_eq!((r.call, r.ood), (Call::DiraPattern, None));
    }

    #[test]
    fn summaries_by_hand() {
        let tiles = vec![
            tile(0, 0, [0.9, 0.8, 0.1, 0.0]),
            tile(1, 0, [0.7, 0.6, 0.2, 0.0]),
            tile(3, 0, [0.6, 0.1, 0.0, 0.1]),
            tile(0, 1, [0.1, 0.9, 0.0, 0.2]),
        ];
        let r = aggregate(&classes(), &tiles, None, &params()).unwrap();
        assert_eq!((r.tiles, r.k), (4, 2));
        let f = &r.findings[0];
        // Top 2 of 0.9, 0.7, 0.6, 0.1 (f32 -> f64, so allow float slack).
        assert!((f.top_k_mean - 0.8).abs() < 1e-6);
        assert!((f.max - 0.9).abs() < 1e-6);
        assert_eq!(f.positive_tiles, 3);
        assert!((f.positive_area_mm2 - 0.0075).abs() < 1e-12);
        // (0,0)-(1,0) touch; (3,0) is alone.
        assert_eq!(f.largest_cluster_tiles, 2);
        // Acantholysis: positives at (0,0), (1,0), (0,1): one L-shaped cluster of 3.
        assert_eq!(r.findings[1].largest_cluster_tiles, 3);
        // P = 0.8, A = (0.9 + 0.8) / 2 = 0.85, H = 0.15: dira = sqrt(0.8 * 0.85).
        assert!((r.dira_score - (0.8f64 * 0.85).sqrt()).abs() < 1e-6);
        assert!((r.psoriasiform_score - 0.15).abs() < 1e-6);
        assert_eq!(r.call, Call::DiraPattern);
        // Evidence: top 2 per class, ranked.
        assert_eq!(r.evidence.len(), 8);
        assert_eq!((r.evidence[0].x, r.evidence[0].rank), (0, 1));
        assert_eq!((r.evidence[1].x, r.evidence[1].rank), (100, 2));
        assert_eq!((r.evidence[2].x, r.evidence[2].y), (0, 100));
    }

    #[test]
    fn a_pustule_alone_never_makes_a_dira_call() {
        let tiles: Vec<TileScore> = (0..10).map(|i| tile(i, 0, [1.0, 0.0, 0.0, 0.0])).collect();
        let r = aggregate(&classes(), &tiles, None, &params()).unwrap();
        assert_eq!(r.dira_score, 0.0);
        assert_eq!(r.call, Call::NoPustularPattern);
        // With psoriasiform change too it is pustular psoriasis, not DIRA.
        let tiles: Vec<TileScore> = (0..10).map(|i| tile(i, 0, [1.0, 0.0, 0.0, 0.9])).collect();
        let r = aggregate(&classes(), &tiles, None, &params()).unwrap();
        assert_eq!(r.call, Call::PsoriasiformPattern);
    }

    #[test]
    fn dira_with_psoriasiform_change_is_dira_and_the_band_is_mixed() {
        let both: Vec<TileScore> = (0..4).map(|i| tile(i, 0, [0.9, 0.9, 0.0, 0.9])).collect();
        let r = aggregate(&classes(), &both, None, &params()).unwrap();
        assert_eq!(r.call, Call::DiraPattern);
        assert_eq!(
            r.call_reason,
            "DIRA-pattern score above threshold, with psoriasiform change"
        );
        // psoriasiform 0.52 sits in [0.45, 0.55): no call.
        let band: Vec<TileScore> = (0..4).map(|i| tile(i, 0, [0.0, 0.0, 0.0, 0.52])).collect();
        let r = aggregate(&classes(), &band, None, &params()).unwrap();
        assert_eq!(r.psoriasiform_band, Band::NoCall);
        assert_eq!(r.call, Call::Mixed);
        // DIRA sqrt(0.5 * 0.5) = 0.5 in its band: no call, even with psoriasiform change.
        let band: Vec<TileScore> = (0..4).map(|i| tile(i, 0, [0.5, 0.5, 0.0, 0.9])).collect();
        let r = aggregate(&classes(), &band, None, &params()).unwrap();
        assert_eq!((r.dira_band, r.call), (Band::NoCall, Call::Mixed));
        assert_eq!(
            r.call_reason,
            "the DIRA-pattern score is inside the no-call band"
        );
    }

    #[test]
    fn gates_and_empty_slides() {
        let r = aggregate(&classes(), &[], None, &params()).unwrap();
        assert_eq!((r.call, r.k), (Call::InsufficientTissue, 0));
        let tiles = vec![tile(0, 0, [0.9, 0.9, 0.9, 0.0])];
        let r = aggregate(&classes(), &tiles, Some(Gate::QcFail), &params()).unwrap();
        assert_eq!(r.call, Call::QcFail);
    }

    #[test]
    fn class_order_comes_from_the_model() {
        let mut cls = classes();
        cls.reverse();
        let tiles = vec![tile(0, 0, [0.0, 0.9, 0.0, 0.9])]; // H and P in reversed order
        let r = aggregate(&cls, &tiles, None, &params()).unwrap();
        assert_eq!(r.findings[0].key, PSORIASIFORM);
        assert!(r.dira_score > 0.8);
        let err = aggregate(&cls[..3], &[], None, &params()).unwrap_err();
        assert!(err.to_string().contains("subcorneal_pustule"), "{err}");
    }

    /// A 10 x 10 slide of empty tiles with a pustule over two neighbouring tiles and
    /// acantholysis on one of them.
    fn large_slide_with_a_small_lesion() -> Vec<TileScore> {
        let mut tiles: Vec<TileScore> = (0..100)
            .map(|i| tile(i % 10, i / 10, [0.0, 0.0, 0.0, 0.1]))
            .collect();
        tiles[44].probabilities = vec![0.9, 0.8, 0.0, 0.1];
        tiles[45].probabilities = vec![0.7, 0.0, 0.0, 0.1];
        tiles
    }

    fn sparse_params(n: usize) -> AggregateParams {
        let top_n = FindingScore::TopNMean { n };
        AggregateParams {
            finding_scores: [
                (PUSTULE.to_string(), top_n),
                (ACANTHOLYSIS.to_string(), top_n),
            ]
            .into_iter()
            .collect(),
            dira_threshold: 0.4,
            ..AggregateParams::default()
        }
    }

    #[test]
    fn edge_depth_counts_grid_steps_to_the_nearest_cell_without_a_tile() {
        // A 5 x 5 block: its rim is depth 1, the ring inside 2, the centre 3.
        let block: Vec<TileScore> = (0..25).map(|i| tile(i % 5, i / 5, [0.0; 4])).collect();
        let order: Vec<&TileScore> = block.iter().collect();
        let depth = |tiles: &[&TileScore], col: u32, row: u32| {
            let d = edge_depths(tiles);
            let i = tiles.iter().position(|t| (t.col, t.row) == (col, row));
            d[i.unwrap()]
        };
        assert_eq!(
            [(0, 0), (4, 2), (1, 1), (3, 2), (2, 2)].map(|(c, r)| depth(&order, c, r)),
            [1, 1, 2, 2, 3]
        );
        // A hole (a vessel lumen, a fold QC dropped) is an edge too.
        let holed: Vec<&TileScore> = block.iter().filter(|t| (t.col, t.row) != (2, 2)).collect();
        assert_eq!(depth(&holed, 1, 1), 1);
        // Grid column 0 is not special: cells left of it hold no tile either.
        let shifted: Vec<TileScore> = (0..25)
            .map(|i| tile(10 + i % 5, 7 + i / 5, [0.0; 4]))
            .collect();
        let order: Vec<&TileScore> = shifted.iter().collect();
        assert_eq!(depth(&order, 12, 9), 3);
    }

    #[test]
    fn a_finding_limited_to_the_edge_ignores_deep_tiles() {
        // 7 x 7 tissue: a pustule on the edge, 'acantholysis' only in the middle
        // (depth 4: a vessel cut across in the dermis), no hidradenitis.
        let mut tiles: Vec<TileScore> = (0..49)
            .map(|i| tile(i % 7, i / 7, [0.0, 0.0, 0.0, 0.0]))
            .collect();
        tiles[3].probabilities = vec![0.95, 0.1, 0.0, 0.0];
        tiles[24].probabilities = vec![0.0, 0.95, 0.0, 0.0];
        tiles[25].probabilities = vec![0.0, 0.9, 0.0, 0.0];
        let two = FindingScore::TopNMean { n: 1 };
        let everywhere = AggregateParams {
            finding_scores: FINDINGS.iter().map(|k| (k.to_string(), two)).collect(),
            dira_rule: DiraRule::TwoOfThree,
            evidence_per_finding: 2,
            ..AggregateParams::default()
        };
        let r = aggregate(&classes(), &tiles, None, &everywhere).unwrap();
        assert_eq!(r.call, Call::DiraPattern);
        assert!((r.findings[1].score - 0.95).abs() < 1e-6);
        let edge = AggregateParams {
            max_edge_depth: [(ACANTHOLYSIS.to_string(), 1)].into_iter().collect(),
            ..everywhere.clone()
        };
        let r = aggregate(&classes(), &tiles, None, &edge).unwrap();
        let a = &r.findings[1];
        // Only the 24 rim tiles count: the best is the pustule tile's 0.1.
        assert!((a.score - 0.1).abs() < 1e-6, "{}", a.score);
        assert_eq!((a.max, a.positive_tiles), (0.1f32 as f64, 0));
        assert_eq!(r.call, Call::NoPustularPattern);
        let acantholysis: Vec<(u32, u32)> = r
            .evidence
            .iter()
            .filter(|e| e.finding == ACANTHOLYSIS)
            .map(|e| (e.col, e.row))
            .collect();
        assert_eq!(acantholysis[0], (3, 0));
        assert!(!acantholysis.contains(&(3, 3)), "{acantholysis:?}");
        // The other findings still read every tile, and depth 4 takes the middle in.
        assert!((r.findings[0].score - 0.95).abs() < 1e-6);
        let deep = AggregateParams {
            max_edge_depth: [(ACANTHOLYSIS.to_string(), 4)].into_iter().collect(),
            ..everywhere.clone()
        };
        let r = aggregate(&classes(), &tiles, None, &deep).unwrap();
        assert_eq!(r.call, Call::DiraPattern);
        // Reports of rules without it keep their bytes.
        let json = serde_json::to_string(&everywhere).unwrap();
        assert!(!json.contains("max_edge_depth"), "{json}");
        assert!(serde_json::to_string(&edge)
            .unwrap()
            .contains("\"max_edge_depth\":{\"acantholysis\":1}"));
    }

    #[test]
    fn a_top_k_mean_dilutes_a_small_lesion_on_a_large_slide() {
        let tiles = large_slide_with_a_small_lesion();
        let r = aggregate(&classes(), &tiles, None, &sparse_params(2)).unwrap();
        // Default method, k = 5 of 100: P = 1.6 / 5, A = 0.8 / 5 -> dira 0.226.
        let r_k = aggregate(&classes(), &tiles, None, &AggregateParams::default()).unwrap();
        assert_eq!(r_k.findings[0].score_tiles, 5);
        assert!((r_k.dira_score - (0.32f64 * 0.16).sqrt()).abs() < 1e-6);
        // Top 2: P = (0.9 + 0.7) / 2 = 0.8, A = (0.8 + 0.0) / 2 = 0.4, dira = sqrt(0.32).
        let (p, a) = (&r.findings[0], &r.findings[1]);
        assert_eq!((p.score_tiles, a.score_tiles), (2, 2));
        assert!((p.score - 0.8).abs() < 1e-6 && (a.score - 0.4).abs() < 1e-6);
        // top_k_mean is still reported, and hidradenitis keeps the top-k method.
        assert!((p.top_k_mean - 0.32).abs() < 1e-6);
        assert_eq!(r.findings[2].score_tiles, 5);
        assert!((r.dira_score - 0.32f64.sqrt()).abs() < 1e-6);
        assert_eq!(r.call, Call::DiraPattern);
        assert_eq!(r_k.call, Call::NoPustularPattern);
    }

    #[test]
    fn top_n_mean_on_a_slide_with_fewer_tiles_averages_them_all() {
        let tiles = vec![
            tile(0, 0, [0.6, 0.0, 0.0, 0.0]),
            tile(1, 0, [0.2, 0.0, 0.0, 0.0]),
        ];
        let r = aggregate(&classes(), &tiles, None, &sparse_params(3)).unwrap();
        assert_eq!(r.findings[0].score_tiles, 2);
        assert!((r.findings[0].score - 0.4).abs() < 1e-6);
        assert_eq!(
            finding_score(FindingScore::TopNMean { n: 3 }, &[], &[], 0, &params()),
            (0.0, 0)
        );
        assert_eq!(
            finding_score(FindingScore::Max3x3Mean, &[], &[], 0, &params()),
            (0.0, 0)
        );
    }

    /// A 5 x 4 grid of pustule probabilities, 0 except a two-tile lesion in the
    /// corner (0.9 at (0,0), 0.6 at (1,0)) and one stray 0.9 tile at (3,2).
    fn grid_with_a_corner_lesion_and_a_stray_tile(missing: &[(u32, u32)]) -> Vec<TileScore> {
        let mut tiles = Vec::new();
        for row in 0..4 {
            for col in 0..5 {
                if missing.contains(&(col, row)) {
                    continue;
                }
                let p = match (col, row) {
                    (0, 0) | (3, 2) => 0.9,
                    (1, 0) => 0.6,
                    _ => 0.0,
                };
                tiles.push(tile(col, row, [p, 0.0, 0.0, 0.0]));
            }
        }
        tiles
    }

    fn max_3x3_params() -> AggregateParams {
        AggregateParams {
            finding_scores: [(PUSTULE.to_string(), FindingScore::Max3x3Mean)]
                .into_iter()
                .collect(),
            ..AggregateParams::default()
        }
    }

    #[test]
    fn max_3x3_mean_by_hand() {
        let tiles = grid_with_a_corner_lesion_and_a_stray_tile(&[]);
        let r = aggregate(&classes(), &tiles, None, &max_3x3_params()).unwrap();
        // Corner (0,0): itself, (1,0), (0,1), (1,1) -> 1.5 / 4. (1,0): 1.5 / 6.
        // The stray tile among 8 neighbours: 0.9 / 9.
        let p = &r.findings[0];
        assert!((p.score - 0.375).abs() < 1e-6, "{}", p.score);
        assert_eq!(p.score_tiles, 4);
        // Without tissue at (0,1) and (1,1) those tiles are not in the mean: 1.5 / 2.
        let tiles = grid_with_a_corner_lesion_and_a_stray_tile(&[(0, 1), (1, 1)]);
        let r = aggregate(&classes(), &tiles, None, &max_3x3_params()).unwrap();
        assert!((r.findings[0].score - 0.75).abs() < 1e-6);
        assert_eq!(r.findings[0].score_tiles, 2);
        // Other findings keep the top-k mean.
        assert_eq!(r.findings[1].score_tiles, 5);
    }

    #[test]
    fn max_3x3_mean_of_one_tile_is_its_probability() {
        let tiles = vec![tile(7, 3, [0.8, 0.0, 0.0, 0.0])];
        let r = aggregate(&classes(), &tiles, None, &max_3x3_params()).unwrap();
        assert!((r.findings[0].score - 0.8).abs() < 1e-6);
        assert_eq!(r.findings[0].score_tiles, 1);
    }

    #[test]
    fn a_pustule_alone_never_makes_a_dira_call_with_top_n_scores() {
        // Pustules everywhere and a top-1 score: no acantholysis or hidradenitis.
        let tiles: Vec<TileScore> = (0..30)
            .map(|i| tile(i % 6, i / 6, [1.0, 0.0, 0.0, 0.0]))
            .collect();
        let r = aggregate(&classes(), &tiles, None, &sparse_params(1)).unwrap();
        assert_eq!(r.dira_score, 0.0);
        assert_eq!(r.call, Call::NoPustularPattern);
    }

    #[test]
    fn top_k_bounds() {
        let p = AggregateParams::default();
        assert_eq!(top_k(0, &p), 0);
        assert_eq!(top_k(3, &p), 3);
        assert_eq!(top_k(100, &p), 5);
        assert_eq!(top_k(1000, &p), 50);
        assert_eq!(top_k(1001, &p), 51);
    }

    fn lesion_params(top: usize, reference_tiles: usize) -> AggregateParams {
        let method = FindingScore::Lesion {
            top,
            reference_tiles,
        };
        AggregateParams {
            finding_scores: FINDINGS.iter().map(|k| (k.to_string(), method)).collect(),
            dira_rule: DiraRule::TwoOfThree,
            dira_threshold: 0.5,
            no_call_margin: 0.05,
            ..AggregateParams::default()
        }
    }

    #[test]
    fn a_one_tile_lesion_keeps_its_probability_whatever_the_slide_size() {
        for side in [3u32, 10, 40] {
            let mut tiles: Vec<TileScore> = (0..side * side)
                .map(|i| tile(i % side, i / side, [0.02, 0.0, 0.0, 0.0]))
                .collect();
            tiles[(side * side / 2) as usize].probabilities[0] = 0.99;
            let r = aggregate(&classes(), &tiles, None, &lesion_params(2, 0)).unwrap();
            assert!((r.findings[0].score - 0.99).abs() < 1e-6, "{side}");
            assert_eq!(r.findings[0].score_tiles, 1);
            // max-3x3-mean divides it by its neighbourhood (9 tiles inside, 4-6 at an edge).
            let m = aggregate(&classes(), &tiles, None, &max_3x3_params()).unwrap();
            assert!(m.findings[0].score < 0.3, "{}", m.findings[0].score);
        }
    }

    #[test]
    fn a_lesion_scores_the_mean_of_its_top_tiles() {
        // Lesion A: 0.9, 0.7, 0.6 touching (diagonal counts); lesion B: 0.8 alone.
        let tiles = vec![
            tile(0, 0, [0.9, 0.0, 0.0, 0.0]),
            tile(1, 1, [0.7, 0.0, 0.0, 0.0]),
            tile(2, 1, [0.6, 0.0, 0.0, 0.0]),
            tile(5, 5, [0.8, 0.0, 0.0, 0.0]),
            tile(3, 3, [0.3, 0.0, 0.0, 0.0]),
        ];
        let r = aggregate(&classes(), &tiles, None, &lesion_params(2, 0)).unwrap();
        assert!((r.findings[0].score - 0.8).abs() < 1e-6); // (0.9 + 0.7) / 2 = 0.8 = B
        let r = aggregate(&classes(), &tiles, None, &lesion_params(3, 0)).unwrap();
        assert!((r.findings[0].score - 0.8).abs() < 1e-6); // B 0.8 beats A 0.733
        assert_eq!(r.findings[0].score_tiles, 1);
        let r = aggregate(&classes(), &tiles, None, &lesion_params(1, 0)).unwrap();
        assert!((r.findings[0].score - 0.9).abs() < 1e-6);
        // No tile at the threshold: the highest tile.
        let low = vec![
            tile(0, 0, [0.3, 0.0, 0.0, 0.0]),
            tile(1, 0, [0.4, 0.0, 0.0, 0.0]),
        ];
        let r = aggregate(&classes(), &low, None, &lesion_params(2, 0)).unwrap();
        assert!((r.findings[0].score - 0.4).abs() < 1e-6);
    }

    #[test]
    fn the_area_correction_lowers_the_log_odds_by_the_tile_ratio() {
        assert_eq!(area_corrected(0.9, 50, 100), 0.9);
        assert_eq!(area_corrected(0.9, 500, 0), 0.9);
        // odds 9 / (400 / 100) = 2.25 -> 0.6923.
        assert!((area_corrected(0.9, 400, 100) - 2.25 / 3.25).abs() < 1e-12);
        let tiles: Vec<TileScore> = (0..400)
            .map(|i| {
                tile(
                    i % 20,
                    i / 20,
                    [if i == 0 { 0.9 } else { 0.0 }, 0.0, 0.0, 0.0],
                )
            })
            .collect();
        let r = aggregate(&classes(), &tiles, None, &lesion_params(1, 100)).unwrap();
        assert!((r.findings[0].score - 2.25 / 3.25).abs() < 1e-6);
    }

    #[test]
    fn two_of_three_calls_every_dira_variant_and_never_a_pustule_alone() {
        let p = lesion_params(1, 0);
        let call = |probs: [f32; 4]| {
            let tiles = vec![tile(0, 0, probs), tile(1, 0, [0.0; 4])];
            aggregate(&classes(), &tiles, None, &p).unwrap()
        };
        // P + A, P + H, A + H, all three: DIRA, with or without psoriasiform change.
        for probs in [
            [0.9, 0.9, 0.0, 0.0],
            [0.9, 0.0, 0.9, 0.0],
            [0.0, 0.9, 0.9, 0.0],
            [0.9, 0.9, 0.9, 0.0],
            [0.9, 0.9, 0.0, 0.9],
        ] {
            let r = call(probs);
            assert_eq!(r.call, Call::DiraPattern, "{probs:?}");
        }
        // A pustule alone, with or without psoriasiform change: never DIRA.
        let r = call([1.0, 0.0, 0.0, 0.0]);
        assert_eq!((r.dira_score, r.call), (0.0, Call::NoPustularPattern));
        let r = call([1.0, 0.0, 0.0, 0.9]);
        assert_eq!(r.call, Call::PsoriasiformPattern);
        // One finding of the three is not enough either.
        assert_eq!(call([0.0, 0.0, 1.0, 0.0]).call, Call::NoPustularPattern);
        assert_eq!(dira_score(DiraRule::TwoOfThree, 0.2, 0.7, 0.5), 0.5);
        assert_eq!(dira_score(DiraRule::PustuleAndOne, 0.0, 0.7, 0.5), 0.0);
    }

    proptest! {
        #[test]
        fn lesion_scores_ignore_tile_order(
            probs in proptest::collection::vec(proptest::array::uniform4(0.0f32..1.0), 1..80),
            top in 1usize..4,
            reference in 0usize..30,
            seed in any::<u64>(),
        ) {
            let tiles: Vec<TileScore> = probs.iter().enumerate()
                .map(|(i, p)| tile((i % 9) as u32, (i / 9) as u32, *p)).collect();
            let mut shuffled = tiles.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let p = lesion_params(top, reference);
            let a = aggregate(&classes(), &tiles, None, &p).unwrap();
            let b = aggregate(&classes(), &shuffled, None, &p).unwrap();
            prop_assert_eq!(&a, &b);
            // Never above the highest tile, never below it without a correction.
            let max = probs.iter().map(|q| q[0] as f64).fold(0.0, f64::max);
            prop_assert!(a.findings[0].score <= max + 1e-12);
            if reference == 0 && top == 1 {
                prop_assert!((a.findings[0].score - max).abs() < 1e-12);
            }
        }
    }

    proptest! {
        #[test]
        fn aggregation_ignores_tile_order(
            probs in proptest::collection::vec(proptest::array::uniform4(0.0f32..1.0), 1..60),
            seed in any::<u64>(),
        ) {
            let tiles: Vec<TileScore> = probs.iter().enumerate()
                .map(|(i, p)| tile((i % 7) as u32, (i / 7) as u32, *p)).collect();
            let mut shuffled = tiles.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let a = aggregate(&classes(), &tiles, None, &params()).unwrap();
            let b = aggregate(&classes(), &shuffled, None, &params()).unwrap();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn sparse_scores_ignore_tile_order(
            probs in proptest::collection::vec(proptest::array::uniform4(0.0f32..1.0), 1..60),
            n in 1usize..8,
        ) {
            let tiles: Vec<TileScore> = probs.iter().enumerate()
                .map(|(i, p)| tile((i % 7) as u32, (i / 7) as u32, *p)).collect();
            let mut reversed = tiles.clone();
            reversed.reverse();
            let a = aggregate(&classes(), &tiles, None, &sparse_params(n)).unwrap();
            let b = aggregate(&classes(), &reversed, None, &sparse_params(n)).unwrap();
            let a3 = aggregate(&classes(), &tiles, None, &max_3x3_params()).unwrap();
            let b3 = aggregate(&classes(), &reversed, None, &max_3x3_params()).unwrap();
            prop_assert_eq!(a3, b3);
            // And the score is the naive mean of the n largest.
            let mut p: Vec<f64> = probs.iter().map(|q| q[0] as f64).collect();
            p.sort_by(|x, y| y.total_cmp(x));
            let m = n.min(p.len());
            let naive = p[..m].iter().sum::<f64>() / m as f64;
            prop_assert!((a.findings[0].score - naive).abs() < 1e-9);
            prop_assert_eq!(a, b);
        }

        #[test]
        fn max_3x3_mean_matches_a_naive_scan(
            cells in proptest::collection::btree_map((0u32..8, 0u32..8), 0.0f32..1.0, 1..40),
        ) {
            let tiles: Vec<TileScore> = cells.iter()
                .map(|(&(c, r), &p)| tile(c, r, [p, 0.0, 0.0, 0.0])).collect();
            let refs: Vec<&TileScore> = tiles.iter().collect();
            let mut naive = 0.0f64;
            for a in &tiles {
                let near: Vec<f64> = tiles.iter()
                    .filter(|b| a.col.abs_diff(b.col) <= 1 && a.row.abs_diff(b.row) <= 1)
                    .map(|b| b.probabilities[0] as f64).collect();
                naive = naive.max(near.iter().sum::<f64>() / near.len() as f64);
            }
            prop_assert!((max_3x3_mean(&refs, 0).0 - naive).abs() < 1e-9);
        }

        #[test]
        fn largest_cluster_matches_a_naive_flood(cells in proptest::collection::btree_set((0u32..8, 0u32..8), 0..40)) {
            let tiles: Vec<TileScore> = cells.iter().map(|&(c, r)| tile(c, r, [0.0; 4])).collect();
            let refs: Vec<&TileScore> = tiles.iter().collect();
            // Naive: label grid by repeated relaxation of minimum labels.
            let mut label = [[usize::MAX; 8]; 8];
            for (i, &(c, r)) in cells.iter().enumerate() { label[r as usize][c as usize] = i; }
            loop {
                let mut changed = false;
                for r in 0..8 { for c in 0..8 {
                    if label[r][c] == usize::MAX { continue; }
                    for (dr, dc) in [(0i32, 1i32), (1, 0), (0, -1), (-1, 0)] {
                        let (nr, nc) = (r as i32 + dr, c as i32 + dc);
                        if !(0..8).contains(&nr) || !(0..8).contains(&nc) { continue; }
                        let l = label[nr as usize][nc as usize];
                        if l != usize::MAX && l < label[r][c] { label[r][c] = l; changed = true; }
                    }
                }}
                if !changed { break; }
            }
            let mut counts = std::collections::BTreeMap::new();
            for row in label { for l in row { if l != usize::MAX { *counts.entry(l).or_insert(0) += 1; } } }
            let naive = counts.values().copied().max().unwrap_or(0);
            prop_assert_eq!(largest_cluster(&refs), naive);
        }
    }
}
