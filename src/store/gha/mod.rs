//! The GitHub Actions cache service (`gha://`), byte-compatible with `actions/cache`.
//!
//! Lookups, reservations and commits speak the v2 Twirp service at the origin of
//! `ACTIONS_RESULTS_URL` with `ACTIONS_RUNTIME_TOKEN`; the service matches keys and enforces
//! scopes itself. Archives travel as Azure block blobs behind the signed URLs it hands out
//! (`blob.rs`). Listing and deleting go through the REST API with `GITHUB_TOKEN` (`rest.rs`).
//! The service records no checksum: restores rely on zstd's frame checksum and the blob's
//! length instead.

mod blob;
mod rest;
mod twirp;

use super::{Candidate, Committed, Exists, Meta, Skipped, Store, Upload};
use anyhow::{anyhow, bail, Result};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use twirp::{Refusal, Twirp};

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

pub struct GhaStore {
    rt: Arc<tokio::runtime::Runtime>,
    blobs: reqwest::Client,
    twirp: Option<Arc<Twirp>>,
    rest: Option<rest::Rest>,
    mode: Mode,
    /// Whole-download deadline per 128 MiB (SEGMENT_DOWNLOAD_TIMEOUT_MINS, default 10).
    segment_deadline: Duration,
    tuning: (usize, usize),
}

/// Where GitHub's cache service is, when this job can use it.
pub fn available() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    set("ACTIONS_RESULTS_URL") && set("ACTIONS_RUNTIME_TOKEN")
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// GitHub Enterprise Server speaks only the legacy v1 service.
fn is_ghes() -> bool {
    let server = env("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
    let host = origin(&server)
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

pub(super) fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()?;
    (v >= 0.0).then(|| Duration::from_secs_f64(v))
}

/// A random uuid v4 in its usual form, for block ids.
pub(super) fn uuid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(super::now_ms() ^ i as u64);
        h.write_u32(std::process::id());
        *w = h.finish();
    }
    let hex = format!("{:016x}{:016x}", words[0], words[1]);
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

