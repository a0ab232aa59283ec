//! What an extraction changes on disk, each change made so that it can be undone: files
//! created fresh (never written through an existing name), whatever was in the way moved aside
//! in its own directory, everything journalled for the rollback or the commit of
//! [`super::tree::Tree`].

use anyhow::anyhow;
use filetime::FileTime;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why an entry was not written.
#[derive(Debug)]
pub enum Fail {
    /// The entry is refused and listed; the extraction goes on.
    Refuse(String),
    /// Writing failed (permissions, a full disk): the extraction stops and is rolled back.
    Io(anyhow::Error),
}

/// The changes of one extraction, shared with the writer threads that create files.
#[derive(Default)]
pub struct Journal {
    changes: Mutex<Vec<Change>>,
    asides: AtomicU64,
}

impl Journal {
    pub(super) fn push(&self, c: Change) {
        self.changes.lock().unwrap().push(c);
    }

    /// Every change so far, oldest first; the journal is left empty.
    pub(super) fn take(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock().unwrap())
    }
}

pub(super) enum Change {
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

/// A regular file to create, planned by [`Tree::plan_file`].
pub struct NewFile {
    pub(super) parent: Arc<OwnedFd>,
    pub(super) dir: u32,
    pub(super) name: OsString,
    pub(super) journal: Arc<Journal>,
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
pub(super) fn move_aside(
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
        let n = journal.asides.fetch_add(1, Ordering::Relaxed) + 1;
        let aside = crate::platform::aside_name(n);
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
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return anyhow!("cannot write {}: {e}", path.display());
    }
    let mut owner_dir = path.parent();
    while let Some(d) = owner_dir {
        if let Ok(m) = std::fs::metadata(d) {
            let me = crate::platform::euid();
            if crate::platform::owner(&m) == me {
                // Its own user's directory, made read-only (mode 0555, a chmod -w).
                return anyhow!(
                    "cannot write {}: permission denied. {} is not writable (mode {:o}); \
                     make it writable (chmod u+w) or restore elsewhere",
                    path.display(),
                    d.display(),
                    crate::platform::mode(&m)
                );
            }
            return anyhow!(
                "cannot write {}: permission denied. {} belongs to uid {} and kura runs as uid {me}; \
                 restore into a directory you own (under $HOME or /tmp), or run the job as that user",
                path.display(),
                d.display(),
                crate::platform::owner(&m)
            );
        }
        owner_dir = d.parent();
    }
    anyhow!("cannot write {}: {e}", path.display())
}

/// The process umask, read without changing it (umask(2) would race with other threads).
pub fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}
