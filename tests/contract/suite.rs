//! What every store must do. Each test takes a fresh namespace; keys carry it, so stores
//! shared between tests (the GitHub stand-in) never mix them up.

use super::Fixture;
use kura::ops::{Keys, RestoreOptions, SaveKey, SaveOptions};
use kura::outcome::{MissReason, Outcome};
use kura::store::{now_ms, Candidate, Committed, Meta, Store};
use kura::vars::Vars;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAIN: &str = "refs/heads/main";
const FEATURE: &str = "refs/heads/feature";

pub(crate) fn ns(test: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{test}-{}-{n}", std::process::id())
}

fn version(path: &str) -> String {
    kura::ops::cache_version(&[path.to_string()])
}

#[derive(Debug, PartialEq)]
enum Put {
    Saved,
    Exists,
}

/// One save through the trait: create, write, commit.
fn put(store: &dyn Store, scope: &str, version: &str, key: &str, data: &[u8]) -> Put {
    put_with(store, scope, version, key, data, false)
}

/// One save, `overwrite` as `save --overwrite` asks it: room made first, then create, write,
/// commit.
fn put_with(
    store: &dyn Store,
    scope: &str,
    version: &str,
    key: &str,
    data: &[u8],
    overwrite: bool,
) -> Put {
    if overwrite {
        store.prepare_overwrite(scope, version, key).unwrap();
    }
    let Some(mut up) = store.create(scope, version, key).unwrap() else {
        return Put::Exists;
    };
    up.write_all(data).unwrap();
    let meta = Meta {
        size: Some(data.len() as u64),
        sha256: Some(hex::encode(Sha256::digest(data))),
        created_ms: now_ms(),
        ..Meta::bare(key, version, scope)
    };
    match up.commit(&meta, overwrite).unwrap() {
        Committed::Saved => Put::Saved,
        Committed::Exists => Put::Exists,
    }
}

/// Lookups order by creation time in milliseconds: keep saves apart.
fn pause() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

fn find(store: &dyn Store, read: &[&str], version: &str, keys: &[(&str, bool)]) -> Option<Meta> {
    let scopes: Vec<String> = read.iter().map(|s| s.to_string()).collect();
    let candidates: Vec<Candidate> = keys
        .iter()
        .map(|(k, exact_first)| Candidate {
            key: k.to_string(),
            exact_first: *exact_first,
        })
        .collect();
    store.lookup(&scopes, version, &candidates).unwrap()
}

fn bytes(store: &dyn Store, meta: &Meta) -> Vec<u8> {
    let mut out = Vec::new();
    store.open(meta).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// The bytes of the entry a lookup finds, or None.
fn found(
    store: &dyn Store,
    read: &[&str],
    version: &str,
    keys: &[(&str, bool)],
) -> Option<Vec<u8>> {
    find(store, read, version, keys).map(|m| bytes(store, &m))
}

fn keys_of(store: &dyn Store, prefix: &str) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = store
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|m| (m.key, m.version))
        .collect();
    all.sort();
    all
}

pub fn exact_then_prefix_newest_wins(f: &dyn Fixture) {
    let ns = ns("order");
    let s = f.store(&ns, MAIN, &[MAIN]);
    let v = version("d");
    let k = |x: &str| format!("{ns}-{x}");
    assert_eq!(put(&*s, MAIN, &v, &k("deps"), b"exact"), Put::Saved);
    pause();
    assert_eq!(put(&*s, MAIN, &v, &k("deps-a"), b"a"), Put::Saved);
    pause();
    assert_eq!(put(&*s, MAIN, &v, &k("deps-b"), b"b"), Put::Saved);
    // GitHub order: the exact key wins over newer entries it is a prefix of.
    let got = find(&*s, &[MAIN], &v, &[(&k("deps"), true)]).unwrap();
    assert_eq!(got.key, k("deps"));
    assert_eq!(bytes(&*s, &got), b"exact");
    // As a prefix, the newest match wins.
    assert_eq!(
        found(&*s, &[MAIN], &v, &[(&k("deps-"), true)]).unwrap(),
        b"b"
    );
    // The first candidate with any match wins, even over a newer match of a later one.
    let cands = [
        (&*k("nothing"), true),
        (&*k("deps-a"), true),
        (&*k("deps-b"), true),
    ];
    assert_eq!(found(&*s, &[MAIN], &v, &cands).unwrap(), b"a");
    assert_eq!(found(&*s, &[MAIN], &v, &[(&k("nothing"), true)]), None);
    if !f.github_order_only() {
        // CircleCI order: every key is a prefix; the newest wins even over an exact match.
        assert_eq!(
            found(&*s, &[MAIN], &v, &[(&k("deps"), false)]).unwrap(),
            b"b"
        );
    }
}

