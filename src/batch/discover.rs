//! Turning the command line's inputs (files, folders, manifest CSVs) into a list of
//! slide jobs with unique, stable ids, and splitting that list into shards.
//!
//! It only looks at names, file types, first bytes and DICOM series UIDs; it never
//! opens a slide for pixels, nor anything that is not a regular file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::BatchError;

/// One slide to score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlideJob {
    pub slide_id: String,
    pub path: PathBuf,
    /// Extra manifest columns (label, patient_id, ...), echoed into summaries.
    pub extra: BTreeMap<String, String>,
}

/// File names that announce a slide even when their bytes are broken: such files
/// become error rows rather than being skipped silently.
const SLIDE_EXTENSIONS: [&str; 10] = [
    "svs", "tif", "tiff", "btf", "ndpi", "png", "jpg", "jpeg", "dcm", "scn",
];

fn has_slide_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SLIDE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// True when the first bytes are those of a format the slide stage reads. Only a
/// regular file is opened: a named pipe would block the read.
fn has_slide_magic(path: &Path) -> bool {
    use std::io::Read;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; 132];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..n];
    head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
        || head.starts_with(b"II+\0")
        || head.starts_with(b"MM\0+")
        || head.starts_with(b"\x89PNG")
        || head.starts_with(b"\xff\xd8\xff")
        || (head.len() >= 132 && &head[128..132] == b"DICM")
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// The slide id of a file: its name without the (last) extension, or the folder's
/// name for a DICOM folder.
pub fn slide_id_for(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let is_file = std::fs::metadata(path).is_ok_and(|m| !m.is_dir());
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() && is_file => stem.to_string(),
        _ => name,
    };
    // OME-TIFF convention: strip the ".ome" that precedes ".tif".
    stem.strip_suffix(".ome")
        .map(str::to_string)
        .unwrap_or(stem)
}

/// What discovery found: the slides to score, and the slide files it found but
/// does not score on their own (listed on stderr and in `--json`, never dropped
/// silently).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    pub jobs: Vec<SlideJob>,
    pub skipped: Vec<Skipped>,
}

/// A file discovery found and does not score as a slide of its own, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Expands inputs into jobs. Folders are walked recursively in sorted order, except
/// phantom mask folders (`*.masks`) and hidden entries. A folder whose slide files
/// are all DICOM files of one series is one slide; in a folder that holds other slide
/// files too, each series is one slide (named after its largest file, the others
/// listed as skipped) and each other file is a slide of its own. Explicit files are
/// always jobs (a bad one becomes an error row later); in folders, files are taken
/// when their bytes or their extension say slide, and anything that is not a regular
/// file (a named pipe, a socket) is taken too, to become an error row unopened.
/// Duplicate ids, ids that share a folder in OUT and ids that name a file the run
/// writes are errors before any work starts.
pub fn discover(inputs: &[PathBuf]) -> Result<Discovered, BatchError> {
    let mut found = Discovered::default();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut found)?;
        } else if is_manifest(input) {
            found.jobs.extend(read_manifest(input)?);
        } else if input.exists() || input.extension().is_some() {
            found.jobs.push(job(input.clone()));
        } else {
            return Err(BatchError::Input {
                path: input.clone(),
                reason: "no such file or folder".into(),
            });
        }
    }
    check_unique(&found.jobs)?;
    super::check_folder_names(found.jobs.iter().map(|j| j.slide_id.as_str()))?;
    Ok(found)
}

fn job(path: PathBuf) -> SlideJob {
    SlideJob {
        slide_id: slide_id_for(&path),
        path,
        extra: BTreeMap::new(),
    }
}

