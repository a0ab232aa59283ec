//! The local directory store: the embedded default, and what self-hosted runners share.
//!
//! Layout: `<root>/<scope>/<version>/<encoded key>/{archive,meta.json}`. An entry is built in
//! `<root>/.tmp/` and renamed into place, so it appears whole or not at all; renaming a
//! directory onto an existing non-empty one fails, which makes the first of two concurrent
//! saves of one key the only one. The entry directory's mtime records when it was last used.
//!
//! Whoever shares the directory (another job on a self-hosted runner) can write anything in
//! it, so below the root everything goes through [`Dir`] handles that never follow a symlink
//! and only read regular files of bounded size; an entry is where it was found (its metadata
//! must agree with its directory's names), and nothing is opened or removed by a path built
//! from stored content.

mod packs;

use super::{agrees, Committed, Handle, Meta, Store, Upload};
use crate::nofollow::{Dir, Kind};
use crate::store::{StoreError, StoreResult};
use anyhow::{anyhow, bail, Context as _, Result};
use packs::LocalPacks;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

const ARCHIVE: &str = "archive";
const META: &str = "meta.json";
const TMP: &str = ".tmp";
/// Most bytes of an entry's metadata (kura's own are a few KiB; a workspace layer's list of
/// archives a few hundred KiB at most).
pub(crate) const META_CAP: u64 = 4 << 20;

pub struct LocalStore {
    root: PathBuf,
    packs: Arc<LocalPacks>,
}

/// Where an entry was found: the names of its scope, version and entry directories.
fn place(meta: &Meta) -> Result<(String, String, String)> {
    match &meta.handle {
        Handle::Dir {
            scope,
            version,
            name,
        } => Ok((scope.clone(), version.clone(), name.clone())),
        // Built by kura from the user's own key, version and scope (never from a store).
        Handle::Derived => {
            let (s, v, n) = super::layout(&meta.scope, &meta.version, &meta.key);
            Ok((s, v.to_string(), n))
        }
        _ => bail!("the entry {} was not read from this store", meta.key),
    }
}

/// A name no other process (here or on another host sharing the directory) picks.
fn fresh_name() -> String {
    format!(
        "{}-{:016x}",
        std::process::id(),
        crate::random::u128() as u64
    )
}

impl LocalStore {
    pub fn new(root: PathBuf) -> LocalStore {
        let packs = Arc::new(LocalPacks::new(root.clone()));
        LocalStore { root, packs }
    }

