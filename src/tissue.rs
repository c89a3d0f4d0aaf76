//! The `tissue` stage: which parts of a slide hold tissue, from a low-resolution thumbnail.
//!
//! It owns the mask (Otsu on saturation held between a floor and a cap, morphological
//! clean-up that closes gaps before it opens specks away, minimum component area,
//! pen-ink exclusion) and the loading of a user-supplied mask. It never reads
//! the slide itself: the caller hands it a thumbnail and the slide's level-0 size.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::slide::{Mpp, Rect, SlideInfo};

/// Options for [`detect`]. `Default`: a mask at 10 µm/px, closing radius 2 px then
/// opening radius 1 px, components under 0.02 mm² dropped, saturation threshold held
/// between 0.07 and 0.12.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TissueOptions {
    /// Microns per mask pixel to aim for (the issue asks for 8–16 µm/px).
    pub target_mask_mpp: f64,
    /// Mask side used when the slide's MPP is unknown, and the cap on any mask side.
    pub fallback_side: u32,
    pub max_side: u32,
    /// Radius in mask pixels of the square opening (removes specks) and closing (fills gaps).
    pub open_radius: u32,
    pub close_radius: u32,
    /// Tissue components smaller than this are dropped (skipped when MPP is unknown).
    pub min_component_mm2: f64,
    /// Otsu's threshold on saturation is never allowed below this (empty glass, JPEG noise).
    pub min_saturation: f64,
    /// Nor above this. Otsu splits a slide's saturations in two, and where a saturated
    /// epidermis, inflammation or ink stand against a pale dermis the split falls
    /// between those and the dermis, which then counts as glass: a 2 x 1.5 mm phantom
    /// with 2.33 mm² of tissue was detected as 0.34 mm² (`insufficient-tissue`) with
    /// Otsu at about 0.2. In the thumbnails measured, much of a pale dermis lies at
    /// 0.12-0.25 and the brightest glass at a median of 0.013-0.024 (99th percentile
    /// 0.026-0.082; docs/tissue.md).
    pub max_saturation: f64,
    /// Close gaps before opening specks away (since 2026-12-05). Opening first erased
    /// dermis whose collagen bundles, between retraction spaces, are narrower than the
    /// opening (3 mask pixels, 30 µm): a 3 x 3 mm phantom's 3.09 mm² of detected
    /// tissue was 1.85 mm² that way (docs/tissue.md). `false`: open, then close, as
    /// before.
    pub close_first: bool,
}

impl Default for TissueOptions {
    fn default() -> Self {
        TissueOptions {
            target_mask_mpp: 10.0,
            fallback_side: 1024,
            max_side: 4096,
            open_radius: 1,
            close_radius: 2,
            min_component_mm2: 0.02,
            min_saturation: 0.07,
            max_saturation: 0.12,
            close_first: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TissueError {
    #[error("{path}: cannot read the tissue mask: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "{path}: the tissue mask is {mask_w}x{mask_h} but the slide is {slide_w}x{slide_h}; \
         its aspect ratio must match the slide's (within 2%)"
    )]
    AspectMismatch {
        path: PathBuf,
        mask_w: u32,
        mask_h: u32,
        slide_w: u64,
        slide_h: u64,
    },
    #[error("{path}: refused: the tissue mask has {pixels} pixels, above the limit of {limit}")]
    TooLarge {
        path: PathBuf,
        pixels: u64,
        limit: u64,
    },
}

/// Where a mask came from, echoed in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskSource {
    Detected,
    User,
}

/// A boolean tissue mask over the whole slide, plus the pen ink that was excluded.
#[derive(Debug, Clone, PartialEq)]
pub struct TissueMask {
    pub width: u32,
    pub height: u32,
    /// Row-major, `width * height`, true where there is tissue.
    pub tissue: Vec<bool>,
    /// Row-major, true where pen ink was found (never also tissue).
    pub pen: Vec<bool>,
    /// Level-0 pixels per mask pixel along x and y.
    pub level0_per_px_x: f64,
    pub level0_per_px_y: f64,
    /// Microns per mask pixel (mean of x and y), when the slide's MPP is known.
    pub um_per_px: Option<f64>,
    /// The saturation threshold used (Otsu's, floored); `None` for a user mask.
    pub saturation_threshold: Option<f64>,
    pub source: MaskSource,
    /// The colour of the empty glass on the thumbnail: the per-channel median of
    /// its brightest twentieth (pen left out); `None` for a user mask. Stain normalisation measures optical
    /// density against it (a camera's glass can be far from white).
    pub glass: Option<[u8; 3]>,
}

