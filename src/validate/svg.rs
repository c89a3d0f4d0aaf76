//! SVG versions of the validation figures: text stays text (it scales, it can be
//! searched and it embeds in HTML), curves are drawn so that coinciding ones stay
//! visible (each later curve thinner and dashed on top of the earlier), a curve on
//! the frame (AUROC 1.0) is drawn inside it, the legend sits inside the frame, and
//! the ROC carries a bootstrap 95% band and the reliability bins their counts.

use std::fmt::Write as _;

use crate::report::html::escape as html_escape;

const W: f64 = 560.0;
const H: f64 = 560.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 50.0;
const SIDE: f64 = 440.0;
/// Curves are drawn on a square inset this far inside the frame.
const INSET: f64 = 4.0;

/// Colours that stay apart for colour-blind readers (Okabe–Ito).
pub const COLOURS: [&str; 6] = [
    "#D55E00", "#0072B2", "#E69F00", "#CC79A7", "#009E73", "#555555",
];

/// One curve of a unit plot.
pub struct Curve<'a> {
    pub label: String,
    pub points: &'a [(f64, f64)],
    /// ROC: (x, low, high) of a 95% band; empty for none.
    pub band: Vec<(f64, f64, f64)>,
    /// Reliability: draw markers with these counts beside them instead of a line.
    pub counts: Option<Vec<usize>>,
}

fn px(x: f64, y: f64) -> (f64, f64) {
    let inner = SIDE - 2.0 * INSET;
    (
        LEFT + INSET + x.clamp(0.0, 1.0) * inner,
        TOP + SIDE - INSET - y.clamp(0.0, 1.0) * inner,
    )
}

/// A square unit plot (axes 0-1) with title, axis labels, diagonal and legend.
pub fn unit_plot(title: &str, x_label: &str, y_label: &str, curves: &[Curve]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"13\">"
    );
    let _ = writeln!(s, "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"30\" text-anchor=\"middle\" font-size=\"16\">{}</text>",
        LEFT + SIDE / 2.0,
        html_escape(title)
    );
    for i in 0..=10 {
        let t = i as f64 / 10.0;
        let (x, _) = px(t, 0.0);
        let (_, y) = px(0.0, t);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#e4e4e4\"/><line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e4e4e4\"/>",
            TOP + SIDE,
            LEFT + SIDE
        );
        if i % 2 == 0 {
            let _ = writeln!(
                s,
                "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{t:.1}</text><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{t:.1}</text>",
                TOP + SIDE + 18.0,
                LEFT - 6.0,
                y + 4.0
            );
        }
    }
    let (a, b) = (px(0.0, 0.0), px(1.0, 1.0));
    let _ = writeln!(
        s,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999999\" stroke-dasharray=\"2 3\"/>",
        a.0, a.1, b.0, b.1
    );
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{SIDE}\" height=\"{SIDE}\" fill=\"none\" stroke=\"black\"/>"
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        LEFT + SIDE / 2.0,
        TOP + SIDE + 40.0,
        html_escape(x_label)
    );
    let _ = writeln!(
        s,
        "<text transform=\"translate(22 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        TOP + SIDE / 2.0,
        html_escape(y_label)
    );
    for (i, c) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        if !c.band.is_empty() {
            let mut d = String::new();
            for (k, &(x, _, hi)) in c.band.iter().enumerate() {
                let (x, y) = px(x, hi);
                let _ = write!(d, "{}{x:.1},{y:.1} ", if k == 0 { "M" } else { "L" });
            }
            for &(x, lo, _) in c.band.iter().rev() {
                let (x, y) = px(x, lo);
                let _ = write!(d, "L{x:.1},{y:.1} ");
            }
            let _ = writeln!(
                s,
                "<path d=\"{}Z\" fill=\"{colour}\" fill-opacity=\"0.15\" stroke=\"none\"/>",
                d
            );
        }
    }
    let n = curves.len().max(1) as f64;
    for (i, c) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // Earlier curves wider and solid, later ones thinner and dashed on top.
        let width = 1.5 + 2.5 * (n - 1.0 - i as f64) / n;
        let dash = if i == 0 {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{} {}\"", 4 + 2 * i, 2 + i)
        };
        match &c.counts {
            None => {
                let pts: Vec<String> = c
                    .points
                    .iter()
                    .map(|&(x, y)| {
                        let (x, y) = px(x, y);
                        format!("{x:.1},{y:.1}")
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width:.2}\"{dash}/>",
                    pts.join(" ")
                );
            }
            Some(counts) => {
                for (k, &(x, y)) in c.points.iter().enumerate() {
                    let (x, y) = px(x, y);
                    let r = 3.0 + 0.8 * (n - 1.0 - i as f64);
                    let _ = writeln!(
                        s,
                        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r:.1}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>"
                    );
                    if let Some(count) = counts.get(k) {
                        let _ = writeln!(
                            s,
                            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\">{count}</text>",
                            x + 5.0,
                            y - 4.0 - 9.0 * i as f64
                        );
                    }
                }
            }
        }
    }
    // Legend inside the frame, bottom right, on white.
    let line_h = 17.0;
    // Wide enough for the longest label at ~6.7 px a character (12 px Helvetica).
    let longest = curves
        .iter()
        .map(|c| c.label.chars().count())
        .max()
        .unwrap_or(0);
    let box_w = (40.0 + 6.7 * longest as f64).min(SIDE - 16.0);
    let box_h = line_h * curves.len() as f64 + 8.0;
    let (bx, by) = (LEFT + SIDE - box_w - 8.0, TOP + SIDE - box_h - 8.0);
    let _ = writeln!(
        s,
        "<rect x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{box_w:.1}\" height=\"{box_h:.1}\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#888888\"/>"
    );
    for (i, c) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let y = by + 4.0 + line_h * (i as f64 + 0.75);
        let _ = writeln!(
            s,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            bx + 6.0,
            y - 4.0,
            bx + 26.0,
            y - 4.0,
            bx + 32.0,
            y,
            html_escape(&c.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_text_and_the_legend_is_inside_the_frame() {
        let pts = [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)];
        let svg = unit_plot(
            "ROC <all>",
            "1 - specificity",
            "sensitivity",
            &[
                Curve {
                    label: "dira_pattern 1.000".into(),
                    points: &pts,
                    band: vec![(0.0, 0.8, 1.0), (1.0, 1.0, 1.0)],
                    counts: None,
                },
                Curve {
                    label: "psoriasiform_pattern 1.000".into(),
                    points: &pts,
                    band: Vec::new(),
                    counts: None,
                },
            ],
        );
        assert!(svg.contains(">ROC &lt;all&gt;</text>"));
        assert!(svg.contains(">dira_pattern 1.000</text>"));
        assert!(svg.contains("fill-opacity=\"0.15\""));
        // The second, coinciding curve is dashed; the first is not.
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("stroke-dasharray=\"6 3\"").count(), 1);
        // A point on the frame is drawn inside it.
        let (x, y) = px(0.0, 1.0);
        assert!(x > LEFT && y > TOP);
        // The legend box ends inside the frame, whatever the label lengths.
        let right = svg
            .lines()
            .find(|l| l.contains("fill-opacity=\"0.9\""))
            .map(|l| {
                let num = |key: &str| -> f64 {
                    let rest = &l[l.find(key).unwrap() + key.len()..];
                    rest[..rest.find('"').unwrap()].parse().unwrap()
                };
                num("x=\"") + num("width=\"")
            })
            .unwrap();
        assert!(right < LEFT + SIDE, "{right}");
    }
}
