//! Restoring a chunked entry. The stream is cut into units of consecutive chunks (about
//! 4 MiB, ending where a frame ends), which several readers fetch a bounded window ahead and
//! hand on in stream order as one `Read` for the extractor. A unit's frames are read with one
//! ranged read per run of neighbouring frames in a pack; each frame is unpacked once, each
//! chunk checked against its BLAKE3. Chunks the stream repeats and frames read lately are
//! kept in memory (`reuse`), so a repeat neither reads nor unpacks its frame again.

use super::frame::{in_place, unpack_frame, unpack_into};
use super::reuse::{Frames, Repeats};
use super::{Chunk, ChunkCache, Manifest, Packs, FRAME_LIMIT};
use anyhow::anyhow;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};

/// A unit holds about this many bytes of the stream.
const UNIT_LEN: u64 = 4 << 20;
/// A ranged read joins neighbouring frames up to this many bytes.
const RANGE_MAX: u64 = 4 << 20;
/// How many units may be fetched ahead of the one being read.
const WINDOW: usize = 4;
/// Channels between the readers and the stream: one per unit of the window, and the one read.
const SLOTS: usize = WINDOW + 1;

/// Consecutive chunks of the stream (indexes into the manifest), and their length.
struct Unit {
    chunks: std::ops::Range<usize>,
    len: u64,
}

/// The stream in units: a unit grows to `UNIT_LEN`, then on to the end of the frame it is
/// in, so that neighbouring units seldom unpack one frame twice. A chunk that repeats an
/// earlier one (its frame is elsewhere) neither ends the frame nor begins one.
fn units(m: &Manifest, repeats: &Repeats) -> Vec<Unit> {
    // Where each frame has the last chunk that the stream has there first.
    let first: Vec<bool> = repeats.firsts(m);
    let mut last = std::collections::HashMap::new();
    for (i, c) in m.chunks.iter().enumerate() {
        if first[i] {
            last.insert((c.pack, c.offset), i);
        }
    }
    let mut out: Vec<Unit> = Vec::new();
    let mut open = None;
    for (i, c) in m.chunks.iter().enumerate() {
        let in_open = open.is_some_and(|f| last.get(&f).is_some_and(|&end| end >= i));
        match out.last_mut() {
            Some(u) if u.len < UNIT_LEN || (in_open && u.len < UNIT_LEN + FRAME_LIMIT as u64) => {
                u.len += c.len as u64;
                u.chunks.end = i + 1;
            }
            _ => out.push(Unit {
                chunks: i..i + 1,
                len: c.len as u64,
            }),
        }
        if first[i] {
            open = Some((c.pack, c.offset));
        }
    }
    out
}

/// What every reader shares.
struct Reader {
    packs: Arc<dyn Packs>,
    manifest: Manifest,
    cache: Option<Arc<ChunkCache>>,
    frames: Frames,
    repeats: Repeats,
    /// Unit buffers the extractor is done with, for the next units: fresh 4 MiB buffers
    /// would each cost a round of page faults.
    spare: Mutex<Vec<Vec<u8>>>,
    /// Buffers that frames too large to keep are unpacked into, at most `WINDOW` of them.
    scratch: Mutex<Vec<Vec<u8>>>,
    /// Packs found damaged and looked at once already (by any reader).
    judged: Mutex<std::collections::HashSet<u32>>,
}

/// The tar stream of a chunked entry, as a `Read`.
pub struct ChunkSource {
    /// Unit `i` arrives in slot `i % SLOTS`: the window keeps a slot's next unit from being
    /// read before the extractor has taken the one before it.
    slots: Vec<Receiver<io::Result<Vec<u8>>>>,
    units: usize,
    next: usize,
    cur: Vec<u8>,
    pos: usize,
    shared: Arc<Reader>,
    taken: Arc<(Mutex<usize>, Condvar)>,
    failed: Arc<AtomicBool>,
    /// The first error, returned again to any later read.
    error: Option<String>,
}