    /// The root, or None where there is no store yet.
    fn root(&self) -> Result<Option<Dir>> {
        match Dir::open(&self.root) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot open {}", self.root.display())),
        }
    }

    fn root_made(&self) -> Result<Dir> {
        Dir::create(&self.root).with_context(|| {
            format!("cannot create the store directory {}; pass --store file:///DIR with a directory you can write", self.root.display())
        })
    }

    fn tmp(root: &Dir) -> Result<Dir> {
        root.subdir(TMP, true)
            .and_then(|d| d.ok_or_else(|| std::io::ErrorKind::NotFound.into()))
            .with_context(|| format!("cannot use {}", root.shown(TMP).display()))
    }

    /// The version directory an entry is in, and the entry's name there.
    fn version_dir(&self, meta: &Meta) -> Result<(Dir, Dir, String)> {
        let (scope, version, name) = place(meta)?;
        let root = self
            .root()?
            .ok_or_else(|| anyhow!("no store at {}", self.root.display()))?;
        let dir = root
            .dir(&scope)
            .and_then(|s| s.dir(&version))
            .with_context(|| format!("cannot open {}", root.shown(&scope).display()))?;
        Ok((root, dir, name))
    }

    /// The entries of one version directory whose key starts with `prefix`. A directory of
    /// the wrong kind (a symlink, a file) holds no entries.
    fn metas_in(&self, root: &Dir, scope: &str, version: &str, prefix: &str) -> Result<Vec<Meta>> {
        let start = super::name_prefix(prefix);
        let dir = match root.dir(scope).and_then(|s| s.dir(version)) {
            Ok(d) => d,
            Err(e) if missing(&e) => return Ok(Vec::new()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot list {}", root.shown(scope).display()))
            }
        };
        let mut out = Vec::new();
        for (name, kind) in dir.entries()? {
            // A cheap filter on the name; the key in the metadata decides.
            if kind != Kind::Dir || !name.starts_with(&start) {
                continue;
            }
            if let Some(m) = read_meta(&dir, scope, version, &name) {
                if m.key.starts_with(prefix) {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }
}

/// Nothing there, or something that is not a directory: no entries, not a failure.
fn missing(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    e.kind() == std::io::ErrorKind::NotFound
        || [Errno::NOTDIR, Errno::LOOP]
            .iter()
            .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
}

/// The entry in directory `name` of `version_dir`, if it is one: metadata that reads (a
/// regular file of bounded size) and agrees with where it was found.
fn read_meta(version_dir: &Dir, scope: &str, version: &str, name: &str) -> Option<Meta> {
    read_meta_at(&version_dir.dir(name).ok()?, scope, version, name)
}

/// [`read_meta`] of an entry directory already open (perhaps moved aside under another name),
/// against the place it was found at.
fn read_meta_at(entry: &Dir, scope: &str, version: &str, name: &str) -> Option<Meta> {
    let mut m: Meta = serde_json::from_slice(&entry.read(META, META_CAP).ok()?).ok()?;
    if !agrees(&m, scope, version, name) {
        return None;
    }
    m.used_ms = entry.modified_ms().unwrap_or(m.created_ms);
    m.handle = Handle::Dir {
        scope: scope.to_string(),
        version: version.to_string(),
        name: name.to_string(),
    };
    Some(m)
}

/// Whether the entry directory `entry`, found at `scope/version/name`, holds an entry:
/// metadata that reads and agrees with that place, and its archive, a regular file. A crash
/// can leave one torn (the store does not fsync), and anyone sharing the directory can leave
/// anything: neither holds the key for good.
fn whole(entry: &Dir, scope: &str, version: &str, name: &str) -> bool {
    read_meta_at(entry, scope, version, name).is_some()
        && entry
            .stat(ARCHIVE)
            .is_ok_and(|st| st.is_some_and(|st| st.kind == Kind::File))
}

/// [`whole`] for `name` in `dir`.
fn whole_in(dir: &Dir, scope: &str, version: &str, name: &str) -> bool {
    dir.dir(name).is_ok_and(|e| whole(&e, scope, version, name))
}

/// The subdirectories of `dir` that may hold entries (not the store's own dot names).
fn subdirs(dir: &Dir) -> Vec<String> {
    dir.entries()
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, k)| *k == Kind::Dir && !n.starts_with('.'))
        .map(|(n, _)| n)
        .collect()
}

