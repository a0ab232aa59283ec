//! Any S3-compatible object store: `s3://BUCKET/PREFIX[?endpoint=URL&region=R]`.
//!
//! Layout: `<prefix>/<scope>/<version>/<encoded key>/<created>-<nonce>.{tzst,json,won}`. The
//! archive is uploaded first (one PUT when small, else a multipart upload with parts in
//! parallel), its metadata object next, so an entry is visible only once complete.
//!
//! Not every S3-compatible server honours `If-None-Match` (Garage ignores it), so concurrent
//! saves of one key are settled with plain writes and strongly consistent listings. Each writer
//! lists the key's directory after writing its metadata object. A writer that sees only its
//! own object has won: of any two writers at least one sees the other, so at most one can be
//! alone, and every other writer sees it. The winner writes a `.won` marker. A writer that sees
//! others loses to any marked entry; when none is marked yet it waits [`SETTLE`] for a lone
//! winner's marker, lists again and, still without one, the earliest metadata object wins.
//! Losers delete their objects and report "skipped". Readers apply the same rule (the earliest
//! marked entry, else the earliest), so all see one entry.
//!
//! The client is object_store's (credential chain from the environment, web identity,
//! container and instance credentials; retries with backoff). The `Store` trait is
//! synchronous; this module owns a tokio runtime and bridges. `upload.rs` is one save's
//! upload, `settle.rs` the rule that picks the owner of a key among concurrent saves.

mod config;
mod explain;
mod packs;
mod upload;

use explain::explain;

use config::Config;

use crate::store::settle::{marker_of, owner};
use upload::{S3Handle, S3Upload};

use super::{entry_name, name_prefix, now_ms, scope_dir, Handle, Meta, Store, Upload};
use crate::vars::Vars;
use anyhow::{bail, Context as _, Result};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as ObjPath;
use object_store::ObjectStoreExt;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

/// Default part size of multipart uploads and ranged downloads (`part_size=`,
/// `KURA_S3_PART_SIZE`); S3 wants at least 5 MiB.
const PART: usize = 8 << 20;
/// Default parts in flight, each way (`concurrency=`, `KURA_S3_CONCURRENCY`).
const PARALLEL: usize = 8;
/// How long a writer that met other writers of its key waits for a winner's marker.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone, Copy)]
struct Tuning {
    part: usize,
    parallel: usize,
}

pub struct S3Store {
    rt: Arc<tokio::runtime::Runtime>,
    s3: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    tuning: Tuning,
}

impl S3Store {
    /// `url` is `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&part_size=8M&concurrency=8]`;
    /// `KURA_S3_ENDPOINT`, `KURA_S3_PART_SIZE` and `KURA_S3_CONCURRENCY` set the same (MinIO,
    /// Garage, R2, Ceph need an endpoint; addressing is path-style).
    pub fn open(url: &str, vars: &Vars) -> Result<S3Store> {
        let c = Config::parse(url, vars)?;
        let s3 = c.client(vars)?;
        Ok(S3Store {
            rt: super::http::runtime()?,
            s3: Arc::new(s3),
            bucket: c.bucket,
            prefix: c.prefix,
            tuning: c.tuning,
        })
    }

