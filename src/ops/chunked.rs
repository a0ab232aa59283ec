//! The verbs' side of chunked entries: which entry a save dedups against, packing the tar
//! stream into chunks, and reading a chunked entry back for the extractor.

use super::state::{read_state, state_file, was_unreadable};
use super::Env;
use super::Target;
use crate::archive::{self, PackOptions, PackStats, Walk};
use crate::chunked::{self, ChunkSource, Manifest, PackInfo, Packs, SaveStats};
use crate::store::StoreResult;
use crate::store::{Format, Meta};
use crate::units::human;
use anyhow::{anyhow, Result};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How far in the future another machine's clock may put an entry's creation.
const CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

/// The largest manifest read back, stored (its limit unpacked is 64 MiB).
const MANIFEST_MAX: u64 = 64 << 20;

/// Whether a save of `format` is chunked on this store: only stores that keep packs take
/// chunked entries (`gha://` stays on archives, byte-compatible with actions/cache).
pub(super) fn takes_chunks(env: &Env, format: Format) -> bool {
    format == Format::Chunked && env.store.packs().is_some()
}

/// Pack what `walk` yields as chunks, deduplicated against the base entry.
/// `sent` counts the bytes of packs uploaded, for progress lines.
pub(super) fn pack(
    env: &Env,
    walk: Walk,
    opts: &PackOptions,
    t: &Target,
    sent: Arc<AtomicU64>,
) -> Result<(PackStats, Manifest, SaveStats)> {
    let packs = env
        .store
        .packs()
        .ok_or_else(|| anyhow!("{} keeps no chunked entries", env.store.location()))?;
    let packs = Counted {
        packs,
        sent,
        got: Arc::default(),
        put: Default::default(),
    };
    let (base, restored) = base(env, t);
    // What the base's restore wrote and is still as it left it is taken unread.
    let unread =
        restored.and_then(|(m, sha)| Some((super::state::read_written(env, t.version, &sha)?, m)));
    let cache = env.chunk_cache.as_deref();
    let tuning = chunked::Tuning {
        level: opts.level,
        workers: env.workers as usize,
        avg_chunk: t.chunk_size,
    };
    let saved = chunked::save(&packs, cache, &base, tuning, |sink| {
        let reuse = unread.map(|(record, restored)| {
            let u = chunked::Unchanged::new(record, &restored, &base, sink.referrer());
            Arc::new(u) as Arc<dyn archive::Reuse>
        });
        let raw = PackOptions {
            raw: true,
            reuse,
            ..opts.clone()
        };
        archive::pack(walk, sink, &raw)
    });
    if let Some(c) = cache {
        c.trim();
    }
    match saved {
        Err(e) if crate::platform::interrupted().is_some() => Err(withdrawn(&packs, e)),
        saved => saved,
    }
}

/// A save stopped by a signal takes back the packs it made that no other save has written or
/// touched since; the error says what it could not take back (prune's, a day later).
fn withdrawn(packs: &Counted, e: anyhow::Error) -> anyhow::Error {
    let put = std::mem::take(&mut *packs.put.lock().unwrap());
    let left = put.iter().filter(|n| !packs.packs.withdraw(n)).count();
    match left {
        0 => e,
        n => anyhow!(
            "{e:#}; {n} pack(s) it had uploaded stay in the store until a prune deletes them, a day after it finds them unreferenced"
        ),
    }
}

/// Packs that count the bytes put (a save's progress) and got (what a restore downloaded).
struct Counted {
    packs: Arc<dyn Packs>,
    sent: Arc<AtomicU64>,
    got: Arc<AtomicU64>,
    /// The packs put, for a stopped save to take back.
    put: std::sync::Mutex<Vec<String>>,
}

