//! Directory handles that never follow a symlink below their root, for the directories kura
//! keeps itself and others may write too: the local store, the chunk cache. The root is
//! reached as the user named it (a `~/.cache` on a mounted disk is fine); every name below it
//! is one path component, opened relative to its parent's handle with `O_NOFOLLOW`. Only
//! regular files are read (`O_NONBLOCK`, so a FIFO cannot hang the open, then `fstat`'s type
//! and size checked), and what is read whole has a cap. A store directory replaced by a
//! symlink, a FIFO as metadata or a sparse 2 GiB `meta.json` is then an error of that one
//! name, never a read, write or delete somewhere else.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// An open directory; `path` is for messages only.
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What a name in a directory is, from `lstat` (a symlink is never what it points at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Other,
}

/// A name's `lstat`: its kind, size and modification time (milliseconds since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    pub modified_ms: u64,
    /// The inode, and the modification and status-change times in nanoseconds: what changes
    /// when anyone writes, renames over or touches the file.
    pub identity: (u64, i128, i128),
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

/// Deepest tree `remove_tree` goes into (entries are two levels, temporary ones three).
const MAX_DEPTH: usize = 16;

fn err(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// One path component, never `.`, `..` or empty: no name can climb out of its directory.
fn check(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a name in a directory"),
        ));
    }
    Ok(name)
}

