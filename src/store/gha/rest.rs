//! Cache management through GitHub's REST API (octocrab): list, delete by key or id.
//! Needs `GITHUB_TOKEN` (with `actions: write` to delete) and `GITHUB_REPOSITORY`.

use crate::store::Meta;
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;

pub struct Rest {
    octo: octocrab::Octocrab,
    api: String,
    repo: String,
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
            size: self.size_in_bytes,
            sha256: String::new(),
            created_ms: rfc3339_ms(&self.created_at),
            used_ms: rfc3339_ms(&self.last_accessed_at),
            kura_version: String::new(),
            files: 0,
            bytes: 0,
            paths: Vec::new(),
            manifest: Default::default(),
            parents: Vec::new(),
            object: format!("id:{}", self.id),
        }
    }
}

impl Rest {
    /// None when the environment gives no token or repository.
    pub fn from_env() -> Result<Option<Rest>> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
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
        }))
    }

    fn route(&self) -> String {
        format!("/repos/{}/actions/caches", self.repo)
    }

    /// Entries whose key starts with `prefix` (and on `git_ref`, when given), every page.
    pub async fn list(&self, prefix: &str, git_ref: Option<&str>) -> Result<Vec<Meta>> {
        let mut out = Vec::new();
        for page in 1.. {
            let mut q: Vec<(&str, String)> =
                vec![("per_page", "100".into()), ("page", page.to_string())];
            if !prefix.is_empty() {
                q.push(("key", prefix.to_string()));
            }
            if let Some(r) = git_ref {
                q.push(("ref", r.to_string()));
            }
            let got: CacheList = self
                .octo
                .get(self.route(), Some(&q))
                .await
                .map_err(|e| explain(e, "list caches", "actions: read"))?;
            let n = got.actions_caches.len();
            out.extend(got.actions_caches.into_iter().map(Cache::meta));
            if n < 100 || out.len() as u64 >= got.total_count {
                break;
            }
        }
        Ok(out)
    }

    pub async fn delete_id(&self, id: &str) -> Result<()> {
        let uri = format!("{}{}/{id}", self.api, self.route());
        let resp = self
            .octo
            ._delete(uri, None::<&()>)
            .await
            .map_err(|e| explain(e, "delete a cache", "actions: write"))?;
        octocrab::map_github_error(resp)
            .await
            .map_err(|e| explain(e, "delete a cache", "actions: write"))?;
        Ok(())
    }
}

/// One line; a refusal names the permission `GITHUB_TOKEN` needs.
fn explain(e: octocrab::Error, what: &str, permission: &str) -> anyhow::Error {
    if let octocrab::Error::GitHub { source, .. } = &e {
        let code = source.status_code.as_u16();
        return match code {
            401 => anyhow!("cannot {what}: GitHub rejected GITHUB_TOKEN ({})", source.message),
            403 | 404 => anyhow!(
                "cannot {what}: GitHub said {code} ({}); the token needs `permissions: {permission}` on this repository",
                source.message
            ),
            _ => anyhow!("cannot {what}: GitHub said {code} ({})", source.message),
        };
    }
    anyhow!("cannot {what}: {e}")
}

/// `2026-11-23T11:30:02Z` (with optional fraction) as milliseconds since the epoch.
fn rfc3339_ms(s: &str) -> u64 {
    let parse = || -> Option<u64> {
        let (date, time) = s.split_once('T')?;
        let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
        let (y, m, day) = (d.next()??, d.next()??, d.next()??);
        let time = time.trim_end_matches('Z');
        let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
        let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
        let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
        let ms: i64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146097 + doe - 719468;
        Some((((days * 24 + h) * 60 + mi) * 60 + sec) as u64 * 1000 + ms as u64)
    };
    parse().unwrap_or(0)
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
    }
}
