//! Talking to an OCI registry: the `/v2/<repository>/` API with the ecosystem's auth. A
//! request goes out without credentials; a 401 challenge says how to authenticate — `Basic`
//! (resend with the credentials) or `Bearer` (get a token from the realm, with the credentials
//! when there are any, and resend with it).

use crate::settings;
use crate::store::http::{self, Reply, Retry, Verdict};
use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use std::sync::Mutex;
use std::time::Duration;

const RETRY: Retry = Retry {
    attempts: 4,
    first: Duration::from_millis(300),
    factor: 2.0,
    within: None,
};

pub(super) struct Registry {
    pub http: reqwest::Client,
    /// For requests that carry a blob's piece: no read timeout, which would cut a transfer
    /// that is still moving; each such request has a deadline from its size instead.
    pub uploads: reqwest::Client,
    /// `KURA_HTTP_TIMEOUT`.
    pub idle: Duration,
    /// `https://HOST[:PORT]`
    pub origin: String,
    pub host: String,
    pub repo: String,
    pub creds: Option<(String, String)>,
    /// The job runs for a pull request from a fork: GitHub gives it a read-only token.
    pub fork_pr: bool,
    /// How the registry asked to be authenticated, once it has.
    auth: Mutex<Auth>,
}

#[derive(Clone)]
enum Auth {
    None,
    Basic,
    Bearer(String),
}

impl Registry {
    pub fn new(
        http: reqwest::Client,
        origin: String,
        host: String,
        repo: String,
        creds: Option<(String, String)>,
    ) -> Registry {
        Registry {
            uploads: http.clone(),
            idle: Duration::from_secs(30),
            http,
            origin,
            host,
            repo,
            creds,
            fork_pr: false,
            auth: Mutex::new(Auth::None),
        }
    }

