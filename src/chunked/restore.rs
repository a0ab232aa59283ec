//! Restoring a chunked entry: the manifest's chunks, neighbouring frames of one pack joined
//! into one ranged read, fetched by several readers a bounded window ahead, each frame unpacked
//! once (lately unpacked frames are kept for repeated chunks), each chunk checked against its
//! BLAKE3, and handed on in stream order as one `Read` for the extractor.

use super::{ChunkCache, Manifest, Packs, FRAME_LIMIT};
use anyhow::{anyhow, ensure, Result};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};

/// A ranged read joins neighbouring frames up to this many bytes, stored and unpacked.
const RANGE_MAX: u64 = 4 << 20;
/// How many ranges may be fetched ahead of the one being read.
const WINDOW: usize = 8;

/// Neighbouring frames of one pack, and the chunks in them (`chunks` indexes the manifest).
struct Range {
    pack: u32,
    start: u64,
    end: u64,
    /// Unpacked bytes.
    len: u64,
    chunks: std::ops::Range<usize>,
}

fn ranges(m: &Manifest) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    let mut frame = u64::MAX;
    for (i, c) in m.chunks.iter().enumerate() {
        let end = c.offset + c.stored as u64;
        match out.last_mut() {
            // Another chunk of the same frame, or the frame right after it.
            Some(r)
                if r.pack == c.pack
                    && (c.offset == frame
                        || (r.end == c.offset
                            && end - r.start <= RANGE_MAX
                            && r.len + c.len as u64 <= RANGE_MAX)) =>
            {
                r.end = r.end.max(end);
                r.len += c.len as u64;
                r.chunks.end = i + 1;
            }
            _ => out.push(Range {
                pack: c.pack,
                start: c.offset,
                end,
                len: c.len as u64,
                chunks: i..i + 1,
            }),
        }
        frame = c.offset;
    }
    out
}

/// The tar stream of a chunked entry, as a `Read`.
pub struct ChunkSource {
    slots: Vec<Receiver<io::Result<Vec<u8>>>>,
    next: usize,
    cur: Vec<u8>,
    pos: usize,
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
        let manifest = Arc::new(manifest);
        let ranges = Arc::new(ranges(&manifest));
        let (senders, slots): (Vec<_>, Vec<_>) = ranges.iter().map(|_| sync_channel(1)).unzip();
        let senders = Arc::new(senders);
        let next = Arc::new(AtomicUsize::new(0));
        let taken = Arc::new((Mutex::new(0usize), Condvar::new()));
        let failed = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(Frames::default());
        for _ in 0..readers.max(1) {
            let (packs, manifest, ranges, senders) = (
                packs.clone(),
                manifest.clone(),
                ranges.clone(),
                senders.clone(),
            );
            let (next, taken, failed) = (next.clone(), taken.clone(), failed.clone());
            let cache = cache.clone();
            let frames = frames.clone();
            std::thread::spawn(move || {
                let mut unzstd = match zstd::bulk::Decompressor::new() {
                    Ok(d) => d,
                    Err(_) => return,
                };
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(r) = ranges.get(i) else { return };
                    // Stay within the window: wait until the reader has taken enough ranges.
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
                    let cached = cache
                        .as_deref()
                        .and_then(|c| from_cache(c, &manifest, r, &mut unzstd));
                    let got = match cached {
                        Some(data) => Ok(data),
                        None => fetch(
                            &*packs,
                            &manifest,
                            r,
                            cache.as_deref(),
                            &mut unzstd,
                            &frames,
                        ),
                    };
                    let got = got.map_err(|e| {
                        let gone = e.chain().any(|c| {
                            c.downcast_ref::<io::Error>()
                                .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
                        });
                        if e.is::<Damaged>() {
                            quarantine(&*packs, &manifest.packs[r.pack as usize]);
                        } else if !gone {
                            failed.store(true, Ordering::SeqCst);
                        }
                        io::Error::other(format!("{e:#}"))
                    });
                    if senders[i].send(got).is_err() {
                        return;
                    }
                }
            });
        }
        ChunkSource {
            slots,
            next: 0,
            cur: Vec::new(),
            pos: 0,
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
            let Some(slot) = self.slots.get(self.next) else {
                return Ok(0);
            };
            let got = slot
                .recv()
                .map_err(|_| io::Error::other("a chunk reader stopped"))
                .and_then(|r| r);
            self.cur = got.inspect_err(|e| self.error = Some(e.to_string()))?;
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

/// Frames unpacked lately, shared by the readers: a tree with repeated chunks refers back to
/// frames read before, which are then neither read nor unpacked again. Bounded in bytes; the
/// oldest go first.
#[derive(Default)]
struct Frames(Mutex<FramesInner>);

#[derive(Default)]
struct FramesInner {
    kept: std::collections::HashMap<(u32, u64), Arc<Vec<u8>>>,
    order: std::collections::VecDeque<(u32, u64)>,
    bytes: usize,
}

/// What `Frames` may hold.
const FRAMES_KEPT: usize = 32 << 20;

impl Frames {
    fn get(&self, pack: u32, offset: u64) -> Option<Arc<Vec<u8>>> {
        self.0.lock().unwrap().kept.get(&(pack, offset)).cloned()
    }

    fn keep(&self, pack: u32, offset: u64, frame: Arc<Vec<u8>>) {
        let mut g = self.0.lock().unwrap();
        if frame.len() > FRAMES_KEPT / 4 || g.kept.contains_key(&(pack, offset)) {
            return;
        }
        g.bytes += frame.len();
        g.kept.insert((pack, offset), frame);
        g.order.push_back((pack, offset));
        while g.bytes > FRAMES_KEPT {
            let Some(old) = g.order.pop_front() else {
                break;
            };
            if let Some(f) = g.kept.remove(&old) {
                g.bytes -= f.len();
            }
        }
    }
}

/// A frame's bytes, unpacked: as many as its header says, at most `FRAME_LIMIT`.
fn unpack_frame(unzstd: &mut zstd::bulk::Decompressor, stored: &[u8]) -> Result<Vec<u8>> {
    let size = zstd::zstd_safe::get_frame_content_size(stored)
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("no content size in the frame"))?;
    ensure!(size <= FRAME_LIMIT as u64, "a frame of {size} bytes");
    let data = unzstd.decompress(stored, size as usize)?;
    ensure!(
        data.len() as u64 == size,
        "the frame is shorter than its header says"
    );
    Ok(data)
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
    let whole = packs
        .get(name, 0..size)
        .is_ok_and(|b| blake3::hash(&b).to_hex().as_str() == name);
    if !whole {
        let _ = packs.delete(name);
    }
}