impl Store for LocalStore {
    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn list_prefix(&self, scope: &str, version: &str, prefix: &str) -> StoreResult<Vec<Meta>> {
        let Some(root) = self.root()? else {
            return Ok(Vec::new());
        };
        let (scope, version, _) = super::layout(scope, version, "");
        Ok(self.metas_in(&root, &scope, version, prefix)?)
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<Meta>> {
        let Some(root) = self.root()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for scope in subdirs(&root) {
            let Ok(sd) = root.dir(&scope) else { continue };
            for version in subdirs(&sd) {
                out.extend(self.metas_in(&root, &scope, &version, prefix)?);
            }
        }
        Ok(out)
    }

    fn open(&self, meta: &Meta) -> StoreResult<Box<dyn Read + Send>> {
        let entry = self.version_dir(meta).and_then(|(_, dir, name)| {
            dir.dir(&name)
                .with_context(|| format!("cannot open {}", dir.shown(&name).display()))
        });
        // Its directory gone since it was found: removed (a prune, an overwrite), not torn.
        let gone = || {
            self.version_dir(meta)
                .map_or(true, |(_, dir, name)| matches!(dir.stat(&name), Ok(None)))
        };
        let entry = match entry {
            Ok(e) => e,
            Err(_) if gone() => {
                return Err(StoreError::NotFound(format!(
                    "the entry {} was removed from the store",
                    meta.key
                )))
            }
            Err(e) => return Err(e.into()),
        };
        match entry.file(ARCHIVE) {
            Ok((f, _)) => Ok(Box::new(f)),
            // Torn by a crash (the store does not fsync): nothing to read, which the restore
            // finds is not what was saved, so the entry is a miss and is removed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Box::new(std::io::empty())),
            Err(e) => Err(anyhow::Error::from(e)
                .context(format!("cannot open {}", entry.shown(ARCHIVE).display()))
                .into()),
        }
    }

    fn create(
        &self,
        scope: &str,
        version: &str,
        key: &str,
    ) -> StoreResult<Option<Box<dyn Upload>>> {
        let (scope, version, name) = super::layout(scope, version, key);
        let root = self.root_made()?;
        let tmp = Self::tmp(&root)?;
        let building = fresh_name();
        let entry = tmp
            .mkdir(&building)
            .with_context(|| format!("cannot create {}", tmp.shown(&building).display()))?;
        let file = entry
            .create_file(ARCHIVE)
            .with_context(|| format!("cannot write in {}", entry.path().display()))?;
        Ok(Some(Box::new(LocalUpload {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            entry,
            building,
            root,
            tmp,
            dest: (scope, version.to_string(), name),
            trash: fresh_name(),
        })))
    }

    fn delete(&self, meta: &Meta) -> StoreResult<()> {
        let (root, dir, name) = self.version_dir(meta)?;
        let (scope, version, _) = place(meta)?;
        // Move aside first so that a reader never sees a half-deleted entry.
        let tmp = Self::tmp(&root)?;
        let trash = fresh_name();
        dir.rename(&name, &tmp, &trash)
            .with_context(|| format!("cannot remove {}", dir.shown(&name).display()))?;
        // A concurrent save may have put another entry there since `meta` was read: only the
        // entry asked for goes (a torn one, whose metadata does not read, goes too).
        let moved = tmp.dir(&trash).ok();
        if let Some(there) = moved.and_then(|e| read_meta_at(&e, &scope, &version, &name)) {
            if there.created_ms != meta.created_ms || there.sha256 != meta.sha256 {
                let _ = tmp.rename(&trash, &dir, &name);
                return Ok(());
            }
        }
        Ok(tmp
            .remove_tree(&trash)
            .with_context(|| format!("cannot remove {}", tmp.shown(&trash).display()))?)
    }

    fn clean_incomplete(&self) {
        let Ok(Some(root)) = self.root() else { return };
        // A save that is still running renews nothing, so only leftovers older than a day go:
        // entries begun in `.tmp/`, packs begun in `.packs/` (their names start with a dot).
        let cutoff = super::now_ms().saturating_sub(86_400_000);
        let old = |d: &Dir, n: &str| {
            d.stat(n)
                .is_ok_and(|st| st.is_some_and(|st| st.modified_ms < cutoff))
        };
        if let Ok(Some(tmp)) = root.subdir(TMP, false) {
            for (n, _) in tmp.entries().unwrap_or_default() {
                if old(&tmp, &n) {
                    let _ = tmp.remove_tree(&n);
                }
            }
        }
        self.packs.clean_begun(&root, cutoff);
        // Entries a crash tore, or that disagree with their place, which no listing shows.
        for scope in subdirs(&root) {
            let Ok(sd) = root.dir(&scope) else { continue };
            for version in subdirs(&sd) {
                let Ok(vd) = sd.dir(&version) else { continue };
                for name in subdirs(&vd) {
                    if whole_in(&vd, &scope, &version, &name) || !old(&vd, &name) {
                        continue;
                    }
                    // Looked at again once moved aside: a save may have replaced it meanwhile,
                    // and a whole entry goes back.
                    let Ok(tmp) = Self::tmp(&root) else { return };
                    let trash = fresh_name();
                    if vd.rename(&name, &tmp, &trash).is_ok() {
                        let now_whole = tmp
                            .dir(&trash)
                            .is_ok_and(|e| whole(&e, &scope, &version, &name));
                        if !now_whole || tmp.rename(&trash, &vd, &name).is_err() {
                            let _ = tmp.remove_tree(&trash);
                        }
                    }
                }
            }
        }
    }

    fn touch(&self, meta: &Meta) {
        if let Ok((_, dir, name)) = self.version_dir(meta) {
            let _ = dir.dir(&name).and_then(|d| d.touch());
        }
    }

    fn packs(&self) -> Option<Arc<dyn crate::chunked::Packs>> {
        Some(self.packs.clone())
    }
}

struct LocalUpload {
    file: Option<BufWriter<File>>,
    /// The entry being built: `building` in `tmp`.
    entry: Dir,
    building: String,
    root: Dir,
    tmp: Dir,
    /// Scope, version and entry names it goes to.
    dest: (String, String, String),
    /// Where an entry it replaces is moved first.
    trash: String,
}

impl Write for LocalUpload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("write after commit").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("write after commit").flush()
    }
}

