//! The `qc` stage: slide quality flags and whether they stop a slide from getting a call.
//!
//! It owns the checks (tissue amount, blur, pen marks, MPP, stains) and the rule that
//! turns flags into a gate (`qc-fail`, `insufficient-tissue`). It never reads the slide
//! and never judges findings; it works on what the tissue, tiling and stain stages
//! measured.
//!
//! Rules (in this order):
//! 1. Any flag of severity `fail` (MPP missing or implausible, blur, stains that are
//!    not H&E) gates the slide to `qc-fail`: its tiles would not mean what the model
//!    was trained on.
//! 2. Otherwise any flag of severity `insufficient` (tissue area below
//!    `min_tissue_mm2`, or fewer than `min_tiles` tissue tiles) gates it to
//!    `insufficient-tissue`.
//! 3. `warn` flags (pen marks) are reported but change nothing: pen is already
//!    excluded from the tissue mask.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::slide::Mpp;
use crate::stain::{StainEstimate, StainProfile};

/// Thresholds of the checks. `Default`: MPP plausible in 0.1–5 µm/px, at least
/// 0.5 mm² of tissue and 1 tissue tile, blur below a median Laplacian variance of 15
/// (grey levels²) over tissue tiles, pen flagged above 0.1 mm² or 1% of tissue,
/// stains H&E while the slide's haematoxylin-like and eosin-like vectors are within
/// 40° and 33° of Ruifrok-Johnston's (docs/stain.md has the measurements).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QcOptions {
    pub mpp_min: f64,
    pub mpp_max: f64,
    pub min_tissue_mm2: f64,
    pub min_tiles: usize,
    /// Median variance of the Laplacian over scored tiles below which the slide is blurred.
    pub min_laplacian_variance: f64,
    pub pen_min_mm2: f64,
    pub pen_min_fraction: f64,
    /// Widest angle (degrees) of the slide's haematoxylin-like stain vector to
    /// Ruifrok-Johnston haematoxylin that is still H&E.
    #[serde(default = "default_max_hematoxylin_angle_deg")]
    pub max_hematoxylin_angle_deg: f64,
    /// Likewise for the eosin-like vector and eosin.
    #[serde(default = "default_max_eosin_angle_deg")]
    pub max_eosin_angle_deg: f64,
}

fn default_max_hematoxylin_angle_deg() -> f64 {
    40.0
}

fn default_max_eosin_angle_deg() -> f64 {
    33.0
}

impl Default for QcOptions {
    fn default() -> Self {
        QcOptions {
            mpp_min: 0.1,
            mpp_max: 5.0,
            min_tissue_mm2: 0.5,
            min_tiles: 1,
            min_laplacian_variance: 15.0,
            pen_min_mm2: 0.1,
            pen_min_fraction: 0.01,
            max_hematoxylin_angle_deg: default_max_hematoxylin_angle_deg(),
            max_eosin_angle_deg: default_max_eosin_angle_deg(),
        }
    }
}

/// What a flag does to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Warn,
    Insufficient,
    Fail,
}

/// One quality flag, with the measurement behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "flag", rename_all = "kebab-case")]
pub enum QcFlag {
    MppMissing,
    MppImplausible {
        mpp: f64,
        min: f64,
        max: f64,
    },
    LowTissue {
        tissue_mm2: f64,
        min_mm2: f64,
    },
    TooFewTiles {
        tiles: usize,
        min: usize,
    },
    Blur {
        laplacian_variance: f64,
        min: f64,
    },
    PenMarks {
        pen_mm2: f64,
        pen_fraction_of_tissue: f64,
    },
    /// The slide's two stain vectors are not haematoxylin's and eosin's (an
    /// immunostain, a special stain).
    NotHAndE {
        hematoxylin_angle_deg: f64,
        eosin_angle_deg: f64,
        max_hematoxylin_angle_deg: f64,
        max_eosin_angle_deg: f64,
    },
}

