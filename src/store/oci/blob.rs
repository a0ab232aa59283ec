//! Blob uploads (the distribution API's chunked upload): a session opened with a POST, one
//! PATCH per piece of at most 16 MiB (what one request holds in memory), then a PUT with the
//! digest.
//!
//! A PATCH is not idempotent. When its reply is lost — the client gave up while the registry
//! was still writing, the connection broke after the body went through — the registry may
//! hold the piece, or part of it, and the same PATCH sent again is refused; distribution then
//! cancels the session ("blob upload invalid"), as it does when asked how far a session got
//! with a URL from before the lost reply. So a failed PATCH starts the blob again in a new
//! session (the old one is cancelled). A PUT whose reply is lost or late may have stored the
//! blob: kura looks for the blob for as long as the PUT had before sending anything again. A
//! refusal (no push rights, no such repository, too large) is not tried again.

use super::client::Registry;
use crate::store::StoreError;
use anyhow::{anyhow, Result};
use std::time::{Duration, Instant};

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
    let mut attempt = 1;
    loop {
        let Err(e) = session(reg, digest, size, &mut read).await else {
            return Ok(());
        };
        if !worth_another_session(&e) {
            return Err(e);
        }
        if attempt == TRIES {
            return Err(e.context(format!("the upload failed in {TRIES} sessions")));
        }
        attempt += 1;
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

/// One session: open, a PATCH per piece, close. A session that fails is cancelled, so that
/// the registry does not keep its bytes until it purges them.
async fn session(
    reg: &Registry,
    digest: &str,
    size: u64,
    read: &mut impl FnMut(u64, usize) -> Result<bytes::Bytes>,
) -> Result<()> {
    let mut location = start(reg).await?;
    let mut at = 0u64;
    let sent = async {
        while at < size {
            let len = (size - at).min(PIECE as u64) as usize;
            location = patch(reg, &location, at, read(at, len)?).await?;
            at += len as u64;
        }
        Ok(())
    }
    .await;
    if let Err(e) = sent {
        let _ = reg
            .send_once("cancel an upload", &[204, 404], |h| {
                h.delete(reg.url(&location))
            })
            .await;
        return Err(e);
    }
    let Err(e) = finish(reg, &location, digest, size).await else {
        return Ok(());
    };
    // Lost or late, the registry may still be checking the blob: look for it for as long as
    // the PUT had. A refusal is looked for once.
    let refused = matches!(StoreError::within(&e), Some(StoreError::Refused { .. }));
    let until = Instant::now()
        + if refused {
            Duration::ZERO
        } else {
            close_deadline(reg, size)
        };
    loop {
        if exists(reg, digest).await.unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether a failed session is worth another: a transport failure, a server error, or a
/// session the registry lost or refused to go on with; not a refusal of the upload itself,
/// and not a file kura could not read.
fn worth_another_session(e: &anyhow::Error) -> bool {
    if e.downcast_ref::<std::io::Error>().is_some() {
        return false;
    }
    match StoreError::within(e) {
        None | Some(StoreError::Failed(_)) => true,
        Some(StoreError::Refused { status, code, .. }) => {
            *status == 416
                || matches!(
                    code.as_str(),
                    "BLOB_UPLOAD_INVALID"
                        | "BLOB_UPLOAD_UNKNOWN"
                        | "DIGEST_INVALID"
                        | "SIZE_INVALID"
                )
        }
        Some(_) => false,
    }
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

/// How long closing a session may take: the registry may read the whole blob again to check
/// it (16 MiB/s).
fn close_deadline(reg: &Registry, size: u64) -> Duration {
    reg.deadline(0) + Duration::from_secs(size >> 24)
}

/// Close an upload session with the blob's digest, once.
async fn finish(reg: &Registry, location: &str, digest: &str, size: u64) -> Result<()> {
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = reg.url(&format!("{location}{sep}digest={digest}"));
    let deadline = close_deadline(reg, size);
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

/// Upload a blob held in memory (a pack) unless the registry has it.
pub(super) async fn put_bytes(reg: &Registry, digest: &str, data: &[u8]) -> Result<()> {
    put(reg, digest, data.len() as u64, |at, len| {
        let at = at as usize;
        Ok(bytes::Bytes::copy_from_slice(&data[at..at + len]))
    })
    .await
}