    /// `/v2/<repository>/<path>`, or a `Location` the registry gave (relative or absolute).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else if path.starts_with('/') {
            format!("{}{path}", self.origin)
        } else {
            format!("{}/v2/{}/{path}", self.origin, self.repo)
        }
    }

    /// Whether a URL is on the registry's own origin (scheme, host and port): credentials
    /// and tokens go there and nowhere else, whatever a `Link` or `Location` header names.
    pub fn own(&self, url: &reqwest::Url) -> bool {
        url.origin().ascii_serialization() == self.origin_serialized()
    }

    fn origin_serialized(&self) -> String {
        url::Url::parse(&self.origin)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| self.origin.clone())
    }

    /// The request with the registry's credentials, if it goes to the registry's origin.
    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let (client, built) = req.build_split();
        let mut r = match built {
            Ok(r) => r,
            // Carry the builder's error to `send`, where it is reported.
            Err(e) => return client.get(format!("invalid request: {e}")),
        };
        if self.own(r.url()) {
            let value = match self.auth.lock().unwrap().clone() {
                Auth::Bearer(t) => Some(format!("Bearer {t}")),
                Auth::Basic => self.creds.as_ref().map(|(u, p)| {
                    let b64 = base64::engine::general_purpose::STANDARD;
                    format!("Basic {}", b64.encode(format!("{u}:{p}")))
                }),
                Auth::None => None,
            };
            if let Some(Ok(mut v)) = value.map(|v| reqwest::header::HeaderValue::from_str(&v)) {
                v.set_sensitive(true);
                r.headers_mut().insert(reqwest::header::AUTHORIZATION, v);
            }
        }
        reqwest::RequestBuilder::from_parts(client, r)
    }

    /// One request, authenticated as the registry asks; `ok` lists the statuses that are
    /// success for it (a 404 the caller expects belongs there).
    pub async fn send(
        &self,
        what: &str,
        ok: &[u16],
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply> {
        self.send_with(
            RETRY.within(self.idle),
            http::BODY,
            &self.http,
            what,
            ok,
            make,
        )
        .await
    }

    /// `send` for a reply that is small by nature (a page of a thousand tags): read within
    /// `cap` bytes, so that what it parses into stays small too.
    pub async fn send_small(
        &self,
        what: &str,
        ok: &[u16],
        cap: u64,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply> {
        let limits = http::BODY.with_cap(cap);
        self.send_with(RETRY.within(self.idle), limits, &self.http, what, ok, make)
            .await
    }

    /// How long a request carrying `bytes` may take: the idle timeout, plus the time the bytes
    /// take at 256 KiB/s.
    pub fn deadline(&self, bytes: usize) -> Duration {
        self.idle + Duration::from_secs((bytes >> 18) as u64)
    }

    /// `send` for a request that must not go out twice on its own (a blob upload's PATCH),
    /// through the uploads client: one attempt, the caller decides what a failure means.
    pub async fn send_once(
        &self,
        what: &str,
        ok: &[u16],
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply> {
        let once = Retry {
            attempts: 1,
            ..RETRY
        };
        self.send_with(once, http::BODY, &self.uploads, what, ok, make)
            .await
    }

    async fn send_with(
        &self,
        policy: Retry,
        limits: http::BodyLimits,
        client: &reqwest::Client,
        what: &str,
        ok: &[u16],
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply> {
        for attempt in 0..2 {
            let reply = http::send_within(
                policy,
                limits,
                what,
                || self.authorize(make(client)),
                |r| {
                    if ok.contains(&r.status) || r.status == 401 {
                        Verdict::Done(r)
                    } else if r.transient() {
                        Verdict::Again(format!("{what}: HTTP {}", r.status))
                    } else {
                        Verdict::Fail(self.refused(what, &r))
                    }
                },
            )
            .await?;
            if reply.status != 401 || (ok.contains(&401)) {
                return Ok(reply);
            }
            // Only the registry's own challenge is met: another origin (one a redirect led
            // to) gets no credentials, nor names where they go.
            let own = reply.from.as_ref().is_some_and(|u| self.own(u));
            if !own {
                break;
            }
            if attempt == 1 {
                break;
            }
            self.answer(&reply).await?;
        }
        Err(crate::store::StoreError::refused(
            401,
            "",
            format!(
                "{what}: {} refused the credentials (HTTP 401 after authenticating){}",
                self.host,
                if self.creds.is_none() {
                    "; set KURA_OCI_USERNAME and KURA_OCI_PASSWORD, or log in with docker login"
                } else {
                    "; check KURA_OCI_USERNAME and KURA_OCI_PASSWORD (or the docker login) and their rights on the repository"
                }
            ),
        )
        .into())
    }

    /// Meet a 401 challenge.
    async fn answer(&self, reply: &Reply) -> Result<()> {
        let challenge = reply
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let (scheme, params) = challenge.split_once(' ').unwrap_or((&challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            if self.creds.is_none() {
                bail!("{} wants credentials: set KURA_OCI_USERNAME and KURA_OCI_PASSWORD, or log in with docker login", self.host);
            }
            *self.auth.lock().unwrap() = Auth::Basic;
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            bail!(
                "{} answered 401 with a challenge kura does not know: {challenge:?}",
                self.host
            );
        }
        let token_url = self.token_url(&challenge_params(params))?;
        let token = self.token(&token_url).await?;
        *self.auth.lock().unwrap() = Auth::Bearer(token);
        Ok(())
    }

    /// Where a Bearer challenge sends kura for a token, for this repository's scope.
    fn token_url(&self, params: &[(String, String)]) -> Result<url::Url> {
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let realm = param("realm")
            .ok_or_else(|| anyhow!("{}: a Bearer challenge without a realm", self.host))?;
        let scope = param("scope").unwrap_or_else(|| format!("repository:{}:pull,push", self.repo));
        let mut token_url = url::Url::parse(&realm)
            .map_err(|e| anyhow!("{}: the token realm {realm:?} is not a URL: {e}", self.host))?;
        // The credentials go to the token service the registry names, but never in clear
        // text when the registry itself is spoken to over TLS.
        if token_url.scheme() != "https" && self.origin.starts_with("https://") {
            bail!(
                "{}: the token realm {realm:?} is not https; kura sends no credentials there",
                self.host
            );
        }
        token_url.query_pairs_mut().append_pair("scope", &scope);
        if let Some(service) = param("service") {
            token_url.query_pairs_mut().append_pair("service", &service);
        }
        Ok(token_url)
    }

    /// A token from the token service, given the credentials.
    async fn token(&self, token_url: &url::Url) -> Result<String> {
        let mut req = self.http.get(token_url.as_str());
        if let Some((u, p)) = &self.creds {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the token service of {}: {}",
                self.host,
                e.without_url()
            )
        })?;
        let status = resp.status().as_u16();
        // A token is a few KiB: the token service chooses no more than that.
        let limits = http::BODY.with_cap(1 << 20);
        let body: serde_json::Value =
            serde_json::from_slice(&http::body(resp, limits).await.unwrap_or_default())
                .unwrap_or_default();
        body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .filter(|_| status == 200)
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "the token service of {} refused (HTTP {status}); check the credentials",
                    self.host
                )
            })
    }

    /// A refusal in one line, with the registry's own message and, for GHCR, the fix.
    pub fn refused(&self, what: &str, r: &Reply) -> anyhow::Error {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let said = body["errors"][0]["message"]
            .as_str()
            .or_else(|| body["errors"][0]["code"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| r.text().chars().take(200).collect());
        let status = r.status;
        let code = body["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let message = match status {
            // Expected, not a failure: a fork's token may read but never write.
            403 if self.fork_pr => {
                return crate::store::StoreError::Skipped(format!(
                    "Cache save skipped: this job runs for a pull request from a fork, whose token is read-only ({} said: {said}); restores still work",
                    self.host
                ))
                .into()
            }
            403 if self.host == "ghcr.io" => format!(
                "ghcr.io refused to {what} (HTTP 403 Forbidden: {said}). The token authenticated but may not write package ghcr.io/{repo}. With GITHUB_TOKEN: 1. give the job permissions: {{ contents: read, packages: write }}; 2. if the package already exists (pushed by hand or from another repository), open it on GitHub, Package settings, Manage Actions access, add this repository with the Write role. Pull requests from forks get a read-only token: saving cannot work there (restore still can)",
                repo = self.repo
            ),
            403 => format!("{} refused to {what} (HTTP 403: {said}); the credentials need push rights on {}", self.host, self.repo),
            405 => format!("{} does not allow {what} (HTTP 405: {said}){}", self.host,
                if self.host == "ghcr.io" { "; GHCR deletes through GitHub's Packages API (set KURA_OCI_PACKAGES_API if this host is GitHub Enterprise Server's)" } else { "; enable it in the registry (distribution: storage.delete.enabled: true)" }),
            _ => format!("{what}: HTTP {status} from {} ({said})", self.host),
        };
        crate::store::StoreError::refused(status, code, message).into()
    }
}

