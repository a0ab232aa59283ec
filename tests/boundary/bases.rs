//! What a chunked save may build on: only chunk places the job's own restore checked. A
//! restore reads a chunk the stream repeats once and serves the repeats from memory, and reads
//! a frame once with its first chunk's lengths; a manifest that gives one chunk a second,
//! unchecked place must not pass that place on to the entries saved after it.

use super::local::{replace_manifest, save_chunked};
use super::*;
use crate::support::{json, noise, Sandbox};

#[test]
fn a_repeated_chunks_unchecked_second_place_is_not_reused() {
    let s = Sandbox::new();
    // Two equal files, each large enough to be cut alone, 48 MiB apart (further than the
    // restore reads ahead, so the second comes from memory): their chunks are listed twice.
    let same = noise(200 << 10, 7);
    s.write_bytes("d/a", &same);
    s.write_bytes("d/m", &noise(48 << 20, 8));
    s.write_bytes("d/z", &same);
    s.write("d/c", "other");
    save_chunked(&s, "v1-1");
    let mut moved = 0;
    replace_manifest(&s, "v1-1", |m| {
        let mut listed = std::collections::HashSet::new();
        for c in &mut m.chunks {
            if !listed.insert(c.id) {
                // A later use of a chunk already listed: given another place in its
                // frame (its start), which holds other bytes.
                assert_ne!(c.skip, 0);
                c.skip = 0;
                moved += 1;
            }
        }
    });
    assert!(moved > 0, "the tree has no repeated chunk");
    // The job restores it: the repeat comes from memory, so the restore is exact.
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = restore(&s, "v1-1");
    assert_eq!(json(&out)["outcome"], "hit", "{}", out.stderr);
    assert_eq!(std::fs::read(s.ws.join("d/z")).unwrap(), same);
    // Its save of a changed tree builds on it, and what it commits restores exactly.
    s.write("d/c", "changed");
    let out = save_chunked(&s, "v1-2");
    assert!(out.stderr.contains("taken from key v1-1"), "{}", out.stderr);
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = restore(&s, "v1-2");
    assert_eq!(json(&out)["outcome"], "hit", "{}", out.stderr);
    assert_eq!(std::fs::read(s.ws.join("d/a")).unwrap(), same);
    assert_eq!(std::fs::read(s.ws.join("d/z")).unwrap(), same);
}

/// The local chunk cache serves a chunk only for the place it was read from or uploaded to:
/// an entry naming another place for a chunk this runner has cached is read from the store,
/// found damaged, and no save builds on it.
#[test]
fn a_cached_chunk_does_not_vouch_for_another_place() {
    let s = Sandbox::new();
    let cache = s.dir.path().join("chunks");
    let with_cache = |args: &[&str]| {
        let (out, _) = bounded(s.kura_std().env("KURA_CHUNK_CACHE", &cache).args(args), 60);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    };
    for i in 0..40 {
        s.write(&format!("d/f{i}"), &format!("small file {i} ").repeat(300));
    }
    // Saved twice (the same packs): every chunk is cached at its place.
    for key in ["v1-1", "v1-2"] {
        let out = with_cache(&[
            "--json", "save", "--format", "chunked", "--key", key, "--path", "d",
        ]);
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    }
    let mut moved = false;
    replace_manifest(&s, "v1-2", |m| {
        // A chunk inside a shared frame, named at its frame's start (other bytes).
        let c = m
            .chunks
            .iter_mut()
            .find(|c| c.skip != 0)
            .expect("no shared frame");
        c.skip = 0;
        moved = true;
    });
    assert!(moved);
    let want = std::fs::read(s.ws.join("d/f7")).unwrap();
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = with_cache(&["--json", "restore", "--key", "v1-2", "--path", "d"]);
    assert_ne!(json(&out)["outcome"], "hit", "{}", out.stderr);
    // The job goes on and saves its tree; what it commits restores on a runner without the
    // cache.
    for i in 0..40 {
        s.write(&format!("d/f{i}"), &format!("small file {i} ").repeat(300));
    }
    s.write("d/f0", "changed");
    let out = with_cache(&[
        "--json", "save", "--format", "chunked", "--key", "v1-3", "--path", "d",
    ]);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = restore(&s, "v1-3");
    assert_eq!(json(&out)["outcome"], "hit", "{}", out.stderr);
    assert_eq!(std::fs::read(s.ws.join("d/f7")).unwrap(), want);
}
