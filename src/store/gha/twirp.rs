//! The cache service v2: three Twirp RPCs in JSON, as the official client sends them
//! (snake_case names, int64 as strings, empty fields left out), parsed leniently.

use crate::store::http::{self, Retry, Verdict};
use crate::store::StoreError;
use anyhow::{anyhow, Result};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::time::Duration;

const SERVICE: &str = "/twirp/github.actions.results.api.v1.CacheService/";
const ATTEMPTS: u32 = 5;

pub struct Twirp {
    pub origin: String,
    pub token: String,
    pub http: reqwest::Client,
    /// First backoff after a 5xx; grows ×1.5 per attempt.
    pub backoff: Duration,
    /// `KURA_HTTP_TIMEOUT`: a silent service is given up on within it.
    pub within: Duration,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Created {
    pub ok: bool,
    #[serde(alias = "signedUploadUrl")]
    pub signed_upload_url: String,
    pub message: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Finalized {
    pub ok: bool,
    #[serde(alias = "entryId", deserialize_with = "int64")]
    pub entry_id: i64,
    pub message: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Found {
    pub ok: bool,
    #[serde(alias = "signedDownloadUrl")]
    pub signed_download_url: String,
    #[serde(alias = "matchedKey")]
    pub matched_key: String,
}

/// protobuf's JSON int64: a string or a number.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("not an int64")),
        _ => Ok(0),
    }
}

impl Twirp {
    pub async fn create(&self, key: &str, version: &str) -> Result<Created> {
        self.call("CreateCacheEntry", json!({"key": key, "version": version}))
            .await
    }

    pub async fn finalize(&self, key: &str, version: &str, size: u64) -> Result<Finalized> {
        self.call(
            "FinalizeCacheEntryUpload",
            json!({"key": key, "size_bytes": size.to_string(), "version": version}),
        )
        .await
    }

    pub async fn find(&self, key: &str, restore_keys: &[String], version: &str) -> Result<Found> {
        let mut body = json!({"key": key, "version": version});
        if !restore_keys.is_empty() {
            body["restore_keys"] = json!(restore_keys);
        }
        self.call("GetCacheEntryDownloadURL", body).await
    }

    /// One RPC with the official client's retries (5xx, unreadable bodies, dropped
    /// connections; 5 attempts with growing backoff) plus what it lacks: a 429 waits for
    /// `Retry-After` and tries again.
    async fn call<T: for<'de> Deserialize<'de> + Default>(
        &self,
        method: &str,
        body: Value,
    ) -> Result<T> {
        let url = format!("{}{SERVICE}{method}", self.origin);
        let policy = Retry {
            attempts: ATTEMPTS,
            first: self.backoff,
            factor: 1.5,
            within: Some(self.within),
        };
        let what = format!("{method} (GitHub cache service at {})", self.origin);
        let make = || {
            self.http
                .post(&url)
                .bearer_auth(&self.token)
                .header("content-type", "application/json")
                .body(body.to_string())
        };
        http::send(policy, &what, make, |r| {
            let text = r.text();
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["msg"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.chars().take(200).collect());
            match r.status {
                200..=299 => match serde_json::from_str::<T>(&text) {
                    Ok(t) => Verdict::Done(t),
                    Err(_) => Verdict::Again(format!("{method}: unreadable answer {text:?}")),
                },
                409 => Verdict::Fail(StoreError::Exists.into()),
                429 => Verdict::Again(format!(
                    "{method}: rate limited by the GitHub cache service ({msg})"
                )),
                500 | 502 | 503 | 504 => {
                    Verdict::Again(format!("{method}: HTTP {} ({msg})", r.status))
                }
                status => Verdict::Fail(refusal(method, status, &msg)),
            }
        })
        .await
    }
}

/// A refusal in one line that names what to change.
fn refusal(method: &str, status: u16, msg: &str) -> anyhow::Error {
    if msg.contains("cache write denied:") || msg.contains("cache read denied:") {
        return StoreError::Skipped(denied(msg)).into();
    }
    match status {
        401 => anyhow!("{method}: the GitHub cache service rejected ACTIONS_RUNTIME_TOKEN ({msg}); it is valid only inside the job that received it"),
        403 => anyhow!("{method}: the GitHub cache service refused this job ({msg})"),
        _ => anyhow!("{method}: HTTP {status} from the GitHub cache service ({msg})"),
    }
}

/// `cache write denied:` / `cache read denied:`, with what grants the permission.
pub fn denied(msg: &str) -> String {
    let what = if msg.contains("write denied") {
        "this job's cache token is read-only (events such as pull_request_target get one, as does `cache-mode: read`); the save is skipped"
    } else {
        "this job's cache token may not read the cache (`cache-mode: none` or `write-only`); the restore is skipped"
    };
    format!("{} — {what}", msg.trim())
}
