//! What a job's restore leaves for its later steps, in the runner's temporary directory (or
//! the user's cache directory): which entry it restored (a chunked save's base), which entry it
//! could not read (a save may replace it), and what it wrote (files a chunked save need not
//! read). Each is read back like anything from outside: no link followed, no special file, a
//! bounded size, and only for the entry it names.

use super::Env;
use crate::store::{Format, Meta};
use std::path::PathBuf;

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Restored {
    pub store: String,
    pub scope: String,
    pub key: String,
    /// The manifest's digest, as the restore checked it.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Where a restore records the entry it restored for a version, for the save that follows in
/// the same job: the runner's temporary directory (GitHub), else the user's cache directory.
/// Never a shared `/tmp`, where another user could plant it.
pub(super) fn state_file(env: &Env, version: &str) -> Option<PathBuf> {
    state_path(env, "restored", version)
}

/// `<state dir>/<what>-<version's first 16 digits>.json`.
pub(super) fn state_path(env: &Env, what: &str, version: &str) -> Option<PathBuf> {
    state_dir(env).map(|d| d.join(format!("{what}-{}.json", &version[..16.min(version.len())])))
}

fn state_dir(env: &Env) -> Option<PathBuf> {
    let var = |v: &str| {
        env.ctx
            .env
            .get(v)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    };
    let dir = var("RUNNER_TEMP")
        .map(|d| d.join("kura"))
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("kura").join(".state")))
        .or_else(|| env.ctx.home.as_ref().map(|h| h.join(".cache/kura/.state")))?;
    Some(dir)
}

/// Record that this job could not read the entry `meta` (a store error, not proven damage:
/// the entry stays). A save of the same key later in the job replaces that entry, so that an
/// entry nobody can read does not hold its key for good.
pub(super) fn record_unreadable(env: &Env, meta: &Meta) {
    let r = Restored {
        store: env.store.location(),
        scope: meta.scope.clone(),
        key: meta.key.clone(),
        sha256: meta.sha256.clone(),
    };
    write_state(state_path(env, "unreadable", &meta.version), &r);
}

/// Whether this job found the entry `meta` unreadable (the same entry: its digest too).
pub(super) fn was_unreadable(env: &Env, meta: &Meta) -> bool {
    state_path(env, "unreadable", &meta.version)
        .and_then(|p| read_state(&p))
        .is_some_and(|r| {
            r.store == env.store.location()
                && r.scope == meta.scope
                && r.key == meta.key
                && r.sha256 == meta.sha256
        })
}

/// The state file, if it is a small regular file (not a link, not a FIFO that would block).
pub(super) fn read_state(path: &std::path::Path) -> Option<Restored> {
    let dir = crate::nofollow::Dir::open(path.parent()?).ok()?;
    let b = dir.read(path.file_name()?.to_str()?, 4096).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Record that this job restored the chunked entry `meta`, the base of a later save of the
/// same paths (an archive cannot be one). Failing to record costs dedup, nothing else.
pub(super) fn record_restored(env: &Env, meta: &Meta) {
    if meta.format != Format::Chunked {
        return;
    }
    let r = Restored {
        store: env.store.location(),
        scope: meta.scope.clone(),
        key: meta.key.clone(),
        sha256: meta.sha256.clone(),
    };
    write_state(state_file(env, &meta.version), &r);
}

/// Write a record whole or not at all: a save never reads half of one. Failing to write costs
/// what the record was for (dedup, a replaced entry), nothing else.
fn write_state(path: Option<PathBuf>, r: &Restored) {
    let (Some(path), Ok(b)) = (path, serde_json::to_vec(r)) else {
        return;
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let _ = crate::nofollow::Dir::create(dir).and_then(|d| d.write_aside(name, &b, false));
}

/// The kura and header layout a record of written files is good for.
const WRITER: &str = concat!(env!("CARGO_PKG_VERSION"), "/pax-1");
/// The largest record of written files read (compressed).
const WRITTEN_MAX: u64 = 64 << 20;

fn written_path(env: &Env, version: &str) -> Option<PathBuf> {
    state_dir(env).map(|d| d.join(format!("written-{}.bin", &version[..16.min(version.len())])))
}

/// Record what the restore of the chunked entry `meta` wrote (`spans`, after its commit), so
/// that a save of the same paths later in the job takes what is still as it was from the
/// entry unread. The files are looked at now, as the restore left them. Without spans (an
/// extraction that refused an entry) any earlier record goes: it describes another restore.
pub(super) fn record_written(env: &Env, meta: &Meta, spans: Vec<crate::archive::Span>) {
    let Some(path) = written_path(env, &meta.version) else {
        return;
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(dir) = crate::nofollow::Dir::create(dir) else {
        return;
    };
    let (Some(sha256), false) = (meta.sha256.clone(), spans.is_empty()) else {
        let _ = dir.remove_file(name);
        return;
    };
    let written = looked_at(spans, env.workers as usize);
    let settled = written
        .iter()
        .map(|w| w.stamp.ctime)
        .max()
        .unwrap_or((i64::MIN, 0));
    // Files the restore changed in the clock's last tick could change again within it, and
    // look the same: the record is settled once the clock has moved on.
    let Some(settled) = clock_past(&dir, settled) else {
        return;
    };
    let record = crate::chunked::Record {
        kura: WRITER.into(),
        sha256,
        settled,
        written,
    };
    let _ = dir.write_aside(name, &record.encode(), false);
}

/// The entries written as they are now, looked at on `threads` threads (a tree's worth of
/// `lstat`s); one that is gone is left out.
fn looked_at(spans: Vec<crate::archive::Span>, threads: usize) -> Vec<crate::chunked::Written> {
    let per = spans.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = spans
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().filter_map(look).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_default())
            .collect()
    })
}

