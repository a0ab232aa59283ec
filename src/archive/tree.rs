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

use anyhow::anyhow;
use filetime::FileTime;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps};
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

/// Why an entry was not written.
#[derive(Debug)]
pub enum Fail {
    /// The entry is refused and listed; the extraction goes on.
    Refuse(String),
    /// Writing failed (permissions, a full disk): the extraction stops and is rolled back.
    Io(anyhow::Error),
}

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

/// The changes of one extraction, shared with the writer threads that create files.
#[derive(Default)]
pub struct Journal {
    changes: std::sync::Mutex<Vec<Change>>,
    asides: std::sync::atomic::AtomicU64,
}

impl Journal {
    fn push(&self, c: Change) {
        self.changes.lock().unwrap().push(c);
    }
}

enum Change {
    Made {
        dir: u32,
        name: OsString,
        is_dir: bool,
    },
    Aside {
        dir: u32,
        name: OsString,
        aside: OsString,
    },
    /// A directory above a root that did not exist (created through the user's path).
    Ancestor(PathBuf),
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

    /// A new regular file at `place`, open for writing (whatever was there is moved aside).
    pub fn file(&mut self, place: &Place, mode: u32) -> Result<File, Fail> {
        let (dir, parent, name) = self.parent(place)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = self.retry(dir, &parent, &name, place, |p, n| {
            rfs::openat(
                p,
                n,
                flags | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode & 0o7777),
            )
        })?;
        self.note_made(dir, name, false);
        Ok(File::from(fd))
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
    pub fn symlink(&mut self, place: &Place, target: &[u8]) -> Result<(), Fail> {
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
        let changes = std::mem::take(&mut *self.journal.changes.lock().unwrap());
        for change in changes {
            if let Change::Aside { dir, aside, .. } = change {
                if let Err(e) = self.remove(dir, &aside) {
                    problems.push(format!("cannot remove {}: {e}", self.path_of(dir, &aside)));
                }
            }
        }
        let mut modes: Vec<(u32, (u32, FileTime))> = self.modes.drain().collect();
        modes.sort_by_key(|(id, _)| std::cmp::Reverse(self.dirs[*id as usize].1.as_os_str().len()));
        for (id, (mode, mtime)) in modes {
            let Ok(fd) = self.handle(id, false, false) else {
                continue; // replaced by a later entry
            };
            let _ = rfs::fchmod(&*fd, Mode::from_raw_mode(mode & 0o7777));
            let _ = rfs::futimens(&*fd, &times(mtime));
        }
        problems
    }

    /// Undo the extraction, newest change first: what it made is removed, what it moved aside
    /// is put back.
    pub fn rollback(mut self) {
        self.undo();
    }

