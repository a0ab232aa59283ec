//! Plain HTTP servers that take WebDAV writes (nginx's dav module, Apache mod_dav, generic
//! repositories): `http://HOST[:PORT]/PATH/` or `https://...`, Basic auth from the URL or
//! `KURA_HTTP_USERNAME` / `KURA_HTTP_PASSWORD`. This is the blob adapter; the entries on top
//! of it (layout, settling, packs) are `store::objects`'. Servers have no create-if-absent,
//! which the entry layer's settling does without. Directories are listed as JSON (nginx:
//! `autoindex on; autoindex_format json;`) or with WebDAV's PROPFIND.

mod listing;

use super::blob::{BlobInfo, BlobWrite, Blobs};
use super::http::{self, Reply, Retry, Verdict};
use super::objects::Objects;
use crate::error::user_error;
use crate::settings;
use crate::vars::Vars;
use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use listing::{multistatus, Listed};
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// The largest directory listing read (about 150,000 names as JSON, fewer as PROPFIND's XML):
/// what it is parsed into stays a few times that.
const LISTING: http::BodyLimits = http::BodyLimits {
    cap: 16 << 20,
    ..http::BODY
};

const RETRY: Retry = Retry {
    attempts: 4,
    first: Duration::from_millis(300),
    factor: 2.0,
    within: None,
};
/// Ranged downloads: 4 MiB ranges, four in flight.
const RANGE: u64 = 4 << 20;
const PARALLEL: usize = 4;
/// Bodies up to this size go in one PUT that can be sent again; larger ones stream.
const CHUNK: usize = 1 << 20;
/// The slowest an upload may go before it is given up on (after KURA_HTTP_TIMEOUT).
const UPLOAD_RATE: u64 = 64 << 10;

/// How long `bytes` may take to go up at [`UPLOAD_RATE`].
fn upload_time(bytes: u64) -> Duration {
    Duration::from_secs(bytes / UPLOAD_RATE)
}
/// The entry layer's names are at most this many directories deep (`scope/version/key/file`):
/// a server that lists deeper is not followed down.
const MAX_DEPTH: usize = 4;
/// Most names one listing gathers.
const MAX_LISTED: usize = 1_000_000;

pub fn open(url: &str, vars: &Vars) -> Result<Objects<DavBlobs>> {
    let bad = |msg: String| user_error(format!("store URL {url:?}: {msg}"));
    let mut base = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if base.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host; write it http://HOST/PATH".into()));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(bad("a query or fragment is not part of a store URL".into()));
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .to_string()
    };
    let mut auth = (!base.username().is_empty()).then(|| {
        (
            decode(base.username()),
            decode(base.password().unwrap_or("")),
        )
    });
    if let Some(user) = vars.string(settings::HTTP_USERNAME.name) {
        auth = Some((
            user,
            vars.string(settings::HTTP_PASSWORD.name)
                .unwrap_or_default(),
        ));
    }
    // Credentials never travel in the URL kura keeps: it is shown in messages.
    let _ = base.set_username("");
    let _ = base.set_password(None);
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(Objects::new(DavBlobs {
        rt: http::runtime()?,
        http: http::client(vars)?,
        uploads: http::upload_client()?,
        idle: http::idle(vars),
        base,
        auth,
    }))
}

#[derive(Clone)]
pub struct DavBlobs {
    rt: Arc<tokio::runtime::Runtime>,
    http: reqwest::Client,
    /// For large PUTs (no read timeout: the server says nothing until the whole body is in).
    uploads: reqwest::Client,
    /// How long the server may stop taking an upload's bytes.
    idle: Duration,
    /// The base URL without credentials, ending in `/`.
    base: url::Url,
    auth: Option<(String, String)>,
}

