//! `kura persist` / `kura attach`: CircleCI workspaces for any CI.
//!
//! Each persist stores a layer, an entry in the scope `workspace/<workflow id>` keyed
//! `<job>~<attempt>~<seq>`, with a manifest of its files' digests and the layers its job had
//! attached. Attach applies every layer in creation order (a job re-run in a later attempt
//! replaces its earlier layers) and, first, fails on CircleCI's rule: two layers from jobs
//! that did not see each other may not hold the same path with different content.

use super::save::{store_walk, warn_missing, Walked};
use super::Target;
use super::{path_lines, user_error, Env};
use crate::archive::{self, HashingReader, PackOptions, Tree, UnpackOptions};
use crate::outcome::{Outcome, Planned};
use crate::store::{encode, Committed, Format, Meta};
use crate::units::{human, speed};
use anyhow::{bail, Context as _, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Layers are never restored as caches: their own version keeps them apart.
const LAYER_VERSION: &str = "workspace-1";

/// What `persist` is asked for.
#[derive(Debug, Clone)]
pub struct PersistOptions {
    /// The directory the paths are relative to.
    pub root: PathBuf,
    pub paths: Vec<String>,
    pub run: RunIds,
    pub dry_run: bool,
}

/// What `attach` is asked for.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// The directory the workspace is applied under.
    pub at: PathBuf,
    pub run: RunIds,
}

/// The workflow run and job, where the user names them (else the CI's own).
#[derive(Debug, Clone, Default)]
pub struct RunIds {
    pub workflow: Option<String>,
    pub job: Option<String>,
}

fn ids(env: &Env, run: &RunIds) -> Result<(String, String)> {
    let ci = &env.ctx.ci;
    let workflow = run.workflow.clone().or_else(|| ci.workflow_id.clone()).ok_or_else(|| {
        user_error(format!(
            "no workflow id ({}): pass --workflow or set KURA_WORKFLOW to the same value in every job of the run",
            ci.name
        ))
    })?;
    let job = run.job.clone().or_else(|| ci.job.clone()).ok_or_else(|| {
        user_error(format!(
            "no job name ({}): pass --job or set KURA_JOB",
            ci.name
        ))
    })?;
    if job.contains('~') {
        return Err(user_error(format!(
            "job name {job:?} contains '~', which kura uses in layer names"
        )));
    }
    Ok((workflow, job))
}

fn scope(workflow: &str) -> String {
    format!("workspace/{workflow}")
}

fn absolute(env: &Env, p: &Path) -> PathBuf {
    crate::select::normalize(&env.ctx.cwd.join(p))
}

pub fn persist(env: &Env, args: &PersistOptions) -> Result<Outcome> {
    let (workflow, job) = ids(env, &args.run)?;
    let (root, paths) = persist_plan(env, args)?;
    let scope = scope(&workflow);
    let prefix = format!("{job}~{:03}~", env.ctx.ci.attempt);
    let seq = env.store.list_prefix(&scope, LAYER_VERSION, &prefix)?.len() + 1;
    let key = format!("{prefix}{seq:03}");
    if args.dry_run {
        return persist_dry_run(env, &root, &paths, key, workflow);
    }
    let parents: Vec<String> =
        super::state::read_attached(env, &encode(&format!("{workflow}~{job}"))).unwrap_or_default();
    let started = Instant::now();
    let target = Target {
        scope: &scope,
        version: LAYER_VERSION,
        key: &key,
        paths: &paths,
        overwrite: false,
        parents,
        format: Format::Archive,
        chunk_size: crate::chunked::AVG_CHUNK,
    };
    let Walked {
        stored, missing, ..
    } = store_walk(env, &root, None, &layer_options(env), target)?;
    warn_missing(env, &missing);
    let Some((committed, meta)) = stored else {
        env.report.warn(format!(
            "nothing to persist: no path matched a file under {}",
            root.display()
        ));
        return Ok(Outcome::Empty {
            key: None,
            workflow: Some(workflow),
        });
    };
    if let Committed::Exists = committed {
        bail!("workspace layer {key} already exists; was this job run twice at once?");
    }
    env.report.info(format!(
        "Persisted {} files ({}) as layer {key} of workflow {workflow} in {}",
        meta.files,
        human(meta.bytes),
        speed(meta.bytes, started.elapsed())
    ));
    Ok(Outcome::Persisted {
        layer: key,
        workflow,
        files: meta.files,
        bytes: meta.bytes,
        size: meta.size.unwrap_or(0),
    })
}