impl GhaStore {
    /// `gha://`. The token is checked when it is first needed, so that a job without one
    /// gets a warning that says how to give it one, not a failed step.
    pub fn open(url: &str) -> Result<GhaStore> {
        let rest_of = url.trim_start_matches("gha://");
        if !rest_of.trim_matches('/').is_empty() {
            bail!("store URL {url:?}: the GitHub cache takes no location; write gha://");
        }
        if is_ghes() || (env("ACTIONS_CACHE_URL").is_some() && env("ACTIONS_RESULTS_URL").is_none())
        {
            bail!("this GitHub (GitHub Enterprise Server, or act) offers only the legacy v1 cache service, which kura does not speak yet; use --store s3://... or file://...");
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let secs = |k: &str, default: u64| {
            env(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        let idle = Duration::from_secs(secs("KURA_HTTP_TIMEOUT", 30).max(1));
        let build = |read: Duration| {
            reqwest::Client::builder()
                .user_agent(concat!("kura/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(read)
                .build()
        };
        let twirp = match (env("ACTIONS_RESULTS_URL"), env("ACTIONS_RUNTIME_TOKEN")) {
            (Some(u), Some(token)) => Some(Arc::new(Twirp {
                origin: origin(&u)
                    .ok_or_else(|| anyhow!("ACTIONS_RESULTS_URL {u:?} is not a URL"))?,
                token,
                http: build(idle)?,
                backoff: Duration::from_millis(secs("KURA_GHA_BACKOFF_MS", 1000)),
            })),
            _ => None,
        };
        let mode = match env("ACTIONS_CACHE_MODE").as_deref() {
            Some("none") => Mode::None,
            Some("read") => Mode::Read,
            Some("write-only") => Mode::WriteOnly,
            _ => Mode::All,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // octocrab starts its service worker on the current runtime.
        let rest = {
            let _in_runtime = rt.enter();
            rest::Rest::from_env()?
        };
        Ok(GhaStore {
            rt: Arc::new(rt),
            blobs: build(idle)?,
            twirp,
            rest,
            mode,
            // Minutes, as the official client reads it; fractions are allowed too.
            segment_deadline: Duration::from_secs_f64(
                60.0 * env("SEGMENT_DOWNLOAD_TIMEOUT_MINS")
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|m| *m > 0.0)
                    .unwrap_or(10.0),
            ),
            tuning: (BLOCK, PARALLEL),
        })
    }

    fn twirp(&self) -> Result<&Twirp> {
        self.twirp.as_deref().ok_or_else(|| anyhow!(NO_TOKEN))
    }

    fn rest(&self, what: &str) -> Result<&rest::Rest> {
        rest::need(&self.rest, what)?;
        Ok(self.rest.as_ref().expect("checked"))
    }

    fn may_read(&self) -> Result<()> {
        if matches!(self.mode, Mode::None | Mode::WriteOnly) {
            return Err(Skipped(
                "Cache restore skipped: this job's cache-mode (ACTIONS_CACHE_MODE) does not allow reads"
                    .into(),
            )
            .into());
        }
        Ok(())
    }

    fn may_write(&self) -> Result<()> {
        if matches!(self.mode, Mode::None | Mode::Read) {
            return Err(Skipped(
                "Cache save skipped: this job's cache-mode (ACTIONS_CACHE_MODE) does not allow writes"
                    .into(),
            )
            .into());
        }
        Ok(())
    }
}

/// Refusals of the service as kura's outcomes: "denied" is a skip with its reason.
fn refused(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<Refusal>() {
        Ok(Refusal::Exists) => Exists.into(),
        Ok(Refusal::Denied(m)) => Skipped(m).into(),
        Err(e) => e,
    }
}

impl Store for GhaStore {
    fn location(&self) -> String {
        match &self.twirp {
            Some(t) => format!("gha:// (GitHub Actions cache at {})", t.origin),
            None => "gha:// (GitHub Actions cache)".into(),
        }
    }

    fn max_keys(&self) -> Option<usize> {
        Some(10)
    }

    fn list_prefix(&self, scope: &str, version: &str, prefix: &str) -> Result<Vec<Meta>> {
        let rest = self.rest("listing caches")?;
        let scope = (!scope.is_empty()).then_some(scope);
        let all = self.rt.block_on(rest.list(prefix, scope))?;
        Ok(all.into_iter().filter(|m| m.version == version).collect())
    }

    fn list(&self, prefix: &str) -> Result<Vec<Meta>> {
        let rest = self.rest("listing caches")?;
        self.rt.block_on(rest.list(prefix, None))
    }

    /// The service matches (exact, then prefix, newest first, scope by scope) and picks the
    /// scopes from the token; kura only asks.
    fn lookup(&self, _scopes: &[String], version: &str, c: &[Candidate]) -> Result<Option<Meta>> {
        self.may_read()?;
        let twirp = self.twirp()?;
        let restore: Vec<String> = c[1..].iter().map(|c| c.key.clone()).collect();
        let found = self
            .rt
            .block_on(twirp.find(&c[0].key, &restore, version))
            .map_err(refused)?;
        if !found.ok || found.signed_download_url.is_empty() {
            return Ok(None);
        }
        let size = self
            .rt
            .block_on(blob::size(&self.blobs, &found.signed_download_url))
            .unwrap_or(0);
        let mut meta = Meta::bare(&found.matched_key, version, "");
        meta.size = size;
        meta.object = found.signed_download_url;
        Ok(Some(meta))
    }

    fn exists(&self, _scope: &str, version: &str, key: &str) -> Result<bool> {
        self.may_write()?;
        let twirp = self.twirp()?;
        // A read-only token or a read-denied job may still save: a failed probe is "no".
        Ok(match self.rt.block_on(twirp.find(key, &[], version)) {
            Ok(f) => f.ok && f.matched_key.eq_ignore_ascii_case(key),
            Err(_) => false,
        })
    }

    fn open(&self, meta: &Meta) -> Result<Box<dyn Read + Send>> {
        let mut size = meta.size;
        if size == 0 {
            size = self
                .rt
                .block_on(blob::size(&self.blobs, &meta.object))
                .ok_or_else(|| anyhow!("the cache blob's size is unknown (HEAD failed)"))?;
        }
        let segments = size.div_ceil(128 << 20).max(1) as u32;
        Ok(blob::reader(
            &self.rt,
            self.blobs.clone(),
            meta.object.clone(),
            size,
            self.tuning.1,
            self.segment_deadline * segments,
        ))
    }

    fn create(&self, _scope: &str, version: &str, key: &str) -> Result<Box<dyn Upload>> {
        self.may_write()?;
        let twirp = self.twirp.clone().ok_or_else(|| anyhow!(NO_TOKEN))?;
        let created = self
            .rt
            .block_on(twirp.create(key, version))
            .map_err(refused)?;
        if !created.ok || created.signed_upload_url.is_empty() {
            if created.message.contains("cache write denied:") {
                return Err(Skipped(twirp::denied(&created.message)).into());
            }
            bail!(
                "the GitHub cache service would not reserve key {key}: {}",
                created.message
            );
        }
        Ok(Box::new(GhaUpload {
            blob: Some(blob::Uploader::new(
                self.rt.clone(),
                self.blobs.clone(),
                created.signed_upload_url,
                self.tuning.0,
                self.tuning.1,
            )),
            rt: self.rt.clone(),
            twirp,
        }))
    }

    fn delete(&self, meta: &Meta) -> Result<()> {
        let rest = self.rest("deleting a cache")?;
        if let Some(id) = meta.object.strip_prefix("id:") {
            return self.rt.block_on(rest.delete_id(id));
        }
        // Found by a lookup, which tells no id: the entries with this key and version.
        self.rt.block_on(async {
            for m in rest.list(&meta.key, None).await? {
                if m.key == meta.key && m.version == meta.version {
                    rest.delete_id(m.object.trim_start_matches("id:")).await?;
                }
            }
            Ok(())
        })
    }

    /// Entries are immutable on GitHub: an overwrite deletes the old entry first (REST).
    fn prepare_overwrite(&self, scope: &str, version: &str, key: &str) -> Result<()> {
        let rest = self.rest("--overwrite")?;
        let scope = (!scope.is_empty()).then_some(scope);
        self.rt.block_on(async {
            for m in rest.list(key, scope).await? {
                if m.key == key && m.version == version {
                    rest.delete_id(m.object.trim_start_matches("id:")).await?;
                }
            }
            Ok(())
        })
    }
}

struct GhaUpload {
    blob: Option<blob::Uploader>,
    rt: Arc<tokio::runtime::Runtime>,
    twirp: Arc<Twirp>,
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
    fn commit(mut self: Box<Self>, meta: &Meta, _overwrite: bool) -> Result<Committed> {
        let size = self.blob.take().expect("committed twice").finish()?;
        let done = self
            .rt
            .block_on(self.twirp.finalize(&meta.key, &meta.version, size))
            .map_err(refused)?;
        if !done.ok {
            bail!(
                "the GitHub cache service did not commit key {}: {}",
                meta.key,
                done.message
            );
        }
        Ok(Committed::Saved)
    }
}