fn walk(dir: &Path, found: &mut Discovered) -> Result<(), BatchError> {
    let io = |e: std::io::Error| BatchError::Input {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let (mut files, mut folders) = (Vec::new(), Vec::new());
    for path in entries {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        let meta = std::fs::metadata(&path);
        if meta.as_ref().is_ok_and(|m| m.is_dir()) {
            // `<id>.masks/` beside a phantom holds its truth masks, not slides.
            if path.extension().is_none_or(|e| e != "masks") {
                folders.push(path);
            }
            continue;
        }
        match meta {
            Ok(m) if !m.is_file() => files.push(path),
            _ if has_slide_extension(&path) || has_slide_magic(&path) => files.push(path),
            _ => {}
        }
    }
    let dicom: Vec<&PathBuf> = files.iter().filter(|p| is_dicom(p)).collect();
    let mut series: BTreeMap<String, Vec<&PathBuf>> = BTreeMap::new();
    for path in &dicom {
        let uid = crate::slide::dicom_series_uid(path, &Default::default()).unwrap_or_default();
        series.entry(uid).or_default().push(path);
    }
    let named_series = series.keys().filter(|uid| !uid.is_empty()).count();
    if !dicom.is_empty() && dicom.len() == files.len() && named_series <= 1 {
        found.jobs.push(job(dir.to_path_buf()));
    } else {
        // Each series by its largest file (its level 0); files whose series cannot be
        // read are slides of their own, so that their own error reaches the user.
        let mut members: BTreeMap<&PathBuf, &PathBuf> = BTreeMap::new();
        for (uid, paths) in series.iter().filter(|(uid, _)| !uid.is_empty()) {
            let size = |p: &PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
            let Some(first) = paths
                .iter()
                .max_by(|a, b| size(a).cmp(&size(b)).then(b.cmp(a)))
            else {
                continue;
            };
            for p in paths.iter().filter(|p| *p != first) {
                members.insert(p, first);
                found.skipped.push(Skipped {
                    path: p.to_path_buf(),
                    reason: format!(
                        "part of DICOM series {uid}, scored with slide '{}'",
                        slide_id_for(first)
                    ),
                });
            }
        }
        for path in &files {
            if !members.contains_key(path) {
                found.jobs.push(job(path.clone()));
            }
        }
    }
    for folder in folders {
        walk(&folder, found)?;
    }
    Ok(())
}

/// A regular file with the DICOM signature.
fn is_dicom(path: &Path) -> bool {
    use std::io::Read;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[128..132] == b"DICM"
}

/// Reads a manifest CSV: `slide_id,path[,label][,patient_id][,...]`. Relative paths
/// are relative to the manifest's folder.
pub fn read_manifest(path: &Path) -> Result<Vec<SlideJob>, BatchError> {
    let err = |reason: String| BatchError::Input {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(kind) = std::fs::metadata(path)
        .ok()
        .and_then(|m| crate::slide::special_file_kind(&m))
    {
        return Err(err(format!("not a regular file but {kind}")));
    }
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| err(e.to_string()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let id_col = headers.iter().position(|h| h == "slide_id");
    let path_col = headers.iter().position(|h| h == "path");
    let (Some(id_col), Some(path_col)) = (id_col, path_col) else {
        return Err(err(format!(
            "a manifest needs columns slide_id and path; found {}",
            headers.join(",")
        )));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut jobs = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| err(format!("row {}: {e}", i + 2)))?;
        let id = row.get(id_col).unwrap_or("").trim();
        let p = row.get(path_col).unwrap_or("").trim();
        if id.is_empty() || p.is_empty() {
            return Err(err(format!("row {}: empty slide_id or path", i + 2)));
        }
        if id.contains(['/', '\\']) || id == "." || id == ".." || id.starts_with('.') {
            return Err(err(format!(
                "row {}: slide_id '{id}' cannot be a folder name",
                i + 2
            )));
        }
        let extra = headers
            .iter()
            .enumerate()
            .filter(|(c, _)| *c != id_col && *c != path_col)
            .map(|(c, h)| (h.clone(), row.get(c).unwrap_or("").trim().to_string()))
            .collect();
        let slide_path = Path::new(p);
        jobs.push(SlideJob {
            slide_id: id.to_string(),
            path: if slide_path.is_absolute() {
                slide_path.to_path_buf()
            } else {
                base.join(slide_path)
            },
            extra,
        });
    }
    Ok(jobs)
}

fn check_unique(jobs: &[SlideJob]) -> Result<(), BatchError> {
    let pairs = jobs.iter().map(|j| (j.slide_id.as_str(), j.path.as_path()));
    match super::duplicated_ids(pairs) {
        Some(list) => Err(BatchError::DuplicateIds(list)),
        None => Ok(()),
    }
}

/// Shard `index` (1-based) of `count`, from `--shard K/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--shard takes K/N, like 2/8; got '{s}'"))?;
        let index: u32 = k
            .trim()
            .parse()
            .map_err(|_| format!("bad shard index '{k}'"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("bad shard count '{n}'"))?;
        if count == 0 || index == 0 || index > count {
            return Err(format!("--shard K/N needs 1 <= K <= N; got {s}"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Deterministic membership by slide id (FNV-1a 64), the same on every machine.
    pub fn contains(&self, slide_id: &str) -> bool {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in slide_id.as_bytes() {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h % self.count as u64 == (self.index - 1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_ids() {
        let ids: Vec<String> = (0..200).map(|i| format!("slide-{i}")).collect();
        let shards: Vec<Shard> = (1..=3).map(|k| format!("{k}/3").parse().unwrap()).collect();
        for id in &ids {
            assert_eq!(shards.iter().filter(|s| s.contains(id)).count(), 1);
        }
        let sizes: Vec<usize> = shards
            .iter()
            .map(|s| ids.iter().filter(|id| s.contains(id)).count())
            .collect();
        assert!(sizes.iter().all(|&n| n > 40), "{sizes:?}");
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    #[test]
    fn folders_are_walked_and_duplicates_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(dir.path().join("a.svs"), b"broken but named like a slide").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"not a slide").unwrap();
        std::fs::write(sub.join("b.dat"), b"II*\0rest").unwrap();
        std::fs::write(sub.join("a.png"), b"").unwrap();
        let err = discover(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(err.to_string().contains("'a'"), "{err}");
        std::fs::remove_file(sub.join("a.png")).unwrap();
        let jobs = discover(&[dir.path().to_path_buf()]).unwrap().jobs;
        let ids: Vec<&str> = jobs.iter().map(|j| j.slide_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn manifest_gives_ids_paths_and_extra_columns() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.csv");
        std::fs::write(
            &m,
            "slide_id,path,label,patient_id\nS1,x/one.svs,dira,P1\nS2,/abs/two.tif,normal,P2\n",
        )
        .unwrap();
        let jobs = discover(&[m]).unwrap().jobs;
        assert_eq!(jobs[0].slide_id, "S1");
        assert_eq!(jobs[0].path, dir.path().join("x/one.svs"));
        assert_eq!(jobs[0].extra["label"], "dira");
        assert_eq!(jobs[1].path, PathBuf::from("/abs/two.tif"));
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "id,file\n1,2\n").unwrap();
        assert!(discover(&[bad])
            .unwrap_err()
            .to_string()
            .contains("slide_id and path"));
    }
}
