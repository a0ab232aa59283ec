//! The store contract: one set of tests (`suite.rs`) that every store must pass, run here
//! against the local directory store, Garage (S3), the GitHub cache stand-in (Azurite behind
//! a Twirp and REST service), nginx with WebDAV (the HTTP store) and Debian's docker-registry
//! (the OCI store). A new store adds a
//! [`Fixture`] and one `contract!` line.
//!
//! The tests drive the library's `Store` trait directly, and the verbs (`ops::save`,
//! `ops::restore`, `ops::prune`) where the contract is about what a verb does with the store.

mod chunks;
mod suite;
use crate::support;

use crate::support::garage::{garage, BUCKET, KEY_ID, SECRET};
use kura::store::{self, Handle, Meta, Store};
use kura::vars::Vars;
use std::path::PathBuf;

/// How to reach one kind of store, and how to tamper with it behind kura's back.
pub trait Fixture: Sync {
    /// A store for namespace `ns` (a fresh, empty location where the store has locations)
    /// whose saves go to scope `write` and whose restores may read `read`, in order. Stores
    /// that take scopes from a token get a token with those scopes.
    fn store(&self, ns: &str, write: &str, read: &[&str]) -> Box<dyn Store>;
    /// Damage an entry's archive: its second half replaced by noise, or cut off.
    fn corrupt(&self, ns: &str, meta: &Meta, how: Damage);
    /// Make an entry look created and last used `days` ago.
    fn backdate(&self, ns: &str, meta: &Meta, days: u64);
    /// What the store holds in `ns` that belongs to no entry `store.list` shows: the
    /// leftovers of losing, abandoned or killed saves. Empty where the service owns storage.
    fn stray(&self, ns: &str, store: &dyn Store) -> Vec<String>;
    /// GitHub keeps an unfinished reservation: the key stays taken after an abandoned save.
    fn abandoned_save_holds_the_key(&self) -> bool {
        false
    }
    /// Delete a pack behind kura's back.
    fn delete_pack(&self, _ns: &str, store: &dyn Store, _meta: &Meta, name: &str) {
        store.packs().unwrap().delete(name).unwrap();
    }
    /// Run the store's own garbage collection, where it collects unreferenced packs itself.
    fn collect_garbage(&self) {
        unreachable!("this store's packs are swept by prune")
    }
    /// The service matches keys itself, in GitHub order only (no CircleCI order).
    fn github_order_only(&self) -> bool {
        false
    }
    /// What reading an entry the store has removed since it was found gives.
    fn removed_entry(&self) -> Removed {
        Removed::NotFound
    }
}

/// Reading an entry removed after it was found (a prune or an overwrite racing a restore).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Removed {
    /// `StoreError::NotFound`: the restore is a miss, not a corrupt entry.
    NotFound,
    /// Its bytes, whole (an OCI registry keeps a blob after the manifest naming it goes).
    StillReadable,
}

/// `data` with its second half replaced by noise.
/// What a damaged archive looks like: the same length with noise from its middle on, or cut
/// in half (shorter than its metadata says).
#[derive(Clone, Copy, Debug)]
pub enum Damage {
    Spoil,
    Shorten,
}

fn spoil(mut data: Vec<u8>, how: Damage, seed: u64) -> Vec<u8> {
    let half = data.len() / 2;
    match how {
        Damage::Spoil => {
            let noise = support::noise(data.len() - half, seed);
            data[half..].copy_from_slice(&noise);
        }
        Damage::Shorten => data.truncate(half),
    }
    data
}

fn scratch(ns: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("contract-{}", std::process::id()))
        .join(ns)
}

/// The local directory store.
pub struct Local;

impl Local {
    fn root(ns: &str) -> PathBuf {
        scratch(ns).join("store")
    }

