//! The real-tissue train/test split (`training/real_split.toml`, compiled in).
//!
//! Anything fitted or sampled from real pixels uses an image's train part; every
//! figure reported on real tissue uses its test part. The split lives in that one
//! file, which the Python side reads too; this module parses it and answers
//! "which rectangle of this real image is train (or test)".

use serde::Deserialize;

/// The split file's text, as committed.
pub const SPLIT_TOML: &str = include_str!("../training/real_split.toml");

/// Which part of a real image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Train,
    Test,
}

/// A half-open level-0 rectangle `x0 <= x < x1`, `y0 <= y < y1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl Rect {
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x0 && x < self.x1 && y >= self.y0 && y < self.y1
    }

    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bounds {
    x0: Option<u32>,
    y0: Option<u32>,
    x1: Option<u32>,
    y1: Option<u32>,
}

/// One real image and its two parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealImage {
    pub file: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub width: u32,
    pub height: u32,
    pub mpp: f64,
    train: Bounds,
    test: Bounds,
}

impl RealImage {
    /// The rectangle of `part`, clamped to the image.
    pub fn part(&self, part: Part) -> Rect {
        let b = match part {
            Part::Train => self.train,
            Part::Test => self.test,
        };
        Rect {
            x0: b.x0.unwrap_or(0).min(self.width),
            y0: b.y0.unwrap_or(0).min(self.height),
            x1: b.x1.unwrap_or(self.width).min(self.width),
            y1: b.y1.unwrap_or(self.height).min(self.height),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitFile {
    image: Vec<RealImage>,
}

/// A split file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("training/real_split.toml: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("training/real_split.toml: {file}: train and test parts overlap")]
    Overlap { file: String },
    #[error("{0}: not in training/real_split.toml; add its split there before using its pixels")]
    Unknown(String),
}

/// The parsed split.
#[derive(Debug, Clone)]
pub struct RealSplit {
    pub images: Vec<RealImage>,
}

fn overlap(a: Rect, b: Rect) -> bool {
    a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1
}

impl RealSplit {
    /// Parses split text; train and test must not overlap.
    pub fn parse(text: &str) -> Result<RealSplit, SplitError> {
        let f: SplitFile = toml::from_str(text)?;
        for img in &f.image {
            if overlap(img.part(Part::Train), img.part(Part::Test)) {
                return Err(SplitError::Overlap {
                    file: img.file.clone(),
                });
            }
        }
        Ok(RealSplit { images: f.image })
    }

    /// The committed split.
    pub fn load() -> Result<RealSplit, SplitError> {
        RealSplit::parse(SPLIT_TOML)
    }

    /// The image whose file name (or alias) is the last component of `path`.
    pub fn image(&self, path: &std::path::Path) -> Result<&RealImage, SplitError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.images
            .iter()
            .find(|i| i.file == name || i.aliases.contains(&name))
            .ok_or(SplitError::Unknown(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_committed_split_covers_both_real_images_without_overlap() {
        let s = RealSplit::load().expect("committed split parses");
        let cmu = s.image(Path::new("x/CMU-1-Small-Region.svs")).unwrap();
        assert_eq!(cmu.part(Part::Train).y1, cmu.part(Part::Test).y0);
        assert_eq!(cmu.part(Part::Test).y1, cmu.height);
        let dicom = s.image(Path::new("x/CMU-1-Small-Region-dicom")).unwrap();
        assert_eq!(dicom.file, cmu.file);
        let pd = s
            .image(Path::new("skin-normal-10x-public-domain.jpg"))
            .unwrap();
        let (tr, te) = (pd.part(Part::Train), pd.part(Part::Test));
        assert!(tr.contains(0, 0) && !tr.contains(1024, 0) && te.contains(1024, 0));
        assert_eq!(tr.width() + te.width(), pd.width);
    }

    #[test]
    fn an_overlapping_or_unknown_split_is_refused() {
        let bad = r#"
[[image]]
file = "a.png"
width = 100
height = 100
mpp = 1.0
train = { x1 = 60 }
test = { x0 = 50 }
"#;
        assert!(matches!(
            RealSplit::parse(bad),
            Err(SplitError::Overlap { .. })
        ));
        let s = RealSplit::load().unwrap();
        assert!(matches!(
            s.image(Path::new("other.svs")),
            Err(SplitError::Unknown(_))
        ));
    }
}
