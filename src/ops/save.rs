//! `kura save`: plan (key, paths, version) → skip what exists → select, pack straight into
//! the store, commit atomically → the outcome.

use super::{cache_version, path_lines, user_error, Env, Target};
use crate::archive::{self, HashingWriter, PackOptions, Walk};
use crate::outcome::{Outcome, Planned, Saved};
use crate::report::{Progress, Ticker};
use crate::store::{now_ms, Committed, Format, Meta};
use crate::units::{human, size, speed};
use anyhow::Result;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a save is asked for, from flags or the action's inputs.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    pub key: SaveKey,
    /// Path patterns, one per item or line.
    pub paths: Vec<String>,
    /// zstd level, 1 to 22.
    pub level: i32,
    pub overwrite: bool,
    pub dry_run: bool,
    pub format: Format,
    /// Chunked entries: the average chunk size.
    pub chunk_size: u32,
}

#[derive(Debug, Clone)]
pub enum SaveKey {
    /// A template, rendered now.
    Template(String),
    /// A key already rendered (the action's post step saves under the key its restore
    /// rendered, before the job changed the files a checksum reads).
    Literal(String),
}

pub fn save(env: &Env, args: &SaveOptions) -> Result<Outcome> {
    let paths = path_lines(&args.paths);
    if paths.is_empty() {
        return Err(user_error("no path given: pass --path"));
    }
    let key = match &args.key {
        SaveKey::Literal(k) => k.clone(),
        SaveKey::Template(t) => {
            super::render_all(std::slice::from_ref(t), &env.ctx, &env.report)?.remove(0)
        }
    };
    let version = cache_version(&paths);
    let scope = env.write_scope.as_str();
    // A dry run says what a save would do, and a save would skip a key that is taken.
    let (taken, overwrite) = match args.overwrite {
        true => (false, true),
        false => taken(env, args.dry_run, scope, &version, &key)?,
    };
    if args.dry_run && !taken {
        return dry_run(env, &key, &version, &paths);
    }
    if taken {
        env.report.info(exists_line(env, &key));
        return Ok(Outcome::Exists {
            key,
            version,
            size: None,
        });
    }
    let started = Instant::now();
    let opts = PackOptions {
        level: args.level,
        readers: env.workers as usize * 2,
        workers: env.workers,
        ..PackOptions::default()
    };
    let target = Target {
        scope,
        version: &version,
        key: &key,
        paths: &paths,
        overwrite,
        parents: Vec::new(),
        format: args.format,
        chunk_size: args.chunk_size,
    };
    let home = env.ctx.home.as_deref();
    let Walked {
        stored,
        missing,
        chunks,
    } = store_walk(env, &env.base, home, &opts, target)?;
    warn_missing(env, &missing);
    let mut out = saved(env, stored, chunks.as_ref(), key, version, &paths, started);
    if let (Outcome::Saved(s), Some(c)) = (&mut out, chunks) {
        env.report.info(chunks_line(&c));
        s.chunks = Some(c);
    }
    Ok(out)
}

fn chunks_line(c: &crate::chunked::SaveStats) -> String {
    let unread = match c.unread {
        0 => String::new(),
        n => format!(
            "; {} of unchanged files taken without reading them",
            size(n)
        ),
    };
    format!(
        "Chunks: {} reused of {}; uploaded {} in {} new pack(s){unread}",
        c.reused,
        c.chunks,
        size(c.uploaded),
        c.packs
    )
}

fn dry_run(env: &Env, key: &str, version: &str, paths: &[String]) -> Result<Outcome> {
    let sel = crate::select::select(&env.base, paths, env.ctx.home.as_deref())
        .map_err(|e| user_error(format!("{e:#}")))?;
    warn_missing(env, &sel.missing);
    env.report.info(format!(
        "Would save key: {key}\n  version {version}, scope {:?}, store {}\n  {} files, {}",
        env.write_scope,
        env.store.location(),
        sel.file_count(),
        human(sel.total_bytes())
    ));
    Ok(Outcome::DryRun(Planned {
        key: Some(key.to_string()),
        layer: None,
        workflow: None,
        version: version.to_string(),
        scope: env.write_scope.clone(),
        store: env.store.location(),
        files: sel.file_count(),
        bytes: sel.total_bytes(),
    }))
}

