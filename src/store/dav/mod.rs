//! Plain HTTP servers that take WebDAV writes (nginx's dav module, Apache mod_dav, generic
//! repositories): `http://HOST[:PORT]/PATH/` or `https://...`, Basic auth from the URL or
//! `KURA_HTTP_USERNAME` / `KURA_HTTP_PASSWORD`.
//!
//! The layout is the S3 store's: `<base>/<scope>/<version>/<encoded key>/<created>-<nonce>`
//! with `.tzst` (the archive, one streamed PUT), `.json` (the metadata, written last: the
//! commit) and `.won` (the owner's marker). Servers have no create-if-absent, so concurrent
//! saves of one key are settled as on S3 (`store::settle`). Prefix lookups list directories
//! as JSON (nginx: `autoindex on; autoindex_format json;`).

mod listing;
mod packs;

use super::http::{self, Reply, Retry, Verdict};
use super::settle::{marker_of, owner, verdict, Verdict as Settled};
use super::{entry_name, name_prefix, now_ms, scope_dir, Committed, Handle, Meta, Store, Upload};
use crate::outcome::user_error;
use crate::vars::Vars;
use anyhow::{anyhow, bail, Result};
use listing::{multistatus, Listed};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

const RETRY: Retry = Retry {
    attempts: 4,
    first: Duration::from_millis(300),
    factor: 2.0,
};
/// Ranged downloads: 4 MiB ranges, four in flight.
const RANGE: u64 = 4 << 20;
const PARALLEL: usize = 4;
/// How long a writer that met other writers of its key waits for a winner's marker.
const SETTLE: Duration = Duration::from_secs(1);

pub struct DavStore {
    rt: Arc<tokio::runtime::Runtime>,
    http: reqwest::Client,
    /// For the archive's streamed PUT (no read timeout; see `DavUpload::send_buf`).
    uploads: reqwest::Client,
    /// How long the server may stop taking an upload's bytes.
    idle: Duration,
    /// The base URL without credentials, ending in `/`.
    base: url::Url,
    auth: Option<(String, String)>,
}

