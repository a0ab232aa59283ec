//! Where an extraction writes, and how.
//!
//! Safe by construction: every create, link, chmod and utimes below an allowed root goes
//! through a directory handle, and every handle below a root was opened with `O_NOFOLLOW`, so
//! nothing is ever written through a symlink, whatever the archive or the disk holds. A
//! symlink (or file) in the way of a directory is moved aside and replaced by the directory,
//! never followed; the root itself may be reached through symlinks the user chose.
//!
//! Every change is journalled: what the extraction made is removed on rollback, and what it
//! replaced was only moved aside (in the same directory), so a rollback puts it back and a
//! commit deletes it.

use super::journal::{move_aside, times, umask, write_error, Change, Fail, Journal, NewFile};
use filetime::FileTime;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Longest name accepted; longer ones are hostile or broken, never a real cache.
const MAX_NAME: usize = 4096;
const MAX_COMPONENT: usize = 255;
/// Directory handles kept open; past this the cache starts over (the fd limit is often 1024).
const OPEN_DIRS: usize = 256;

/// An entry's place: its root, and its path below that root's top directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    root: usize,
    rel: PathBuf,
}

struct Root {
    /// The allowed path, absolute and normalised.
    path: PathBuf,
    /// Its parent (itself for `/`): places are relative to it, and it is opened as the user's
    /// path says, following symlinks.
    top: PathBuf,
    /// How many leading components of a place may be followed if they are symlinks: 1 for the
    /// root itself (a path the user named), 0 for `/`.
    follow: usize,
    handle: Option<Arc<OwnedFd>>,
}

pub struct Tree {
    roots: Vec<Root>,
    base: PathBuf,
    /// Directories by (root, path below its top), interned so the journal stays small.
    ids: Vec<HashMap<PathBuf, u32>>,
    dirs: Vec<(usize, PathBuf)>,
    open: HashMap<u32, Arc<OwnedFd>>,
    journal: Arc<Journal>,
    /// Non-directories this extraction made, by (directory, name): no entry may pass below
    /// one, and hard links may point only at them.
    made: HashSet<(u32, OsString)>,
    /// Directory modes and mtimes, applied at commit (deepest first).
    modes: HashMap<u32, (u32, FileTime)>,
    /// Directories this extraction made: only its own entries are in them.
    fresh: HashSet<u32>,
    /// The process umask, read once.
    umask: u32,
}

impl Tree {
    /// `base` is what archive names are relative to; `roots` are the absolute paths the
    /// extraction may write at or below.
    pub fn new(base: &Path, roots: &[PathBuf]) -> Tree {
        let mut roots: Vec<Root> = roots
            .iter()
            .map(|r| {
                let path = crate::select::normalize(r);
                let (top, follow) = match path.parent() {
                    Some(p) => (p.to_path_buf(), 1),
                    None => (path.clone(), 0),
                };
                Root {
                    path,
                    top,
                    follow,
                    handle: None,
                }
            })
            .collect();
        // The most specific root wins, so every path has exactly one place.
        roots.sort_by_key(|r| std::cmp::Reverse(r.path.components().count()));
        let n = roots.len();
        Tree {
            roots,
            base: crate::select::normalize(base),
            ids: vec![HashMap::new(); n],
            dirs: Vec::new(),
            open: HashMap::new(),
            journal: Arc::new(Journal::default()),
            made: HashSet::new(),
            modes: HashMap::new(),
            fresh: HashSet::new(),
            umask: umask(),
        }
    }

    /// The place of an archive name, or why it is refused.
    pub fn locate(&self, name: &[u8]) -> Result<Place, String> {
        if name.contains(&0) {
            return Err("name contains a NUL byte".into());
        }
        if name.len() > MAX_NAME {
            return Err(format!("name is {} bytes long", name.len()));
        }
        let p = Path::new(OsStr::from_bytes(name));
        if p.is_absolute() {
            return Err("absolute names are refused".into());
        }
        if p.components().any(|c| c.as_os_str().len() > MAX_COMPONENT) {
            return Err("a path component is over 255 bytes".into());
        }
        let dest = crate::select::normalize(&self.base.join(p));
        if dest.components().any(|c| c == Component::ParentDir) {
            return Err("resolves outside the restore's paths".into());
        }
        let root = self
            .roots
            .iter()
            .position(|r| dest.starts_with(&r.path))
            .ok_or("resolves outside the restore's paths")?;
        let rel = dest
            .strip_prefix(&self.roots[root].top)
            .map_err(|_| "resolves outside the restore's paths")?;
        Ok(Place {
            root,
            rel: rel.to_path_buf(),
        })
    }

