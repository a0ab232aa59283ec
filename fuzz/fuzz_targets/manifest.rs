//! Chunk manifests from arbitrary bytes, raw and as zstd frames: decoding never panics nor
//! allocates without bound, and what decodes encodes back to a manifest that decodes the same.
#![no_main]

use kura::chunked::{Manifest, FRAME_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As stored (zstd), and the same bytes wrapped as if they were the unpacked layout.
    let wrapped = zstd::bulk::compress(data, 1).unwrap();
    for input in [data, &wrapped[..]] {
        if let Ok(m) = Manifest::decode(input) {
            for c in &m.chunks {
                assert!((c.pack as usize) < m.packs.len());
                assert!(c.stored <= FRAME_LIMIT);
                assert!(c.frame_len <= FRAME_LIMIT);
                assert!(c.skip as u64 + c.len as u64 <= c.frame_len as u64);
            }
            let again = Manifest::decode(&m.encode().unwrap()).unwrap();
            assert_eq!(again, m);
        }
    }
});