impl ChunkSource {
    /// Start `readers` threads fetching the entry's chunks from `packs`.
    pub fn start(
        packs: Arc<dyn Packs>,
        manifest: Manifest,
        readers: usize,
        cache: Option<Arc<ChunkCache>>,
    ) -> ChunkSource {
        let repeats = Repeats::new(&manifest);
        let units = Arc::new(units(&manifest, &repeats));
        let (senders, slots): (Vec<_>, Vec<_>) = (0..SLOTS).map(|_| sync_channel(1)).unzip();
        let n_units = units.len();
        let senders = Arc::new(senders);
        let next = Arc::new(AtomicUsize::new(0));
        let taken = Arc::new((Mutex::new(0usize), Condvar::new()));
        let failed = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Reader {
            repeats,
            frames: Frames::default(),
            spare: Mutex::default(),
            scratch: Mutex::default(),
            judged: Mutex::default(),
            packs,
            manifest,
            cache,
        });
        for _ in 0..readers.max(1) {
            let (units, senders, shared) = (units.clone(), senders.clone(), shared.clone());
            let (next, taken, failed) = (next.clone(), taken.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut unzstd = match zstd::bulk::Decompressor::new() {
                    Ok(d) => d,
                    Err(_) => return,
                };
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(u) = units.get(i) else { return };
                    // Stay within the window: wait until the reader has taken enough units.
                    let (lock, cv) = &*taken;
                    let mut t = lock.lock().unwrap();
                    while *t != usize::MAX && i >= *t + WINDOW {
                        t = cv.wait(t).unwrap();
                    }
                    let gave_up = *t == usize::MAX;
                    drop(t);
                    if gave_up {
                        return;
                    }
                    // A panic must not leave the unit unanswered: the stream would wait on it.
                    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        shared.read(u, &units, &taken, &mut unzstd)
                    }))
                    .unwrap_or_else(|_| Err(ReadError::Failed(anyhow!("a chunk reader failed"))));
                    // Only bytes that fail their own hash (or a range the store says is past
                    // the pack's end) are the entry's fault; anything else, a pack that is not
                    // there included (a proxy's 404, a name another manifest claims), is the
                    // store's: the entry stays.
                    let got = read.map_err(|e| match e {
                        ReadError::Damaged { pack, what } => {
                            if shared.judged.lock().unwrap().insert(pack) {
                                quarantine(&*shared.packs, &shared.manifest.packs[pack as usize]);
                            }
                            io::Error::other(what)
                        }
                        ReadError::Failed(e) => {
                            failed.store(true, Ordering::SeqCst);
                            io::Error::other(format!("{e:#}"))
                        }
                        ReadError::Stopped => io::Error::other("the restore stopped"),
                    });
                    if senders[i % SLOTS].send(got).is_err() {
                        return;
                    }
                }
            });
        }
        ChunkSource {
            slots,
            units: n_units,
            next: 0,
            cur: Vec::new(),
            pos: 0,
            shared,
            taken,
            failed,
            error: None,
        }
    }

    /// Whether reading failed for a reason other than the entry itself (the network, the
    /// store): then it is not to be forgotten as corrupt.
    pub fn source_failed(&self) -> Arc<AtomicBool> {
        self.failed.clone()
    }
}

impl Drop for ChunkSource {
    fn drop(&mut self) {
        // Readers waiting for the window give up.
        let (lock, cv) = &*self.taken;
        *lock.lock().unwrap() = usize::MAX;
        cv.notify_all();
    }
}

