//! The local chunk cache (opt-in, for persistent runners): chunks compressed alone, one file
//! each under `<dir>/<first two hex digits>/<id>.<place>`, served before the network. A chunk
//! read from it is checked like any other (its BLAKE3), and one that fails the check is
//! dropped and fetched again. Least recently used chunks go once the cache is over its size.
//!
//! A chunk is cached under its place in the store (pack, frame, offset in the frame) as well
//! as its id, and only once that place is known to hold it: a restore read it from there, or
//! this runner's save uploaded it there. A restore serves a cached chunk only for the place
//! its manifest names, so an entry that names a wrong place for a chunk this runner has
//! cached is read from the store and found damaged, as it would be on any other runner;
//! otherwise it would restore here, and the saves built on it would pass the wrong place on.

use super::{Chunk, ChunkId};
use crate::nofollow::{Dir, Kind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a chunk is in the store: its pack, its frame there and its span in the frame, hashed.
pub type Place = [u8; 16];

/// The place of chunk `c`, which is in pack `pack`.
pub fn place_of(pack: &str, c: &Chunk) -> Place {
    let mut h = blake3::Hasher::new();
    h.update(&(pack.len() as u64).to_le_bytes());
    h.update(pack.as_bytes());
    for n in [
        c.offset,
        c.stored.into(),
        c.frame_len.into(),
        c.skip.into(),
        c.len.into(),
    ] {
        h.update(&n.to_le_bytes());
    }
    let mut place = [0; 16];
    place.copy_from_slice(&h.finalize().as_bytes()[..16]);
    place
}

/// Most bytes of one cached chunk (chunks are at most a few MiB, stored compressed).
const CHUNK_CAP: u64 = 64 << 20;

pub struct ChunkCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes this process added, to know whether trimming is worth a scan.
    added: AtomicU64,
}

/// The cache directory is walked like the local store: the user names its root, below it no
/// symlink is followed and only regular files of bounded size are read, since on a shared
/// runner another job may plant anything there.
impl ChunkCache {
    pub fn new(dir: PathBuf, max_bytes: u64) -> ChunkCache {
        ChunkCache {
            dir,
            max_bytes,
            added: AtomicU64::new(0),
        }
    }

    /// The subdirectory of chunk `id` at `place` (made with `create`), and its name in it.
    fn file(&self, id: &ChunkId, place: &Place, create: bool) -> Option<(Dir, String)> {
        let hex = hex::encode(id);
        let root = if create {
            Dir::create(&self.dir)
        } else {
            Dir::open(&self.dir)
        }
        .ok()?;
        let sub = root.subdir(&hex[..2], create).ok()??;
        Some((sub, format!("{hex}.{}", hex::encode(place))))
    }

    /// The compressed bytes of chunk `id` cached for `place`, if there (marked as used now).
    pub fn get(&self, id: &ChunkId, place: &Place) -> Option<Vec<u8>> {
        let (dir, name) = self.file(id, place, false)?;
        let b = dir.read(&name, CHUNK_CAP).ok()?;
        let _ = dir.touch_name(&name);
        Some(b)
    }

    /// Keep the compressed bytes of chunk `id`, known to be at `place` in the store. Failing
    /// to is no failure: the cache is a help.
    pub fn put(&self, id: &ChunkId, place: &Place, stored: &[u8]) {
        let Some((dir, name)) = self.file(id, place, true) else {
            return;
        };
        if dir.stat(&name).is_ok_and(|st| st.is_some()) {
            return;
        }
        if dir.write_aside(&name, stored, false).is_ok() {
            self.added.fetch_add(stored.len() as u64, Ordering::Relaxed);
        }
    }

    /// A cached chunk that failed its check.
    pub fn drop_chunk(&self, id: &ChunkId, place: &Place) {
        if let Some((dir, name)) = self.file(id, place, false) {
            let _ = dir.remove_file(&name);
        }
    }

    /// Over its size, the least recently used chunks go until it is at 90 %.
    pub fn trim(&self) {
        if self.added.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Ok(root) = Dir::open(&self.dir) else {
            return;
        };
        let mut files: Vec<(u64, u64, String, String)> = Vec::new();
        for (sub, kind) in root.entries().unwrap_or_default() {
            let Ok(d) = root.dir(&sub) else { continue };
            if kind != Kind::Dir {
                continue;
            }
            for (name, kind) in d.entries().unwrap_or_default() {
                if kind != Kind::File {
                    continue;
                }
                if let Ok(Some(st)) = d.stat(&name) {
                    files.push((st.modified_ms, st.size, sub.clone(), name));
                }
            }
        }
        let mut total = files.iter().map(|f| f.1).fold(0, u64::saturating_add);
        if total <= self.max_bytes {
            return;
        }
        files.sort();
        for (_, len, sub, name) in files {
            if total <= self.max_bytes / 10 * 9 {
                break;
            }
            if root.dir(&sub).and_then(|d| d.remove_file(&name)).is_ok() {
                total = total.saturating_sub(len);
            }
        }
    }
}
