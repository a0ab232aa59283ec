//! The first half of a chunked save: the tar writer hands its stream in 1 MiB blocks to a
//! cutter thread (`ChunkSink`), which cuts it at file boundaries and hands runs of neighbouring
//! chunks (about 8 MiB) on to the workers, waiting while it is `AHEAD` runs in front of the
//! assembler (`Gate`).
//!
//! Cuts follow the tar entries (`entries.rs`): a file of at least the average chunk size is
//! cut alone, with FastCDC from its first header to its end; smaller files are grouped, and a
//! group ends before a file with a probability in proportion to that file's length, decided by
//! a hash of its name. So an unchanged file keeps its chunks, a changed one dirties only its
//! own (or its group), and a file's size change moves only the cuts up to the next file that
//! starts a group (a group longer than four times the average is cut where it would overflow).

use super::entries::{Step, Walk};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};

/// The `Write` end of a chunked save: hands the stream on in blocks to the cutter, on its own
/// thread, so that the tar writer does nothing more than for an archive.
pub struct ChunkSink {
    pub(super) block: Vec<u8>,
    pub(super) tx: Option<SyncSender<Block>>,
}

pub(super) enum Block {
    Data(Vec<u8>),
    /// The next `len` bytes of the stream are the base's chunks `chunks` (id, length), which
    /// begin at an entry's first header: taken without being read.
    Known {
        len: u64,
        chunks: Vec<(super::ChunkId, u32)>,
    },
    /// The stream is whole; without it the cutter knows the stream was cut short.
    End,
}

pub(super) const BLOCK: usize = 1 << 20;

impl ChunkSink {
    fn hand_on(&mut self, block: Block) -> io::Result<()> {
        let tx = self.tx.as_ref().expect("writes after the end");
        tx.send(block)
            .map_err(|_| io::Error::other("the chunked save stopped"))
    }

    /// A handle that puts the base's chunks into the stream: the writer flushes the sink
    /// first, so that they come after what it wrote.
    pub fn referrer(&self) -> Referrer {
        Referrer(self.tx.clone().expect("a sink that has ended"))
    }

    pub(super) fn finish(mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.block);
        if !rest.is_empty() {
            self.hand_on(Block::Data(rest))?;
        }
        self.hand_on(Block::End)
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.block.extend_from_slice(data);
        if self.block.len() >= BLOCK {
            let full = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK + (64 << 10)));
            self.hand_on(Block::Data(full))?;
        }
        Ok(data.len())
    }

    /// Hands on what the block holds (before the base's chunks go in after it).
    fn flush(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK + (64 << 10)));
        self.hand_on(Block::Data(block))
    }
}

/// See [`ChunkSink::referrer`].
pub struct Referrer(SyncSender<Block>);

impl Referrer {
    pub(super) fn refer(&self, len: u64, chunks: Vec<(super::ChunkId, u32)>) -> io::Result<()> {
        self.0
            .send(Block::Known { len, chunks })
            .map_err(|_| io::Error::other("the chunked save stopped"))
    }
}

/// Cuts the stream into chunks (FastCDC) for the workers.
pub(super) struct Cutter {
    pub(super) buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    pub(super) at: u64,
    pub(super) walk: Walk,
    pub(super) avg: u32,
    /// Runs handed on, and chunks in them.
    pub(super) seq: u64,
    pub(super) chunks: u64,
    pub(super) run: Run,
    pub(super) tx: SyncSender<(u64, Run)>,
    pub(super) gate: Arc<Gate>,
    /// Set before the chunks' channel closes: only then may the assembler seal its last pack.
    pub(super) complete: Arc<AtomicBool>,
}

/// How many runs may be cut ahead of the last one placed in stream order: a worker that
/// falls behind (a busy machine deschedules it) cannot make the others' results pile up.
pub(super) const AHEAD: u64 = 2;
/// Neighbouring chunks go to a worker together, up to this many bytes: their new ones are
/// compressed as one frame. Frames of 8 MiB store a `node_modules` in 1.10x an archive's
/// bytes, frames of 1 MiB in 1.94x (a stream's repeats are often further apart than 1 MiB).
pub(super) const RUN: usize = 8 << 20;
/// The most bytes after the last entry taken for the tar end blocks (two blocks, and
/// padding to a record for writers that pad).
const TAIL: usize = 64 << 10;
/// Most chunks taken from the base in one run.
const KNOWN_RUN: usize = 1 << 16;

/// Neighbouring chunks in one buffer: `data` holds them in stream order, `lens` their lengths.
/// A run of chunks that are all new is its own frame, without a copy. The base's chunks
/// taken unread are in `known` (their place among `lens`, their id) and not in `data`: a
/// run mixes both, so that the few new chunks of a warm save still share frames.
#[derive(Default)]
pub(super) struct Run {
    pub(super) data: Vec<u8>,
    pub(super) lens: Vec<u32>,
    pub(super) known: Vec<(u32, super::ChunkId)>,
}

