//! `kura ls`, `kura rm`, `kura prune`.

use super::{user_error, Env};
use crate::outcome::{Listed, Outcome};
use crate::store::{now_ms, Meta};
use crate::units::{human, parse_duration, parse_size};
use anyhow::Result;
use std::collections::BTreeMap;

fn when(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let ago = now_ms().saturating_sub(ms) / 1000;
    match ago {
        0..=59 => format!("{ago}s ago"),
        60..=3599 => format!("{}m ago", ago / 60),
        3600..=86399 => format!("{}h ago", ago / 3600),
        _ => format!("{}d ago", ago / 86400),
    }
}

pub fn ls(env: &Env, prefix: Option<&str>) -> Result<Outcome> {
    let mut all = env.store.list(prefix.unwrap_or(""))?;
    all.sort_by_key(|m| std::cmp::Reverse(m.created_ms));
    if !env.report.json {
        print_table(env, &all, prefix);
    }
    // Whether a pack is live shows only against every entry.
    let counts = match prefix.filter(|p| !p.is_empty()) {
        None => Some(PackCounts::new(env, &all)?),
        Some(_) => None,
    };
    let packs = counts.as_ref().and_then(PackCounts::summary);
    if let (Some(p), Some(c)) = (&packs, &counts) {
        env.report.info(format!(
            "Packs: {}, {} referenced, {} not{}",
            p.count,
            human(p.live_bytes),
            human(p.dead_bytes),
            if p.dead_bytes > 0 {
                c.when_dead_go(env)
            } else {
                String::new()
            }
        ));
    }
    let entries = all
        .into_iter()
        .map(|m| Listed {
            size: m.entry_size(),
            key: m.key,
            scope: m.scope,
            version: m.version,
            files: m.files,
            created_ms: m.created_ms,
            used_ms: m.used_ms,
            paths: m.paths,
        })
        .collect();
    Ok(Outcome::Listed { entries, packs })
}

fn print_table(env: &Env, all: &[Meta], prefix: Option<&str>) {
    if all.is_empty() {
        match prefix.filter(|p| !p.is_empty()) {
            Some(p) => env.report.info(format!(
                "no entry's key starts with {p:?} in {}",
                env.store.location()
            )),
            None => env
                .report
                .info(format!("no entries in {}", env.store.location())),
        }
        return;
    }
    println!(
        "{:<50} {:>10} {:>8} {:>9} {:>9}  {:<12}  {:<20}  PATHS",
        "KEY", "SIZE", "FILES", "CREATED", "USED", "VERSION", "SCOPE"
    );
    // What the store says is printed on one line each, never as a workflow command.
    let shown = crate::text::untrusted;
    for m in all {
        let scope = if m.scope.is_empty() { "-" } else { &m.scope };
        let paths = if m.paths.is_empty() {
            "-".to_string()
        } else {
            m.paths.join(" ")
        };
        println!(
            "{:<50} {:>10} {:>8} {:>9} {:>9}  {:<12}  {:<20}  {}",
            shown(&m.key),
            m.entry_size().map(human).unwrap_or_else(|| "-".into()),
            m.files,
            when(m.created_ms),
            when(m.used_ms),
            shown(m.version.get(..12).unwrap_or(&m.version)),
            shown(scope),
            shown(&paths),
        );
    }
}

pub fn rm(env: &Env, key: &str, scope: Option<&str>, dry_run: bool) -> Result<Outcome> {
    let (doomed, elsewhere): (Vec<Meta>, Vec<Meta>) = env
        .store
        .list(key)?
        .into_iter()
        .filter(|m| m.key == key)
        .partition(|m| scope.is_none_or(|s| m.scope == s));
    if doomed.is_empty() && !elsewhere.is_empty() {
        let mut scopes: Vec<String> = elsewhere
            .iter()
            .map(|m| crate::text::untrusted(if m.scope.is_empty() { "-" } else { &m.scope }))
            .collect();
        scopes.dedup();
        env.report.warn(format!(
            "no entry with key {key} in scope {} of {}; the key is in scope {} (--ref names the scope; without it rm takes every scope)",
            scope.unwrap_or("-"),
            env.store.location(),
            scopes.join(", ")
        ));
        return Ok(Outcome::Deleted {
            key: key.to_string(),
            count: 0,
            dry_run,
        });
    }
    let n = doomed.len();
    let entries = if n == 1 { "entry" } else { "entries" };
    if doomed.is_empty() {
        env.report.warn(format!(
            "no entry with key {key} in {}",
            env.store.location()
        ));
    } else if dry_run {
        env.report
            .info(format!("Would delete {n} {entries} with key {key}"));
    } else {
        for m in &doomed {
            env.store.delete(m)?;
        }
        env.report
            .info(format!("Deleted {n} {entries} with key {key}"));
    }
    Ok(Outcome::Deleted {
        key: key.to_string(),
        count: n,
        dry_run,
    })
}