impl TissueMask {
    /// An all-false mask of the given size (used when nothing is tissue).
    fn empty(width: u32, height: u32, slide_w: u64, slide_h: u64, mpp: Option<Mpp>) -> Self {
        let n = width as usize * height as usize;
        let (sx, sy) = (
            slide_w as f64 / width as f64,
            slide_h as f64 / height as f64,
        );
        TissueMask {
            width,
            height,
            tissue: vec![false; n],
            pen: vec![false; n],
            level0_per_px_x: sx,
            level0_per_px_y: sy,
            um_per_px: mpp.map(|m| (m.x * sx + m.y * sy) / 2.0),
            saturation_threshold: None,
            source: MaskSource::Detected,
            glass: None,
        }
    }

    pub fn tissue_pixels(&self) -> usize {
        self.tissue.iter().filter(|&&t| t).count()
    }

    pub fn pen_pixels(&self) -> usize {
        self.pen.iter().filter(|&&t| t).count()
    }

    /// Area of one mask pixel in mm², when the MPP is known.
    pub fn pixel_area_mm2(&self) -> Option<f64> {
        self.um_per_px.map(|u| u * u / 1e6)
    }

    /// Tissue area in mm², when the MPP is known.
    pub fn tissue_area_mm2(&self) -> Option<f64> {
        self.pixel_area_mm2()
            .map(|a| a * self.tissue_pixels() as f64)
    }

    /// Pen-ink area in mm², when the MPP is known.
    pub fn pen_area_mm2(&self) -> Option<f64> {
        self.pixel_area_mm2().map(|a| a * self.pen_pixels() as f64)
    }

    /// The fraction of tissue-mask pixels in `rect`
    /// (a level-0 rectangle), weighting each mask pixel by how much of it the
    /// rectangle covers. Parts of the rectangle outside the slide count as no tissue.
    pub fn fraction_in(&self, rect: Rect) -> f64 {
        if rect.width == 0 || rect.height == 0 {
            return 0.0;
        }
        let x0 = rect.x as f64 / self.level0_per_px_x;
        let x1 = (rect.x as f64 + rect.width as f64) / self.level0_per_px_x;
        let y0 = rect.y as f64 / self.level0_per_px_y;
        let y1 = (rect.y as f64 + rect.height as f64) / self.level0_per_px_y;
        let total = (x1 - x0) * (y1 - y0);
        let cols = overlaps(x0, x1, self.width);
        let rows = overlaps(y0, y1, self.height);
        let mut covered = 0.0;
        for &(row, wy) in &rows {
            let base = row as usize * self.width as usize;
            let mut line = 0.0;
            for &(col, wx) in &cols {
                if self.tissue[base + col as usize] {
                    line += wx;
                }
            }
            covered += line * wy;
        }
        (covered / total).clamp(0.0, 1.0)
    }
}

/// Mask pixels `0..n` overlapping the interval `[a, b)`, with the overlap length.
fn overlaps(a: f64, b: f64, n: u32) -> Vec<(u32, f64)> {
    let first = a.floor().max(0.0) as i64;
    let last = (b.ceil() as i64).min(n as i64);
    (first..last)
        .filter_map(|i| {
            let w = (b.min(i as f64 + 1.0) - a.max(i as f64)).max(0.0);
            (w > 0.0).then_some((i as u32, w))
        })
        .collect()
}

/// The longer side of the thumbnail to build the mask on: about
/// `target_mask_mpp` µm per pixel when the MPP is known, else `fallback_side`.
pub fn mask_side(info: &SlideInfo, options: &TissueOptions) -> u32 {
    let long = info.width().max(info.height()).max(1) as f64;
    let side = match info.mpp {
        Some(m) => (long * m.mean() / options.target_mask_mpp).round(),
        None => options.fallback_side as f64,
    };
    (side as u32)
        .clamp(16, options.max_side)
        .min(long as u32)
        .max(1)
}

