//! The packs of chunked entries on S3: `<prefix>/.packs/<name>`, one PUT each (a pack is
//! about 32 MiB), read by ranges, listed with their sizes and times for `prune`.

use super::{explain, obj};
use crate::chunked::{valid_pack_name, PackInfo, Packs, NOTE};
use anyhow::Result;
use object_store::aws::AmazonS3;
use object_store::{ObjectStoreExt, PutPayload};
use std::ops::Range;
use std::sync::Arc;

pub(super) struct S3Packs {
    pub rt: Arc<tokio::runtime::Runtime>,
    pub s3: Arc<AmazonS3>,
    pub bucket: String,
    /// `<prefix>/.packs/`
    pub dir: String,
}

impl Packs for S3Packs {
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        let path = obj(format!("{}{name}", self.dir));
        let body = PutPayload::from(data.to_vec());
        self.rt
            .block_on(self.s3.put(&path, body))
            .map(drop)
            .map_err(|e| explain(e, &self.bucket, "s3:PutObject"))
    }

    fn get(&self, name: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let path = obj(format!("{}{name}", self.dir));
        match self.rt.block_on(self.s3.get_range(&path, range.clone())) {
            Ok(b) => Ok(b.to_vec()),
            // A pack gone is the entry's fault, not the network's: named as such.
            Err(object_store::Error::NotFound { .. }) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("pack {name} is gone from s3://{}/{}", self.bucket, self.dir),
            )
            .into()),
            // A range past the pack's end: what the store has of it, which the restore finds
            // is short (damage); any other failure is the store's.
            Err(e) => match self.rt.block_on(self.s3.head(&path)) {
                Ok(head) if head.size < range.end => {
                    let start = range.start.min(head.size);
                    if start == head.size {
                        return Ok(Vec::new());
                    }
                    self.rt
                        .block_on(self.s3.get_range(&path, start..head.size))
                        .map(|b| b.to_vec())
                        .map_err(|e| explain(e, &self.bucket, "s3:GetObject"))
                }
                _ => Err(explain(e, &self.bucket, "s3:GetObject")),
            },
        }
    }

    fn list(&self) -> Result<Vec<PackInfo>> {
        let listed = super::list_objects(&self.s3, &self.rt, &self.bucket, &self.dir)?;
        Ok(listed
            .into_iter()
            .filter_map(|o| {
                let name = o.location.to_string();
                let name = name.strip_prefix(&self.dir)?;
                valid_pack_name(name).then(|| PackInfo {
                    name: name.to_string(),
                    size: o.size,
                    modified_ms: o.last_modified.timestamp_millis().max(0) as u64,
                })
            })
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = obj(format!("{}{name}", self.dir));
        match self.rt.block_on(self.s3.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(explain(e, &self.bucket, "s3:DeleteObject")),
        }
    }

    fn read_note(&self) -> Result<Option<Vec<u8>>> {
        let path = obj(format!("{}{NOTE}", self.dir));
        let got = self.rt.block_on(async {
            match self.s3.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.map(|b| b.map(|b| b.to_vec()))
            .map_err(|e| explain(e, &self.bucket, "s3:GetObject"))
    }

    fn write_note(&self, data: &[u8]) -> Result<()> {
        self.put(NOTE, data)
    }
}
