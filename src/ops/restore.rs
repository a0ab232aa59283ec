//! `kura restore`: plan (keys, paths, version) → find the entry → stream it into the
//! extractor and verify what was read → the outcome.

use super::{cache_version, chunked, path_lines, render_all, state, user_error, Env};
use crate::archive::UnpackError;
use crate::archive::{self, Extraction, HashingReader, Tree, UnpackOptions};
use crate::chunked::DecodeError;
use crate::outcome::{MissReason, Missed, Outcome, Restored};
use crate::report::{Progress, Ticker};
use crate::store::{Candidate, Format, Meta, StoreError};
use crate::units::{human, size, speed};
use anyhow::Result;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What one restore asks for.
struct Plan {
    /// Empty: CircleCI's restore without paths, to the paths the entry was saved from.
    paths: Vec<String>,
    candidates: Vec<Candidate>,
    /// The version the paths give (empty without paths).
    version: String,
    fail_on_miss: bool,
}

impl Plan {
    fn primary(&self) -> &str {
        &self.candidates[0].key
    }

    fn keys(&self) -> Vec<String> {
        self.candidates.iter().map(|c| c.key.clone()).collect()
    }
}

/// What a restore is asked for, from flags or the action's inputs.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub keys: Keys,
    /// Path patterns, one per item or line; none for `Keys::Prefixes` restores the entry's
    /// own paths.
    pub paths: Vec<String>,
    pub lookup_only: bool,
    pub fail_on_miss: bool,
    pub dry_run: bool,
}

/// The key templates and the order they are tried in.
#[derive(Debug, Clone)]
pub enum Keys {
    /// GitHub order: the key exactly, then as a prefix; then each restore key the same way.
    Exact {
        key: String,
        restore_keys: Vec<String>,
    },
    /// CircleCI order: every key a prefix, the newest match winning even over an exact one.
    Prefixes(Vec<String>),
}

impl Default for Keys {
    fn default() -> Self {
        Keys::Prefixes(Vec::new())
    }
}

pub fn restore(env: &Env, args: &RestoreOptions) -> Result<Outcome> {
    let plan = plan(env, args)?;
    let Some(meta) = find(env, &plan)? else {
        if env.circleci() {
            for k in plan.keys() {
                env.report.info(format!("No cache is found for key: {k}"));
            }
        } else {
            env.report.info(format!(
                "Cache not found for input keys: {}",
                plan.keys().join(", ")
            ));
        }
        env.report
            .info(format!("(looked in {})", env.store.location()));
        explain_miss(env, &plan);
        return Ok(miss(env, &plan, MissReason::NotFound));
    };
    if args.dry_run || args.lookup_only {
        return Ok(looked_up(env, &plan, meta, args.dry_run));
    }
    transfer(env, &plan, meta)
}

fn plan(env: &Env, args: &RestoreOptions) -> Result<Plan> {
    let paths = path_lines(&args.paths);
    // CircleCI's restore_cache names no paths: the entry's own paths say where it goes.
    if paths.is_empty() && matches!(args.keys, Keys::Exact { .. }) {
        return Err(user_error(
            "no path given: pass --path (the same paths the save used), or use --keys, which restores entries to the paths they were saved from",
        ));
    }
    // GitHub order (--key, --restore-key) tries each key exactly first; CircleCI order
    // (--keys) treats every key as a prefix.
    let (templates, exact_first): (Vec<&String>, bool) = match &args.keys {
        Keys::Exact { key, restore_keys } => {
            (std::iter::once(key).chain(restore_keys).collect(), true)
        }
        Keys::Prefixes(keys) => (keys.iter().collect(), false),
    };
    let templates: Vec<String> = templates
        .into_iter()
        .filter(|k| !k.trim().is_empty())
        .cloned()
        .collect();
    if templates.is_empty() {
        return Err(user_error(
            "no key given: pass --key (GitHub order) or --keys (CircleCI order)",
        ));
    }
    let candidates: Vec<Candidate> = render_all(&templates, &env.ctx, &env.report)?
        .into_iter()
        .map(|key| Candidate { key, exact_first })
        .collect();
    if let Some(max) = env.store.max_keys().filter(|m| candidates.len() > *m) {
        return Err(user_error(format!(
            "{} keys given; {} takes at most {max} (the key and the restore keys)",
            candidates.len(),
            env.store.location()
        )));
    }
    // Bad patterns are bad input even when nothing would be restored.
    crate::select::allowed_roots(&paths, &env.base, env.ctx.home.as_deref())
        .map_err(|e| user_error(format!("{e:#}")))?;
    let version = match paths.is_empty() {
        true => String::new(),
        false => cache_version(&paths),
    };
    Ok(Plan {
        paths,
        candidates,
        version,
        fail_on_miss: args.fail_on_miss,
    })
}

