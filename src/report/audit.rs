//! The audit record in every `report.json`: who scored the slide, with which model
//! and configuration, from which bytes, and when.
//!
//! It owns the record's types, file digests and the RFC 3339 time stamps. It says
//! nothing about whether a report may be reused; `batch::resume` compares audits.

use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{ModelInfo, TilingParams};
use crate::aggregate::AggregateParams;
use crate::qc::QcOptions;
use crate::slide::Mpp;
use crate::tissue::TissueOptions;

/// Enough to reproduce a report and to tell, on a rerun, whether it still stands:
/// the same tool, model, configuration and slide bytes give the same outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    pub tool_version: String,
    pub model: ModelInfo,
    pub configuration: Configuration,
    pub slide: FileDigest,
    /// RFC 3339, UTC. Times vary run to run, so comparisons mask them (see
    /// [`super::json::to_json_without_times`]).
    pub started_at: String,
    pub finished_at: String,
    /// QC flags and anything else a reader of the report should notice.
    pub warnings: Vec<String>,
}

/// Every option of a run that can change a slide's outputs, after defaults, the
/// model manifest and the command line are merged. Worker threads and queue depth
/// are left out: outputs never depend on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    /// `--mpp`: replaces the MPP stored in the slide.
    pub mpp_override: Option<Mpp>,
    pub tissue: TissueOptions,
    /// `--tissue-mask`, with its digest so an edited mask is noticed.
    pub tissue_mask: Option<FileDigest>,
    pub qc: QcOptions,
    pub tiling: TilingParams,
    /// Aggregation and the model's call rule (the tile area is set per slide).
    pub aggregate: AggregateParams,
    pub thumbnail_side: u32,
    pub evidence_crops: bool,
    /// `--normalise-stain`: the model's stain profile every slide was mapped onto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stain_reference: Option<crate::stain::StainProfile>,
}

/// A file as it was read: its path as given and the sha256 of its bytes (absent
/// when hashing was turned off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: String,
    pub sha256: Option<String>,
}

impl FileDigest {
    /// Hashes the file at `path`.
    pub fn of(path: &Path) -> std::io::Result<FileDigest> {
        let (sha256, _) = sha256_file(path)?;
        Ok(FileDigest {
            path: path.display().to_string(),
            sha256: Some(sha256),
        })
    }
}

/// The lowercase hex sha256 of a slide's bytes and their size. For a file, the
/// sha256 of its bytes; for a folder (a DICOM series), of each file's relative path
/// and bytes in sorted order, so adding, renaming or editing any file changes it.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let total = if path.is_dir() {
        hash_folder(path, path, &mut hasher)?
    } else {
        hash_bytes(path, &mut hasher)?
    };
    Ok((hex::encode(hasher.finalize()), total))
}

/// Feeds a file's bytes to `hasher` in 1 MiB chunks; returns how many.
fn hash_bytes(path: &Path, hasher: &mut sha2::Sha256) -> std::io::Result<u64> {
    use sha2::Digest;
    // A named pipe or a device would block the read or never end: refuse it unopened.
    if let Some(kind) = crate::slide::special_file_kind(&std::fs::metadata(path)?) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file but {kind}"),
        ));
    }
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
}

fn hash_folder(base: &Path, dir: &Path, hasher: &mut sha2::Sha256) -> std::io::Result<u64> {
    use sha2::Digest;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    let mut total = 0;
    for path in entries {
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            total += hash_folder(base, &path, hasher)?;
        } else if crate::slide::special_file_kind(&meta).is_some() {
            // Not part of the slide: the DICOM reader takes regular files only.
            continue;
        } else {
            let relative = path.strip_prefix(base).unwrap_or(&path);
            hasher.update(relative.to_string_lossy().as_bytes());
            hasher.update([0]);
            total += hash_bytes(&path, hasher)?;
        }
    }
    Ok(total)
}

/// `time` as RFC 3339 in UTC to the second (`2026-01-01T00:00:00Z`). Times before
/// 1970 are written as the epoch; a clock that far off says nothing useful anyway.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a count of days since 1970-01-01 in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, which counts in 400-year eras that
/// start on 1 March so the leap day falls at the end of a year).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> String {
        rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(at(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(at(4_107_587_405), "2100-03-01T12:30:05Z");
    }

    #[test]
    fn civil_days_walk_every_day_of_four_centuries() {
        // Naive reference: step one day at a time with the Gregorian leap rule.
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn file_digest_is_sha256_of_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, b"abc").unwrap();
        let d = FileDigest::of(&path).unwrap();
        assert_eq!(
            d.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn a_folder_digest_changes_with_any_file_name_or_byte() {
        let dir = tempfile::tempdir().unwrap();
        let series = dir.path().join("series");
        std::fs::create_dir(&series).unwrap();
        std::fs::write(series.join("a.dcm"), b"one").unwrap();
        std::fs::write(series.join("b.dcm"), b"two").unwrap();
        let (first, size) = sha256_file(&series).unwrap();
        assert_eq!(size, 6);
        std::fs::rename(series.join("b.dcm"), series.join("c.dcm")).unwrap();
        let (renamed, _) = sha256_file(&series).unwrap();
        std::fs::write(series.join("c.dcm"), b"twO").unwrap();
        let (edited, _) = sha256_file(&series).unwrap();
        assert!(first != renamed && renamed != edited && first != edited);
    }
}
