//! The manifest of a chunked entry, as stored: zstd around a small binary layout, since a
//! 2 GB tree has some 30,000 chunks and their hashes do not compress.
//!
//! ```text
//! "KURACHK2"
//! u32 packs,  then per pack:  u8 length, name (ASCII hex)
//! u64 chunks, then per chunk: id (32), u32 pack index, u64 frame offset, u32 frame length,
//!                             u32 frame length unpacked, u32 offset in the unpacked frame,
//!                             u32 length
//! ```
//! Chunks are compressed in frames: the new chunks of a run of neighbours in the stream go into
//! one zstd frame, so that they compress together (a chunk alone loses what its neighbours
//! share). A chunk is its frame's unpacked bytes from its offset, for its length.
//! All integers little-endian. Decoding checks every bound, so a hostile manifest is an error,
//! never a panic or a huge allocation.

use super::{valid_pack_name, ChunkId};
use anyhow::{bail, ensure, Context, Result};

const MAGIC: &[u8; 8] = b"KURACHK2";
const RECORD: usize = 32 + 4 + 8 + 4 + 4 + 4 + 4;
/// No frame is bigger than this, stored or unpacked (frames hold about 8 MiB).
pub const FRAME_LIMIT: u32 = 16 << 20;
/// No manifest is bigger than this decompressed: 1.2 million chunks, an 80 GB tree.
const MAX_SIZE: u64 = 64 << 20;

/// Why stored bytes are no manifest this kura reads.
#[derive(Debug)]
pub enum DecodeError {
    /// A manifest of another layout version: written by another kura, not damaged.
    OtherVersion(char),
    /// Not a manifest, or a damaged one.
    Damaged(anyhow::Error),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::OtherVersion(v) => write!(
                f,
                "the chunk manifest is of layout {v} (this kura reads {}): saved by another kura version",
                MAGIC[7] as char
            ),
            DecodeError::Damaged(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// One chunk of the stream: the frame that holds it, and where in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub id: ChunkId,
    pub pack: u32,
    /// The frame's place in the pack, and its length there.
    pub offset: u64,
    pub stored: u32,
    /// The frame's length unpacked: with `stored`, what share of a pack a chunk takes.
    pub frame_len: u32,
    /// Where the chunk starts in the unpacked frame.
    pub skip: u32,
    pub len: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub packs: Vec<String>,
    pub chunks: Vec<Chunk>,
}

impl Manifest {
    /// The tar stream's length.
    pub fn stream_len(&self) -> u64 {
        self.chunks.iter().map(|c| c.len as u64).sum()
    }

    /// The bytes of the frames the entry references, each counted once, as stored.
    pub fn frames_len(&self) -> u64 {
        let mut frames: Vec<(u32, u64, u32)> = self
            .chunks
            .iter()
            .map(|c| (c.pack, c.offset, c.stored))
            .collect();
        frames.sort_unstable();
        frames.dedup();
        frames.iter().map(|f| f.2 as u64).sum()
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut raw = Vec::with_capacity(16 + self.packs.len() * 65 + self.chunks.len() * RECORD);
        raw.extend_from_slice(MAGIC);
        raw.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            ensure!(valid_pack_name(p), "bad pack name {p:?}");
            raw.push(p.len() as u8);
            raw.extend_from_slice(p.as_bytes());
        }
        raw.extend_from_slice(&(self.chunks.len() as u64).to_le_bytes());
        for c in &self.chunks {
            raw.extend_from_slice(&c.id);
            raw.extend_from_slice(&c.pack.to_le_bytes());
            raw.extend_from_slice(&c.offset.to_le_bytes());
            raw.extend_from_slice(&c.stored.to_le_bytes());
            raw.extend_from_slice(&c.frame_len.to_le_bytes());
            raw.extend_from_slice(&c.skip.to_le_bytes());
            raw.extend_from_slice(&c.len.to_le_bytes());
        }
        Ok(zstd::bulk::compress(&raw, 3)?)
    }

    pub fn decode(stored: &[u8]) -> std::result::Result<Manifest, DecodeError> {
        let raw = Self::decompress(stored).map_err(DecodeError::Damaged)?;
        match raw.get(..8) {
            Some(m) if m != MAGIC && m.starts_with(b"KURACHK") => {
                Err(DecodeError::OtherVersion(m[7] as char))
            }
            _ => Self::parse(&raw).map_err(DecodeError::Damaged),
        }
    }

    fn decompress(stored: &[u8]) -> Result<Vec<u8>> {
        let mut raw = Vec::new();
        let mut dec = zstd::stream::read::Decoder::new(stored).context("not a chunk manifest")?;
        std::io::copy(&mut std::io::Read::take(&mut dec, MAX_SIZE + 1), &mut raw)
            .context("not a chunk manifest")?;
        ensure!(
            (raw.len() as u64) <= MAX_SIZE,
            "the chunk manifest is too big"
        );
        Ok(raw)
    }

