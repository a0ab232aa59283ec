//! Any S3-compatible object store: `s3://BUCKET/PREFIX[?endpoint=URL&region=R]`. This is the
//! blob adapter; the entries on top of it (layout, settling, packs) are `store::objects`'.
//!
//! The client is object_store's (credential chain from the environment, web identity,
//! container and instance credentials; retries with backoff). Names are the entry layer's,
//! under the URL's prefix. Small blobs go up in one PUT; larger ones as a multipart upload
//! with parts in parallel.

mod capped;
mod config;
mod explain;

use explain::explain;

use config::Config;

use crate::store::blob::{BlobInfo, BlobWrite, Blobs};
use crate::store::http;
use crate::store::objects::Objects;
use crate::vars::Vars;
use anyhow::{bail, Result};
use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

/// Default part size of multipart uploads and ranged downloads (`part_size=`,
/// `KURA_S3_PART_SIZE`); S3 wants at least 5 MiB.
const PART: usize = 8 << 20;
/// Default parts in flight, each way (`concurrency=`, `KURA_S3_CONCURRENCY`).
const PARALLEL: usize = 8;
/// Most pages of one listing (1,000 objects each): far more than a cache prefix holds, and a
/// bound on a server that never stops answering "more".
/// Most objects one listing may hold (a thousand a page).
const MAX_OBJECTS: usize = 1_000_000;

const MAX_PAGES: usize = 5000;

#[derive(Clone, Copy)]
struct Tuning {
    part: usize,
    parallel: usize,
}

/// `url` is `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&part_size=8M&concurrency=8]`;
/// `KURA_S3_ENDPOINT`, `KURA_S3_PART_SIZE` and `KURA_S3_CONCURRENCY` set the same (MinIO,
/// Garage, R2, Ceph need an endpoint; addressing is path-style).
pub fn open(url: &str, vars: &Vars) -> Result<Objects<S3Blobs>> {
    let c = Config::parse(url, vars)?;
    let s3 = c.client(vars)?;
    Ok(Objects::new(S3Blobs {
        rt: http::runtime()?,
        s3: Arc::new(s3),
        bucket: c.bucket,
        prefix: c.prefix,
        tuning: c.tuning,
    }))
}

pub struct S3Blobs {
    rt: Arc<tokio::runtime::Runtime>,
    s3: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    tuning: Tuning,
}

impl S3Blobs {
    /// The object's name in the bucket: the entry layer's name under the prefix.
    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn path(&self, name: &str) -> ObjPath {
        obj(self.full(name))
    }

    fn explain(
        &self,
        permission: &'static str,
    ) -> impl Fn(object_store::Error) -> anyhow::Error + '_ {
        move |e| explain(e, &self.bucket, permission)
    }

    /// Every object under a string prefix, page by page. A continuation token seen before (a
    /// loop) or more than [`MAX_PAGES`] pages is the server's fault, an error, never followed
    /// forever.
    async fn list_objects(&self, prefix: &str) -> Result<Vec<object_store::ObjectMeta>> {
        let bucket = &self.bucket;
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let opts = PaginatedListOptions {
                page_token: token.take(),
                ..Default::default()
            };
            let page = self
                .s3
                .list_paginated(Some(prefix), opts)
                .await
                .map_err(self.explain("s3:ListBucket"))?;
            out.extend(page.result.objects);
            // A page holds at most 1,000 keys; many pages of a million keys each would
            // otherwise add up without end.
            if out.len() > MAX_OBJECTS {
                bail!("the listing of s3://{bucket}/{prefix} holds more than {MAX_OBJECTS} objects; the server is broken or the prefix is not kura's alone");
            }
            match page.page_token.filter(|t| !t.is_empty()) {
                None => return Ok(out),
                Some(t) if !seen.insert(t.clone()) => {
                    bail!("the listing of s3://{bucket}/{prefix} goes round in a loop (a continuation token came back); the server is broken")
                }
                Some(t) => token = Some(t),
            }
        }
        bail!("the listing of s3://{bucket}/{prefix} did not end after {MAX_PAGES} pages; the server is broken or the prefix is not kura's alone")
    }
}

