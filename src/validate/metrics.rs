//! Binary-classification statistics for validation runs: AUROC, bootstrap confidence
//! intervals (stratified, or clustered by patient), operating points, Brier score and
//! calibration. Pure functions of scores and labels; no files, no plotting.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// One scored case: its score in [0, 1] (or any real for AUROC), whether it is
/// positive, and the cluster (patient) it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub score: f64,
    pub positive: bool,
    pub cluster: usize,
}

/// Area under the ROC curve by the Mann–Whitney statistic: the probability that a
/// random positive outscores a random negative, ties counting one half. `None` when
/// either class is empty. O(n log n).
pub fn auroc(cases: &[Case]) -> Option<f64> {
    let n_pos = cases.iter().filter(|c| c.positive).count();
    let n_neg = cases.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut sorted: Vec<&Case> = cases.iter().collect();
    sorted.sort_by(|a, b| a.score.total_cmp(&b.score));
    // Sum of midranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].score == sorted[i].score {
            j += 1;
        }
        let midrank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += midrank * sorted[i..=j].iter().filter(|c| c.positive).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// A percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    /// Resamples that had both classes (others are redrawn, up to a cap).
    pub resamples: usize,
}

/// How the bootstrap resamples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resampling {
    /// Positives and negatives resampled separately, keeping their counts.
    Stratified,
    /// Whole clusters (patients) resampled, all their cases together.
    ClusteredByPatient,
}

/// 95% percentile interval of `statistic` over `resamples` seeded bootstrap draws.
pub fn bootstrap(
    cases: &[Case],
    resampling: Resampling,
    resamples: usize,
    seed: u64,
    statistic: impl Fn(&[Case]) -> Option<f64>,
) -> Option<Interval> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pos: Vec<&Case> = cases.iter().filter(|c| c.positive).collect();
    let neg: Vec<&Case> = cases.iter().filter(|c| !c.positive).collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut clusters: Vec<Vec<&Case>> = Vec::new();
    if resampling == Resampling::ClusteredByPatient {
        let mut ids: Vec<usize> = cases.iter().map(|c| c.cluster).collect();
        ids.sort_unstable();
        ids.dedup();
        clusters = ids
            .iter()
            .map(|id| cases.iter().filter(|c| c.cluster == *id).collect())
            .collect();
    }
    let mut values = Vec::with_capacity(resamples);
    let mut draw = Vec::with_capacity(cases.len());
    let mut attempts = 0;
    while values.len() < resamples && attempts < resamples * 20 {
        attempts += 1;
        draw.clear();
        match resampling {
            Resampling::Stratified => {
                for _ in 0..pos.len() {
                    draw.push(pos[rng.gen_range(0..pos.len())].clone());
                }
                for _ in 0..neg.len() {
                    draw.push(neg[rng.gen_range(0..neg.len())].clone());
                }
            }
            Resampling::ClusteredByPatient => {
                for _ in 0..clusters.len() {
                    let cluster = &clusters[rng.gen_range(0..clusters.len())];
                    draw.extend(cluster.iter().map(|c| (*c).clone()));
                }
            }
        }
        if let Some(v) = statistic(&draw) {
            values.push(v);
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(Interval {
        low: percentile(&values, 2.5),
        high: percentile(&values, 97.5),
        resamples: values.len(),
    })
}

/// Linear-interpolated percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Counts and rates at one threshold (positive when score >= threshold).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub r#fn: usize,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub ppv: Option<f64>,
    pub npv: Option<f64>,
}