impl DavBlobs {
    /// The URL of a stored name: every byte but `[A-Za-z0-9._~-]` and the `/` between segments
    /// is escaped, so a name is one path on the server whatever it holds (names hold `%`
    /// escapes of their own, `store::encode`, which the server must see as literal `%`).
    fn url(&self, rel: &str) -> String {
        const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'.')
            .remove(b'_')
            .remove(b'~')
            .remove(b'-')
            .remove(b'/');
        format!(
            "{}{}",
            self.base,
            percent_encoding::utf8_percent_encode(rel, PATH)
        )
    }

    fn request_with(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        rel: &str,
    ) -> reqwest::RequestBuilder {
        let r = client.request(method, self.url(rel));
        match &self.auth {
            Some((user, pass)) => r.basic_auth(user, Some(pass)),
            None => r,
        }
    }

    fn request(&self, method: reqwest::Method, rel: &str) -> reqwest::RequestBuilder {
        self.request_with(&self.http, method, rel)
    }

    /// One request with retries; `ok` lists the statuses that are success for it.
    async fn send(
        &self,
        what: &str,
        ok: &'static [u16],
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply> {
        self.send_within(what, ok, http::BODY, make).await
    }

    /// [`DavBlobs::send`], the reply's body read within `limits`.
    async fn send_within(
        &self,
        what: &str,
        ok: &'static [u16],
        limits: http::BodyLimits,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply> {
        self.send_as(RETRY.within(self.idle), what, ok, limits, make)
            .await
    }

    /// [`DavBlobs::send_within`] with its own retry policy.
    async fn send_as(
        &self,
        policy: Retry,
        what: &str,
        ok: &'static [u16],
        limits: http::BodyLimits,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply> {
        let location = self.base.to_string();
        http::send_within(policy, limits, what, make, |r| {
            if ok.contains(&r.status) {
                Verdict::Done(r)
            } else if r.transient() {
                Verdict::Again(format!("{what}: HTTP {}", r.status))
            } else {
                Verdict::Fail(refusal(what, r.status, &location))
            }
        })
        .await
    }

    /// The names in a directory (`rel` ends in `/`, or is empty for the base); none when it
    /// does not exist. Only names kura could have written are listed (`[A-Za-z0-9._~%-]`, not
    /// `.` or `..`): a listing never leads outside the directory, whatever the server holds.
    async fn list_dir(&self, rel: &str) -> Result<Vec<Listed>> {
        let mut listed = self.list_dir_any(rel).await?;
        listed.retain(|l| kura_name(&l.name));
        Ok(listed)
    }

    async fn list_dir_any(&self, rel: &str) -> Result<Vec<Listed>> {
        let r = self
            .send_within("list", &[200, 403, 404, 405], LISTING, || {
                self.request(reqwest::Method::GET, rel)
                    .header("accept", "application/json")
            })
            .await?;
        if r.status == 404 {
            return Ok(Vec::new());
        }
        if r.status == 200 {
            if let Ok(listed) = serde_json::from_slice(&r.body) {
                return Ok(listed);
            }
        }
        // No JSON listing: WebDAV's own PROPFIND (nginx: the dav-ext module).
        let propfind = reqwest::Method::from_bytes(b"PROPFIND").expect("a method name");
        let r = self
            .send_within("list", &[207, 404, 405, 501], LISTING, || {
                self.request(propfind.clone(), rel).header("depth", "1")
            })
            .await?;
        match r.status {
            207 => {
                let url = self.url(rel);
                let path = url::Url::parse(&url).map_or(String::new(), |u| u.path().to_string());
                Ok(multistatus(&r.text(), &path))
            }
            404 => Ok(Vec::new()),
            _ => bail!(
                "{} lists directories neither as JSON nor with PROPFIND; the server must do one (nginx: autoindex on; autoindex_format json; or dav_ext_methods PROPFIND;)",
                self.url(rel)
            ),
        }
    }
}

/// Whether a listed name is one kura writes: a segment of `[A-Za-z0-9._~%-]`, not `.` or `..`.
fn kura_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~%-".contains(&b))
}

/// What a reply's `Content-Range` says (`bytes A-B/N`, `bytes */N`): the range it holds
/// (inclusive) and the blob's whole length, where it says them.
fn content_range(r: &Reply) -> (Option<(u64, u64)>, Option<u64>) {
    let v = r.headers.get("content-range").and_then(|v| v.to_str().ok());
    let Some((range, total)) = v.and_then(|v| v.strip_prefix("bytes ")?.split_once('/')) else {
        return (None, None);
    };
    let range = range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .filter(|(a, b)| a <= b);
    (range, total.trim().parse().ok())
}

/// A refusal in one line that names the setting to change.
fn refusal(what: &str, status: u16, location: &str) -> anyhow::Error {
    match status {
        401 => anyhow!("{what}: {location} wants credentials, or refused them (HTTP 401); put them in the URL (http://USER:PASSWORD@HOST/...) or set KURA_HTTP_USERNAME and KURA_HTTP_PASSWORD"),
        403 => anyhow!("{what}: {location} refused the request (HTTP 403); the user needs read and write access there"),
        405 => anyhow!("{what}: {location} does not allow this method (HTTP 405); enable WebDAV writes (nginx: dav_methods PUT DELETE;)"),
        409 => anyhow!("{what}: {location} has no directory for the name (HTTP 409); let the server create them (nginx: create_full_put_path on;)"),
        413 => anyhow!("{what}: the body is larger than {location} accepts (HTTP 413); raise the limit (nginx: client_max_body_size 0;)"),
        _ => anyhow!("{what}: HTTP {status} from {location}"),
    }
}

impl Blobs for DavBlobs {
    fn location(&self) -> String {
        self.base.to_string()
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    fn whole_put_limit(&self) -> usize {
        CHUNK
    }

    fn ranges(&self) -> (u64, usize) {
        (RANGE, PARALLEL)
    }

    /// A walk of the directories the prefix reaches, at most [`MAX_DEPTH`] deep.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        let (dir, start) = match prefix.rfind('/') {
            Some(i) => prefix.split_at(i + 1),
            None => ("", prefix),
        };
        let mut out = Vec::new();
        let mut todo = vec![(dir.to_string(), start.to_string())];
        while let Some((dir, start)) = todo.pop() {
            for l in self.list_dir(&dir).await? {
                if !l.name.starts_with(&start) {
                    continue;
                }
                let name = format!("{dir}{}", l.name);
                if l.kind == "directory" {
                    if name.matches('/').count() < MAX_DEPTH {
                        todo.push((format!("{name}/"), String::new()));
                    }
                } else {
                    out.push(BlobInfo {
                        name,
                        size: l.size.unwrap_or(0),
                        modified_ms: l.modified_ms(),
                    });
                }
            }
            if out.len() + todo.len() > MAX_LISTED {
                bail!("{} lists more than {MAX_LISTED} names; the server is broken or the directory is not kura's alone", self.url(prefix));
            }
        }
        Ok(out)
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        let bytes = format!("bytes={}-{}", range.start, range.end.saturating_sub(1));
        let r = self
            .send("download", &[200, 206, 404, 416], || {
                self.request(reqwest::Method::GET, name)
                    .header("range", &bytes)
            })
            .await?;
        Ok(match r.status {
            404 => None,
            // Past the blob's end: nothing of it.
            416 => Some(Bytes::new()),
            // Shorter than the range the server says it sends: cut off on the way, which is no
            // word on where the blob ends (that is what a shorter range says).
            206 if content_range(&r)
                .0
                .is_some_and(|(a, b)| (r.body.len() as u64) < b + 1 - a) =>
            {
                bail!("download: the reply was cut short (HTTP 206 shorter than its Content-Range)")
            }
            206 => Some(r.body),
            // A server that ignores ranges sends the whole blob.
            _ => {
                let len = r.body.len() as u64;
                let (a, b) = (range.start.min(len), range.end.min(len));
                Some(r.body.slice(a as usize..b as usize))
            }
        })
    }

    async fn get(&self, name: &str, cap: u64) -> Result<Option<Bytes>> {
        let limits = http::BODY.with_cap(cap);
        let r = self
            .send_within("read", &[200, 404], limits, || {
                self.request(reqwest::Method::GET, name)
            })
            .await?;
        Ok((r.status == 200).then_some(r.body))
    }

    async fn head(&self, name: &str) -> Result<Option<u64>> {
        let r = self
            .send("look up", &[200, 404], || {
                self.request(reqwest::Method::HEAD, name)
            })
            .await?;
        if r.status == 404 {
            return Ok(None);
        }
        let length = r
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok());
        if let Some(n) = length.and_then(|l| l.parse().ok()) {
            return Ok(Some(n));
        }
        // No length in the answer to HEAD: the total of a one-byte range (`bytes 0-0/N`).
        let r = self
            .send("look up", &[206, 404, 416], || {
                self.request(reqwest::Method::GET, name)
                    .header("range", "bytes=0-0")
            })
            .await?;
        match (r.status, content_range(&r).1) {
            (404, _) => Ok(None),
            (_, Some(n)) => Ok(Some(n)),
            _ => bail!("{}: the server does not say its size", self.url(name)),
        }
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<()> {
        // A slow server may take longer than the idle limit to answer a large body.
        let (client, deadline, policy) = match data.len() > CHUNK {
            // Slower than UPLOAD_RATE, a large PUT is given up on (and tried again, its
            // deadline being its own and not the store's budget for a small request).
            true => (
                &self.uploads,
                Some(self.idle + upload_time(data.len() as u64)),
                RETRY,
            ),
            false => (&self.http, None, RETRY.within(self.idle)),
        };
        self.send_as(policy, "upload", &[200, 201, 204], http::BODY, || {
            let r = self.request_with(client, reqwest::Method::PUT, name);
            match deadline {
                Some(d) => r.timeout(d),
                None => r,
            }
            .body(data.clone())
        })
        .await
        .map(drop)
    }

    fn writer(&self, name: &str) -> Result<Box<dyn BlobWrite>> {
        Ok(Box::new(DavWriter::start(self.clone(), name)))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.send("delete", &[200, 204, 404], || {
            self.request(reqwest::Method::DELETE, name)
        })
        .await
        .map(drop)
    }
}

