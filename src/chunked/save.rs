//! Saving a chunked entry: the tar writer hands its stream in 1 MiB blocks to a cutter
//! thread, which cuts it at file boundaries and hands runs of neighbouring chunks (about 8 MiB) to
//! the workers; a worker names each chunk by its BLAKE3 and compresses the run's chunks the base
//! does not have as one zstd frame; one assembler places frames in packs in stream order and
//! hands sealed packs to an uploader. Memory stays bounded: the cutter waits while it is
//! `AHEAD` runs in front of the assembler, one pack fills, one waits, one goes up.

use super::cut::{Block, ChunkSink, Cutter, Gate, Run, BLOCK, RUN};
use super::{Chunk, ChunkCache, ChunkId, Manifest, Packs, PACK_TARGET};
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

/// How a chunked save cuts and compresses.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// zstd level of each chunk.
    pub level: i32,
    pub workers: usize,
    /// FastCDC's average chunk size (a power of two, 4 KiB to 1 MiB).
    pub avg_chunk: u32,
}

/// What a chunked save did (`chunks` in `save --json`).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct SaveStats {
    /// Length of the tar stream.
    #[serde(skip)]
    pub stream: u64,
    pub chunks: u64,
    /// Chunks found in the base (or earlier in this stream) and not stored again.
    pub reused: u64,
    /// Bytes of the stream taken from the base without reading the files (unchanged since
    /// the base's restore wrote them).
    pub unread: u64,
    /// Bytes of the packs this save uploaded.
    pub uploaded: u64,
    pub packs: u64,
    /// The entry's size in the store: its manifest and the frames it references, as stored.
    pub stored: u64,
}

/// A worker's answer for one run: each chunk's id, length and, unless the base has it, its
/// place in the run's frame; and the frame, compressed (empty when every chunk is known, None
/// when it could not be compressed).
struct Done {
    items: Vec<Item>,
    frame: Option<Vec<u8>>,
    /// The frame's length unpacked.
    frame_len: u32,
    /// With a chunk cache, each new chunk compressed alone for it: cached once its pack is
    /// uploaded, under its place there.
    alone: HashMap<ChunkId, Vec<u8>>,
}

struct Item {
    id: ChunkId,
    len: u32,
    skip: Option<u32>,
    /// One of the base's chunks, taken unread.
    unread: bool,
}

/// Hash a run's chunks and compress the new ones as one frame (and, with a cache, each alone
/// at level 1 for it). A run whose chunks are all new and distinct is compressed as it is.
fn pack_run(
    run: Run,
    known: &HashMap<ChunkId, Chunk>,
    zstd: &mut Option<zstd::bulk::Compressor<'static>>,
    cache: Option<&ChunkCache>,
) -> Done {
    // The base's chunks taken unread, by their place in the run: the assembler finds each
    // in the base.
    let mut taken = run.known.iter().peekable();
    let mut placed: HashMap<ChunkId, u32> = HashMap::new();
    let mut alone = HashMap::new();
    let mut items = Vec::with_capacity(run.lens.len());
    // The frame as offsets into the run: while every chunk so far is new and first, it is
    // the run's own prefix.
    let mut kept: Vec<std::ops::Range<usize>> = Vec::new();
    let (mut at, mut frame_len) = (0usize, 0u32);
    for (k, &len) in run.lens.iter().enumerate() {
        if let Some((_, id)) = taken.next_if(|(at, _)| *at as usize == k) {
            items.push(Item {
                id: *id,
                len,
                skip: None,
                unread: true,
            });
            continue;
        }
        let data = &run.data[at..at + len as usize];
        let id: ChunkId = blake3::hash(data).into();
        let skip = (!known.contains_key(&id)).then(|| {
            *placed.entry(id).or_insert_with(|| {
                if cache.is_some() {
                    if let Ok(b) = zstd::bulk::compress(data, 1) {
                        alone.insert(id, b);
                    }
                }
                kept.push(at..at + len as usize);
                frame_len += len;
                frame_len - len
            })
        });
        items.push(Item {
            id,
            len,
            skip,
            unread: false,
        });
        at += len as usize;
    }
    let whole = kept.len() == run.lens.len();
    let frame = match (kept.is_empty(), whole) {
        (true, _) => Some(Vec::new()),
        (false, true) => zstd.as_mut().and_then(|z| z.compress(&run.data).ok()),
        (false, false) => {
            let mut f = Vec::with_capacity(frame_len as usize);
            for r in kept {
                f.extend_from_slice(&run.data[r]);
            }
            zstd.as_mut().and_then(|z| z.compress(&f).ok())
        }
    };
    Done {
        items,
        frame,
        frame_len,
        alone,
    }
}