impl QcFlag {
    pub fn severity(&self) -> Severity {
        match self {
            QcFlag::MppMissing
            | QcFlag::MppImplausible { .. }
            | QcFlag::Blur { .. }
            | QcFlag::NotHAndE { .. } => Severity::Fail,
            QcFlag::LowTissue { .. } | QcFlag::TooFewTiles { .. } => Severity::Insufficient,
            QcFlag::PenMarks { .. } => Severity::Warn,
        }
    }

    /// A short kebab-case name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            QcFlag::MppMissing => "mpp-missing",
            QcFlag::MppImplausible { .. } => "mpp-implausible",
            QcFlag::LowTissue { .. } => "low-tissue",
            QcFlag::TooFewTiles { .. } => "too-few-tiles",
            QcFlag::Blur { .. } => "blur",
            QcFlag::PenMarks { .. } => "pen-marks",
            QcFlag::NotHAndE { .. } => "not-h-and-e",
        }
    }
}

/// One line for a person: the flag and the measurement behind it (audit warnings).
impl std::fmt::Display for QcFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QcFlag::MppMissing => {
                write!(f, "mpp-missing: the slide's microns per pixel are unknown")
            }
            QcFlag::MppImplausible { mpp, min, max } => {
                write!(f, "mpp-implausible: {mpp} µm/px is outside {min}-{max}")
            }
            QcFlag::LowTissue {
                tissue_mm2,
                min_mm2,
            } => {
                write!(
                    f,
                    "low-tissue: {tissue_mm2:.3} mm² of tissue, below {min_mm2} mm²"
                )
            }
            QcFlag::TooFewTiles { tiles, min } => {
                write!(f, "too-few-tiles: {tiles} tissue tiles, below {min}")
            }
            QcFlag::Blur {
                laplacian_variance,
                min,
            } => write!(
                f,
                "blur: median Laplacian variance {laplacian_variance:.1}, below {min}"
            ),
            QcFlag::PenMarks {
                pen_mm2,
                pen_fraction_of_tissue,
            } => write!(
                f,
                "pen-marks: {pen_mm2:.3} mm² of pen ink ({:.1}% of tissue) excluded",
                pen_fraction_of_tissue * 100.0
            ),
            QcFlag::NotHAndE {
                hematoxylin_angle_deg,
                eosin_angle_deg,
                max_hematoxylin_angle_deg,
                max_eosin_angle_deg,
            } => write!(
                f,
                "not-h-and-e: the stains are not H&E's: the eosin-like stain vector is \
                 {eosin_angle_deg:.1}° from eosin (H&E: at most {max_eosin_angle_deg}°), the \
                 haematoxylin-like one {hematoxylin_angle_deg:.1}° from haematoxylin (at most \
                 {max_hematoxylin_angle_deg}°)"
            ),
        }
    }
}

/// The gate QC puts on the call, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    QcFail,
    InsufficientTissue,
}

/// The flags of one slide, in the fixed order the checks run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QcReport {
    pub flags: Vec<QcFlag>,
    /// Median Laplacian variance over the scored tiles (None before tiles are read
    /// or when there are none).
    pub laplacian_variance: Option<f64>,
    /// The slide's stain vectors, measured on its tiles (None before tiles are read
    /// or with too few stained pixels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stain: Option<StainEstimate>,
    /// `--normalise-stain`: the slide's stain profile and the model's it was
    /// mapped onto (absent without the option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stain_normalisation: Option<StainNormalisation>,
}

/// What `--normalise-stain` did to a slide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StainNormalisation {
    /// False where the sampled tiles held too few stained pixels to measure the
    /// slide's stain: its tiles were scored as scanned.
    pub applied: bool,
    /// Tiles the slide's profile was measured on (evenly spaced over its grid).
    pub sampled_tiles: usize,
    /// The slide's stain as measured (absent where it could not be).
    pub slide: Option<StainProfile>,
    /// The model's `[stain]`, which the slide was mapped onto.
    pub reference: StainProfile,
}

