//! The GitHub Actions cache service (`gha://`), byte-compatible with `actions/cache`.
//!
//! Lookups, reservations and commits speak the v2 Twirp service at the origin of
//! `ACTIONS_RESULTS_URL` with `ACTIONS_RUNTIME_TOKEN` (`twirp.rs`), or on GitHub Enterprise
//! Server and under `act` the legacy v1 service at `ACTIONS_CACHE_URL` (`v1.rs`); the service
//! matches keys and enforces scopes itself. Archives travel as Azure block blobs behind the
//! signed URLs v2 hands out, or in ranges PATCHed to v1 (`blob.rs`). Listing and deleting go through the REST API with `GITHUB_TOKEN` (`rest.rs`).
//! The service records no checksum: restores rely on zstd's frame checksum and the blob's
//! length instead.

mod blob;
mod rest;
mod twirp;
mod v1;

use super::{Candidate, Committed, Handle, Meta, Store, Upload};
use crate::error::user_error;
use crate::store::{StoreError, StoreResult};
use crate::vars::Vars;
use anyhow::{anyhow, Result};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use twirp::Twirp;
use v1::V1;

/// Blocks of uploads: an archive of at most one block is a single Put Blob. Smaller than the
/// official client's 64 MiB blocks and 128 MiB single shot, so that memory stays bounded
/// (blocks × parallel) while the archive streams straight from the compressor.
const BLOCK: usize = 8 << 20;
const PARALLEL: usize = 8;

const NO_TOKEN: &str = "the GitHub cache needs ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL, which the runner gives only to actions, not to `run:` steps: use the kura action (`uses:`), or expose them to later steps with actions/github-script (`core.exportVariable`)";

/// `ACTIONS_CACHE_MODE`, the job's cache access (`cache-mode:` in the workflow).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    All,
    Read,
    WriteOnly,
    None,
}

/// The cache service this job talks to.
#[derive(Clone)]
enum Api {
    V2(Arc<Twirp>),
    V1(Arc<V1>),
}

pub struct GhaStore {
    rt: Arc<tokio::runtime::Runtime>,
    blobs: reqwest::Client,
    /// None when the job was given no runtime token.
    api: Option<Api>,
    rest: Option<rest::Rest>,
    mode: Mode,
    /// Whole-download deadline per 128 MiB (SEGMENT_DOWNLOAD_TIMEOUT_MINS, default 10).
    segment_deadline: Duration,
    /// How long a silent blob server is waited for (`KURA_HTTP_TIMEOUT`).
    idle: Duration,
}

/// Where GitHub's cache service is, when this job can use it.
pub fn available(vars: &Vars) -> bool {
    let set = |k: &str| vars.get(k).is_some();
    set("ACTIONS_RUNTIME_TOKEN") && (set("ACTIONS_RESULTS_URL") || set("ACTIONS_CACHE_URL"))
}

/// GitHub Enterprise Server speaks only the legacy v1 service.
fn is_ghes(vars: &Vars) -> bool {
    let server = vars
        .get("GITHUB_SERVER_URL")
        .unwrap_or("https://github.com");
    let host = origin(server)
        .and_then(|o| o.split("://").nth(1).map(str::to_string))
        .unwrap_or_default();
    let host = host.split(':').next().unwrap_or("").to_ascii_lowercase();
    !(host == "github.com" || host.ends_with(".ghe.com") || host.ends_with(".localhost"))
}