fn find(env: &Env, plan: &Plan) -> Result<Option<Meta>> {
    let found = if plan.paths.is_empty() {
        lookup_any_version(env, &plan.candidates)
    } else {
        env.store
            .lookup(&env.read_scopes, &plan.version, &plan.candidates)
            .map_err(anyhow::Error::from)
    };
    found.map_err(|e| {
        e.context(format!(
            "cannot look up the cache in {}",
            env.store.location()
        ))
    })
}

/// CircleCI order without paths: scope by scope, the newest entry of any version whose key
/// starts with the first candidate that matches anything.
fn lookup_any_version(env: &Env, candidates: &[Candidate]) -> Result<Option<Meta>> {
    for scope in &env.read_scopes {
        for c in candidates {
            let newest = env
                .store
                .list(&c.key)?
                .into_iter()
                .filter(|m| &m.scope == scope && m.key.starts_with(&c.key) && !m.paths.is_empty())
                .max_by_key(|m| m.created_ms);
            if newest.is_some() {
                return Ok(newest);
            }
        }
    }
    Ok(None)
}

/// The most common surprise of a miss: an entry with the very key exists, saved for other
/// paths (or by another compression), so its version differs. Say so, with both path lists.
fn explain_miss(env: &Env, plan: &Plan) {
    if plan.paths.is_empty() {
        return;
    }
    // Best effort: a store that cannot list (GitHub's without a token) explains nothing.
    let Ok(all) = env.store.list(plan.primary()) else {
        return;
    };
    let keys = plan.keys();
    let Some(other) = all
        .iter()
        .filter(|m| keys.contains(&m.key) && m.version != plan.version)
        .max_by_key(|m| m.created_ms)
    else {
        return;
    };
    let saved_for = if other.paths.is_empty() {
        "under another version (other paths, or another compression)".to_string()
    } else {
        format!("for paths [{}]", other.paths.join(", "))
    };
    env.report.info(format!(
        "  an entry for key {} exists, saved {saved_for} (this job asks for [{}]); the paths must be the same for an entry to restore",
        other.key,
        plan.paths.join(", ")
    ));
}

fn miss(env: &Env, plan: &Plan, reason: MissReason) -> Outcome {
    if plan.fail_on_miss {
        env.report.error(format!(
            "Failed to restore cache entry. Exiting as fail-on-cache-miss is set. Input key: {}",
            plan.primary()
        ));
    }
    Outcome::Miss(Missed {
        primary_key: plan.primary().to_string(),
        keys: plan.keys(),
        version: plan.version.clone(),
        store: env.store.location(),
        reason,
        fail: plan.fail_on_miss,
    })
}

/// The outcome of a restore that found `meta`, before anything was written.
fn restored(env: &Env, plan: &Plan, meta: &Meta) -> Restored {
    Restored {
        primary_key: plan.primary().to_string(),
        matched_key: meta.key.clone(),
        cache_hit: meta.key == plan.primary(),
        version: meta.version.clone(),
        scope: meta.scope.clone(),
        store: env.store.location(),
        size: meta.entry_size(),
        files: meta.files,
        bytes: meta.bytes,
        seconds: 0.0,
        refused: Vec::new(),
        build: meta.build.clone(),
        lookup_only: false,
        dry_run: false,
    }
}

