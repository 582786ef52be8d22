//! What identifies one version of a file, so a watcher re-reads it only when it changed: the
//! conf file for a reload, a secret after a Kubernetes rotation.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// One version of a file: a Secret rotation (or an edit) changes at least one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamp of the file at `path` (following symlinks), if it can be read.
pub fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}
