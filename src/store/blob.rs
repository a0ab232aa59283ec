//! The blob primitive under the object stores (S3, HTTP/WebDAV): named byte strings in one
//! flat namespace whose names hold `/`. It knows nothing of entries, keys or packs; the entry
//! layer (`store::objects`) writes those rules once on top of it.
//!
//! Everything a blob store says is hostile input: a listing is bounded by its adapter (pages,
//! loops), a whole read by the caller's cap, a ranged read never returns more than asked.

use anyhow::Result;
use bytes::Bytes;
use std::future::Future;
use std::io::Write;
use std::ops::Range;

/// One listed blob.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobInfo {
    /// The whole name, from the store's root.
    pub name: String,
    pub size: u64,
    /// Last modification, milliseconds since the epoch; 0 when the store does not say.
    pub modified_ms: u64,
}

/// A streamed write of one blob: nothing is there under its name until `finish` says so;
/// dropped unfinished, it leaves nothing (or, on servers that write in place, what the entry
/// layer's sweep removes).
pub trait BlobWrite: Write + Send {
    fn finish(self: Box<Self>) -> Result<()>;
}

/// The operations an object store gives. Methods are async so that ranged reads run in
/// parallel on the store's runtime; the entry layer blocks on them.
pub trait Blobs: Send + Sync + 'static {
    /// For messages: the store's URL, without credentials.
    fn location(&self) -> String;

    /// The runtime the futures run on.
    fn runtime(&self) -> &tokio::runtime::Runtime;

    /// Wait for one of these futures (the entry layer is synchronous).
    fn block_on<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime().block_on(f)
    }

    /// Writes of at most this many bytes go up in one `put` (retried whole); larger ones stream.
    fn whole_put_limit(&self) -> usize;

    /// Ranged downloads: bytes per range, ranges in flight.
    fn ranges(&self) -> (u64, usize);

    /// Every blob whose name starts with `prefix` (a string prefix: `a/b` lists `a/bc/d`).
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<BlobInfo>>> + Send;

    /// Bytes `range` of a blob: fewer where it ends first, none past its end; None when there
    /// is no blob of that name.
    fn get_range(
        &self,
        name: &str,
        range: Range<u64>,
    ) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// A whole blob of at most `cap` bytes; None when there is none. A larger one is an error:
    /// no store chooses how much kura reads.
    fn get(&self, name: &str, cap: u64) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// The size of a blob; None when there is none.
    fn head(&self, name: &str) -> impl Future<Output = Result<Option<u64>>> + Send;

    fn put(&self, name: &str, data: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// A streamed write, for blobs larger than [`Blobs::whole_put_limit`].
    fn writer(&self, name: &str) -> Result<Box<dyn BlobWrite>>;

    /// Delete a blob; one that is not there is no failure.
    fn delete(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
}