/// HSV saturation in 0..=1 (0 for black).
fn saturation(p: [u8; 3]) -> f64 {
    let max = p.iter().copied().max().unwrap_or(0) as f64;
    let min = p.iter().copied().min().unwrap_or(0) as f64;
    if max == 0.0 {
        0.0
    } else {
        (max - min) / max
    }
}

/// HSV hue in degrees (0..360); 0 for greys.
fn hue(p: [u8; 3]) -> f64 {
    let [r, g, b] = p.map(f64::from);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    if d == 0.0 {
        return 0.0;
    }
    let h = if max == r {
        60.0 * ((g - b) / d)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    h.rem_euclid(360.0)
}

/// Pen ink: hues H&E never takes (green, cyan, pure blue) strongly saturated, or
/// near-black. Haematoxylin sits at violet-blue hues around 240–290° with moderate
/// saturation, so plain blue is pen only when it is very saturated.
pub fn is_pen(p: [u8; 3]) -> bool {
    let max = p.iter().copied().max().unwrap_or(0);
    if max < 60 {
        return true;
    }
    let (s, h) = (saturation(p), hue(p));
    ((70.0..232.0).contains(&h) && s > 0.35) || ((232.0..250.0).contains(&h) && s > 0.75)
}

/// Otsu's threshold over values in 0..=1, on a 256-bin histogram; returns the
/// upper edge of the background class (values above it are foreground).
pub fn otsu(values: impl Iterator<Item = f64>) -> f64 {
    let mut hist = [0u64; 256];
    let mut n = 0u64;
    for v in values {
        hist[((v.clamp(0.0, 1.0) * 255.0).round()) as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 1.0;
    }
    let total: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let (mut w0, mut sum0) = (0.0f64, 0.0f64);
    let (mut best, mut best_t) = (-1.0f64, 0usize);
    for (t, &c) in hist.iter().enumerate() {
        w0 += c as f64;
        sum0 += t as f64 * c as f64;
        let w1 = n as f64 - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let m0 = sum0 / w0;
        let m1 = (total - sum0) / w1;
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    (best_t as f64 + 0.5) / 255.0
}

/// Builds the tissue mask on `thumb`, a thumbnail of the whole slide of level-0 size
/// `slide_w` × `slide_h`.
pub fn detect(
    thumb: &RgbImage,
    slide_w: u64,
    slide_h: u64,
    mpp: Option<Mpp>,
    options: &TissueOptions,
) -> TissueMask {
    let (w, h) = thumb.dimensions();
    let mut mask = TissueMask::empty(w.max(1), h.max(1), slide_w, slide_h, mpp);
    if w == 0 || h == 0 {
        return mask;
    }
    let pixels: Vec<[u8; 3]> = thumb.pixels().map(|p| p.0).collect();
    let pen: Vec<bool> = pixels.iter().map(|&p| is_pen(p)).collect();
    let sat: Vec<f64> = pixels.iter().map(|&p| saturation(p)).collect();
    let threshold = otsu(sat.iter().zip(&pen).filter(|(_, &is)| !is).map(|(&s, _)| s))
        .min(options.max_saturation)
        .max(options.min_saturation);
    let mut tissue: Vec<bool> = sat
        .iter()
        .zip(&pen)
        .map(|(&s, &is)| !is && s > threshold)
        .collect();
    if options.close_first {
        tissue = close(&tissue, w, h, options.close_radius);
        tissue = open(&tissue, w, h, options.open_radius);
    } else {
        tissue = open(&tissue, w, h, options.open_radius);
        tissue = close(&tissue, w, h, options.close_radius);
    }
    // Ink spreads a halo of blended colour: keep a one-pixel margin round pen.
    let pen_margin = dilate(&pen, w, h, 1);
    for (t, &p) in tissue.iter_mut().zip(&pen_margin) {
        if p {
            *t = false;
        }
    }
    if let Some(px_mm2) = mask.pixel_area_mm2() {
        let min_px = (options.min_component_mm2 / px_mm2).ceil() as usize;
        remove_small_components(&mut tissue, w, h, min_px);
    }
    mask.glass = glass_colour(&pixels, &pen_margin);
    mask.tissue = tissue;
    mask.pen = pen;
    mask.saturation_threshold = Some(threshold);
    mask
}

/// Per-channel median of the brightest twentieth of the pixels that are not pen
/// (Macenko's estimate of the light through empty glass); `None` for none.
fn glass_colour(pixels: &[[u8; 3]], pen: &[bool]) -> Option<[u8; 3]> {
    let mut by_sum = [0u64; 766];
    for (p, &is_pen) in pixels.iter().zip(pen) {
        if !is_pen {
            by_sum[p.iter().map(|&v| v as usize).sum::<usize>()] += 1;
        }
    }
    let n: u64 = by_sum.iter().sum();
    if n == 0 {
        return None;
    }
    // The darkest sum among the brightest twentieth.
    let want = n.div_ceil(20);
    let (mut seen, mut floor) = (0u64, 765usize);
    while seen + by_sum[floor] < want {
        seen += by_sum[floor];
        floor -= 1;
    }
    let mut counts = [[0u64; 256]; 3];
    let mut k = 0u64;
    for (p, &is_pen) in pixels.iter().zip(pen) {
        if !is_pen && p.iter().map(|&v| v as usize).sum::<usize>() >= floor {
            k += 1;
            for c in 0..3 {
                counts[c][p[c] as usize] += 1;
            }
        }
    }
    Some(counts.map(|hist| {
        let mut seen = 0;
        hist.iter()
            .position(|&c| {
                seen += c;
                2 * seen > k
            })
            .unwrap_or(255) as u8
    }))
}

/// Loads a user mask (any greyscale or colour image; non-black pixels are tissue)
/// and places it over the slide. Its aspect ratio must match the slide's.
pub fn load_user_mask(
    path: &Path,
    slide_w: u64,
    slide_h: u64,
    mpp: Option<Mpp>,
    max_pixels: u64,
) -> Result<TissueMask, TissueError> {
    let read = |reason: String| TissueError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| read(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| read(e.to_string()))?;
    let (mw, mh) = reader
        .into_dimensions()
        .map_err(|e| read(format!("not an image this tool reads: {e}")))?;
    let pixels = mw as u64 * mh as u64;
    if pixels > max_pixels {
        return Err(TissueError::TooLarge {
            path: path.to_path_buf(),
            pixels,
            limit: max_pixels,
        });
    }
    if mw == 0 || mh == 0 || slide_w == 0 || slide_h == 0 {
        return Err(read("the mask or the slide is empty".into()));
    }
    let mask_aspect = mw as f64 / mh as f64;
    let slide_aspect = slide_w as f64 / slide_h as f64;
    if (mask_aspect / slide_aspect - 1.0).abs() > 0.02 {
        return Err(TissueError::AspectMismatch {
            path: path.to_path_buf(),
            mask_w: mw,
            mask_h: mh,
            slide_w,
            slide_h,
        });
    }
    let image = image::ImageReader::open(path)
        .map_err(|e| read(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| read(e.to_string()))?
        .decode()
        .map_err(|e| read(format!("cannot decode: {e}")))?
        .into_luma8();
    let mut mask = TissueMask::empty(mw, mh, slide_w, slide_h, mpp);
    mask.tissue = image.pixels().map(|p| p.0[0] > 0).collect();
    mask.source = MaskSource::User;
    Ok(mask)
}

/// Square dilation of radius `r` (a (2r+1)² window), separable.
pub fn dilate(m: &[bool], w: u32, h: u32, r: u32) -> Vec<bool> {
    window(m, w, h, r, true)
}

/// Square erosion of radius `r`; pixels outside the image count as set, so the
/// border does not eat tissue that touches the slide's edge.
pub fn erode(m: &[bool], w: u32, h: u32, r: u32) -> Vec<bool> {
    window(m, w, h, r, false)
}

/// `any = true`: a pixel is set if any pixel in its window is set (dilation);
/// `any = false`: set only if every pixel in the window is set (erosion).
fn window(m: &[bool], w: u32, h: u32, r: u32, any: bool) -> Vec<bool> {
    if r == 0 {
        return m.to_vec();
    }
    let (w, h, r) = (w as usize, h as usize, r as usize);
    let pass = |src: &[bool], horizontal: bool| -> Vec<bool> {
        let mut out = vec![false; w * h];
        for y in 0..h {
            for x in 0..w {
                let (c, n) = if horizontal { (x, w) } else { (y, h) };
                let lo = c.saturating_sub(r);
                let hi = (c + r).min(n - 1);
                let at = |k: usize| {
                    if horizontal {
                        src[y * w + k]
                    } else {
                        src[k * w + x]
                    }
                };
                out[y * w + x] = if any {
                    (lo..=hi).any(at)
                } else {
                    (lo..=hi).all(at)
                };
            }
        }
        out
    };
    let once = pass(m, true);
    pass(&once, false)
}

pub fn open(m: &[bool], w: u32, h: u32, r: u32) -> Vec<bool> {
    dilate(&erode(m, w, h, r), w, h, r)
}

pub fn close(m: &[bool], w: u32, h: u32, r: u32) -> Vec<bool> {
    erode(&dilate(m, w, h, r), w, h, r)
}

/// Clears 8-connected components of fewer than `min_px` pixels.
pub fn remove_small_components(m: &mut [bool], w: u32, h: u32, min_px: usize) {
    if min_px <= 1 {
        return;
    }
    let (w, h) = (w as usize, h as usize);
    let mut seen = vec![false; w * h];
    let mut stack = Vec::new();
    let mut component = Vec::new();
    for start in 0..w * h {
        if !m[start] || seen[start] {
            continue;
        }
        component.clear();
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            component.push(i);
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            for dy in -1..=1i64 {
                for dx in -1..=1i64 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if m[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        if component.len() < min_px {
            for &i in &component {
                m[i] = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    const PINK: [u8; 3] = [220, 140, 190];
    const GLASS: [u8; 3] = [244, 243, 245];

    fn canvas(w: u32, h: u32) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb(GLASS))
    }

    fn fill(img: &mut RgbImage, x0: u32, y0: u32, x1: u32, y1: u32, c: [u8; 3]) {
        for y in y0..y1 {
            for x in x0..x1 {
                img.put_pixel(x, y, Rgb(c));
            }
        }
    }

    #[test]
    fn otsu_splits_two_clusters_between_them() {
        let values = std::iter::repeat_n(0.02, 500).chain(std::iter::repeat_n(0.4, 300));
        let t = otsu(values);
        assert!(t > 0.02 && t < 0.4, "threshold {t}");
    }

    #[test]
    fn pink_block_is_tissue_and_glass_is_not() {
        let mut img = canvas(100, 80);
        fill(&mut img, 20, 10, 60, 50, PINK);
        // 100 px across a 10_000 px slide at 0.5 µm/px: 50 µm per mask pixel.
        let m = detect(
            &img,
            10_000,
            8_000,
            Mpp::square(0.5),
            &TissueOptions::default(),
        );
        assert_eq!(m.tissue_pixels(), 40 * 40);
        assert!(m.tissue[30 * 100 + 30]);
        assert!(!m.tissue[5 * 100 + 5]);
        // 1600 px of 50 µm each: 1600 * 2500 µm² = 4 mm².
        let area = m.tissue_area_mm2().unwrap();
        assert!((area - 4.0).abs() < 1e-9, "{area}");
        // Level-0 rect exactly over the block: all tissue; half over it: half.
        assert!((m.fraction_in(Rect::new(2000, 1000, 4000, 4000)) - 1.0).abs() < 1e-12);
        assert!((m.fraction_in(Rect::new(4000, 1000, 4000, 4000)) - 0.5).abs() < 1e-12);
        // Outside the slide: none.
        assert_eq!(m.fraction_in(Rect::new(-5000, -5000, 1000, 1000)), 0.0);
    }

    #[test]
    fn fraction_weights_partial_mask_pixels() {
        let mut img = canvas(4, 4);
        fill(&mut img, 0, 0, 1, 1, PINK);
        let mut m = detect(&img, 40, 40, None, &TissueOptions::default());
        // Set the mask by hand: one tissue pixel at (0,0) of 10x10 level-0 px.
        m.tissue = vec![false; 16];
        m.tissue[0] = true;
        // A 10x10 rect offset by 5 px covers a quarter of that pixel.
        let f = m.fraction_in(Rect::new(5, 5, 10, 10));
        assert!((f - 0.25).abs() < 1e-12, "{f}");
    }

    #[test]
    fn specks_are_opened_away_and_small_components_dropped() {
        let mut img = canvas(200, 200);
        fill(&mut img, 50, 50, 150, 150, PINK);
        fill(&mut img, 10, 10, 11, 11, PINK); // one-pixel speck
        fill(&mut img, 170, 170, 175, 175, PINK); // 5x5 blob
                                                  // 10 µm per mask pixel: the 5x5 blob is 0.0025 mm² < 0.02 mm².
        let m = detect(
            &img,
            2000,
            2000,
            Mpp::square(1.0),
            &TissueOptions::default(),
        );
        assert!(!m.tissue[10 * 200 + 10]);
        assert!(!m.tissue[172 * 200 + 172]);
        assert!(m.tissue[100 * 200 + 100]);
        assert_eq!(m.tissue_pixels(), 100 * 100);
    }

    #[test]
    fn a_pale_dermis_beside_a_saturated_epidermis_is_tissue() {
        // Glass, a pale dermis (saturation 0.15) and, over a third of the slide, a
        // saturated epidermis and inflammation (0.6): Otsu alone splits between the
        // dermis and the epidermis; the cap keeps the threshold under the dermis.
        let mut img = canvas(200, 150);
        fill(&mut img, 10, 10, 190, 60, [120, 60, 150]);
        fill(&mut img, 10, 60, 190, 140, [230, 195, 215]);
        let mpp = Mpp::square(1.0);
        let m = detect(&img, 2000, 1500, mpp, &TissueOptions::default());
        assert_eq!(m.tissue_pixels(), 180 * 130);
        assert!(m.saturation_threshold.unwrap() <= 0.12);
        let uncapped = TissueOptions {
            max_saturation: 1.0,
            ..TissueOptions::default()
        };
        let m = detect(&img, 2000, 1500, mpp, &uncapped);
        assert_eq!(m.tissue_pixels(), 180 * 50, "Otsu alone drops the dermis");
    }

    #[test]
    fn porous_dermis_is_closed_before_specks_are_opened() {
        // Collagen bundles 2 mask pixels wide between 1-pixel retraction spaces:
        // opened first (3 x 3), every bundle goes; closed first, the block stays.
        let mut img = canvas(120, 120);
        for y in 20..100 {
            for x in 20..100 {
                if x % 3 != 0 {
                    img.put_pixel(x, y, Rgb(PINK));
                }
            }
        }
        let mpp = Mpp::square(1.0);
        let m = detect(&img, 1200, 1200, mpp, &TissueOptions::default());
        assert!(m.tissue_pixels() >= 78 * 78, "{}", m.tissue_pixels());
        let open_first = TissueOptions {
            close_first: false,
            ..TissueOptions::default()
        };
        let m = detect(&img, 1200, 1200, mpp, &open_first);
        assert_eq!(m.tissue_pixels(), 0);
    }

    #[test]
    fn pen_ink_is_not_tissue() {
        let mut img = canvas(200, 100);
        fill(&mut img, 20, 20, 80, 80, PINK);
        fill(&mut img, 120, 20, 140, 80, [30, 60, 200]); // blue marker
        fill(&mut img, 150, 20, 170, 80, [40, 160, 60]); // green marker
        fill(&mut img, 175, 20, 195, 80, [20, 20, 25]); // black marker
        let m = detect(
            &img,
            2000,
            1000,
            Mpp::square(1.0),
            &TissueOptions::default(),
        );
        assert_eq!(m.tissue_pixels(), 60 * 60);
        assert_eq!(m.pen_pixels(), 3 * 20 * 60);
        assert!(!is_pen(PINK));
        // Haematoxylin-rich purple is not pen.
        assert!(!is_pen([57, 51, 131]));
        assert!(!is_pen([120, 70, 160]));
    }

    #[test]
    fn blank_glass_has_no_tissue() {
        let mut img = canvas(64, 64);
        // Faint JPEG-like noise on glass.
        for (i, p) in img.pixels_mut().enumerate() {
            p.0[i % 3] = 238 + (i % 7) as u8;
        }
        let m = detect(
            &img,
            6400,
            6400,
            Mpp::square(0.5),
            &TissueOptions::default(),
        );
        assert_eq!(m.tissue_pixels(), 0);
    }

    #[test]
    fn mask_side_follows_mpp() {
        let info = SlideInfo {
            format: crate::slide::SlideFormat::Tiff,
            vendor: None,
            levels: vec![crate::slide::LevelInfo {
                width: 40_000,
                height: 20_000,
                downsample: 1.0,
            }],
            mpp: Mpp::square(0.25),
            mpp_source: crate::slide::MppSource::TiffResolution,
            objective_power: None,
            associated: vec![],
            background: [255; 3],
        };
        // 40 000 px * 0.25 µm = 10 mm -> 1000 px at 10 µm/px.
        assert_eq!(mask_side(&info, &TissueOptions::default()), 1000);
        let none = SlideInfo { mpp: None, ..info };
        assert_eq!(mask_side(&none, &TissueOptions::default()), 1024);
    }

    #[test]
    fn user_mask_is_loaded_and_scaled_to_the_slide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mask.png");
        let mut img = image::GrayImage::new(10, 5);
        for y in 0..5 {
            for x in 0..5 {
                img.put_pixel(x, y, image::Luma([255]));
            }
        }
        img.save(&path).unwrap();
        let m = load_user_mask(&path, 1000, 500, Mpp::square(0.5), 1 << 20).unwrap();
        assert_eq!(m.source, MaskSource::User);
        assert!((m.fraction_in(Rect::new(0, 0, 500, 500)) - 1.0).abs() < 1e-12);
        assert_eq!(m.fraction_in(Rect::new(500, 0, 500, 500)), 0.0);
        // 100 level-0 px per mask px at 0.5 µm: 50 µm; 25 px -> 25 * 2500 µm² = 0.0625 mm².
        assert!((m.tissue_area_mm2().unwrap() - 0.0625).abs() < 1e-12);
        let err = load_user_mask(&path, 1000, 1000, None, 1 << 20).unwrap_err();
        assert!(matches!(err, TissueError::AspectMismatch { .. }), "{err}");
        let err = load_user_mask(&dir.path().join("nope.png"), 10, 5, None, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("nope.png"));
    }

    /// The real normal-skin slide beside the project; `None` (with a printed reason)
    /// where `../shared` is absent.
    fn real_slide() -> Option<std::path::PathBuf> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/real/CMU-1-Small-Region.svs");
        if p.is_file() {
            Some(p)
        } else {
            eprintln!("skipped: {} is absent", p.display());
            None
        }
    }

    #[test]
    fn real_skin_has_a_quarter_to_a_half_tissue_and_no_pen() {
        let Some(path) = real_slide() else { return };
        let reader = crate::slide::open(&path, &crate::slide::OpenOptions::default()).unwrap();
        let info = reader.info().clone();
        let options = TissueOptions::default();
        let side = mask_side(&info, &options);
        // 2967 px * 0.499 µm / 10 µm per mask pixel.
        assert_eq!(side, 148);
        let thumb = reader.thumbnail(side).unwrap();
        let m = detect(&thumb, info.width(), info.height(), info.mpp, &options);
        let fraction = m.tissue_pixels() as f64 / m.tissue.len() as f64;
        assert!(
            (0.2..=0.6).contains(&fraction),
            "tissue fraction {fraction}"
        );
        let pen = m.pen_area_mm2().unwrap();
        assert!(pen < 0.01, "pen {pen} mm²");
    }
}