impl Read for ChunkSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.error {
            return Err(io::Error::other(e.clone()));
        }
        while self.pos == self.cur.len() {
            if self.next == self.units {
                return Ok(0);
            }
            let slot = &self.slots[self.next % SLOTS];
            let got = slot
                .recv()
                .map_err(|_| io::Error::other("a chunk reader stopped"))
                .and_then(|r| r);
            let done = std::mem::replace(
                &mut self.cur,
                got.inspect_err(|e| self.error = Some(e.to_string()))?,
            );
            let mut spare = self.shared.spare.lock().unwrap();
            // A buffer that a hostile manifest's huge unit grew is not kept.
            if spare.len() < WINDOW && done.capacity() <= 2 * UNIT_LEN as usize {
                spare.push(done);
            }
            drop(spare);
            self.pos = 0;
            self.next += 1;
            let (lock, cv) = &*self.taken;
            *lock.lock().unwrap() = self.next;
            cv.notify_all();
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A damaged pack would be kept forever (its name exists, so saves never write it again):
/// when its bytes no longer hash to its name, it goes, and the next save writes it whole. A
/// pack that is whole stays, whatever a wrong manifest said of it.
fn quarantine(packs: &dyn Packs, name: &str) {
    let Some(size) = packs
        .list()
        .ok()
        .and_then(|l| l.into_iter().find(|p| p.name == name))
        .map(|p| p.size)
    else {
        return;
    };
    // Only bytes read whole and hashing to another name condemn a pack: a read that failed
    // (a timeout, a throttled store) says nothing about it. Read in pieces: a pack the store
    // claims is huge costs time, never its size in memory.
    const PIECE: u64 = 8 << 20;
    let mut h = blake3::Hasher::new();
    let mut at = 0;
    while at < size {
        let end = (at + PIECE).min(size);
        match packs.get(name, at..end) {
            Ok(b) if b.len() as u64 == end - at => {
                h.update(&b);
            }
            _ => return,
        }
        at = end;
    }
    if h.finalize().to_hex().as_str() != name {
        let _ = packs.delete(name);
    }
}

/// Why a unit's bytes could not be had.
enum ReadError {
    /// Bytes that are not what the manifest names, in pack `pack` (an index into the
    /// manifest's packs): the entry's fault.
    Damaged { pack: u32, what: String },
    /// The store, the network: not the entry's.
    Failed(anyhow::Error),
    /// The stream was dropped while the unit waited: nobody reads it, and it says nothing of
    /// the entry or the store.
    Stopped,
}

impl From<anyhow::Error> for ReadError {
    fn from(e: anyhow::Error) -> Self {
        ReadError::Failed(e)
    }
}

impl From<crate::error::StoreError> for ReadError {
    fn from(e: crate::error::StoreError) -> Self {
        ReadError::Failed(e.into())
    }
}

impl Reader {
    /// A unit's bytes: chunks kept in memory or in the chunk cache first, the rest from
    /// their frames, each frame read and unpacked once. A chunk that an earlier unit reads
    /// first waits for that unit, which keeps it: unpacking its frame again would cost a whole
    /// frame for one chunk.
    fn read(
        &self,
        u: &Unit,
        units: &[Unit],
        taken: &(Mutex<usize>, Condvar),
        unzstd: &mut zstd::bulk::Decompressor,
    ) -> std::result::Result<Vec<u8>, ReadError> {
        let chunks = &self.manifest.chunks[u.chunks.clone()];
        let mut out = self.spare.lock().unwrap().pop().unwrap_or_default();
        out.clear();
        out.resize(u.len as usize, 0);
        // Where each chunk goes in `out`, and which are still to be read from their frames.
        let mut at = Vec::with_capacity(chunks.len());
        let (mut need, mut later, mut after) = (Vec::new(), Vec::new(), 0);
        let mut pos = 0;
        for (k, c) in chunks.iter().enumerate() {
            at.push(pos);
            pos += c.len as usize;
            if !self.fill_kept(c, &mut out[at[k]..pos], unzstd) {
                match self.repeats.first(&c.id, c.len) {
                    Some(f) if f < u.chunks.start => {
                        later.push(k);
                        after = after.max(f);
                    }
                    _ => need.push(k),
                }
            }
        }
        self.fetch(need, chunks, &at, &mut out, unzstd)?;
        if !later.is_empty() {
            // The unit that has the chunk first is done once the stream has taken it.
            let first = units.partition_point(|u| u.chunks.end <= after);
            let (lock, cv) = taken;
            let mut t = lock.lock().unwrap();
            while *t != usize::MAX && *t <= first {
                t = cv.wait(t).unwrap();
            }
            if *t == usize::MAX {
                // The stream is gone (a unit before failed): nothing more is read for it.
                return Err(ReadError::Stopped);
            }
            drop(t);
            later.retain(|&k| {
                let c = &chunks[k];
                !self.fill_kept(c, &mut out[at[k]..at[k] + c.len as usize], unzstd)
            });
            self.fetch(later, chunks, &at, &mut out, unzstd)?;
        }
        Ok(out)
    }

    /// Fill `dst` with chunk `c` from the stream's repeats or the chunk cache, if there.
    fn fill_kept(&self, c: &Chunk, dst: &mut [u8], unzstd: &mut zstd::bulk::Decompressor) -> bool {
        if let Some(data) = self.repeats.take(&c.id, c.len) {
            dst.copy_from_slice(&data);
        } else if let Some(data) = self.cached(c, unzstd) {
            dst.copy_from_slice(&data);
            self.repeats.gave(&c.id, &data);
        } else {
            return false;
        }
        true
    }

    /// Read the chunks `need` of the unit from their frames into `out`.
    fn fetch(
        &self,
        mut need: Vec<usize>,
        chunks: &[Chunk],
        at: &[usize],
        out: &mut [u8],
        unzstd: &mut zstd::bulk::Decompressor,
    ) -> std::result::Result<(), ReadError> {
        need.sort_by_key(|&k| (chunks[k].pack, chunks[k].offset));
        // Frames, each with the chunks it serves; those unpacked lately are served at once.
        let mut frames: Vec<(&Chunk, Vec<usize>)> = Vec::new();
        for k in need {
            let c = &chunks[k];
            match frames.last_mut() {
                Some((f, ks)) if (f.pack, f.offset) == (c.pack, c.offset) => ks.push(k),
                _ => frames.push((c, vec![k])),
            }
        }
        let mut to_read = Vec::new();
        for (f, ks) in frames {
            match self.frames.get(f.pack, f.offset) {
                Some(unpacked) => self.serve(&unpacked, f, &ks, chunks, at, out)?,
                None => to_read.push((f, ks)),
            }
        }
        // Runs of neighbouring frames in one pack, one ranged read each.
        let mut rest = &to_read[..];
        while let Some(((first, _), _)) = rest.split_first() {
            let mut end = first.offset + first.stored as u64;
            let mut n = 1;
            while let Some((f, _)) = rest.get(n) {
                let f_end = f.offset + f.stored as u64;
                if f.pack != first.pack || f.offset != end || f_end - first.offset > RANGE_MAX {
                    break;
                }
                end = f_end;
                n += 1;
            }
            let name = &self.manifest.packs[first.pack as usize];
            let bytes = self.packs.get(name, first.offset..end)?;
            if bytes.len() as u64 != end - first.offset {
                return Err(ReadError::Damaged {
                    pack: first.pack,
                    what: format!("pack {name} is shorter than its entry says"),
                });
            }
            for (f, ks) in &rest[..n] {
                let at_ = (f.offset - first.offset) as usize;
                self.unpack(
                    f,
                    &bytes[at_..at_ + f.stored as usize],
                    ks,
                    chunks,
                    at,
                    out,
                    unzstd,
                )?;
            }
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Serve the chunks `ks` from the frame `f`, whose stored bytes are `stored`.
    #[allow(clippy::too_many_arguments)]
    fn unpack(
        &self,
        f: &Chunk,
        stored: &[u8],
        ks: &[usize],
        chunks: &[Chunk],
        at: &[usize],
        out: &mut [u8],
        unzstd: &mut zstd::bulk::Decompressor,
    ) -> std::result::Result<(), ReadError> {
        let damaged = |e: anyhow::Error| ReadError::Damaged {
            pack: f.pack,
            what: format!(
                "a frame in pack {} does not decompress: {e}",
                self.manifest.packs[f.pack as usize]
            ),
        };
        // A frame the unit holds whole and in order (a cold entry's): unpacked in place.
        if let Some((place, cover, again)) = in_place(f, ks, chunks, at) {
            unpack_into(unzstd, stored, &mut out[place.clone()]).map_err(damaged)?;
            for &k in &cover {
                let c = &chunks[k];
                self.accept(f, c, Some(&out[at[k]..at[k] + c.len as usize]))?;
            }
            for &k in &again {
                let c = &chunks[k];
                let from = place.start + c.skip as usize;
                out.copy_within(from..from + c.len as usize, at[k]);
                self.accept(f, c, Some(&out[at[k]..at[k] + c.len as usize]))?;
            }
            return Ok(());
        }
        if !Frames::keeps(f.frame_len as usize) {
            // A frame too large to keep is unpacked into a buffer of the pool: a fresh one
            // for each would cost a round of page faults.
            let mut buf = self.scratch.lock().unwrap().pop().unwrap_or_default();
            let served = unpack_frame(unzstd, stored, f.frame_len, &mut buf)
                .map_err(damaged)
                .and_then(|()| self.serve(&buf, f, ks, chunks, at, out));
            let mut pool = self.scratch.lock().unwrap();
            if pool.len() < WINDOW {
                pool.push(buf);
            }
            return served;
        }
        let mut unpacked = Vec::new();
        unpack_frame(unzstd, stored, f.frame_len, &mut unpacked).map_err(damaged)?;
        let unpacked = Arc::new(unpacked);
        self.serve(&unpacked, f, ks, chunks, at, out)?;
        self.frames.keep(f.pack, f.offset, unpacked);
        Ok(())
    }

    /// Copy the chunks `ks` out of their unpacked frame, each checked against its BLAKE3.
    fn serve(
        &self,
        unpacked: &[u8],
        frame: &Chunk,
        ks: &[usize],
        chunks: &[Chunk],
        at: &[usize],
        out: &mut [u8],
    ) -> std::result::Result<(), ReadError> {
        for &k in ks {
            let c = &chunks[k];
            let data = unpacked.get(c.skip as usize..c.skip as usize + c.len as usize);
            let data = self.accept(frame, c, data)?;
            out[at[k]..at[k] + data.len()].copy_from_slice(data);
        }
        Ok(())
    }

    /// A chunk's bytes as read from `frame` (None: not there), if they are the chunk the
    /// entry names; kept for the stream's repeats and the local chunk cache.
    fn accept<'a>(
        &self,
        frame: &Chunk,
        c: &Chunk,
        data: Option<&'a [u8]>,
    ) -> std::result::Result<&'a [u8], ReadError> {
        let data = data
            .filter(|d| *blake3::hash(d).as_bytes() == c.id)
            .ok_or_else(|| ReadError::Damaged {
                pack: frame.pack,
                what: format!(
                    "a chunk in pack {} is not the one the entry names",
                    self.manifest.packs[frame.pack as usize]
                ),
            })?;
        self.repeats.gave(&c.id, data);
        if let Some(cache) = &self.cache {
            if let Ok(alone) = zstd::bulk::compress(data, 1) {
                cache.put(&c.id, &self.place(c), &alone);
            }
        }
        Ok(data)
    }

    /// A chunk from the local chunk cache, if there for the place the manifest names, and
    /// whole; a bad one is dropped.
    fn cached(&self, c: &Chunk, unzstd: &mut zstd::bulk::Decompressor) -> Option<Vec<u8>> {
        let cache = self.cache.as_deref()?;
        let place = self.place(c);
        let stored = cache.get(&c.id, &place)?;
        match unzstd.decompress(&stored, c.len as usize) {
            Ok(data) if data.len() == c.len as usize && *blake3::hash(&data).as_bytes() == c.id => {
                Some(data)
            }
            _ => {
                cache.drop_chunk(&c.id, &place);
                None
            }
        }
    }

    fn place(&self, c: &Chunk) -> super::cache::Place {
        super::cache::place_of(&self.manifest.packs[c.pack as usize], c)
    }
}