/// What `prune` keeps the store within.
pub struct Limits<'a> {
    pub max_size: Option<&'a str>,
    pub max_age: Option<&'a str>,
    pub dry_run: bool,
}

pub fn prune(env: &Env, limits: Limits) -> Result<Outcome> {
    if limits.max_size.is_none() && limits.max_age.is_none() {
        return Err(user_error(
            "prune needs --max-size and/or --max-age (e.g. --max-size 10G --max-age 7d)",
        ));
    }
    let size_limit = limits.max_size.map(parse_size).transpose()?;
    let age = limits.max_age.map(parse_duration).transpose()?;
    if !limits.dry_run {
        env.store.clean_incomplete();
    }
    let mut all = env.store.list("")?;
    // Least recently used first.
    all.sort_by_key(|m| m.used_ms.max(m.created_ms));
    let mut packs = PackCounts::new(env, &all)?;
    let limit = Limit {
        size: size_limit,
        age_ms: age.map(|a| a.as_millis() as u64),
        dry_run: limits.dry_run,
    };
    let (removed, total) = evict(env, &all, &mut packs, &limit);
    let swept = packs.sweep(env, limits.dry_run);
    let pruned = Pruned {
        removed: &removed,
        remaining: total,
        swept: &swept,
        dry_run: limits.dry_run,
    };
    tell_pruned(env, &packs, &pruned);
    Ok(Outcome::Pruned {
        removed: removed.iter().map(|m| m.key.clone()).collect(),
        remaining_bytes: total,
        dry_run: limits.dry_run,
        live_pack_bytes: packs.live_bytes,
        dead_pack_bytes: packs.dead_bytes(),
        packs_deleted: swept.count,
        freed_bytes: pruned.freed(),
        dead_packs_go_ms: swept.next_ms,
    })
}

/// What `prune` keeps the store within, parsed.
struct Limit {
    size: Option<u64>,
    age_ms: Option<u64>,
    dry_run: bool,
}

/// Remove the entries, least recently used first, that are too old or keep the store over
/// its size: those removed, and the bytes of the entries and live packs left.
fn evict<'a>(
    env: &Env,
    all: &'a [Meta],
    packs: &mut PackCounts,
    limit: &Limit,
) -> (Vec<&'a Meta>, u64) {
    let now = now_ms();
    // Sizes come from the store: added without overflow, whatever they claim. Packs an
    // evicted entry alone referenced count as gone for the limit: they go at the sweep.
    let mut total: u64 = all
        .iter()
        .filter_map(|m| m.size)
        .fold(packs.live_bytes, u64::saturating_add);
    let mut removed = Vec::new();
    for m in all {
        let used = m.used_ms.max(m.created_ms);
        let too_old = limit.age_ms.is_some_and(|a| now.saturating_sub(used) > a);
        let too_big = limit.size.is_some_and(|l| total > l);
        if !(too_old || too_big) {
            continue;
        }
        if !limit.dry_run {
            // One entry that cannot be deleted is reported and kept; the rest go on.
            if let Err(e) = env.store.delete(m) {
                env.report
                    .warn(format!("cannot delete the entry {}: {e:#}", m.key));
                continue;
            }
        }
        total = total.saturating_sub(m.size.unwrap_or(0).saturating_add(packs.release(m)));
        removed.push(m);
    }
    (removed, total)
}

/// What one prune did (or, in a dry run, would do).
struct Pruned<'a> {
    removed: &'a [&'a Meta],
    /// Bytes of the entries and live packs that remain.
    remaining: u64,
    swept: &'a Swept,
    dry_run: bool,
}

impl Pruned<'_> {
    /// Bytes gone from the store now: the objects of the entries removed, and the dead packs
    /// deleted. Packs an entry removed now alone referenced are not among them: they wait.
    fn freed(&self) -> u64 {
        self.removed
            .iter()
            .filter_map(|m| m.size)
            .fold(self.swept.bytes, u64::saturating_add)
    }
}

