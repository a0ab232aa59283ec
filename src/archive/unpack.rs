//! zstd (or gzip) → tar → files, with files written on several threads.
//!
//! One thread decompresses and parses the tar stream; small files go to a pool of writer
//! threads (creating many small files is what extraction spends its time on), big files are
//! written in place. Directory modes and mtimes are applied last, links after all files.
//! Everything created is journalled so a failed or corrupt restore can be taken back.

use super::Guard;
use anyhow::{anyhow, bail, Context as _, Result};
use filetime::FileTime;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Files up to this size go to the writer pool.
const SMALL: u64 = 1 << 20;
/// Queue length of the writer pool (at most SMALL bytes each).
const QUEUE: usize = 32;

/// Marks errors that come from the archive's bytes (as opposed to writing files): a restore
/// treats them as a corrupt entry.
#[derive(Debug)]
pub struct Corrupt;

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the archive is corrupt or truncated")
    }
}

impl std::error::Error for Corrupt {}

pub struct UnpackOptions {
    pub writers: usize,
}

/// What an extraction did. `created` lets the caller undo it if the bytes turn out corrupt.
#[derive(Debug, Default)]
pub struct UnpackStats {
    pub files: u64,
    pub bytes: u64,
    /// Names refused by the guard, each with the reason.
    pub refused: Vec<String>,
    pub created: Vec<PathBuf>,
}

impl UnpackStats {
    /// Remove what the extraction created, newest first (directories only when empty).
    pub fn rollback(&self) {
        rollback(&self.created);
    }
}

fn rollback(created: &[PathBuf]) {
    for p in created.iter().rev() {
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir(p);
            }
            Ok(_) => {
                let _ = fs::remove_file(p);
            }
            Err(_) => {}
        }
    }
}

struct FileJob {
    dest: PathBuf,
    data: Vec<u8>,
    mode: u32,
    umask: u32,
    mtime: FileTime,
}

enum Link {
    Sym(PathBuf, Vec<u8>),
    Hard(PathBuf, PathBuf),
}

/// Read an archive from `src` and write it out under the guard's roots. After the tar end
/// marker the rest of `src` is drained, so a hashing reader around it sees every byte.
pub fn unpack<R: Read + Send>(
    src: R,
    guard: &mut Guard,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    let journal = Arc::new(Mutex::new(Vec::new()));
    let result = unpack_inner(src, guard, opts, &journal);
    let created = std::mem::take(&mut *journal.lock().unwrap());
    match result {
        Ok(mut stats) => {
            stats.created = created;
            Ok(stats)
        }
        Err(e) => {
            rollback(&created);
            Err(e)
        }
    }
}

fn decoder<'a, R: Read + 'a>(src: R) -> Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(1 << 20, src);
    let head = buf.fill_buf()?;
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut d = zstd::stream::read::Decoder::with_buffer(buf)?;
        // Archives written with --long=30 (actions/cache before 2023) need a big window.
        d.window_log_max(31)?;
        Ok(Box::new(d))
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buf)))
    } else if head.is_empty() {
        bail!("the archive is empty")
    } else {
        bail!(
            "the archive is neither zstd nor gzip (it starts with {:02x?})",
            &head[..head.len().min(4)]
        )
    }
}

