//! Cache management through GitHub's REST API (octocrab): list, delete by key or id.
//! Needs `GITHUB_TOKEN` (with `actions: write` to delete) and `GITHUB_REPOSITORY`.

use crate::store::http;
use crate::store::{Handle, Meta};
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;

pub struct Rest {
    octo: octocrab::Octocrab,
    api: String,
    repo: String,
    /// How long a silent API is waited for an answer (`KURA_HTTP_TIMEOUT`).
    idle: std::time::Duration,
}

#[derive(Deserialize)]
struct CacheList {
    #[serde(default)]
    total_count: u64,
    #[serde(default)]
    actions_caches: Vec<Cache>,
}

#[derive(Deserialize)]
struct Cache {
    id: u64,
    #[serde(rename = "ref", default)]
    git_ref: String,
    key: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    last_accessed_at: String,
    #[serde(default)]
    created_at: String,
    #[serde(default)]
    size_in_bytes: u64,
}

impl Cache {
    fn meta(self) -> Meta {
        Meta {
            key: self.key,
            version: self.version,
            scope: self.git_ref,
            size: Some(self.size_in_bytes),
            sha256: None,
            created_ms: rfc3339_ms(&self.created_at),
            used_ms: rfc3339_ms(&self.last_accessed_at),
            kura_version: String::new(),
            files: 0,
            bytes: 0,
            entries: 0,
            paths: Vec::new(),
            build: None,
            manifest: Default::default(),
            parents: Vec::new(),
            format: Default::default(),
            packs: Vec::new(),
            stored: None,
            handle: Handle::Id(self.id),
        }
    }
}

/// The largest REST reply read: a page of a hundred caches is some 50 KB of JSON.
const PAGE_CAP: u64 = 4 << 20;

/// Most pages of one listing.
const MAX_PAGES: u32 = 1000;

impl Rest {
    /// None when the environment gives no token or repository.
    pub fn from_vars(vars: &crate::vars::Vars) -> Result<Option<Rest>> {
        let env = |k: &str| vars.string(k);
        let (Some(token), Some(repo)) = (env("GITHUB_TOKEN"), env("GITHUB_REPOSITORY")) else {
            return Ok(None);
        };
        let api = env("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        let octo = octocrab::Octocrab::builder()
            .base_uri(api.as_str())
            .map_err(|e| anyhow!("GITHUB_API_URL {api:?} is not a URL: {e}"))?
            .personal_token(token)
            .build()
            .map_err(|e| anyhow!("cannot set up the GitHub REST client: {e}"))?;
        Ok(Some(Rest {
            octo,
            api: api.trim_end_matches('/').to_string(),
            repo,
            idle: http::idle(vars),
        }))
    }

    fn route(&self) -> String {
        format!("/repos/{}/actions/caches", self.repo)
    }

    /// Entries whose key starts with `prefix` (and on `git_ref`, when given), every page (at
    /// most [`MAX_PAGES`]).
    pub async fn list(&self, prefix: &str, git_ref: Option<&str>) -> Result<Vec<Meta>> {
        let mut out = Vec::new();
        // 100 entries a page: far more than a repository's 10 GB of caches hold, and a bound
        // on a service that claims more forever.
        for page in 1..=MAX_PAGES {
            let mut q: Vec<(&str, String)> =
                vec![("per_page", "100".into()), ("page", page.to_string())];
            if !prefix.is_empty() {
                q.push(("key", prefix.to_string()));
            }
            if let Some(r) = git_ref {
                q.push(("ref", r.to_string()));
            }
            let got: CacheList = self.get(&q).await?;
            let n = got.actions_caches.len();
            // A page holds at most what was asked: a service that sends more is not followed.
            if n > 100 {
                bail!("list caches: GitHub's page holds {n} caches where 100 were asked; the server is broken");
            }
            out.extend(got.actions_caches.into_iter().map(Cache::meta));
            if n < 100 || out.len() as u64 >= got.total_count {
                break;
            }
        }
        Ok(out)
    }

    /// One page of the listing.
    async fn get(&self, query: &[(&str, String)]) -> Result<CacheList> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let uri = format!("{}{}?{query}", self.api, self.route());
        let what = "list caches";
        let resp = self
            .answered(what, self.octo._get(uri))
            .await?
            .map_err(|e| explain(e, what, "actions: read"))?;
        let body = answer(resp, what, "actions: read").await?;
        serde_json::from_slice(&body)
            .map_err(|e| anyhow!("cannot {what}: GitHub's answer is not a cache list ({e})"))
    }

