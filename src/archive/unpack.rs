//! zstd (or gzip) → tar → files, with files written on several threads.
//!
//! One thread decompresses (`pipe.rs`), one parses the tar stream and makes every name on disk, in
//! archive order (so the last entry of a name wins, as in GNU tar); a pool of writer threads
//! fills small files and sets their times (creating many small files is what extraction
//! spends its time on), big files are written in place. Every name goes through the [`Tree`],
//! which never follows a symlink below a root and journals what it changes, so a failed or
//! corrupt restore is rolled back and a good one committed.

use super::journal::{times, write_error, Fail, NewFile};
use super::span::{span, Span, Tap};
use super::tree::Place;
use super::tree::Tree;
use anyhow::{anyhow, bail, Context as _, Result};
use filetime::FileTime;
use std::cell::Cell;
use std::fs::File;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Condvar, Mutex};

/// Files up to this size go to the writer pool.
const SMALL: u64 = 1 << 20;
/// Queue length of the writer pool (at most SMALL bytes each).
const QUEUE: usize = 32;
/// What the tar reader may read to find one entry: its header and any pax or GNU long-name
/// records before it. The tar crate holds those records in memory, so without a bound a tiny
/// compressed archive could declare a header of gigabytes.
const HEADER_BUDGET: u64 = 1 << 20;

/// Why an extraction stopped; nothing of it is left on disk.
#[derive(Debug)]
pub enum UnpackError {
    /// The archive's bytes: not a whole archive, or one that breaks what its entry declares.
    /// (Unless the source failed or a signal came: the caller knows those.)
    Corrupt(anyhow::Error),
    /// Anything else: the disk, the source, a signal.
    Failed(anyhow::Error),
}

impl UnpackError {
    fn of(e: anyhow::Error) -> UnpackError {
        if e.is::<Corrupt>() {
            UnpackError::Corrupt(e)
        } else {
            UnpackError::Failed(e)
        }
    }
}

impl std::fmt::Display for UnpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnpackError::Corrupt(e) | UnpackError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for UnpackError {}

/// Marks, inside the extractor, errors that come from the archive's bytes (as opposed to
/// writing files); [`UnpackError::Corrupt`] at its edge.
#[derive(Debug)]
struct Corrupt;

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the archive is corrupt or truncated")
    }
}

impl std::error::Error for Corrupt {}

pub struct UnpackOptions {
    pub writers: usize,
    /// The largest zstd window accepted, as a power of two: 27 for what kura and actions/cache
    /// write today, 30 for actions/cache's older `--long` archives. A frame asking for more
    /// is corrupt: it would set the restore's memory, not kura.
    pub window_log_max: u32,
    /// What the entry's metadata says the stream holds, where it says: a stream that holds
    /// more (a manifest repeating one chunk, a zstd bomb) is corrupt, stopped as soon as it
    /// goes past.
    pub declared: Option<Declared>,
    /// Keep where each entry lies in the stream ([`Extraction::spans`]).
    pub spans: bool,
}

/// An entry's own account of its tar stream.
#[derive(Clone, Copy, Debug)]
pub struct Declared {
    /// File data, the sum of the entries' sizes.
    pub bytes: u64,
    /// Files, directories and links; 0 where not recorded.
    pub entries: u64,
    pub files: u64,
}

impl Declared {
    /// Most entries the stream may hold: as recorded (a few more for pax records), or where
    /// not recorded, the files and a million directories and links.
    fn max_entries(&self) -> u64 {
        match self.entries {
            0 => self.files.saturating_add(1 << 20),
            n => n.saturating_add(16),
        }
    }
}

/// What an extraction wrote. Nothing is final until [`Extraction::commit`]; dropping it, or
/// [`Extraction::rollback`], takes it back.
pub struct Extraction {
    pub files: u64,
    pub bytes: u64,
    /// Entries not written, each with the reason.
    pub refused: Vec<String>,
    /// Every entry written, when asked for and nothing was refused.
    pub spans: Vec<Span>,
    tree: Tree,
}

impl Extraction {
    /// Keep the files; returns what could not be tidied (for a warning).
    pub fn commit(self) -> Vec<String> {
        self.tree.commit()
    }

    /// Remove what the extraction made and put back what it replaced.
    pub fn rollback(self) {
        self.tree.rollback()
    }
}