type Chunk = std::io::Result<Bytes>;

/// One blob streamed into a single chunked PUT while it is written.
struct DavWriter {
    store: DavBlobs,
    buf: Vec<u8>,
    /// Bytes handed to the PUT so far.
    sent: u64,
    tx: Option<tokio::sync::mpsc::Sender<Chunk>>,
    put: Option<tokio::task::JoinHandle<Result<u16>>>,
}

impl DavWriter {
    fn start(store: DavBlobs, name: &str) -> DavWriter {
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(4);
        let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|chunk| (chunk, rx))
        }));
        let req = store
            .request_with(&store.uploads, reqwest::Method::PUT, name)
            .body(body);
        let put = store.rt.spawn(async move {
            let resp = req
                .send()
                .await
                .map_err(|e| anyhow!("upload: {}", e.without_url()))?;
            Ok(resp.status().as_u16())
        });
        DavWriter {
            store,
            buf: Vec::with_capacity(CHUNK),
            sent: 0,
            tx: Some(tx),
            put: Some(put),
        }
    }

    fn send_buf(&mut self) -> std::io::Result<()> {
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.sent += chunk.len() as u64;
        let tx = self.tx.as_ref().expect("the stream is open");
        // A server that stops taking bytes for KURA_HTTP_TIMEOUT is given up on.
        let idle = self.store.idle;
        self.store
            .rt
            .block_on(tx.send_timeout(Ok(chunk), idle))
            .map_err(|e| match e {
                tokio::sync::mpsc::error::SendTimeoutError::Timeout(_) => {
                    std::io::Error::other(format!(
                        "the HTTP store took no bytes of the upload for {} s (KURA_HTTP_TIMEOUT)",
                        idle.as_secs()
                    ))
                }
                _ => std::io::Error::other("the upload to the HTTP store broke off"),
            })
    }
}

impl Write for DavWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BlobWrite for DavWriter {
    fn finish(mut self: Box<Self>) -> Result<()> {
        if !self.buf.is_empty() {
            self.send_buf()?;
        }
        self.tx.take();
        let mut put = self.put.take().expect("finished twice");
        // The body is handed on; what is in flight and the server's answer get their time.
        let wait = self.store.idle + upload_time(self.sent.min(64 << 20));
        let answer = async { tokio::time::timeout(wait, &mut put).await };
        let status = match self.store.rt.block_on(answer) {
            Ok(done) => done??,
            Err(_) => {
                put.abort();
                bail!(
                    "the HTTP store did not answer the upload within {} s (KURA_HTTP_TIMEOUT)",
                    wait.as_secs()
                );
            }
        };
        if !(200..300).contains(&status) {
            return Err(refusal("upload", status, self.store.base.as_str()));
        }
        Ok(())
    }
}

impl Drop for DavWriter {
    fn drop(&mut self) {
        // Not finished: break the PUT off (never wait for a server that may not answer), so
        // the server discards what it received; the entry layer removes what it kept.
        if let Some(put) = self.put.take() {
            self.tx.take();
            put.abort();
            let _ = self.store.rt.block_on(put);
        }
    }
}