    /// The umask new files and directories get (read once per extraction).
    pub fn umask(&self) -> u32 {
        self.umask
    }

    /// The path of a place, for messages.
    pub fn shown(&self, place: &Place) -> PathBuf {
        self.roots[place.root].top.join(&place.rel)
    }

    /// A directory at `place`, its mode and mtime set at commit.
    pub fn dir(&mut self, place: &Place, mode: u32, mtime: FileTime) -> Result<(), Fail> {
        let id = self.intern(place.root, &place.rel);
        self.handle(id, true, true)?;
        self.modes.insert(id, (mode, mtime));
        Ok(())
    }

    /// A new regular file at `place`, open for writing (whatever was there is moved aside),
    /// created here and now: for a name an earlier entry used.
    pub fn file(&mut self, place: &Place, mode: u32) -> Result<File, Fail> {
        let (dir, parent, name) = self.parent(place)?;
        self.clear(dir, &parent, &name)?;
        self.plan_file(place)?.create(mode)
    }

    /// Whether an earlier entry of this archive used this name (as a file, a link, or a
    /// directory): such an entry must wait for the writer threads and go in order.
    pub fn reuses(&self, place: &Place) -> bool {
        let ids = &self.ids[place.root];
        ids.contains_key(&place.rel)
            || split(&place.rel).is_some_and(|(d, n)| {
                ids.get(d)
                    .is_some_and(|id| self.made.contains(&(*id, n.to_os_string())))
            })
    }

    /// A file at a name no earlier entry used, to be created by [`NewFile::create`] on any
    /// thread (the parent directory is made here, in order).
    pub fn plan_file(&mut self, place: &Place) -> Result<NewFile, Fail> {
        let (dir, parent, name) = self.parent(place)?;
        self.made.insert((dir, name.clone()));
        Ok(NewFile {
            parent,
            dir,
            name,
            journal: self.journal.clone(),
            shown: self.shown(place),
        })
    }

    /// A symlink at `place` pointing at `target`, exactly as stored.
    /// A symlink at `place` with the archive's mtime (set on the link, never through it).
    pub fn symlink(&mut self, place: &Place, target: &[u8], mtime: FileTime) -> Result<(), Fail> {
        if target.is_empty() || target.contains(&0) {
            return Err(Fail::Refuse(
                "link target is empty or contains a NUL byte".into(),
            ));
        }
        let (dir, parent, name) = self.parent(place)?;
        let target = OsStr::from_bytes(target);
        self.retry(dir, &parent, &name, place, |p, n| {
            rfs::symlinkat(target, p, n)
        })?;
        let _ = rfs::utimensat(&*parent, &name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW);
        self.note_made(dir, name, false);
        Ok(())
    }

    /// A second name at `place` for the file this extraction made at `target`.
    pub fn hard_link(&mut self, place: &Place, target: &Place) -> Result<(), Fail> {
        if place == target {
            return Err(Fail::Refuse("hard link to itself".into()));
        }
        let not_ours = || {
            Fail::Refuse(
                "hard link target is not a file this archive wrote inside the restore's paths"
                    .into(),
            )
        };
        let (tdir_path, tname) = split(&target.rel).ok_or_else(not_ours)?;
        let tdir = *self
            .ids
            .get(target.root)
            .and_then(|ids| ids.get(tdir_path))
            .ok_or_else(not_ours)?;
        if !self.made.contains(&(tdir, tname.to_os_string())) {
            return Err(not_ours());
        }
        let tparent = self.handle(tdir, false, false)?;
        match rfs::statat(&*tparent, tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile => {}
            _ => return Err(not_ours()),
        }
        let (dir, parent, name) = self.parent(place)?;
        let tname = tname.to_os_string();
        self.retry(dir, &parent, &name, place, |p, n| {
            rfs::linkat(&*tparent, &tname, p, n, AtFlags::empty())
        })?;
        self.note_made(dir, name, false);
        Ok(())
    }