fn look(s: &crate::archive::Span) -> Option<crate::chunked::Written> {
    let m = std::fs::symlink_metadata(&s.path).ok()?;
    // A directory's name in the stream ends with a slash; the walk names it without.
    let mut name = s.name.clone();
    if name.len() > 1 && name.ends_with(b"/") {
        name.pop();
    }
    Some(crate::chunked::Written {
        name,
        size: if m.is_file() { m.len() } else { 0 },
        mtime: crate::platform::mtime(&m),
        stamp: crate::platform::stamp(&m),
        header: s.header,
        start: s.start,
        data: s.data,
        end: s.end,
    })
}

/// The file system's clock (a new file's ctime) once it is past `last`: a few milliseconds at
/// most, since the kernel's file times move in ticks.
fn clock_past(dir: &crate::nofollow::Dir, last: (i64, u32)) -> Option<(i64, u32)> {
    let last = last.0 as i128 * 1_000_000_000 + last.1 as i128;
    for _ in 0..200 {
        dir.write_aside(".clock", b"", false).ok()?;
        let now = dir.stat(".clock").ok()??.identity.2;
        if now > last {
            let _ = dir.remove_file(".clock");
            return Some((
                now.div_euclid(1_000_000_000) as i64,
                now.rem_euclid(1_000_000_000) as u32,
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    None
}

/// What the restore of the entry whose manifest has `sha256` wrote, if this kura recorded it.
pub(super) fn read_written(
    env: &Env,
    version: &str,
    sha256: &str,
) -> Option<crate::chunked::Record> {
    let path = written_path(env, version)?;
    let dir = crate::nofollow::Dir::open(path.parent()?).ok()?;
    let b = dir.read(path.file_name()?.to_str()?, WRITTEN_MAX).ok()?;
    crate::chunked::Record::decode(&b).filter(|r| r.kura == WRITER && r.sha256 == sha256)
}

/// Which workspace layers this job attached (`name` is the job's, encoded), so that the layer
/// it persists can name them as its parents.
pub(super) fn read_attached(env: &Env, name: &str) -> Option<Vec<String>> {
    let dir = crate::nofollow::Dir::open(&state_dir(env)?).ok()?;
    let b = dir.read(&format!("attached-{name}.json"), 1 << 20).ok()?;
    serde_json::from_slice(&b).ok()
}

pub(super) fn record_attached(env: &Env, name: &str, keys: &[String]) {
    let (Some(dir), Ok(b)) = (state_dir(env), serde_json::to_vec(keys)) else {
        return;
    };
    let _ = crate::nofollow::Dir::create(&dir)
        .and_then(|d| d.write_aside(&format!("attached-{name}.json"), &b, false));
}