/// The assembler's position, which the sink waits on.
#[derive(Default)]
pub(super) struct Gate {
    placed: Mutex<u64>,
    moved: Condvar,
    closed: AtomicBool,
}

impl Gate {
    pub(super) fn wait_below(&self, seq: u64) {
        let mut placed = self.placed.lock().unwrap();
        while seq >= *placed + AHEAD && !self.closed.load(Ordering::SeqCst) {
            placed = self.moved.wait(placed).unwrap();
        }
    }

    pub(super) fn set(&self, placed: u64) {
        *self.placed.lock().unwrap() = placed;
        self.moved.notify_all();
    }

    pub(super) fn close(&self) {
        let _g = self.placed.lock().unwrap();
        self.closed.store(true, Ordering::SeqCst);
        self.moved.notify_all();
    }
}

impl Cutter {
    /// Cut every block as it comes; `Ok(Some(n))` when the stream ended whole after `n`
    /// chunks, `Ok(None)` when it was cut short.
    pub(super) fn run(mut self, blocks: Receiver<Block>) -> io::Result<Option<u64>> {
        for b in blocks {
            match b {
                Block::Data(d) => {
                    self.buf.extend_from_slice(&d);
                    if self.buf.len() >= 16 * self.avg as usize {
                        self.send(false)?;
                    }
                }
                Block::Known { len, chunks } => self.known(len, chunks)?,
                Block::End => {
                    self.send(true)?;
                    self.hand_on()?;
                    self.complete.store(true, Ordering::SeqCst);
                    return Ok(Some(self.chunks));
                }
            }
        }
        Ok(None)
    }

    /// Cut what the buffer holds, up to the last cut the content decides (all of it when the
    /// stream is over), and drop what was cut.
    fn send(&mut self, last: bool) -> io::Result<()> {
        let (avg, max) = (self.avg as usize, 4 * self.avg as usize);
        // The open chunk: `buf[start..]` is not cut yet.
        let mut start = 0usize;
        loop {
            let step = self.walk.peek(&self.buf, self.at);
            let Step::Entry {
                start: s,
                end: e,
                mark,
            } = step
            else {
                if step == Step::Plain {
                    // After the entries: the end blocks go with the last group, one chunk at
                    // the stream's end (cut within, they would move cuts among the last
                    // files; cut alone, every entry would share that chunk). More than end
                    // blocks is a stream that is no tar, cut with FastCDC.
                    let entries_end = self.walk.next().saturating_sub(self.at) as usize;
                    if (start..=self.buf.len()).contains(&entries_end)
                        && self.buf.len() - entries_end <= TAIL
                    {
                        break;
                    }
                    if entries_end > start && entries_end <= self.buf.len() {
                        start = self.emit(start, entries_end)?;
                    }
                    self.walk.pass(&step);
                    start = self.cdc(start, self.buf.len(), last)?;
                }
                break;
            };
            // The entry may have begun before the buffer (a large file cut so far).
            let size = e.saturating_sub(s);
            let (s, e) = (
                s.saturating_sub(self.at) as usize,
                e.saturating_sub(self.at) as usize,
            );
            if size >= avg as u64 {
                // A large file: its own chunks, cut within it.
                if s > start {
                    start = self.emit(start, s)?;
                }
                let whole = e <= self.buf.len();
                start = self.cdc(start, e.min(self.buf.len()), whole)?;
                if !whole {
                    break;
                }
            } else {
                if e > self.buf.len() {
                    break;
                }
                // Small: whole in the buffer, so its size is `e - s`.
                let (group, len) = (s - start, e - s);
                if group > 0 && (group + len > max || starts_group(mark, len, avg)) {
                    start = self.emit(start, s)?;
                }
            }
            self.walk.pass(&step);
        }
        if last && start < self.buf.len() {
            start = self.emit(start, self.buf.len())?;
        }
        self.buf.drain(..start);
        self.at += start as u64;
        Ok(())
    }

    /// Cut `buf[from..to]` with FastCDC; the last piece too when `whole` (`to` is a boundary),
    /// else it waits for more bytes. Where the cutting stopped.
    fn cdc(&mut self, from: usize, to: usize, whole: bool) -> io::Result<usize> {
        let avg = self.avg;
        let cuts: Vec<(usize, usize)> =
            fastcdc::v2020::FastCDC::new(&self.buf[from..to], avg / 4, avg, avg * 4)
                .map(|c| (c.offset, c.length))
                .collect();
        let keep = match whole {
            true => cuts.len(),
            false => cuts.len().saturating_sub(1),
        };
        let mut at = from;
        for &(offset, length) in &cuts[..keep] {
            at = self.emit(from + offset, from + offset + length)?;
        }
        Ok(at)
    }