    /// Keep what was written: directory modes and mtimes are applied (deepest first) and what
    /// was moved aside is deleted. Returns what could not be done, for a warning.
    pub fn commit(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        // What was moved aside goes first: a directory's final mode may make it read-only.
        let changes = self.journal.take();
        for change in changes {
            if let Change::Aside { dir, aside, .. } = change {
                if let Err(e) = self.remove(dir, &aside) {
                    problems.push(format!("cannot remove {}: {e}", self.path_of(dir, &aside)));
                }
            }
        }
        // Children before parents, siblings together: parent handles stay cached.
        let mut modes: Vec<(u32, (u32, FileTime))> = self.modes.drain().collect();
        modes.sort_by(|a, b| self.dirs[b.0 as usize].cmp(&self.dirs[a.0 as usize]));
        for (id, (mode, mtime)) in modes {
            if let Err(e) = self.set_dir_stat(id, mode, mtime) {
                problems.push(e);
            }
        }
        problems
    }

    /// A directory's mode and mtime. A directory this extraction made already has the usual
    /// mode, so most need only their times, set through the parent (no handle of their own).
    fn set_dir_stat(&mut self, id: u32, mode: u32, mtime: FileTime) -> Result<(), String> {
        let (root, rel) = self.dirs[id as usize].clone();
        let top = self.roots[root].top.clone();
        let shown = || top.join(&rel).display().to_string();
        // `mkdir` gave it 0o777 less the umask.
        if mode & 0o7777 == 0o777 & !self.umask && self.fresh.contains(&id) {
            if let Some((prel, name)) = split(&rel) {
                let pid = self.intern(root, prel);
                let Ok(parent) = self.handle(pid, false, false) else {
                    return Ok(()); // replaced by a later entry
                };
                return rfs::utimensat(&*parent, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| format!("cannot set the time of {}: {e}", shown()));
            }
        }
        let Ok(fd) = self.handle(id, false, false) else {
            return Ok(()); // replaced by a later entry
        };
        // A directory the user owns but kura does not may refuse a chmod: its mode stays.
        let _ = rfs::fchmod(&*fd, Mode::from_raw_mode(mode & 0o7777));
        let _ = rfs::futimens(&*fd, &times(mtime));
        Ok(())
    }

    /// Undo the extraction, newest change first: what it made is removed, what it moved aside
    /// is put back.
    pub fn rollback(mut self) {
        self.undo();
    }

    fn undo(&mut self) {
        let mut changes = self.journal.take();
        while let Some(change) = changes.pop() {
            match change {
                Change::Made { dir, name, is_dir } => {
                    if is_dir {
                        self.forget(dir, &name);
                    }
                    if let Ok(p) = self.handle(dir, false, false) {
                        let flags = if is_dir {
                            AtFlags::REMOVEDIR
                        } else {
                            AtFlags::empty()
                        };
                        let _ = rfs::unlinkat(&*p, &name, flags);
                    }
                }
                Change::Aside { dir, name, aside } => {
                    if let Ok(p) = self.handle(dir, false, false) {
                        let _ = rfs::renameat_with(&*p, &aside, &*p, &name, RenameFlags::NOREPLACE);
                    }
                }
                Change::Ancestor(path) => {
                    let _ = std::fs::remove_dir(path);
                }
            }
        }
    }

    fn intern(&mut self, root: usize, rel: &Path) -> u32 {
        if let Some(id) = self.ids[root].get(rel) {
            return *id;
        }
        let id = self.dirs.len() as u32;
        self.dirs.push((root, rel.to_path_buf()));
        self.ids[root].insert(rel.to_path_buf(), id);
        id
    }

    fn path_of(&self, dir: u32, name: &OsStr) -> String {
        let (root, rel) = &self.dirs[dir as usize];
        self.roots[*root]
            .top
            .join(rel)
            .join(name)
            .display()
            .to_string()
    }

    /// The handle of the directory a place is in, that directory's id, and the place's name.
    fn parent(&mut self, place: &Place) -> Result<(u32, Arc<OwnedFd>, OsString), Fail> {
        let (dir, name) =
            split(&place.rel).ok_or_else(|| Fail::Refuse("only a directory can go here".into()))?;
        let name = name.to_os_string();
        let id = self.intern(place.root, dir);
        Ok((id, self.handle(id, true, false)?, name))
    }

