//! Selection → pax tar → zstd, streaming.
//!
//! Four kinds of work run at once: the walk lists the tree on its own thread, reader threads
//! open and read small files ahead of the tar writer (opening files is what costs on trees
//! like node_modules), the tar writer builds headers and copies data in order, and zstd's own
//! worker threads compress. Memory is bounded by the read-ahead budget and the walk's queue,
//! not by the size of the cache.

use crate::platform;
use crate::select::{Entry, Kind};
use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};

/// Files up to this size are read ahead by the reader threads; bigger ones are streamed.
const SMALL: u64 = 1 << 20;
/// Entries handed from the walk to the writer at a time.
const BATCH: usize = 64;
/// How many bytes of small files may wait in memory for the tar writer.
const READ_AHEAD: u64 = 32 << 20;

#[derive(Clone, Default)]
pub struct PackOptions {
    pub level: i32,
    pub workers: u32,
    pub readers: usize,
    /// Record the sha256 of every file (workspace layers use it to find conflicting layers).
    pub manifest: bool,
    /// Bytes of file data packed so far, for progress.
    pub progress: Option<Arc<AtomicU64>>,
    /// Write the tar stream uncompressed (chunked entries compress chunk by chunk).
    pub raw: bool,
    /// Entries a chunked save takes from its base without reading them.
    pub reuse: Option<Arc<dyn Reuse>>,
}

/// What a chunked save may take from the entry it builds on instead of reading it: entries
/// exactly as the restore of that entry left them, whose bytes the base's stream holds.
pub trait Reuse: Send + Sync {
    /// Whether `e` looks as the restore left it: the walk does not read it ahead.
    fn likely(&self, e: &Entry) -> bool;
    /// Where entry `e`, whose headers are `headers`, lies in the base's stream, if the base
    /// holds exactly the bytes this stream would (the same headers, the file untouched).
    fn span(&self, e: &Entry, headers: &[u8]) -> Option<(u64, u64)>;
    /// Whether one of the base's chunks begins at `offset` of its stream.
    fn cut_at(&self, offset: u64) -> bool;
    /// Whether the base's bytes `start..end` are whole chunks that may be taken (`start` a
    /// boundary already found).
    fn takes(&self, start: u64, end: u64) -> bool;
    /// Put the base's bytes `start..end` (whole chunks that [`Reuse::takes`]) into the
    /// stream where the writer is; everything written before has been flushed.
    fn refer(&self, start: u64, end: u64) -> std::io::Result<()>;
}

#[derive(Debug, Default)]
pub struct PackStats {
    /// Everything archived: files, directories, links.
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    /// Archive name → content digest, when asked for.
    pub manifest: BTreeMap<String, String>,
}

/// A source of entries in archive order: it calls `each` once per entry. The walk runs on its
/// own thread, so listing the tree overlaps with reading and compressing it.
pub type Walk<'a> = Box<dyn FnOnce(&mut dyn FnMut(Entry) -> Result<()>) -> Result<()> + Send + 'a>;

/// A walk over entries already listed.
#[cfg(test)]
pub fn replay(entries: &[Entry]) -> Walk<'_> {
    Box::new(move |each| entries.iter().cloned().try_for_each(each))
}

struct ReadAhead {
    /// Small files the walk has found and no reader has taken yet, in archive order.
    queue: VecDeque<(usize, Arc<Entry>)>,
    walked: bool,
    buffered: u64,
    done: HashMap<usize, Result<Vec<u8>>>,
    stop: bool,
}

/// Write the archive of what `walk` yields to `sink`. On error nothing is committed by the
/// caller, so the half-written stream is simply dropped.
pub fn pack<W: Write + Send>(walk: Walk, sink: W, opts: &PackOptions) -> Result<(W, PackStats)> {
    let state = Mutex::new(ReadAhead {
        queue: VecDeque::new(),
        walked: false,
        buffered: 0,
        done: HashMap::new(),
        stop: false,
    });
    let cv = Condvar::new();
    // Entries go to the writer in batches: one at a time, the writer (faster than the walk
    // when it reads nothing) would be woken once per entry.
    let (tx, rx) = sync_channel::<Vec<(usize, Arc<Entry>, bool)>>(64);
    let reuse = opts.reuse.as_deref();

    std::thread::scope(|s| {
        let (state, cv) = (&state, &cv);
        let walker = s.spawn(move || {
            let mut idx = 0usize;
            let mut batch = Vec::with_capacity(BATCH);
            let walked = walk(&mut |e: Entry| {
                let e = Arc::new(e);
                // What is likely taken from the base is not read ahead (if it is not, after
                // all, the writer reads it itself).
                let ahead =
                    e.kind == Kind::File && e.size <= SMALL && !reuse.is_some_and(|r| r.likely(&e));
                if ahead {
                    state.lock().unwrap().queue.push_back((idx, e.clone()));
                    cv.notify_all();
                }
                idx += 1;
                batch.push((idx - 1, e, ahead));
                if batch.len() < BATCH {
                    return Ok(());
                }
                tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .map_err(|_| anyhow!("the archive writer stopped"))
            });
            let walked = walked.and_then(|()| {
                tx.send(batch)
                    .map_err(|_| anyhow!("the archive writer stopped"))
            });
            state.lock().unwrap().walked = true;
            cv.notify_all();
            walked
        });
        for _ in 0..opts.readers.max(1) {
            s.spawn(move || reader(state, cv));
        }
        let written = write_tar(rx, sink, opts, state, cv);
        state.lock().unwrap().stop = true;
        cv.notify_all();
        let walked = walker.join().expect("the walk thread panicked");
        // A failed walk must fail the archive even though the writer saw a clean end.
        match (written, walked) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(done), Ok(())) => Ok(done),
        }
    })
}

