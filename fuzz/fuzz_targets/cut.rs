//! A save's cutter from arbitrary streams (tar headers or not, handed over in arbitrary
//! pieces): it never panics, and the manifest it makes reads back to exactly the stream, each
//! chunk its BLAKE3's bytes, both chunk by chunk here and through the restore's readers (units,
//! repeats, frames unpacked in place). The first byte picks the average chunk size, the next eight the
//! sizes of the pieces written.
#![no_main]

use kura::chunked::{save, ChunkSource, Manifest, PackInfo, Packs, Tuning};
use kura::error::StoreResult;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Mutex;

#[derive(Default)]
struct Mem(Mutex<BTreeMap<String, Vec<u8>>>);

impl Packs for Mem {
    fn put(&self, name: &str, data: bytes::Bytes) -> StoreResult<()> {
        self.0.lock().unwrap().insert(name.into(), data.to_vec());
        Ok(())
    }
    fn get(&self, name: &str, r: std::ops::Range<u64>) -> StoreResult<Vec<u8>> {
        Ok(self.0.lock().unwrap()[name][r.start as usize..r.end as usize].to_vec())
    }
    fn list(&self) -> StoreResult<Vec<PackInfo>> {
        Ok(Vec::new())
    }
    fn delete(&self, _: &str) -> StoreResult<()> {
        Ok(())
    }
    fn read_note(&self) -> StoreResult<Option<Vec<u8>>> {
        Ok(None)
    }
    fn write_note(&self, _: &[u8]) -> StoreResult<()> {
        Ok(())
    }
}

fn stream(m: &Manifest, packs: &Mem) -> Vec<u8> {
    let mut out = Vec::new();
    for c in &m.chunks {
        let name = &m.packs[c.pack as usize];
        let stored = packs.get(name, c.offset..c.offset + c.stored as u64).unwrap();
        let frame = zstd::bulk::decompress(&stored, c.frame_len as usize).unwrap();
        let data = &frame[c.skip as usize..(c.skip + c.len) as usize];
        assert_eq!(blake3::hash(data).as_bytes(), &c.id);
        out.extend_from_slice(data);
    }
    out
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 9 {
        return;
    }
    let (head, data) = input.split_at(9);
    let tuning = Tuning {
        level: 1,
        workers: 2,
        avg_chunk: 4096 << (head[0] % 4),
    };
    let packs = std::sync::Arc::new(Mem::default());
    let ((), m, _) = save(&*packs, None, &Manifest::default(), tuning, |mut sink| {
        let mut at = 0;
        for &piece in head[1..].iter().cycle() {
            if at == data.len() {
                break;
            }
            let end = (at + 1 + piece as usize * 61).min(data.len());
            sink.write_all(&data[at..end])?;
            at = end;
        }
        Ok((sink, ()))
    })
    .unwrap();
    assert_eq!(stream(&m, &packs), data);
    let mut restored = Vec::new();
    ChunkSource::start(packs.clone(), m.clone(), 3, None)
        .read_to_end(&mut restored)
        .unwrap();
    assert!(restored == data, "the restore's readers gave another stream");
    // Saved again on itself: every chunk is reused, and the stream is the same.
    let ((), again, stats) = save(&*packs, None, &m, tuning, |mut sink| {
        sink.write_all(data)?;
        Ok((sink, ()))
    })
    .unwrap();
    assert_eq!(stats.uploaded, 0);
    assert_eq!(stream(&again, &packs), data);
});
