//! The four findings dirascope scores, and their keys: one vocabulary for the model
//! manifest, the phantom truth masks, the aggregation and every report column.

use std::fmt;
use std::str::FromStr;

/// The four findings a model scores, in dirascope's canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Finding {
    SubcornealPustule,
    Acantholysis,
    NeutrophilicEccrineHidradenitis,
    Psoriasiform,
}

impl Finding {
    pub const ALL: [Finding; 4] = [
        Finding::SubcornealPustule,
        Finding::Acantholysis,
        Finding::NeutrophilicEccrineHidradenitis,
        Finding::Psoriasiform,
    ];

    /// The key used in manifests, CSV columns and reports.
    pub const fn key(self) -> &'static str {
        match self {
            Finding::SubcornealPustule => "subcorneal_pustule",
            Finding::Acantholysis => "acantholysis",
            Finding::NeutrophilicEccrineHidradenitis => "neutrophilic_eccrine_hidradenitis",
            Finding::Psoriasiform => "psoriasiform",
        }
    }

    /// Position in [`Finding::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl FromStr for Finding {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Finding::ALL.into_iter().find(|f| f.key() == s).ok_or(())
    }
}
