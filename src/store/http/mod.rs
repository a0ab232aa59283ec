//! What every store that speaks HTTP shares, written once: the runtime that bridges the
//! synchronous `Store` trait to async clients, the HTTP client (rustls with ring), the retry
//! policy, and the ranged parallel download handed on in order as one `Read`.

use crate::settings;
use crate::vars::Vars;
use anyhow::{bail, Result};
use futures_util::StreamExt;
use std::future::Future;
use std::io::Read;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// The runtime of a store: two workers are plenty for I/O-bound tasks on CI machines.
pub fn runtime() -> Result<Arc<tokio::runtime::Runtime>> {
    Ok(Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
    ))
}

/// Select ring as rustls's provider (no C build); harmless when done twice.
pub fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One client, one connection pool per store. A connection that goes quiet for a third of
/// `KURA_HTTP_TIMEOUT` (default 30 s) is dropped and the request retried; [`Retry::within`]
/// stops the retries in time for a silent store to be given up on within the setting.
pub fn client(vars: &Vars) -> Result<reqwest::Client> {
    tls();
    Ok(reqwest::Client::builder()
        .user_agent(concat!("kura/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(quiet(vars))
        .build()?)
}

/// How long one attempt may wait on a silent connection: a third of `KURA_HTTP_TIMEOUT`.
pub fn quiet(vars: &Vars) -> Duration {
    (idle(vars) / 3).max(Duration::from_millis(300))
}

/// A client for long streamed uploads: no read timeout, since the server says nothing until
/// the whole body is in; the uploader watches for a server that stops taking bytes instead.
pub fn upload_client() -> Result<reqwest::Client> {
    tls();
    Ok(reqwest::Client::builder()
        .user_agent(concat!("kura/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .build()?)
}

/// `KURA_HTTP_TIMEOUT`: how long a store may stay silent, retries included (default 30 s;
/// at least 1 s, at most a day, so that the deadlines made from it never overflow). Every
/// store reads the setting here.
pub fn idle(vars: &Vars) -> Duration {
    vars.get(settings::HTTP_TIMEOUT.name)
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(crate::units::seconds)
        .unwrap_or(Duration::from_secs(30))
        .clamp(Duration::from_secs(1), Duration::from_secs(86_400))
}

/// Redirects that stay on the request's origin (scheme, host and port): for signed requests
/// whose headers carry a credential reqwest does not know to drop (S3's
/// `x-amz-security-token`), a redirect to another origin is refused, never followed.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(|u| u.origin());
        if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else if first.is_some_and(|o| o != attempt.url().origin()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// How often and how patiently to try one request again.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    /// The wait before the second attempt; each later wait grows by `factor`.
    pub first: Duration,
    pub factor: f64,
    /// The store's budget for one request (`KURA_HTTP_TIMEOUT`): no attempt starts once two
    /// thirds of it are spent, so that with attempts that give up on a third of it of silence
    /// ([`client`]) a silent store is given up on within it. None: the attempts alone decide
    /// (a large upload, whose own deadline grows with its size).
    pub within: Option<Duration>,
}

impl Retry {
    pub const fn within(self, budget: Duration) -> Retry {
        Retry {
            within: Some(budget),
            ..self
        }
    }

    /// Whether an attempt after `wait` would start past two thirds of the budget.
    fn spent(&self, started: tokio::time::Instant, wait: Duration) -> bool {
        self.within
            .is_some_and(|b| started.elapsed() + wait >= b.mul_f64(2.0 / 3.0))
    }
}

/// An answer read whole: status, headers and body, and where it came from (after redirects).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
    pub from: Option<reqwest::Url>,
}

impl Reply {
    /// Statuses worth another try: server errors, throttling, request timeouts.
    pub fn transient(&self) -> bool {
        self.status >= 500 || self.status == 429 || self.status == 408
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the caller makes of an answer.
pub enum Verdict<T> {
    Done(T),
    /// Try again; the message says what went wrong, should it be the last attempt.
    Again(String),
    Fail(anyhow::Error),
}

/// What a reply body may be: at most `cap` bytes, and, after `grace`, arriving at
/// `min_rate` bytes a second on average or faster. A server that sends without end, or a
/// byte now and then (each within the connection's idle limit), is given up on.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub cap: usize,
    pub grace: Duration,
    pub min_rate: u64,
}

/// Every reply kura reads whole is far smaller (JSON, listings, ranges of at most 16 MiB),
/// and comes at far more than 16 KiB/s on any link a CI job has.
pub const BODY: BodyLimits = BodyLimits {
    cap: 64 << 20,
    grace: Duration::from_secs(20),
    min_rate: 16 << 10,
};

impl BodyLimits {
    /// The same limits with at most `cap` bytes.
    pub fn with_cap(self, cap: u64) -> BodyLimits {
        BodyLimits {
            cap: cap.try_into().unwrap_or(usize::MAX),
            ..self
        }
    }
}

/// Why a body was not read.
#[derive(Debug, PartialEq)]
pub enum BodyError {
    TooLarge(usize),
    TooSlow,
    Broke(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(cap) => {
                write!(f, "the reply is larger than the {cap} bytes it may be")
            }
            BodyError::TooSlow => f.write_str("the reply came too slowly"),
            BodyError::Broke(e) => write!(f, "stalled or broke off ({e})"),
        }
    }
}

/// The data of an HTTP body as a stream of pieces, its trailers left out: how a body that is
/// not reqwest's own is read within limits ([`read_within`]) or handed to reqwest.
pub struct Pieces<B>(std::pin::Pin<Box<B>>);

pub fn pieces<B>(body: B) -> Pieces<B> {
    Pieces(Box::pin(body))
}

impl<B: http_body::Body<Data = bytes::Bytes>> futures_util::Stream for Pieces<B> {
    type Item = std::result::Result<bytes::Bytes, B::Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let body = &mut self.get_mut().0;
        loop {
            return match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(d) => Poll::Ready(Some(Ok(d))),
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

/// A reply's body, read within `limits`: a declared length over the cap is refused before
/// a byte is read, and reading stops at the cap whatever was declared.
pub async fn body(resp: reqwest::Response, limits: BodyLimits) -> Result<bytes::Bytes, BodyError> {
    let declared = resp.content_length();
    // Signed URLs carry secrets: no error names one.
    let pieces = resp.bytes_stream().map(|r| r.map_err(|e| e.without_url()));
    read_within(pieces, declared, limits).await
}

/// A stream of a body's pieces, read within `limits` (`declared`: the length the reply
/// claims, if it does). Every client's replies go through here (reqwest's, object_store's).
pub async fn read_within<S, E>(
    stream: S,
    declared: Option<u64>,
    limits: BodyLimits,
) -> Result<bytes::Bytes, BodyError>
where
    S: futures_util::Stream<Item = std::result::Result<bytes::Bytes, E>>,
    E: std::fmt::Display,
{
    if declared.is_some_and(|n| n > limits.cap as u64) {
        return Err(BodyError::TooLarge(limits.cap));
    }
    let started = tokio::time::Instant::now();
    let mut stream = std::pin::pin!(stream);
    // A Vec grown to what arrives (with a declared length, at most 8 MiB ahead of it, never
    // to the length a reply claims): amortised doubling would hold twice a large range.
    let mut got: Vec<u8> = Vec::new();
    loop {
        // The time the bytes so far may have taken; the next piece must come within it.
        let allowed = limits.grace + Duration::from_secs(got.len() as u64 / limits.min_rate.max(1));
        let left = allowed.saturating_sub(started.elapsed());
        let chunk = match tokio::time::timeout(left, stream.next()).await {
            Err(_) => return Err(BodyError::TooSlow),
            Ok(Some(Err(e))) => return Err(BodyError::Broke(e.to_string())),
            Ok(None) => {
                // A reply shorter than it declared leaves no reserve behind for its lifetime.
                if got.capacity() > 2 * got.len() + (64 << 10) {
                    got.shrink_to_fit();
                }
                return Ok(bytes::Bytes::from(got));
            }
            Ok(Some(Ok(c))) => c,
        };
        if got.len() + chunk.len() > limits.cap {
            return Err(BodyError::TooLarge(limits.cap));
        }
        if let Some(n) = declared.filter(|_| got.capacity() - got.len() < chunk.len()) {
            let left = (n as usize).saturating_sub(got.len()).min(8 << 20);
            got.reserve_exact(left.max(chunk.len()));
        }
        got.extend_from_slice(&chunk);
    }
}

/// Send `make()` until `judge` is satisfied or the attempts run out. Transport failures and
/// bodies cut short are tried again; a body over [`BODY`]'s cap, or slower than its pace, is
/// not (a server that trickles would trickle again, and each try would take the grace). A
/// `Retry-After` header (at most 60 s) replaces the wait. URLs never reach the message:
/// signed URLs carry secrets.
pub async fn send<T>(
    policy: Retry,
    what: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
    judge: impl Fn(Reply) -> Verdict<T>,
) -> Result<T> {
    send_within(policy, BODY, what, make, judge).await
}

/// [`send`], with the body read within `limits`.
pub async fn send_within<T>(
    policy: Retry,
    limits: BodyLimits,
    what: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
    judge: impl Fn(Reply) -> Verdict<T>,
) -> Result<T> {
    let mut wait = policy.first;
    let mut last = String::new();
    let started = tokio::time::Instant::now();
    // The budget is for a store that says nothing: one that answers (a 503, a 429 with its
    // Retry-After) is given its attempts.
    let mut silent = false;
    for attempt in 1..=policy.attempts {
        if attempt > 1 {
            if silent && policy.spent(started, wait) {
                bail!(
                    "{last} (gave up after {} attempts in {} s, KURA_HTTP_TIMEOUT)",
                    attempt - 1,
                    started.elapsed().as_secs()
                );
            }
            tokio::time::sleep(wait).await;
            wait = wait.mul_f64(policy.factor);
        }
        let (status, headers, body, from) = match once(&make, limits, what).await? {
            Ok(got) => got,
            Err(why) => {
                (last, silent) = (why, true);
                continue;
            }
        };
        silent = false;
        if let Some(after) = retry_after(&headers) {
            wait = after;
        }
        match judge(Reply {
            status,
            headers,
            body,
            from: Some(from),
        }) {
            Verdict::Done(t) => return Ok(t),
            Verdict::Fail(e) => return Err(e),
            Verdict::Again(why) => last = why,
        }
    }
    if policy.attempts == 1 {
        bail!("{last}");
    }
    bail!("{last} (gave up after {} attempts)", policy.attempts)
}

/// One attempt: the reply's status, headers and body; `Ok(Err(why))` when it is worth
/// another try, `Err` when not (a body over its cap or slower than its pace).
/// A reply's status, headers, body and final URL.
type Answer = (u16, reqwest::header::HeaderMap, bytes::Bytes, reqwest::Url);

async fn once(
    make: &impl Fn() -> reqwest::RequestBuilder,
    limits: BodyLimits,
    what: &str,
) -> Result<std::result::Result<Answer, String>> {
    let resp = match make().send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Ok(Err(format!(
            "{what}: no reply in time (a slow link or server may need a larger KURA_HTTP_TIMEOUT)"
        )))
        }
        Err(e) => return Ok(Err(format!("{what}: {}", e.without_url()))),
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let from = resp.url().clone();
    match body(resp, limits).await {
        Ok(b) => Ok(Ok((status, headers, b, from))),
        Err(e @ (BodyError::TooLarge(_) | BodyError::TooSlow)) => {
            bail!("{what}: {e}; the server is broken")
        }
        Err(e) => Ok(Err(format!("{what}: {e}"))),
    }
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()?;
    // Any number a server sends: capped before it becomes a Duration (1e20 s would panic).
    (v >= 0.0 && v.is_finite()).then(|| Duration::from_secs_f64(v.min(60.0)))
}

/// A download of `size` bytes as ranges of `part` bytes, `parallel` of them in flight,
/// handed on in order as one stream; all of it within `deadline` when one is given (with the
/// setting that changes it, for the message). The first failure ends the stream with that
/// error. Memory is what is in flight.
pub fn ranged<F, Fut>(
    rt: &tokio::runtime::Runtime,
    size: u64,
    part: u64,
    parallel: usize,
    deadline: Option<(Duration, &'static str)>,
    fetch: F,
) -> Box<dyn Read + Send>
where
    F: Fn(Range<u64>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bytes::Bytes>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(1);
    rt.spawn(async move {
        let work = hand_on(size, part, parallel, fetch, &tx);
        let Some((deadline, setting)) = deadline else {
            return work.await;
        };
        if tokio::time::timeout(deadline, work).await.is_err() {
            let _ = tx
                .send(Err(std::io::Error::other(format!(
                    "download did not finish within {} s ({setting})",
                    deadline.as_secs()
                ))))
                .await;
        }
    });
    Box::new(PartReader {
        rx,
        chunk: bytes::Bytes::new(),
    })
}

/// Fetch the parts, `parallel` at a time, and send them on in order until the first failure
/// or short part.
async fn hand_on<F, Fut>(
    size: u64,
    part: u64,
    parallel: usize,
    fetch: F,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
) where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<bytes::Bytes>>,
{
    // Made as they are needed: a size from a store never sizes an allocation.
    let part = part.max(1);
    let ranges = (0..size.div_ceil(part)).map(move |i| i * part..((i + 1) * part).min(size));
    let mut parts = futures_util::stream::iter(ranges)
        .map(|r| {
            let want = r.end - r.start;
            let at = r.start;
            let got = fetch(r);
            async move {
                let b = got.await?;
                if b.len() as u64 > want {
                    bail!("download: asked for {want} bytes at {at}, got {}", b.len());
                }
                Ok((b, want))
            }
        })
        .buffered(parallel.max(1));
    while let Some(part) = parts.next().await {
        // A part shorter than asked for is where the store's object ends: the stream ends
        // there, and the reader finds it shorter than its entry says (damage of the entry's
        // own bytes, not a failure of the store).
        let (item, last) = match part {
            Ok((b, want)) => {
                let short = (b.len() as u64) < want;
                (Ok(b), short)
            }
            Err(e) => (Err(std::io::Error::other(e)), true),
        };
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// What a download task hands on, part after part in order, read as one stream.
struct PartReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl Read for PartReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(part) => self.chunk = part?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
}

/// 128 random bits, for names no other process picks (upload names, block ids).
pub fn random() -> u128 {
    crate::random::u128()
}

#[cfg(test)]
mod tests;
