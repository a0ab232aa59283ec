//! The entries of an object store, written once over the blob primitive ([`Blobs`]): the S3
//! and HTTP/WebDAV stores are adapters of a few operations each, and every entry rule (the
//! layout, the metadata, who owns a key, overwrite, the sweep of killed saves, the packs) is
//! here alone.
//!
//! Layout, names relative to the store's root:
//! `<scope>/<version>/<encoded key>/<created>-<nonce>.{tzst,json,won}`, packs in
//! `.packs/<name>`. The archive is written first, its metadata object next (the commit), so an
//! entry is visible only once complete.
//!
//! Not every object store has create-if-absent (Garage ignores `If-None-Match`, WebDAV servers
//! have none), so concurrent saves of one key are settled with plain writes and strongly
//! consistent listings (`settle`): each writer lists the key's directory after writing its
//! metadata object. A writer that sees only its own object has won: of any two writers at
//! least one sees the other, so at most one can be alone, and every other writer sees it. The
//! winner writes a `.won` marker. A writer that sees others loses to any marked entry; when
//! none is marked yet it waits [`SETTLE`] for a lone winner's marker, lists again and, still
//! without one, the earliest metadata object wins. Losers delete their objects and report
//! "exists". Readers apply the same rule (the earliest marked entry, else the earliest), so
//! all see one entry.

mod packs;
mod settle;
mod upload;

use super::blob::Blobs;
use super::{entry_name, name_prefix, now_ms, scope_dir, Handle, Meta, Store, Upload};
use crate::store::{StoreError, StoreResult};
use anyhow::{anyhow, bail, Result};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::sync::Arc;

/// How long a writer that met other writers of its key waits for a winner's marker.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);
/// The largest metadata object read: far above any entry's (paths and workspace manifests),
/// far below what would hurt.
const META_CAP: u64 = 4 << 20;
/// Where packs live, beside the scopes (a scope's directory never starts with a dot).
const PACKS: &str = ".packs/";

/// An object store's entries.
pub struct Objects<B: Blobs> {
    blobs: Arc<B>,
}

impl<B: Blobs> Objects<B> {
    pub fn new(blobs: B) -> Objects<B> {
        Objects {
            blobs: Arc::new(blobs),
        }
    }

    fn names(&self, prefix: &str) -> Result<Vec<String>> {
        let listed = self.blobs.block_on(self.blobs.list(prefix))?;
        Ok(listed.into_iter().map(|b| b.name).collect())
    }

    /// The entries of the metadata objects `objects`. An object that is gone by now, cannot
    /// be read as metadata, or disagrees with its name is no entry.
    fn read_metas(&self, objects: Vec<String>) -> Result<Vec<Meta>> {
        let blobs = &self.blobs;
        self.blobs.block_on(async {
            futures_util::stream::iter(objects)
                .map(|o| async move {
                    let Some(bytes) = blobs.get(&o, META_CAP).await? else {
                        return Ok(None);
                    };
                    Ok::<_, anyhow::Error>(super::parse::metadata(&bytes, &o))
                })
                .buffer_unordered(16)
                .try_collect::<Vec<_>>()
                .await
                .map(|v| v.into_iter().flatten().collect())
        })
    }

    /// The entries under a name prefix whose key starts with `key_prefix`.
    fn metas_under(&self, prefix: &str, key_prefix: &str) -> Result<Vec<Meta>> {
        let listed = self.blobs.block_on(self.blobs.list(prefix))?;
        // Metadata the listing says is larger than any kura writes is no entry: not read.
        let names: Vec<String> = listed
            .into_iter()
            .filter(|b| !(b.name.ends_with(".json") && b.size > META_CAP))
            .map(|b| b.name)
            .filter(|n| !n.starts_with(PACKS) && entry_object(n))
            .collect();
        let metas = self.read_metas(winners(&names))?;
        Ok(metas
            .into_iter()
            .filter(|m| m.key.starts_with(key_prefix))
            .collect())
    }
}

/// The entries among `names`: per key directory, its owner.
fn winners(names: &[String]) -> Vec<String> {
    let mut dirs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for n in names {
        let dir = n.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        dirs.entry(dir).or_default().push(n.clone());
    }
    dirs.values().filter_map(|d| settle::owner(d)).collect()
}

/// The metadata object an entry was read from.
fn object_of(meta: &Meta) -> Result<&str> {
    match &meta.handle {
        Handle::Object(o) => Ok(o),
        _ => bail!("the entry {} was not read from this store", meta.key),
    }
}

fn archive_of(meta_object: &str) -> String {
    format!("{}.tzst", meta_object.trim_end_matches(".json"))
}