fn saved(
    env: &Env,
    stored: Option<(Committed, Meta)>,
    chunks: Option<&crate::chunked::SaveStats>,
    key: String,
    version: String,
    paths: &[String],
    started: Instant,
) -> Outcome {
    let r = &env.report;
    match stored {
        None => {
            // CircleCI stores an empty cache here, which then blocks the key for weeks.
            r.warn(format!(
                "no files matched the paths ({}); nothing was saved for key {key}",
                paths.join(", ")
            ));
            Outcome::Empty {
                key: Some(key),
                workflow: None,
            }
        }
        Some((Committed::Exists, meta)) => {
            r.info(format!(
                "{}: another job saved it first",
                exists_line(env, &key)
            ));
            Outcome::Exists {
                key,
                version,
                size: meta.size,
            }
        }
        Some((Committed::Saved, meta)) => {
            let took = started.elapsed();
            // A chunked entry's object is its manifest; its size is what it references.
            let archive = chunks.map_or(meta.size.unwrap_or(0), |c| c.stored);
            tell_saved(env, &key, archive, &meta, took);
            Outcome::Saved(Saved {
                key,
                version,
                scope: meta.scope,
                store: env.store.location(),
                size: archive,
                files: meta.files,
                bytes: meta.bytes,
                sha256: meta.sha256.unwrap_or_default(),
                seconds: took.as_secs_f64(),
                chunks: None,
            })
        }
    }
}

/// A save's lines: the key, then the entry's size, files, bytes, speed and store.
fn tell_saved(env: &Env, key: &str, size: u64, meta: &Meta, took: std::time::Duration) {
    let r = &env.report;
    r.info(format!("Cache saved with key: {key}"));
    r.info(format!(
        "Cache Size: {}, {} files, {} packed in {}; store {}",
        crate::units::entry_size(size, r.github),
        meta.files,
        human(meta.bytes),
        speed(meta.bytes, took),
        env.store.location()
    ));
}

/// The line for a save that finds its key taken, in the CI's own words.
fn exists_line(env: &Env, key: &str) -> String {
    if env.circleci() {
        format!("Skipping cache generation, cache already exists for key: {key}")
    } else {
        format!("Cache already exists for key {key}, not saving")
    }
}

/// Whether the key is taken, and whether this save overwrites (an entry this job could not
/// restore does not hold its key: this save replaces it).
fn taken(env: &Env, dry_run: bool, scope: &str, version: &str, key: &str) -> Result<(bool, bool)> {
    match taken_by(env, scope, version, key) {
        Ok(Some(m)) if super::state::was_unreadable(env, &m) => {
            env.report.info(format!(
                "The entry for key {key} could not be read earlier in this job: this save replaces it"
            ));
            Ok((false, true))
        }
        Ok(found) => Ok((found.is_some(), false)),
        // A dry run plans without the store if it must.
        Err(e) if dry_run => {
            env.report
                .warn(format!("cannot tell whether the key is taken: {e:#}"));
            Ok((false, false))
        }
        Err(e) => Err(e),
    }
}

/// The entry that holds `key` in the scope and version, if any.
fn taken_by(env: &Env, scope: &str, version: &str, key: &str) -> Result<Option<Meta>> {
    if !env.store.exists(scope, version, key)? {
        return Ok(None);
    }
    // Stores that only answer yes or no (GitHub's) give no entry to compare.
    let listed = env
        .store
        .list_prefix(scope, version, key)
        .unwrap_or_default();
    Ok(Some(
        listed
            .into_iter()
            .find(|m| m.key == key)
            .unwrap_or_else(|| Meta::bare(key, version, scope)),
    ))
}

pub(super) fn warn_missing(env: &Env, missing: &[String]) {
    for m in missing {
        env.report.warn(format!("path {m:?} matched nothing"));
    }
}

/// What `store_walk` did: the entry it committed, if anything matched, and the patterns that
/// matched nothing.
pub(super) struct Walked {
    pub stored: Option<(Committed, Meta)>,
    pub missing: Vec<String>,
    /// A chunked save: what it reused and uploaded.
    pub chunks: Option<crate::chunked::SaveStats>,
}

impl Walked {
    fn stored(stored: (Committed, Meta)) -> Walked {
        Walked {
            stored: Some(stored),
            missing: Vec::new(),
            chunks: None,
        }
    }
}

