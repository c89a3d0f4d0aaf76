//! Atomic per-slide folders: `OUT/<name>/` is always a whole slide or absent.
//!
//! A slide's outputs are written into a hidden staging folder,
//! `OUT/.<name>.partial-<pid>`, and renamed to `OUT/<name>` only once complete. An
//! earlier folder of that name is first renamed aside (`OUT/.<name>.old-<pid>`) and
//! deleted after the new one is in place. A killed run leaves only hidden folders,
//! which the next run into the same OUT removes ([`remove_stale`]); readers of OUT
//! skip hidden entries. An earlier folder the run cannot write into is made writable
//! before it is removed (it is the user's own output). Two runs never write into one
//! OUT at the same time ([`super::OutLock`]): shards write to folders of their own
//! and `dirascope merge` joins them.

use std::fs;
use std::path::{Path, PathBuf};

use crate::report::ReportError;

const PARTIAL: &str = ".partial-";
const OLD: &str = ".old-";

/// A slide folder being written; dropped without [`StagedFolder::commit`], it is
/// deleted, so a failed slide leaves nothing behind.
#[derive(Debug)]
pub struct StagedFolder {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl StagedFolder {
    /// Creates an empty `OUT/.<name>.partial-<pid>` for `OUT/<name>`.
    pub fn create(out_dir: &Path, name: &str) -> Result<StagedFolder, ReportError> {
        let staging = out_dir.join(hidden_name(name, PARTIAL));
        remove_if_present(&staging)?;
        fs::create_dir_all(&staging).map_err(|e| ReportError::io(&staging, e))?;
        Ok(StagedFolder {
            staging,
            target: out_dir.join(name),
            committed: false,
        })
    }

    /// Where the slide's files go until the commit.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Moves the finished folder into place, replacing any earlier one. Once the
    /// new folder is in place the slide is committed, whatever becomes of the
    /// earlier one; that is removed, and only a warning says when it cannot be (the
    /// next run's sweep tries again).
    pub fn commit(mut self) -> Result<(), ReportError> {
        let aside = move_aside(&self.target)?;
        if let Err(e) = fs::rename(&self.staging, &self.target) {
            if let Some(old) = &aside {
                // Put the earlier result back rather than leave no folder at all.
                let _ = fs::rename(old, &self.target);
            }
            return Err(ReportError::io(&self.target, e));
        }
        self.committed = true;
        if let Some(old) = aside {
            if let Err(e) = remove_if_present(&old) {
                eprintln!("dirascope: warning: the replaced folder could not be removed: {e}");
            }
        }
        Ok(())
    }
}

impl Drop for StagedFolder {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Removes `OUT/<name>` if it exists, renaming it aside first so that an
/// interruption never leaves half a folder under the real name.
pub fn remove_folder(out_dir: &Path, name: &str) -> Result<(), ReportError> {
    match move_aside(&out_dir.join(name))? {
        Some(old) => remove_if_present(&old),
        None => Ok(()),
    }
}

/// Removes the staging and set-aside folders and the temporary files an interrupted
/// run left in `out_dir`; returns how many there were.
pub fn remove_stale(out_dir: &Path) -> Result<usize, ReportError> {
    let entries = match fs::read_dir(out_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ReportError::io(out_dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if is_leftover(&entry.file_name().to_string_lossy()) {
            remove_if_present(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// True for the hidden names of folders in transit (this module's) and of files
/// in transit ([`crate::report::write_atomic`]'s).
pub fn is_leftover(name: &str) -> bool {
    let in_transit = |marker: &str| {
        name.rsplit_once(marker)
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    };
    name.starts_with(crate::report::TEMP_PREFIX)
        || (name.starts_with('.') && (in_transit(PARTIAL) || in_transit(OLD)))
}

fn hidden_name(name: &str, marker: &str) -> String {
    format!(".{name}{marker}{}", std::process::id())
}

/// Renames `target` to its set-aside name; `None` when there was no `target`.
fn move_aside(target: &Path) -> Result<Option<PathBuf>, ReportError> {
    if fs::symlink_metadata(target).is_err() {
        return Ok(None);
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = target.with_file_name(hidden_name(&name, OLD));
    remove_if_present(&aside)?;
    fs::rename(target, &aside).map_err(|e| ReportError::io(target, e))?;
    Ok(Some(aside))
}

/// Removes `path` (a file or a whole folder) if it exists. A folder whose entries
/// cannot be removed for want of permission is made writable first: everything in
/// transit in OUT was written by dirascope for this user.
fn remove_if_present(path: &Path) -> Result<(), ReportError> {
    let removed = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).or_else(|e| {
            if e.kind() != std::io::ErrorKind::PermissionDenied {
                return Err(e);
            }
            make_writable(path);
            fs::remove_dir_all(path)
        }),
        Ok(_) => fs::remove_file(path),
    };
    removed.map_err(|e| ReportError::io(path, e))
}

/// Gives the owner read, write and search permission on `dir` and every folder
/// below it (links are not followed); failures are left for the removal to report.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode() | 0o700;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode));
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        make_writable(&entry.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn a_commit_replaces_the_earlier_folder_whole() {
        let out = tempfile::tempdir().unwrap();
        let first = StagedFolder::create(out.path(), "s1").unwrap();
        fs::write(first.path().join("a.txt"), "one").unwrap();
        fs::write(first.path().join("old-only.txt"), "x").unwrap();
        assert_eq!(names(out.path()), [hidden_name("s1", PARTIAL)]);
        first.commit().unwrap();
        let second = StagedFolder::create(out.path(), "s1").unwrap();
        fs::write(second.path().join("a.txt"), "two").unwrap();
        second.commit().unwrap();
        assert_eq!(names(out.path()), ["s1"]);
        assert_eq!(names(&out.path().join("s1")), ["a.txt"]);
        assert_eq!(
            fs::read_to_string(out.path().join("s1/a.txt")).unwrap(),
            "two"
        );
    }

    #[test]
    fn an_abandoned_folder_leaves_nothing_and_leftovers_are_swept() {
        let out = tempfile::tempdir().unwrap();
        let staged = StagedFolder::create(out.path(), "s1").unwrap();
        fs::write(staged.path().join("a.txt"), "half").unwrap();
        drop(staged);
        assert!(names(out.path()).is_empty());
        for leftover in [".s1.partial-123", ".s2.old-9"] {
            fs::create_dir(out.path().join(leftover)).unwrap();
        }
        fs::write(out.path().join(".tmp-a1B2c3"), "half a summary").unwrap();
        fs::create_dir(out.path().join("s3")).unwrap();
        fs::create_dir(out.path().join(".s4.partial-x")).unwrap();
        assert_eq!(remove_stale(out.path()).unwrap(), 3);
        assert_eq!(names(out.path()), [".s4.partial-x", "s3"]);
        remove_folder(out.path(), "s3").unwrap();
        remove_folder(out.path(), "absent").unwrap();
        assert_eq!(names(out.path()), [".s4.partial-x"]);
    }
}