impl QcReport {
    /// The gate per the rules in this module's header.
    pub fn gate(&self) -> Option<Gate> {
        let worst = self.flags.iter().map(QcFlag::severity).max()?;
        match worst {
            Severity::Fail => Some(Gate::QcFail),
            Severity::Insufficient => Some(Gate::InsufficientTissue),
            Severity::Warn => None,
        }
    }

    /// Checks that need only the slide's metadata and the tissue mask.
    pub fn check_slide(
        mpp: Option<Mpp>,
        tissue_mm2: Option<f64>,
        pen_mm2: Option<f64>,
        options: &QcOptions,
    ) -> QcReport {
        let mut flags = Vec::new();
        match mpp {
            None => flags.push(QcFlag::MppMissing),
            Some(m) => {
                let v = m.mean();
                if !(options.mpp_min..=options.mpp_max).contains(&v) {
                    flags.push(QcFlag::MppImplausible {
                        mpp: v,
                        min: options.mpp_min,
                        max: options.mpp_max,
                    });
                }
            }
        }
        if let Some(t) = tissue_mm2 {
            if t < options.min_tissue_mm2 {
                flags.push(QcFlag::LowTissue {
                    tissue_mm2: t,
                    min_mm2: options.min_tissue_mm2,
                });
            }
            if let Some(p) = pen_mm2 {
                let fraction = if t > 0.0 { p / t } else { f64::INFINITY };
                if p >= options.pen_min_mm2 || (p > 0.0 && fraction >= options.pen_min_fraction) {
                    flags.push(QcFlag::PenMarks {
                        pen_mm2: p,
                        pen_fraction_of_tissue: if fraction.is_finite() { fraction } else { 1.0 },
                    });
                }
            }
        }
        QcReport {
            flags,
            laplacian_variance: None,
            stain: None,
            stain_normalisation: None,
        }
    }

    /// Checks on the tiles: how many there are and how sharp (the median of the
    /// per-tile Laplacian variances, in any order).
    pub fn check_tiles(&mut self, tiles: usize, laplacian_variances: &[f64], options: &QcOptions) {
        if tiles < options.min_tiles {
            self.flags.push(QcFlag::TooFewTiles {
                tiles,
                min: options.min_tiles,
            });
        }
        self.laplacian_variance = median(laplacian_variances);
        if let Some(v) = self.laplacian_variance {
            if v < options.min_laplacian_variance {
                self.flags.push(QcFlag::Blur {
                    laplacian_variance: v,
                    min: options.min_laplacian_variance,
                });
            }
        }
    }

    /// The stain check: flags a slide whose stain vectors are further from
    /// haematoxylin's and eosin's than the options allow (none without an estimate).
    pub fn check_stain(&mut self, stain: Option<StainEstimate>, options: &QcOptions) {
        if let Some(s) = &stain {
            if s.hematoxylin_angle_deg > options.max_hematoxylin_angle_deg
                || s.eosin_angle_deg > options.max_eosin_angle_deg
            {
                self.flags.push(QcFlag::NotHAndE {
                    hematoxylin_angle_deg: s.hematoxylin_angle_deg,
                    eosin_angle_deg: s.eosin_angle_deg,
                    max_hematoxylin_angle_deg: options.max_hematoxylin_angle_deg,
                    max_eosin_angle_deg: options.max_eosin_angle_deg,
                });
            }
        }
        self.stain = stain;
    }
}

/// Median of the finite values, or `None` when there are none.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Variance of the 4-neighbour Laplacian of a tile's grey levels (interior pixels),
/// the usual focus measure: sharp tissue gives hundreds, blurred tissue single digits.
///
/// Computed exactly in integers: grey levels scaled by 1,000 (`299 R + 587 G + 114
/// B`), so every Laplacian and both sums are exact whatever the order they are
/// taken in, and only the last step (to f64, two divisions) rounds. That lets the
/// rows be summed in independent lanes, where the f64 sums of the grey levels (a
/// running sum of 50,000 terms, one add at a time) cost a tenth of a tile's time
/// in the stream.
pub fn laplacian_variance(tile: &RgbImage) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { laplacian_variance_avx2(tile) };
    }
    laplacian_variance_in(tile)
}