pub fn versions_never_mix(f: &dyn Fixture) {
    let ns = ns("versions");
    let s = f.store(&ns, MAIN, &[MAIN]);
    let (v1, v2) = (version("d"), version("e"));
    let key = format!("{ns}-v");
    assert_eq!(put(&*s, MAIN, &v1, &key, b"one"), Put::Saved);
    assert_eq!(found(&*s, &[MAIN], &v2, &[(&key, true)]), None);
    assert!(s.exists(MAIN, &v1, &key).unwrap());
    assert!(!s.exists(MAIN, &v2, &key).unwrap());
    // The same key under another version is another entry.
    assert_eq!(put(&*s, MAIN, &v2, &key, b"two"), Put::Saved);
    assert_eq!(found(&*s, &[MAIN], &v1, &[(&key, true)]).unwrap(), b"one");
    assert_eq!(found(&*s, &[MAIN], &v2, &[(&key, true)]).unwrap(), b"two");
}

pub fn own_scope_first_and_never_another_branch(f: &dyn Fixture) {
    let ns = ns("scopes");
    let main = f.store(&ns, MAIN, &[MAIN]);
    let feature = f.store(&ns, FEATURE, &[FEATURE, MAIN]);
    let v = version("d");
    let k = |x: &str| format!("{ns}-{x}");
    assert_eq!(put(&*main, MAIN, &v, &k("s"), b"main"), Put::Saved);
    // A branch reads its base branch's entries...
    let read = [FEATURE, MAIN];
    assert_eq!(
        found(&*feature, &read, &v, &[(&k("s"), true)]).unwrap(),
        b"main"
    );
    // ...saves the same key in its own scope...
    assert_eq!(put(&*feature, FEATURE, &v, &k("s"), b"feature"), Put::Saved);
    assert_eq!(
        found(&*feature, &read, &v, &[(&k("s"), true)]).unwrap(),
        b"feature"
    );
    // ...and prefers its own entries to newer ones of the base branch.
    assert_eq!(put(&*feature, FEATURE, &v, &k("p-old"), b"own"), Put::Saved);
    pause();
    assert_eq!(put(&*main, MAIN, &v, &k("p-new"), b"base"), Put::Saved);
    assert_eq!(
        found(&*feature, &read, &v, &[(&k("p-"), true)]).unwrap(),
        b"own"
    );
    // The base branch never sees what a branch saved.
    assert_eq!(
        found(&*main, &[MAIN], &v, &[(&k("s"), true)]).unwrap(),
        b"main"
    );
    assert_eq!(
        found(&*main, &[MAIN], &v, &[(&k("p-"), true)]).unwrap(),
        b"base"
    );
}

pub fn an_existing_key_is_kept_unless_overwritten(f: &dyn Fixture) {
    let ns = ns("overwrite");
    let s = f.store(&ns, MAIN, &[MAIN]);
    let v = version("d");
    let key = format!("{ns}-o");
    assert_eq!(put(&*s, MAIN, &v, &key, b"first"), Put::Saved);
    assert_eq!(put(&*s, MAIN, &v, &key, b"second"), Put::Exists);
    assert_eq!(found(&*s, &[MAIN], &v, &[(&key, true)]).unwrap(), b"first");
    s.prepare_overwrite(MAIN, &v, &key).unwrap();
    let mut up = s
        .create(MAIN, &v, &key)
        .unwrap()
        .expect("room for the overwrite");
    up.write_all(b"third").unwrap();
    let meta = Meta {
        size: Some(5),
        sha256: Some(hex::encode(Sha256::digest(b"third"))),
        created_ms: now_ms(),
        ..Meta::bare(&key, &v, MAIN)
    };
    assert!(matches!(up.commit(&meta, true).unwrap(), Committed::Saved));
    assert_eq!(found(&*s, &[MAIN], &v, &[(&key, true)]).unwrap(), b"third");
    assert_eq!(keys_of(&*s, &key), [(key.clone(), v.clone())]);
}