/// Walk `t.paths` under `base`, pack what they match straight into a new entry and commit it.
/// Shared by `save` and `persist`. When nothing matched the upload is dropped, so no empty
/// entry ever blocks the key.
pub(super) fn store_walk(
    env: &Env,
    base: &Path,
    home: Option<&Path>,
    opts: &PackOptions,
    t: Target,
) -> Result<Walked> {
    // Caught while packing: a cancelled save takes back what it put in the store.
    let _interrupts = crate::platform::catch_interrupts();
    let Some(upload) = open_upload(env, base, home, &t)? else {
        // The store knows at once that another save holds the key: nothing is packed.
        let meta = Meta::bare(t.key, t.version, t.scope);
        return Ok(Walked::stored((Committed::Exists, meta)));
    };
    // The walk runs ahead of the packer and adds up the total as it goes.
    let sent = Arc::new(AtomicU64::new(0));
    let progress = Progress {
        sent: Some(sent.clone()),
        ..Progress::default()
    };
    let ticker = Ticker::start(&env.report, "Packed", progress.clone());
    let missing = Mutex::new(Vec::new());
    let walk = counted_walk(base, t.paths, home, &progress, &missing);
    let opts = PackOptions {
        progress: Some(progress.done.clone()),
        ..opts.clone()
    };
    let chunked = super::chunked::takes_chunks(env, t.format);
    let sink = HashingWriter::new(upload).with_progress(sent.clone());
    let (sink, stats, chunks) = pack_into(env, walk, sink, &opts, &t, chunked, &sent)?;
    drop(ticker);
    let missing = missing.into_inner().unwrap();
    if stats.entries == 0 {
        return Ok(Walked {
            stored: None,
            missing,
            chunks: None,
        });
    }
    let (upload, sha256, size) = sink.finish();
    let (packs, chunks) = chunks.map_or((Vec::new(), None), |(p, c)| (p, Some(c)));
    let meta = Meta {
        size: Some(size),
        sha256: Some(sha256),
        format: if chunked {
            Format::Chunked
        } else {
            Format::Archive
        },
        packs,
        stored: chunks.as_ref().map(|c| c.stored),
        ..described(env, &t, stats)
    };
    let committed = upload.commit(&meta, t.overwrite)?;
    Ok(Walked {
        stored: Some((committed, meta)),
        missing,
        chunks,
    })
}

/// An entry's metadata from what was packed; the archive's own facts are the caller's.
fn described(env: &Env, t: &Target, stats: archive::PackStats) -> Meta {
    Meta {
        created_ms: now_ms(),
        kura_version: env!("CARGO_PKG_VERSION").to_string(),
        files: stats.files,
        bytes: stats.bytes,
        entries: stats.entries,
        paths: t.paths.to_vec(),
        build: env.ctx.ci.build_num.clone(),
        manifest: stats.manifest,
        parents: t.parents.clone(),
        ..Meta::bare(t.key, t.version, t.scope)
    }
}

/// The store's upload of the entry, once the patterns are known to be good (bad ones are bad
/// input, exit 2, found before anything is uploaded); None when the store knows at once that
/// another save holds the key.
fn open_upload(
    env: &Env,
    base: &Path,
    home: Option<&Path>,
    t: &Target,
) -> Result<Option<Box<dyn crate::store::Upload>>> {
    crate::select::allowed_roots(t.paths, base, home).map_err(|e| user_error(format!("{e:#}")))?;
    if t.overwrite {
        env.store.prepare_overwrite(t.scope, t.version, t.key)?;
    }
    Ok(env.store.create(t.scope, t.version, t.key)?)
}

/// The walk of the selection, which adds up the total for progress as it goes and leaves the
/// patterns that matched nothing in `missing`.
fn counted_walk<'a>(
    base: &'a Path,
    paths: &'a [String],
    home: Option<&'a Path>,
    progress: &Progress,
    missing: &'a Mutex<Vec<String>>,
) -> Walk<'a> {
    let (total, known) = (progress.total.clone(), progress.total_known.clone());
    Box::new(move |each| {
        let mut counted = |e: crate::select::Entry| {
            total.fetch_add(e.size, Ordering::Relaxed);
            each(e)
        };
        *missing.lock().unwrap() = crate::select::walk(base, paths, home, &mut counted)?;
        known.store(true, Ordering::Relaxed);
        Ok(())
    })
}

type Sink = HashingWriter<Box<dyn crate::store::Upload>>;
/// A chunked save's packs (for the entry's metadata) and counts.
type Chunked = Option<(Vec<String>, crate::chunked::SaveStats)>;

/// Pack into the entry's object: the archive itself, or (chunked) the chunks into packs and
/// then the manifest, with the packs it references.
fn pack_into(
    env: &Env,
    walk: Walk,
    mut sink: Sink,
    opts: &PackOptions,
    t: &Target,
    chunked: bool,
    sent: &Arc<AtomicU64>,
) -> Result<(Sink, archive::PackStats, Chunked)> {
    if !chunked {
        let (sink, stats) = archive::pack(walk, sink, opts)?;
        return Ok((sink, stats, None));
    }
    let (stats, manifest, mut chunks) = super::chunked::pack(env, walk, opts, t, sent.clone())?;
    let encoded = manifest.encode()?;
    chunks.stored = encoded.len() as u64 + manifest.frames_len();
    std::io::Write::write_all(&mut sink, &encoded)?;
    Ok((sink, stats, Some((manifest.packs, chunks))))
}
