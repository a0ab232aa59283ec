//! `kura save`: select, pack straight into the store, commit atomically.

use super::{cache_version, path_lines, user_error, Env};
use crate::archive::{self, HashingWriter, PackOptions, Walk};
use crate::cli::SaveArgs;
use crate::report::{human, size, speed, Ticker};
use crate::store::{now_ms, Committed, Meta};
use anyhow::Result;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub fn save(env: &Env, args: &SaveArgs) -> Result<i32> {
    let paths = path_lines(&args.paths.paths);
    if paths.is_empty() {
        return Err(user_error("no path given: pass --path"));
    }
    let key = if args.literal_key {
        args.key.clone()
    } else {
        crate::key::render(&args.key, &env.ctx).map_err(|e| user_error(e.to_string()))?
    };
    let version = cache_version(&paths);
    let r = &env.report;
    let scope = env.write_scope.as_str();

    if !args.overwrite && !args.dry_run && env.store.exists(scope, &version, &key)? {
        r.info(format!("Cache already exists for key {key}, not saving"));
        r.outcome(json!({"outcome": "exists", "key": key, "version": version}));
        return Ok(0);
    }
    let home = env.ctx.home.as_deref();
    if args.dry_run {
        let sel = crate::select::select(&env.base, &paths, home)
            .map_err(|e| user_error(format!("{e:#}")))?;
        warn_missing(env, &sel.missing);
        r.info(format!(
            "Would save key: {key}\n  version {version}, scope {scope:?}, store {}\n  {} files, {}",
            env.store.location(),
            sel.file_count(),
            human(sel.total_bytes())
        ));
        r.outcome(
            json!({"outcome": "dry_run", "key": key, "version": version, "scope": scope,
            "store": env.store.location(), "files": sel.file_count(), "bytes": sel.total_bytes()}),
        );
        return Ok(0);
    }

    let started = Instant::now();
    let opts = PackOptions {
        level: args.compression_level,
        workers: env.workers,
        readers: env.workers as usize * 2,
        manifest: false,
    };
    let target = Target {
        scope,
        version: &version,
        key: &key,
        paths: &paths,
        overwrite: args.overwrite,
        parents: Vec::new(),
    };
    let Walked { stored, missing } = store_walk(env, &env.base, home, &opts, target)?;
    warn_missing(env, &missing);
    let Some(outcome) = stored else {
        // CircleCI stores an empty cache here, which then blocks the key for weeks.
        r.warn(format!(
            "no files matched the paths ({}); nothing was saved for key {key}",
            paths.join(", ")
        ));
        r.outcome(json!({"outcome": "empty", "key": key, "version": version}));
        return Ok(0);
    };
    let took = started.elapsed();
    match outcome {
        (Committed::Exists, meta) => {
            r.info(format!(
                "Cache already exists for key {key}: another job saved it first; skipped"
            ));
            r.outcome(
                json!({"outcome": "exists", "key": key, "version": version, "size": meta.size}),
            );
        }
        (Committed::Saved, meta) => {
            r.info(format!("Cache saved with key: {key}"));
            r.info(format!(
                "Cache Size: {}, {} files, {} packed in {}",
                size(meta.size),
                meta.files,
                human(meta.bytes),
                speed(meta.bytes, took)
            ));
            r.outcome(
                json!({"outcome": "saved", "key": key, "version": version, "scope": scope,
                "size": meta.size, "files": meta.files, "bytes": meta.bytes, "sha256": meta.sha256,
                "seconds": took.as_secs_f64()}),
            );
        }
    }
    Ok(0)
}

/// Where a packed selection goes, and what its metadata says.
pub(super) struct Target<'a> {
    pub scope: &'a str,
    pub version: &'a str,
    pub key: &'a str,
    pub paths: &'a [String],
    pub overwrite: bool,
    /// Workspace layers: the layers the job had attached.
    pub parents: Vec<String>,
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
    let Target {
        scope,
        version,
        key,
        paths,
        overwrite,
        parents,
    } = t;
    // Bad patterns are bad input (exit 2), found before anything is uploaded.
    crate::select::allowed_roots(paths, base, home).map_err(|e| user_error(format!("{e:#}")))?;
    if overwrite {
        env.store.prepare_overwrite(scope, version, key)?;
    }
    let upload = match env.store.create(scope, version, key) {
        Ok(u) => u,
        // The store knows at once that another save holds the key: nothing is packed.
        Err(e) if e.is::<crate::store::Exists>() => {
            return Ok(Walked {
                stored: Some((Committed::Exists, Meta::bare(key, version, scope))),
                missing: Vec::new(),
            })
        }
        Err(e) => return Err(e),
    };
    let counter = Arc::new(AtomicU64::new(0));
    let ticker = Ticker::start("Sent", counter.clone(), None);
    let missing = Mutex::new(Vec::new());
    let walk: Walk = Box::new(|each| {
        *missing.lock().unwrap() = crate::select::walk(base, paths, home, each)?;
        Ok(())
    });
    let (upload, stats) = archive::pack(
        walk,
        HashingWriter::new(upload).with_progress(counter),
        opts,
    )?;
    drop(ticker);
    let missing = missing.into_inner().unwrap();
    if stats.entries == 0 {
        return Ok(Walked {
            stored: None,
            missing,
        });
    }
    let (upload, sha256, size) = upload.finish();
    let meta = Meta {
        key: key.to_string(),
        version: version.to_string(),
        scope: scope.to_string(),
        size,
        sha256,
        created_ms: now_ms(),
        used_ms: 0,
        kura_version: env!("CARGO_PKG_VERSION").to_string(),
        files: stats.files,
        bytes: stats.bytes,
        paths: paths.to_vec(),
        manifest: stats.manifest,
        parents,
        object: String::new(),
    };
    let committed = upload.commit(&meta, overwrite)?;
    Ok(Walked {
        stored: Some((committed, meta)),
        missing,
    })
}