/// Save a chunked stream: `produce` writes the tar stream into the sink it is given (and
/// returns the sink when done). Chunks `base` has are referenced; new ones go to packs.
/// The manifest is returned, not stored: committing it is the caller's.
pub fn save<T>(
    packs: &dyn Packs,
    cache: Option<&ChunkCache>,
    base: &Manifest,
    tuning: Tuning,
    produce: impl FnOnce(ChunkSink) -> Result<(ChunkSink, T)>,
) -> Result<(T, Manifest, SaveStats)> {
    let known: HashMap<ChunkId, Chunk> = base.chunks.iter().map(|c| (c.id, *c)).collect();
    let Tuning { level, workers, .. } = tuning;
    let (jobs_tx, jobs_rx) = sync_channel::<(u64, Run)>(workers);
    let (done_tx, done_rx) = sync_channel::<(u64, Done)>(1);
    // The workers own the receiving end: when they stop, the sink's sends fail at once.
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            let (jobs, done, known) = (jobs_rx.clone(), done_tx.clone(), &known);
            s.spawn(move || {
                // One context per worker: making one per frame costs more than compressing.
                let mut zstd = zstd::bulk::Compressor::new(level).ok();
                loop {
                    let Ok((seq, run)) = jobs.lock().unwrap().recv() else {
                        return;
                    };
                    let done_run = pack_run(run, known, &mut zstd, cache);
                    if done.send((seq, done_run)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((done_tx, jobs_rx));
        let complete = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Gate::default());
        let (whole, known, moves) = (complete.clone(), &known, gate.clone());
        let assembler = s.spawn(move || {
            let done = assemble(packs, cache, base, known, done_rx, &whole, &moves);
            moves.close();
            done
        });
        let (blocks_tx, blocks_rx) = sync_channel::<Block>(4);
        let cutter = Cutter {
            buf: Vec::new(),
            at: 0,
            walk: Default::default(),
            avg: tuning.avg_chunk,
            seq: 0,
            chunks: 0,
            run: Run::default(),
            tx: jobs_tx,
            gate,
            complete,
        };
        let cut = s.spawn(move || cutter.run(blocks_rx));
        let sink = ChunkSink {
            block: Vec::with_capacity(BLOCK + (64 << 10)),
            tx: Some(blocks_tx),
        };
        let produced = produce(sink).and_then(|(sink, out)| {
            sink.finish()?;
            Ok(out)
        });
        let cut = cut.join().expect("the chunk cutter panicked");
        let produced = produced.and_then(|out| match cut {
            Ok(Some(sent)) => Ok((out, sent)),
            Ok(None) => bail!("the stream stopped short"),
            Err(e) => Err(e.into()),
        });
        let assembled = assembler.join().expect("the chunk assembler panicked");
        match (produced, assembled) {
            (Ok((out, sent)), Ok((manifest, stats))) => {
                if manifest.chunks.len() as u64 != sent {
                    bail!(
                        "a chunk worker failed: {sent} chunks cut, {} stored",
                        manifest.chunks.len()
                    );
                }
                Ok((out, manifest, stats))
            }
            // The producer's failure (a file that changed) ends the stream short...
            (Err(e), Err(a)) if a.is::<StoppedShort>() => Err(e),
            // ...and the assembler's (an upload) is why the producer stopped, if it did.
            (_, Err(e)) | (Err(e), _) => Err(e),
        }
    })
}

/// The assembler saw the stream end before the producer finished it.
#[derive(Debug)]
struct StoppedShort;

impl std::fmt::Display for StoppedShort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the stream stopped short")
    }
}

