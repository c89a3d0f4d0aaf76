//! Builds `docs/phantoms.png`: one row per fixture phantom with its overview, a
//! colour map of its masks, and full-resolution crops of its main findings.
//!
//! Usage: `cargo run --example contact_sheet -- fixtures/phantoms docs/phantoms.png
//! [--real IMAGE MPP X,Y X,Y]`. With `--real`, a last row shows a real image at the
//! phantoms' resolution: its overview, then crops centred at the two points (its
//! own pixels; epidermis, then dermis) resampled from its MPP to the phantoms'.
//! Row layout: overview | mask map (grey tissue, light epidermis, red pustule, green
//! acantholysis, blue hidradenitis, yellow psoriasiform) | epidermal crop | the same
//! crop with mask outlines | deep-dermis crop (eccrine coil where there is one).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use dirascope::slide::{self, OpenOptions, Rect};
use image::{imageops, GrayImage, Rgb, RgbImage};

const ROW_H: u32 = 320;
const PAD: u32 = 8;
const FINDINGS: [(&str, [u8; 3]); 4] = [
    ("subcorneal_pustule", [220, 30, 30]),
    ("acantholysis", [30, 170, 40]),
    ("neutrophilic_eccrine_hidradenitis", [40, 80, 230]),
    ("psoriasiform", [230, 200, 20]),
];

fn load_mask(dir: &Path, id: &str, name: &str) -> Result<GrayImage> {
    let p = dir.join(format!("{id}.masks/{name}.png"));
    Ok(image::open(&p)
        .with_context(|| p.display().to_string())?
        .to_luma8())
}

/// Centre (in mask pixels) of the largest run of `mask` (its weighted centroid of
/// the densest 32 × 32 window), or None when empty.
fn hotspot(mask: &GrayImage) -> Option<(u32, u32)> {
    let (w, h) = mask.dimensions();
    let mut best = (0u32, 0u32, 0u32);
    let win = 24u32;
    let mut y = 0;
    while y < h {
        let mut x = 0;
        while x < w {
            let mut n = 0;
            for j in y..(y + win).min(h) {
                for i in x..(x + win).min(w) {
                    n += (mask.get_pixel(i, j)[0] > 0) as u32;
                }
            }
            if n > best.2 {
                best = (x + win / 2, y + win / 2, n);
            }
            x += win / 2;
        }
        y += win / 2;
    }
    (best.2 > 0).then_some((best.0.min(w - 1), best.1.min(h - 1)))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).map_or("fixtures/phantoms", String::as_str));
    let out = PathBuf::from(args.get(2).map_or("docs/phantoms.png", String::as_str));
    let mut ids: Vec<String> = std::fs::read_dir(&dir)?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".tiff").map(str::to_string))
        })
        .collect();
    let order = ["dira", "pustular-psoriasis", "psoriasis", "normal"];
    ids.sort_by_key(|id| {
        order
            .iter()
            .position(|c| id.rsplit_once('-').map(|(c2, _)| c2) == Some(*c))
            .unwrap_or(9)
    });
    let mut rows: Vec<RgbImage> = Vec::new();
    for id in &ids {
        let reader = slide::open(&dir.join(format!("{id}.tiff")), &OpenOptions::default())?;
        let info = reader.info().clone();
        let (w0, h0) = (info.width() as u32, info.height() as u32);
        let thumb = reader.thumbnail(ROW_H * 2)?;
        let overview = imageops::resize(
            &thumb,
            ROW_H * w0 / h0,
            ROW_H,
            imageops::FilterType::Triangle,
        );
        let tissue = load_mask(&dir, id, "tissue")?;
        let epi = load_mask(&dir, id, "epidermis")?;
        let ds = w0.div_ceil(tissue.width()).max(1);
        let mut map = RgbImage::from_pixel(tissue.width(), tissue.height(), Rgb([255, 255, 255]));
        for (x, y, p) in map.enumerate_pixels_mut() {
            if tissue.get_pixel(x, y)[0] > 0 {
                *p = Rgb([200, 200, 200]);
            }
            if epi.get_pixel(x, y)[0] > 0 {
                *p = Rgb([150, 150, 150]);
            }
        }
        let mut masks = Vec::new();
        for (name, colour) in FINDINGS {
            let m = load_mask(&dir, id, name)?;
            for (x, y, p) in map.enumerate_pixels_mut() {
                if m.get_pixel(x, y)[0] > 0 {
                    *p = Rgb(colour);
                }
            }
            masks.push((m, colour));
        }
        let map = imageops::resize(&map, overview.width(), ROW_H, imageops::FilterType::Nearest);
        // Epidermal crop: the first finding present in the epidermis, else the surface.
        let epi_focus = masks[..2]
            .iter()
            .chain(masks[3..].iter())
            .find_map(|(m, _)| hotspot(m))
            .or_else(|| hotspot(&epi))
            .ok_or_else(|| anyhow!("{id}: empty epidermis mask"))?;
        let truth: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{id}.truth.json")))?)?;
        let mpp = truth["mpp"].as_f64().unwrap_or(0.5);
        let coil = truth["structures"]["coils"]
            .as_array()
            .and_then(|c| c.first())
            .and_then(|c| {
                Some((
                    (c[0].as_f64()? / mpp / ds as f64) as u32,
                    (c[1].as_f64()? / mpp / ds as f64) as u32,
                ))
            });
        let deep_focus = hotspot(&masks[2].0).or(coil).or_else(|| {
            // No hidradenitis: a deep point in the middle of the tissue.
            let x = tissue.width() / 2;
            (0..tissue.height())
                .rev()
                .find(|&y| tissue.get_pixel(x, y)[0] > 0)
                .map(|y| (x, y.saturating_sub(40)))
        });
        let crop_at = |(mx, my): (u32, u32)| -> Result<(RgbImage, i64, i64)> {
            let (cx, cy) = ((mx * ds) as i64, (my * ds) as i64);
            let (x0, y0) = (cx - ROW_H as i64 / 2, cy - ROW_H as i64 / 2);
            Ok((
                reader.read_region(0, Rect::new(x0, y0, ROW_H, ROW_H))?,
                x0,
                y0,
            ))
        };
        let (crop_a, ax, ay) = crop_at(epi_focus)?;
        let mut outlined = crop_a.clone();
        for (m, colour) in &masks {
            let inside = |x: i64, y: i64| -> bool {
                let (mx, my) = (x.div_euclid(ds as i64), y.div_euclid(ds as i64));
                mx >= 0
                    && my >= 0
                    && (mx as u32) < m.width()
                    && (my as u32) < m.height()
                    && m.get_pixel(mx as u32, my as u32)[0] > 0
            };
            for j in 0..ROW_H as i64 {
                for i in 0..ROW_H as i64 {
                    let (x, y) = (ax + i, ay + j);
                    if inside(x, y)
                        && (!inside(x - 1, y)
                            || !inside(x + 1, y)
                            || !inside(x, y - 1)
                            || !inside(x, y + 1))
                    {
                        outlined.put_pixel(i as u32, j as u32, Rgb(*colour));
                    }
                }
            }
        }
        let crop_b = match deep_focus {
            Some(f) => crop_at(f)?.0,
            None => RgbImage::from_pixel(ROW_H, ROW_H, Rgb([255, 255, 255])),
        };
        rows.push(side_by_side(&[overview, map, crop_a, outlined, crop_b]));
    }
    let width = rows.iter().map(|r| r.width()).max().unwrap_or(1);
    let height = rows.len() as u32 * (ROW_H + PAD);
    let mut sheet = RgbImage::from_pixel(width, height.max(1), Rgb([255, 255, 255]));
    for (k, r) in rows.iter().enumerate() {
        imageops::replace(&mut sheet, r, 0, (k as u32 * (ROW_H + PAD)) as i64);
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if let Some(i) = args.iter().position(|a| a == "--real") {
        let field = |k: usize| {
            args.get(i + k)
                .ok_or_else(|| anyhow!("--real needs IMAGE MPP X,Y X,Y"))
        };
        let mpp_of_phantoms = ids
            .first()
            .and_then(|id| std::fs::read(dir.join(format!("{id}.truth.json"))).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|t| t["mpp"].as_f64())
            .unwrap_or(0.5);
        let point = |k: usize| -> Result<(f64, f64)> {
            let (x, y) = field(k)?
                .split_once(',')
                .ok_or_else(|| anyhow!("--real: a point is X,Y"))?;
            Ok((x.parse()?, y.parse()?))
        };
        let row = real_row(
            Path::new(field(1)?),
            field(2)?.parse()?,
            mpp_of_phantoms,
            [point(3)?, point(4)?],
        )?;
        let mut taller = RgbImage::from_pixel(
            sheet.width().max(row.width()),
            sheet.height() + ROW_H + PAD,
            Rgb([255, 255, 255]),
        );
        imageops::replace(&mut taller, &sheet, 0, 0);
        imageops::replace(&mut taller, &row, 0, sheet.height() as i64);
        sheet = taller;
    }
    sheet.save(&out)?;
    println!("{} rows -> {}", rows.len(), out.display());
    Ok(())
}