    /// The entry directory holding `meta`: the one whose meta.json names its key.
    fn entry_dir(ns: &str, meta: &Meta) -> PathBuf {
        fn walk(d: &std::path::Path, key: &str) -> Option<PathBuf> {
            for e in std::fs::read_dir(d).ok()?.flatten() {
                let p = e.path();
                if p.join("meta.json").is_file() {
                    let m: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(p.join("meta.json")).ok()?).ok()?;
                    if m["key"] == key {
                        return Some(p);
                    }
                } else if p.is_dir() {
                    if let Some(found) = walk(&p, key) {
                        return Some(found);
                    }
                }
            }
            None
        }
        walk(&Local::root(ns), &meta.key).expect("the entry is in the store directory")
    }
}

impl Fixture for Local {
    fn store(&self, ns: &str, _write: &str, _read: &[&str]) -> Box<dyn Store> {
        let url = format!("file://{}", Local::root(ns).display());
        store::open(Some(&url), &Vars::default()).unwrap()
    }

    fn corrupt(&self, ns: &str, meta: &Meta, how: Damage) {
        let archive = Local::entry_dir(ns, meta).join("archive");
        std::fs::write(&archive, spoil(std::fs::read(&archive).unwrap(), how, 77)).unwrap();
    }

    fn stray(&self, ns: &str, _store: &dyn Store) -> Vec<String> {
        std::fs::read_dir(Local::root(ns).join(".tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().display().to_string())
            .collect()
    }

    fn backdate(&self, ns: &str, meta: &Meta, days: u64) {
        let dir = Local::entry_dir(ns, meta);
        let path = dir.join("meta.json");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let then = m["created_ms"].as_u64().unwrap() - days * 86_400_000;
        m["created_ms"] = then.into();
        std::fs::write(&path, m.to_string()).unwrap();
        let t = filetime::FileTime::from_unix_time((then / 1000) as i64, 0);
        filetime::set_file_mtime(&dir, t).unwrap();
    }
}

/// Garage, one prefix of the test bucket per namespace.
pub struct S3;

impl S3 {
    fn vars() -> Vars {
        Vars::from_pairs([
            ("KURA_S3_ENDPOINT", garage().endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_REGION", "garage"),
        ])
    }

    /// The metadata object's name in the bucket: the store's name under the namespace's
    /// prefix.
    fn object(ns: &str, meta: &Meta) -> String {
        match &meta.handle {
            Handle::Object(o) => format!("contract-{ns}/{o}"),
            h => panic!("an S3 entry without its object name: {h:?}"),
        }
    }

    fn put(name: &str, data: Vec<u8>) {
        use object_store::ObjectStoreExt;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(
            support::garage::client()
                .put(&object_store::path::Path::parse(name).unwrap(), data.into()),
        )
        .unwrap();
    }

    fn get(name: &str) -> Vec<u8> {
        use object_store::ObjectStoreExt;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let path = object_store::path::Path::parse(name).unwrap();
            support::garage::client()
                .get(&path)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        })
        .to_vec()
    }
}

impl Fixture for S3 {
    fn store(&self, ns: &str, _write: &str, _read: &[&str]) -> Box<dyn Store> {
        let url = format!("s3://{BUCKET}/contract-{ns}");
        store::open(Some(&url), &S3::vars()).unwrap()
    }

    fn corrupt(&self, ns: &str, meta: &Meta, how: Damage) {
        let o = S3::object(ns, meta);
        let archive = format!("{}.tzst", o.trim_end_matches(".json"));
        S3::put(&archive, spoil(S3::get(&archive), how, 78));
    }

    fn stray(&self, ns: &str, store: &dyn Store) -> Vec<String> {
        use object_store::list::{PaginatedListOptions, PaginatedListStore};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let names: Vec<String> = rt
            .block_on(support::garage::client().list_paginated(
                Some(&format!("contract-{ns}/")),
                PaginatedListOptions::default(),
            ))
            .unwrap()
            .result
            .objects
            .into_iter()
            .map(|o| o.location.to_string())
            .collect();
        let kept: Vec<String> = store
            .list("")
            .unwrap()
            .iter()
            .flat_map(|m| {
                let stem = S3::object(ns, m).trim_end_matches(".json").to_string();
                ["json", "tzst", "won"].map(|x| format!("{stem}.{x}"))
            })
            .collect();
        names.into_iter().filter(|n| !kept.contains(n)).collect()
    }

