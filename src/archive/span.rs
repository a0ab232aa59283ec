//! Where each entry a restore wrote lies in the tar stream, with its headers as read: what a
//! restore records so that a later save can take unchanged files from the base unread.

use super::tree::{Place, Tree};
use std::io::Read;
use std::rc::Rc;

/// The most a tap keeps of one entry's headers: twice what the unpacker lets an entry's
/// headers be (its `HEADER_BUDGET`), so that whole headers always fit.
const KEPT_MAX: usize = 2 << 20;

/// Where an entry written lies in the tar stream, and where it went.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: Vec<u8>,
    pub path: std::path::PathBuf,
    /// The [`header_digest`] of its headers as they were in the stream (pax records included).
    pub header: [u8; 16],
    /// Where its first header begins, where its data begins, where its data's padding ends.
    pub start: u64,
    pub data: u64,
    pub end: u64,
}

/// What stands for an entry's headers in a restore's record: the first 16 bytes of their
/// SHA-256. Headers are small, where SHA-256 (with the CPU's SHA instructions) runs twice as
/// fast as BLAKE3, whose speed comes from hashing long inputs in parallel.
pub fn header_digest(headers: &[u8]) -> [u8; 16] {
    use sha2::Digest;
    let mut d = [0; 16];
    d.copy_from_slice(&sha2::Sha256::digest(headers)[..16]);
    d
}

/// Where a written entry lies (`start..end` of the stream, its `headers` as read) and where
/// it went; None where the headers read are not the whole of `start..` its data.
pub(super) fn span<R: Read>(
    entry: &tar::Entry<R>,
    tree: &Tree,
    place: Place,
    headers: &[u8],
    start: u64,
    end: u64,
) -> Option<Span> {
    let data = entry.raw_file_position();
    if data.checked_sub(start)? != headers.len() as u64 {
        return None;
    }
    let name = entry.path_bytes().into_owned();
    let path = tree.shown(&place);
    let header = header_digest(headers);
    Some(Span {
        name,
        path,
        header,
        start,
        data,
        end,
    })
}

/// Keeps what the tar reader reads from a stream offset on while asked to (an entry's headers,
/// after the padding of the entry before), at most a few MiB.
pub(super) struct Tap<R> {
    pub(super) inner: R,
    /// Stream offset of the next byte read.
    pub(super) at: u64,
    pub(super) kept: Kept,
}

/// What the tap keeps while asked to: from which stream offset, and the bytes so far.
pub(super) type Kept = Rc<std::cell::RefCell<Option<(u64, Vec<u8>)>>>;

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let at = self.at;
        self.at += n as u64;
        let mut kept = self.kept.borrow_mut();
        if let Some((from, k)) = kept.as_mut() {
            let skip = usize::try_from(from.saturating_sub(at))
                .unwrap_or(usize::MAX)
                .min(n);
            if k.len() + n > KEPT_MAX {
                *kept = None;
            } else {
                k.extend_from_slice(&buf[skip..n]);
            }
        }
        Ok(n)
    }
}