    /// Run `op` (a create of `name` in `parent`); if something is in the way, move it aside
    /// and try once more.
    fn retry<T>(
        &mut self,
        dir: u32,
        parent: &Arc<OwnedFd>,
        name: &OsStr,
        place: &Place,
        op: impl Fn(&OwnedFd, &OsStr) -> rustix::io::Result<T>,
    ) -> Result<T, Fail> {
        match op(parent, name) {
            Err(Errno::EXIST) => {
                self.clear(dir, parent, name)?;
                op(parent, name)
            }
            other => other,
        }
        .map_err(|e| Fail::Io(write_error(&self.shown(place), e.into())))
    }

    fn note_made(&mut self, dir: u32, name: OsString, is_dir: bool) {
        if !is_dir {
            self.made.insert((dir, name.clone()));
        }
        self.journal.push(Change::Made { dir, name, is_dir });
    }

    /// The handle of directory `id`, made (and what is in its way moved aside) when `create`.
    /// `last_is_entry`: the directory itself is an archive entry, so it may replace a
    /// non-directory this extraction made (the last entry of a name wins).
    fn handle(&mut self, id: u32, create: bool, last_is_entry: bool) -> Result<Arc<OwnedFd>, Fail> {
        if let Some(fd) = self.open.get(&id) {
            return Ok(fd.clone());
        }
        let (root, rel) = self.dirs[id as usize].clone();
        let fd = match split(&rel) {
            None => return self.top(root, create),
            Some((parent_rel, name)) => {
                let pid = self.intern(root, parent_rel);
                let parent = self.handle(pid, create, false)?;
                let follow = rel.components().count() <= self.roots[root].follow;
                let (fd, made) = self
                    .open_dir(pid, &parent, name, follow, create, last_is_entry)
                    .map_err(|f| match f {
                        Fail::Io(e) => {
                            let path = self.roots[root].top.join(&rel);
                            if denied(&e) {
                                let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
                                return Fail::Io(write_error(&path, io));
                            }
                            Fail::Io(e.context(format!("cannot open directory {}", path.display())))
                        }
                        refuse => refuse,
                    })?;
                if made {
                    self.fresh.insert(id);
                }
                fd
            }
        };
        let fd = Arc::new(fd);
        if self.open.len() >= OPEN_DIRS {
            self.open.clear();
        }
        self.open.insert(id, fd.clone());
        Ok(fd)
    }

    /// The root's top directory, through the user's path (created when missing).
    fn top(&mut self, root: usize, create: bool) -> Result<Arc<OwnedFd>, Fail> {
        if let Some(h) = &self.roots[root].handle {
            return Ok(h.clone());
        }
        let top = self.roots[root].top.clone();
        if create && !top.is_dir() {
            let mut missing = Vec::new();
            let mut p = top.as_path();
            while std::fs::symlink_metadata(p).is_err() {
                missing.push(p.to_path_buf());
                match p.parent() {
                    Some(q) => p = q,
                    None => break,
                }
            }
            std::fs::create_dir_all(&top).map_err(|e| Fail::Io(write_error(&top, e)))?;
            for m in missing.into_iter().rev() {
                self.journal.push(Change::Ancestor(m));
            }
        }
        let fd = rfs::open(
            &top,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Fail::Io(write_error(&top, e.into())))?;
        let fd = Arc::new(fd);
        self.roots[root].handle = Some(fd.clone());
        Ok(fd)
    }