impl Registry {}

/// The `key="value"` pairs of a challenge. Values are quoted and may hold commas
/// (`scope="repository:a/b:pull,push"`), so a plain split on commas would cut them.
fn challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(q) => match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((key, value.to_string()));
        rest = tail.trim_start().trim_start_matches(',');
    }
    out
}

/// Credentials for `host` (with its port, as docker keys them): `KURA_OCI_USERNAME` /
/// `KURA_OCI_PASSWORD`, else what `docker login`
/// wrote to `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`), else on GitHub Actions
/// `GITHUB_ACTOR` / `GITHUB_TOKEN` for ghcr.io.
pub(super) fn credentials(host: &str, vars: &crate::vars::Vars) -> Option<(String, String)> {
    if let Some(user) = vars.string(settings::OCI_USERNAME.name) {
        return Some((
            user,
            vars.string(settings::OCI_PASSWORD.name).unwrap_or_default(),
        ));
    }
    let config = vars
        .get("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| vars.home().map(|h| h.join(".docker")))
        .map(|d| d.join("config.json"));
    if let Some(found) = config.and_then(|c| docker_auth(&c, host)) {
        return Some(found);
    }
    if host == "ghcr.io" || host == "ghcr.io:443" {
        if let (Some(actor), Some(token)) =
            (vars.string("GITHUB_ACTOR"), vars.string("GITHUB_TOKEN"))
        {
            return Some((actor, token));
        }
    }
    None
}

fn docker_auth(config: &std::path::Path, host: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(config).ok()?).ok()?;
    let auths = v["auths"].as_object()?;
    let entry = auths.iter().find_map(|(k, e)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        (k.split('/').next() == Some(host)).then_some(e)
    })?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str()?)
        .ok()?;
    let (u, p) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn challenge_values_keep_their_commas() {
        let p = super::challenge_params(
            r#"realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/r:pull,push",error="insufficient_scope""#,
        );
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("scope"), Some("repository:o/r:pull,push"));
        assert_eq!(get("realm"), Some("https://ghcr.io/token"));
        assert_eq!(get("error"), Some("insufficient_scope"));
        assert_eq!(super::challenge_params(r#"realm=x, service=y"#).len(), 2);
    }

    #[test]
    fn a_403_from_ghcr_says_what_to_grant() {
        crate::store::http::tls();
        let reg = super::Registry::new(
            reqwest::Client::new(),
            "https://ghcr.io".into(),
            "ghcr.io".into(),
            "octo/repo/kura-cache".into(),
            None,
        );
        let reply = crate::store::http::Reply {
            status: 403,
            headers: Default::default(),
            body: br#"{"errors":[{"code":"DENIED","message":"permission_denied: write_package"}]}"#
                .to_vec()
                .into(),
            from: None,
        };
        let text = reg.refused("start an upload", &reply).to_string();
        for says in [
            "permission_denied: write_package",
            "ghcr.io/octo/repo/kura-cache",
            "packages: write",
            "Manage Actions access",
            "forks",
        ] {
            assert!(text.contains(says), "{says}: {text}");
        }
    }
}
