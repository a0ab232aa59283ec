//! One save's upload: the archive goes up in one put when small (retried whole), else as a
//! streamed write; `commit` writes the metadata object, then settles who owns the key.

use super::settle::{marker_of, owner, verdict, Verdict};
use super::{archive_of, SETTLE};
use crate::store::blob::{BlobWrite, Blobs};
use crate::store::StoreResult;
use crate::store::{Committed, Meta, Upload};
use anyhow::Result;
use bytes::Bytes;
use std::io::Write;
use std::sync::Arc;

pub(super) struct ObjectUpload<B: Blobs> {
    blobs: Arc<B>,
    /// The key's directory, ending in `/`.
    dir: String,
    /// Names without extension: `<dir><created>-<nonce>`.
    name: String,
    /// The archive while it is small enough for one put.
    buf: Vec<u8>,
    stream: Option<Box<dyn BlobWrite>>,
    /// Bytes written so far.
    size: u64,
    /// Whether some of the archive may be in the store.
    sent: bool,
    /// Whether the metadata object may be (its put was tried).
    described: bool,
    /// Committed: what is in the store is the entry's (or a loser's, already removed).
    done: bool,
}

impl<B: Blobs> ObjectUpload<B> {
    pub(super) fn new(blobs: Arc<B>, dir: String, name: String) -> ObjectUpload<B> {
        ObjectUpload {
            blobs,
            dir,
            name,
            buf: Vec::new(),
            stream: None,
            size: 0,
            sent: false,
            described: false,
            done: false,
        }
    }

    fn archive(&self) -> String {
        format!("{}.tzst", self.name)
    }

    /// The entry objects in the key's directory (only names kura writes).
    fn list_dir(&self) -> Result<Vec<String>> {
        let listed = self.blobs.block_on(self.blobs.list(&self.dir))?;
        Ok(listed
            .into_iter()
            .map(|b| b.name)
            .filter(|n| super::entry_object(n))
            .collect())
    }

    /// The archive, whole under its name.
    fn send_archive(&mut self) -> Result<()> {
        let archive = self.archive();
        let Some(stream) = self.stream.take() else {
            let body = Bytes::from(std::mem::take(&mut self.buf));
            return self.blobs.block_on(self.blobs.put(&archive, body));
        };
        let Err(e) = stream.finish() else {
            return Ok(());
        };
        // The reply can be lost after the store took the whole archive (a streamed body cannot
        // be sent again): an archive of the right size under this save's own name is this
        // upload, done. A store that writes in place may have kept part of it.
        match self.blobs.block_on(self.blobs.head(&archive)) {
            Ok(Some(n)) if n == self.size => Ok(()),
            Ok(Some(_)) => {
                let _ = self.blobs.block_on(self.blobs.delete(&archive));
                Err(e)
            }
            _ => Err(e),
        }
    }

    /// Whether this save owns the key once its metadata object is written.
    fn settle(&self, meta_obj: &str, overwrite: bool) -> Result<bool> {
        let names = self.list_dir()?;
        if !overwrite {
            return Ok(match verdict(&names, meta_obj) {
                Verdict::Won => true,
                Verdict::Lost => false,
                Verdict::Unsure => {
                    std::thread::sleep(SETTLE);
                    owner(&self.list_dir()?).as_deref() == Some(meta_obj)
                }
            });
        }
        // Overwrite: the newest save wins (names begin with their creation time), and it
        // removes only what is older than itself: a newer save's archive may be on its way.
        if !newest(&names, meta_obj) {
            return Ok(false);
        }
        // Each older save as a delete would take it: marker, metadata, archive, so that one
        // cut short leaves an entry whole or none.
        let rank = |n: &str| ["won", "json", "tzst"].iter().position(|x| n.ends_with(x));
        let mut older: Vec<&String> = names.iter().filter(|n| **n < self.name).collect();
        older.sort_by_key(|n| (super::stem_of(n).0, rank(n)));
        for n in older {
            let _ = self.blobs.block_on(self.blobs.delete(n));
        }
        Ok(true)
    }
}

impl<B: Blobs> Write for ObjectUpload<B> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.stream.is_none() && self.buf.len() + data.len() > self.blobs.whole_put_limit() {
            let mut w = self
                .blobs
                .writer(&self.archive())
                .map_err(std::io::Error::other)?;
            self.sent = true;
            w.write_all(&std::mem::take(&mut self.buf))?;
            self.stream = Some(w);
        }
        match &mut self.stream {
            Some(w) => w.write_all(data)?,
            None => self.buf.extend_from_slice(data),
        }
        self.size += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<B: Blobs> Upload for ObjectUpload<B> {
    fn commit(mut self: Box<Self>, meta: &Meta, overwrite: bool) -> StoreResult<Committed> {
        self.sent = true;
        self.send_archive()?;
        let meta_obj = format!("{}.json", self.name);
        let body = Bytes::from(serde_json::to_vec(meta).map_err(anyhow::Error::from)?);
        self.described = true;
        self.blobs.block_on(self.blobs.put(&meta_obj, body))?;
        self.done = true;
        if self.settle(&meta_obj, overwrite)? {
            // Not empty: some servers (nginx) refuse an empty PUT body.
            let mark = Bytes::from_static(b"won");
            self.blobs
                .block_on(self.blobs.put(&marker_of(&meta_obj), mark))?;
            // Looked at again once marked: a save whose marker came late (a slow put) gives way
            // to an earlier one marked meanwhile, and a newer overwrite that listed before the
            // marker was there removes this save's objects but not the marker. Each wrote
            // before it listed, this save its marker before listing again: one of the two sees
            // the other (and what both miss, the sweep removes a day later).
            let names = self.list_dir()?;
            let kept = match overwrite {
                true => newest(&names, &meta_obj),
                false => owner(&names).as_deref() == Some(meta_obj.as_str()),
            };
            if kept {
                return Ok(Committed::Saved);
            }
        }
        for o in [
            marker_of(&meta_obj),
            meta_obj.clone(),
            archive_of(&meta_obj),
        ] {
            let _ = self.blobs.block_on(self.blobs.delete(&o));
        }
        Ok(Committed::Exists)
    }
}

impl<B: Blobs> Drop for ObjectUpload<B> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Not committed: the streamed write is broken off (dropping it aborts), and whatever
        // the store kept goes: the metadata first (a put whose reply was lost may have made
        // it), so that no entry is ever seen without its archive.
        drop(self.stream.take());
        if self.described {
            let _ = self
                .blobs
                .block_on(self.blobs.delete(&format!("{}.json", self.name)));
        }
        if self.sent {
            let _ = self.blobs.block_on(self.blobs.delete(&self.archive()));
        }
    }
}

/// Whether `meta_obj` is listed and no newer metadata object is.
fn newest(names: &[String], meta_obj: &str) -> bool {
    names.iter().any(|n| n == meta_obj)
        && !names
            .iter()
            .any(|n| n.ends_with(".json") && n.as_str() > meta_obj)
}