impl std::error::Error for StoppedShort {}

/// Put chunks in stream order into the manifest and new ones into packs.
fn assemble(
    packs: &dyn Packs,
    cache: Option<&ChunkCache>,
    base: &Manifest,
    known: &HashMap<ChunkId, Chunk>,
    done: Receiver<(u64, Done)>,
    complete: &AtomicBool,
    gate: &Gate,
) -> Result<(Manifest, SaveStats)> {
    let mut out = Manifest::default();
    let mut stats = SaveStats::default();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut fresh: HashMap<ChunkId, Chunk> = HashMap::new();
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    let mut filling: Option<(u32, Vec<u8>)> = None;
    // The new chunks of the filling pack compressed alone, for the chunk cache.
    let mut alone: Vec<(Chunk, Vec<u8>)> = Vec::new();
    std::thread::scope(|s| {
        // A rendezvous: one pack fills while the one before goes up, and no third waits.
        let (up_tx, up_rx) = sync_channel::<(String, Vec<u8>, Vec<(Chunk, Vec<u8>)>)>(0);
        let uploader = s.spawn(move || -> Result<()> {
            for (name, data, alone) in up_rx {
                packs.put(&name, data.into())?;
                for (c, b) in alone {
                    if let Some(cache) = cache {
                        cache.put(&c.id, &super::cache::place_of(&name, &c), &b);
                    }
                }
            }
            Ok(())
        });
        let mut seal = |out: &mut Manifest,
                        filling: &mut Option<(u32, Vec<u8>)>,
                        alone: &mut Vec<(Chunk, Vec<u8>)>|
         -> Result<()> {
            if let Some((slot, data)) = filling.take() {
                let name = blake3::hash(&data).to_hex().to_string();
                stats.uploaded += data.len() as u64;
                stats.packs += 1;
                out.packs[slot as usize] = name.clone();
                up_tx
                    .send((name, data, std::mem::take(alone)))
                    .map_err(|_| anyhow!("the pack upload stopped"))?;
            }
            Ok(())
        };
        let result = (|| -> Result<()> {
            for (seq, d) in done {
                waiting.insert(seq, d);
                while let Some(mut d) = waiting.remove(&next) {
                    next += 1;
                    let frame = d
                        .frame
                        .ok_or_else(|| anyhow!("a frame could not be compressed"))?;
                    // The run's frame goes into the pack being filled.
                    let (slot, offset) = if frame.is_empty() {
                        (u32::MAX, 0)
                    } else {
                        let (slot, data) = filling.get_or_insert_with(|| {
                            out.packs.push(String::new());
                            let slot = out.packs.len() as u32 - 1;
                            (slot, Vec::with_capacity(PACK_TARGET + RUN + (1 << 20)))
                        });
                        data.extend_from_slice(&frame);
                        (*slot, (data.len() - frame.len()) as u64)
                    };
                    for item in d.items {
                        stats.chunks += 1;
                        stats.stream += item.len as u64;
                        if item.unread {
                            stats.unread += item.len as u64;
                        }
                        let chunk = if let Some(c) = fresh.get(&item.id) {
                            stats.reused += 1;
                            *c
                        } else if let Some(c) = known.get(&item.id) {
                            stats.reused += 1;
                            let name = &base.packs[c.pack as usize];
                            let pack = *index.entry(name.clone()).or_insert_with(|| {
                                out.packs.push(name.clone());
                                out.packs.len() as u32 - 1
                            });
                            Chunk { pack, ..*c }
                        } else {
                            let skip = item
                                .skip
                                .ok_or_else(|| anyhow!("a new chunk outside its frame"))?;
                            let c = Chunk {
                                id: item.id,
                                pack: slot,
                                offset,
                                stored: frame.len() as u32,
                                frame_len: d.frame_len,
                                skip,
                                len: item.len,
                            };
                            fresh.insert(item.id, c);
                            if let Some(b) = d.alone.remove(&item.id) {
                                alone.push((c, b));
                            }
                            c
                        };
                        out.chunks.push(chunk);
                    }
                    if filling
                        .as_ref()
                        .is_some_and(|(_, d)| d.len() >= PACK_TARGET)
                    {
                        seal(&mut out, &mut filling, &mut alone)?;
                    }
                }
                gate.set(next);
            }
            if !complete.load(Ordering::SeqCst) {
                bail!(StoppedShort);
            }
            seal(&mut out, &mut filling, &mut alone)
        })();
        // The uploader ends when its channel closes.
        drop(up_tx);
        let uploaded = uploader.join().expect("the pack uploader panicked");
        result.and(uploaded)
    })?;
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunked::PackInfo;
    use crate::error::StoreResult;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::io::Write;

    /// Packs in memory, and how many bytes were read from them.
    #[derive(Default)]
    struct Mem(
        Mutex<BTreeMap<String, Vec<u8>>>,
        std::sync::atomic::AtomicU64,
    );

    impl Packs for Mem {
        fn put(&self, name: &str, data: bytes::Bytes) -> StoreResult<()> {
            self.0.lock().unwrap().insert(name.into(), data.to_vec());
            Ok(())
        }
        fn get(&self, name: &str, r: std::ops::Range<u64>) -> StoreResult<Vec<u8>> {
            self.1.fetch_add(r.end - r.start, Ordering::SeqCst);
            Ok(self.0.lock().unwrap()[name][r.start as usize..r.end as usize].to_vec())
        }
        fn list(&self) -> StoreResult<Vec<PackInfo>> {
            Ok(Vec::new())
        }
        fn delete(&self, name: &str) -> StoreResult<()> {
            self.0.lock().unwrap().remove(name);
            Ok(())
        }
        fn read_note(&self) -> StoreResult<Option<Vec<u8>>> {
            Ok(None)
        }
        fn write_note(&self, _: &[u8]) -> StoreResult<()> {
            Ok(())
        }
    }

    /// The fastest level, two workers, chunks of `avg_chunk` on average.
    fn tuning(avg_chunk: u32) -> Tuning {
        Tuning {
            level: 1,
            workers: 2,
            avg_chunk,
        }
    }

    fn cut(data: &[u8], splits: &[usize], base: &Manifest) -> (Manifest, SaveStats) {
        let tuning = tuning(4 << 10);
        let ((), m, stats) = save(&Mem::default(), None, base, tuning, |mut sink| {
            let mut at = 0;
            for &n in splits.iter().chain(std::iter::once(&usize::MAX)) {
                let end = at + n.min(data.len() - at);
                sink.write_all(&data[at..end])?;
                at = end;
            }
            Ok((sink, ()))
        })
        .unwrap();
        (m, stats)
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Real manifests, as the fuzz target `manifest` takes them (the unpacked layout): a cold
    /// save with repeated content, and a warm one that reuses most of it. With
    /// `FUZZ_SEEDS=DIR` (`fuzz/run.sh`), they are written there as the corpus' seeds.
    #[test]
    fn real_manifests_read_back_from_their_unpacked_layout() {
        let mut data = noise(200_000, 1);
        data.extend_from_within(..100_000);
        let (cold, _) = cut(&data, &[], &Manifest::default());
        data[150_000..150_100].fill(7);
        let (warm, stats) = cut(&data, &[], &cold);
        assert!(stats.reused > 0 && warm.packs.len() == 2, "{stats:?}");
        for (name, m) in [("seed-cold", &cold), ("seed-warm", &warm)] {
            let raw = zstd::bulk::decompress(&m.encode().unwrap(), 1 << 20).unwrap();
            let again = Manifest::decode(&zstd::bulk::compress(&raw, 1).unwrap()).unwrap();
            assert_eq!(&again, m);
            if let Some(dir) = std::env::var_os("FUZZ_SEEDS") {
                std::fs::write(std::path::Path::new(&dir).join(name), &raw).unwrap();
            }
        }
    }

    /// A hostile manifest names one chunk twice with two lengths, in two units of the
    /// restore: the second use is an error, never a reader's panic that would leave the
    /// stream waiting forever.
    #[test]
    fn one_chunk_named_with_two_lengths_fails_the_restore_and_never_hangs() {
        use std::io::Read;
        let packs = std::sync::Arc::new(Mem::default());
        let tuning = tuning(16 << 10);
        // More units than the window, so that a reader waits on it while another fails.
        let data = noise(48 << 20, 9);
        let ((), mut m, _) = save(&*packs, None, &Manifest::default(), tuning, |mut sink| {
            sink.write_all(&data)?;
            Ok((sink, ()))
        })
        .unwrap();
        let mut twin = m.chunks[0];
        twin.len -= 1;
        // In an early unit, with more than a window of units after it; the twin first, while
        // the chunk itself is kept for the use after it.
        let at = m.chunks.len() / 4;
        let first = m.chunks[0];
        m.chunks.splice(at..at, [twin, first]);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let got = crate::chunked::ChunkSource::start(packs, m, 2, None).read_to_end(&mut out);
            let _ = tx.send(got.map(|_| out.len()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the restore hung");
        assert!(got.is_err(), "{got:?}");
    }

    /// A stream that repeats pieces of itself between the chunks of its frames (a tree with
    /// equal files): the restore reads and unpacks each frame once, the repeats coming from
    /// what it read first, and the stream comes back whole.
    #[test]
    fn a_restore_reads_each_frame_once_when_repeats_come_between_its_chunks() {
        use std::io::Read;
        let packs = std::sync::Arc::new(Mem::default());
        let tuning = tuning(16 << 10);
        let mut data = Vec::new();
        for i in 0..40u64 {
            data.extend(noise(600 << 10, 100 + i));
            let from = (i as usize % 5) * (100 << 10);
            data.extend_from_within(from..from + (200 << 10));
        }
        let ((), m, _) = save(&*packs, None, &Manifest::default(), tuning, |mut sink| {
            sink.write_all(&data)?;
            Ok((sink, ()))
        })
        .unwrap();
        let repeats = m.chunks.len()
            - (m.chunks.iter())
                .map(|c| c.id)
                .collect::<std::collections::HashSet<_>>()
                .len();
        assert!(repeats > 100, "{repeats} repeated chunks");
        let stored: u64 = packs
            .0
            .lock()
            .unwrap()
            .values()
            .map(|p| p.len() as u64)
            .sum();
        let mut out = Vec::new();
        crate::chunked::ChunkSource::start(packs.clone(), m, 2, None)
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == data, "the stream came back changed");
        assert_eq!(
            packs.1.load(Ordering::SeqCst),
            stored,
            "bytes read from the packs"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The chunks are the content's, whatever sizes the stream is written in.
        #[test]
        fn chunks_do_not_depend_on_how_the_stream_is_written(
            seed in any::<u64>(),
            splits in proptest::collection::vec(1usize..40_000, 1..40),
        ) {
            let data = noise(300_000, seed);
            let ids = |m: &Manifest| m.chunks.iter().map(|c| (c.id, c.len)).collect::<Vec<_>>();
            let (whole, _) = cut(&data, &[], &Manifest::default());
            let (split, _) = cut(&data, &splits, &Manifest::default());
            prop_assert_eq!(ids(&whole), ids(&split));
            prop_assert_eq!(whole.stream_len(), data.len() as u64);
            // Saved again on itself as the base, nothing is new.
            let (again, stats) = cut(&data, &splits, &whole);
            prop_assert_eq!(ids(&again), ids(&whole));
            prop_assert_eq!(stats.uploaded, 0);
        }
    }
}
