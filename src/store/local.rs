//! The local directory store: the embedded default, and what self-hosted runners share.
//!
//! Layout: `<root>/<scope>/<version>/<encoded key>/{archive,meta.json}`. An entry is built in
//! `<root>/.tmp/` and renamed into place, so it appears whole or not at all; renaming a
//! directory onto an existing non-empty one fails, which makes the first of two concurrent
//! saves of one key the only one. The entry directory's mtime records when it was last used.

use super::{entry_name, name_prefix, now_ms, scope_dir, Committed, Meta, Store, Upload};
use crate::chunked::{valid_pack_name, PackInfo, Packs, NOTE};
use anyhow::{bail, Context as _, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const ARCHIVE: &str = "archive";
const META: &str = "meta.json";

pub struct LocalStore {
    root: PathBuf,
    packs: Arc<LocalPacks>,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> LocalStore {
        let packs = Arc::new(LocalPacks {
            dir: root.join(".packs"),
        });
        LocalStore { root, packs }
    }

    fn scope_dir(&self, scope: &str) -> PathBuf {
        self.root.join(scope_dir(scope))
    }

    fn entry_dir(&self, scope: &str, version: &str, key: &str) -> PathBuf {
        self.scope_dir(scope).join(version).join(entry_name(key))
    }

    fn tmp_dir(&self) -> Result<PathBuf> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = self.root.join(".tmp");
        fs::create_dir_all(&tmp).with_context(|| {
            format!("cannot create the store directory {}; pass --store file:///DIR with a directory you can write", tmp.display())
        })?;
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            now_ms(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Ok(tmp.join(name))
    }

    fn read_meta(&self, dir: &Path) -> Option<Meta> {
        let mut m: Meta = serde_json::from_slice(&fs::read(dir.join(META)).ok()?).ok()?;
        m.used_ms = fs::metadata(dir)
            .and_then(|md| md.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .unwrap_or(m.created_ms);
        Some(m)
    }

    fn metas_in(&self, version_dir: &Path, prefix: &str) -> Result<Vec<Meta>> {
        let start = name_prefix(prefix);
        let mut out = Vec::new();
        let rd = match fs::read_dir(version_dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot list {}", version_dir.display()))
            }
        };
        for ent in rd {
            let ent = ent?;
            let name = ent.file_name().to_string_lossy().into_owned();
            // A cheap filter on the name; the key in the metadata decides.
            if !name.starts_with(&start) {
                continue;
            }
            if let Some(m) = self.read_meta(&ent.path()) {
                if m.key.starts_with(prefix) {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }
}

fn dirs(p: &Path) -> Vec<PathBuf> {
    fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

impl Store for LocalStore {
    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn list_prefix(&self, scope: &str, version: &str, prefix: &str) -> Result<Vec<Meta>> {
        self.metas_in(&self.scope_dir(scope).join(version), prefix)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Meta>> {
        let mut out = Vec::new();
        for scope in dirs(&self.root) {
            for version in dirs(&scope) {
                out.extend(self.metas_in(&version, prefix)?);
            }
        }
        Ok(out)
    }

    fn open(&self, meta: &Meta) -> Result<Box<dyn Read + Send>> {
        let p = self
            .entry_dir(&meta.scope, &meta.version, &meta.key)
            .join(ARCHIVE);
        match File::open(&p) {
            Ok(f) => Ok(Box::new(f)),
            // Torn by a crash (the store does not fsync): nothing to read, which the restore
            // finds is not what was saved, so the entry is a miss and is removed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Box::new(std::io::empty())),
            Err(e) => Err(e).with_context(|| format!("cannot open {}", p.display())),
        }
    }

    fn create(&self, scope: &str, version: &str, key: &str) -> Result<Option<Box<dyn Upload>>> {
        let tmp = self.tmp_dir()?;
        fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let file = File::create(tmp.join(ARCHIVE))
            .with_context(|| format!("cannot write in {}", tmp.display()))?;
        Ok(Some(Box::new(LocalUpload {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            dest: self.entry_dir(scope, version, key),
            trash: self.tmp_dir()?,
        })))
    }

    fn delete(&self, meta: &Meta) -> Result<()> {
        let dir = self.entry_dir(&meta.scope, &meta.version, &meta.key);
        // Move aside first so that a reader never sees a half-deleted entry.
        let trash = self.tmp_dir()?;
        fs::rename(&dir, &trash).with_context(|| format!("cannot remove {}", dir.display()))?;
        // A concurrent save may have put another entry there since `meta` was read: only the
        // entry asked for goes (a torn one, whose metadata does not read, goes too).
        if let Some(there) = self.read_meta(&trash) {
            if there.created_ms != meta.created_ms || there.sha256 != meta.sha256 {
                let _ = fs::rename(&trash, &dir);
                return Ok(());
            }
        }
        fs::remove_dir_all(&trash).with_context(|| format!("cannot remove {}", trash.display()))
    }

    fn clean_incomplete(&self) {
        // A save that is still running renews nothing, so only leftovers older than a day go:
        // entries begun in `.tmp/`, packs begun in `.packs/` (their names start with a dot).
        let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(86400);
        let begun = |e: &fs::DirEntry| e.file_name().to_string_lossy().starts_with('.');
        let tmp = fs::read_dir(self.root.join(".tmp"))
            .into_iter()
            .flatten()
            .flatten();
        let packs = fs::read_dir(&self.packs.dir)
            .into_iter()
            .flatten()
            .flatten();
        let old = |p: &Path| {
            fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff)
        };
        for e in tmp.chain(packs.filter(begun)) {
            if old(&e.path()) {
                let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
            }
        }
        // Entries a crash tore, which no listing shows.
        for scope in dirs(&self.root) {
            for version in dirs(&scope) {
                for entry in dirs(&version) {
                    if whole(&entry) || !old(&entry) {
                        continue;
                    }
                    // Looked at again once moved aside: a save may have replaced it meanwhile.
                    let Ok(trash) = self.tmp_dir() else { continue };
                    if fs::rename(&entry, &trash).is_ok() {
                        if whole(&trash) {
                            let _ = fs::rename(&trash, &entry);
                        } else {
                            let _ = fs::remove_dir_all(&trash);
                        }
                    }
                }
            }
        }
    }

    fn touch(&self, meta: &Meta) {
        let dir = self.entry_dir(&meta.scope, &meta.version, &meta.key);
        let _ = filetime::set_file_mtime(dir, filetime::FileTime::now());
    }

    fn packs(&self) -> Option<Arc<dyn Packs>> {
        Some(self.packs.clone())
    }
}

/// Packs of chunked entries: `<root>/.packs/<name>`, written aside and renamed into place.
struct LocalPacks {
    dir: PathBuf,
}

impl LocalPacks {
    /// Write `name` whole or not at all, synced: a pack is kept for a long time.
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        super::write_aside(&path, data, true)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Packs for LocalPacks {
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        if self.dir.join(name).exists() {
            return Ok(());
        }
        self.write(name, data)
    }

    fn read_note(&self) -> Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(NOTE)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("cannot read prune's note"),
        }
    }

    fn write_note(&self, data: &[u8]) -> Result<()> {
        self.write(NOTE, data)
    }

    fn get(&self, name: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        use std::io::{Seek, SeekFrom};
        let path = self.dir.join(name);
        let mut f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        f.seek(SeekFrom::Start(range.start))?;
        let mut out = Vec::new();
        f.take(range.end - range.start).read_to_end(&mut out)?;
        Ok(out)
    }

    fn list(&self) -> Result<Vec<PackInfo>> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", self.dir.display())),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(md) = e.metadata() else { continue };
            if !valid_pack_name(&name) {
                continue;
            }
            let modified_ms = md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            out.push(PackInfo {
                name,
                size: md.len(),
                modified_ms,
            });
        }
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        }
    }
}