/// `--lookup-only` and `--dry-run`: say what was found, download nothing.
fn looked_up(env: &Env, plan: &Plan, meta: Meta, dry_run: bool) -> Outcome {
    let verb = if dry_run {
        "Would restore"
    } else {
        "Cache found and can be restored"
    };
    env.report.info(format!("{verb} from key: {}", meta.key));
    env.report.info(format!(
        "  version {}, scope {:?}, store {}\n  {} files, {} unpacked, archive {}",
        meta.version,
        meta.scope,
        env.store.location(),
        meta.files,
        human(meta.bytes),
        meta.entry_size()
            .map(size)
            .unwrap_or_else(|| "of unknown size".into())
    ));
    let mut r = restored(env, plan, &meta);
    r.lookup_only = !dry_run;
    r.dry_run = dry_run;
    Outcome::Hit(r)
}

/// Download, extract, verify, commit.
fn transfer(env: &Env, plan: &Plan, meta: Meta) -> Result<Outcome> {
    let from_entry = plan.paths.is_empty();
    let paths = if from_entry { &meta.paths } else { &plan.paths };
    let (roots, denied) = restore_roots(env, paths, from_entry)?;
    room(&meta, &roots)?;
    let started = Instant::now();
    // Caught until the tree is committed: a cancelled job's restore is undone, not left half.
    let _interrupts = crate::platform::catch_interrupts();
    let extracted = extract(env, &meta, paths, Tree::new(&env.base, &roots));
    // Stopped by a signal: whatever the extraction says, the entry is not to blame.
    if let Some(sig) = crate::platform::interrupted() {
        if let Ok(done) = extracted {
            done.extraction.rollback();
        }
        anyhow::bail!(crate::archive::stopped(sig));
    }
    let mut done = match extracted {
        Ok(done) => done,
        Err(NotRestored::Corrupt(why)) => {
            forget_corrupt(env, &meta, &why);
            return Ok(miss(env, plan, MissReason::Corrupt));
        }
        Err(NotRestored::Gone(why)) => {
            env.report.warn(format!(
                "the cache entry for key {} went from the store after it was found (a prune, an overwrite): {why}; treated as a miss",
                meta.key
            ));
            return Ok(miss(env, plan, MissReason::NotFound));
        }
        Err(NotRestored::Failed(e)) => {
            // Not proven damage: the entry stays, but a save of its key may replace it.
            state::record_unreadable(env, &meta);
            return Err(e);
        }
    };
    let mut out = restored(env, plan, &meta);
    out.refused = std::mem::take(&mut done.extraction.refused);
    out.refused.extend(denied);
    let (files, bytes, read) = (done.extraction.files, done.extraction.bytes, done.read);
    let spans = std::mem::take(&mut done.extraction.spans);
    for problem in done.extraction.commit() {
        env.report.warn(problem);
    }
    env.store.touch(&meta);
    state::record_restored(env, &meta);
    if meta.format == Format::Chunked {
        state::record_written(env, &meta, spans);
    }
    out.seconds = started.elapsed().as_secs_f64();
    report_restored(env, &out, files, bytes, read, started);
    if out.refused.is_empty() {
        return Ok(Outcome::Hit(out));
    }
    // Not a clean hit: `cache-hit` is false, and a later save may replace the entry.
    out.cache_hit = false;
    Ok(Outcome::Partial(out))
}

struct Extracted {
    extraction: Extraction,
    /// Bytes read from the store.
    read: u64,
}

/// Why an extraction wrote nothing (what it had begun is undone).
enum NotRestored {
    /// The entry's own bytes fail their checks: it is forgotten, and the restore is a miss.
    Corrupt(String),
    /// The entry went from the store between the lookup and the download: a miss.
    Gone(String),
    /// The store, the disk, another kura's format: the entry stays, the restore fails.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for NotRestored {
    fn from(e: anyhow::Error) -> Self {
        NotRestored::Failed(e)
    }
}

impl From<StoreError> for NotRestored {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(why) => NotRestored::Gone(why),
            other => NotRestored::Failed(other.into()),
        }
    }
}

