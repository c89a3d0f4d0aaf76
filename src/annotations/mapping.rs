//! `mapping.toml`: how a group's QuPath class names map to the model's finding
//! keys, which classes mark regions known to be free of every finding, and which
//! slides were annotated exhaustively.
//!
//! ```toml
//! # Slides whose every finding was drawn: tissue outside the polygons is negative.
//! exhaustive = ["case-07", "case-12"]     # or exhaustive = "all"
//! # Fraction of a tile the annotations must cover for a tile of a slide that is
//! # not exhaustive to be labelled (default 0.9).
//! min_annotated = 0.9
//!
//! [classes]
//! "Pustule" = "subcorneal_pustule"
//! "Acantholysis" = "acantholysis"
//! "Normal" = "negative"     # inside: no finding unless a finding polygon says so
//! "Region*" = "ignore"      # read and dropped
//! ```
//!
//! It only reads the file and answers questions about classes and slides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::AnnotationError;
use crate::finding::Finding;

/// What a class name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Finding(Finding),
    /// A region the annotator declares free of every finding not drawn inside it.
    Negative,
    /// Read and dropped (region outlines, comments, other projects' classes).
    Ignore,
}

/// Which slides were annotated exhaustively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exhaustive {
    All,
    Slides(Vec<String>),
}

/// A checked `mapping.toml`.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub path: PathBuf,
    pub classes: BTreeMap<String, Target>,
    pub exhaustive: Exhaustive,
    pub min_annotated: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    exhaustive: Option<RawExhaustive>,
    #[serde(default)]
    min_annotated: Option<f64>,
    classes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawExhaustive {
    Word(String),
    Slides(Vec<String>),
}

/// Default of `min_annotated`.
pub const DEFAULT_MIN_ANNOTATED: f64 = 0.9;

impl Mapping {
    pub fn read(path: &Path) -> Result<Mapping, AnnotationError> {
        let text = std::fs::read_to_string(path).map_err(|source| AnnotationError::Io {
            path: path.to_path_buf(),
            what: "cannot read the mapping",
            source,
        })?;
        Mapping::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Mapping, AnnotationError> {
        let bad = |reason: String| AnnotationError::Mapping {
            path: path.to_path_buf(),
            reason,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut classes = BTreeMap::new();
        for (name, target) in raw.classes {
            let t = match target.as_str() {
                "negative" => Target::Negative,
                "ignore" => Target::Ignore,
                key => Target::Finding(key.parse().map_err(|()| {
                    bad(format!(
                        "[classes] \"{name}\" = \"{key}\": not a finding key ({}), \"negative\" or \"ignore\"",
                        Finding::ALL.map(|f| f.key()).join(", ")
                    ))
                })?),
            };
            classes.insert(name, t);
        }
        let exhaustive = match raw.exhaustive {
            None => Exhaustive::Slides(Vec::new()),
            Some(RawExhaustive::Word(w)) if w == "all" => Exhaustive::All,
            Some(RawExhaustive::Word(w)) => {
                return Err(bad(format!(
                    "exhaustive = \"{w}\": expected \"all\" or a list of slide ids"
                )))
            }
            Some(RawExhaustive::Slides(s)) => Exhaustive::Slides(s),
        };
        let min_annotated = raw.min_annotated.unwrap_or(DEFAULT_MIN_ANNOTATED);
        if !(min_annotated > 0.0 && min_annotated <= 1.0) {
            return Err(bad(format!(
                "min_annotated = {min_annotated}: expected a fraction in (0, 1]"
            )));
        }
        Ok(Mapping {
            path: path.to_path_buf(),
            classes,
            exhaustive,
            min_annotated,
        })
    }

    pub fn target(&self, class: &str) -> Option<Target> {
        self.classes.get(class).copied()
    }

    pub fn is_exhaustive(&self, slide_id: &str) -> bool {
        match &self.exhaustive {
            Exhaustive::All => true,
            Exhaustive::Slides(s) => s.iter().any(|id| id == slide_id),
        }
    }

    /// Slide ids `exhaustive` names that are not in `known`.
    pub fn unknown_exhaustive<'a>(&'a self, known: &[String]) -> Vec<&'a str> {
        match &self.exhaustive {
            Exhaustive::All => Vec::new(),
            Exhaustive::Slides(s) => s
                .iter()
                .filter(|id| !known.contains(id))
                .map(String::as_str)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_classes_exhaustive_and_min_annotated() {
        let m = Mapping::parse(
            "exhaustive = [\"a\"]\nmin_annotated = 0.8\n[classes]\nPustule = \"subcorneal_pustule\"\nNormal = \"negative\"\n\"Region*\" = \"ignore\"\n",
            Path::new("m.toml"),
        )
        .unwrap();
        assert_eq!(
            m.target("Pustule"),
            Some(Target::Finding(Finding::SubcornealPustule))
        );
        assert_eq!(m.target("Normal"), Some(Target::Negative));
        assert_eq!(m.target("Region*"), Some(Target::Ignore));
        assert_eq!(m.target("Tumor"), None);
        assert!(m.is_exhaustive("a") && !m.is_exhaustive("b"));
        assert_eq!(m.min_annotated, 0.8);
        let all = Mapping::parse("exhaustive = \"all\"\n[classes]\n", Path::new("m.toml")).unwrap();
        assert!(all.is_exhaustive("anything"));
        assert_eq!(all.min_annotated, DEFAULT_MIN_ANNOTATED);
    }

    #[test]
    fn refuses_unknown_targets_and_bad_values() {
        for (text, needle) in [
            ("[classes]\nP = \"pustule\"\n", "not a finding key"),
            ("exhaustive = \"some\"\n[classes]\n", "expected \"all\""),
            ("min_annotated = 0\n[classes]\n", "min_annotated"),
            ("colour = 1\n[classes]\n", "unknown field"),
        ] {
            let e = Mapping::parse(text, Path::new("m.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("m.toml: ") && e.contains(needle), "{e}");
        }
    }
}
