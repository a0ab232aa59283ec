//! `kura restore`: find the entry, stream it into the extractor, verify what was read.

use super::{cache_version, path_lines, render_all, user_error, Env};
use crate::archive::{self, HashingReader, Tree, UnpackOptions};
use crate::cli::RestoreArgs;
use crate::report::{size, speed, Ticker};
use crate::store::{Candidate, Meta};
use anyhow::Result;
use serde_json::json;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

pub fn restore(env: &Env, args: &RestoreArgs) -> Result<i32> {
    let paths = path_lines(&args.paths.paths);
    // CircleCI's restore_cache names no paths: the entry's own paths say where it goes.
    if paths.is_empty() && args.key.is_some() {
        return Err(user_error(
            "no path given: pass --path (the same paths the save used), or use --keys, which restores entries to the paths they were saved from",
        ));
    }
    // GitHub order (--key, --restore-key) tries each key exactly first; CircleCI order
    // (--keys) treats every key as a prefix.
    let (templates, exact_first): (Vec<String>, bool) = match &args.key {
        Some(key) => (
            std::iter::once(key)
                .chain(&args.restore_keys)
                .cloned()
                .collect(),
            true,
        ),
        None => (args.keys.clone(), false),
    };
    let templates: Vec<String> = templates
        .into_iter()
        .filter(|k| !k.trim().is_empty())
        .collect();
    if templates.is_empty() {
        return Err(user_error(
            "no key given: pass --key (GitHub order) or --keys (CircleCI order)",
        ));
    }
    let candidates: Vec<Candidate> = render_all(&templates, &env.ctx)?
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
    let primary = candidates[0].key.clone();
    let keys: Vec<&str> = candidates.iter().map(|c| c.key.as_str()).collect();
    let version = if paths.is_empty() {
        String::new()
    } else {
        cache_version(&paths)
    };
    let r = &env.report;
    let miss = |code: i32, why: &str| {
        r.outcome(
            json!({"outcome": "miss", "cache_hit": false, "primary_key": primary,
            "keys": keys, "version": version, "reason": why}),
        );
        code
    };
    let miss_code = if args.fail_on_miss { 1 } else { 0 };

    let found = if paths.is_empty() {
        lookup_any_version(env, &candidates)
    } else {
        env.store.lookup(&env.read_scopes, &version, &candidates)
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            return Err(e.context(format!(
                "cannot look up the cache in {}",
                env.store.location()
            )))
        }
    };
    let Some(meta) = found else {
        r.info(format!(
            "Cache not found for input keys: {}",
            keys.join(", ")
        ));
        if args.fail_on_miss {
            r.error(format!(
                "Failed to restore cache entry. Exiting as fail-on-cache-miss is set. Input key: {primary}"
            ));
        }
        return Ok(miss(miss_code, "not found"));
    };
    let from_entry = paths.is_empty();
    let (paths, version) = if paths.is_empty() {
        (meta.paths.clone(), meta.version.clone())
    } else {
        (paths, version.clone())
    };
    let exact = meta.key == primary;
    let hit_json = |m: &Meta, extra: serde_json::Value| {
        let mut v = json!({"outcome": "hit", "cache_hit": exact, "primary_key": primary,
            "matched_key": m.key, "version": version, "scope": m.scope, "size": m.size,
            "files": m.files, "bytes": m.bytes});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    if args.dry_run || args.lookup_only {
        let verb = if args.dry_run {
            "Would restore"
        } else {
            "Cache found"
        };
        r.info(format!("{verb} from key: {}", meta.key));
        r.info(format!(
            "  version {version}, scope {:?}, store {}\n  {} files, {} unpacked, archive {}",
            meta.scope,
            env.store.location(),
            meta.files,
            crate::report::human(meta.bytes),
            size(meta.size)
        ));
        r.outcome(hit_json(
            &meta,
            json!({"dry_run": args.dry_run, "lookup_only": args.lookup_only}),
        ));
        return Ok(0);
    }

    let (roots, denied) = restore_roots(env, &paths, from_entry)?;
    let tree = Tree::new(&env.base, &roots);
    let started = Instant::now();
    let reader = env.store.open(&meta)?;
    let counter = Arc::new(AtomicU64::new(0));
    let mut hashing = HashingReader::new(reader).with_progress(counter.clone());
    let ticker = Ticker::start("Received", counter, Some(meta.size));
    let opts = UnpackOptions {
        writers: env.workers as usize,
        window_log_max: window_log_max(&meta.version, &paths),
    };
    let mut done = match archive::unpack(&mut hashing, tree, &opts) {
        Ok(s) => s,
        Err(e) => {
            if e.downcast_ref::<archive::Corrupt>().is_some() && !hashing.source_failed {
                forget_corrupt(env, &meta, &format!("{e:#}"));
                return Ok(miss(miss_code, "corrupt"));
            }
            return Err(e.context(format!("cannot restore the cache from key {}", meta.key)));
        }
    };
    drop(ticker);
    let (sha, n) = hashing.finish();
    // Stores that record no checksum (GitHub's) rely on zstd's frame checksum and the length.
    let sha_bad = !meta.sha256.is_empty() && sha != meta.sha256;
    if sha_bad || (meta.size > 0 && n != meta.size) {
        done.rollback();
        let why = format!(
            "read {n} bytes with sha256 {sha}, but {} bytes with sha256 {} were saved",
            meta.size, meta.sha256
        );
        forget_corrupt(env, &meta, &why);
        return Ok(miss(miss_code, "corrupt"));
    }
    let (files, bytes) = (done.files, done.bytes);
    let mut refused = std::mem::take(&mut done.refused);
    for problem in done.commit() {
        r.warn(problem);
    }
    env.store.touch(&meta);
    let took = started.elapsed();
    refused.extend(denied);
    let partial = !refused.is_empty();
    if partial {
        r.warn(format!(
            "the cache from key {} was restored only in part: {} entr{} not written:\n  {}",
            meta.key,
            refused.len(),
            if refused.len() == 1 {
                "y was"
            } else {
                "ies were"
            },
            refused.join("\n  ")
        ));
    }
    if !exact {
        r.info(format!("Cache hit for restore-key: {}", meta.key));
    }
    r.info(format!("Cache restored from key: {}", meta.key));
    r.info(format!(
        "Cache Size: ~{} MB ({} B), {} files, {} unpacked, in {}",
        (n + 500_000) / 1_000_000,
        n,
        files,
        crate::report::human(bytes),
        speed(n, took)
    ));
    let mut out = hit_json(
        &meta,
        json!({"seconds": took.as_secs_f64(), "refused": refused}),
    );
    if partial {
        // Not a clean hit: `cache-hit` is false, and a later save may replace the entry.
        out["outcome"] = json!("partial");
        out["cache_hit"] = json!(false);
    }
    r.outcome(out);
    Ok(0)
}

/// Where a restore may write. Paths the user named are all allowed; paths taken from the
/// entry's own metadata (a restore without `--path`) were chosen by whoever saved it, so only
/// those under the home and working directories are, and the others are listed as refused.
fn restore_roots(
    env: &Env,
    paths: &[String],
    from_entry: bool,
) -> Result<(Vec<std::path::PathBuf>, Vec<String>)> {
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