impl Packs for Counted {
    fn put(&self, name: &str, data: bytes::Bytes) -> StoreResult<()> {
        let len = data.len() as u64;
        self.packs.put(name, data)?;
        self.put.lock().unwrap().push(name.to_string());
        self.sent.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }
    fn get(&self, name: &str, range: std::ops::Range<u64>) -> StoreResult<Vec<u8>> {
        let data = self.packs.get(name, range)?;
        self.got.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data)
    }
    fn list(&self) -> StoreResult<Vec<PackInfo>> {
        self.packs.list()
    }
    fn delete(&self, name: &str) -> StoreResult<()> {
        self.packs.delete(name)
    }
    fn read_note(&self) -> StoreResult<Option<Vec<u8>>> {
        self.packs.read_note()
    }
    fn write_note(&self, data: &[u8]) -> StoreResult<()> {
        self.packs.write_note(data)
    }
    fn collected_by_store(&self) -> bool {
        self.packs.collected_by_store()
    }
}

/// The manifest to dedup against: the entry this job restored for these paths, whose chunks
/// the restore read and checked, else none. Whoever can write the store can write an entry
/// whose chunk locations point at other bytes; reused unchecked, every later save would commit
/// an entry that does not restore. So a base is only an entry this job verified, and not one
/// from the future or of other paths. A base that cannot be read is no base: the save still
/// works, it only uploads more. With it, the base's manifest as restored and its sha256, which
/// the restore's record of what it wrote names.
fn base(env: &Env, t: &Target) -> (Manifest, Option<(Manifest, String)>) {
    let (scope, version) = (t.scope, t.version);
    let now = crate::store::now_ms();
    let fits = |m: &Meta| {
        m.format == Format::Chunked
            && m.created_ms <= now + CLOCK_SKEW_MS
            && m.paths.as_slice() == t.paths
            && !was_unreadable(env, m)
    };
    let Some(m) = restored_entry(env, scope, version).filter(fits) else {
        return (Manifest::default(), None);
    };
    // Only an entry of the save's own scope is replaced by it: rewriting the sparse packs of
    // another scope's entry (a branch's save based on main's) would copy them once per branch
    // while main's entry keeps them alive.
    let replaced = m.scope == scope;
    let found = read_manifest(env, &m)
        .and_then(|r| Ok((present(env, checked_only(r.clone()), replaced)?, r)));
    match found {
        Ok((found, restored)) => {
            env.report.info(format!(
                "Chunks already stored are taken from key {}",
                m.key
            ));
            (found, m.sha256.map(|sha| (restored, sha)))
        }
        Err(e) => {
            env.report.warn(format!(
                "the entry {} cannot serve as the base of this save: {e:#}",
                m.key
            ));
            (Manifest::default(), None)
        }
    }
}

/// The base's chunks whose places the restore checked: a restore reads a chunk the stream
/// repeats once (later uses come from memory) and a frame once, with the lengths its first
/// chunk gives. A manifest that gives one chunk two places, or one frame two lengths, was
/// checked in one of them only: neither is reused.
fn checked_only(mut base: Manifest) -> Manifest {
    use std::collections::{HashMap, HashSet};
    let mut places = HashMap::new();
    let mut frames = HashMap::new();
    let (mut bad_ids, mut bad_frames) = (HashSet::new(), HashSet::new());
    for c in &base.chunks {
        let place = (c.pack, c.offset, c.stored, c.frame_len, c.skip, c.len);
        if *places.entry(c.id).or_insert(place) != place {
            bad_ids.insert(c.id);
        }
        let lengths = (c.stored, c.frame_len);
        if *frames.entry((c.pack, c.offset)).or_insert(lengths) != lengths {
            bad_frames.insert((c.pack, c.offset));
        }
    }
    base.chunks
        .retain(|c| !bad_ids.contains(&c.id) && !bad_frames.contains(&(c.pack, c.offset)));
    base
}

