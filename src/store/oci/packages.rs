//! GHCR answers 405 to the registry API's delete: a package version is deleted through GitHub's
//! REST API instead. The version whose `name` is the manifest's digest is found by listing the
//! package's versions (under the organisation, else under the user), then deleted; its tags go
//! with it.

use crate::settings;
use crate::store::http::{self, Reply, Retry, Verdict};
use crate::vars::Vars;
use anyhow::{anyhow, Result};
use std::time::Duration;

/// The largest Packages API reply read: a page of 100 versions is some 100 KB of JSON.
const REPLY_CAP: u64 = 4 << 20;

const RETRY: Retry = Retry {
    attempts: 4,
    first: Duration::from_millis(300),
    factor: 2.0,
    within: None,
};
const PER_PAGE: usize = 100;

pub(super) struct Packages {
    /// `https://api.github.com`, or GitHub Enterprise Server's `https://HOST/api/v3`.
    api: String,
    owner: String,
    package: String,
    token: Option<String>,
    /// `KURA_HTTP_TIMEOUT`: a silent API is given up on within it.
    within: std::time::Duration,
}

/// The Packages API for a registry's repository: for ghcr.io GitHub's (`GITHUB_API_URL` on a
/// runner), for any registry when `KURA_OCI_PACKAGES_API` names one (GitHub Enterprise Server's
/// `containers.HOST`).
pub(super) fn for_registry(
    host: &str,
    repo: &str,
    creds: &Option<(String, String)>,
    vars: &Vars,
) -> Option<Packages> {
    let api = vars.string(settings::OCI_PACKAGES_API.name).or_else(|| {
        (host == "ghcr.io").then(|| {
            vars.string("GITHUB_API_URL")
                .unwrap_or_else(|| "https://api.github.com".into())
        })
    })?;
    let (owner, package) = repo.split_once('/')?;
    Some(Packages {
        api: api.trim_end_matches('/').to_string(),
        owner: owner.to_string(),
        package: package.to_string(),
        token: creds.as_ref().map(|(_, p)| p.clone()),
        within: crate::store::http::idle(vars),
    })
}

impl Packages {
    /// Delete the package version that is the manifest `digest`; a version already gone is
    /// not an error.
    pub async fn delete(&self, client: &reqwest::Client, digest: &str) -> Result<()> {
        let Some(url) = self.find(client, digest).await? else {
            return Ok(());
        };
        self.send("delete the package version", &[204, 404], || {
            client.delete(&url)
        })
        .await
        .map(drop)
    }

    /// The URL of the version named `digest`, looked for under the organisation, else the user.
    async fn find(&self, client: &reqwest::Client, digest: &str) -> Result<Option<String>> {
        let pkg = percent_encoding::utf8_percent_encode(
            &self.package,
            percent_encoding::NON_ALPHANUMERIC,
        );
        for owner_kind in ["orgs", "users"] {
            let versions = format!(
                "{}/{owner_kind}/{}/packages/container/{pkg}/versions",
                self.api, self.owner
            );
            // A bound on an API that claims more pages forever (100 versions each).
            for page in 1..=1000 {
                let r = self
                    .send("list the package's versions", &[200, 404], || {
                        client.get(format!("{versions}?per_page={PER_PAGE}&page={page}"))
                    })
                    .await?;
                if r.status == 404 {
                    break; // not an organisation's package (or none): try the user's
                }
                let list: Vec<serde_json::Value> = serde_json::from_slice(&r.body)
                    .map_err(|e| anyhow!("GitHub's package versions were not a list: {e}"))?;
                if let Some(v) = list.iter().find(|v| v["name"] == digest) {
                    let id = v["id"]
                        .as_u64()
                        .ok_or_else(|| anyhow!("a version without id"))?;
                    return Ok(Some(format!("{versions}/{id}")));
                }
                if list.len() < PER_PAGE {
                    return Ok(None);
                }
            }
        }
        Err(anyhow!(
            "GitHub has no container package {}/{} (neither an organisation's nor a user's); {}",
            self.owner,
            self.package,
            self.fix()
        ))
    }

    async fn send(
        &self,
        what: &str,
        ok: &[u16],
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply> {
        // Its replies are small (a page of 100 versions, a deletion): read within a small cap,
        // so that what a page is parsed into stays small too.
        http::send_within(
            RETRY.within(self.within),
            http::BODY.with_cap(REPLY_CAP),
            what,
            || {
                let req = make()
                    .header("accept", "application/vnd.github+json")
                    .header("x-github-api-version", "2022-11-28");
                match &self.token {
                    Some(t) => req.bearer_auth(t),
                    None => req,
                }
            },
            |r| {
                if ok.contains(&r.status) {
                    Verdict::Done(r)
                } else if r.transient() {
                    Verdict::Again(format!("{what}: HTTP {}", r.status))
                } else {
                    Verdict::Fail(self.refusal(what, &r))
                }
            },
        )
        .await
    }

    fn refusal(&self, what: &str, r: &Reply) -> anyhow::Error {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let said = body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| r.text().chars().take(200).collect());
        anyhow!(
            "GitHub's Packages API refused to {what} of {}/{} (HTTP {}: {said}); {}",
            self.owner,
            self.package,
            r.status,
            self.fix()
        )
    }

    fn fix(&self) -> &'static str {
        "deleting from ghcr.io goes through that API and needs admin rights on the package: \
         GITHUB_TOKEN has them in the repository whose workflow published the package (give \
         the job permissions: packages: write), else put a classic personal access token with \
         read:packages and delete:packages in KURA_OCI_PASSWORD"
    }
}
