//! Small PNG line plots (ROC curves, reliability diagrams) drawn with a built-in
//! 5 × 7 bitmap font, so validation figures need no plotting library or fonts.

use image::{Rgb, RgbImage};

const WIDTH: u32 = 520;
const HEIGHT: u32 = 520;
const LEFT: u32 = 60;
const TOP: u32 = 40;
const SIDE: u32 = 420;

/// One curve: label, colour and points in [0, 1] × [0, 1].
pub struct Series<'a> {
    pub label: &'a str,
    pub color: [u8; 3],
    pub points: &'a [(f64, f64)],
    /// Draw markers at the points instead of joining them.
    pub markers: bool,
}

/// A square unit plot with title, axis labels, a diagonal reference and a legend.
pub fn unit_plot(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> RgbImage {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
    let grey = Rgb([200, 200, 200]);
    let black = Rgb([0, 0, 0]);
    for i in 0..=10 {
        let t = i as f64 / 10.0;
        let (x, _) = to_px(t, 0.0);
        let (_, y) = to_px(0.0, t);
        line(&mut img, (x, TOP as f64), (x, (TOP + SIDE) as f64), grey);
        line(&mut img, (LEFT as f64, y), ((LEFT + SIDE) as f64, y), grey);
        if i % 2 == 0 {
            let label = format!("{t:.1}");
            text(
                &mut img,
                x as i64 - 8,
                (TOP + SIDE + 6) as i64,
                &label,
                black,
            );
            text(&mut img, LEFT as i64 - 24, y as i64 - 3, &label, black);
        }
    }
    line(
        &mut img,
        to_px(0.0, 0.0),
        to_px(1.0, 1.0),
        Rgb([150, 150, 150]),
    );
    rect_outline(&mut img, black);
    for s in series {
        let c = Rgb(s.color);
        if s.markers {
            for &(x, y) in s.points {
                let (px, py) = to_px(x, y);
                for dy in -3..=3 {
                    for dx in -3..=3 {
                        put(&mut img, px as i64 + dx, py as i64 + dy, c);
                    }
                }
            }
        } else {
            for w in s.points.windows(2) {
                let (a, b) = (to_px(w[0].0, w[0].1), to_px(w[1].0, w[1].1));
                for off in [-1.0, 0.0, 1.0] {
                    line(&mut img, (a.0 + off, a.1), (b.0 + off, b.1), c);
                }
            }
        }
    }
    text(&mut img, LEFT as i64, 14, title, black);
    text(
        &mut img,
        (LEFT + SIDE / 2) as i64 - 3 * x_label.len() as i64,
        (HEIGHT - 22) as i64,
        x_label,
        black,
    );
    text(&mut img, 4, (TOP - 14) as i64, y_label, black);
    for (i, s) in series.iter().enumerate() {
        let y = (TOP + SIDE - 16 - 12 * (series.len() - 1 - i) as u32) as i64;
        let x = (LEFT + SIDE / 2) as i64;
        for dx in 0..12 {
            for dy in 0..3 {
                put(&mut img, x + dx, y + 2 + dy, Rgb(s.color));
            }
        }
        text(&mut img, x + 16, y, s.label, black);
    }
    img
}

fn to_px(x: f64, y: f64) -> (f64, f64) {
    (
        LEFT as f64 + x.clamp(0.0, 1.0) * SIDE as f64,
        (TOP + SIDE) as f64 - y.clamp(0.0, 1.0) * SIDE as f64,
    )
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), c: Rgb<u8>) {
    let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        put(
            img,
            (a.0 + (b.0 - a.0) * t).round() as i64,
            (a.1 + (b.1 - a.1) * t).round() as i64,
            c,
        );
    }
}

fn rect_outline(img: &mut RgbImage, c: Rgb<u8>) {
    let (l, t, r, b) = (
        LEFT as f64,
        TOP as f64,
        (LEFT + SIDE) as f64,
        (TOP + SIDE) as f64,
    );
    line(img, (l, t), (r, t), c);
    line(img, (l, b), (r, b), c);
    line(img, (l, t), (l, b), c);
    line(img, (r, t), (r, b), c);
}

/// Draws ASCII text with the 5 × 7 font (unknown characters as blanks), 6 px advance.
pub fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let rows = glyph(ch.to_ascii_uppercase());
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    put(img, x + i as i64 * 6 + col, y + row as i64, c);
                }
            }
        }
    }
}

/// Rows of a 5 × 7 glyph, most significant of the low five bits leftmost.
fn glyph(ch: char) -> [u8; 7] {
    match ch {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        _ => [0; 7],
    }
}
