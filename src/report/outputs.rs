//! The list of a slide folder's files that `report.json` carries (path, size,
//! sha256), and the check that a folder still holds exactly those bytes.
//!
//! A rerun reuses a slide folder only when [`check`] passes: a folder that lost a
//! file or had one altered is scored again. report.json itself is not listed (it
//! cannot hold its own hash); reading it back is its check.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ReportError;

/// One file of a slide folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the slide folder, '/'-separated (`evidence/x.png`).
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Every file under the slide folder `dir` but its `report.json`, sorted by path.
pub fn list(dir: &Path) -> Result<Vec<OutputFile>, ReportError> {
    let mut files = Vec::new();
    walk(dir, "", &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(dir: &Path, prefix: &str, files: &mut Vec<OutputFile>) -> Result<(), ReportError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ReportError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ReportError::io(dir, e))?;
        let path = entry.path();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().map_err(|e| ReportError::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, &format!("{name}/"), files)?;
        } else if name != "report.json" {
            let (sha256, bytes) =
                super::audit::sha256_file(&path).map_err(|e| ReportError::io(&path, e))?;
            files.push(OutputFile {
                path: name,
                bytes,
                sha256,
            });
        }
    }
    Ok(())
}

/// Whether `dir` holds every file of `files` with its recorded size and sha256;
/// the first difference when not. An empty list (a report written before reports
/// listed their files) never passes.
pub fn check(dir: &Path, files: &[OutputFile]) -> Result<(), String> {
    if files.is_empty() {
        return Err("report.json lists no files".into());
    }
    for f in files {
        let path = dir.join(&f.path);
        let size = std::fs::metadata(&path).map(|m| m.len());
        if size.as_ref().ok() != Some(&f.bytes) {
            return Err(format!("{} is missing or has another size", f.path));
        }
        match super::audit::sha256_file(&path) {
            Ok((sha256, _)) if sha256 == f.sha256 => {}
            _ => return Err(format!("{} has other bytes", f.path)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_folder_checks_until_a_file_goes_or_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("evidence")).unwrap();
        std::fs::write(dir.path().join("tiles.csv"), "x,y\n").unwrap();
        std::fs::write(dir.path().join("evidence/a.png"), "png").unwrap();
        std::fs::write(dir.path().join("report.json"), "{}").unwrap();
        let files = list(dir.path()).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["evidence/a.png", "tiles.csv"]);
        assert_eq!(files[1].bytes, 4);
        assert!(check(dir.path(), &files).is_ok());
        assert!(check(dir.path(), &[]).is_err());
        std::fs::write(dir.path().join("tiles.csv"), "x,z\n").unwrap();
        assert!(check(dir.path(), &files).unwrap_err().contains("tiles.csv"));
        std::fs::remove_file(dir.path().join("evidence/a.png")).unwrap();
        assert!(check(dir.path(), &files).unwrap_err().contains("a.png"));
    }
}