/// How a layer is packed: with the manifest of its files' digests (for conflicts).
fn layer_options(env: &Env) -> PackOptions {
    PackOptions {
        level: 3,
        workers: env.workers,
        readers: env.workers as usize * 2,
        manifest: true,
        progress: None,
        raw: false,
        reuse: None,
    }
}

/// The root and the paths under it, checked.
fn persist_plan(env: &Env, args: &PersistOptions) -> Result<(PathBuf, Vec<String>)> {
    let root = absolute(env, &args.root);
    if !root.is_dir() {
        return Err(user_error(format!(
            "--root {} is not a directory",
            root.display()
        )));
    }
    let paths = path_lines(&args.paths);
    let escapes = |p: &str| {
        let p = p.trim_start_matches('!');
        p.starts_with(['/', '~'])
            || !crate::select::normalize(&root.join(p)).starts_with(crate::select::normalize(&root))
    };
    if let Some(p) = paths.iter().find(|p| escapes(p)) {
        return Err(user_error(format!(
            "persist path {p:?} must be relative to --root {} and stay below it",
            root.display()
        )));
    }
    Ok((root, paths))
}

fn persist_dry_run(
    env: &Env,
    root: &Path,
    paths: &[String],
    layer: String,
    workflow: String,
) -> Result<Outcome> {
    let sel = crate::select::select(root, paths, None).map_err(|e| user_error(format!("{e:#}")))?;
    warn_missing(env, &sel.missing);
    env.report.info(format!(
        "Would persist layer {layer} of workflow {workflow}: {} files, {} from {}\n  store {}",
        sel.file_count(),
        human(sel.total_bytes()),
        root.display(),
        env.store.location()
    ));
    Ok(Outcome::DryRun(Planned {
        key: None,
        layer: Some(layer),
        workflow: Some(workflow.clone()),
        version: LAYER_VERSION.to_string(),
        scope: scope(&workflow),
        store: env.store.location(),
        files: sel.file_count(),
        bytes: sel.total_bytes(),
    }))
}

struct Layer {
    meta: Meta,
    job: String,
    attempt: u32,
    seq: u32,
}

fn parse_layer(meta: Meta) -> Option<Layer> {
    let mut it = meta.key.rsplitn(3, '~');
    let seq = it.next()?.parse().ok()?;
    let attempt = it.next()?.parse().ok()?;
    let job = it.next()?.to_string();
    Some(Layer {
        meta,
        job,
        attempt,
        seq,
    })
}

/// The layers to apply, in order: for each job only its latest attempt.
fn layers(env: &Env, workflow: &str) -> Result<Vec<Layer>> {
    let all: Vec<Layer> = env
        .store
        .list_prefix(&scope(workflow), LAYER_VERSION, "")?
        .into_iter()
        .filter_map(parse_layer)
        .collect();
    let mut latest: HashMap<String, u32> = HashMap::new();
    for l in &all {
        let a = latest.entry(l.job.clone()).or_insert(0);
        *a = (*a).max(l.attempt);
    }
    let mut keep: Vec<Layer> = all
        .into_iter()
        .filter(|l| latest[&l.job] == l.attempt)
        .collect();
    keep.sort_by(|a, b| {
        (a.meta.created_ms, &a.job, a.seq).cmp(&(b.meta.created_ms, &b.job, b.seq))
    });
    Ok(keep)
}

/// Paths that layers of unrelated jobs hold with different content, or that one holds as a
/// file (or link) and the other as a directory (with paths below it).
fn conflicts(layers: &[Layer]) -> BTreeMap<String, Vec<String>> {
    let related = |a: &Layer, b: &Layer| {
        a.job == b.job
            || b.meta.parents.contains(&a.meta.key)
            || a.meta.parents.contains(&b.meta.key)
    };
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut clash = |name: &str, a: &Layer, b: &Layer| {
        let jobs = out.entry(name.to_string()).or_default();
        for j in [&a.job, &b.job] {
            if !jobs.contains(j) {
                jobs.push(j.clone());
            }
        }
    };
    let mut owners: HashMap<&str, Vec<&Layer>> = HashMap::new();
    for l in layers {
        for (name, digest) in &l.meta.manifest {
            let seen = owners.entry(name.as_str()).or_default();
            for prev in seen.iter() {
                if !related(prev, l) && prev.meta.manifest.get(name) != Some(digest) {
                    clash(name, prev, l);
                }
            }
            seen.push(l);
        }
    }
    for l in layers {
        for name in l.meta.manifest.keys() {
            let mut below = name.as_str();
            while let Some((dir, _)) = below.rsplit_once('/') {
                for other in owners.get(dir).into_iter().flatten() {
                    if !related(other, l) {
                        clash(dir, other, l);
                    }
                }
                below = dir;
            }
        }
    }
    out
}