fn reader(state: &Mutex<ReadAhead>, cv: &Condvar) {
    loop {
        let (idx, e) = {
            let mut st = state.lock().unwrap();
            loop {
                if st.stop {
                    return;
                }
                if st.buffered <= READ_AHEAD {
                    if let Some(next) = st.queue.pop_front() {
                        break next;
                    }
                    if st.walked {
                        return;
                    }
                }
                st = cv.wait(st).unwrap();
            }
        };
        let res = read_small(&e);
        let mut st = state.lock().unwrap();
        st.buffered += res.as_ref().map(|d| d.len() as u64).unwrap_or(0);
        st.done.insert(idx, res);
        cv.notify_all();
    }
}

fn read_small(e: &Entry) -> Result<Vec<u8>> {
    let mut f = File::open(&e.path).with_context(|| format!("cannot open {}", e.path.display()))?;
    // Read exactly the size the walk saw; growth or shrinking shows in the fstat after.
    let mut data = vec![0u8; e.size as usize];
    let mut got = 0;
    while got < data.len() {
        match f.read(&mut data[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", e.path.display()))
            }
        }
    }
    check_unchanged(e, &f, got as u64)?;
    Ok(data)
}

/// Bazel's concurrent-change guard: a file whose size or mtime moved while we read it would be
/// stored torn, so the save is refused instead.
fn check_unchanged(e: &Entry, f: &File, read: u64) -> Result<()> {
    let m = f.metadata()?;
    if read != e.size || m.len() != e.size || platform::mtime(&m) != e.mtime {
        bail!(
            "{} changed while it was being saved; nothing was stored. Save after the step that writes it has finished",
            e.path.display()
        );
    }
    Ok(())
}

fn write_tar<W: Write + Send>(
    entries: Receiver<Vec<(usize, Arc<Entry>, bool)>>,
    sink: W,
    opts: &PackOptions,
    state: &Mutex<ReadAhead>,
    cv: &Condvar,
) -> Result<(W, PackStats)> {
    let mut w = Writer {
        tar: tar::Builder::new(encoder(sink, opts)?),
        stats: PackStats::default(),
        opts,
        state,
        cv,
    };
    let mut run = Run::default();
    for (i, e, ahead) in entries.into_iter().flatten() {
        stopped()?;
        w.stats.entries += 1;
        if e.kind == Kind::File {
            w.stats.files += 1;
            w.stats.bytes += e.size;
            if let Some(p) = &opts.progress {
                p.fetch_add(e.size, Ordering::Relaxed);
            }
        }
        let shown = crate::select::shown(&e.name);
        let (h, pax) = header(&e, &shown, opts.manifest, &mut w.stats.manifest);
        let Some(reuse) = opts.reuse.as_deref().filter(|_| !opts.manifest) else {
            w.append((i, &e, ahead), &h, &pax, shown)?;
            continue;
        };
        let at = match reuse.span(&e, &headers(&h, &pax)?) {
            Some((start, end)) if run.at == Some(start) => Some((start, end)),
            Some((start, end)) if reuse.cut_at(start) => {
                w.finish(&mut run, reuse)?;
                (run.from, run.cut) = (start, start);
                Some((start, end))
            }
            _ => None,
        };
        let Some((_, end)) = at else {
            w.finish(&mut run, reuse)?;
            w.append((i, &e, ahead), &h, &pax, shown)?;
            continue;
        };
        run.at = Some(end);
        run.held.push((i, e, ahead, h, pax));
        if reuse.takes(run.cut, end) {
            // The run reaches a chunk boundary of the base: what it holds is taken.
            run.cut = end;
            run.held.clear();
        }
    }
    if let Some(reuse) = opts.reuse.as_deref() {
        w.finish(&mut run, reuse)?;
    }
    stopped()?;
    let sink = w.tar.into_inner()?.finish()?;
    Ok((sink, w.stats))
}