    fn parse(raw: &[u8]) -> Result<Manifest> {
        let mut r = Cursor(raw);
        let magic = r.take(8)?;
        ensure!(magic == MAGIC, "not a chunk manifest (bad magic)");
        let n_packs = r.u32()? as usize;
        ensure!(n_packs <= r.left() / 65, "the chunk manifest is cut short");
        let mut packs = Vec::with_capacity(n_packs);
        for _ in 0..n_packs {
            let len = r.take(1)?[0] as usize;
            let name = std::str::from_utf8(r.take(len)?).unwrap_or_default();
            ensure!(valid_pack_name(name), "the chunk manifest names a bad pack");
            packs.push(name.to_string());
        }
        let n = r.u64()?;
        ensure!(
            n == (r.left() / RECORD) as u64 && r.left() % RECORD == 0,
            "the chunk manifest's length does not match its chunk count"
        );
        let mut chunks = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let id: ChunkId = r.take(32)?.try_into().unwrap();
            let c = Chunk {
                id,
                pack: r.u32()?,
                offset: r.u64()?,
                stored: r.u32()?,
                frame_len: r.u32()?,
                skip: r.u32()?,
                len: r.u32()?,
            };
            if c.pack as usize >= packs.len() || c.offset.checked_add(c.stored as u64).is_none() {
                bail!("the chunk manifest points outside its packs");
            }
            // Frames are far smaller: a bigger one is a hostile manifest asking a restore to
            // allocate gigabytes.
            ensure!(
                c.stored <= FRAME_LIMIT && c.frame_len <= FRAME_LIMIT,
                "the chunk manifest names a frame of more than {FRAME_LIMIT} bytes"
            );
            ensure!(
                c.skip as u64 + c.len as u64 <= c.frame_len as u64,
                "the chunk manifest puts a chunk outside its frame"
            );
            chunks.push(c);
        }
        Ok(Manifest { packs, chunks })
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.0.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(n <= self.0.len(), "the chunk manifest is cut short");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn manifest(n_packs: usize, chunks: Vec<(u8, u32, u64, u32, u32)>) -> Manifest {
        // The frame holds the chunk alone.
        Manifest {
            packs: (0..n_packs).map(|i| format!("{i:064x}")).collect(),
            chunks: chunks
                .into_iter()
                .map(|(b, p, offset, stored, len)| Chunk {
                    id: [b; 32],
                    pack: p % n_packs as u32,
                    offset,
                    stored,
                    frame_len: len,
                    skip: 0,
                    len,
                })
                .collect(),
        }
    }

    proptest! {
        #[test]
        fn a_manifest_reads_back_as_written(
            n_packs in 1usize..5,
            chunks in proptest::collection::vec((any::<u8>(), any::<u32>(), 0u64..1 << 40, 0..=FRAME_LIMIT, 0..=FRAME_LIMIT), 0..200),
        ) {
            let m = manifest(n_packs, chunks);
            prop_assert_eq!(Manifest::decode(&m.encode().unwrap()).unwrap(), m);
        }

        #[test]
        fn a_damaged_manifest_is_an_error_never_a_panic(cut in 0usize..400, flip in 0usize..400) {
            let m = manifest(2, (0..5).map(|i| (i, i as u32, 10, 5, 7)).collect());
            let mut raw = zstd::bulk::decompress(&m.encode().unwrap(), 1 << 20).unwrap();
            if flip < raw.len() { raw[flip] ^= 0x5a; }
            raw.truncate(cut.min(raw.len()));
            let _ = Manifest::decode(&zstd::bulk::compress(&raw, 1).unwrap());
        }
    }

    #[test]
    fn another_layout_version_is_named_as_such() {
        let mut raw =
            zstd::bulk::decompress(&manifest(1, vec![]).encode().unwrap(), 1 << 20).unwrap();
        raw[7] = b'9';
        let err = Manifest::decode(&zstd::bulk::compress(&raw, 1).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::OtherVersion('9')), "{err}");
        raw[0] = b'X';
        let err = Manifest::decode(&zstd::bulk::compress(&raw, 1).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::Damaged(_)), "{err}");
    }

    #[test]
    fn pointers_outside_the_packs_are_refused() {
        let mut m = manifest(1, vec![(1, 0, 0, 1, 1)]);
        let ok = m.encode().unwrap();
        assert!(Manifest::decode(&ok).is_ok());
        m.chunks[0].pack = 1;
        m.packs.push(format!("{:064x}", 9));
        let two = m.encode().unwrap();
        m.packs.pop();
        // Written with two packs, read back with the second one's name dropped: refused.
        let mut raw = zstd::bulk::decompress(&two, 1 << 20).unwrap();
        raw[8..12].copy_from_slice(&1u32.to_le_bytes());
        raw.drain(12 + 65..12 + 130);
        let err = Manifest::decode(&zstd::bulk::compress(&raw, 1).unwrap()).unwrap_err();
        assert!(err.to_string().contains("outside its packs"), "{err}");
    }
}