    fn join(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    fn version_dir(&self, scope: &str, version: &str) -> String {
        self.join(&format!("{}/{version}/", scope_dir(scope)))
    }

    /// Every object name under a string prefix (not a path prefix: restore keys need that).
    fn list_names(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(list_objects(&self.s3, &self.rt, &self.bucket, prefix)?
            .into_iter()
            .map(|o| o.location.to_string())
            .collect())
    }

    /// The entries among `names`: per key directory, its owner.
    fn winners(names: &[String]) -> Vec<String> {
        let mut dirs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for n in names {
            let dir = n.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            dirs.entry(dir).or_default().push(n.clone());
        }
        dirs.values().filter_map(|d| owner(d)).collect()
    }

    fn read_metas(&self, objects: Vec<String>) -> Result<Vec<Meta>> {
        self.rt.block_on(async {
            futures_util::stream::iter(objects)
                .map(|o| async move {
                    let bytes = self
                        .s3
                        .get(&obj(o.as_str()))
                        .await
                        .map_err(|e| explain(e, &self.bucket, "s3:GetObject"))?
                        .bytes()
                        .await?;
                    let mut m: Meta = serde_json::from_slice(&bytes)
                        .with_context(|| format!("unreadable metadata object {o}"))?;
                    m.used_ms = m.created_ms;
                    // Metadata that disagrees with its name is not an entry of that name.
                    let rel = o.strip_prefix(&self.join("")).unwrap_or(&o);
                    let agrees = super::agrees_object(&m, rel);
                    m.handle = Handle::Object(o);
                    Ok::<_, anyhow::Error>(agrees.then_some(m))
                })
                .buffer_unordered(16)
                .try_collect::<Vec<_>>()
                .await
                .map(|v| v.into_iter().flatten().collect())
        })
    }

    fn metas_under(&self, prefix: &str, key_prefix: &str) -> Result<Vec<Meta>> {
        // Packs and prune's note are not entries.
        let packs = self.join(".packs/");
        let mut names = self.list_names(prefix)?;
        names.retain(|n| !n.starts_with(&packs));
        let metas = self.read_metas(Self::winners(&names))?;
        Ok(metas
            .into_iter()
            .filter(|m| m.key.starts_with(key_prefix))
            .collect())
    }
}

/// Most pages of one listing (1,000 objects each): far more than a cache prefix holds, and a
/// bound on a server that never stops answering "more".
const MAX_PAGES: usize = 5000;

/// Every object under a string prefix, page by page. A continuation token seen before (a loop)
/// or more than [`MAX_PAGES`] pages is the server's fault, an error, never followed forever.
fn list_objects(
    s3: &AmazonS3,
    rt: &tokio::runtime::Runtime,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<object_store::ObjectMeta>> {
    rt.block_on(async {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let opts = PaginatedListOptions {
                page_token: token.take(),
                ..Default::default()
            };
            let page = s3
                .list_paginated(Some(prefix), opts)
                .await
                .map_err(|e| explain(e, bucket, "s3:ListBucket"))?;
            out.extend(page.result.objects);
            match page.page_token.filter(|t| !t.is_empty()) {
                None => return Ok(out),
                Some(t) if !seen.insert(t.clone()) => {
                    bail!("the listing of s3://{bucket}/{prefix} goes round in a loop (a continuation token came back); the server is broken")
                }
                Some(t) => token = Some(t),
            }
        }
        bail!("the listing of s3://{bucket}/{prefix} did not end after {MAX_PAGES} pages; the server is broken or the prefix is not kura's alone")
    })
}

impl Store for S3Store {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn list_prefix(&self, scope: &str, version: &str, prefix: &str) -> Result<Vec<Meta>> {
        let list_from = format!(
            "{}{}",
            self.version_dir(scope, version),
            name_prefix(prefix)
        );
        self.metas_under(&list_from, prefix)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Meta>> {
        self.metas_under(&self.join(""), prefix)
    }

    fn open(&self, meta: &Meta) -> Result<Box<dyn Read + Send>> {
        let path = obj(archive_of(object_of(meta)?));
        // The archive's size as the store has it: one shorter (or longer) than its metadata
        // says is read as it is, and the restore finds it is not what was saved (damage of
        // the entry's own bytes), instead of failing on a range past its end.
        let size = match self.rt.block_on(self.s3.head(&path)) {
            Ok(head) => head.size,
            Err(object_store::Error::NotFound { .. }) => 0,
            Err(e) => return Err(explain(e, &self.bucket, "s3:GetObject")),
        };
        let Tuning { part, parallel } = self.tuning;
        // Memory is what is in flight: `parallel` ranges of at most 4 MiB (the official
        // client's size; each may be collected through a second buffer), plus one handed on.
        let part = part.min(4 << 20) as u64;
        let (s3, bucket) = (self.s3.clone(), self.bucket.clone());
        Ok(super::http::ranged(
            &self.rt,
            size,
            part,
            parallel,
            None,
            move |r| {
                let (s3, path, bucket) = (s3.clone(), path.clone(), bucket.clone());
                async move {
                    s3.get_range(&path, r)
                        .await
                        .map_err(|e| explain(e, &bucket, "s3:GetObject"))
                }
            },
        ))
    }

