//! One run holds OUT at a time: `OUT/.dirascope.lock` names the holder (pid and host)
//! and carries an advisory lock (`flock`) that the kernel drops when the holder dies.
//!
//! A second `score` or `merge` into a held OUT is refused with the holder's pid and
//! host. A lock file left by a run that died (its lock dropped; on this host, its pid
//! gone) is stale and taken over with a warning; one from another host is refused,
//! since its process cannot be checked from here. This module never touches slide
//! folders; it only decides who may.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The lock file's name inside OUT (hidden, so readers of OUT skip it).
pub const LOCK_FILE: &str = ".dirascope.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: OUT is in use by another dirascope run (pid {pid} on host {host}); wait for it to finish or use another --out{advice}", path.display())]
    Held {
        path: PathBuf,
        pid: String,
        host: String,
        /// Extra advice where the holder cannot be checked from here.
        advice: String,
    },
    #[error("{}: cannot take the lock on OUT: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The holder a lock file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
}

impl Holder {
    fn me() -> Holder {
        Holder {
            pid: std::process::id(),
            host: host_name(),
        }
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut words = text.split_whitespace();
        let pid = words.next()?.parse().ok()?;
        let host = words.next().unwrap_or("").to_string();
        Some(Holder { pid, host })
    }
}

/// OUT held by this process until dropped (the lock file is then removed).
#[derive(Debug)]
pub struct OutLock {
    path: PathBuf,
    file: File,
    /// The stale holder this run took the lock over from, if any.
    pub took_over: Option<Holder>,
}

impl OutLock {
    /// Takes the lock on `out_dir` (which must exist), or says who holds it.
    pub fn acquire(out_dir: &Path) -> Result<OutLock, LockError> {
        let path = out_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // A holder that finished removes the file between our open and our lock;
        // then the file we locked is no longer the lock file: open it again.
        for _ in 0..8 {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            let flocked = match file.try_lock() {
                Ok(()) => true,
                Err(fs::TryLockError::WouldBlock) => {
                    let holder = read_holder(&mut file);
                    return Err(held(&path, holder, ""));
                }
                // No advisory locks on this file system: the pid alone decides.
                Err(fs::TryLockError::Error(_)) => false,
            };
            if !same_file(&file, &path) {
                continue;
            }
            let me = Holder::me();
            let took_over = match read_holder(&mut file) {
                Some(h) if h.host != me.host => {
                    return Err(held(
                        &path,
                        Some(h),
                        "; if that run is gone, delete the lock file",
                    ))
                }
                Some(h) if !flocked && h.pid != me.pid && process_alive(h.pid) => {
                    return Err(held(&path, Some(h), ""))
                }
                other => other.filter(|h| h.pid != me.pid),
            };
            let record = format!("{} {}\n", me.pid, me.host);
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(record.as_bytes()))
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            return Ok(OutLock {
                path,
                file,
                took_over,
            });
        }
        Err(io(std::io::Error::other(
            "the lock file kept changing under this run",
        )))
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        // Removed while still locked, so a waiting run never locks a file that is
        // already gone without noticing (it checks the path still names its file).
        if same_file(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn held(path: &Path, holder: Option<Holder>, advice: &str) -> LockError {
    let (pid, host) = holder.map_or(("unknown".to_string(), "unknown".to_string()), |h| {
        (h.pid.to_string(), h.host)
    });
    LockError::Held {
        path: path.to_path_buf(),
        pid,
        host,
        advice: advice.to_string(),
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(4096).read_to_string(&mut text).ok()?;
    Holder::parse(&text)
}

/// True when `path` still names the open `file` (same device and inode).
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// This machine's name, as the lock file records it.
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// Whether process `pid` runs on this host; where that cannot be told (no /proc),
/// assume it does.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_and_released_on_drop() {
        let out = tempfile::tempdir().unwrap();
        let first = OutLock::acquire(out.path()).unwrap();
        assert!(first.took_over.is_none());
        let text = fs::read_to_string(out.path().join(LOCK_FILE)).unwrap();
        assert_eq!(Holder::parse(&text), Some(Holder::me()));
        // Another open file description of the same file: flock refuses it.
        let e = OutLock::acquire(out.path()).unwrap_err();
        assert!(matches!(e, LockError::Held { .. }), "{e}");
        assert!(
            e.to_string().contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(first);
        assert!(!out.path().join(LOCK_FILE).exists());
        drop(OutLock::acquire(out.path()).unwrap());
    }

    #[test]
    fn stale_locks_are_taken_over_and_foreign_ones_refused() {
        let out = tempfile::tempdir().unwrap();
        let lock = out.path().join(LOCK_FILE);
        let dead = u32::MAX - 1;
        fs::write(&lock, format!("{dead} {}\n", host_name())).unwrap();
        let taken = OutLock::acquire(out.path()).unwrap();
        assert_eq!(taken.took_over.as_ref().map(|h| h.pid), Some(dead));
        drop(taken);
        fs::write(&lock, "12 another-machine\n").unwrap();
        let e = OutLock::acquire(out.path()).unwrap_err().to_string();
        assert!(e.contains("another-machine") && e.contains("delete"), "{e}");
        fs::write(&lock, "garbage").unwrap();
        assert!(OutLock::acquire(out.path()).unwrap().took_over.is_none());
    }
}