pub fn attach(env: &Env, args: &AttachOptions) -> Result<Outcome> {
    let (workflow, job) = ids(env, &args.run)?;
    let at = absolute(env, &args.at);
    let r = &env.report;
    let layers = layers(env, &workflow)?;
    if layers.is_empty() {
        r.warn(format!(
            "workflow {workflow} has no workspace layers in {}; nothing attached",
            env.store.location()
        ));
        return Ok(Outcome::Empty {
            key: None,
            workflow: Some(workflow),
        });
    }
    let clash = conflicts(&layers);
    if !clash.is_empty() {
        return Ok(conflict(env, clash));
    }
    std::fs::create_dir_all(&at).with_context(|| {
        format!(
            "cannot create {}; attach into a directory you own (under $HOME or /tmp)",
            at.display()
        )
    })?;
    let started = Instant::now();
    let (files, bytes) = apply_all(env, &layers, &at)?;
    let keys: Vec<String> = layers.iter().map(|l| l.meta.key.clone()).collect();
    super::state::record_attached(env, &encode(&format!("{workflow}~{job}")), &keys);
    r.info(format!(
        "Attached {} layer(s) of workflow {workflow} under {}: {files} files, {} in {}",
        layers.len(),
        at.display(),
        human(bytes),
        speed(bytes, started.elapsed())
    ));
    Ok(Outcome::Attached {
        workflow,
        layers: keys,
        files,
        bytes,
    })
}

/// The outcome of layers that conflict, with the error that names them.
fn conflict(env: &Env, clash: std::collections::BTreeMap<String, Vec<String>>) -> Outcome {
    let list: Vec<String> = clash
        .iter()
        .map(|(p, jobs)| format!("  {p} (jobs {})", jobs.join(", ")))
        .collect();
    env.report.error(format!(
        "Concurrent upstream jobs persisted the same file(s) into the workspace:\n{}\nPersist each path from one job only, or make one job depend on the other.",
        list.join("\n")
    ));
    Outcome::Conflict {
        paths: clash.into_keys().collect(),
    }
}

/// Every layer under `at`, all or none: each is kept uncommitted until every one is written;
/// a failure (or a signal) rolls back those written, newest first (each puts back what the
/// one before it wrote). The files and bytes written.
fn apply_all(env: &Env, layers: &[Layer], at: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut written = Vec::new();
    let _interrupts = crate::platform::catch_interrupts();
    for l in layers {
        match apply(env, l, at) {
            Ok(done) => {
                files += done.files;
                bytes += done.bytes;
                written.push(done);
            }
            Err(e) => {
                while let Some(done) = written.pop() {
                    done.rollback();
                }
                return Err(e);
            }
        }
    }
    if let Some(sig) = crate::platform::interrupted() {
        while let Some(done) = written.pop() {
            done.rollback();
        }
        bail!(archive::stopped(sig));
    }
    for done in written {
        for problem in done.commit() {
            env.report.warn(problem);
        }
    }
    Ok((files, bytes))
}

/// Extract one layer under `at`, checked against its sha256, not yet committed.
fn apply(env: &Env, l: &Layer, at: &Path) -> Result<archive::Extraction> {
    let tree = Tree::new(at, &[at.to_path_buf()]);
    let mut reader = HashingReader::new(env.store.open(&l.meta)?);
    let opts = UnpackOptions {
        writers: env.workers as usize,
        window_log_max: 27,
        declared: Some(crate::archive::Declared {
            bytes: l.meta.bytes,
            entries: l.meta.entries,
            files: l.meta.files,
        }),
        spans: false,
    };
    let done = archive::unpack(&mut reader, tree, &opts)
        .with_context(|| format!("cannot apply workspace layer {}", l.meta.key))?;
    let (sha, n) = reader.finish();
    let sha_bad = l.meta.sha256.as_ref().is_some_and(|s| *s != sha);
    if sha_bad || l.meta.size.is_some_and(|s| s != n) {
        done.rollback();
        bail!(
            "workspace layer {} is corrupt (sha256 mismatch); re-run the job {} that persisted it",
            l.meta.key,
            l.job
        );
    }
    // A workspace is all or nothing: a layer that cannot be written whole fails the attach.
    if !done.refused.is_empty() {
        let refused = done.refused.join("\n  ");
        done.rollback();
        bail!(
            "workspace layer {} could not be written whole:\n  {refused}",
            l.meta.key
        );
    }
    Ok(done)
}