    fn create(&self, scope: &str, version: &str, key: &str) -> Result<Option<Box<dyn Upload>>> {
        let dir = format!("{}{}/", self.version_dir(scope, version), entry_name(key));
        let name = format!(
            "{dir}{:013}-{:016x}",
            now_ms(),
            super::http::random() as u64
        );
        let store = S3Handle {
            rt: self.rt.clone(),
            s3: self.s3.clone(),
            bucket: self.bucket.clone(),
            tuning: self.tuning,
        };
        Ok(Some(Box::new(S3Upload::new(store, dir, name))))
    }

    fn packs(&self) -> Option<Arc<dyn crate::chunked::Packs>> {
        Some(Arc::new(packs::S3Packs {
            rt: self.rt.clone(),
            s3: self.s3.clone(),
            bucket: self.bucket.clone(),
            dir: self.join(".packs/"),
        }))
    }

    /// Archives and markers without their metadata object are saves killed before they
    /// committed, or deletes cut short. Names start with their creation time; those over a day
    /// old go.
    fn clean_incomplete(&self) {
        let Ok(names) = self.list_names(&self.join("")) else {
            return;
        };
        let cutoff = now_ms().saturating_sub(86_400_000);
        let orphans: Vec<&String> = names
            .iter()
            .filter(|n| n.ends_with(".tzst") || n.ends_with(".won"))
            .filter(|n| {
                let stem = n.trim_end_matches(".tzst").trim_end_matches(".won");
                !names.contains(&format!("{stem}.json"))
            })
            .filter(|n| {
                let file = n.rsplit('/').next().unwrap_or("");
                file.get(..13)
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|t| t < cutoff)
            })
            .collect();
        self.rt.block_on(async {
            for o in orphans {
                let _ = self.s3.delete(&obj(o)).await;
            }
        });
    }

    fn delete(&self, meta: &Meta) -> Result<()> {
        let object = object_of(meta)?;
        self.rt.block_on(async {
            // The marker first: cut short, the entry stays whole (unmarked, still found). An
            // entry may have no marker (its writer was killed before writing it).
            match self.s3.delete(&obj(marker_of(object))).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(explain(e, &self.bucket, "s3:DeleteObject")),
            }
            for o in [object.to_string(), archive_of(object)] {
                self.s3
                    .delete(&obj(o.as_str()))
                    .await
                    .map_err(|e| explain(e, &self.bucket, "s3:DeleteObject"))?;
            }
            Ok(())
        })
    }
}

/// An object name as kura wrote it. `Path::from` would percent-encode the `%` of encoded keys
/// and scopes, so listings by string prefix would no longer find them. kura's names always
/// parse (the prefix is checked in `open`); anything else is encoded rather than a panic.
fn obj(name: impl AsRef<str>) -> ObjPath {
    ObjPath::parse(name.as_ref()).unwrap_or_else(|_| ObjPath::from(name.as_ref()))
}

/// The metadata object an entry was read from.
fn object_of(meta: &Meta) -> Result<&str> {
    match &meta.handle {
        Handle::Object(o) => Ok(o),
        _ => bail!("the entry {} was not read from this S3 store", meta.key),
    }
}

fn archive_of(meta_object: &str) -> String {
    format!("{}.tzst", meta_object.trim_end_matches(".json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_pick_one_owner_per_key_directory() {
        let listed: Vec<String> = ["a/1.json", "a/2.json", "a/2.won", "b/3.json", "c/4.tzst"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(S3Store::winners(&listed), ["a/2.json", "b/3.json"]);
    }
}