impl S3Blobs {
    /// An object, or a range of it, read within `cap` bytes and at `http::BODY`'s pace (the
    /// client would collect any body whole); None when there is no such object.
    async fn read(
        &self,
        path: &ObjPath,
        range: Option<Range<u64>>,
        cap: u64,
    ) -> Result<Option<Bytes>> {
        let opts = object_store::GetOptions {
            range: range.map(Into::into),
            ..Default::default()
        };
        let got = match self.s3.get_opts(path, opts).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.explain("s3:GetObject")(e)),
        };
        let declared = got.range.end - got.range.start;
        let limits = http::BODY.with_cap(cap);
        match http::read_within(got.into_stream(), Some(declared), limits).await {
            Ok(b) => Ok(Some(b)),
            Err(e) => bail!("s3://{}/{path}: {e}", self.bucket),
        }
    }
}

impl Blobs for S3Blobs {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    fn whole_put_limit(&self) -> usize {
        self.tuning.part
    }

    fn ranges(&self) -> (u64, usize) {
        // Memory is what is in flight: ranges of at most 4 MiB (the official client's size;
        // each may be collected through a second buffer), plus one handed on.
        (self.tuning.part.min(4 << 20) as u64, self.tuning.parallel)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        let root = self.full("");
        let listed = self.list_objects(&self.full(prefix)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|o| {
                let name = o.location.as_ref().strip_prefix(&root)?.to_string();
                Some(BlobInfo {
                    name,
                    size: o.size,
                    modified_ms: o.last_modified.timestamp_millis().max(0) as u64,
                })
            })
            .collect())
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        let path = self.path(name);
        let want = range.end - range.start;
        let e = match self.read(&path, Some(range.clone()), want).await {
            Ok(got) => return Ok(got),
            Err(e) => e,
        };
        // A range past the object's end: what the store has of it; any other failure is the
        // store's.
        match self.s3.head(&path).await {
            Ok(head) if head.size < range.end => {
                let start = range.start.min(head.size);
                if start == head.size {
                    return Ok(Some(Bytes::new()));
                }
                self.read(&path, Some(start..head.size), want).await
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            _ => Err(e),
        }
    }

    async fn get(&self, name: &str, cap: u64) -> Result<Option<Bytes>> {
        self.read(&self.path(name), None, cap).await
    }

    async fn head(&self, name: &str) -> Result<Option<u64>> {
        match self.s3.head(&self.path(name)).await {
            Ok(h) => Ok(Some(h.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.explain("s3:GetObject")(e)),
        }
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<()> {
        self.s3
            .put(&self.path(name), PutPayload::from(data))
            .await
            .map(drop)
            .map_err(self.explain("s3:PutObject"))
    }

    fn writer(&self, name: &str) -> Result<Box<dyn BlobWrite>> {
        let _in_runtime = self.rt.enter();
        let upload = self
            .rt
            .block_on(self.s3.put_multipart(&self.path(name)))
            .map_err(self.explain("s3:PutObject"))?;
        Ok(Box::new(S3Writer {
            rt: self.rt.clone(),
            bucket: self.bucket.clone(),
            parallel: self.tuning.parallel,
            multipart: Some(WriteMultipart::new_with_chunk_size(
                upload,
                self.tuning.part,
            )),
        }))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        match self.s3.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.explain("s3:DeleteObject")(e)),
        }
    }
}

/// A multipart upload, `parallel` parts in flight.
struct S3Writer {
    rt: Arc<tokio::runtime::Runtime>,
    bucket: String,
    parallel: usize,
    multipart: Option<WriteMultipart>,
}

impl Write for S3Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // WriteMultipart spawns its part uploads onto the current runtime.
        let _in_runtime = self.rt.enter();
        let w = self.multipart.as_mut().expect("write after finish");
        self.rt
            .block_on(w.wait_for_capacity(self.parallel))
            .map_err(|e| std::io::Error::other(explain(e, &self.bucket, "s3:PutObject")))?;
        w.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BlobWrite for S3Writer {
    fn finish(mut self: Box<Self>) -> Result<()> {
        let w = self.multipart.take().expect("finished twice");
        let _in_runtime = self.rt.enter();
        self.rt
            .block_on(w.finish())
            .map(drop)
            .map_err(|e| explain(e, &self.bucket, "s3:PutObject"))
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        // Not finished: abort the multipart upload so no parts linger.
        if let Some(w) = self.multipart.take() {
            let _in_runtime = self.rt.enter();
            let _ = self.rt.block_on(w.abort());
        }
    }
}

/// An object name as kura wrote it. `Path::from` would percent-encode the `%` of encoded keys
/// and scopes, so listings by string prefix would no longer find them. kura's names always
/// parse (the prefix is checked in `open`); anything else is encoded rather than a panic.
fn obj(name: impl AsRef<str>) -> ObjPath {
    ObjPath::parse(name.as_ref()).unwrap_or_else(|_| ObjPath::from(name.as_ref()))
}