/// A chunk whose bytes are not what the manifest names.
#[derive(Debug)]
struct Damaged(String);

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Damaged {}

/// The range's chunks from the local cache, if it has them all and they pass their checks.
fn from_cache(
    cache: &ChunkCache,
    m: &Manifest,
    r: &Range,
    unzstd: &mut zstd::bulk::Decompressor,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(r.len as usize);
    for c in &m.chunks[r.chunks.clone()] {
        let stored = cache.get(&c.id)?;
        match unzstd.decompress(&stored, c.len as usize) {
            Ok(data) if data.len() == c.len as usize && *blake3::hash(&data).as_bytes() == c.id => {
                out.extend_from_slice(&data)
            }
            _ => {
                cache.drop_chunk(&c.id);
                return None;
            }
        }
    }
    Some(out)
}

fn fetch(
    packs: &dyn Packs,
    m: &Manifest,
    r: &Range,
    cache: Option<&ChunkCache>,
    unzstd: &mut zstd::bulk::Decompressor,
    frames: &Frames,
) -> Result<Vec<u8>> {
    let name = &m.packs[r.pack as usize];
    let chunks = &m.chunks[r.chunks.clone()];
    // Read only when a frame is not kept (a range of repeated chunks often is).
    let mut bytes: Option<Vec<u8>> = None;
    let mut out = Vec::new();
    let mut frame: Option<(u64, Arc<Vec<u8>>)> = None;
    for c in chunks {
        if frame.as_ref().is_none_or(|(at, _)| *at != c.offset) {
            let unpacked = match frames.get(r.pack, c.offset) {
                Some(f) => f,
                None => {
                    if bytes.is_none() {
                        let got = packs.get(name, r.start..r.end)?;
                        ensure!(
                            got.len() as u64 == r.end - r.start,
                            Damaged(format!("pack {name} is shorter than its entry says"))
                        );
                        bytes = Some(got);
                    }
                    let all = bytes.as_deref().expect("read above");
                    let at = (c.offset - r.start) as usize;
                    let stored = &all[at..at + c.stored as usize];
                    let f = Arc::new(unpack_frame(unzstd, stored).map_err(|e| {
                        anyhow!(Damaged(format!(
                            "a frame in pack {name} does not decompress: {e}"
                        )))
                    })?);
                    frames.keep(r.pack, c.offset, f.clone());
                    f
                }
            };
            frame = Some((c.offset, unpacked));
        }
        let unpacked = &frame.as_ref().expect("unpacked above").1;
        let data = unpacked
            .get(c.skip as usize..c.skip as usize + c.len as usize)
            .filter(|d| *blake3::hash(d).as_bytes() == c.id)
            .ok_or_else(|| {
                Damaged(format!(
                    "a chunk in pack {name} is not the one the entry names"
                ))
            })?;
        out.extend_from_slice(data);
        if let Some(cache) = cache {
            if let Ok(alone) = zstd::bulk::compress(data, 1) {
                cache.put(&c.id, &alone);
            }
        }
    }
    Ok(out)
}