fn unpack_inner<R: Read + Send>(
    src: R,
    guard: &mut Guard,
    opts: &UnpackOptions,
    journal: &Arc<Mutex<Vec<PathBuf>>>,
) -> Result<UnpackStats> {
    let mut stats = UnpackStats::default();
    let (tx, rx) = sync_channel::<FileJob>(QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    let failure: Arc<Mutex<Option<anyhow::Error>>> = Arc::new(Mutex::new(None));
    let mut pool = Vec::new();
    for _ in 0..opts.writers.max(1) {
        let (rx, journal, failure) = (rx.clone(), journal.clone(), failure.clone());
        pool.push(std::thread::spawn(move || writer(&rx, &journal, &failure)));
    }

    // Decompression runs on its own thread, a pipe ahead of parsing and writing, as
    // `zstd -d | tar -x` runs in two processes.
    let (chunks_tx, chunks_rx) = sync_channel::<std::io::Result<Vec<u8>>>(16);
    let parsed = std::thread::scope(|s| {
        s.spawn(move || decompress(src, chunks_tx));
        let pipe = ChunkReader {
            rx: chunks_rx,
            chunk: Vec::new(),
            pos: 0,
        };
        parse(pipe, guard, &tx, journal, &failure, &mut stats)
    });
    drop(tx);
    for t in pool {
        let _ = t.join();
    }
    let (dirs, links) = parsed?;
    if let Some(e) = failure.lock().unwrap().take() {
        return Err(e);
    }
    for link in links {
        match link {
            Link::Sym(dest, target) => {
                use std::os::unix::ffi::OsStrExt;
                replace(&dest)?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &dest)
                    .map_err(|e| write_error(&dest, e))?;
                journal.lock().unwrap().push(dest);
            }
            Link::Hard(dest, target) => {
                replace(&dest)?;
                fs::hard_link(&target, &dest).map_err(|e| write_error(&dest, e))?;
                journal.lock().unwrap().push(dest);
            }
        }
    }
    // Deepest first, so a read-only parent does not stop its children being set.
    for (dir, mode, mtime) in dirs.into_iter().rev() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(mode));
        let _ = filetime::set_file_mtime(&dir, mtime);
    }
    Ok(stats)
}

type Parsed = (Vec<(PathBuf, u32, FileTime)>, Vec<Link>);

/// Decompress `src` into chunks for the parse thread; stops when the parser hangs up.
fn decompress<R: Read>(src: R, out: SyncSender<std::io::Result<Vec<u8>>>) {
    let mut d = match decoder(src) {
        Ok(d) => d,
        Err(e) => {
            let _ = out.send(Err(std::io::Error::other(format!("{e:#}"))));
            return;
        }
    };
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        let n = match d.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        };
        chunk.truncate(n);
        if out.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// The parse side of the decompression pipe.
struct ChunkReader {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.chunk = next?;
                    self.pos = 0;
                }
                Err(_) => return Ok(0), // the decompressor reached the end
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn parse<R: Read>(
    src: R,
    guard: &mut Guard,
    tx: &std::sync::mpsc::SyncSender<FileJob>,
    journal: &Arc<Mutex<Vec<PathBuf>>>,
    failure: &Arc<Mutex<Option<anyhow::Error>>>,
    stats: &mut UnpackStats,
) -> Result<Parsed> {
    let mut archive = tar::Archive::new(src);
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    let mut ready = HashSet::new();
    let umask = umask();
    for entry in archive.entries().context(Corrupt)? {
        if failure.lock().unwrap().is_some() {
            break;
        }
        let mut entry = entry.context(Corrupt)?;
        let name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&name).into_owned();
        let mut refuse = |why: String| stats.refused.push(format!("{shown}: {why}"));
        let dest = match guard.dest(&name) {
            Ok(d) => d,
            Err(why) => {
                refuse(why);
                continue;
            }
        };
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o1777;
        let mtime = mtime_of(&mut entry);
        let parent = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
        let dir_ok = if kind.is_dir() { &dest } else { &parent };
        if let Err(why) = guard.check_dir(dir_ok) {
            refuse(why);
            continue;
        }
        if kind.is_dir() {
            make_dirs(&dest, journal, &mut ready)?;
            dirs.push((dest, mode, mtime));
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            make_dirs(&parent, journal, &mut ready)?;
            let size = entry.size();
            stats.files += 1;
            stats.bytes += size;
            if size <= SMALL {
                let mut data = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut data).context(Corrupt)?;
                if tx
                    .send(FileJob {
                        dest,
                        data,
                        mode,
                        umask,
                        mtime,
                    })
                    .is_err()
                {
                    break; // a writer failed; its error is reported
                }
            } else {
                let mut f = create(&dest, mode, journal)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = entry.read(&mut buf).context(Corrupt)?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n]).map_err(|e| write_error(&dest, e))?;
                }
                finish_file(&f, &dest, mode, umask, mtime)?;
            }
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            match guard.symlink_target(&dest, &target) {
                Ok(()) => {
                    make_dirs(&parent, journal, &mut ready)?;
                    links.push(Link::Sym(dest, target));
                }
                Err(why) => refuse(why),
            }
        } else if kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            // The target's directory is checked on disk too: a hard link to a file reached
            // through a symlink would put an outside file inside the cache's paths.
            let checked = guard.dest(&target).and_then(|t| {
                guard.check_dir(t.parent().unwrap_or(Path::new("/")))?;
                Ok(t)
            });
            match checked {
                Ok(t) => {
                    make_dirs(&parent, journal, &mut ready)?;
                    links.push(Link::Hard(dest, t));
                }
                Err(why) => refuse(format!(
                    "hard link target {}: {why}",
                    String::from_utf8_lossy(&target)
                )),
            }
        } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        } else {
            refuse(format!(
                "entries of type {kind:?} (devices, fifos) are refused"
            ));
        }
    }
    // Drain what follows the end marker so the caller's digest covers the whole stream.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).context(Corrupt)?;
    Ok((dirs, links))
}