    /// A request's answer (its head; the body is read within its own pace), given up on
    /// when the API is silent for `idle`.
    async fn answered<T>(
        &self,
        what: &str,
        request: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        tokio::time::timeout(self.idle, request).await.map_err(|_| {
            anyhow!(
                "cannot {what}: GitHub's REST API did not answer within {} s (KURA_HTTP_TIMEOUT)",
                self.idle.as_secs_f64()
            )
        })
    }

    pub async fn delete_id(&self, id: u64) -> Result<()> {
        let uri = format!("{}{}/{id}", self.api, self.route());
        let what = "delete a cache";
        let resp = self
            .answered(what, self.octo._delete(uri, None::<&()>))
            .await?
            .map_err(|e| explain(e, what, "actions: write"))?;
        answer(resp, what, "actions: write").await?;
        Ok(())
    }
}

/// A reply's body, read within [`http::BODY`]'s cap and pace whatever its status (octocrab's
/// own `get` and its error mapping would read any body whole); a refusal as an error that
/// names the permission `GITHUB_TOKEN` needs.
async fn answer<B>(resp: ::http::Response<B>, what: &str, permission: &str) -> Result<bytes::Bytes>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Display,
{
    let status = resp.status().as_u16();
    let declared = resp
        .headers()
        .get(::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = http::read_within(
        http::pieces(resp.into_body()),
        declared,
        http::BODY.with_cap(PAGE_CAP),
    )
    .await
    .map_err(|e| anyhow!("cannot {what} (GitHub REST API): {e}; the server is broken"))?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
    Err(refusal(what, status, &message, permission))
}

/// GitHub's refusal in one line; a 401, 403 or 404 names what `GITHUB_TOKEN` needs.
fn refusal(what: &str, status: u16, message: &str, permission: &str) -> anyhow::Error {
    match status {
        401 => anyhow!("cannot {what}: GitHub rejected GITHUB_TOKEN ({message})"),
        403 | 404 => anyhow!(
            "cannot {what}: GitHub said {status} ({message}); the token needs `permissions: {permission}` on this repository"
        ),
        _ => anyhow!("cannot {what}: GitHub said {status} ({message})"),
    }
}

/// One line; a refusal names the permission `GITHUB_TOKEN` needs.
fn explain(e: octocrab::Error, what: &str, permission: &str) -> anyhow::Error {
    if let octocrab::Error::GitHub { source, .. } = &e {
        return refusal(
            what,
            source.status_code.as_u16(),
            &source.message,
            permission,
        );
    }
    anyhow!("cannot {what}: {e}")
}

/// An RFC 3339 time as GitHub writes it (`2026-11-23T11:30:02Z`, any offset, optional
/// fraction) in milliseconds since the epoch; 0 when absent or unreadable.
fn rfc3339_ms(s: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis().max(0) as u64)
        .unwrap_or(0)
}

pub fn need(rest: &Option<Rest>, what: &str) -> Result<()> {
    if rest.is_none() {
        bail!("{what} on the GitHub cache needs GITHUB_TOKEN and GITHUB_REPOSITORY (the REST API): add `env: GITHUB_TOKEN: ${{{{ github.token }}}}` and `permissions: actions: write`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_parse_as_github_writes_them() {
        assert_eq!(super::rfc3339_ms("1970-01-01T00:00:01Z"), 1000);
        // date -d 2026-11-23T11:30:02.5Z +%s%3N
        assert_eq!(
            super::rfc3339_ms("2026-11-23T11:30:02.5Z"),
            1_795_433_402_500
        );
        // The same instant with an offset.
        assert_eq!(
            super::rfc3339_ms("2026-11-23T12:30:02.5+01:00"),
            1_795_433_402_500
        );
        assert_eq!(super::rfc3339_ms("yesterday"), 0);
    }
}