    /// The base's chunks, taken for the next `len` bytes: what the buffer holds is cut as if
    /// the stream ended there (it ends at an entry, where the base's chunks begin).
    fn known(&mut self, len: u64, chunks: Vec<(super::ChunkId, u32)>) -> io::Result<()> {
        let whole = chunks.iter().map(|c| c.1 as u64).sum::<u64>();
        let at = self.at + self.buf.len() as u64;
        self.send(false)?;
        if !self.buf.is_empty() {
            self.emit(0, self.buf.len())?;
            self.at += self.buf.len() as u64;
            self.buf.clear();
        }
        if whole != len || !self.walk.skip(at, len) {
            return Err(io::Error::other(
                "chunks taken from the base do not begin at an entry; nothing was stored",
            ));
        }
        self.at += len;
        self.chunks += chunks.len() as u64;
        for (id, n) in chunks {
            self.run.known.push((self.run.lens.len() as u32, id));
            self.run.lens.push(n);
        }
        if self.run.known.len() >= KNOWN_RUN {
            self.hand_on()?;
        }
        Ok(())
    }

    /// `buf[from..to]` as one chunk; `to`.
    fn emit(&mut self, from: usize, to: usize) -> io::Result<usize> {
        self.run.data.extend_from_slice(&self.buf[from..to]);
        self.run.lens.push((to - from) as u32);
        self.chunks += 1;
        if self.run.data.len() >= RUN {
            self.hand_on()?;
        }
        Ok(to)
    }

    fn hand_on(&mut self) -> io::Result<()> {
        if self.run.lens.is_empty() {
            return Ok(());
        }
        self.gate.wait_below(self.seq);
        let run = std::mem::take(&mut self.run);
        self.tx
            .send((self.seq, run))
            .map_err(|_| io::Error::other("the chunked save stopped"))?;
        self.seq += 1;
        Ok(())
    }
}

/// Whether a small file of `len` bytes named by `mark` starts a new group: with probability
/// `len / avg`, so that groups average `avg` bytes, decided by the file alone.
fn starts_group(mark: u64, len: usize, avg: usize) -> bool {
    (mark as u128 * avg as u128) < ((len as u128) << 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A tar stream of files of these lengths, each filled from its seed.
    fn tar_of(files: &[(usize, u64)]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut b = tar::Builder::new(Vec::new());
        let mut spans = Vec::new();
        for (i, &(len, seed)) in files.iter().enumerate() {
            let start = b.get_ref().len();
            let data: Vec<u8> = (0..len as u64)
                .map(|j| (j.wrapping_mul(seed | 1) >> 3) as u8 ^ (seed as u8))
                .collect();
            let mut h = tar::Header::new_ustar();
            h.set_size(len as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("d/{i:05}"), data.as_slice())
                .unwrap();
            spans.push(start..b.get_ref().len());
        }
        (b.into_inner().unwrap(), spans)
    }

    /// The chunks the cutter makes of `stream`, as spans of it.
    fn cuts(stream: &[u8], avg: u32) -> Vec<std::ops::Range<usize>> {
        let (blocks_tx, blocks_rx) = std::sync::mpsc::sync_channel(1 << 12);
        let (tx, rx) = std::sync::mpsc::sync_channel(1 << 16);
        let gate = Arc::new(Gate::default());
        gate.close();
        let cutter = Cutter {
            buf: Vec::new(),
            at: 0,
            walk: Walk::default(),
            avg,
            seq: 0,
            chunks: 0,
            run: Run::default(),
            tx,
            gate,
            complete: Arc::default(),
        };
        for piece in stream.chunks(BLOCK) {
            blocks_tx.send(Block::Data(piece.to_vec())).unwrap();
        }
        blocks_tx.send(Block::End).unwrap();
        drop(blocks_tx);
        cutter.run(blocks_rx).unwrap().expect("a whole stream");
        let mut at = 0;
        rx.try_iter()
            .flat_map(|(_, run): (u64, Run)| run.lens)
            .map(|n| {
                at += n as usize;
                at - n as usize..at
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Cuts at file boundaries: a file whose content changes (its length kept) changes
        /// only the chunks that hold its own bytes; every other chunk stays where it was.
        #[test]
        fn a_changed_file_dirties_only_its_own_chunks(
            files in proptest::collection::vec(
                (prop_oneof![4 => 0usize..6000, 1 => 6000usize..200_000], any::<u64>()),
                1..150,
            ),
            pick in any::<prop::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let k = pick.index(files.len());
            let (a, spans) = tar_of(&files);
            let mut changed = files.clone();
            changed[k].1 = seed ^ 0x5a5a;
            let (b, _) = tar_of(&changed);
            prop_assert_eq!(a.len(), b.len());
            let (ca, cb) = (cuts(&a, 16 << 10), cuts(&b, 16 << 10));
            prop_assert_eq!(ca.last().map(|c| c.end), Some(a.len()));
            let theirs = &spans[k];
            let outside = |c: &std::ops::Range<usize>| c.end <= theirs.start || c.start >= theirs.end;
            let (oa, ob): (Vec<_>, Vec<_>) = (
                ca.iter().filter(|c| outside(c)).collect(),
                cb.iter().filter(|c| outside(c)).collect(),
            );
            prop_assert_eq!(oa, ob);
        }
    }
}
