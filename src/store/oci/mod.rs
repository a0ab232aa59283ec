//! OCI registries (GHCR, Docker Hub, ECR, Harbor, distribution): `oci://HOST[:PORT]/REPOSITORY`,
//! HTTPS except for registries on 127.0.0.0/8 and localhost (as docker treats them) and with
//! `oci+http://`.
//!
//! An entry is an OCI artifact: one manifest (`artifactType` `application/vnd.kura.entry.v1`,
//! the empty config) whose one layer is the archive, with kura's metadata in its annotations.
//! A chunked entry's first layer is its chunk manifest, followed by the packs it references
//! (`packs.rs`), so that the registry's garbage collection keeps exactly the live packs.
//! Its tag encodes scope, version and key so that a key prefix is a tag prefix (`tag.rs`);
//! restore keys list the tags, read the candidates' manifests and take the newest. A save
//! packs into a temporary file, skips the upload when the registry already has the blob, and
//! puts the manifest last (the commit). Registries have no create-if-absent: the tag is checked
//! right before the manifest goes up and read back a moment later, and only the writer whose
//! manifest the tag names reports "saved".

mod blob;
mod client;
mod packages;
mod packs;
mod tag;
mod upload;

use super::{Handle, Meta, Store, Upload};
use crate::error::user_error;
use crate::store::StoreResult;
use crate::vars::Vars;
use anyhow::{bail, Result};
use client::Registry;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const ARTIFACT: &str = "application/vnd.kura.entry.v1";
const LAYER: &str = "application/vnd.kura.archive.v1.tar+zstd";
/// A chunked entry's first layer: its chunk manifest (`chunked/manifest.rs`).
const CHUNKS_LAYER: &str = "application/vnd.kura.chunks.v1+zstd";
/// The annotation that holds kura's metadata (JSON).
const META: &str = "dev.kura.meta";

pub struct OciStore {
    rt: Arc<tokio::runtime::Runtime>,
    reg: Arc<Registry>,
    /// Where deletes go when the registry refuses them (GHCR).
    packages: Option<packages::Packages>,
    packs: Arc<packs::OciPacks>,
    /// Where saves pack before they upload.
    tmp: PathBuf,
}

impl OciStore {
    pub fn open(url: &str, vars: &Vars) -> Result<OciStore> {
        let bad = |msg: &str| user_error(format!("store URL {url:?}: {msg}"));
        let (plain, rest) = match url.split_once("://") {
            Some(("oci+http", rest)) => (true, rest),
            Some(("oci", rest)) => (false, rest),
            _ => return Err(bad("write it oci://HOST/REPOSITORY")),
        };
        let (host, repo) = rest.trim_end_matches('/').split_once('/').ok_or_else(|| {
            bad("no repository; write it oci://HOST/REPOSITORY, such as oci://ghcr.io/OWNER/cache")
        })?;
        if !valid_repo(repo) {
            return Err(bad("a repository name is lowercase letters and digits, in components separated by '/', joined within by '.', '_', '__' or '-'"));
        }
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let local = name == "localhost" || name.starts_with("127.");
        let scheme = if plain || local { "http" } else { "https" };
        let creds = client::credentials(host, vars);
        let packages = packages::for_registry(name, repo, &creds, vars);
        let mut reg = Registry::new(
            super::http::client(vars)?,
            format!("{scheme}://{host}"),
            name.to_string(),
            repo.to_string(),
            creds,
        );
        reg.fork_pr = crate::ci::fork_pr(vars);
        reg.uploads = super::http::upload_client()?;
        reg.idle = super::http::idle(vars);
        let (rt, reg) = (super::http::runtime()?, Arc::new(reg));
        Ok(OciStore {
            packs: Arc::new(packs::OciPacks::new(rt.clone(), reg.clone())),
            rt,
            reg,
            packages,
            tmp: PathBuf::from(vars.get("TMPDIR").unwrap_or("/tmp")),
        })
    }