/// [`laplacian_variance_in`] compiled for AVX2, whose 64-bit lane products the
/// squares need (the baseline x86-64 build emulates them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn laplacian_variance_avx2(tile: &RgbImage) -> f64 {
    laplacian_variance_in(tile)
}

#[inline(always)]
fn laplacian_variance_in(tile: &RgbImage) -> f64 {
    let (w, h) = (tile.width() as usize, tile.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let raw = tile.as_raw();
    let grey_row = |y: usize, row: &mut [i32]| {
        for (g, p) in row
            .iter_mut()
            .zip(raw[y * w * 3..][..w * 3].chunks_exact(3))
        {
            *g = 299 * p[0] as i32 + 587 * p[1] as i32 + 114 * p[2] as i32;
        }
    };
    let (mut above, mut here, mut below) = (vec![0; w], vec![0; w], vec![0; w]);
    grey_row(0, &mut above);
    grey_row(1, &mut here);
    // A row's sums fit in i64 (|l| <= 4 * 255,000, so l^2 < 2^40) for rows of up
    // to 2^23 pixels, far wider than any tile; the tile's sums in i128.
    debug_assert!(w <= 1 << 23, "a tile row of {w} pixels");
    let (mut sum, mut sum2) = (0i128, 0i128);
    for y in 1..h - 1 {
        grey_row(y + 1, &mut below);
        let (mut row_sum, mut row_sum2) = (0i64, 0i64);
        for x in 1..w - 1 {
            let l = here[x - 1] + here[x + 1] + above[x] + below[x] - 4 * here[x];
            row_sum += l as i64;
            row_sum2 += l as i64 * l as i64;
        }
        sum += row_sum as i128;
        sum2 += row_sum2 as i128;
        (above, here, below) = (here, below, above);
    }
    // Variance = (n sum2 - sum^2) / n^2, exact until the conversion to f64 and
    // the divisions; / 1000^2 for the grey scale.
    let n = ((w - 2) * (h - 2)) as i128;
    let spread = n * sum2 - sum * sum;
    spread as f64 / (n * n) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_slide_has_no_gate() {
        let mut qc = QcReport::check_slide(
            Mpp::square(0.5),
            Some(20.0),
            Some(0.0),
            &QcOptions::default(),
        );
        qc.check_tiles(100, &[200.0, 300.0, 250.0], &QcOptions::default());
        assert!(qc.flags.is_empty(), "{:?}", qc.flags);
        assert_eq!(qc.gate(), None);
        assert_eq!(qc.laplacian_variance, Some(250.0));
    }

    #[test]
    fn missing_or_implausible_mpp_fails() {
        let qc = QcReport::check_slide(None, None, None, &QcOptions::default());
        assert_eq!(qc.flags, vec![QcFlag::MppMissing]);
        assert_eq!(qc.gate(), Some(Gate::QcFail));
        let qc = QcReport::check_slide(Mpp::square(12.0), Some(20.0), None, &QcOptions::default());
        assert_eq!(qc.flags[0].name(), "mpp-implausible");
        assert_eq!(qc.gate(), Some(Gate::QcFail));
    }

    #[test]
    fn little_tissue_is_insufficient_and_fail_wins() {
        let qc = QcReport::check_slide(Mpp::square(0.5), Some(0.1), None, &QcOptions::default());
        assert_eq!(qc.gate(), Some(Gate::InsufficientTissue));
        let mut qc =
            QcReport::check_slide(Mpp::square(0.5), Some(0.0), None, &QcOptions::default());
        qc.check_tiles(0, &[], &QcOptions::default());
        assert_eq!(qc.flags.len(), 2);
        assert_eq!(qc.laplacian_variance, None);
        assert_eq!(qc.gate(), Some(Gate::InsufficientTissue));
        let qc = QcReport::check_slide(None, Some(0.0), None, &QcOptions::default());
        assert_eq!(qc.gate(), Some(Gate::QcFail));
    }

    #[test]
    fn pen_warns_without_gating() {
        let qc = QcReport::check_slide(
            Mpp::square(0.5),
            Some(10.0),
            Some(0.5),
            &QcOptions::default(),
        );
        assert_eq!(qc.flags.len(), 1);
        assert_eq!(qc.flags[0].severity(), Severity::Warn);
        assert_eq!(qc.gate(), None);
    }

    #[test]
    fn blur_is_caught_by_the_median() {
        let mut qc =
            QcReport::check_slide(Mpp::square(0.5), Some(10.0), None, &QcOptions::default());
        qc.check_tiles(4, &[500.0, 3.0, 2.0, 4.0], &QcOptions::default());
        assert_eq!(qc.laplacian_variance, Some(3.5));
        assert_eq!(qc.gate(), Some(Gate::QcFail));
    }

    /// The focus measure as first written, from a whole grey copy of the tile.
    fn laplacian_variance_of_a_grey_copy(tile: &RgbImage) -> f64 {
        let (w, h) = (tile.width() as usize, tile.height() as usize);
        let grey: Vec<f64> = tile
            .pixels()
            .map(|p| 0.299 * p.0[0] as f64 + 0.587 * p.0[1] as f64 + 0.114 * p.0[2] as f64)
            .collect();
        let (mut sum, mut sum2, mut n) = (0.0, 0.0, 0.0);
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let c = grey[y * w + x];
                let l = grey[y * w + x - 1]
                    + grey[y * w + x + 1]
                    + grey[(y - 1) * w + x]
                    + grey[(y + 1) * w + x]
                    - 4.0 * c;
                sum += l;
                sum2 += l * l;
                n += 1.0;
            }
        }
        let mean = sum / n;
        (sum2 / n - mean * mean).max(0.0)
    }

    #[test]
    fn laplacian_variance_in_integers_is_the_grey_copys_to_float_rounding() {
        let mut state = 12345u32;
        for (w, h) in [(4, 3), (224, 224), (17, 5), (5, 31)] {
            let tile = RgbImage::from_fn(w, h, |_, _| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let [a, b, c, _] = state.to_le_bytes();
                image::Rgb([a, b, c])
            });
            let (got, want) = (
                laplacian_variance(&tile),
                laplacian_variance_of_a_grey_copy(&tile),
            );
            // The f64 grey copy rounds every grey level and partial sum; the
            // integer version only its last step.
            assert!(
                (got - want).abs() <= 1e-9 * want,
                "{w}x{h}: {got} against {want}"
            );
            assert!(got > 0.0);
            // Exact integer sums: the AVX2 build and the baseline one agree to the bit.
            assert_eq!(got.to_bits(), laplacian_variance_in(&tile).to_bits());
        }
    }

    #[test]
    fn laplacian_variance_by_hand() {
        // Flat image: zero.
        let flat = RgbImage::from_pixel(8, 8, image::Rgb([100, 100, 100]));
        assert_eq!(laplacian_variance(&flat), 0.0);
        // Checkerboard of 0/255 greys: every interior Laplacian is ±4*255,
        // balanced, so variance = (1020)^2.
        let check = RgbImage::from_fn(6, 6, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([v, v, v])
        });
        let v = laplacian_variance(&check);
        assert_eq!(v, 1020.0f64.powi(2), "exact: the sums are integers");
    }

    #[test]
    fn real_skin_tile_is_sharp_and_its_blurred_copy_is_not() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/real/CMU-1-Small-Region.region-x800-y1200-512.png");
        if !p.is_file() {
            eprintln!("skipped: {} is absent", p.display());
            return;
        }
        let tile = image::open(&p).unwrap().into_rgb8();
        let sharp = laplacian_variance(&tile);
        let blurred = laplacian_variance(&image::imageops::blur(&tile, 4.0));
        let min = QcOptions::default().min_laplacian_variance;
        assert!(sharp > 5.0 * min, "sharp {sharp}");
        assert!(blurred < min, "blurred {blurred}");
    }
}
