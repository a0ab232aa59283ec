//! The packs of chunked entries on an object store: `.packs/<name>`, one put each (a pack is
//! about 32 MiB), read by ranges, listed with their sizes and times for `prune`.

use super::PACKS;
use crate::chunked::{valid_pack_name, PackInfo, Packs, NOTE, NOTE_CAP};
use crate::store::blob::Blobs;
use crate::store::{StoreError, StoreResult};
use anyhow::anyhow;
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;

pub(super) struct BlobPacks<B: Blobs>(pub Arc<B>);

impl<B: Blobs> BlobPacks<B> {}

impl<B: Blobs> Packs for BlobPacks<B> {
    fn put(&self, name: &str, data: Bytes) -> StoreResult<()> {
        Ok(self
            .0
            .block_on(self.0.put(&format!("{PACKS}{name}"), data))?)
    }

    fn get(&self, name: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        let want = range.end.saturating_sub(range.start);
        match self
            .0
            .block_on(self.0.get_range(&format!("{PACKS}{name}"), range))?
        {
            Some(b) if b.len() as u64 > want => Err(anyhow!(
                "pack {name}: asked for {want} bytes, the store sent {}",
                b.len()
            )
            .into()),
            // Without a copy where the reply's buffer is its own.
            Some(b) => Ok(Vec::from(b)),
            // A pack gone is the entry's fault, not the network's: named as such.
            None => Err(StoreError::NotFound(format!(
                "pack {name} is gone from {}{PACKS}",
                self.0.location()
            ))),
        }
    }

    fn list(&self) -> StoreResult<Vec<PackInfo>> {
        let listed = self.0.block_on(self.0.list(PACKS))?;
        Ok(listed
            .into_iter()
            .filter_map(|b| {
                let name = b.name.strip_prefix(PACKS)?;
                valid_pack_name(name).then(|| PackInfo {
                    name: name.to_string(),
                    size: b.size,
                    modified_ms: b.modified_ms,
                })
            })
            .collect())
    }

    fn delete(&self, name: &str) -> StoreResult<()> {
        Ok(self.0.block_on(self.0.delete(&format!("{PACKS}{name}")))?)
    }

    fn read_note(&self) -> StoreResult<Option<Vec<u8>>> {
        let got = self
            .0
            .block_on(self.0.get(&format!("{PACKS}{NOTE}"), NOTE_CAP))?;
        Ok(got.map(|b| b.to_vec()))
    }

    fn write_note(&self, data: &[u8]) -> StoreResult<()> {
        self.put(NOTE, Bytes::copy_from_slice(data))
    }
}