/// Entries taken from the base: `from..cut` of its stream is taken when the run ends; the
/// entries since `cut` wait, to be taken too if the run reaches the next chunk boundary,
/// else written as they are.
#[derive(Default)]
struct Run {
    from: u64,
    cut: u64,
    /// Where the run is in the base's stream (None: no run).
    at: Option<u64>,
    held: Vec<(usize, Arc<Entry>, bool, tar::Header, Pax)>,
}

struct Writer<'a, W: Write> {
    tar: tar::Builder<Out<W>>,
    stats: PackStats,
    opts: &'a PackOptions,
    state: &'a Mutex<ReadAhead>,
    cv: &'a Condvar,
}

impl<W: Write> Writer<'_, W> {
    /// Write one entry: its headers, and a file's data (read ahead, or here).
    fn append(
        &mut self,
        (i, e, ahead): (usize, &Entry, bool),
        h: &tar::Header,
        pax: &Pax,
        shown: String,
    ) -> Result<()> {
        if !pax.is_empty() {
            self.tar
                .append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice())))?;
        }
        if e.kind != Kind::File {
            self.tar.append(h, std::io::empty())?;
            return Ok(());
        }
        let (tar, opts) = (&mut self.tar, self.opts);
        if let Some(digest) = append_file(tar, h, e, (i, ahead), opts, self.state, self.cv)? {
            self.stats.manifest.insert(shown, digest);
        }
        Ok(())
    }

    /// End a run that did not reach a chunk boundary: what it holds is written.
    /// End a run: what reached a chunk boundary is taken (one message for the whole run),
    /// what follows is written.
    fn finish(&mut self, run: &mut Run, reuse: &dyn Reuse) -> Result<()> {
        if run.at.is_some() && run.cut > run.from {
            self.tar.get_mut().flush()?;
            reuse.refer(run.from, run.cut)?;
        }
        self.release(run)
    }

    fn release(&mut self, run: &mut Run) -> Result<()> {
        run.at = None;
        for (i, e, ahead, h, pax) in std::mem::take(&mut run.held) {
            let shown = crate::select::shown(&e.name);
            self.append((i, &e, ahead), &h, &pax, shown)?;
        }
        Ok(())
    }
}

/// An entry's headers as the stream holds them: pax records, then its own.
fn headers(h: &tar::Header, pax: &Pax) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::with_capacity(4096));
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice())))?;
    }
    b.get_mut().extend_from_slice(h.as_bytes());
    let mut out = b.into_inner()?;
    // Without the end-of-archive blocks `into_inner` adds.
    out.truncate(out.len() - 1024);
    Ok(out)
}

/// A save asked to stop (SIGINT, SIGTERM) ends between files: what it wrote is dropped with
/// the upload, which the store then aborts.
fn stopped() -> Result<()> {
    match crate::platform::interrupted() {
        Some(sig) => anyhow::bail!(
            "{}: nothing is saved, and what the save had written to the store is removed",
            crate::platform::stopped_by(sig)
        ),
        None => Ok(()),
    }
}

/// The tar stream's way out: through zstd, or as it is.
enum Out<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Raw(W),
}

impl<W: Write> Out<W> {
    fn finish(self) -> std::io::Result<W> {
        match self {
            Out::Zstd(z) => z.finish(),
            Out::Raw(mut w) => w.flush().map(|()| w),
        }
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Zstd(z) => z.write(buf),
            Out::Raw(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Zstd(z) => z.flush(),
            Out::Raw(w) => w.flush(),
        }
    }
}

fn encoder<W: Write>(sink: W, opts: &PackOptions) -> Result<Out<W>> {
    if opts.raw {
        return Ok(Out::Raw(sink));
    }
    let mut enc = zstd::stream::write::Encoder::new(sink, opts.level)?;
    if opts.workers > 1 {
        enc.multithread(opts.workers)?;
    }
    // Readable by `unzstd` without --long: never a window above 2^27.
    if opts.level > 19 {
        enc.window_log(27)?;
    }
    enc.include_checksum(true)?;
    Ok(Out::Zstd(enc))
}