    fn backdate(&self, ns: &str, meta: &Meta, days: u64) {
        let o = S3::object(ns, meta);
        let mut m: serde_json::Value = serde_json::from_slice(&S3::get(&o)).unwrap();
        let then = m["created_ms"].as_u64().unwrap() - days * 86_400_000;
        m["created_ms"] = then.into();
        S3::put(&o, m.to_string().into_bytes());
    }
}

/// The GitHub cache service stand-in, shared by every test: namespaces live in the keys.
pub struct Gha;

impl Fixture for Gha {
    fn removed_entry(&self) -> Removed {
        // The signed URL still reads the blob (Azurite keeps it after the entry goes).
        Removed::StillReadable
    }

    fn store(&self, _ns: &str, write: &str, read: &[&str]) -> Box<dyn Store> {
        let svc = support::gha::service();
        let mut scopes = vec![(write, 3u8)];
        scopes.extend(read.iter().filter(|r| **r != write).map(|r| (*r, 1u8)));
        let vars = Vars::from_pairs([
            ("ACTIONS_RESULTS_URL", format!("{}/", svc.url)),
            ("ACTIONS_RUNTIME_TOKEN", support::gha::token(&scopes)),
            ("GITHUB_REPOSITORY", "octo/repo".into()),
            ("GITHUB_API_URL", svc.url.clone()),
            ("GITHUB_TOKEN", "gh-token".into()),
            ("GHA_TEST_BACKOFF_MS", "100".into()),
        ]);
        store::open(Some("gha://"), &vars).unwrap()
    }

    fn corrupt(&self, _ns: &str, meta: &Meta, how: Damage) {
        // The stand-in service damages the blob its own way, whatever `how` asks.
        let _ = how;
        assert_eq!(support::gha::service().corrupt(&meta.key), 1);
    }

    fn backdate(&self, _ns: &str, meta: &Meta, days: u64) {
        assert_eq!(support::gha::service().age(&meta.key, days), 1);
    }

    fn stray(&self, _ns: &str, _store: &dyn Store) -> Vec<String> {
        Vec::new()
    }

    fn abandoned_save_holds_the_key(&self) -> bool {
        true
    }