impl DavStore {
    pub fn open(url: &str, vars: &Vars) -> Result<DavStore> {
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
        if let Some(user) = vars.string("KURA_HTTP_USERNAME") {
            auth = Some((user, vars.string("KURA_HTTP_PASSWORD").unwrap_or_default()));
        }
        // Credentials never travel in the URL kura keeps: it is shown in messages.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(DavStore {
            rt: http::runtime()?,
            http: http::client(vars)?,
            uploads: http::upload_client()?,
            idle: http::idle(vars),
            base,
            auth,
        })
    }

    /// The URL of a stored name. Names hold `%` escapes of their own (`store::encode`), which
    /// the server must see as literal `%`.
    fn url(&self, rel: &str) -> String {
        format!("{}{}", self.base, rel.replace('%', "%25"))
    }

    fn request(&self, method: reqwest::Method, rel: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(rel));
        match &self.auth {
            Some((user, pass)) => r.basic_auth(user, Some(pass)),
            None => r,
        }
    }

    /// One request with retries; `ok` lists the statuses that are success for it.
    fn send(
        &self,
        what: &str,
        ok: &'static [u16],
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply> {
        let location = self.base.to_string();
        self.rt.block_on(http::send(RETRY, what, make, |r| {
            if ok.contains(&r.status) {
                Verdict::Done(r)
            } else if r.transient() {
                Verdict::Again(format!("{what}: HTTP {}", r.status))
            } else {
                Verdict::Fail(refusal(what, r.status, &location))
            }
        }))
    }

    /// The names in a directory (`rel` ends in `/`, or is empty for the base); none when it
    /// does not exist.
    fn list_dir(&self, rel: &str) -> Result<Vec<Listed>> {
        let r = self.send("list", &[200, 403, 404, 405], || {
            self.request(reqwest::Method::GET, rel)
                .header("accept", "application/json")
        })?;
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
        let r = self.send("list", &[207, 404, 405, 501], || {
            self.request(propfind.clone(), rel).header("depth", "1")
        })?;
        match r.status {
            207 => Ok(multistatus(&r.text())),
            404 => Ok(Vec::new()),
            _ => bail!(
                "{} lists directories neither as JSON nor with PROPFIND; the server must do one (nginx: autoindex on; autoindex_format json; or dav_ext_methods PROPFIND;)",
                self.url(rel)
            ),
        }
    }

    fn dirs(&self, rel: &str) -> Result<Vec<String>> {
        Ok(self
            .list_dir(rel)?
            .into_iter()
            .filter(|l| l.kind == "directory")
            .map(|l| format!("{rel}{}/", l.name))
            .collect())
    }

    /// The entries of one version directory whose key starts with `prefix`.
    fn metas_in(&self, version_dir: &str, prefix: &str) -> Result<Vec<Meta>> {
        let start = name_prefix(prefix);
        let mut out = Vec::new();
        for key_dir in self.dirs(version_dir)? {
            let name = &key_dir[version_dir.len()..];
            if !name.starts_with(&start) {
                continue;
            }
            let names: Vec<String> = self
                .list_dir(&key_dir)?
                .into_iter()
                .filter(|l| l.kind == "file")
                .map(|l| format!("{key_dir}{}", l.name))
                .collect();
            let Some(object) = owner(&names) else {
                continue;
            };
            let body = self
                .send("read metadata", &[200], || {
                    self.request(reqwest::Method::GET, &object)
                })?
                .body;
            let mut m: Meta = serde_json::from_slice(&body)
                .map_err(|e| anyhow!("unreadable metadata {}: {e}", self.url(&object)))?;
            m.used_ms = m.created_ms;
            // Metadata that disagrees with its name is not an entry of that name.
            let agrees = super::agrees_object(&m, &object);
            m.handle = Handle::Object(object);
            if agrees && m.key.starts_with(prefix) {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn delete_name(&self, rel: &str) -> Result<()> {
        self.send("delete", &[200, 204, 404], || {
            self.request(reqwest::Method::DELETE, rel)
        })
        .map(drop)
    }
}

/// A refusal in one line that names the setting to change.
fn refusal(what: &str, status: u16, location: &str) -> anyhow::Error {
    match status {
        401 => anyhow!("{what}: {location} wants credentials, or refused them (HTTP 401); put them in the URL (http://USER:PASSWORD@HOST/...) or set KURA_HTTP_USERNAME and KURA_HTTP_PASSWORD"),
        403 => anyhow!("{what}: {location} refused the request (HTTP 403); the user needs read and write access there"),
        405 => anyhow!("{what}: {location} does not allow this method (HTTP 405); enable WebDAV writes (nginx: dav_methods PUT DELETE;)"),
        409 => anyhow!("{what}: {location} has no directory for the name (HTTP 409); let the server create them (nginx: create_full_put_path on;)"),
        413 => anyhow!("{what}: the archive is larger than {location} accepts (HTTP 413); raise the limit (nginx: client_max_body_size 0;)"),
        _ => anyhow!("{what}: HTTP {status} from {location}"),
    }
}

fn archive_of(meta_object: &str) -> String {
    format!("{}.tzst", meta_object.trim_end_matches(".json"))
}

fn object_of(meta: &Meta) -> Result<&str> {
    match &meta.handle {
        Handle::Object(o) => Ok(o),
        _ => bail!("the entry {} was not read from this store", meta.key),
    }
}

impl Store for DavStore {
    fn location(&self) -> String {
        self.base.to_string()
    }

    fn list_prefix(&self, scope: &str, version: &str, prefix: &str) -> Result<Vec<Meta>> {
        self.metas_in(&format!("{}/{version}/", scope_dir(scope)), prefix)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Meta>> {
        let mut out = Vec::new();
        for scope in self.dirs("")? {
            for version in self.dirs(&scope)? {
                out.extend(self.metas_in(&version, prefix)?);
            }
        }
        Ok(out)
    }

    fn open(&self, meta: &Meta) -> Result<Box<dyn Read + Send>> {
        let archive = archive_of(object_of(meta)?);
        let size = meta.size.unwrap_or(0);
        let (http, url, auth) = (self.http.clone(), self.url(&archive), self.auth.clone());
        Ok(http::ranged(
            &self.rt,
            size,
            RANGE,
            PARALLEL,
            None,
            move |r| {
                let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
                async move {
                    let range = format!("bytes={}-{}", r.start, r.end - 1);
                    let make = || {
                        let req = http.get(&url).header("range", &range);
                        match &auth {
                            Some((u, p)) => req.basic_auth(u, Some(p)),
                            None => req,
                        }
                    };
                    let reply = http::send(RETRY, "download", make, |r| match r.status {
                        206 => Verdict::Done(r.body),
                        // Past the archive's end: it is shorter than its metadata says.
                        416 => Verdict::Done(bytes::Bytes::new()),
                        s if r.transient() => Verdict::Again(format!("download: HTTP {s}")),
                        s => Verdict::Fail(anyhow!("download: HTTP {s} (a range was asked for)")),
                    })
                    .await?;
                    Ok(reply)
                }
            },
        ))
    }

    fn create(&self, scope: &str, version: &str, key: &str) -> Result<Option<Box<dyn Upload>>> {
        let dir = format!("{}/{version}/{}/", scope_dir(scope), entry_name(key));
        let name = format!("{dir}{:013}-{:016x}", now_ms(), http::random() as u64);
        Ok(Some(Box::new(DavUpload::start(
            self.clone_handle(),
            dir,
            name,
        ))))
    }

    fn delete(&self, meta: &Meta) -> Result<()> {
        let object = object_of(meta)?;
        // The marker first: cut short, the entry stays whole (unmarked, still found).
        self.delete_name(&marker_of(object))?;
        self.delete_name(object)?;
        self.delete_name(&archive_of(object))
    }

    fn packs(&self) -> Option<Arc<dyn crate::chunked::Packs>> {
        Some(Arc::new(packs::DavPacks(self.clone_handle())))
    }

    /// Archives and markers without metadata, over a day old: saves killed before commit.
    fn clean_incomplete(&self) {
        let Ok(scopes) = self.dirs("") else { return };
        let cutoff = now_ms().saturating_sub(86_400_000);
        for scope in scopes {
            for version in self.dirs(&scope).unwrap_or_default() {
                for key_dir in self.dirs(&version).unwrap_or_default() {
                    let names: Vec<String> = self
                        .list_dir(&key_dir)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|l| l.name)
                        .collect();
                    for n in &names {
                        let stem = n.trim_end_matches(".tzst").trim_end_matches(".won");
                        let old = n
                            .get(..13)
                            .and_then(|t| t.parse::<u64>().ok())
                            .is_some_and(|t| t < cutoff);
                        if stem != n && old && !names.contains(&format!("{stem}.json")) {
                            let _ = self.delete_name(&format!("{key_dir}{n}"));
                        }
                    }
                }
            }
        }
    }
}

impl DavStore {
    fn clone_handle(&self) -> Arc<DavStore> {
        Arc::new(DavStore {
            rt: self.rt.clone(),
            http: self.http.clone(),
            uploads: self.uploads.clone(),
            idle: self.idle,
            base: self.base.clone(),
            auth: self.auth.clone(),
        })
    }
}

type Chunk = std::io::Result<bytes::Bytes>;

/// One save: the archive streams into a single chunked PUT while it is packed.
struct DavUpload {
    store: Arc<DavStore>,
    dir: String,
    /// Names without extension: `<dir><created>-<nonce>`.
    name: String,
    buf: Vec<u8>,
    /// Bytes written so far.
    size: u64,
    tx: Option<tokio::sync::mpsc::Sender<Chunk>>,
    put: Option<tokio::task::JoinHandle<Result<u16>>>,
}

const CHUNK: usize = 1 << 20;

impl DavUpload {
    fn start(store: Arc<DavStore>, dir: String, name: String) -> DavUpload {
        DavUpload {
            store,
            dir,
            name,
            buf: Vec::with_capacity(CHUNK),
            size: 0,
            tx: None,
            put: None,
        }
    }

    /// Start the streamed PUT, once the archive outgrows one buffer: a smaller one (a chunked
    /// entry's manifest, most often) goes up whole at commit, where it can be sent again.
    fn open_stream(&mut self) {
        let store = &self.store;
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(4);
        let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|chunk| (chunk, rx))
        }));
        let mut req = store
            .uploads
            .put(store.url(&format!("{}.tzst", self.name)))
            .body(body);
        if let Some((user, pass)) = &store.auth {
            req = req.basic_auth(user, Some(pass));
        }
        self.put = Some(store.rt.spawn(async move {
            let resp = req
                .send()
                .await
                .map_err(|e| anyhow!("upload: {}", e.without_url()))?;
            Ok(resp.status().as_u16())
        }));
        self.tx = Some(tx);
    }

    fn send_buf(&mut self) -> std::io::Result<()> {
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        if self.tx.is_none() {
            self.open_stream();
        }
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

    /// The size of this save's archive as the server holds it, if it does.
    fn stored_size(&self) -> Option<u64> {
        let store = &self.store;
        let name = format!("{}.tzst", self.name);
        let r = store
            .send("check the upload", &[200, 404], || {
                store.request(reqwest::Method::HEAD, &name)
            })
            .ok()?;
        let length = r.headers.get("content-length")?.to_str().ok()?;
        (r.status == 200).then(|| length.parse().ok()).flatten()
    }

    /// The key directory's names, for settling who owns the key.
    fn names(&self) -> Result<Vec<String>> {
        Ok(self
            .store
            .list_dir(&self.dir)?
            .into_iter()
            .map(|l| format!("{}{}", self.dir, l.name))
            .collect())
    }
}