struct FileJob {
    new: NewFile,
    /// The entry's name, for a refusal.
    entry: String,
    data: Vec<u8>,
    mode: u32,
    umask: u32,
    mtime: FileTime,
}

/// What the parser and the writer threads share.
#[derive(Default)]
struct Shared {
    failure: Mutex<Option<anyhow::Error>>,
    refused: Mutex<Vec<String>>,
    /// Jobs sent and not yet done, so the parser can wait for the writers (a name used twice,
    /// a hard link to a file still being written). The lock is taken only to wait and to wake.
    pending: AtomicUsize,
    lock: Mutex<()>,
    idle: Condvar,
}

impl Shared {
    fn sent_one(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    fn done_one(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Taking the lock orders this wake-up after a waiter's check.
            let _g = self.lock.lock().unwrap();
            self.idle.notify_all();
        }
    }

    fn wait_idle(&self) -> Result<(), Fail> {
        let mut g = self.lock.lock().unwrap();
        while self.pending.load(Ordering::SeqCst) > 0 {
            g = self.idle.wait(g).unwrap();
        }
        drop(g);
        if self.failure.lock().unwrap().is_some() {
            return Err(Fail::Io(anyhow!("a file writer failed")));
        }
        Ok(())
    }
}

/// Read a compressed archive from `src` and write it out through `tree`. After the tar end
/// marker the rest of `src` is drained, so a hashing reader around it sees every byte.
pub fn unpack<R: Read + Send>(
    src: R,
    tree: Tree,
    opts: &UnpackOptions,
) -> std::result::Result<Extraction, UnpackError> {
    super::pipe::decompressed(src, opts.window_log_max, |pipe| {
        extract_stream(pipe, tree, opts).map_err(UnpackError::of)
    })
}

/// Extract an uncompressed tar stream through `tree`.
pub fn unpack_tar<R: Read>(
    src: R,
    tree: Tree,
    opts: &UnpackOptions,
) -> std::result::Result<Extraction, UnpackError> {
    extract_stream(src, tree, opts).map_err(UnpackError::of)
}

fn extract_stream<R: Read>(src: R, mut tree: Tree, opts: &UnpackOptions) -> Result<Extraction> {
    let _interrupts = crate::platform::catch_interrupts();
    let (tx, rx) = sync_channel::<FileJob>(QUEUE);
    let rx = Mutex::new(rx);
    let shared = Shared::default();
    let mut out = Counts::default();
    let parsed = std::thread::scope(|s| {
        for _ in 0..opts.writers.max(1) {
            s.spawn(|| writer(&rx, &shared));
        }
        let parsed = parse(src, &mut tree, &tx, &shared, &mut out, opts);
        drop(tx);
        parsed
    });
    // A writer's own error says more than the parser's "a file writer failed".
    if let Some(e) = shared.failure.into_inner().unwrap() {
        return Err(e);
    }
    parsed?;
    out.refused.extend(shared.refused.into_inner().unwrap());
    if !out.refused.is_empty() {
        // Which names hold what the stream says is no longer known for each entry.
        out.spans.clear();
    }
    Ok(Extraction {
        files: out.files,
        bytes: out.bytes,
        refused: out.refused,
        spans: out.spans,
        tree,
    })
}

#[derive(Default)]
struct Counts {
    files: u64,
    bytes: u64,
    refused: Vec<String>,
    spans: Vec<Span>,
}

/// Lets the tar reader take at most `left` bytes; the parser sets it per entry.
struct Budget<R> {
    inner: R,
    left: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A signal stops a large file midway too, not only between entries.
        if let Some(sig) = crate::platform::interrupted() {
            return Err(std::io::Error::other(stopped(sig)));
        }
        let left = self.left.get();
        if left == 0 {
            return Err(std::io::Error::other(
                "an entry's header records are over 1 MiB",
            ));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left.set(left - n as u64);
        Ok(n)
    }
}

/// What an extraction stopped by a signal says.
pub fn stopped(sig: i32) -> String {
    format!(
        "{}: what the restore had written is undone, and the tree is as it was",
        crate::platform::stopped_by(sig)
    )
}