    fn github_order_only(&self) -> bool {
        true
    }
}

/// nginx with WebDAV writes, one directory per namespace below a location: `""` lists
/// directories as JSON, `"propfind/"` only with PROPFIND.
pub struct Dav(pub &'static str);

impl Dav {
    fn dir(&self, ns: &str) -> PathBuf {
        support::nginx::nginx()
            .root
            .join(self.0)
            .join(format!("contract-{ns}"))
    }

    fn object(meta: &Meta) -> String {
        match &meta.handle {
            Handle::Object(o) => o.clone(),
            h => panic!("an HTTP store entry without its object name: {h:?}"),
        }
    }
}

impl Fixture for Dav {
    fn store(&self, ns: &str, _write: &str, _read: &[&str]) -> Box<dyn Store> {
        let url = format!("{}{}contract-{ns}/", support::nginx::nginx().url, self.0);
        store::open(Some(&url), &Vars::default()).unwrap()
    }

    fn corrupt(&self, ns: &str, meta: &Meta, how: Damage) {
        let o = Dav::object(meta);
        let archive = self
            .dir(ns)
            .join(format!("{}.tzst", o.trim_end_matches(".json")));
        std::fs::write(&archive, spoil(std::fs::read(&archive).unwrap(), how, 79)).unwrap();
    }

    fn backdate(&self, ns: &str, meta: &Meta, days: u64) {
        let path = self.dir(ns).join(Dav::object(meta));
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let then = m["created_ms"].as_u64().unwrap() - days * 86_400_000;
        m["created_ms"] = then.into();
        std::fs::write(&path, m.to_string()).unwrap();
    }

    fn stray(&self, ns: &str, store: &dyn Store) -> Vec<String> {
        let root = self.dir(ns);
        let all = support::files_below(&root);
        let kept: Vec<PathBuf> = store
            .list("")
            .unwrap()
            .iter()
            .flat_map(|m| {
                let stem = Dav::object(m).trim_end_matches(".json").to_string();
                ["json", "tzst", "won"].map(|x| root.join(format!("{stem}.{x}")))
            })
            .collect();
        all.into_iter()
            .filter(|f| !kept.contains(f))
            .map(|f| f.display().to_string())
            .collect()
    }
}

/// Debian's docker-registry (distribution 2.8.2), one repository per namespace.
pub struct Oci;

impl Oci {
    fn repo(ns: &str) -> String {
        format!("contract/{ns}")
    }

    /// The registry a test's namespace lives in: the one whose garbage collection a test runs
    /// (`chunks::prune_racing_a_save_keeps_its_packs`) is apart from the one the others share.
    fn registry(ns: &str) -> &'static support::registry::Registry {
        if ns.starts_with("chunkrace-prune") {
            support::registry::collected()
        } else {
            support::registry::open()
        }
    }

    /// One plain HTTP/1.0 exchange with the registry: status and body.
    fn http(method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
        // The path names the repository, `contract/<ns>`, and so the registry.
        let ns = path.split("/contract/").nth(1).unwrap_or("");
        Oci::registry(ns).http(method, path, headers, body)
    }

    fn digests(meta: &Meta) -> (String, String) {
        match &meta.handle {
            Handle::Manifest { digest, blob } => (digest.clone(), blob.clone()),
            h => panic!("a registry entry without its manifest: {h:?}"),
        }
    }
}

impl Fixture for Oci {
    fn removed_entry(&self) -> Removed {
        Removed::StillReadable
    }

    fn store(&self, ns: &str, _write: &str, _read: &[&str]) -> Box<dyn Store> {
        let url = format!("oci://{}/{}", Oci::registry(ns).addr, Oci::repo(ns));
        store::open(Some(&url), &Vars::default()).unwrap()
    }

    fn corrupt(&self, _ns: &str, meta: &Meta, how: Damage) {
        let (_, blob) = Oci::digests(meta);
        let hex = blob.trim_start_matches("sha256:");
        let path = support::registry::open()
            .data
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        std::fs::write(&path, spoil(std::fs::read(&path).unwrap(), how, 80)).unwrap();
    }

    fn backdate(&self, ns: &str, meta: &Meta, days: u64) {
        // Put the manifest again under its tag, with an older creation time.
        let (digest, _) = Oci::digests(meta);
        let repo = Oci::repo(ns);
        let accept = "Accept: application/vnd.oci.image.manifest.v1+json\r\n";
        let (_, tags) = Oci::http("GET", &format!("/v2/{repo}/tags/list"), "", b"");
        let tags: serde_json::Value = serde_json::from_slice(&tags).unwrap();
        for tag in tags["tags"].as_array().unwrap() {
            let path = format!("/v2/{repo}/manifests/{}", tag.as_str().unwrap());
            let (_, body) = Oci::http("GET", &path, accept, b"");
            use sha2::Digest;
            if format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body))) != digest {
                continue;
            }
            let mut m: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let mut kura: serde_json::Value =
                serde_json::from_str(m["annotations"]["dev.kura.meta"].as_str().unwrap()).unwrap();
            let then = kura["created_ms"].as_u64().unwrap() - days * 86_400_000;
            kura["created_ms"] = then.into();
            m["annotations"]["dev.kura.meta"] = kura.to_string().into();
            let ctype = "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n";
            let (status, _) = Oci::http("PUT", &path, ctype, m.to_string().as_bytes());
            assert_eq!(status, 201);
            return;
        }
        panic!("no tag names {digest}");
    }

    fn collect_garbage(&self) {
        support::registry::collected().collect_garbage();
    }

    /// Through the registry's API: the blob the entry's manifest names for the pack.
    fn delete_pack(&self, ns: &str, _store: &dyn Store, meta: &Meta, name: &str) {
        let (digest, _) = Oci::digests(meta);
        let repo = Oci::repo(ns);
        let accept = "Accept: application/vnd.oci.image.manifest.v1+json\r\n";
        let (_, body) = Oci::http(
            "GET",
            &format!("/v2/{repo}/manifests/{digest}"),
            accept,
            b"",
        );
        let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let layer = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["annotations"]["dev.kura.pack"] == name)
            .expect("the pack is a layer of its entry");
        let blob = layer["digest"].as_str().unwrap();
        let (status, _) = Oci::http("DELETE", &format!("/v2/{repo}/blobs/{blob}"), "", b"");
        assert_eq!(status, 202);
    }

    /// The registry owns its storage: what losers leave is unreferenced and collected by it.
    fn stray(&self, _ns: &str, _store: &dyn Store) -> Vec<String> {
        Vec::new()
    }
}

