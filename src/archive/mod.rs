//! Archives: pack (selection → pax tar → zstd) and unpack (zstd or gzip → tar → files).
//! Knows nothing of stores: it writes to any `Write` and reads from any `Read`.

// The extractor's directory handles: Unix only (see `platform.rs`).
#[cfg(unix)]
mod journal;
mod pack;
mod pipe;
mod span;
#[cfg(unix)]
mod tree;
mod unpack;

#[cfg(test)]
pub use pack::replay;
pub use pack::{pack, PackOptions, PackStats, Reuse, Walk};
pub use span::{header_digest, Span};
pub use tree::Tree;
pub use unpack::{stopped, unpack, unpack_tar, Declared, Extraction, UnpackError, UnpackOptions};

use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The compression component of GitHub's version hash for what kura writes.
pub const COMPRESSION: &str = "zstd-without-long";

/// Counts and hashes what passes through, for the sha256 and size recorded with an entry.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
    progress: Option<Arc<AtomicU64>>,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
            progress: None,
        }
    }

    /// Also publish the byte count, for progress lines.
    pub fn with_progress(mut self, counter: Arc<AtomicU64>) -> Self {
        self.progress = Some(counter);
        self
    }

    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Some(p) = &self.progress {
            p.store(self.count, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts and hashes what is read, so a restore can check the sha256 recorded at save.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    /// The source itself failed (a store or network error, not bad bytes).
    pub source_failed: bool,
    progress: Option<Arc<AtomicU64>>,
    /// Count only (what is read is checked otherwise, chunk by chunk).
    count_only: bool,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            source_failed: false,
            progress: None,
            count_only: false,
        }
    }

    /// Count without hashing.
    pub fn count_only(mut self) -> Self {
        self.count_only = true;
        self
    }

    /// Also publish the byte count, for progress lines.
    pub fn with_progress(mut self, counter: Arc<AtomicU64>) -> Self {
        self.progress = Some(counter);
        self
    }

    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .inspect_err(|_| self.source_failed = true)?;
        if !self.count_only {
            self.hasher.update(&buf[..n]);
        }
        self.count += n as u64;
        if let Some(p) = &self.progress {
            p.store(self.count, Ordering::Relaxed);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
