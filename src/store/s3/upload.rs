//! One save's upload: the archive streams into one PUT (small) or a multipart upload with
//! parts in parallel; `commit` writes the metadata object, then settles who owns the key.

use super::{archive_of, explain, obj, Tuning, SETTLE};
use crate::store::settle::{marker_of, owner, verdict, Verdict};
use crate::store::{Committed, Meta, Upload};
use anyhow::Result;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use std::io::Write;
use std::sync::Arc;

/// What an upload needs of its store.
pub(super) struct S3Handle {
    pub(super) rt: Arc<tokio::runtime::Runtime>,
    pub(super) s3: Arc<AmazonS3>,
    pub(super) bucket: String,
    pub(super) tuning: Tuning,
}

enum Pending {
    /// Small archives go up in one PUT at commit.
    Buffer(Vec<u8>),
    Multi(WriteMultipart),
}

pub(super) struct S3Upload {
    store: S3Handle,
    dir: String,
    /// Object names without extension: `<dir><created>-<nonce>`.
    name: String,
    state: Option<Pending>,
    /// Bytes written so far.
    size: u64,
}

impl S3Upload {
    /// An upload of the entry named `name` (no extension) in key directory `dir`.
    pub(super) fn new(store: S3Handle, dir: String, name: String) -> S3Upload {
        S3Upload {
            store,
            dir,
            name,
            state: Some(Pending::Buffer(Vec::new())),
            size: 0,
        }
    }

    fn archive(&self) -> ObjPath {
        obj(format!("{}.tzst", self.name))
    }
}

impl Write for S3Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // WriteMultipart spawns its part uploads onto the current runtime.
        let rt = self.store.rt.clone();
        let _in_runtime = rt.enter();
        let h = &self.store;
        let archive = self.archive();
        match self.state.as_mut().expect("write after commit") {
            Pending::Buffer(b) if b.len() + buf.len() <= h.tuning.part => b.extend_from_slice(buf),
            Pending::Buffer(b) => {
                let upload = h
                    .rt
                    .block_on(h.s3.put_multipart(&archive))
                    .map_err(|e| std::io::Error::other(explain(e, &h.bucket, "s3:PutObject")))?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, h.tuning.part);
                w.write(b);
                w.write(buf);
                self.state = Some(Pending::Multi(w));
            }
            Pending::Multi(w) => {
                h.rt.block_on(w.wait_for_capacity(h.tuning.parallel))
                    .map_err(|e| std::io::Error::other(explain(e, &h.bucket, "s3:PutObject")))?;
                w.write(buf);
            }
        }
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Upload for S3Upload {
    fn commit(mut self: Box<Self>, meta: &Meta, overwrite: bool) -> Result<Committed> {
        let archive = self.archive();
        let state = self.state.take().expect("committed twice");
        let h = &self.store;
        let perm = |e| explain(e, &h.bucket, "s3:PutObject");
        h.rt.block_on(async {
            match state {
                Pending::Buffer(b) => {
                    h.s3.put(&archive, PutPayload::from(b))
                        .await
                        .map(|_| ())
                        .map_err(perm)
                }
                Pending::Multi(w) => match w.finish().await {
                    Ok(_) => Ok(()),
                    // The completion's reply can be lost after S3 carried it out; asked again,
                    // S3 no longer knows the upload. The object's name is this save's own, so
                    // an object of the right size there is this upload, complete.
                    Err(e) => match h.s3.head(&archive).await {
                        Ok(o) if o.size == self.size => Ok(()),
                        _ => Err(perm(e)),
                    },
                },
            }
        })?;
        let meta_obj = format!("{}.json", self.name);
        let body = serde_json::to_vec(meta)?;
        h.rt.block_on(h.s3.put(&obj(meta_obj.as_str()), PutPayload::from(body)))
            .map_err(perm)?;
        // Settle who owns the key (see the module comment).
        let names = self.list_dir()?;
        let won = if overwrite {
            // A newer overwrite wins; older entries go.
            if names.iter().any(|n| n.ends_with(".json") && *n > meta_obj) {
                false
            } else {
                let mine = [meta_obj.clone(), archive_of(&meta_obj)];
                let older: Vec<String> = names.into_iter().filter(|n| !mine.contains(n)).collect();
                h.rt.block_on(async {
                    for o in &older {
                        let _ = h.s3.delete(&obj(o.as_str())).await;
                    }
                });
                true
            }
        } else {
            match verdict(&names, &meta_obj) {
                Verdict::Won => true,
                Verdict::Lost => false,
                Verdict::Unsure => {
                    std::thread::sleep(SETTLE);
                    owner(&self.list_dir()?).as_deref() == Some(meta_obj.as_str())
                }
            }
        };
        if won {
            h.rt.block_on(h.s3.put(&obj(marker_of(&meta_obj)), PutPayload::new()))
                .map_err(perm)?;
            return Ok(Committed::Saved);
        }
        h.rt.block_on(async {
            for o in [meta_obj.clone(), archive_of(&meta_obj)] {
                let _ = h.s3.delete(&obj(o.as_str())).await;
            }
        });
        Ok(Committed::Exists)
    }
}

impl S3Upload {
    fn list_dir(&self) -> Result<Vec<String>> {
        let h = &self.store;
        Ok(super::list_objects(&h.s3, &h.rt, &h.bucket, &self.dir)?
            .into_iter()
            .map(|o| o.location.to_string())
            .collect())
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        // Not committed: abort the multipart upload so no parts linger.
        if let Some(Pending::Multi(w)) = self.state.take() {
            let rt = self.store.rt.clone();
            let _in_runtime = rt.enter();
            let _ = rt.block_on(w.abort());
        }
    }
}