/// What a prune did (or would do), in the log: each entry a dry run would remove, what is
/// freed now, what remains, and when the packs no entry references can go.
fn tell_pruned(env: &Env, packs: &PackCounts, p: &Pruned) {
    let (verb, freed) = match p.dry_run {
        true => ("Would prune", "would free"),
        false => ("Pruned", "freed"),
    };
    if p.dry_run {
        for m in p.removed {
            env.report.info(format!(
                "Would prune {} ({}, last used {})",
                crate::text::untrusted(&m.key),
                m.entry_size()
                    .map(human)
                    .unwrap_or_else(|| "size unknown".into()),
                when(m.used_ms.max(m.created_ms))
            ));
        }
    }
    let n = p.removed.len();
    env.report.info(format!(
        "{verb} {n} entr{}, {freed} {} now; {} of entries and the packs they use remain in {}",
        if n == 1 { "y" } else { "ies" },
        human(p.freed()),
        human(p.remaining),
        env.store.location()
    ));
    tell_packs(env, packs, p);
}

/// The packs after a prune: live, dead and waiting (until when), deleted now.
fn tell_packs(env: &Env, packs: &PackCounts, p: &Pruned) {
    let dead = packs.dead_bytes();
    let collected = env.store.packs().is_some_and(|s| s.collected_by_store());
    if collected && dead > 0 {
        env.report.info(format!(
            "Packs: {} live, {} no longer referenced; the registry's garbage collection deletes those",
            human(packs.live_bytes),
            human(dead),
        ));
    } else if !packs.listed.is_empty() {
        let waiting = match (dead, p.swept.next_ms) {
            (0, _) => String::new(),
            (_, Some(at)) => format!(
                "; {} no longer referenced, which a prune deletes from {} on (a day after a prune first finds a pack unreferenced, so that a save in flight keeps the packs it reuses)",
                human(dead),
                utc(at)
            ),
            (_, None) => format!(
                "; {} no longer referenced, kept: the store does not say when they were written",
                human(dead)
            ),
        };
        let swept = match p.swept.count {
            0 => String::new(),
            n => format!(
                "; {n} dead pack(s) of {} {} now",
                human(p.swept.bytes),
                if p.dry_run {
                    "would be deleted"
                } else {
                    "deleted"
                }
            ),
        };
        env.report.info(format!(
            "Packs: {} live{waiting}{swept}",
            human(packs.live_bytes),
        ));
    }
}

