//! Files a chunked save takes from its base without reading them. The restore of the base
//! records every entry it wrote: where it lies in the base's tar stream, the BLAKE3 of its
//! headers there, and the file as the restore left it (size, mtime, device, inode, ctime — what
//! restic's and borg's file caches trust). A later save of the same paths in the same job
//! finds an entry whose headers would be the same bytes and whose file still matches, and
//! references the base's chunks for a run of such entries that begins and ends at a chunk
//! boundary of the base, instead of reading, cutting and hashing it.
//!
//! No call sets a ctime back, and any write, chmod, rename or replacement moves it; a file
//! whose ctime is not before the restore's last change (the same clock tick) is read anyway,
//! since a write in that tick would leave it unchanged. Any doubt — no record, another kura,
//! another base, a hard link — reads the file.

use super::cut::Referrer;
use super::{ChunkId, Manifest};
use crate::platform::Stamp;
use crate::select::{Entry, Kind};
use std::collections::{HashMap, HashSet};

const MAGIC: &[u8; 8] = b"KURAFIL2";
/// The largest record read, unpacked: some 40 bytes and a name per entry.
const MAX_SIZE: usize = 256 << 20;

/// One entry as the restore wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub name: Vec<u8>,
    /// A file's size (0 for anything else), its mtime and stamp as the restore left them.
    pub size: u64,
    pub mtime: (i64, u32),
    pub stamp: Stamp,
    /// The `archive::header_digest` of its headers in the base's stream.
    pub header: [u8; 16],
    /// Where its headers begin, where its data begins, where its data's padding ends.
    pub start: u64,
    pub data: u64,
    pub end: u64,
}