/// The chunked entry this job restored for these paths: only one of this store, from a scope
/// this job may read, found again through the store (so that its handle is the store's), and
/// the one restored, not another entry put under its key since.
fn restored_entry(env: &Env, scope: &str, version: &str) -> Option<Meta> {
    let r = state_file(env, version)
        .and_then(|p| read_state(&p))
        .filter(|r| r.store == env.store.location())
        .filter(|r| r.scope == scope || env.read_scopes.contains(&r.scope))?;
    env.store
        .list_prefix(&r.scope, version, &r.key)
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.key == r.key && m.format == Format::Chunked && m.sha256 == r.sha256)
}

/// The base's chunks that a save may reference: those whose packs are there and long enough
/// (a chunk in a pack that is gone is stored again, so a lost pack does not spread to new
/// entries), and, when the new entry replaces the base in its scope, not in a sparse pack
/// (`chunked::sparse_packs`: its chunks are stored again, so that the pack can go once older
/// entries do).
fn present(env: &Env, mut base: Manifest, rewrite_sparse: bool) -> Result<Manifest> {
    let packs = env.store.packs().ok_or_else(|| anyhow!("no packs"))?;
    let listed: std::collections::HashMap<String, u64> = packs
        .list()?
        .into_iter()
        .map(|p| (p.name, p.size))
        .collect();
    let sizes: Vec<Option<u64>> = base.packs.iter().map(|p| listed.get(p).copied()).collect();
    let sparse = match rewrite_sparse {
        true => chunked::sparse_packs(&base, &sizes),
        false => Default::default(),
    };
    if !sparse.is_empty() {
        let bytes: u64 = sparse.iter().filter_map(|&p| sizes[p as usize]).sum();
        env.report.info(format!(
            "{} pack(s) of {} hold chunks of the base, but less than {:.0}% of them are in use: their chunks are stored again",
            sparse.len(),
            human(bytes),
            chunked::MIN_LIVE * 100.0
        ));
    }
    base.chunks.retain(|c| {
        !sparse.contains(&c.pack)
            && sizes[c.pack as usize].is_some_and(|size| c.offset + c.stored as u64 <= size)
    });
    Ok(base)
}

/// A chunked entry's manifest, checked against the size and sha256 its metadata records.
pub(super) fn read_manifest(env: &Env, meta: &Meta) -> Result<Manifest> {
    let stored = read_stored(env, meta)?;
    check(meta, &stored).map_err(|e| anyhow!(e))?;
    Ok(Manifest::decode(&stored)?)
}

/// A chunked entry's object as stored: its manifest, compressed, at most `MANIFEST_MAX`.
pub(super) fn read_stored(env: &Env, meta: &Meta) -> crate::store::StoreResult<Vec<u8>> {
    let mut stored = Vec::new();
    env.store
        .open(meta)?
        .take(MANIFEST_MAX)
        .read_to_end(&mut stored)?;
    Ok(stored)
}

/// Whether the stored manifest is the one saved: `Err` says why not.
pub(super) fn check(meta: &Meta, stored: &[u8]) -> std::result::Result<(), String> {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(stored));
    if meta.sha256.as_ref().is_some_and(|s| *s != sha)
        || meta.size.is_some_and(|s| s != stored.len() as u64)
    {
        return Err(format!(
            "the chunk manifest read ({} bytes, sha256 {sha}) is not the one saved",
            stored.len()
        ));
    }
    Ok(())
}

/// The tar stream of a chunked entry; `got` counts the bytes read from packs.
pub(super) fn source(env: &Env, manifest: Manifest, got: Arc<AtomicU64>) -> Result<ChunkSource> {
    let packs = env
        .store
        .packs()
        .ok_or_else(|| anyhow!("{} cannot read chunked entries", env.store.location()))?;
    let packs = Counted {
        packs,
        sent: Arc::default(),
        got,
        put: Default::default(),
    };
    Ok(ChunkSource::start(
        Arc::new(packs),
        manifest,
        env.workers as usize * 2,
        env.chunk_cache.clone(),
    ))
}
