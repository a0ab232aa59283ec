//! The legacy cache service (v1, `_apis/artifactcache`), which GitHub Enterprise Server and
//! `act` still speak: lookup by comma-joined keys, reserve, PATCH the archive in ranges to
//! the service itself, commit with the size.

use crate::store::http::{self, Retry, Verdict};
use crate::store::StoreError;
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

const ACCEPT: &str = "application/json;api-version=6.0-preview.1";
const ATTEMPTS: u32 = 5;

pub struct V1 {
    /// `<ACTIONS_CACHE_URL>_apis/artifactcache/`
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    pub backoff: Duration,
    /// `KURA_HTTP_TIMEOUT`: a silent service is given up on within it.
    pub within: Duration,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Entry {
    cache_key: String,
    archive_location: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Reserved {
    cache_id: u64,
}

impl V1 {
    /// One request with retries on 5xx and dropped connections, and waits on 429.
    async fn send(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(u16, String)> {
        let policy = Retry {
            attempts: ATTEMPTS,
            first: self.backoff,
            factor: 1.5,
            within: Some(self.within),
        };
        let make = || make().bearer_auth(&self.token).header("accept", ACCEPT);
        let what_ = format!("{what} (GitHub cache service)");
        http::send(policy, &what_, make, |r| {
            let body = r.text();
            let msg = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.chars().take(200).collect());
            match r.status {
                200..=299 => Verdict::Done((r.status, body)),
                409 => Verdict::Fail(StoreError::Exists.into()),
                429 => Verdict::Again(format!("{what}: rate limited ({msg})")),
                500..=599 => Verdict::Again(format!("{what}: HTTP {} ({msg})", r.status)),
                401 | 403 if msg.contains("write") => Verdict::Fail(
                    StoreError::Skipped(format!(
                        "cache write denied: {msg} — this job's cache token may not write; the save is skipped"
                    ))
                    .into(),
                ),
                status => Verdict::Fail(anyhow!(
                    "{what}: HTTP {status} from the GitHub cache service ({msg})"
                )),
            }
        })
        .await
    }

    /// The matched key and the archive's URL, or None on a miss (204).
    pub async fn find(&self, keys: &[String], version: &str) -> Result<Option<(String, String)>> {
        let url = format!(
            "{}cache?keys={}&version={}",
            self.base,
            crate::store::encode(&keys.join(",")),
            version
        );
        let (status, body) = self.send("lookup", || self.http.get(&url)).await?;
        if status == 204 || body.trim().is_empty() {
            return Ok(None);
        }
        let e: Entry = serde_json::from_str(&body).unwrap_or_default();
        Ok((!e.archive_location.is_empty()).then_some((e.cache_key, e.archive_location)))
    }

    pub async fn reserve(&self, key: &str, version: &str) -> Result<u64> {
        let body = json!({"key": key, "version": version}).to_string();
        let url = format!("{}caches", self.base);
        let (_, text) = self
            .send("reserve", || {
                self.http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await?;
        let r: Reserved = serde_json::from_str(&text).unwrap_or_default();
        if r.cache_id == 0 {
            bail!("reserve: the GitHub cache service gave no cache id ({text:?})");
        }
        Ok(r.cache_id)
    }

    pub async fn patch(&self, id: u64, offset: u64, data: bytes::Bytes) -> Result<()> {
        let url = format!("{}caches/{id}", self.base);
        let range = format!(
            "bytes {offset}-{}/*",
            offset + (data.len() as u64).max(1) - 1
        );
        self.send("upload", || {
            self.http
                .patch(&url)
                .header("content-type", "application/octet-stream")
                .header("content-range", &range)
                .body(data.clone())
        })
        .await
        .map(drop)
    }

    pub async fn commit(&self, id: u64, size: u64) -> Result<()> {
        let url = format!("{}caches/{id}", self.base);
        let body = json!({ "size": size }).to_string();
        self.send("commit", || {
            self.http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
        })
        .await
        .map(drop)
    }
}