impl Write for DavUpload {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.size += data.len() as u64;
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Upload for DavUpload {
    fn commit(mut self: Box<Self>, meta: &Meta, overwrite: bool) -> Result<Committed> {
        let sent = if self.put.is_none() {
            // All of it is in the buffer: one PUT, sent again if need be.
            let (store, name) = (self.store.clone(), format!("{}.tzst", self.name));
            let body = bytes::Bytes::from(std::mem::take(&mut self.buf));
            store
                .send("upload", &[200, 201, 204], || {
                    store
                        .request(reqwest::Method::PUT, &name)
                        .body(body.clone())
                })
                .map(|r| r.status)
        } else {
            if !self.buf.is_empty() {
                self.send_buf()?;
            }
            self.tx.take();
            let put = self.put.take().expect("the stream is open");
            self.store.rt.block_on(put)?
        };
        let status = match sent {
            Ok(status) => status,
            // The reply can be lost after the server stored the whole archive (the body
            // streamed, so it cannot be sent again): an archive of the right size under this
            // save's own name is this upload, done.
            Err(e) => match self.stored_size() {
                Some(n) if n == self.size => 201,
                // A server that writes in place may keep part of it.
                Some(_) => {
                    let _ = self.store.delete_name(&format!("{}.tzst", self.name));
                    return Err(e);
                }
                None => return Err(e),
            },
        };
        let location = self.store.base.to_string();
        if !(200..300).contains(&status) {
            return Err(refusal("upload", status, &location));
        }
        let meta_obj = format!("{}.json", self.name);
        let body = serde_json::to_vec(meta)?;
        let store = self.store.clone();
        store.send("write metadata", &[200, 201, 204], || {
            store
                .request(reqwest::Method::PUT, &meta_obj)
                .body(body.clone())
        })?;
        let names = self.names()?;
        let won = if overwrite {
            // The newest overwrite wins; older entries of the key go.
            for n in names.iter().filter(|n| n.as_str() < meta_obj.as_str()) {
                let _ = store.delete_name(n);
            }
            true
        } else {
            match verdict(&names, &meta_obj) {
                Settled::Won => true,
                Settled::Lost => false,
                Settled::Unsure => {
                    std::thread::sleep(SETTLE);
                    owner(&self.names()?).as_deref() == Some(meta_obj.as_str())
                }
            }
        };
        if won {
            store.send("mark", &[200, 201, 204], || {
                store
                    .request(reqwest::Method::PUT, &marker_of(&meta_obj))
                    // Not empty: nginx refuses an empty PUT body.
                    .body("won")
            })?;
            return Ok(Committed::Saved);
        }
        let _ = store.delete_name(&meta_obj);
        let _ = store.delete_name(&archive_of(&meta_obj));
        Ok(Committed::Exists)
    }
}

impl Drop for DavUpload {
    fn drop(&mut self) {
        // Not committed: break the PUT off, so the server discards what it received, and
        // remove anything it kept anyway.
        if let Some(put) = self.put.take() {
            if let Some(tx) = self.tx.take() {
                let _ = tx.try_send(Err(std::io::Error::other("save abandoned")));
            }
            let _ = self.store.rt.block_on(put);
            let _ = self.store.delete_name(&format!("{}.tzst", self.name));
        }
    }
}