fn parse<R: Read>(
    src: R,
    tree: &mut Tree,
    tx: &SyncSender<FileJob>,
    shared: &Shared,
    out: &mut Counts,
    opts: &UnpackOptions,
) -> Result<()> {
    let declared = opts.declared;
    // Where the entry being read began: where the one before ended.
    let mut next_start = 0u64;
    let left = Rc::new(Cell::new(HEADER_BUDGET));
    let kept = Rc::new(std::cell::RefCell::new(None));
    let mut archive = tar::Archive::new(Budget {
        inner: Tap {
            inner: src,
            at: 0,
            kept: kept.clone(),
        },
        left: left.clone(),
    });
    let umask = tree.umask();
    let mut entries = archive.entries().context(Corrupt)?;
    let (mut count, mut data) = (0u64, 0u64);
    loop {
        left.set(HEADER_BUDGET);
        if opts.spans {
            *kept.borrow_mut() = Some((next_start, Vec::new()));
        }
        let Some(entry) = entries.next() else { break };
        left.set(u64::MAX);
        let headers = kept.borrow_mut().take().map(|(_, h)| h);
        let mut entry = entry.context(Corrupt)?;
        count += 1;
        let kind = entry.header().entry_type();
        if kind.is_file() || kind == tar::EntryType::Continuous {
            data = data.saturating_add(entry.size());
        }
        if let Some(d) = declared {
            if data > d.bytes || count > d.max_entries() {
                return Err(anyhow!(
                    "the archive holds more than its entry records ({} bytes of files in {} entries); it is not the one saved",
                    d.bytes,
                    d.entries
                ))
                .context(Corrupt);
            }
        }
        if shared.failure.lock().unwrap().is_some() {
            bail!("a file writer failed");
        }
        let start = next_start;
        next_start = entry
            .raw_file_position()
            .saturating_add(entry.size().div_ceil(512).saturating_mul(512));
        match extract(&mut entry, tree, tx, shared, umask, out) {
            Ok(place) => {
                let spanned = place.zip(headers);
                if let Some(s) =
                    spanned.and_then(|(p, h)| span(&entry, tree, p, &h, start, next_start))
                {
                    out.spans.push(s);
                }
            }
            Err(Fail::Refuse(why)) => out.refused.push(format!(
                "{}: {why}",
                String::from_utf8_lossy(&entry.path_bytes())
            )),
            Err(Fail::Io(e)) => return Err(e),
        }
        // What was not read (a refused file) is skipped here, outside the header budget.
        std::io::copy(&mut entry, &mut std::io::sink()).context(Corrupt)?;
    }
    // Drain what follows the end marker so the caller's digest covers the whole stream.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).context(Corrupt)?;
    Ok(())
}

fn corrupt(e: std::io::Error) -> Fail {
    Fail::Io(anyhow::Error::new(e).context(Corrupt))
}

/// Make one entry on disk. Names are made here, in archive order; small files are created
/// and filled by the writer threads, except where an earlier entry used the name.
fn extract<R: Read>(
    entry: &mut tar::Entry<R>,
    tree: &mut Tree,
    tx: &SyncSender<FileJob>,
    shared: &Shared,
    umask: u32,
    out: &mut Counts,
) -> Result<Option<Place>, Fail> {
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
        return Ok(None);
    }
    let name = entry.path_bytes().into_owned();
    if name.is_empty() {
        return Err(Fail::Refuse("empty name".into()));
    }
    let place = tree.locate(&name).map_err(Fail::Refuse)?;
    make(entry, tree, &place, kind, (tx, shared, umask, out))?;
    Ok(Some(place))
}

/// What [`make`] needs besides the entry and its place.
type Makers<'a> = (&'a SyncSender<FileJob>, &'a Shared, u32, &'a mut Counts);

