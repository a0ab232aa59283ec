//! The first half of a chunked save: the tar writer hands its stream in 1 MiB blocks to a
//! cutter thread (`ChunkSink`), which cuts it with FastCDC and hands runs of neighbouring
//! chunks (about 1 MiB) on to the workers, waiting while it is `AHEAD` runs in front of the
//! assembler (`Gate`).

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

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Cuts the stream into chunks (FastCDC) for the workers.
pub(super) struct Cutter {
    pub(super) buf: Vec<u8>,
    pub(super) avg: u32,
    /// Runs handed on, and chunks in them.
    pub(super) seq: u64,
    pub(super) chunks: u64,
    pub(super) run: Vec<Vec<u8>>,
    pub(super) run_bytes: usize,
    pub(super) tx: SyncSender<(u64, Vec<Vec<u8>>)>,
    pub(super) gate: Arc<Gate>,
    /// Set before the chunks' channel closes: only then may the assembler seal its last pack.
    pub(super) complete: Arc<AtomicBool>,
}

/// How many runs may be cut ahead of the last one placed in stream order: a worker that
/// falls behind (a busy machine deschedules it) cannot make the others' results pile up.
pub(super) const AHEAD: u64 = 16;
/// Neighbouring chunks go to a worker together, up to this many bytes: their new ones are
/// compressed as one frame.
pub(super) const RUN: usize = 1 << 20;

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

    fn send(&mut self, last: bool) -> io::Result<()> {
        let cuts: Vec<(usize, usize)> =
            fastcdc::v2020::FastCDC::new(&self.buf, self.avg / 4, self.avg, self.avg * 4)
                .map(|c| (c.offset, c.length))
                .collect();
        // The last cut may be where the buffer ends rather than where the content says: it
        // waits for more bytes unless the stream is over.
        let keep = if last {
            cuts.len()
        } else {
            cuts.len().saturating_sub(1)
        };
        let mut used = 0;
        for &(offset, length) in &cuts[..keep] {
            self.run.push(self.buf[offset..offset + length].to_vec());
            self.run_bytes += length;
            self.chunks += 1;
            if self.run_bytes >= RUN {
                self.hand_on()?;
            }
            used = offset + length;
        }
        self.buf.drain(..used);
        Ok(())
    }

    fn hand_on(&mut self) -> io::Result<()> {
        if self.run.is_empty() {
            return Ok(());
        }
        self.gate.wait_below(self.seq);
        let run = std::mem::take(&mut self.run);
        self.run_bytes = 0;
        self.tx
            .send((self.seq, run))
            .map_err(|_| io::Error::other("the chunked save stopped"))?;
        self.seq += 1;
        Ok(())
    }
}