/// Stream the entry into the extractor and check what was read against what was saved.
fn extract(
    env: &Env,
    meta: &Meta,
    paths: &[String],
    tree: Tree,
) -> std::result::Result<Extracted, NotRestored> {
    if meta.format == Format::Chunked {
        return extract_chunked(env, meta, paths, tree);
    }
    let progress = Progress::of(meta.size);
    let reader = env.store.open(meta)?;
    let mut hashing = HashingReader::new(reader).with_progress(progress.done.clone());
    let ticker = Ticker::start(&env.report, "Received", progress);
    let opts = unpack_options(env, meta, paths);
    let extraction = match archive::unpack(&mut hashing, tree, &opts) {
        Ok(x) => x,
        Err(e) => return Err(blame(e, hashing.source_failed, meta)),
    };
    drop(ticker);
    let (sha, n) = hashing.finish();
    let sha_bad = meta.sha256.as_ref().is_some_and(|s| *s != sha);
    if sha_bad || meta.size.is_some_and(|s| s != n) {
        extraction.rollback();
        return Err(NotRestored::Corrupt(format!(
            "read {n} bytes with sha256 {sha}, but {} bytes with sha256 {} were saved",
            meta.size.map_or("?".into(), |s| s.to_string()),
            meta.sha256.as_deref().unwrap_or("(not recorded)")
        )));
    }
    Ok(Extracted {
        extraction,
        read: n,
    })
}

fn unpack_options(env: &Env, meta: &Meta, paths: &[String]) -> UnpackOptions {
    UnpackOptions {
        writers: env.workers as usize,
        window_log_max: window_log_max(&meta.version, paths),
        // What kura recorded itself; other tools' entries (actions/cache) say nothing, and
        // only kura writes chunked entries: one that says it is another tool's is held to
        // what it declares all the same.
        declared: (!meta.kura_version.is_empty() || meta.format == Format::Chunked).then_some(
            archive::Declared {
                bytes: meta.bytes,
                entries: meta.entries,
                files: meta.files,
            },
        ),
        // A chunked save after this restore reads only the files it changed.
        spans: meta.format == Format::Chunked,
    }
}

/// Whose fault a failed extraction is: the entry's (corrupt, forgotten) when the bytes were
/// bad, else the store's or the disk's.
fn blame(e: UnpackError, source_failed: bool, meta: &Meta) -> NotRestored {
    // Stopped by a signal: the entry is not to blame, and stays.
    let stopped = crate::platform::interrupted().is_some();
    match e {
        UnpackError::Corrupt(e) if !source_failed && !stopped => {
            NotRestored::Corrupt(format!("{e:#}"))
        }
        UnpackError::Corrupt(e) | UnpackError::Failed(e) => NotRestored::Failed(
            e.context(format!("cannot restore the cache from key {}", meta.key)),
        ),
    }
}

/// A chunked entry: its manifest (checked), then its chunks from the packs. A chunk that is
/// gone or damaged makes the entry corrupt, as a damaged archive is.
fn extract_chunked(
    env: &Env,
    meta: &Meta,
    paths: &[String],
    tree: Tree,
) -> std::result::Result<Extracted, NotRestored> {
    let stored = chunked::read_stored(env, meta)?;
    if let Err(why) = chunked::check(meta, &stored) {
        return Err(NotRestored::Corrupt(why));
    }
    let manifest = match crate::chunked::Manifest::decode(&stored) {
        Ok(m) => m,
        // Another kura's entry is not damaged: a failure to restore, and it stays.
        Err(e @ DecodeError::OtherVersion(_)) => return Err(NotRestored::Failed(e.into())),
        Err(e @ DecodeError::Damaged(_)) => return Err(NotRestored::Corrupt(e.to_string())),
    };
    // Progress in the tar stream's bytes: the manifest knows them all up front.
    let progress = Progress::of(Some(manifest.stream_len()));
    let got = Arc::new(AtomicU64::new(0));
    let source = chunked::source(env, manifest, got.clone())?;
    let failed = source.source_failed();
    let mut counting = HashingReader::new(source)
        .count_only()
        .with_progress(progress.done.clone());
    let ticker = Ticker::start(&env.report, "Received", progress);
    let opts = unpack_options(env, meta, paths);
    let extraction = match archive::unpack_tar(&mut counting, tree, &opts) {
        Ok(x) => x,
        Err(e) => return Err(blame(e, failed.load(Ordering::SeqCst), meta)),
    };
    drop(ticker);
    counting.finish();
    if let Some(c) = &env.chunk_cache {
        c.trim();
    }
    // Read from the store: the manifest and the frames (not those the local cache served).
    let read = stored.len() as u64 + got.load(Ordering::Relaxed);
    Ok(Extracted { extraction, read })
}