/// `scheme://host[:port]` of a URL: the official client drops any path.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// A random uuid v4 in its usual form, for block ids.
pub(super) fn uuid() -> String {
    let hex = format!("{:032x}", super::http::random());
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The service this job may talk to, from the runner's variables: v2 wherever it is offered,
/// except on GitHub Enterprise Server, which (like act) speaks only v1; v1 falls back to
/// ACTIONS_RESULTS_URL as the official client does. None without a runtime token.
fn service(vars: &Vars, http: &reqwest::Client) -> Result<Option<Api>> {
    let Some(token) = vars.string("ACTIONS_RUNTIME_TOKEN") else {
        return Ok(None);
    };
    // The service's first retry waits a second; test builds may shorten it (the stand-in's
    // faults would make the suite wait minutes). Not a setting: release builds ignore it.
    let backoff = Duration::from_millis(
        vars.get("GHA_TEST_BACKOFF_MS")
            .filter(|_| cfg!(debug_assertions))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    let results = vars.string("ACTIONS_RESULTS_URL");
    Ok(match (&results, vars.string("ACTIONS_CACHE_URL")) {
        (Some(u), _) if !is_ghes(vars) => Some(Api::V2(Arc::new(Twirp {
            origin: origin(u).ok_or_else(|| anyhow!("ACTIONS_RESULTS_URL {u:?} is not a URL"))?,
            token,
            http: http.clone(),
            backoff,
            within: super::http::idle(vars),
        }))),
        (r, legacy) => legacy.or(r.clone()).map(|base| {
            Api::V1(Arc::new(V1 {
                base: format!("{}/_apis/artifactcache/", base.trim_end_matches('/')),
                token,
                http: http.clone(),
                backoff,
                within: super::http::idle(vars),
            }))
        }),
    })
}

impl GhaStore {
    /// `gha://`. The token is checked when it is first needed, so that a job without one
    /// gets a warning that says how to give it one, not a failed step.
    pub fn open(url: &str, vars: &Vars) -> Result<GhaStore> {
        let rest_of = url.trim_start_matches("gha://");
        if !rest_of.trim_matches('/').is_empty() {
            return Err(user_error(format!(
                "store URL {url:?}: the GitHub cache takes no location; write gha://"
            )));
        }
        let env = |k: &str| vars.string(k);
        // One client (one connection pool) for the service and the blobs.
        let http = super::http::client(vars)?;
        let api = service(vars, &http)?;
        let mode = match env("ACTIONS_CACHE_MODE").as_deref() {
            Some("none") => Mode::None,
            Some("read") => Mode::Read,
            Some("write-only") => Mode::WriteOnly,
            _ => Mode::All,
        };
        let rt = super::http::runtime()?;
        // octocrab starts its service worker on the current runtime.
        let rest = {
            let _in_runtime = rt.enter();
            rest::Rest::from_vars(vars)?
        };
        Ok(GhaStore {
            rt,
            blobs: http,
            api,
            rest,
            mode,
            // Minutes, as the official client reads it; fractions are allowed too.
            // A value no clock holds is as good as none.
            segment_deadline: env("SEGMENT_DOWNLOAD_TIMEOUT_MINS")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|m| *m > 0.0)
                .and_then(|m| crate::units::seconds(60.0 * m))
                .unwrap_or(Duration::from_secs(600)),
            idle: super::http::idle(vars),
        })
    }

    fn api(&self) -> Result<&Api> {
        self.api.as_ref().ok_or_else(|| anyhow!(NO_TOKEN))
    }

    /// The matched key and the archive's URL.
    fn find(&self, keys: &[String], version: &str) -> Result<Option<(String, String)>> {
        match self.api()? {
            Api::V2(t) => {
                let f = self.rt.block_on(t.find(&keys[0], &keys[1..], version))?;
                Ok((f.ok && !f.signed_download_url.is_empty())
                    .then_some((f.matched_key, f.signed_download_url)))
            }
            Api::V1(v) => self.rt.block_on(v.find(keys, version)),
        }
    }

    fn rest(&self, what: &str) -> Result<&rest::Rest> {
        rest::need(&self.rest, what)?;
        Ok(self.rest.as_ref().expect("checked"))
    }

    fn may_read(&self) -> Result<()> {
        if matches!(self.mode, Mode::None | Mode::WriteOnly) {
            return Err(StoreError::Skipped(
                "Cache restore skipped: this job's cache-mode (ACTIONS_CACHE_MODE) does not allow reads"
                    .into(),
            )
            .into());
        }
        Ok(())
    }

    fn may_write(&self) -> Result<()> {
        if matches!(self.mode, Mode::None | Mode::Read) {
            return Err(StoreError::Skipped(
                "Cache save skipped: this job's cache-mode (ACTIONS_CACHE_MODE) does not allow writes"
                    .into(),
            )
            .into());
        }
        Ok(())
    }
}

/// The service's 409: the key is taken.
fn exists(e: &anyhow::Error) -> bool {
    matches!(StoreError::within(e), Some(StoreError::Exists))
}

impl Store for GhaStore {
    fn location(&self) -> String {
        match &self.api {
            Some(Api::V2(t)) => format!("gha:// (GitHub Actions cache at {})", t.origin),
            // Only the origin: act puts a secret in the path.
            Some(Api::V1(v)) => format!(
                "gha:// (GitHub Actions cache, legacy service at {})",
                origin(&v.base).unwrap_or_default()
            ),
            None => "gha:// (GitHub Actions cache)".into(),
        }
    }

    fn max_keys(&self) -> Option<usize> {
        Some(10)
    }

    fn list_prefix(&self, scope: &str, version: &str, prefix: &str) -> StoreResult<Vec<Meta>> {
        let rest = self.rest("listing caches")?;
        let scope = (!scope.is_empty()).then_some(scope);
        let all = self.rt.block_on(rest.list(prefix, scope))?;
        Ok(all
            .into_iter()
            .filter(|m| m.version == version && super::sane(m))
            .collect())
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<Meta>> {
        let rest = self.rest("listing caches")?;
        let all = self.rt.block_on(rest.list(prefix, None))?;
        Ok(all.into_iter().filter(super::sane).collect())
    }

    /// The service matches (exact, then prefix, newest first, scope by scope) and picks the
    /// scopes from the token; kura only asks.
    fn lookup(
        &self,
        _scopes: &[String],
        version: &str,
        c: &[Candidate],
    ) -> StoreResult<Option<Meta>> {
        self.may_read()?;
        let keys: Vec<String> = c.iter().map(|c| c.key.clone()).collect();
        let Some((matched, url)) = self.find(&keys, version)? else {
            return Ok(None);
        };
        let size = self.rt.block_on(blob::size(&self.blobs, &url, self.idle));
        let mut meta = Meta::bare(&matched, version, "");
        if !super::sane(&meta) {
            return Err(anyhow!(
                "the cache service matched a key kura would never write ({}); it is ignored",
                crate::text::untrusted(&matched)
            )
            .into());
        }
        meta.size = size;
        meta.handle = Handle::Url(url);
        Ok(Some(meta))
    }

    fn exists(&self, _scope: &str, version: &str, key: &str) -> StoreResult<bool> {
        self.may_write()?;
        // A read-denied job may still save: a failed probe is "no".
        Ok(match self.find(&[key.to_string()], version) {
            Ok(Some((matched, _))) => matched.eq_ignore_ascii_case(key),
            Ok(None) | Err(_) => false,
        })
    }

    fn open(&self, meta: &Meta) -> StoreResult<Box<dyn Read + Send>> {
        let Handle::Url(url) = &meta.handle else {
            return Err(StoreError::NotFound(format!(
                "the GitHub cache entry {} was not found by a lookup: it cannot be downloaded",
                meta.key
            )));
        };
        // The lookup asked (with its retries); asking again would only wait as long again.
        let size = meta
            .size
            .ok_or_else(|| anyhow!("the cache blob's size is unknown (HEAD failed)"))?;
        let segments = u32::try_from(size.div_ceil(128 << 20).max(1)).unwrap_or(u32::MAX);
        Ok(blob::reader(
            &self.rt,
            self.blobs.clone(),
            url.clone(),
            size,
            PARALLEL,
            (
                self.segment_deadline
                    .checked_mul(segments)
                    .unwrap_or(Duration::MAX),
                self.idle,
            ),
        ))
    }

    fn create(
        &self,
        _scope: &str,
        version: &str,
        key: &str,
    ) -> StoreResult<Option<Box<dyn Upload>>> {
        self.may_write()?;
        let api = self.api()?.clone();
        let (dest, reservation) = match &api {
            Api::V2(twirp) => {
                let created = match self.rt.block_on(twirp.create(key, version)) {
                    Err(e) if exists(&e) => return Ok(None),
                    r => r?,
                };
                if !created.ok || created.signed_upload_url.is_empty() {
                    if created.message.contains("cache write denied:") {
                        return Err(StoreError::Skipped(twirp::denied(&created.message)));
                    }
                    return Err(anyhow!(
                        "the GitHub cache service would not reserve key {key}: {}",
                        created.message
                    )
                    .into());
                }
                (blob::Dest::Azure(created.signed_upload_url), 0)
            }
            Api::V1(v1) => {
                let id = match self.rt.block_on(v1.reserve(key, version)) {
                    Err(e) if exists(&e) => return Ok(None),
                    r => r?,
                };
                (blob::Dest::Service(v1.clone(), id), id)
            }
        };
        Ok(Some(Box::new(GhaUpload {
            blob: Some(blob::Uploader::new(
                self.rt.clone(),
                self.blobs.clone(),
                dest,
                BLOCK,
                PARALLEL,
            )),
            rt: self.rt.clone(),
            api,
            reservation,
        })))
    }

    fn delete(&self, meta: &Meta) -> StoreResult<()> {
        let rest = self.rest("deleting a cache")?;
        if let Handle::Id(id) = meta.handle {
            return Ok(self.rt.block_on(rest.delete_id(id))?);
        }
        // Found by a lookup, which tells no id: the entries with this key and version.
        Ok(self
            .rt
            .block_on(delete_all(rest, &meta.key, None, &meta.version))?)
    }

    /// Entries are immutable on GitHub: an overwrite deletes the old entry first (REST).
    fn prepare_overwrite(&self, scope: &str, version: &str, key: &str) -> StoreResult<()> {
        let rest = self.rest("--overwrite")?;
        let scope = (!scope.is_empty()).then_some(scope);
        Ok(self.rt.block_on(delete_all(rest, key, scope, version))?)
    }
}

/// Delete every entry of `key` and `version` (in `scope`, or in any). One that another job
/// deleted first (GitHub's 404) is gone all the same: only an entry still listed after a
/// failed delete is a failure.
async fn delete_all(
    rest: &rest::Rest,
    key: &str,
    scope: Option<&str>,
    version: &str,
) -> Result<()> {
    let ids = |listed: Vec<Meta>| -> Vec<u64> {
        listed
            .into_iter()
            .filter(|m| m.key == key && m.version == version)
            .filter_map(|m| match m.handle {
                Handle::Id(id) => Some(id),
                _ => None,
            })
            .collect()
    };
    for id in ids(rest.list(key, scope).await?) {
        if let Err(e) = rest.delete_id(id).await {
            if ids(rest.list(key, scope).await?).contains(&id) {
                return Err(e);
            }
        }
    }
    Ok(())
}

struct GhaUpload {
    blob: Option<blob::Uploader>,
    rt: Arc<tokio::runtime::Runtime>,
    api: Api,
    /// v1's cache id.
    reservation: u64,
}

impl Write for GhaUpload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.blob
            .as_mut()
            .expect("write after commit")
            .write(buf)
            .map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Upload for GhaUpload {
    fn commit(mut self: Box<Self>, meta: &Meta, _overwrite: bool) -> StoreResult<Committed> {
        let size = self.blob.take().expect("committed twice").finish()?;
        let done = match &self.api {
            Api::V2(twirp) => self
                .rt
                .block_on(twirp.finalize(&meta.key, &meta.version, size))
                .and_then(|done| match done.ok {
                    true => Ok(()),
                    false => Err(anyhow!(
                        "the GitHub cache service did not commit key {}: {}",
                        meta.key,
                        done.message
                    )),
                }),
            Api::V1(v1) => self.rt.block_on(v1.commit(self.reservation, size)),
        };
        match done {
            Ok(()) => Ok(Committed::Saved),
            Err(e) if exists(&e) => Ok(Committed::Exists),
            Err(e) => Err(e.into()),
        }
    }
}
