//! What a restore keeps in memory so that it neither reads nor unpacks a frame twice: the
//! chunks the stream repeats later (a tree with many equal files refers back to frames read
//! long before), and the frames unpacked lately (a frame that neighbouring reads share).
//! Both are bounded in bytes; what does not fit is read again, never lost.

use super::{ChunkId, Manifest};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// What `Repeats` may hold.
const REPEATS_KEPT: usize = 32 << 20;
/// What `Frames` may hold.
const FRAMES_KEPT: usize = 16 << 20;

/// Chunks the stream uses again later, kept from their first use to their last. The manifest
/// says up front how often each chunk comes, so a chunk is kept only while a use is ahead.
pub struct Repeats(Mutex<RepeatsInner>);

/// A chunk by its name and length: a hostile manifest may give one name two lengths.
type Key = (ChunkId, u32);

struct RepeatsInner {
    /// Uses not yet served, for chunks that occur more than once.
    left: HashMap<Key, u32>,
    /// Where in the stream (an index into the manifest's chunks) each of them comes first.
    first: HashMap<Key, usize>,
    kept: HashMap<Key, Arc<[u8]>>,
    bytes: usize,
}

impl Repeats {
    pub fn new(m: &Manifest) -> Repeats {
        let mut left: HashMap<Key, u32> = HashMap::new();
        let mut first: HashMap<Key, usize> = HashMap::new();
        for (i, c) in m.chunks.iter().enumerate() {
            *left.entry((c.id, c.len)).or_default() += 1;
            first.entry((c.id, c.len)).or_insert(i);
        }
        left.retain(|_, n| *n > 1);
        first.retain(|k, _| left.contains_key(k));
        Repeats(Mutex::new(RepeatsInner {
            left,
            first,
            kept: HashMap::new(),
            bytes: 0,
        }))
    }

    /// The chunk's bytes, if kept (they were checked when kept); this use is counted.
    pub fn take(&self, id: &ChunkId, len: u32) -> Option<Arc<[u8]>> {
        let key = (*id, len);
        let mut g = self.0.lock().unwrap();
        let data = g.kept.get(&key)?.clone();
        if g.used(&key) == 0 {
            g.forget(&key);
        }
        Some(data)
    }

    /// Where the stream first has a chunk it repeats (an index into the manifest's chunks).
    pub fn first(&self, id: &ChunkId, len: u32) -> Option<usize> {
        self.0.lock().unwrap().first.get(&(*id, len)).copied()
    }

    /// For each chunk of `m` (the manifest this was made from), whether the stream has it
    /// there for the first time.
    pub fn firsts(&self, m: &Manifest) -> Vec<bool> {
        let g = self.0.lock().unwrap();
        (m.chunks.iter().enumerate())
            .map(|(i, c)| g.first.get(&(c.id, c.len)).is_none_or(|&f| f == i))
            .collect()
    }

    /// A use of a chunk read from elsewhere, its bytes checked: kept if used again later.
    pub fn gave(&self, id: &ChunkId, data: &[u8]) {
        let key = (*id, data.len() as u32);
        let mut g = self.0.lock().unwrap();
        if g.used(&key) == 0 {
            // Its last use: a copy kept meanwhile (two uses in one unit) goes.
            g.forget(&key);
        } else if !g.kept.contains_key(&key) && g.bytes + data.len() <= REPEATS_KEPT {
            g.bytes += data.len();
            g.kept.insert(key, data.into());
        }
    }
}

impl RepeatsInner {
    fn forget(&mut self, key: &Key) {
        if let Some(d) = self.kept.remove(key) {
            self.bytes -= d.len();
        }
    }

    /// Count one use; the uses still ahead.
    fn used(&mut self, id: &Key) -> u32 {
        match self.left.get_mut(id) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        }
    }
}

/// Frames unpacked lately, by pack index and offset; the oldest go first.
#[derive(Default)]
pub struct Frames(Mutex<FramesInner>);

#[derive(Default)]
struct FramesInner {
    kept: HashMap<(u32, u64), Arc<Vec<u8>>>,
    order: VecDeque<(u32, u64)>,
    bytes: usize,
}

impl Frames {
    pub fn get(&self, pack: u32, offset: u64) -> Option<Arc<Vec<u8>>> {
        self.0.lock().unwrap().kept.get(&(pack, offset)).cloned()
    }

    /// Whether a frame of `len` bytes would be kept.
    pub fn keeps(len: usize) -> bool {
        len <= FRAMES_KEPT / 4
    }

    pub fn keep(&self, pack: u32, offset: u64, frame: Arc<Vec<u8>>) {
        let mut g = self.0.lock().unwrap();
        if !Self::keeps(frame.len()) || g.kept.contains_key(&(pack, offset)) {
            return;
        }
        g.bytes += frame.len();
        g.kept.insert((pack, offset), frame);
        g.order.push_back((pack, offset));
        while g.bytes > FRAMES_KEPT {
            let Some(old) = g.order.pop_front() else {
                break;
            };
            if let Some(f) = g.kept.remove(&old) {
                g.bytes -= f.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunked::Chunk;

    fn chunk(n: u8) -> Chunk {
        Chunk {
            id: [n; 32],
            pack: 0,
            offset: 0,
            stored: 1,
            frame_len: 3,
            skip: 0,
            len: 3,
        }
    }

    #[test]
    fn a_repeated_chunk_is_kept_until_its_last_use() {
        let m = Manifest {
            packs: vec!["0".repeat(64)],
            chunks: vec![chunk(1), chunk(2), chunk(1), chunk(1)],
        };
        let r = Repeats::new(&m);
        r.gave(&[2; 32], b"two");
        assert!(
            r.take(&[2; 32], 3).is_none(),
            "a chunk used once is not kept"
        );
        r.gave(&[1; 32], b"one");
        assert!(
            r.take(&[1; 32], 4).is_none(),
            "another length is another chunk"
        );
        assert_eq!(&*r.take(&[1; 32], 3).unwrap(), b"one");
        assert_eq!(&*r.take(&[1; 32], 3).unwrap(), b"one");
        assert!(r.take(&[1; 32], 3).is_none(), "dropped after its last use");
        assert_eq!(r.0.lock().unwrap().bytes, 0);
        // Both uses of a chunk served from its frame in one go: nothing stays kept.
        let m = Manifest {
            packs: vec!["0".repeat(64)],
            chunks: vec![chunk(5), chunk(5)],
        };
        let r = Repeats::new(&m);
        r.gave(&[5; 32], b"abc");
        r.gave(&[5; 32], b"abc");
        assert_eq!(r.0.lock().unwrap().bytes, 0);
        assert!(r.0.lock().unwrap().kept.is_empty());
    }
}
