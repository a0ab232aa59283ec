//! Chunked entries: the archive's tar stream cut into content-defined chunks (FastCDC), each
//! named by its BLAKE3; the new chunks of a run of neighbours are compressed together as one
//! zstd frame and appended to immutable packs (about 32 MiB, named by their own hash) under the
//! store's `.packs/`. The entry itself is a manifest listing the chunks in stream order with
//! their pack, frame and place in it. A save references the chunks its base entry already has
//! and uploads only new ones; packs go up first and the manifest last, so a killed save leaves
//! no visible entry, only unreferenced packs for `prune`.

mod cache;
mod cut;
mod entries;
mod frame;
mod manifest;
mod restore;
mod reuse;
mod save;
mod sparse;
mod unchanged;

pub use cache::ChunkCache;
pub use cut::ChunkSink;
pub use manifest::{Chunk, DecodeError, Manifest, FRAME_LIMIT};
pub use restore::ChunkSource;
pub use save::{save, SaveStats, Tuning};
pub use sparse::{sparse_packs, MIN_LIVE};
pub use unchanged::{Record, Unchanged, Written};

use crate::error::StoreResult;
use std::ops::Range;

/// FastCDC's average chunk size by default; the minimum is a quarter of the average, the
/// maximum four times it. 16 KiB finds what changed among small files (a 64 KiB chunk holds
/// some thirty 2 KiB files of a `node_modules`) at the same stored bytes, since frames
/// compress neighbouring chunks together (README: "Chunked entries against archive entries").
pub const AVG_CHUNK: u32 = 16 << 10;
/// A pack is sealed and uploaded once it holds this many bytes.
pub const PACK_TARGET: usize = 32 << 20;

/// A chunk's name: the BLAKE3 of its uncompressed bytes.
pub type ChunkId = [u8; 32];

/// A pack as a store lists it.
#[derive(Debug, Clone)]
pub struct PackInfo {
    pub name: String,
    pub size: u64,
    pub modified_ms: u64,
}

/// Where a store keeps packs: immutable objects under one prefix, read by byte ranges.
pub trait Packs: Send + Sync {
    /// Store a whole pack; its name is its hash, so a pack that exists already is left alone.
    /// Given owned, so that a store that sends it on needs no copy.
    fn put(&self, name: &str, data: bytes::Bytes) -> StoreResult<()>;
    /// Bytes `range` of a pack. A pack that is gone is [`StoreError::NotFound`].
    fn get(&self, name: &str, range: Range<u64>) -> StoreResult<Vec<u8>>;
    fn list(&self) -> StoreResult<Vec<PackInfo>>;
    fn delete(&self, name: &str) -> StoreResult<()>;
    /// Prune's note beside the packs (`dead.json`: which packs it found unreferenced, since
    /// when); None when there is none.
    fn read_note(&self) -> StoreResult<Option<Vec<u8>>>;
    fn write_note(&self, data: &[u8]) -> StoreResult<()>;
    /// Remove a pack this process made moments ago for a save that was stopped, where the
    /// store can tell that no other save has written or reused it since; whether it did. A
    /// pack it cannot withdraw is left to prune, which deletes it a day after finding it
    /// unreferenced.
    fn withdraw(&self, _name: &str) -> bool {
        false
    }
    /// Whether the store deletes packs no entry references itself (an OCI registry's garbage
    /// collection): then prune leaves them to it.
    fn collected_by_store(&self) -> bool {
        false
    }
}

/// The name of prune's note among the packs.
pub const NOTE: &str = "dead.json";
/// The largest note read: it names each dead pack with a time, a few dozen bytes a pack.
pub const NOTE_CAP: u64 = 64 << 20;

/// Whether a pack name is one kura writes (64 lowercase hex digits): never a path.
pub fn valid_pack_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