/// What a restore of a chunked entry wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The kura that restored it: another one may write other headers.
    pub kura: String,
    /// The manifest's sha256, as the restore checked it.
    pub sha256: String,
    /// The restore's last change, as the file system's clock had it: no file changed at or
    /// after it is taken unread.
    pub settled: (i64, u32),
    pub written: Vec<Written>,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.written.len() * 128);
        b.extend_from_slice(MAGIC);
        for s in [&self.kura, &self.sha256] {
            b.push(s.len().min(255) as u8);
            b.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
        }
        b.extend_from_slice(&self.settled.0.to_le_bytes());
        b.extend_from_slice(&self.settled.1.to_le_bytes());
        b.extend_from_slice(&(self.written.len() as u64).to_le_bytes());
        for w in &self.written {
            b.extend_from_slice(&(w.name.len() as u32).to_le_bytes());
            b.extend_from_slice(&w.name);
            for n in [w.size, w.mtime.0 as u64, w.stamp.dev, w.stamp.ino] {
                b.extend_from_slice(&n.to_le_bytes());
            }
            b.extend_from_slice(&w.stamp.ctime.0.to_le_bytes());
            b.extend_from_slice(&w.mtime.1.to_le_bytes());
            b.extend_from_slice(&w.stamp.ctime.1.to_le_bytes());
            b.extend_from_slice(&w.header);
            for n in [w.start, w.data, w.end] {
                b.extend_from_slice(&n.to_le_bytes());
            }
        }
        zstd::bulk::compress(&b, 1).unwrap_or_default()
    }

    /// The record in `stored`, or None if it is not one this kura wrote whole.
    pub fn decode(stored: &[u8]) -> Option<Record> {
        use std::io::Read;
        // Grown to what the frame holds, not to the most it may hold.
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(stored)
            .ok()?
            .take(MAX_SIZE as u64 + 1)
            .read_to_end(&mut raw)
            .ok()?;
        if raw.len() > MAX_SIZE {
            return None;
        }
        let mut r = Reader(&raw);
        if r.take(8)? != MAGIC {
            return None;
        }
        let mut text = || {
            let n = r.take(1)?[0] as usize;
            String::from_utf8(r.take(n)?.to_vec()).ok()
        };
        let (kura, sha256) = (text()?, text()?);
        let settled = (r.u64()? as i64, r.u32()?);
        let count = r.u64()?;
        // Each entry takes at least 92 bytes: a count beyond what is left is a lie.
        if count > (r.0.len() / 92) as u64 {
            return None;
        }
        let mut written = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let n = r.u32()? as usize;
            let name = r.take(n)?.to_vec();
            let (size, mtime_s, dev, ino) = (r.u64()?, r.u64()? as i64, r.u64()?, r.u64()?);
            let ctime_s = r.u64()? as i64;
            let (mtime_ns, ctime_ns) = (r.u32()?, r.u32()?);
            let header = r.take(16)?.try_into().ok()?;
            let (start, data, end) = (r.u64()?, r.u64()?, r.u64()?);
            if !(start <= data && data <= end) {
                return None;
            }
            written.push(Written {
                name,
                size,
                mtime: (mtime_s, mtime_ns),
                stamp: Stamp {
                    dev,
                    ino,
                    ctime: (ctime_s, ctime_ns),
                },
                header,
                start,
                data,
                end,
            });
        }
        r.0.is_empty().then_some(Record {
            kura,
            sha256,
            settled,
            written,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// The base's entries a save may take unread, and how to put their chunks in its stream.
pub struct Unchanged {
    written: HashMap<Vec<u8>, Written>,
    settled: (i64, u32),
    /// Where each of the base's chunks begins in its stream, and the chunks.
    starts: Vec<u64>,
    chunks: Vec<(ChunkId, u32)>,
    /// The chunks whose place the restore checked (the save's base).
    checked: HashSet<ChunkId>,
    referrer: Referrer,
}

impl Unchanged {
    /// `restored` is the manifest the record's restore read; `checked` the save's base (the
    /// chunks of it a save may reference).
    pub fn new(
        record: Record,
        restored: &Manifest,
        checked: &Manifest,
        referrer: Referrer,
    ) -> Unchanged {
        let mut starts = Vec::with_capacity(restored.chunks.len() + 1);
        let mut at = 0u64;
        for c in &restored.chunks {
            starts.push(at);
            at += c.len as u64;
        }
        starts.push(at);
        Unchanged {
            settled: record.settled,
            written: record
                .written
                .into_iter()
                .map(|mut w| (std::mem::take(&mut w.name), w))
                .collect(),
            starts,
            chunks: restored.chunks.iter().map(|c| (c.id, c.len)).collect(),
            checked: checked.chunks.iter().map(|c| c.id).collect(),
            referrer,
        }
    }

    /// The base's chunks that are its bytes `start..end` exactly, if there are any.
    fn chunks_of(&self, start: u64, end: u64) -> Option<&[(ChunkId, u32)]> {
        let i = self.starts.binary_search(&start).ok()?;
        let j = self.starts.binary_search(&end).ok()?;
        self.chunks.get(i..j).filter(|c| !c.is_empty())
    }

    /// The record of `e`, if `e` is as the restore left it.
    fn untouched(&self, e: &Entry) -> Option<&Written> {
        let w = self.written.get(&e.name)?;
        let same = !matches!(e.kind, Kind::HardLink(_))
            && w.size == e.size
            && w.mtime == e.mtime
            && w.stamp == e.stamp
            && w.stamp.ctime < self.settled;
        same.then_some(w)
    }
}

impl crate::archive::Reuse for Unchanged {
    fn likely(&self, e: &Entry) -> bool {
        self.untouched(e).is_some()
    }

    fn span(&self, e: &Entry, headers: &[u8]) -> Option<(u64, u64)> {
        let w = self.untouched(e)?;
        let padded = e.size.div_ceil(512) * 512;
        let same = w.data - w.start == headers.len() as u64
            && w.end - w.data == padded
            && crate::archive::header_digest(headers) == w.header;
        same.then_some((w.start, w.end))
    }

    fn cut_at(&self, offset: u64) -> bool {
        self.starts.binary_search(&offset).is_ok()
    }

    fn takes(&self, start: u64, end: u64) -> bool {
        self.chunks_of(start, end)
            .is_some_and(|c| c.iter().all(|c| self.checked.contains(&c.0)))
    }

    fn refer(&self, start: u64, end: u64) -> std::io::Result<()> {
        let chunks = self
            .chunks_of(start, end)
            .ok_or_else(|| std::io::Error::other("the base has no chunks there"))?;
        self.referrer.refer(end - start, chunks.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_a_damaged_one_does_not() {
        let r = Record {
            kura: "1.2.3".into(),
            sha256: "ab".repeat(32),
            settled: (1_700_000_000, 5),
            written: (0..50)
                .map(|i| Written {
                    name: format!("d/f{i}").into_bytes(),
                    size: i * 100,
                    mtime: (i as i64, 7),
                    stamp: Stamp {
                        dev: 1,
                        ino: 1000 + i,
                        ctime: (-(i as i64), 9),
                    },
                    header: [i as u8; 16],
                    start: i * 1024,
                    data: i * 1024 + 512,
                    end: i * 1024 + 1024,
                })
                .collect(),
        };
        let stored = r.encode();
        assert_eq!(Record::decode(&stored), Some(r.clone()));
        let raw = zstd::bulk::decompress(&stored, MAX_SIZE).unwrap();
        for cut in [0, 8, 50, raw.len() / 2, raw.len() - 1] {
            let short = zstd::bulk::compress(&raw[..cut], 1).unwrap();
            assert_eq!(Record::decode(&short), None, "{cut}");
        }
        let mut longer = raw.clone();
        longer.push(0);
        assert_eq!(
            Record::decode(&zstd::bulk::compress(&longer, 1).unwrap()),
            None
        );
        assert_eq!(Record::decode(b"not zstd"), None);
    }
}