struct LocalUpload {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    trash: PathBuf,
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
    fn commit(mut self: Box<Self>, meta: &Meta, overwrite: bool) -> Result<Committed> {
        let file = self.file.take().expect("committed twice");
        // No fsync: an entry torn by a crash fails its sha256 check on restore, which makes it
        // a miss and deletes it, so durability is not worth a flush of the whole archive.
        file.into_inner().map_err(|e| e.into_error())?;
        fs::write(self.tmp.join(META), serde_json::to_vec_pretty(meta)?)?;
        let parent = self.dest.parent().expect("entry has a parent");
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        if overwrite && self.dest.exists() {
            // Swap the old entry out, the new one in; the old one is removed afterwards.
            fs::rename(&self.dest, &self.trash)?;
        }
        match fs::rename(&self.tmp, &self.dest) {
            Ok(()) => Ok(Committed::Saved),
            Err(_) if self.dest.exists() && !whole(&self.dest) => self.replace_torn(),
            Err(_) if self.dest.exists() => Ok(Committed::Exists),
            Err(e) => bail!("cannot store the entry at {}: {e}", self.dest.display()),
        }
    }
}

/// Whether an entry directory holds an entry: metadata that reads, and its archive. A crash
/// can leave one torn (the store does not fsync), which must not hold the key for good.
fn whole(dir: &Path) -> bool {
    fs::read(dir.join(META))
        .ok()
        .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
        .is_some()
        && dir.join(ARCHIVE).is_file()
}

impl LocalUpload {
    /// The key's directory holds a torn entry: move it aside and put this one in its place.
    /// What was moved aside is looked at again, since a concurrent save may have replaced
    /// the torn entry meanwhile: a whole entry goes back and keeps the key.
    fn replace_torn(&self) -> Result<Committed> {
        if fs::rename(&self.dest, &self.trash).is_err() {
            return Ok(Committed::Exists);
        }
        if whole(&self.trash) {
            let _ = fs::rename(&self.trash, &self.dest);
            return Ok(Committed::Exists);
        }
        let _ = fs::remove_dir_all(&self.trash);
        match fs::rename(&self.tmp, &self.dest) {
            Ok(()) => Ok(Committed::Saved),
            Err(_) if self.dest.exists() => Ok(Committed::Exists),
            Err(e) => bail!("cannot store the entry at {}: {e}", self.dest.display()),
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        self.file.take();
        let _ = fs::remove_dir_all(&self.tmp);
        let _ = fs::remove_dir_all(&self.trash);
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
        let read = save(1);
        let replaced_by = save(2);
        store.delete(&read).unwrap();
        let left = store.list_prefix("sc", "v", "k").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].created_ms, 2);
        store.delete(&replaced_by).unwrap();
        assert!(store.list_prefix("sc", "v", "k").unwrap().is_empty());
    }
}