fn report_restored(env: &Env, out: &Restored, files: u64, bytes: u64, read: u64, t: Instant) {
    let r = &env.report;
    if !out.refused.is_empty() {
        let n = out.refused.len();
        r.warn(format!(
            "the cache from key {} was restored only in part: {n} entr{} not written:\n  {}",
            out.matched_key,
            if n == 1 { "y was" } else { "ies were" },
            out.refused.join("\n  ")
        ));
    }
    if env.circleci() {
        match &out.build {
            Some(n) => r.info(format!(
                "Found a cache from build {n} at {}",
                out.matched_key
            )),
            None => r.info(format!("Found a cache at {}", out.matched_key)),
        }
    } else if !out.cache_hit {
        r.info(format!("Cache hit for restore-key: {}", out.matched_key));
    }
    r.info(format!("Cache restored from key: {}", out.matched_key));
    // The entry's size, as the save that made it said it.
    r.info(format!(
        "Cache Size: {}, {files} files, {} unpacked, in {}; store {}",
        crate::units::entry_size(out.size.unwrap_or(read), r.github),
        human(bytes),
        speed(read, t.elapsed()),
        env.store.location()
    ));
}

/// Where a restore may write. Paths the user named are all allowed; paths taken from the
/// entry's own metadata (a restore without `--path`) were chosen by whoever saved it, so only
/// those under the home and working directories are, and the others are listed as refused.
fn restore_roots(
    env: &Env,
    paths: &[String],
    from_entry: bool,
) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let home = env.ctx.home.as_deref();
    let roots = crate::select::allowed_roots(paths, &env.base, home)
        .map_err(|e| user_error(format!("{e:#}")))?;
    if !from_entry {
        return Ok((roots, Vec::new()));
    }
    let safe = [Some(env.base.as_path()), Some(env.ctx.cwd.as_path()), home];
    let (ok, denied): (Vec<_>, Vec<_>) = roots
        .into_iter()
        .partition(|r| safe.iter().flatten().any(|s| r.starts_with(s)));
    let denied = denied
        .iter()
        .map(|d| {
            format!(
                "{}: the entry's own path is outside the home and working directories; name it with --path to restore it",
                d.display()
            )
        })
        .collect();
    Ok((ok, denied))
}

/// An entry that declares more than the disk can hold is not begun: it would fill the disk
/// and fail, and a hostile one (a chunked manifest repeating one chunk) would take hours
/// doing it. The stream may not exceed what the entry declares, so this bounds a restore by the
/// disk it writes to. Lenient where the roots span file systems: the roomiest one counts.
fn room(meta: &Meta, roots: &[PathBuf]) -> Result<()> {
    let free = roots
        .iter()
        .filter_map(|r| crate::platform::free_bytes(r))
        .max();
    // Where the store gives only the compressed size (GitHub's), that: files take at least
    // about as much as their compressed archive.
    let needed = meta.bytes.max(meta.size.unwrap_or(0));
    match free {
        Some(free) if needed > free => anyhow::bail!(
            "the cache entry for key {} holds {} of files, more than the {} free on the disk it would be restored to; not restored",
            crate::text::untrusted(&meta.key),
            human(needed),
            human(free)
        ),
        _ => Ok(()),
    }
}

/// The zstd window an entry may use: actions/cache's older `zstd` (`--long=30`) entries need
/// 2^30; everything else is written with at most 2^27.
fn window_log_max(version: &str, paths: &[String]) -> u32 {
    if version == super::cache_version_for(paths, "zstd") {
        30
    } else {
        27
    }
}

/// A corrupt entry is a miss; it is removed so that the next save can replace it.
fn forget_corrupt(env: &Env, meta: &Meta, why: &str) {
    let removed = env.store.delete(meta).is_ok();
    env.report.warn(format!(
        "the cache entry for key {} is corrupt ({why}); treated as a miss, the files it had begun to write were removed{}",
        meta.key,
        if removed { ", and the entry was deleted from the store" } else { "" }
    ));
}