/// Whether the last segment of `name` is one kura writes for an entry:
/// `<13 digits>-<16 hex digits>.{json,tzst,won}`. Nothing else in a key's directory counts
/// for owning it, and nothing else is ever deleted from it.
fn entry_object(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or("");
    let Some((stem, ext)) = file.rsplit_once('.') else {
        return false;
    };
    let Some((time, nonce)) = stem.split_once('-') else {
        return false;
    };
    ["json", "tzst", "won"].contains(&ext)
        && time.len() == 13
        && time.bytes().all(|b| b.is_ascii_digit())
        && nonce.len() == 16
        && nonce
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A save's name without its extension (`<dir>/<created>-<nonce>`), and its creation time.
fn stem_of(name: &str) -> (&str, u64) {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let file = stem.rsplit('/').next().unwrap_or("");
    (
        stem,
        file.get(..13).and_then(|t| t.parse().ok()).unwrap_or(0),
    )
}

/// What the sweep removes: in each key's directory, the objects of every save but the one
/// that owns the key, once they are a day old (saves killed before they committed, losers
/// that could not clean up), and the metadata of an entry whose archive is gone.
fn orphans(names: &[String], now_ms: u64) -> Vec<&String> {
    let cutoff = now_ms.saturating_sub(86_400_000);
    let all: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut dirs: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for n in names
        .iter()
        .filter(|n| !n.starts_with(PACKS) && entry_object(n))
    {
        let dir = n.rsplit_once('/').map_or("", |(d, _)| d);
        dirs.entry(dir).or_default().push(n);
    }
    let mut out = Vec::new();
    for files in dirs.values() {
        let listed: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        let owner = settle::owner(&listed).map(|o| stem_of(&o).0.to_string());
        for f in files {
            let (stem, created) = stem_of(f);
            let archived = all.contains(format!("{stem}.tzst").as_str());
            let stray = owner.as_deref() != Some(stem) || !archived;
            if stray && created < cutoff {
                out.push(*f);
            }
        }
    }
    out
}

impl<B: Blobs> Store for Objects<B> {
    fn location(&self) -> String {
        self.blobs.location()
    }

    fn list_prefix(&self, scope: &str, version: &str, prefix: &str) -> StoreResult<Vec<Meta>> {
        let from = format!("{}/{version}/{}", scope_dir(scope), name_prefix(prefix));
        Ok(self.metas_under(&from, prefix)?)
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<Meta>> {
        Ok(self.metas_under("", prefix)?)
    }

    fn open(&self, meta: &Meta) -> StoreResult<Box<dyn Read + Send>> {
        let archive = archive_of(object_of(meta)?);
        // The archive's size as the store has it: one shorter (or longer) than its metadata
        // says is read as it is, and the restore finds it is not what was saved (damage of
        // the entry's own bytes), instead of failing on a range past its end.
        let size = match self.blobs.block_on(self.blobs.head(&archive))? {
            Some(size) => size,
            // Gone with its metadata (which goes first): removed since it was found.
            None if self
                .blobs
                .block_on(self.blobs.head(object_of(meta)?))?
                .is_none() =>
            {
                return Err(StoreError::NotFound(format!(
                    "the entry {} was removed from the store",
                    meta.key
                )))
            }
            None => 0,
        };
        let (part, parallel) = self.blobs.ranges();
        let blobs = self.blobs.clone();
        Ok(super::http::ranged(
            self.blobs.runtime(),
            size,
            part,
            parallel,
            None,
            move |r| {
                let (blobs, archive) = (blobs.clone(), archive.clone());
                async move {
                    let got = blobs.get_range(&archive, r).await?;
                    got.ok_or_else(|| anyhow!("the archive {archive} is gone"))
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
        let dir = format!("{}/{version}/{}/", scope_dir(scope), entry_name(key));
        let name = format!(
            "{dir}{:013}-{:016x}",
            now_ms(),
            super::http::random() as u64
        );
        Ok(Some(Box::new(upload::ObjectUpload::new(
            self.blobs.clone(),
            dir,
            name,
        ))))
    }

    fn delete(&self, meta: &Meta) -> StoreResult<()> {
        let object = object_of(meta)?;
        // The marker first: cut short, the entry stays whole (unmarked, still found). An
        // entry may have no marker (its writer was killed before writing it).
        for name in [
            settle::marker_of(object),
            object.to_string(),
            archive_of(object),
        ] {
            self.blobs.block_on(self.blobs.delete(&name))?;
        }
        Ok(())
    }

    fn packs(&self) -> Option<Arc<dyn crate::chunked::Packs>> {
        Some(Arc::new(packs::BlobPacks(self.blobs.clone())))
    }

    fn clean_incomplete(&self) {
        let Ok(names) = self.names("") else { return };
        for o in orphans(&names, now_ms()) {
            let _ = self.blobs.block_on(self.blobs.delete(o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn readers_pick_one_owner_per_key_directory() {
        let listed = owned(&["a/1.json", "a/2.json", "a/2.won", "b/3.json", "c/4.tzst"]);
        assert_eq!(winners(&listed), ["a/2.json", "b/3.json"]);
    }

    #[test]
    fn the_sweep_takes_what_no_owner_holds_once_a_day_old() {
        let day = 86_400_000u64;
        let at = |t: u64, n: u8, ext: &str| format!("s/v/k/{t:013}-{:016x}.{ext}", n);
        let (old, young) = (5 * day, 10 * day - 1000);
        let listed = vec![
            // The owner: kept whole.
            at(old, 1, "json"),
            at(old, 1, "tzst"),
            at(old, 1, "won"),
            // A killed save and a loser that could not clean up: old, swept.
            at(old, 2, "tzst"),
            at(old, 3, "json"),
            at(old, 3, "tzst"),
            // A save in flight: young, kept.
            at(young, 4, "tzst"),
            // Not kura's: never touched.
            "s/v/k/garbage.tzst".to_string(),
            format!(".packs/{old:013}-{:016x}.tzst", 5),
            // An entry whose archive is gone: its metadata goes.
            at(old, 6, "json").replace("/k/", "/j/"),
        ];
        let swept: Vec<&String> = orphans(&listed, 10 * day);
        assert_eq!(swept, [&listed[9], &listed[3], &listed[4], &listed[5]]);
    }

    #[test]
    fn only_names_kura_writes_are_entry_objects() {
        assert!(entry_object("s/v/k/1796646836553-00f04614f47df692.won"));
        for bad in [
            "s/v/k/9.json",
            "s/v/k/1796646836553-00F04614F47DF692.json",
            "s/v/k/1796646836553-00f04614f47df692.json.bak",
            "s/v/k/179664683655-00f04614f47df692.json",
            "s/v/k/1796646836553-00f04614f47df69.tzst",
        ] {
            assert!(!entry_object(bad), "{bad}");
        }
    }
}