impl Upload for LocalUpload {
    fn commit(mut self: Box<Self>, meta: &Meta, overwrite: bool) -> StoreResult<Committed> {
        let file = self.file.take().expect("committed twice");
        // No fsync: an entry torn by a crash fails its sha256 check on restore, which makes it
        // a miss and deletes it, so durability is not worth a flush of the whole archive.
        file.into_inner().map_err(|e| e.into_error())?;
        self.entry
            .create_file(META)
            .and_then(|mut f| f.write_all(&serde_json::to_vec_pretty(meta)?))
            .with_context(|| format!("cannot write in {}", self.entry.path().display()))?;
        let (scope, version, name) = &self.dest;
        let dir = self
            .root
            .subdir(scope, true)
            .and_then(|s| s.expect("made").subdir(version, true))
            .map(|v| v.expect("made"))
            .with_context(|| {
                format!(
                    "cannot store the entry in {}: it must be a directory",
                    self.root.shown(scope).join(version).display()
                )
            })?;
        if overwrite {
            // Swap the old entry out, the new one in; the old one is removed afterwards. A
            // racing overwrite may have moved it first: then it is gone all the same.
            match dir.rename(name, &self.tmp, &self.trash) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        match self.tmp.rename(&self.building, &dir, name) {
            Ok(()) => Ok(Committed::Saved),
            Err(_) if dir.stat(name)?.is_some() && !whole_in(&dir, scope, version, name) => {
                Ok(self.replace_torn(&dir)?)
            }
            Err(_) if dir.stat(name)?.is_some() => Ok(Committed::Exists),
            Err(e) => Err(anyhow!(
                "cannot store the entry at {}: {e}",
                dir.shown(name).display()
            )
            .into()),
        }
    }
}

impl LocalUpload {
    /// The key's directory holds a torn entry (or anything else that is not an entry): move it
    /// aside and put this one in its place. What was moved aside is looked at again, since a
    /// concurrent save may have replaced the torn entry meanwhile: a whole entry goes back and
    /// keeps the key.
    fn replace_torn(&self, dir: &Dir) -> Result<Committed> {
        let (scope, version, name) = &self.dest;
        if dir.rename(name, &self.tmp, &self.trash).is_err() {
            return Ok(Committed::Exists);
        }
        let moved = self.tmp.dir(&self.trash);
        if moved.is_ok_and(|e| whole(&e, scope, version, name)) {
            // A concurrent save put a whole entry there meanwhile: it goes back.
            let _ = self.tmp.rename(&self.trash, dir, name);
            return Ok(Committed::Exists);
        }
        let _ = self.tmp.remove_tree(&self.trash);
        match self.tmp.rename(&self.building, dir, name) {
            Ok(()) => Ok(Committed::Saved),
            Err(_) if dir.stat(name)?.is_some() => Ok(Committed::Exists),
            Err(e) => bail!(
                "cannot store the entry at {}: {e}",
                dir.shown(name).display()
            ),
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        self.file.take();
        let _ = self.tmp.remove_tree(&self.building);
        let _ = self.tmp.remove_tree(&self.trash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restore that found an entry corrupt, or a prune, deletes the entry it read; a save
    /// that replaced it meanwhile keeps its own.
    #[test]
    fn delete_removes_only_the_entry_it_was_given() {
        let t = tempfile::tempdir().unwrap();
        let store = LocalStore::new(t.path().to_path_buf());
        let save = |n: u64| {
            let mut u = store.create("sc", "v", "k").unwrap().unwrap();
            u.write_all(b"archive").unwrap();
            let m = Meta {
                created_ms: n,
                sha256: Some(format!("{n:064}")),
                ..Meta::bare("k", "v", "sc")
            };
            assert!(matches!(u.commit(&m, true).unwrap(), Committed::Saved));
            m
        };
        save(1);
        let read = store.list_prefix("sc", "v", "k").unwrap().remove(0);
        let replaced_by = save(2);
        store.delete(&read).unwrap();
        let left = store.list_prefix("sc", "v", "k").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].created_ms, 2);
        store.delete(&replaced_by).unwrap();
        assert!(store.list_prefix("sc", "v", "k").unwrap().is_empty());
    }

    /// A save stopped by a signal takes back the packs it wrote, but not one another save
    /// reused meanwhile, even in the same tick of the kernel's clock.
    #[test]
    fn a_stopped_save_takes_back_only_packs_no_other_save_reused() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (
            LocalStore::new(t.path().to_path_buf()),
            LocalStore::new(t.path().to_path_buf()),
        );
        let (pa, pb) = (a.packs().unwrap(), b.packs().unwrap());
        let (mine, shared) = ("1".repeat(64), "2".repeat(64));
        pa.put(&mine, bytes::Bytes::from_static(b"mine")).unwrap();
        pa.put(&shared, bytes::Bytes::from_static(b"shared"))
            .unwrap();
        pb.put(&shared, bytes::Bytes::from_static(b"shared"))
            .unwrap();
        assert!(pa.withdraw(&mine));
        assert!(!pa.withdraw(&shared));
        let left: Vec<String> = pa.list().unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(left, [shared]);
    }
}
