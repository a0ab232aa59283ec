//! Packs of chunked entries in the local store: `<root>/.packs/<name>`, written aside and
//! renamed into place, read and listed through no-follow handles (a `.packs` replaced by a
//! symlink holds no packs, and prune removes nothing through it).

use crate::chunked::{valid_pack_name, PackInfo, Packs, NOTE, NOTE_CAP};
use crate::nofollow::{Dir, Kind};
use crate::store::{StoreError, StoreResult};
use anyhow::{anyhow, Context as _, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

const PACKS: &str = ".packs";

pub(super) struct LocalPacks {
    root: PathBuf,
    /// The packs this process created, as it left them (inode and times): withdrawn after a
    /// stopped save only while no one has written or touched them since.
    made: std::sync::Mutex<std::collections::HashMap<String, (u64, i128, i128)>>,
}

impl LocalPacks {
    pub(super) fn new(root: PathBuf) -> LocalPacks {
        LocalPacks {
            root,
            made: Default::default(),
        }
    }

    /// `.packs`, made first with `create`; None where it is missing.
    fn dir(&self, create: bool) -> Result<Option<Dir>> {
        let root = if create {
            Dir::create(&self.root)
        } else {
            match Dir::open(&self.root) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                other => other,
            }
        }
        .with_context(|| format!("cannot open {}", self.root.display()))?;
        root.subdir(PACKS, create)
            .with_context(|| format!("cannot use {}", root.shown(PACKS).display()))
    }

    fn made(&self) -> Result<Dir> {
        self.dir(true)?
            .ok_or_else(|| anyhow!("cannot create {}", self.root.join(PACKS).display()))
    }

    /// Write `name` whole or not at all, synced: a pack is kept for a long time.
    fn write(&self, dir: &Dir, name: &str, data: &[u8]) -> Result<()> {
        dir.write_aside(name, data, true)
            .with_context(|| format!("cannot write {}", dir.shown(name).display()))
    }

    /// Remove packs begun (dot names) before `cutoff_ms` by saves that never finished.
    pub(super) fn clean_begun(&self, root: &Dir, cutoff_ms: u64) {
        let Ok(Some(dir)) = root.subdir(PACKS, false) else {
            return;
        };
        for (n, _) in dir.entries().unwrap_or_default() {
            let old = dir
                .stat(&n)
                .is_ok_and(|st| st.is_some_and(|st| st.modified_ms < cutoff_ms));
            if n.starts_with('.') && old {
                let _ = dir.remove_tree(&n);
            }
        }
    }
}

impl Packs for LocalPacks {
    fn put(&self, name: &str, data: bytes::Bytes) -> StoreResult<()> {
        let dir = self.made()?;
        if dir.stat(name)?.is_some_and(|st| st.kind == Kind::File) {
            // Reused: its time is renewed, so that a prune which found it unreferenced a day
            // ago does not delete it under the entry about to reference it.
            return Ok(dir
                .touch_name(name)
                .with_context(|| format!("cannot renew {}", dir.shown(name).display()))?);
        }
        self.write(&dir, name, &data)?;
        if let Ok(Some(st)) = dir.stat(name) {
            self.made
                .lock()
                .unwrap()
                .insert(name.to_string(), st.identity);
        }
        Ok(())
    }

    fn read_note(&self) -> StoreResult<Option<Vec<u8>>> {
        let Some(dir) = self.dir(false)? else {
            return Ok(None);
        };
        match dir.read(NOTE, NOTE_CAP) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::from(e)
                .context("cannot read prune's note")
                .into()),
        }
    }

    fn write_note(&self, data: &[u8]) -> StoreResult<()> {
        let dir = self.made()?;
        Ok(self.write(&dir, NOTE, data)?)
    }

    fn get(&self, name: &str, range: std::ops::Range<u64>) -> StoreResult<Vec<u8>> {
        let gone = |what: &std::path::Path| {
            StoreError::NotFound(format!(
                "pack {name} is gone ({} is not there)",
                what.display()
            ))
        };
        let Some(dir) = self.dir(false)? else {
            return Err(gone(&self.root.join(PACKS)));
        };
        let (mut f, size) = match dir.file(name) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(gone(&dir.shown(name)))
            }
            Err(e) => {
                return Err(anyhow::Error::from(e)
                    .context(format!("cannot open {}", dir.shown(name).display()))
                    .into())
            }
        };
        // A range past the end reads short, which the restore finds is not what its entry
        // says (damage); nothing is allocated beyond what the file holds.
        let (start, end) = (
            range.start.min(size),
            range.end.min(size).max(range.start.min(size)),
        );
        f.seek(SeekFrom::Start(start))?;
        let mut out = Vec::with_capacity((end - start) as usize);
        f.take(end - start).read_to_end(&mut out)?;
        Ok(out)
    }

    fn list(&self) -> StoreResult<Vec<PackInfo>> {
        let Some(dir) = self.dir(false)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (name, kind) in dir.entries()? {
            if kind != Kind::File || !valid_pack_name(&name) {
                continue;
            }
            let Ok(Some(st)) = dir.stat(&name) else {
                continue;
            };
            out.push(PackInfo {
                name,
                size: st.size,
                modified_ms: st.modified_ms,
            });
        }
        Ok(out)
    }

    fn withdraw(&self, name: &str) -> bool {
        let Some(left) = self.made.lock().unwrap().remove(name) else {
            return false;
        };
        let Ok(Some(dir)) = self.dir(false) else {
            return false;
        };
        // Renamed over or touched by another save since (it reuses the pack): it stays.
        match dir.stat(name) {
            Ok(Some(st)) if st.identity == left => dir.remove_file(name).is_ok(),
            _ => false,
        }
    }

    fn delete(&self, name: &str) -> StoreResult<()> {
        let Some(dir) = self.dir(false)? else {
            return Ok(());
        };
        Ok(dir
            .remove_file(name)
            .with_context(|| format!("cannot remove {}", dir.shown(name).display()))?)
    }
}