pub fn operating_point(cases: &[Case], threshold: f64) -> OperatingPoint {
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for c in cases {
        match (c.score >= threshold, c.positive) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let ratio = |a: usize, b: usize| (a + b > 0).then(|| a as f64 / (a + b) as f64);
    OperatingPoint {
        threshold,
        tp,
        fp,
        tn,
        r#fn: fn_,
        sensitivity: ratio(tp, fn_),
        specificity: ratio(tn, fp),
        ppv: ratio(tp, fp),
        npv: ratio(tn, fn_),
    }
}

/// The highest threshold whose sensitivity reaches `target` (None without positives).
pub fn threshold_for_sensitivity(cases: &[Case], target: f64) -> Option<f64> {
    let mut positives: Vec<f64> = cases
        .iter()
        .filter(|c| c.positive)
        .map(|c| c.score)
        .collect();
    if positives.is_empty() {
        return None;
    }
    positives.sort_by(|a, b| b.total_cmp(a));
    let needed = ((target * positives.len() as f64).ceil() as usize).clamp(1, positives.len());
    Some(positives[needed - 1])
}

/// ROC curve points (false positive rate, true positive rate), from (0,0) to (1,1).
pub fn roc_curve(cases: &[Case]) -> Vec<(f64, f64)> {
    let n_pos = cases.iter().filter(|c| c.positive).count().max(1) as f64;
    let n_neg = cases.iter().filter(|c| !c.positive).count().max(1) as f64;
    let mut sorted: Vec<&Case> = cases.iter().collect();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < sorted.len() {
        let s = sorted[i].score;
        while i < sorted.len() && sorted[i].score == s {
            if sorted[i].positive {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        points.push((fp / n_neg, tp / n_pos));
    }
    points
}

/// Sensitivity at `fpr` on a ROC curve: the highest reached at or below that rate.
fn sensitivity_at(curve: &[(f64, f64)], fpr: f64) -> f64 {
    curve
        .iter()
        .filter(|p| p.0 <= fpr + 1e-12)
        .map(|p| p.1)
        .fold(0.0, f64::max)
}

/// A pointwise 95% bootstrap band of the ROC on 1 - specificity = 0, 0.025, ..., 1:
/// (rate, low, high sensitivity), from the same seeded resamples as [`bootstrap`].
/// Empty when either class is empty.
pub fn roc_band(
    cases: &[Case],
    resampling: Resampling,
    resamples: usize,
    seed: u64,
) -> Vec<(f64, f64, f64)> {
    (0..=40)
        .filter_map(|i| {
            let fpr = i as f64 / 40.0;
            let iv = bootstrap(cases, resampling, resamples, seed, |draw| {
                Some(sensitivity_at(&roc_curve(draw), fpr))
            })?;
            Some((fpr, iv.low, iv.high))
        })
        .collect()
}

/// Mean squared difference between score and outcome (scores clamped to [0, 1]).
pub fn brier(cases: &[Case]) -> Option<f64> {
    if cases.is_empty() {
        return None;
    }
    let sum: f64 = cases
        .iter()
        .map(|c| {
            let p = c.score.clamp(0.0, 1.0);
            let y = if c.positive { 1.0 } else { 0.0 };
            (p - y) * (p - y)
        })
        .sum();
    Some(sum / cases.len() as f64)
}

/// One equal-width bin of the reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub low: f64,
    pub high: f64,
    pub count: usize,
    pub mean_score: Option<f64>,
    pub fraction_positive: Option<f64>,
}

/// Reliability bins and the expected calibration error (count-weighted mean gap).
pub fn calibration(cases: &[Case], bins: usize) -> (Vec<ReliabilityBin>, Option<f64>) {
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for c in cases {
        let p = c.score.clamp(0.0, 1.0);
        let b = ((p * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += c.positive as usize;
    }
    let mut ece = 0.0;
    let table = sums
        .iter()
        .enumerate()
        .map(|(i, &(n, s, k))| {
            let (mean, frac) = if n > 0 {
                (Some(s / n as f64), Some(k as f64 / n as f64))
            } else {
                (None, None)
            };
            if let (Some(m), Some(f)) = (mean, frac) {
                ece += n as f64 * (m - f).abs();
            }
            ReliabilityBin {
                low: i as f64 / bins as f64,
                high: (i + 1) as f64 / bins as f64,
                count: n,
                mean_score: mean,
                fraction_positive: frac,
            }
        })
        .collect();
    let ece = (!cases.is_empty()).then(|| ece / cases.len() as f64);
    (table, ece)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cases(scores: &[(f64, bool)]) -> Vec<Case> {
        scores
            .iter()
            .enumerate()
            .map(|(i, &(score, positive))| Case {
                score,
                positive,
                cluster: i,
            })
            .collect()
    }

    /// The definition: the fraction of (positive, negative) pairs ordered correctly.
    fn naive_auroc(c: &[Case]) -> Option<f64> {
        let (mut num, mut den) = (0.0, 0.0);
        for p in c.iter().filter(|c| c.positive) {
            for n in c.iter().filter(|c| !c.positive) {
                den += 1.0;
                num += if p.score > n.score {
                    1.0
                } else if p.score == n.score {
                    0.5
                } else {
                    0.0
                };
            }
        }
        (den > 0.0).then(|| num / den)
    }

    #[test]
    fn auroc_on_a_hand_made_table_equals_the_pairwise_count() {
        // 3 positives x 4 negatives = 12 pairs; by hand: 0.9 beats all 4, 0.6 beats
        // 0.1, 0.3, 0.5 and ties 0.6 (3.5), 0.3 beats 0.1 and ties 0.3 (1.5): 9/12.
        let table = cases(&[
            (0.9, true),
            (0.6, true),
            (0.3, true),
            (0.1, false),
            (0.3, false),
            (0.5, false),
            (0.6, false),
        ]);
        assert_eq!(naive_auroc(&table), Some(9.0 / 12.0));
        assert_eq!(auroc(&table), Some(9.0 / 12.0));
    }

    proptest! {
        #[test]
        fn auroc_matches_the_naive_pairwise_count(
            raw in proptest::collection::vec((0u8..20, any::<bool>()), 2..60)
        ) {
            let c = cases(&raw.iter().map(|&(s, p)| (s as f64 / 19.0, p)).collect::<Vec<_>>());
            let (fast, slow) = (auroc(&c), naive_auroc(&c));
            match (fast, slow) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-12),
                (a, b) => prop_assert_eq!(a, b),
            }
        }
    }

    #[test]
    fn bootstrap_is_identical_for_a_fixed_seed_and_brackets_the_estimate() {
        let c = cases(
            &(0..40)
                .map(|i| ((i % 10) as f64 / 10.0, i % 10 >= 4 && i % 3 != 0))
                .collect::<Vec<_>>(),
        );
        let a = bootstrap(&c, Resampling::Stratified, 1000, 42, auroc).unwrap();
        let b = bootstrap(&c, Resampling::Stratified, 1000, 42, auroc).unwrap();
        assert_eq!(a, b);
        let est = auroc(&c).unwrap();
        assert!(a.low <= est && est <= a.high, "{a:?} vs {est}");
        assert_eq!(a.resamples, 1000);
        let other = bootstrap(&c, Resampling::Stratified, 1000, 43, auroc).unwrap();
        assert_ne!(a, other, "a different seed draws differently");
    }

    #[test]
    fn clustered_bootstrap_keeps_patients_whole() {
        // Two slides per patient, identical within a patient: clustering widens nothing
        // but must still give a valid interval.
        let c: Vec<Case> = (0..30)
            .map(|i| Case {
                score: (i / 2) as f64 / 15.0,
                positive: (i / 2) % 3 == 0,
                cluster: i / 2,
            })
            .collect();
        let ci = bootstrap(&c, Resampling::ClusteredByPatient, 500, 1, auroc).unwrap();
        assert!(ci.low <= ci.high);
    }

    #[test]
    fn operating_points_and_target_sensitivity() {
        let c = cases(&[
            (0.9, true),
            (0.8, true),
            (0.4, true),
            (0.7, false),
            (0.2, false),
        ]);
        let op = operating_point(&c, 0.5);
        assert_eq!((op.tp, op.fp, op.tn, op.r#fn), (2, 1, 1, 1));
        assert_eq!(op.sensitivity, Some(2.0 / 3.0));
        assert_eq!(op.ppv, Some(2.0 / 3.0));
        assert_eq!(threshold_for_sensitivity(&c, 0.95), Some(0.4));
        assert_eq!(threshold_for_sensitivity(&c, 0.6), Some(0.8));
    }

    #[test]
    fn calibration_of_a_perfectly_calibrated_set_is_zero() {
        let c = cases(&[(0.25, true), (0.25, false), (0.25, false), (0.25, false)]);
        let (bins, ece) = calibration(&c, 4);
        assert_eq!(ece, Some(0.0));
        assert_eq!(bins[1].count, 4);
        assert_eq!(brier(&cases(&[(1.0, true), (0.0, false)])), Some(0.0));
    }
}
