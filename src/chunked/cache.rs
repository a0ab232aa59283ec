//! The local chunk cache (opt-in, for persistent runners): chunks as stored in packs, one
//! file each under `<dir>/<first two hex digits>/<id>`, served before the network. A chunk
//! read from it is checked like any other (its BLAKE3), and one that fails the check is
//! dropped and fetched again. Least recently used chunks go once the cache is over its size.

use super::ChunkId;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct ChunkCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes this process added, to know whether trimming is worth a scan.
    added: AtomicU64,
}

impl ChunkCache {
    pub fn new(dir: PathBuf, max_bytes: u64) -> ChunkCache {
        ChunkCache {
            dir,
            max_bytes,
            added: AtomicU64::new(0),
        }
    }

    fn path(&self, id: &ChunkId) -> PathBuf {
        let hex = hex::encode(id);
        self.dir.join(&hex[..2]).join(hex)
    }

    /// The stored bytes of chunk `id`, if cached (and marked as used now).
    pub fn get(&self, id: &ChunkId) -> Option<Vec<u8>> {
        let p = self.path(id);
        let b = fs::read(&p).ok()?;
        let _ = filetime::set_file_mtime(&p, filetime::FileTime::now());
        Some(b)
    }

    /// Keep the stored bytes of chunk `id`. Failing to is no failure: the cache is a help.
    pub fn put(&self, id: &ChunkId, stored: &[u8]) {
        let p = self.path(id);
        if p.exists() {
            return;
        }
        if crate::store::write_aside(&p, stored, false).is_ok() {
            self.added.fetch_add(stored.len() as u64, Ordering::Relaxed);
        }
    }

    /// A cached chunk that failed its check.
    pub fn drop_chunk(&self, id: &ChunkId) {
        let _ = fs::remove_file(self.path(id));
    }

    /// Over its size, the least recently used chunks go until it is at 90 %.
    pub fn trim(&self) {
        if self.added.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = Vec::new();
        for sub in read_dir(&self.dir) {
            for f in read_dir(&sub) {
                if let Ok(m) = fs::symlink_metadata(&f) {
                    if m.is_file() {
                        let used = m.modified().unwrap_or(std::time::UNIX_EPOCH);
                        files.push((used, m.len(), f));
                    }
                }
            }
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        if total <= self.max_bytes {
            return;
        }
        files.sort();
        for (_, len, f) in files {
            if total <= self.max_bytes / 10 * 9 {
                break;
            }
            if fs::remove_file(&f).is_ok() {
                total -= len;
            }
        }
    }
}

fn read_dir(d: &Path) -> Vec<PathBuf> {
    fs::read_dir(d)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
