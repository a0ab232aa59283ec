//! Archive transfer: uploads as Azure block blobs behind the v2 service's signed URLs (Put Blob,
//! or Put Block + Put Block List) or as ranges PATCHed to the v1 service; downloads as
//! parallel ranged GETs handed on in order.

use super::v1::V1;
use crate::store::http::{self, Reply, Retry, Verdict};
use anyhow::{anyhow, Result};
use base64::Engine as _;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The REST version kura speaks to Azure; the SAS carries its own.
const X_MS_VERSION: &str = "2025-01-05";
/// Range size of downloads: the official client's (Azure SDK) size.
const RANGE: u64 = 4 << 20;

const RETRY: Retry = Retry {
    attempts: 3,
    first: Duration::from_millis(500),
    factor: 2.0,
    within: None,
};

/// One request to Azure with retries on 5xx, throttling and transport errors.
async fn send(
    policy: Retry,
    make: impl Fn() -> reqwest::RequestBuilder,
    what: &str,
) -> Result<Reply> {
    let make = || make().header("x-ms-version", X_MS_VERSION);
    http::send(policy, what, make, |r| {
        if (200..300).contains(&r.status) {
            return Verdict::Done(r);
        }
        let text = r.text();
        let code = text
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(c, _)| c)
            .unwrap_or_default();
        let msg = format!("{what}: HTTP {} {code}", r.status);
        match r.status {
            _ if r.transient() => Verdict::Again(msg),
            403 => Verdict::Fail(anyhow!("{msg}: the signed URL was refused (expired, or not signed for this); try again in a new job")),
            _ => Verdict::Fail(anyhow!(msg)),
        }
    })
    .await
}

/// Where an upload goes.
pub enum Dest {
    /// A signed Azure blob URL (v2).
    Azure(String),
    /// A v1 reservation: ranges PATCHed to the service.
    Service(Arc<V1>, u64),
}

pub struct Uploader {
    rt: Arc<tokio::runtime::Runtime>,
    http: reqwest::Client,
    dest: Dest,
    block: usize,
    parallel: usize,
    buf: Vec<u8>,
    ids: Vec<String>,
    prefix: String,
    inflight: Vec<JoinHandle<Result<()>>>,
    staged: u64,
    size: u64,
}

impl Uploader {
    pub fn new(
        rt: Arc<tokio::runtime::Runtime>,
        http: reqwest::Client,
        dest: Dest,
        block: usize,
        parallel: usize,
    ) -> Uploader {
        Uploader {
            rt,
            http,
            dest,
            block,
            parallel,
            buf: Vec::new(),
            ids: Vec::new(),
            prefix: super::uuid(),
            inflight: Vec::new(),
            staged: 0,
            size: 0,
        }
    }

    /// Send one block, at most `parallel` in flight. Azure block ids are made as the Azure
    /// SDK makes them: one uuid per upload and a 12-digit index, so every id has the same
    /// length, as Azure requires.
    fn stage(&mut self, data: Vec<u8>) -> Result<()> {
        while self.inflight.len() >= self.parallel {
            let first = self.inflight.remove(0);
            self.rt.block_on(first)??;
        }
        let body = bytes::Bytes::from(data);
        let offset = self.staged;
        self.staged += body.len() as u64;
        let task = match &self.dest {
            Dest::Azure(url) => {
                let id = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}{:012}",
                    self.prefix,
                    self.ids.len()
                ));
                let url = format!(
                    "{url}&comp=block&blockid={}",
                    id.replace('+', "%2B")
                        .replace('/', "%2F")
                        .replace('=', "%3D")
                );
                self.ids.push(id);
                let http = self.http.clone();
                self.rt.spawn(async move {
                    send(RETRY, || http.put(&url).body(body.clone()), "Put Block")
                        .await
                        .map(drop)
                })
            }
            Dest::Service(v1, id) => {
                let (v1, id) = (v1.clone(), *id);
                self.rt
                    .spawn(async move { v1.patch(id, offset, body).await })
            }
        };
        self.inflight.push(task);
        Ok(())
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.size += data.len() as u64;
        self.buf.extend_from_slice(data);
        // A block goes only once more follows it: an archive of one block is one Put Blob.
        while self.buf.len() > self.block {
            let rest = self.buf.split_off(self.block);
            let full = std::mem::replace(&mut self.buf, rest);
            self.stage(full)?;
        }
        Ok(())
    }

    /// Send what is left and make the blob: one Put Blob when everything fit in one block,
    /// else the last block and the block list. Returns the blob's size.
    pub fn finish(mut self) -> Result<u64> {
        let http = self.http.clone();
        if let (Dest::Azure(url), true) = (&self.dest, self.ids.is_empty()) {
            let body = bytes::Bytes::from(std::mem::take(&mut self.buf));
            self.rt.block_on(send(
                RETRY,
                || {
                    http.put(url)
                        .header("x-ms-blob-type", "BlockBlob")
                        .header("content-type", "application/octet-stream")
                        .body(body.clone())
                },
                "Put Blob",
            ))?;
            return Ok(self.size);
        }
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf);
            self.stage(last)?;
        }
        for h in std::mem::take(&mut self.inflight) {
            self.rt.block_on(h)??;
        }
        if let Dest::Azure(url) = &self.dest {
            let mut xml = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
            for id in &self.ids {
                xml.push_str(&format!("<Latest>{id}</Latest>"));
            }
            xml.push_str("</BlockList>");
            let list = format!("{url}&comp=blocklist");
            self.rt.block_on(send(
                RETRY,
                || {
                    http.put(&list)
                        .header("content-type", "application/xml")
                        .body(xml.clone())
                },
                "Put Block List",
            ))?;
        }
        Ok(self.size)
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        // Staged blocks that are never listed expire on Azure's side; stop sending them.
        for h in &self.inflight {
            h.abort();
        }
    }
}

/// The blob's size, or None when the server does not say (a silent one within `idle`).
pub async fn size(http: &reqwest::Client, url: &str, idle: Duration) -> Option<u64> {
    let r = send(RETRY.within(idle), || http.head(url), "HEAD")
        .await
        .ok()?;
    r.headers.get("content-length")?.to_str().ok()?.parse().ok()
}

/// Stream the blob of `size` bytes: `parallel` ranged GETs in flight, handed on in order,
/// all of it within `deadline`, a range from a silent server given up on within `idle`.
pub fn reader(
    rt: &tokio::runtime::Runtime,
    http: reqwest::Client,
    url: String,
    size: u64,
    parallel: usize,
    (deadline, idle): (Duration, Duration),
) -> Box<dyn Read + Send> {
    let deadline = Some((deadline, "SEGMENT_DOWNLOAD_TIMEOUT_MINS"));
    http::ranged(rt, size, RANGE, parallel, deadline, move |r| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let header = format!("bytes={}-{}", r.start, r.end - 1);
            let get = || http.get(&url).header("range", &header);
            let reply = send(RETRY.within(idle), get, "download").await?;
            Ok(reply.body)
        }
    })
}