impl Dir {
    /// The root, as the user named it (links the user chose are followed).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rfs::open(path, flags, Mode::empty()).map_err(err)?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The root, made first if missing.
    pub fn create(path: &Path) -> io::Result<Dir> {
        std::fs::create_dir_all(path)?;
        Dir::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `name` is, for messages.
    pub fn shown(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Directory `name`; a symlink there is an error (`ELOOP`/`ENOTDIR`), never followed.
    pub fn dir(&self, name: &str) -> io::Result<Dir> {
        let fd = rfs::openat(&self.fd, check(name)?, DIR_FLAGS, Mode::empty()).map_err(err)?;
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    /// Directory `name`, made if missing; `None` where it is missing and `create` is false.
    pub fn subdir(&self, name: &str, create: bool) -> io::Result<Option<Dir>> {
        match self.dir(name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => self.dir(name).map(Some),
                    Err(e) => Err(err(e)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A new directory `name`; fails if the name is taken.
    pub fn mkdir(&self, name: &str) -> io::Result<Dir> {
        rfs::mkdirat(&self.fd, check(name)?, Mode::from_raw_mode(0o777)).map_err(err)?;
        self.dir(name)
    }

    /// Regular file `name` opened for reading, and its size. A FIFO, device, directory or
    /// symlink there is an error, found without blocking.
    pub fn file(&self, name: &str) -> io::Result<(File, u64)> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let fd = rfs::openat(&self.fd, check(name)?, flags, Mode::empty()).map_err(err)?;
        let st = rfs::fstat(&fd).map_err(err)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a regular file", self.shown(name).display()),
            ));
        }
        // Reads of a regular file never block; later reads need no O_NONBLOCK either way.
        Ok((File::from(fd), st.st_size as u64))
    }

    /// Regular file `name` read whole, if it is at most `cap` bytes.
    pub fn read(&self, name: &str, cap: u64) -> io::Result<Vec<u8>> {
        let (f, size) = self.file(name)?;
        if size > cap {
            return Err(too_big(&self.shown(name), cap));
        }
        let mut out = Vec::with_capacity(size as usize);
        // The file may grow after the fstat: the cap holds for what is read.
        f.take(cap + 1).read_to_end(&mut out)?;
        if out.len() as u64 > cap {
            return Err(too_big(&self.shown(name), cap));
        }
        Ok(out)
    }

    /// A new regular file `name`, for writing; fails if the name is taken.
    pub fn create_file(&self, name: &str) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let fd =
            rfs::openat(&self.fd, check(name)?, flags, Mode::from_raw_mode(0o666)).map_err(err)?;
        Ok(File::from(fd))
    }

    /// Write `data` as `name` whole or not at all: into a new dot-named file beside it (unique
    /// across processes and hosts sharing the directory), renamed into place; `durable` syncs
    /// it first.
    pub fn write_aside(&self, name: &str, data: &[u8], durable: bool) -> io::Result<()> {
        check(name)?;
        let tmp = format!(".{}-{:x}", std::process::id(), crate::random::u128());
        let written = self
            .create_file(&tmp)
            .and_then(|mut f| {
                f.write_all(data)?;
                if durable {
                    f.sync_all()?;
                }
                Ok(())
            })
            .and_then(|()| self.rename(&tmp, self, name));
        if written.is_err() {
            let _ = self.remove_file(&tmp);
        }
        written
    }

    /// What `name` is, without following a symlink; `None` where nothing is.
    pub fn stat(&self, name: &str) -> io::Result<Option<Stat>> {
        match rfs::statat(&self.fd, check(name)?, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(stat_of(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    /// The directory's own modification time.
    pub fn modified_ms(&self) -> io::Result<u64> {
        Ok(stat_of(&rfs::fstat(&self.fd).map_err(err)?).modified_ms)
    }

    /// Set the directory's own modification time to now.
    pub fn touch(&self) -> io::Result<()> {
        let now = rfs::Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_NOW,
        };
        let times = rfs::Timestamps {
            last_access: rfs::Timespec {
                tv_sec: 0,
                tv_nsec: rfs::UTIME_OMIT,
            },
            last_modification: now,
        };
        rfs::futimens(&self.fd, &times).map_err(err)
    }

    /// Set the modification time of `name` (not through a symlink) to now.
    pub fn touch_name(&self, name: &str) -> io::Result<()> {
        // Its mtime in nanoseconds (the second of `Stat::identity`).
        let old = self.stat(name)?.map_or(0, |st| st.identity.1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        // Renewed means changed: the kernel stamps writes from a coarse clock, so "now" could
        // equal the time the file was written with, and a save that wrote the pack would not
        // see that another save has since reused it (and withdraw it from under that save).
        let t = now.max(old + 1_000);
        let times = rfs::Timestamps {
            last_access: rfs::Timespec {
                tv_sec: 0,
                tv_nsec: rfs::UTIME_OMIT,
            },
            last_modification: rfs::Timespec {
                tv_sec: (t / 1_000_000_000) as _,
                tv_nsec: (t % 1_000_000_000) as _,
            },
        };
        rfs::utimensat(&self.fd, check(name)?, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(err)
    }

    /// The names in the directory (not `.` and `..`; names that are not UTF-8 are not kura's
    /// and are left out), with what each is.
    pub fn entries(&self) -> io::Result<Vec<(String, Kind)>> {
        let dup = rfs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty()).map_err(err)?;
        let mut out = Vec::new();
        for ent in rfs::Dir::read_from(&dup).map_err(err)? {
            let ent = ent.map_err(err)?;
            let Ok(name) = ent.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let kind = match ent.file_type() {
                FileType::Directory => Kind::Dir,
                FileType::RegularFile => Kind::File,
                FileType::Unknown => match self.stat(name) {
                    Ok(Some(st)) => st.kind,
                    _ => continue,
                },
                _ => Kind::Other,
            };
            out.push((name.to_string(), kind));
        }
        Ok(out)
    }

    /// Rename `name` to `to_name` in `to` (a directory onto a non-empty one fails).
    pub fn rename(&self, name: &str, to: &Dir, to_name: &str) -> io::Result<()> {
        rfs::renameat(&self.fd, check(name)?, &to.fd, check(to_name)?).map_err(err)
    }

    /// Remove the file, symlink or empty directory `name`; nothing there is fine.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        match rfs::unlinkat(&self.fd, check(name)?, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) => {
                match rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(e) => Err(err(e)),
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Remove `name` and everything below it, never following a symlink (a link is removed,
    /// not what it points at); nothing there is fine.
    pub fn remove_tree(&self, name: &str) -> io::Result<()> {
        self.remove_below(name, 0)
    }

    fn remove_below(&self, name: &str, depth: usize) -> io::Result<()> {
        match self.stat(name)? {
            None => return Ok(()),
            Some(st) if st.kind != Kind::Dir => return self.remove_file(name),
            Some(_) => {}
        }
        if depth >= MAX_DEPTH {
            return Err(io::Error::other(format!(
                "{} is nested too deep to be kura's",
                self.shown(name).display()
            )));
        }
        let sub = self.dir(name)?;
        for (child, _) in sub.entries()? {
            sub.remove_below(&child, depth + 1)?;
        }
        self.remove_file(name)
    }
}

// The field types differ between systems (Linux, macOS): the casts are not the same there.
#[allow(clippy::unnecessary_cast)]
fn stat_of(st: &rfs::Stat) -> Stat {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Kind::Dir,
        FileType::RegularFile => Kind::File,
        _ => Kind::Other,
    };
    let ms = (st.st_mtime as i64).max(0) as u64 * 1000 + st.st_mtime_nsec as u64 / 1_000_000;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Stat {
        kind,
        size: st.st_size as u64,
        modified_ms: ms,
        identity: (
            st.st_ino as u64,
            ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
        ),
    }
}

fn too_big(path: &Path, cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is larger than {} bytes, more than kura ever writes there",
            path.display(),
            cap
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_below_the_root_are_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(outside.join("keep")).unwrap();
        std::fs::write(outside.join("keep/file"), b"x").unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("keep/file"), root.join("flink")).unwrap();
        let d = Dir::open(&root).unwrap();
        assert!(d.dir("link").is_err());
        assert!(d.file("flink").is_err());
        assert!(d.dir("..").is_err() && d.file("../outside/keep/file").is_err());
        d.remove_tree("link").unwrap();
        assert!(outside.join("keep/file").exists());
        assert!(!root.join("link").exists());
    }

    #[test]
    fn special_and_oversized_files_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let big = File::create(t.path().join("big")).unwrap();
        big.set_len(1 << 31).unwrap();
        let d = Dir::open(t.path()).unwrap();
        assert!(d.file("fifo").is_err());
        assert!(d.read("big", 1 << 20).is_err());
        std::fs::write(t.path().join("small"), b"abc").unwrap();
        assert_eq!(d.read("small", 3).unwrap(), b"abc");
        assert!(d.read("small", 2).is_err());
    }
}
