//! Blob uploads (the distribution API's chunked upload): a session opened with a POST, one
//! PATCH per piece of at most 16 MiB (what one request holds in memory), then a PUT with the
//! digest.
//!
//! A PATCH is not idempotent. When its reply is lost — the client gave up while the registry
//! was still writing, the connection broke after the body went through — the registry may
//! hold the piece, or part of it, and the same PATCH sent again is refused; distribution then
//! cancels the session ("blob upload invalid"), as it does when asked how far a session got
//! with a URL from before the lost reply. So a failed PATCH starts the blob again in a new
//! session. A PUT whose reply is lost may have stored the blob: the blob is looked up before
//! anything is sent again.

use super::client::Registry;
use anyhow::{anyhow, Result};
use std::time::Duration;

/// The most one PATCH carries.
pub(super) const PIECE: usize = 16 << 20;
/// Sessions tried before the upload gives up.
const TRIES: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_millis(300);

/// Upload blob `digest` of `size` bytes unless the registry has it; `read(at, len)` gives
/// the `len` bytes at offset `at` (from the start again after a failure).
pub(super) async fn put(
    reg: &Registry,
    digest: &str,
    size: u64,
    mut read: impl FnMut(u64, usize) -> Result<bytes::Bytes>,
) -> Result<()> {
    if exists(reg, digest).await? {
        return Ok(()); // unchanged bytes are not sent again
    }
    let mut wait = FIRST_WAIT;
    for attempt in 1.. {
        let Err(e) = attempt_put(reg, digest, size, &mut read).await else {
            return Ok(());
        };
        // The reply may be what was lost; a blob that is there is done.
        if exists(reg, digest).await.unwrap_or(false) {
            return Ok(());
        }
        if attempt == TRIES {
            return Err(e.context(format!("the upload failed {TRIES} times")));
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    unreachable!()
}

/// One session: open, a PATCH per piece, close.
async fn attempt_put(
    reg: &Registry,
    digest: &str,
    size: u64,
    read: &mut impl FnMut(u64, usize) -> Result<bytes::Bytes>,
) -> Result<()> {
    let mut location = start(reg).await?;
    let mut at = 0u64;
    while at < size {
        let len = (size - at).min(PIECE as u64) as usize;
        location = patch(reg, &location, at, read(at, len)?).await?;
        at += len as u64;
    }
    finish(reg, &location, digest, size).await
}

/// Whether the registry has blob `digest`.
async fn exists(reg: &Registry, digest: &str) -> Result<bool> {
    let head = reg
        .send("check a blob", &[200, 404], |h| {
            h.head(reg.url(&format!("blobs/{digest}")))
        })
        .await?;
    Ok(head.status == 200)
}

/// Open an upload session: its URL.
async fn start(reg: &Registry) -> Result<String> {
    let r = reg
        .send("start an upload", &[202], |h| {
            h.post(reg.url("blobs/uploads/"))
                .header("content-length", "0")
        })
        .await?;
    location_of(&r).ok_or_else(|| anyhow!("{} started an upload without a Location", reg.host))
}

/// Send the piece at `at`, once; the session's next URL.
async fn patch(reg: &Registry, location: &str, at: u64, body: bytes::Bytes) -> Result<String> {
    let range = format!("{at}-{}", at + body.len() as u64 - 1);
    let r = reg
        .send_once("upload", &[202], |h| {
            h.patch(reg.url(location))
                .timeout(reg.deadline(body.len()))
                .header("content-type", "application/octet-stream")
                .header("content-range", &range)
                .body(body.clone())
        })
        .await?;
    Ok(location_of(&r).unwrap_or_else(|| location.to_string()))
}

/// Close an upload session with the blob's digest, once. The registry may read the whole
/// blob again to check it: the deadline grows with its size (16 MiB/s).
async fn finish(reg: &Registry, location: &str, digest: &str, size: u64) -> Result<()> {
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = reg.url(&format!("{location}{sep}digest={digest}"));
    let deadline = reg.deadline(0) + Duration::from_secs(size >> 24);
    reg.send_once("finish an upload", &[201], |h| {
        h.put(&url)
            .timeout(deadline)
            .header("content-type", "application/octet-stream")
            .header("content-length", "0")
    })
    .await
    .map(drop)
}

fn location_of(r: &crate::store::http::Reply) -> Option<String> {
    r.headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string)
}