    /// Every tag of the repository (following `Link`; the order is the registry's). A page
    /// seen before, a next page on another origin or more than [`MAX_PAGES`] pages is the
    /// registry's fault: an error, never followed.
    fn tags(&self) -> Result<Vec<String>> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut next = Some(self.reg.url("tags/list?n=1000"));
            while let Some(page) = next.take() {
                let url = reqwest::Url::parse(&page)
                    .map_err(|e| anyhow::anyhow!("list tags: the next page {:?} is not a URL: {e}", crate::text::untrusted(&page)))?;
                if !self.reg.own(&url) {
                    bail!("list tags: the registry links the next page to another origin ({}); kura follows no such link", crate::text::untrusted(&url.origin().ascii_serialization()));
                }
                if !seen.insert(url.to_string()) || seen.len() > MAX_PAGES {
                    bail!("list tags: the registry's pages go round in a loop or do not end ({} pages); the registry is broken", seen.len());
                }
                let r = self
                    .reg
                    .send_small("list tags", &[200, 404], TAGS_PAGE_CAP, |h| h.get(url.clone()))
                    .await?;
                if r.status == 404 {
                    break; // nothing saved yet
                }
                let v: serde_json::Value = serde_json::from_slice(&r.body)?;
                out.extend(
                    v["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        // A tag becomes part of a URL: only the spec's grammar, never a path.
                        .filter(|t| tag::valid(t)),
                );
                next = r
                    .headers
                    .get("link")
                    .and_then(|l| l.to_str().ok())
                    .and_then(next_link)
                    .map(|u| url.join(&u).map(|u| u.to_string()).unwrap_or(u));
            }
            Ok(out)
        })
    }

    /// The entry a tag names, or None when the tag is gone or names no kura entry.
    fn read(&self, tag: &str) -> Result<Option<Meta>> {
        self.rt.block_on(async {
            let r = self
                .reg
                .send("read a manifest", &[200, 404], |h| {
                    h.get(self.reg.url(&format!("manifests/{tag}")))
                        .header("accept", MANIFEST)
                })
                .await?;
            if r.status == 404 {
                return Ok(None);
            }
            // An entry is the tag it was found under: a manifest whose metadata names another
            // scope, version or key is not an entry (nor are its packs learnt).
            let Some((m, v)) = entry_under(&r.body, tag) else {
                return Ok(None);
            };
            // A chunked entry's manifest names its packs' blobs.
            self.packs.learn(&v);
            Ok(Some(m))
        })
    }

    fn metas(&self, tag_prefix: &str, key_prefix: &str) -> Result<Vec<Meta>> {
        let mut out = Vec::new();
        for t in self
            .tags()?
            .into_iter()
            .filter(|t| t.starts_with(tag_prefix))
        {
            if let Some(m) = self.read(&t)? {
                // A cut tag matches only on its first characters: the key decides.
                if m.key.starts_with(key_prefix) {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }
}

/// The largest page of tags read: a thousand tags of at most 128 characters are 130 KB.
const TAGS_PAGE_CAP: u64 = 4 << 20;

/// Most pages of one tag listing (1,000 tags each).
const MAX_PAGES: usize = 1000;

/// The target of a `Link` header's `rel="next"` (the first link, where none says its rel).
fn next_link(header: &str) -> Option<String> {
    let links: Vec<(&str, &str)> = header
        .split(',')
        .filter_map(|l| {
            let (_, rest) = l.split_once('<')?;
            let (url, params) = rest.split_once('>')?;
            Some((url.trim(), params))
        })
        .collect();
    links
        .iter()
        .find(|(_, p)| p.replace(' ', "").contains("rel=\"next\"") || p.contains("rel=next"))
        .or(links.first())
        .map(|(u, _)| u.to_string())
}

/// The entry a manifest read under `tag` describes, and the manifest parsed; none when it is
/// not kura's, breaks the rules of user keys, or names another scope, version or key.
pub(crate) fn entry_under(manifest: &[u8], tag: &str) -> Option<(Meta, serde_json::Value)> {
    let (m, v) = entry_of(manifest)?;
    (super::sane(&m) && tag_of(&m) == tag).then_some((m, v))
}

/// The tag an entry is stored under.
pub(crate) fn tag_of(m: &Meta) -> String {
    tag::of(&m.scope, &m.version, &m.key)
}

/// The manifest kura would push for `m` (its packs given made-up blobs), for tests.
#[cfg(test)]
pub(crate) fn manifest_for_tests(m: &Meta) -> Vec<u8> {
    let store = OciStore::open("oci://127.0.0.1:1/kura", &crate::vars::Vars::default()).unwrap();
    let layers: Vec<_> = m
        .packs
        .iter()
        .map(|name| {
            serde_json::json!({"mediaType": packs::PACK_LAYER, "digest": format!("sha256:{}", "0".repeat(64)),
                "size": 10, "annotations": {(packs::PACK_NAME): name}})
        })
        .collect();
    store.packs.learn(&serde_json::json!({ "layers": layers }));
    upload::manifest(m, &format!("sha256:{}", "1".repeat(64)), 1234, &store.packs).unwrap()
}

/// kura's metadata from a manifest's bytes, with the manifest's digest and the layer's; and the
/// manifest, parsed.
fn entry_of(manifest: &[u8]) -> Option<(Meta, serde_json::Value)> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    if v["artifactType"] != ARTIFACT {
        return None;
    }
    let mut m: Meta = serde_json::from_str(v["annotations"][META].as_str()?).ok()?;
    m.used_ms = m.created_ms;
    m.handle = Handle::Manifest {
        digest: format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(manifest))
        ),
        blob: v["layers"][0]["digest"]
            .as_str()
            .filter(|d| valid_digest(d))?
            .to_string(),
    };
    Some((m, v))
}