/// Every test of the suite, for one fixture.
macro_rules! contract {
    ($name:ident, $fixture:expr) => {
        mod $name {
            use super::{chunks, suite};

            #[test]
            fn exact_then_prefix_newest_wins() {
                suite::exact_then_prefix_newest_wins(&$fixture)
            }

            #[test]
            fn versions_never_mix() {
                suite::versions_never_mix(&$fixture)
            }

            #[test]
            fn an_entry_removed_after_it_was_found_is_gone_not_corrupt() {
                suite::an_entry_removed_after_it_was_found_is_gone_not_corrupt(&$fixture)
            }

            #[test]
            fn own_scope_first_and_never_another_branch() {
                suite::own_scope_first_and_never_another_branch(&$fixture)
            }

            #[test]
            fn an_existing_key_is_kept_unless_overwritten() {
                suite::an_existing_key_is_kept_unless_overwritten(&$fixture)
            }

            #[test]
            fn concurrent_saves_of_one_key_leave_one_entry() {
                suite::concurrent_saves_of_one_key_leave_one_entry(&$fixture)
            }

            #[test]
            fn concurrent_overwrites_leave_one_whole_entry() {
                suite::concurrent_overwrites_leave_one_whole_entry(&$fixture)
            }

            #[test]
            fn an_abandoned_save_is_invisible() {
                suite::an_abandoned_save_is_invisible(&$fixture)
            }

            #[test]
            fn a_corrupt_entry_is_a_miss_and_is_deleted() {
                suite::a_corrupt_entry_is_a_miss_and_is_deleted(&$fixture)
            }

            #[test]
            fn list_and_delete() {
                suite::list_and_delete(&$fixture)
            }

            #[test]
            fn prune_removes_exactly_the_old_entry() {
                suite::prune_removes_exactly_the_old_entry(&$fixture)
            }

            #[test]
            fn large_entries_round_trip() {
                suite::large_entries_round_trip(&$fixture)
            }

            #[test]
            fn chunked_entries_restore_whole_and_reuse_what_they_can() {
                chunks::restore_whole_and_reuse(&$fixture)
            }

            #[test]
            fn a_chunked_entry_missing_a_pack_stays_until_the_next_save_replaces_it() {
                chunks::a_missing_pack_fails_and_the_next_save_replaces_the_entry(&$fixture)
            }

            #[test]
            fn concurrent_chunked_saves_sharing_new_chunks_all_restore() {
                chunks::concurrent_saves_share_chunks(&$fixture)
            }

            #[test]
            fn prune_racing_a_chunked_save_keeps_its_packs() {
                chunks::prune_racing_a_save_keeps_its_packs(&$fixture)
            }

            #[test]
            fn prune_keeps_the_packs_of_a_save_in_flight_and_of_live_entries() {
                chunks::prune_keeps_young_and_live_packs(&$fixture)
            }
        }
    };
}

contract!(local, super::Local);
contract!(s3, super::S3);
contract!(gha, super::Gha);
contract!(dav, super::Dav(""));
contract!(dav_propfind, super::Dav("propfind/"));
contract!(oci, super::Oci);
