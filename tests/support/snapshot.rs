//! What a directory tree is, as far as "nothing changed" goes: for every entry (links not
//! followed) its type, mode, inode, size, mtime, and content or link target. Shared by the
//! extraction tests and the unpacker's fuzz target.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every entry below `dir`, `dir` included, except those `skip` says.
pub fn snapshot(dir: &Path, skip: &dyn Fn(&Path) -> bool) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        if skip(&p) {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        let what = if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            "dir".to_string()
        } else if m.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(&p).unwrap().display())
        } else {
            file(&p, m.len())
        };
        let (mode, ino, size, mtime) = (m.mode(), m.ino(), m.size(), m.mtime());
        let nsec = m.mtime_nsec();
        out.insert(
            p,
            format!("{what} mode {mode:o} ino {ino} size {size} mtime {mtime}.{nsec}"),
        );
    }
    out
}

/// A file's content: itself when small, else its BLAKE3, read in pieces (a sandbox may hold
/// files of many MiB, and a test that held them, five times over as text, twice, grew the test
/// process by hundreds of MiB, which every process it started then counted as its own peak).
fn file(p: &Path, len: u64) -> String {
    if len <= 4096 {
        return format!("file {:?}", std::fs::read(p).unwrap());
    }
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(p).unwrap()).unwrap();
    format!("file blake3 {}", h.finalize().to_hex())
}

/// Everything below `dir` outside `root`, and the mode, owner and inode of every directory
/// above `dir` up to `/` (their times move with other processes' work). The root's parent may
/// gain the root itself (its size and mtime move with that); nothing else may change.
pub fn outside_the_root(dir: &Path, root: &Path) -> BTreeMap<PathBuf, String> {
    let mut s = snapshot(dir, &|p| p.starts_with(root));
    if let Some(v) = root.parent().and_then(|p| s.get_mut(p)) {
        v.truncate(v.find(" size").unwrap());
    }
    for above in dir.ancestors().skip(1) {
        let m = std::fs::symlink_metadata(above).unwrap();
        let (mode, uid, ino) = (m.mode(), m.uid(), m.ino());
        s.insert(
            above.to_path_buf(),
            format!("above: mode {mode:o} uid {uid} ino {ino}"),
        );
    }
    s
}

/// The same without directory sizes and mtimes, which every create or rename in a directory
/// moves: for comparing a tree with itself after a rollback.
pub fn without_directory_times(s: BTreeMap<PathBuf, String>) -> BTreeMap<PathBuf, String> {
    s.into_iter()
        .map(|(p, mut v)| {
            if v.starts_with("dir") {
                v.truncate(v.find(" size").unwrap());
            }
            (p, v)
        })
        .collect()
}