/// A blob digest kura may put in a URL: `sha256:` and 64 lowercase hex digits.
pub(super) fn valid_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The distribution spec's repository name grammar.
fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.split('/').all(|c| {
            let ok_chars = c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
            let edges = c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
            ok_chars && edges && !c.contains("..") && !c.contains("___")
        })
}

impl Store for OciStore {
    fn location(&self) -> String {
        format!(
            "oci://{}/{}",
            self.reg.origin.split("://").nth(1).unwrap_or(""),
            self.reg.repo
        )
    }

    fn list_prefix(&self, scope: &str, version: &str, prefix: &str) -> StoreResult<Vec<Meta>> {
        let metas = self.metas(&tag::prefix(scope, version, prefix), prefix)?;
        Ok(metas
            .into_iter()
            .filter(|m| m.scope == scope && m.version == version)
            .collect())
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<Meta>> {
        Ok(self.metas("", prefix)?)
    }

    fn exists(&self, scope: &str, version: &str, key: &str) -> StoreResult<bool> {
        Ok(self
            .read(&tag::of(scope, version, key))?
            .is_some_and(|m| m.key == key && m.scope == scope && m.version == version))
    }

    fn open(&self, meta: &Meta) -> StoreResult<Box<dyn Read + Send>> {
        let Handle::Manifest { blob, .. } = &meta.handle else {
            return Err(
                anyhow::anyhow!("the entry {} was not read from this registry", meta.key).into(),
            );
        };
        let size = meta.size.unwrap_or(0);
        let (reg, blob) = (self.reg.clone(), blob.clone());
        Ok(super::http::ranged(
            &self.rt,
            size,
            4 << 20,
            4,
            None,
            move |r| {
                let (reg, blob) = (reg.clone(), blob.clone());
                async move {
                    let range = format!("bytes={}-{}", r.start, r.end - 1);
                    let reply = reg
                        .send("download", &[206], |h| {
                            h.get(reg.url(&format!("blobs/{blob}")))
                                .header("range", &range)
                        })
                        .await?;
                    Ok(reply.body)
                }
            },
        ))
    }

    fn create(
        &self,
        scope: &str,
        version: &str,
        key: &str,
    ) -> StoreResult<Option<Box<dyn Upload>>> {
        let up = upload::OciUpload::new(
            self.rt.clone(),
            self.reg.clone(),
            self.packs.clone(),
            &self.tmp,
            tag::of(scope, version, key),
        )?;
        Ok(Some(Box::new(up)))
    }

    fn packs(&self) -> Option<Arc<dyn crate::chunked::Packs>> {
        Some(self.packs.clone())
    }

    fn delete(&self, meta: &Meta) -> StoreResult<()> {
        let Handle::Manifest { digest, .. } = &meta.handle else {
            return Err(
                anyhow::anyhow!("the entry {} was not read from this registry", meta.key).into(),
            );
        };
        // By digest: distribution 2.8 cannot delete by tag; this also removes the tag.
        Ok(self.rt.block_on(async {
            let r = self
                .reg
                .send("delete an entry", &[202, 404, 405], |h| {
                    h.delete(self.reg.url(&format!("manifests/{digest}")))
                })
                .await?;
            match (r.status, &self.packages) {
                (405, Some(api)) => api.delete(&self.reg.http, digest).await,
                (405, None) => Err(self.reg.refused("delete an entry", &r)),
                _ => Ok(()),
            }
        })?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repository_names_follow_the_distribution_grammar() {
        for ok in ["kura", "owner/repo/kura-cache", "a.b_c__d-e"] {
            assert!(super::valid_repo(ok), "{ok}");
        }
        for bad in ["", "Kura", "a//b", "-a", "a-", "a..b", "a___b", "a/"] {
            assert!(!super::valid_repo(bad), "{bad}");
        }
    }

    /// A pack name that two manifests give different blobs is trusted for neither: one of
    /// them points it at a blob another entry chose.
    #[test]
    fn a_pack_name_given_two_blobs_is_known_for_neither() {
        use crate::chunked::Packs;
        let store =
            super::OciStore::open("oci://127.0.0.1:1/kura", &crate::vars::Vars::default()).unwrap();
        let name = "ab".repeat(32);
        let (d11, d22) = (
            format!("sha256:{}", "1".repeat(64)),
            format!("sha256:{}", "2".repeat(64)),
        );
        let layer = |digest: &str| {
            serde_json::json!({"layers": [
                {"mediaType": "application/vnd.kura.chunks.v1+zstd", "digest": "sha256:00", "size": 1},
                {"mediaType": super::packs::PACK_LAYER, "digest": digest, "size": 10,
                 "annotations": {(super::packs::PACK_NAME): name}},
            ]})
        };
        store.packs.learn(&layer(&d11));
        store.packs.learn(&layer(&d11));
        assert_eq!(store.packs.blob(&name).unwrap().digest, d11);
        store.packs.learn(&layer(&d22));
        assert!(store.packs.blob(&name).is_none());
        store.packs.learn(&layer(&d11));
        assert!(store.packs.blob(&name).is_none(), "trusted again");
        assert!(store.packs.list().unwrap().is_empty());
    }

    #[test]
    fn tags_and_digests_from_a_registry_are_never_paths() {
        for ok in ["0123abcd0123abcd-k", "_x", "A.b-c_d"] {
            assert!(super::tag::valid(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/../b", "a%2Fb", "a b", &"t".repeat(129)] {
            assert!(!super::tag::valid(bad), "{bad}");
        }
        assert!(super::valid_digest(&format!("sha256:{}", "a".repeat(64))));
        for bad in [
            "sha256:../../x",
            "sha512:aa",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(!super::valid_digest(bad), "{bad}");
        }
        // A manifest whose archive layer names a path is no entry.
        let m = crate::store::Meta::bare("k", "v1", "");
        let mut v: serde_json::Value =
            serde_json::from_slice(&super::manifest_for_tests(&m)).unwrap();
        v["layers"][0]["digest"] = "sha256:../../../v2/other/blobs/x".into();
        assert!(super::entry_of(&serde_json::to_vec(&v).unwrap()).is_none());
    }

    #[test]
    fn manifests_of_other_artifacts_are_not_entries() {
        assert!(super::entry_of(br#"{"artifactType":"application/vnd.other"}"#).is_none());
    }
}