    fn undo(&mut self) {
        let mut changes = std::mem::take(&mut *self.journal.changes.lock().unwrap());
        while let Some(change) = changes.pop() {
            match change {
                Change::Made { dir, name, is_dir } => {
                    if is_dir {
                        let rel = self.dirs[dir as usize].1.join(&name);
                        self.forget_below(self.dirs[dir as usize].0, &rel);
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
                self.open_dir(pid, &parent, name, follow, create, last_is_entry)
                    .map_err(|f| match f {
                        Fail::Io(e) => Fail::Io(e.context(format!(
                            "cannot open directory {}",
                            self.roots[root].top.join(&rel).display()
                        ))),
                        refuse => refuse,
                    })?
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

    fn open_dir(
        &mut self,
        pid: u32,
        parent: &Arc<OwnedFd>,
        name: &OsStr,
        follow: bool,
        create: bool,
        last_is_entry: bool,
    ) -> Result<OwnedFd, Fail> {
        let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        // Only a link the user had is followed: one this archive made never is.
        if !follow || self.made.contains(&(pid, name.to_os_string())) {
            flags |= OFlags::NOFOLLOW;
        }
        if !last_is_entry && self.made.contains(&(pid, name.to_os_string())) {
            // Made by this archive (perhaps still being written by a writer thread).
            return Err(Fail::Refuse(format!(
                "lies below {}, which this archive made a file or symlink",
                self.path_of(pid, name)
            )));
        }
        let open = || rfs::openat(&**parent, name, flags, Mode::empty());
        let err = match open() {
            Ok(fd) => return Ok(fd),
            Err(e) => e,
        };
        if !create {
            return Err(Fail::Io(std::io::Error::from(err).into()));
        }
        match rfs::statat(&**parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => {}
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory => {
                return Err(Fail::Io(std::io::Error::from(err).into()));
            }
            Ok(st) => {
                let kind = if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink {
                    "a symlink"
                } else {
                    "a file"
                };
                if !last_is_entry && self.made.contains(&(pid, name.to_os_string())) {
                    return Err(Fail::Refuse(format!(
                        "lies below {}, which this archive made {kind}",
                        self.path_of(pid, name)
                    )));
                }
                self.clear(pid, parent, name)?;
            }
            Err(e) => return Err(Fail::Io(std::io::Error::from(e).into())),
        }
        match rfs::mkdirat(&**parent, name, Mode::from_raw_mode(0o777)) {
            Ok(()) => self.note_made(pid, name.to_os_string(), true),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(Fail::Io(std::io::Error::from(e).into())),
        }
        self.made.remove(&(pid, name.to_os_string()));
        rfs::openat(&**parent, name, flags | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| Fail::Io(std::io::Error::from(e).into()))
    }

    /// Move whatever is at `name` aside (a non-empty directory is refused, never removed).
    fn clear(&mut self, dir: u32, parent: &Arc<OwnedFd>, name: &OsStr) -> Result<(), Fail> {
        let st = match rfs::statat(&**parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Fail::Io(std::io::Error::from(e).into())),
        };
        if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
            if !is_empty_dir(parent, name) {
                return Err(Fail::Refuse(format!(
                    "{} is a non-empty directory in the way; it was left as it is",
                    self.path_of(dir, name)
                )));
            }
            let rel = self.dirs[dir as usize].1.join(name);
            self.forget_below(self.dirs[dir as usize].0, &rel);
        }
        let shown = self.path_of(dir, name);
        move_aside(&self.journal, dir, parent, name, &shown)
    }

    /// Drop cached handles of `rel` and everything below it (it is being moved or removed).
    fn forget_below(&mut self, root: usize, rel: &Path) {
        let dirs = &self.dirs;
        self.open.retain(|id, _| {
            let (r, p) = &dirs[*id as usize];
            !(*r == root && p.starts_with(rel))
        });
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

/// A regular file to create, planned by [`Tree::plan_file`].
pub struct NewFile {
    parent: Arc<OwnedFd>,
    dir: u32,
    name: OsString,
    journal: Arc<Journal>,
    /// Its path, for messages.
    pub shown: PathBuf,
}

impl NewFile {
    /// Create the file (whatever a pre-existing entry left there is moved aside first).
    pub fn create(&self, mode: u32) -> Result<File, Fail> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let open = || {
            rfs::openat(
                &*self.parent,
                &self.name,
                flags,
                Mode::from_raw_mode(mode & 0o7777),
            )
        };
        let fd = match open() {
            Err(Errno::EXIST) => {
                let shown = self.shown.display().to_string();
                move_aside(&self.journal, self.dir, &self.parent, &self.name, &shown)?;
                open()
            }
            other => other,
        }
        .map_err(|e| Fail::Io(write_error(&self.shown, e.into())))?;
        self.journal.push(Change::Made {
            dir: self.dir,
            name: self.name.clone(),
            is_dir: false,
        });
        Ok(File::from(fd))
    }
}

/// Move whatever is at `name` aside, journalled (a non-empty directory is refused).
fn move_aside(
    journal: &Journal,
    dir: u32,
    parent: &OwnedFd,
    name: &OsStr,
    shown: &str,
) -> Result<(), Fail> {
    let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Fail::Io(std::io::Error::from(e).into())),
    };
    if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory
        && !is_empty_dir(parent, name)
    {
        return Err(Fail::Refuse(format!(
            "{shown} is a non-empty directory in the way; it was left as it is"
        )));
    }
    loop {
        let n = journal
            .asides
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let aside = OsString::from(format!(".kura-aside.{}.{n}", std::process::id()));
        match rfs::renameat_with(parent, name, parent, &aside, RenameFlags::NOREPLACE) {
            Ok(()) => {
                journal.push(Change::Aside {
                    dir,
                    name: name.to_os_string(),
                    aside,
                });
                return Ok(());
            }
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(Fail::Io(write_error(Path::new(shown), e.into()))),
        }
    }
}

/// A path's parent and last component; `None` for the empty path.
fn split(rel: &Path) -> Option<(&Path, &OsStr)> {
    Some((rel.parent()?, rel.file_name()?))
}

fn is_empty_dir(parent: &OwnedFd, name: &OsStr) -> bool {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(fd) = rfs::openat(parent, name, flags, Mode::empty()) else {
        return false;
    };
    let Ok(mut dir) = rfs::Dir::new(fd) else {
        return false;
    };
    dir.all(|e| e.is_ok_and(|e| matches!(e.file_name().to_bytes(), b"." | b"..")))
}

/// Access time left alone, modification time from the archive.
pub fn times(mtime: FileTime) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: mtime.unix_seconds(),
            tv_nsec: mtime.nanoseconds() as _,
        },
    }
}

/// A write error that says what to do, most of all for permissions (tar's "exit status 2").
pub fn write_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    use std::os::unix::fs::MetadataExt;
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return anyhow!("cannot write {}: {e}", path.display());
    }
    let mut owner_dir = path.parent();
    while let Some(d) = owner_dir {
        if let Ok(m) = std::fs::metadata(d) {
            let me = unsafe { libc::geteuid() };
            return anyhow!(
                "cannot write {}: permission denied. {} belongs to uid {} and kura runs as uid {me}; \
                 restore into a directory you own (under $HOME or /tmp), or run the job as that user",
                path.display(),
                d.display(),
                m.uid()
            );
        }
        owner_dir = d.parent();
    }
    anyhow!("cannot write {}: {e}", path.display())
}