fn make<R: Read>(
    entry: &mut tar::Entry<R>,
    tree: &mut Tree,
    place: &Place,
    kind: tar::EntryType,
    (tx, shared, umask, out): Makers,
) -> Result<(), Fail> {
    let mode = entry.header().mode().unwrap_or(0o644) & 0o1777;
    // The last entry of a name wins: one that reuses a name waits for the writers.
    let in_order = tree.reuses(place) || kind.is_hard_link();
    if in_order {
        shared.wait_idle()?;
    }
    if kind.is_dir() {
        let mtime = mtime_of(entry);
        tree.dir(place, mode, mtime)
    } else if kind.is_file() || kind == tar::EntryType::Continuous {
        let plan = FilePlan {
            place,
            mode,
            umask,
            in_order,
        };
        file(entry, tree, plan, tx, shared, out)
    } else if kind.is_symlink() {
        let target = entry.link_name_bytes().unwrap_or_default().into_owned();
        let mtime = mtime_of(entry);
        tree.symlink(place, &target, mtime)
    } else if kind.is_hard_link() {
        let target = entry.link_name_bytes().unwrap_or_default().into_owned();
        let shown = String::from_utf8_lossy(&target).into_owned();
        let t = tree
            .locate(&target)
            .map_err(|why| Fail::Refuse(format!("hard link target {shown}: {why}")))?;
        tree.hard_link(place, &t)
    } else {
        Err(Fail::Refuse(format!(
            "entries of type {kind:?} (devices, fifos) are refused"
        )))
    }
}

/// Where a regular file goes and how.
struct FilePlan<'a> {
    place: &'a Place,
    mode: u32,
    umask: u32,
    /// The entry reuses a name or must otherwise be written before the next one.
    in_order: bool,
}

/// A regular file: small ones go to the writer pool, large ones (and those that must be
/// written in order) are written here.
fn file<R: Read>(
    entry: &mut tar::Entry<R>,
    tree: &mut Tree,
    p: FilePlan,
    tx: &SyncSender<FileJob>,
    shared: &Shared,
    out: &mut Counts,
) -> Result<(), Fail> {
    let mtime = mtime_of(entry);
    let size = entry.size();
    out.files += 1;
    out.bytes += size;
    if p.in_order || size > SMALL {
        let (file, shown) = if p.in_order {
            (tree.file(p.place, p.mode)?, tree.shown(p.place))
        } else {
            let new = tree.plan_file(p.place)?;
            (new.create(p.mode)?, new.shown)
        };
        return write_in_place(entry, file, &shown, p.mode, p.umask, mtime);
    }
    let new = tree.plan_file(p.place)?;
    let mut data = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut data).map_err(corrupt)?;
    let job = FileJob {
        new,
        entry: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
        data,
        mode: p.mode,
        umask: p.umask,
        mtime,
    };
    shared.sent_one();
    tx.send(job).map_err(|_| {
        shared.done_one();
        Fail::Io(anyhow!("the file writers stopped"))
    })
}

fn write_in_place<R: Read>(
    entry: &mut tar::Entry<R>,
    mut file: File,
    shown: &std::path::Path,
    mode: u32,
    umask: u32,
    mtime: FileTime,
) -> Result<(), Fail> {
    let mut buf = vec![0u8; (entry.size().min(1 << 20) as usize).max(1)];
    loop {
        let n = entry.read(&mut buf).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .map_err(|e| Fail::Io(write_error(shown, e)))?;
    }
    finish_file(&file, shown, mode, umask, mtime).map_err(Fail::Io)
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

fn writer(rx: &Mutex<Receiver<FileJob>>, shared: &Shared) {
    loop {
        let job = match rx.lock().unwrap().recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        // After a failure the queue is still drained, so a parser waiting for it wakes up.
        if shared.failure.lock().unwrap().is_some() {
            shared.done_one();
            continue;
        }
        let res = job.new.create(job.mode).and_then(|mut f| {
            f.write_all(&job.data)
                .map_err(|e| Fail::Io(write_error(&job.new.shown, e)))?;
            finish_file(&f, &job.new.shown, job.mode, job.umask, job.mtime).map_err(Fail::Io)
        });
        match res {
            Ok(()) => {}
            Err(Fail::Refuse(why)) => {
                shared
                    .refused
                    .lock()
                    .unwrap()
                    .push(format!("{}: {why}", job.entry));
            }
            Err(Fail::Io(e)) => {
                shared.failure.lock().unwrap().get_or_insert(e);
            }
        }
        shared.done_one();
    }
}

fn finish_file(
    f: &File,
    shown: &std::path::Path,
    mode: u32,
    umask: u32,
    mtime: FileTime,
) -> Result<()> {
    if mode & umask != 0 {
        // The umask took bits the archive asks for.
        rustix::fs::fchmod(f, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(|e| write_error(shown, e.into()))?;
    }
    rustix::fs::futimens(f, &times(mtime)).map_err(|e| write_error(shown, e.into()))?;
    Ok(())
}
