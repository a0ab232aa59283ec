//! One frame of a chunked entry as a restore meets it: whether it can be unpacked straight
//! into the unit that needs it, and unpacking it with its declared size checked.

use super::Chunk;
use anyhow::{anyhow, ensure, Result};

/// Where in the unit a frame goes whole: when its chunks `ks` are the whole frame, one after
/// the other, at the places the unit has them. Chunks of `ks` that repeat a part of the frame
/// already covered (a file the stream holds twice) are copied from it afterwards: they are
/// returned apart, after those that cover the frame.
pub(super) fn in_place(
    frame: &Chunk,
    ks: &[usize],
    chunks: &[Chunk],
    at: &[usize],
) -> Option<(std::ops::Range<usize>, Vec<usize>, Vec<usize>)> {
    let start = at[*ks.first()?];
    let mut skip = 0u64;
    let (mut cover, mut again) = (Vec::new(), Vec::new());
    for &k in ks {
        let c = &chunks[k];
        if c.skip as u64 == skip && at[k] as u64 == start as u64 + skip {
            skip += c.len as u64;
            cover.push(k);
        } else if c.skip as u64 + c.len as u64 <= skip {
            again.push(k);
        } else {
            return None;
        }
    }
    (skip == frame.frame_len as u64).then(|| (start..start + skip as usize, cover, again))
}

/// Unpack a frame into `into`, which it must fill exactly.
pub(super) fn unpack_into(
    unzstd: &mut zstd::bulk::Decompressor,
    stored: &[u8],
    into: &mut [u8],
) -> Result<()> {
    let size = zstd::zstd_safe::get_frame_content_size(stored)
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("no content size in the frame"))?;
    ensure!(
        size == into.len() as u64,
        "a frame of {size} bytes where the entry says {}",
        into.len()
    );
    let n = unzstd.decompress_to_buffer(stored, into)?;
    ensure!(n == into.len(), "the frame is shorter than its header says");
    Ok(())
}

/// Unpack a frame of `len` bytes into `into` (its old bytes go).
pub(super) fn unpack_frame(
    unzstd: &mut zstd::bulk::Decompressor,
    stored: &[u8],
    len: u32,
    into: &mut Vec<u8>,
) -> Result<()> {
    let size = zstd::zstd_safe::get_frame_content_size(stored)
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("no content size in the frame"))?;
    ensure!(
        size == len as u64,
        "a frame of {size} bytes where the entry says {len}"
    );
    into.clear();
    into.reserve(size as usize);
    unzstd.decompress_to_buffer(stored, into)?;
    ensure!(
        into.len() as u64 == size,
        "the frame is shorter than its header says"
    );
    Ok(())
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
