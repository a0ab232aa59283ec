//! Which packs a save should stop referencing. Packs are immutable, so a pack whose chunks
//! are mostly dead stays whole while any entry uses one of its chunks: an evolving cache
//! would keep every pack it ever wrote. Instead a save stores again the chunks it would have
//! taken from a sparse pack (its base uses less than `MIN_LIVE` of it), next to its new
//! chunks; once the older entries go, no entry references the sparse pack and prune sweeps it.
//! Rewriting costs upload only when a pack crosses the threshold, and keeps the store within
//! about 1 / `MIN_LIVE` of what the live entries use.

use super::Manifest;
use std::collections::{HashMap, HashSet};

/// A pack is kept in use while its base entry uses at least this share of its bytes.
pub const MIN_LIVE: f64 = 0.6;

/// The packs (indexes into `m.packs`) of which `m` uses less than `MIN_LIVE`, given each
/// pack's stored size (None: unknown, never sparse). A chunk takes its share of its frame's
/// stored bytes by its length in the unpacked frame.
pub fn sparse_packs(m: &Manifest, sizes: &[Option<u64>]) -> HashSet<u32> {
    #[derive(Default)]
    struct Frame {
        stored: u64,
        len: u64,
        used: u64,
    }
    let mut frames: HashMap<(u32, u64), Frame> = HashMap::new();
    let mut seen = HashSet::new();
    for c in &m.chunks {
        let f = frames.entry((c.pack, c.offset)).or_default();
        f.stored = c.stored as u64;
        f.len = f.len.max(c.frame_len as u64);
        if seen.insert((c.pack, c.offset, c.skip)) {
            f.used += c.len as u64;
        }
    }
    let mut live = vec![0f64; m.packs.len()];
    for ((pack, _), f) in &frames {
        if f.len > 0 {
            live[*pack as usize] += f.stored as f64 * (f.used.min(f.len) as f64 / f.len as f64);
        }
    }
    (0..m.packs.len() as u32)
        .filter(|&p| {
            sizes
                .get(p as usize)
                .copied()
                .flatten()
                .is_some_and(|size| size > 0 && live[p as usize] < MIN_LIVE * size as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunked::Chunk;

    /// A chunk of `len` bytes at `skip` in a frame of 800 bytes, 100 stored, at `offset`.
    fn chunk(pack: u32, offset: u64, skip: u32, len: u32) -> Chunk {
        Chunk {
            id: [skip as u8; 32],
            pack,
            offset,
            stored: 100,
            frame_len: 800,
            skip,
            len,
        }
    }

    #[test]
    fn a_pack_mostly_unused_is_sparse_and_a_full_one_is_not() {
        let m = Manifest {
            packs: vec!["a".repeat(64), "b".repeat(64)],
            chunks: vec![
                // Pack 0: two frames, one used whole, one half: 150 of 200 bytes.
                chunk(0, 0, 0, 400),
                chunk(0, 0, 400, 400),
                chunk(0, 100, 0, 400),
                // Pack 1: a frame of which 200 of 800 bytes are used: 25 of 100 bytes.
                chunk(1, 0, 0, 100),
                chunk(1, 0, 300, 100),
            ],
        };
        assert_eq!(
            sparse_packs(&m, &[Some(200), Some(100)]),
            HashSet::from([1])
        );
        // Pack 0 in a pack of 300 bytes (frames this entry does not use): 150 of 300.
        assert_eq!(
            sparse_packs(&m, &[Some(300), Some(100)]),
            HashSet::from([0, 1])
        );
        // A pack of unknown size is never sparse.
        assert!(sparse_packs(&m, &[Some(200), None]).is_empty());
    }

    #[test]
    fn a_repeated_chunk_counts_once() {
        let mut m = Manifest {
            packs: vec!["a".repeat(64)],
            chunks: vec![chunk(0, 0, 0, 500); 10],
        };
        // 500 of 800 bytes: 62.5 of 100, used enough; ten uses do not make it more.
        assert!(sparse_packs(&m, &[Some(100)]).is_empty());
        m.chunks = vec![chunk(0, 0, 0, 400); 10];
        assert_eq!(sparse_packs(&m, &[Some(100)]), HashSet::from([0]));
    }
}