    /// Open (and with `create`, make) directory `name` in `parent`; says whether it made it.
    fn open_dir(
        &mut self,
        pid: u32,
        parent: &Arc<OwnedFd>,
        name: &OsStr,
        follow: bool,
        create: bool,
        last_is_entry: bool,
    ) -> Result<(OwnedFd, bool), Fail> {
        let ours = self.made.contains(&(pid, name.to_os_string()));
        if ours && !last_is_entry {
            // Made by this archive (perhaps still being written by a writer thread).
            return Err(Fail::Refuse(format!(
                "lies below {}, which this archive made a file or symlink",
                self.path_of(pid, name)
            )));
        }
        let io = |e: Errno| Fail::Io(std::io::Error::from(e).into());
        let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        // Only a link the user had is followed: one this archive made never is.
        if !follow || ours {
            flags |= OFlags::NOFOLLOW;
        }
        // In a directory this extraction made, nothing but its own entries can be in the way:
        // make first, and look only if the name is taken.
        let make_first = create && !ours && self.fresh.contains(&pid);
        let made_now = make_first && self.make_dir(pid, parent, name)?;
        if !made_now {
            match rfs::openat(&**parent, name, flags, Mode::empty()) {
                Ok(fd) => return Ok((fd, false)),
                Err(e) if !create => return Err(io(e)),
                // Nothing there (a dangling link the user had is not "nothing": it is moved).
                Err(Errno::NOENT) if !follow => {}
                Err(e) => match rfs::statat(&**parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Err(Errno::NOENT) => {}
                    Ok(st)
                        if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory =>
                    {
                        return Err(io(e));
                    }
                    Ok(_) => self.clear(pid, parent, name)?,
                    Err(e) => return Err(io(e)),
                },
            }
        }
        let made = made_now || self.make_dir(pid, parent, name)?;
        self.made.remove(&(pid, name.to_os_string()));
        let fd =
            rfs::openat(&**parent, name, flags | OFlags::NOFOLLOW, Mode::empty()).map_err(io)?;
        Ok((fd, made))
    }

    /// `mkdirat`, journalled; false when the name is taken.
    fn make_dir(&mut self, pid: u32, parent: &OwnedFd, name: &OsStr) -> Result<bool, Fail> {
        match rfs::mkdirat(parent, name, Mode::from_raw_mode(0o777)) {
            Ok(()) => {
                self.note_made(pid, name.to_os_string(), true);
                Ok(true)
            }
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(Fail::Io(std::io::Error::from(e).into())),
        }
    }

    /// Move whatever is at `name` aside (a non-empty directory is refused, never removed).
    fn clear(&mut self, dir: u32, parent: &Arc<OwnedFd>, name: &OsStr) -> Result<(), Fail> {
        let shown = self.path_of(dir, name);
        move_aside(&self.journal, dir, parent, name, &shown)?;
        self.forget(dir, name);
        Ok(())
    }

    /// `name` in `dir` is gone (moved aside or removed): drop the cached handles, pending
    /// modes and freshness of it and everything below it.
    fn forget(&mut self, dir: u32, name: &OsStr) {
        let (root, rel) = &self.dirs[dir as usize];
        let (root, rel) = (*root, rel.join(name));
        let dirs = &self.dirs;
        let gone = |id: &u32| {
            let (r, p) = &dirs[*id as usize];
            *r == root && p.starts_with(&rel)
        };
        self.open.retain(|id, _| !gone(id));
        self.modes.retain(|id, _| !gone(id));
        self.fresh.retain(|id| !gone(id));
    }

    fn remove(&mut self, dir: u32, name: &OsStr) -> std::io::Result<()> {
        let p = self.handle(dir, false, false).map_err(|f| match f {
            Fail::Io(e) => std::io::Error::other(format!("{e:#}")),
            Fail::Refuse(r) => std::io::Error::other(r),
        })?;
        match rfs::unlinkat(&*p, name, AtFlags::empty()) {
            Err(Errno::ISDIR) | Err(Errno::PERM) => {
                rfs::unlinkat(&*p, name, AtFlags::REMOVEDIR).map_err(Into::into)
            }
            other => other.map_err(Into::into),
        }
    }
}

impl Drop for Tree {
    /// A tree neither committed nor rolled back (an error on the way out) is rolled back.
    fn drop(&mut self) {
        self.undo();
    }
}

/// A refusal by permissions anywhere in the error's chain.
fn denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
            || c.downcast_ref::<rustix::io::Errno>()
                .is_some_and(|n| *n == rustix::io::Errno::ACCESS || *n == rustix::io::Errno::PERM)
    })
}

/// A path's parent and last component; `None` for the empty path.
fn split(rel: &Path) -> Option<(&Path, &OsStr)> {
    Some((rel.parent()?, rel.file_name()?))
}