/// A real image's row: overview | blank (no masks) | crop at `points[0]` | blank |
/// crop at `points[1]`, each crop `ROW_H` px at `mpp_to` (so the same micrometres per
/// pixel as the phantoms' crops), area-resampled from the image at `mpp_from`.
fn real_row(path: &Path, mpp_from: f64, mpp_to: f64, points: [(f64, f64); 2]) -> Result<RgbImage> {
    let image = image::open(path)
        .with_context(|| path.display().to_string())?
        .to_rgb8();
    let (w, h) = image.dimensions();
    let overview = imageops::resize(&image, ROW_H * w / h, ROW_H, imageops::FilterType::Triangle);
    let side = ROW_H as f64 * mpp_to / mpp_from;
    let crop = |(x, y): (f64, f64)| {
        dirascope::tiling::resample_area(
            &image,
            [x - side / 2.0, y - side / 2.0, side, side],
            ROW_H,
            ROW_H,
        )
    };
    // Blanks as wide as the phantom rows' mask map and outline panels, so the
    // crops fall under the phantoms' crops (the phantoms are 4:3, as is the image
    // this is made for; a wider image shifts them).
    let no_map = RgbImage::from_pixel(overview.width(), ROW_H, Rgb([255, 255, 255]));
    let no_outline = RgbImage::from_pixel(ROW_H, ROW_H, Rgb([255, 255, 255]));
    let panels = [
        overview,
        no_map,
        crop(points[0]),
        no_outline,
        crop(points[1]),
    ];
    Ok(side_by_side(&panels))
}

/// Panels left to right, `PAD` apart, on a white row `ROW_H` high.
fn side_by_side(panels: &[RgbImage]) -> RgbImage {
    let width: u32 = panels.iter().map(|p| p.width() + PAD).sum();
    let mut row = RgbImage::from_pixel(width, ROW_H, Rgb([255, 255, 255]));
    let mut x = 0;
    for p in panels {
        imageops::replace(&mut row, p, x as i64, 0);
        x += p.width() + PAD;
    }
    row
}
