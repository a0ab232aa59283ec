//! The decompression side of an extraction: zstd (or gzip) on a thread of its own, a pipe
//! ahead of parsing and writing, as `zstd -d | tar -x` runs in two processes. The parser reads
//! 1 MiB chunks that go back to be filled again: no allocation (and memset) per read.

use anyhow::{bail, Result};
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Run `parse` on `src` decompressed by another thread (with zstd's window at most
/// `2^window_log_max`).
pub(super) fn decompressed<R: Read + Send, T>(
    src: R,
    window_log_max: u32,
    parse: impl FnOnce(ChunkReader) -> T,
) -> T {
    let (chunks_tx, chunks_rx) = sync_channel::<std::io::Result<Vec<u8>>>(16);
    let (spent_tx, spent_rx) = sync_channel::<Vec<u8>>(18);
    std::thread::scope(|s| {
        s.spawn(move || decompress(src, window_log_max, chunks_tx, spent_rx));
        parse(ChunkReader {
            rx: chunks_rx,
            spent: spent_tx,
            chunk: Vec::new(),
            pos: 0,
        })
    })
}

fn decoder<'a, R: Read + 'a>(src: R, window_log_max: u32) -> Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(1 << 20, src);
    let head = buf.fill_buf()?;
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut d = zstd::stream::read::Decoder::with_buffer(buf)?;
        d.window_log_max(window_log_max)?;
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

/// Decompress `src` into chunks for the parse thread; stops when the parser hangs up.
fn decompress<R: Read>(
    src: R,
    window_log_max: u32,
    out: SyncSender<std::io::Result<Vec<u8>>>,
    spent: Receiver<Vec<u8>>,
) {
    let mut d = match decoder(src, window_log_max) {
        Ok(d) => d,
        Err(e) => {
            let _ = out.send(Err(std::io::Error::other(format!("{e:#}"))));
            return;
        }
    };
    loop {
        let mut chunk = spent.try_recv().unwrap_or_default();
        chunk.resize(1 << 20, 0);
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
pub(super) struct ChunkReader {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    spent: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(next) => {
                    let done = std::mem::replace(&mut self.chunk, next?);
                    if done.capacity() > 0 {
                        let _ = self.spent.try_send(done);
                    }
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