fn utc(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// A pack no entry references is deleted once it is this old and a prune this long ago found
/// it unreferenced already: no save runs this long.
const PACK_GRACE_MS: u64 = 24 * 3600 * 1000;

/// Mark and sweep for the packs of chunked entries: how many entries reference each pack.
struct PackCounts {
    refs: std::collections::HashMap<String, usize>,
    listed: Vec<crate::chunked::PackInfo>,
    /// Each listed pack's size, by name: a prune is linear in the store's packs.
    sizes: std::collections::HashMap<String, u64>,
    live_bytes: u64,
    /// Bytes of the packs the sweep deleted.
    swept: u64,
}

/// What a sweep of dead packs did.
#[derive(Default)]
struct Swept {
    count: usize,
    bytes: u64,
    /// When the first of the dead packs it kept may go; None when there are none, or the
    /// store does not say when any of them was written.
    next_ms: Option<u64>,
}

impl PackCounts {
    fn new(env: &Env, all: &[Meta]) -> Result<PackCounts> {
        let listed = match env.store.packs() {
            Some(p) => p.list()?,
            None => Vec::new(),
        };
        let mut refs = std::collections::HashMap::new();
        for m in all {
            for p in &m.packs {
                *refs.entry(p.clone()).or_insert(0) += 1;
            }
        }
        let live_bytes = listed
            .iter()
            .filter(|p| refs.contains_key(&p.name))
            .map(|p| p.size)
            .fold(0, u64::saturating_add);
        let sizes = listed.iter().map(|p| (p.name.clone(), p.size)).collect();
        Ok(PackCounts {
            refs,
            listed,
            sizes,
            live_bytes,
            swept: 0,
        })
    }

    fn summary(&self) -> Option<crate::outcome::PackBytes> {
        (!self.listed.is_empty()).then(|| crate::outcome::PackBytes {
            count: self.listed.len(),
            live_bytes: self.live_bytes,
            dead_bytes: self.dead_bytes(),
        })
    }

    /// When the unreferenced packs can go, as `ls` tells it: from prune's note, a day after a
    /// prune first found each (and a day after it was written).
    fn when_dead_go(&self, env: &Env) -> String {
        let Some(store) = env.store.packs() else {
            return String::new();
        };
        if store.collected_by_store() {
            return " (the registry's garbage collection deletes those)".into();
        }
        let noted = read_note(env, &*store);
        let dead = self
            .listed
            .iter()
            .filter(|p| !self.refs.contains_key(&p.name));
        let (mut first, mut unnoted) = (None::<u64>, false);
        for p in dead {
            match noted.get(&p.name) {
                Some(since) if p.modified_ms != 0 => {
                    let at = (*since).max(p.modified_ms).saturating_add(PACK_GRACE_MS);
                    first = Some(first.map_or(at, |f| f.min(at)));
                }
                _ => unnoted = true,
            }
        }
        match (first, unnoted) {
            (Some(at), false) => format!(": a prune deletes those from {} on", utc(at)),
            (Some(at), true) => format!(
                ": a prune deletes the first of those from {} on, the others a day after the next prune finds them",
                utc(at)
            ),
            (None, _) => ": the next prune notes them, and a prune a day later deletes them".into(),
        }
    }

    /// An entry is gone: the bytes of the packs that only it referenced.
    fn release(&mut self, m: &Meta) -> u64 {
        let mut freed = 0;
        for p in &m.packs {
            if let Some(n) = self.refs.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    self.refs.remove(p);
                    let size = self.sizes.get(p).copied().unwrap_or(0);
                    self.live_bytes = self.live_bytes.saturating_sub(size);
                    freed += size;
                }
            }
        }
        freed
    }

    /// Bytes of unreferenced packs left after the sweep (or, in a dry run, that would be).
    fn dead_bytes(&self) -> u64 {
        let all = self
            .listed
            .iter()
            .map(|p| p.size)
            .fold(0, u64::saturating_add);
        all.saturating_sub(self.live_bytes)
            .saturating_sub(self.swept)
    }

    /// Delete the packs found unreferenced by a prune at least the grace period ago and
    /// unreferenced still, and note the others as dead from now. A save that reuses a pack
    /// whose last entry this prune deletes commits long before the next prune a day later,
    /// which then finds the pack referenced again: a save in flight never loses its packs.
    fn sweep(&mut self, env: &Env, dry_run: bool) -> Swept {
        let Some(store) = env.store.packs().filter(|p| !p.collected_by_store()) else {
            return Swept::default();
        };
        let noted = read_note(env, &*store);
        let now = now_ms();
        let mut still_dead = BTreeMap::new();
        let mut out = Swept::default();
        for p in self
            .listed
            .iter()
            .filter(|p| !self.refs.contains_key(&p.name))
        {
            let since = noted.get(&p.name).copied().unwrap_or(now);
            // A pack whose time the store does not say is never old enough.
            let goes = (p.modified_ms != 0)
                .then(|| since.max(p.modified_ms).saturating_add(PACK_GRACE_MS));
            if goes.is_some_and(|at| now >= at) {
                if !dry_run {
                    if let Err(e) = store.delete(&p.name) {
                        env.report.warn(format!("{e:#}"));
                        still_dead.insert(p.name.clone(), since);
                        continue;
                    }
                }
                out.count += 1;
                out.bytes = out.bytes.saturating_add(p.size);
            } else {
                still_dead.insert(p.name.clone(), since);
                out.next_ms = match (out.next_ms, goes) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        self.swept = out.bytes;
        if !dry_run && (still_dead != noted || out.count > 0) {
            let note = serde_json::to_vec(&still_dead).unwrap_or_default();
            if let Err(e) = store.write_note(&note) {
                env.report.warn(format!("{e:#}"));
            }
        }
        out
    }
}

/// Prune's note of the packs it found dead, and since when. A note that cannot be read is as
/// none: every dead pack is noted from now, and goes a day later at the earliest.
fn read_note(env: &Env, store: &dyn crate::chunked::Packs) -> BTreeMap<String, u64> {
    store
        .read_note()
        .unwrap_or_else(|e| {
            env.report.warn(format!("{e:#}; it is written anew"));
            None
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}