type Pax = Vec<(&'static str, Vec<u8>)>;

/// The entry's header and the pax records it needs (long names, nanosecond mtimes, large
/// sizes). Links and symlinks go into the layer manifest here; file digests once read.
fn header(
    e: &Entry,
    shown: &str,
    manifest: bool,
    digests: &mut BTreeMap<String, String>,
) -> (tar::Header, Pax) {
    let mut pax: Pax = Vec::new();
    let mut h = tar::Header::new_ustar();
    h.set_mode(e.mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(e.mtime.0.max(0) as u64);
    if e.mtime.1 != 0 {
        pax.push((
            "mtime",
            format!("{}.{:09}", e.mtime.0, e.mtime.1).into_bytes(),
        ));
    }
    let name = match (&e.kind, e.name == b".") {
        (Kind::Dir, false) => [&e.name[..], b"/"].concat(),
        (Kind::Dir, true) => b"./".to_vec(),
        _ => e.name.clone(),
    };
    set_name(&mut h, &name, &mut pax, "path", 100);
    h.set_size(0);
    match &e.kind {
        Kind::Dir => h.set_entry_type(tar::EntryType::Directory),
        Kind::Symlink(target) => {
            h.set_entry_type(tar::EntryType::Symlink);
            set_link(&mut h, platform::bytes(target.as_os_str()), &mut pax);
            if manifest {
                let to = crate::select::shown(platform::bytes(target.as_os_str()));
                digests.insert(shown.to_string(), format!("symlink:{to}"));
            }
        }
        Kind::HardLink(first) => {
            h.set_entry_type(tar::EntryType::Link);
            set_link(&mut h, first, &mut pax);
            if let Some(d) = digests.get(&crate::select::shown(first)).cloned() {
                digests.insert(shown.to_string(), d);
            }
        }
        Kind::File => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(e.size);
            if e.size >= 0o77777777777 {
                pax.push(("size", e.size.to_string().into_bytes()));
            }
        }
    }
    if pax.iter().any(|(_, v)| std::str::from_utf8(v).is_err()) {
        // pax records are UTF-8 unless the header says otherwise (as GNU tar writes them).
        pax.insert(0, ("hdrcharset", b"BINARY".to_vec()));
    }
    h.set_cksum();
    (h, pax)
}

/// Append a regular file: small ones from the read-ahead, large ones streamed and checked for
/// changes while read. Returns its sha256 when the manifest wants one.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    h: &tar::Header,
    e: &Entry,
    (i, ahead): (usize, bool),
    opts: &PackOptions,
    state: &Mutex<ReadAhead>,
    cv: &Condvar,
) -> Result<Option<String>> {
    if ahead {
        let data = wait_for(i, state, cv)?;
        let digest = opts.manifest.then(|| hex::encode(Sha256::digest(&data)));
        tar.append(h, data.as_slice())?;
        return Ok(digest);
    }
    let f = File::open(&e.path).with_context(|| format!("cannot open {}", e.path.display()))?;
    let mut src = DigestReader {
        inner: f.take(e.size),
        hasher: opts.manifest.then(Sha256::new),
        read: 0,
    };
    tar.append(h, &mut src)
        .with_context(|| format!("cannot read {}", e.path.display()))?;
    let digest = src.hasher.take().map(|hs| hex::encode(hs.finalize()));
    check_unchanged(e, src.inner.get_ref(), src.read)?;
    Ok(digest)
}

fn wait_for(i: usize, state: &Mutex<ReadAhead>, cv: &Condvar) -> Result<Vec<u8>> {
    let mut st = state.lock().unwrap();
    loop {
        if let Some(r) = st.done.remove(&i) {
            if let Ok(d) = &r {
                st.buffered -= d.len() as u64;
            }
            cv.notify_all();
            return r;
        }
        st = cv.wait(st).unwrap();
    }
}

struct DigestReader<R> {
    inner: R,
    hasher: Option<Sha256>,
    read: u64,
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// Put a name in the ustar field when it fits as ASCII, else in a pax record (the ustar field
/// then holds a truncated copy for readers that ignore pax). Written as raw bytes: the tar
/// crate's setters refuse the `../` names the GitHub layout needs.
fn set_name(
    h: &mut tar::Header,
    name: &[u8],
    pax: &mut Vec<(&'static str, Vec<u8>)>,
    key: &'static str,
    max: usize,
) {
    if name.len() > max || !name.is_ascii() {
        pax.push((key, name.to_vec()));
    }
    let field: &mut [u8] = if key == "path" {
        &mut h.as_old_mut().name
    } else {
        &mut h.as_old_mut().linkname
    };
    let n = name.len().min(max);
    field[..n].copy_from_slice(&name[..n]);
    field[n..].fill(0);
}

fn set_link(h: &mut tar::Header, target: &[u8], pax: &mut Vec<(&'static str, Vec<u8>)>) {
    set_name(h, target, pax, "linkpath", 100);
}