/// `writers` saves of one key at once, each from its own store handle, `overwrite` as asked:
/// what each was told, and the bytes it saved. Only the writers told "saved".
fn race(f: &dyn Fixture, ns: &str, key: &str, writers: usize, overwrite: bool) -> Vec<Vec<u8>> {
    let v = version("d");
    let barrier = std::sync::Barrier::new(writers);
    let results: Vec<(Put, Vec<u8>)> = std::thread::scope(|t| {
        let handles: Vec<_> = (0..writers)
            .map(|i| {
                let (barrier, v) = (&barrier, &v);
                t.spawn(move || {
                    let s = f.store(ns, MAIN, &[MAIN]);
                    let data = crate::support::noise(2 << 20, 100 + i as u64);
                    barrier.wait();
                    (put_with(&*s, MAIN, v, key, &data, overwrite), data)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    results
        .into_iter()
        .filter(|(p, _)| *p == Put::Saved)
        .map(|(_, d)| d)
        .collect()
}

pub fn concurrent_saves_of_one_key_leave_one_entry(f: &dyn Fixture) {
    let ns = ns("race");
    let v = version("d");
    let key = format!("{ns}-r");
    let saved = race(f, &ns, &key, 4, false);
    assert_eq!(saved.len(), 1, "exactly one writer saves");
    let s = f.store(&ns, MAIN, &[MAIN]);
    assert_eq!(keys_of(&*s, &key).len(), 1);
    let got = found(&*s, &[MAIN], &v, &[(&key, true)]).unwrap();
    assert!(got == saved[0], "the entry holds the winner's bytes, whole");
    assert_eq!(
        f.stray(&ns, &*s),
        Vec::<String>::new(),
        "the losers left nothing"
    );
}

/// One rule for every store: of overwrites racing each other over an existing entry, one
/// ends up the entry, whole, and it is the bytes of a writer told "saved"; nothing of the
/// others stays.
pub fn concurrent_overwrites_leave_one_whole_entry(f: &dyn Fixture) {
    let ns = ns("overrace");
    let v = version("d");
    let key = format!("{ns}-o");
    let s = f.store(&ns, MAIN, &[MAIN]);
    assert_eq!(put(&*s, MAIN, &v, &key, b"old"), Put::Saved);
    let saved = race(f, &ns, &key, 3, true);
    assert!(!saved.is_empty(), "some overwrite saves");
    assert_eq!(keys_of(&*s, &key).len(), 1);
    let got = found(&*s, &[MAIN], &v, &[(&key, true)]).unwrap();
    assert!(
        saved.contains(&got),
        "the entry is whole and one a writer was told was saved"
    );
    assert_eq!(
        f.stray(&ns, &*s),
        Vec::<String>::new(),
        "nothing else stays"
    );
}

pub fn an_abandoned_save_is_invisible(f: &dyn Fixture) {
    let ns = ns("abandoned");
    let s = f.store(&ns, MAIN, &[MAIN]);
    let v = version("d");
    let key = format!("{ns}-a");
    let mut up = s.create(MAIN, &v, &key).unwrap().unwrap();
    // Past a part, a block and a buffer, so that bytes really went out.
    up.write_all(&crate::support::noise(20 << 20, 5)).unwrap();
    drop(up);
    assert_eq!(find(&*s, &[MAIN], &v, &[(&key, true)]), None);
    assert!(keys_of(&*s, &key).is_empty());
    assert_eq!(
        f.stray(&ns, &*s),
        Vec::<String>::new(),
        "the abandoned save left nothing"
    );
    let again = put(&*s, MAIN, &v, &key, b"whole");
    if f.abandoned_save_holds_the_key() {
        assert_eq!(again, Put::Exists);
    } else {
        assert_eq!(again, Put::Saved);
        assert_eq!(found(&*s, &[MAIN], &v, &[(&key, true)]).unwrap(), b"whole");
    }
}

pub fn list_and_delete(f: &dyn Fixture) {
    let ns = ns("list");
    let s = f.store(&ns, MAIN, &[MAIN]);
    let (v1, v2) = (version("d"), version("e"));
    let k = |x: &str| format!("{ns}-{x}");
    assert_eq!(put(&*s, MAIN, &v1, &k("l-1"), b"11"), Put::Saved);
    assert_eq!(put(&*s, MAIN, &v1, &k("l-2"), b"222"), Put::Saved);
    assert_eq!(put(&*s, MAIN, &v2, &k("l-1"), b"3333"), Put::Saved);
    let all = s.list(&k("l-")).unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    for m in &all {
        let expect = match (m.key == k("l-1"), m.version == v1) {
            (true, true) => 2,
            (false, true) => 3,
            (true, false) => 4,
            (false, false) => panic!("no such entry was saved: {m:?}"),
        };
        assert_eq!(m.size, Some(expect), "{m:?}");
        assert_eq!(m.scope, MAIN);
    }
    assert_eq!(keys_of(&*s, &k("l-1")).len(), 2);
    assert!(s.list(&k("l-3")).unwrap().is_empty());
    let doomed = all
        .iter()
        .find(|m| m.key == k("l-1") && m.version == v2)
        .unwrap();
    s.delete(doomed).unwrap();
    assert_eq!(keys_of(&*s, &k("l-")).len(), 2);
    assert_eq!(found(&*s, &[MAIN], &v2, &[(&k("l-1"), true)]), None);
    assert_eq!(
        found(&*s, &[MAIN], &v1, &[(&k("l-1"), true)]).unwrap(),
        b"11"
    );
}

pub fn large_entries_round_trip(f: &dyn Fixture) {
    let ns = ns("large");
    let s = f.store(&ns, MAIN, &[MAIN]);
    let v = version("d");
    let key = format!("{ns}-big");
    // Several S3 parts, GitHub blocks and download ranges, and a short last one.
    let data = crate::support::noise((20 << 20) + 12_345, 9);
    assert_eq!(put(&*s, MAIN, &v, &key, &data), Put::Saved);
    let m = find(&*s, &[MAIN], &v, &[(&key, true)]).unwrap();
    assert_eq!(m.size, Some(data.len() as u64));
    assert!(
        bytes(&*s, &m) == data,
        "the bytes read are the bytes written"
    );
}

/// The verbs over a fixture's store, in a workspace of their own.
pub(crate) struct Job {
    pub env: kura::ops::Env,
    pub ws: PathBuf,
}

impl Job {
    pub fn new(f: &dyn Fixture, ns: &str) -> Job {
        let dir = super::scratch(ns);
        let ws = dir.join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let vars = Vars::from_pairs([
            ("HOME", dir.join("home").to_str().unwrap()),
            ("TMPDIR", dir.to_str().unwrap()),
            ("KURA_PROGRESS_SECONDS", "0"),
        ]);
        let ci = kura::ci::detect(&vars);
        let env = kura::ops::Env {
            ctx: kura::key::Context::new(ci, &vars),
            store: f.store(ns, MAIN, &[MAIN]),
            report: kura::report::Report::new(false, false, &vars),
            base: ws.clone(),
            write_scope: MAIN.into(),
            read_scopes: vec![MAIN.into()],
            workers: 2,
            chunk_cache: None,
        };
        Job { env, ws }
    }

    fn save(&self, key: &str) -> Outcome {
        self.save_as(key, kura::store::Format::Archive)
    }

    pub fn save_as(&self, key: &str, format: kura::store::Format) -> Outcome {
        let args = SaveOptions {
            key: SaveKey::Literal(key.into()),
            paths: vec!["d".into()],
            level: 3,
            overwrite: false,
            dry_run: false,
            format,
            chunk_size: kura::chunked::AVG_CHUNK,
        };
        kura::ops::save(&self.env, &args).unwrap()
    }

    pub fn restore(&self, key: &str) -> Outcome {
        kura::ops::restore(&self.env, &self.restore_args(key)).unwrap()
    }

    pub fn restore_args(&self, key: &str) -> RestoreOptions {
        RestoreOptions {
            keys: Keys::Exact {
                key: key.into(),
                restore_keys: Vec::new(),
            },
            paths: vec!["d".into()],
            ..RestoreOptions::default()
        }
    }

    pub fn fill(&self, files: usize) {
        for i in 0..files {
            let p = self.ws.join(format!("d/sub{}/f{i}", i % 4));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, crate::support::noise(64 << 10, i as u64)).unwrap();
        }
    }
}

/// Everything below `dir`.
pub(crate) fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            out.extend(entries(&e.path()));
        }
    }
    out.sort();
    out
}

pub fn a_corrupt_entry_is_a_miss_and_is_deleted(f: &dyn Fixture) {
    // Bytes that fail their digest, and an archive shorter than its metadata (the store says
    // where it ends): proven damage of the entry's own bytes, so it goes.
    for how in [super::Damage::Spoil, super::Damage::Shorten] {
        corrupt_once(f, how);
    }
}

fn corrupt_once(f: &dyn Fixture, how: super::Damage) {
    let ns = ns(&format!("corrupt{how:?}").to_lowercase());
    let job = Job::new(f, &ns);
    let key = format!("{ns}-c");
    job.fill(48);
    assert!(matches!(job.save(&key), Outcome::Saved(_)));
    let meta = job.env.store.list(&key).unwrap().pop().unwrap();
    // The first half stays good: the extractor has begun writing files when it fails.
    f.corrupt(&ns, &meta, how);
    std::fs::remove_dir_all(job.ws.join("d")).unwrap();
    match job.restore(&key) {
        Outcome::Miss(m) => assert_eq!(m.reason, MissReason::Corrupt),
        other => panic!("a corrupt entry restored as {other:?}"),
    }
    assert_eq!(
        entries(&job.ws),
        Vec::<PathBuf>::new(),
        "the files begun are removed"
    );
    assert!(
        job.env.store.list(&key).unwrap().is_empty(),
        "the entry is deleted"
    );
    // The key is free again.
    job.fill(3);
    assert!(matches!(job.save(&key), Outcome::Saved(_)));
}

pub fn prune_removes_exactly_the_old_entry(f: &dyn Fixture) {
    let ns = ns("prune");
    let job = Job::new(f, &ns);
    let k = |x: &str| format!("{ns}-{x}");
    job.fill(2);
    for x in ["old", "new", "newer"] {
        assert!(matches!(job.save(&k(x)), Outcome::Saved(_)));
    }
    let old = job.env.store.list(&k("old")).unwrap().pop().unwrap();
    f.backdate(&ns, &old, 10);
    let limits = |dry_run| kura::ops::Limits {
        max_size: None,
        max_age: Some("7d"),
        dry_run,
    };
    // A dry run names the old entry and deletes nothing.
    match kura::ops::prune(&job.env, limits(true)).unwrap() {
        Outcome::Pruned { removed, .. } => assert_eq!(removed, [k("old")]),
        other => panic!("{other:?}"),
    }
    assert_eq!(keys_of(&*job.env.store, &k("")).len(), 3);
    kura::ops::prune(&job.env, limits(false)).unwrap();
    let left: Vec<String> = keys_of(&*job.env.store, &k(""))
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(left, [k("new"), k("newer")]);
}

/// A restore that found an entry, then reads it after a prune or an overwrite removed it: the
/// store says so (a miss), or still has the entry's own bytes; never a failure that would keep
/// the entry, nor other bytes.
pub fn an_entry_removed_after_it_was_found_is_gone_not_corrupt(f: &dyn Fixture) {
    use super::Removed;
    let ns = ns("removed");
    let s = f.store(&ns, MAIN, &[MAIN]);
    let (v, k) = (version("d"), format!("{ns}-k"));
    let data = b"the entry's own bytes".repeat(1000);
    assert_eq!(put(&*s, MAIN, &v, &k, &data), Put::Saved);
    let found = s
        .lookup(
            &[MAIN.to_string()],
            &v,
            &[Candidate {
                key: k.clone(),
                exact_first: true,
            }],
        )
        .unwrap()
        .expect("the entry just saved");
    s.delete(&found).unwrap();
    let read = s.open(&found).and_then(|mut r| {
        let mut got = Vec::new();
        r.read_to_end(&mut got)
            .map_err(kura::store::StoreError::from)?;
        Ok(got)
    });
    match (f.removed_entry(), read) {
        (Removed::NotFound, Err(kura::store::StoreError::NotFound(_))) => {}
        (Removed::StillReadable, Ok(got)) => assert!(got == data, "other bytes"),
        (want, got) => panic!("{want:?}: {:?}", got.map(|g| g.len())),
    }
}