fn mtime_of<R: Read>(entry: &mut tar::Entry<R>) -> FileTime {
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if ext.key() == Ok("mtime") {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    return t;
                }
            }
        }
    }
    FileTime::from_unix_time(entry.header().mtime().unwrap_or(0) as i64, 0)
}

fn parse_pax_time(v: &str) -> Option<FileTime> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos: u32 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    Some(FileTime::from_unix_time(secs, nanos))
}

fn writer(
    rx: &Mutex<Receiver<FileJob>>,
    journal: &Mutex<Vec<PathBuf>>,
    failure: &Mutex<Option<anyhow::Error>>,
) {
    loop {
        let job = match rx.lock().unwrap().recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let res = (|| {
            let mut f = create(&job.dest, job.mode, journal)?;
            f.write_all(&job.data)
                .map_err(|e| write_error(&job.dest, e))?;
            finish_file(&f, &job.dest, job.mode, job.umask, job.mtime)
        })();
        if let Err(e) = res {
            failure.lock().unwrap().get_or_insert(e);
            return;
        }
    }
}

/// Remove whatever is at `dest` (a file, a link, an empty directory) so that nothing is
/// written through an existing link or into another name of a hard-linked file.
fn replace(dest: &Path) -> Result<()> {
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => fs::remove_dir(dest).map_err(|_| {
            anyhow!(
                "{} is a non-empty directory in the way of a file from the cache; remove it first",
                dest.display()
            )
        }),
        Ok(_) => fs::remove_file(dest).map_err(|e| write_error(dest, e)),
        Err(_) => Ok(()),
    }
}

/// Create `dest` fresh with `mode` (an existing file or link there is removed first, never
/// written through). One open on a fresh restore, which is the common case.
fn create(dest: &Path, mode: u32, journal: &Mutex<Vec<PathBuf>>) -> Result<File> {
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(dest)
    };
    let f = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            replace(dest)?;
            open().map_err(|e| write_error(dest, e))?
        }
        Err(e) => return Err(write_error(dest, e)),
    };
    journal.lock().unwrap().push(dest.to_path_buf());
    Ok(f)
}

fn finish_file(f: &File, dest: &Path, mode: u32, umask: u32, mtime: FileTime) -> Result<()> {
    if mode & umask != 0 {
        // The umask took bits the archive asks for.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| write_error(dest, e))?;
    }
    filetime::set_file_handle_times(f, None, Some(mtime)).map_err(|e| write_error(dest, e))?;
    Ok(())
}

/// `create_dir_all`, journalling each directory it creates and remembering those that exist
/// (only kura creates directories during an extraction, so the answer cannot go stale).
fn make_dirs(
    dir: &Path,
    journal: &Mutex<Vec<PathBuf>>,
    ready: &mut HashSet<PathBuf>,
) -> Result<()> {
    if ready.contains(dir) {
        return Ok(());
    }
    if !dir.is_dir() {
        if let Some(parent) = dir.parent() {
            make_dirs(parent, journal, ready)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => journal.lock().unwrap().push(dir.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(write_error(dir, e)),
        }
    }
    ready.insert(dir.to_path_buf());
    Ok(())
}

/// The process umask, read without changing it (umask(2) would race with other threads).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// A write error that says what to do, most of all for permissions (tar's "exit status 2").
fn write_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return anyhow!("cannot write {}: {e}", path.display());
    }
    let mut owner_dir = path.parent();
    while let Some(d) = owner_dir {
        if let Ok(m) = fs::metadata(d) {
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
