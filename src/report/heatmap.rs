//! `heatmap_<finding>.png`: tile probabilities over the slide thumbnail.
//!
//! It owns the colour map and the blending. It never reads the slide; it draws on a
//! thumbnail it is given, mapping level-0 tile rectangles onto it.

use image::{Rgb, RgbImage};

use crate::aggregate::TileScore;

/// Viridis at five stops, interpolated linearly: dark purple (0) to yellow (1).
const STOPS: [[f64; 3]; 5] = [
    [68.0, 1.0, 84.0],
    [59.0, 82.0, 139.0],
    [33.0, 145.0, 140.0],
    [94.0, 201.0, 98.0],
    [253.0, 231.0, 37.0],
];

/// The colour of probability `p` (clamped to 0..=1).
pub fn colormap(p: f64) -> [u8; 3] {
    let p = if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let t = p * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    [0, 1, 2].map(|c| (a[c] + (b[c] - a[c]) * f).round() as u8)
}

/// Blends each tile's probability of class `class` over `thumb` (which shows the
/// whole slide of level-0 size `slide_w` × `slide_h`) with opacity `alpha`.
pub fn render(
    thumb: &RgbImage,
    slide_w: u64,
    slide_h: u64,
    tiles: &[TileScore],
    class: usize,
    alpha: f64,
) -> RgbImage {
    let mut out = thumb.clone();
    let (tw, th) = thumb.dimensions();
    if tw == 0 || th == 0 || slide_w == 0 || slide_h == 0 {
        return out;
    }
    let (sx, sy) = (tw as f64 / slide_w as f64, th as f64 / slide_h as f64);
    // Later tiles overwrite earlier ones where an overlapping grid makes them meet;
    // paint in grid order so the picture does not depend on arrival order.
    let mut sorted: Vec<&TileScore> = tiles.iter().collect();
    sorted.sort_by(|a, b| {
        (a.row, a.col, a.level0.y, a.level0.x).cmp(&(b.row, b.col, b.level0.y, b.level0.x))
    });
    for t in sorted {
        let Some(&p) = t.probabilities.get(class) else {
            continue;
        };
        let colour = colormap(p as f64);
        let x0 = ((t.level0.x as f64 * sx).floor().max(0.0) as u32).min(tw);
        let y0 = ((t.level0.y as f64 * sy).floor().max(0.0) as u32).min(th);
        let x1 = (((t.level0.x + t.level0.width as i64) as f64 * sx)
            .ceil()
            .max(0.0) as u32)
            .min(tw);
        let y1 = (((t.level0.y + t.level0.height as i64) as f64 * sy)
            .ceil()
            .max(0.0) as u32)
            .min(th);
        for y in y0..y1 {
            for x in x0..x1 {
                let base = thumb.get_pixel(x, y).0;
                let mixed = [0, 1, 2].map(|c| {
                    (base[c] as f64 * (1.0 - alpha) + colour[c] as f64 * alpha).round() as u8
                });
                out.put_pixel(x, y, Rgb(mixed));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::Rect;

    #[test]
    fn colormap_ends_and_middle() {
        assert_eq!(colormap(0.0), [68, 1, 84]);
        assert_eq!(colormap(1.0), [253, 231, 37]);
        assert_eq!(colormap(0.5), [33, 145, 140]);
        assert_eq!(colormap(f64::NAN), [68, 1, 84]);
    }

    #[test]
    fn tiles_are_painted_where_they_lie() {
        let thumb = RgbImage::from_pixel(10, 10, Rgb([255, 255, 255]));
        let tile = TileScore {
            col: 0,
            row: 0,
            level0: Rect::new(500, 0, 500, 500),
            tissue_fraction: 1.0,
            probabilities: vec![1.0],
            ood: None,
        };
        let out = render(&thumb, 1000, 1000, &[tile], 0, 1.0);
        assert_eq!(out.get_pixel(7, 2).0, [253, 231, 37]);
        assert_eq!(out.get_pixel(2, 2).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(7, 7).0, [255, 255, 255]);
    }
}
