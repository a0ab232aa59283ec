//! Chunked entries, on every store: those that keep packs save chunks, the others an archive
//! (a `--format chunked` save never fails for want of packs). What a restore writes is
//! compared with the tree saved, file by file.

use super::suite::{entries, ns, Job};
use super::Fixture;
use kura::outcome::Outcome;
use kura::store::Format;

fn tree(job: &Job) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    entries(&job.ws.join("d"))
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

fn format_of(job: &Job, key: &str) -> Format {
    job.env.store.list(key).unwrap().pop().unwrap().format
}

fn saved(o: Outcome) -> kura::outcome::Saved {
    match o {
        Outcome::Saved(s) => s,
        other => panic!("not saved: {other:?}"),
    }
}

pub fn restore_whole_and_reuse(f: &dyn Fixture) {
    let ns = ns("chunks");
    let job = Job::new(f, &ns);
    let k = |x: &str| format!("{ns}-{x}");
    job.fill(48);
    let cold = saved(job.save_as(&k("a"), Format::Chunked));
    let chunked = job.env.store.packs().is_some();
    assert_eq!(
        format_of(&job, &k("a")),
        if chunked {
            Format::Chunked
        } else {
            Format::Archive
        }
    );
    // The job restores a, one file of 48 changes, the save of b reuses the rest.
    let first = tree(&job);
    std::fs::remove_dir_all(job.ws.join("d")).unwrap();
    assert!(matches!(job.restore(&k("a")), Outcome::Hit(_)));
    assert_eq!(tree(&job), first);
    std::fs::write(job.ws.join("d/sub1/f5"), b"changed").unwrap();
    let second = tree(&job);
    let warm = saved(job.save_as(&k("b"), Format::Chunked));
    if chunked {
        let (c, w) = (cold.chunks.unwrap(), warm.chunks.unwrap());
        assert!(
            c.uploaded > 0 && w.uploaded * 10 < c.uploaded,
            "{c:?} then {w:?}"
        );
        assert!(w.reused * 10 >= w.chunks * 8, "{w:?}");
    } else {
        assert!(warm.chunks.is_none());
    }
    for (key, want) in [(k("b"), &second), (k("a"), &first)] {
        std::fs::remove_dir_all(job.ws.join("d")).unwrap();
        assert!(matches!(job.restore(&key), Outcome::Hit(_)), "{key}");
        assert_eq!(&tree(&job), want, "{key}");
    }
}

pub fn a_missing_pack_fails_and_the_next_save_replaces_the_entry(f: &dyn Fixture) {
    let ns = ns("chunkgone");
    let job = Job::new(f, &ns);
    if job.env.store.packs().is_none() {
        return; // archives only: the corrupt-entry test covers them
    };
    let key = format!("{ns}-k");
    job.fill(48);
    saved(job.save_as(&key, Format::Chunked));
    let meta = job.env.store.list(&key).unwrap().pop().unwrap();
    // The last pack goes: the first chunks are good, so the extractor has begun writing.
    f.delete_pack(&ns, &*job.env.store, &meta, meta.packs.last().unwrap());
    std::fs::remove_dir_all(job.ws.join("d")).unwrap();
    // A pack that is not there is no proof against the entry (a proxy's 404, a pack name
    // another manifest claims): the restore fails, writes nothing, and the entry stays.
    let args = job.restore_args(&key);
    let err = kura::ops::restore(&job.env, &args).expect_err("restored without its pack");
    assert!(format!("{err:#}").contains("gone"), "{err:#}");
    assert_eq!(entries(&job.ws), Vec::<std::path::PathBuf>::new());
    assert_eq!(
        job.env.store.list(&key).unwrap().len(),
        1,
        "the entry stays"
    );
    // It does not hold its key for good: this job's next save of the key replaces it.
    job.fill(48);
    let want = tree(&job);
    saved(job.save_as(&key, Format::Chunked));
    std::fs::remove_dir_all(job.ws.join("d")).unwrap();
    assert!(matches!(job.restore(&key), Outcome::Hit(_)));
    assert_eq!(tree(&job), want);
}

pub fn concurrent_saves_share_chunks(f: &dyn Fixture) {
    let ns = ns("chunkrace");
    let jobs: Vec<Job> = (0..3).map(|_| Job::new(f, &ns)).collect();
    for j in &jobs {
        j.fill(40);
    }
    let barrier = std::sync::Barrier::new(3);
    std::thread::scope(|s| {
        for (i, j) in jobs.iter().enumerate() {
            let barrier = &barrier;
            let ns = &ns;
            s.spawn(move || {
                barrier.wait();
                saved(j.save_as(&format!("{ns}-{i}"), Format::Chunked));
            });
        }
    });
    let want = tree(&jobs[0]);
    for i in 0..3 {
        std::fs::remove_dir_all(jobs[0].ws.join("d")).unwrap();
        assert!(matches!(
            jobs[0].restore(&format!("{ns}-{i}")),
            Outcome::Hit(_)
        ));
        assert_eq!(tree(&jobs[0]), want);
    }
}

pub fn prune_keeps_young_and_live_packs(f: &dyn Fixture) {
    let ns = ns("chunkprune");
    let job = Job::new(f, &ns);
    let Some(packs) = job.env.store.packs() else {
        return;
    };
    let key = format!("{ns}-live");
    job.fill(20);
    saved(job.save_as(&key, Format::Chunked));
    // A save in flight: its pack is up, its manifest not yet.
    let orphan = format!("{:064x}", 7);
    packs
        .put(
            &orphan,
            bytes::Bytes::from_static(b"a pack no entry references yet"),
        )
        .unwrap();
    let limits = kura::ops::Limits {
        max_size: None,
        max_age: Some("7d"),
        dry_run: false,
    };
    match kura::ops::prune(&job.env, limits).unwrap() {
        Outcome::Pruned {
            removed,
            packs_deleted,
            dead_pack_bytes,
            ..
        } => {
            assert!(removed.is_empty());
            assert_eq!(packs_deleted, 0);
            assert_eq!(dead_pack_bytes, 30);
        }
        other => panic!("{other:?}"),
    }
    // Every pack's time is known (a pack of unknown age is never swept), and recent.
    let listed = packs.list().unwrap();
    let now = kura::store::now_ms();
    for p in &listed {
        assert!(
            p.modified_ms <= now + 5_000 && p.modified_ms + 3_600_000 > now,
            "{p:?}"
        );
    }
    let names: Vec<String> = listed.into_iter().map(|p| p.name).collect();
    assert!(names.contains(&orphan), "{names:?}");
    let want = tree(&job);
    std::fs::remove_dir_all(job.ws.join("d")).unwrap();
    assert!(matches!(job.restore(&key), Outcome::Hit(_)));
    assert_eq!(tree(&job), want);
}

/// Prune racing a save: the save packs its chunks, reusing entry a's packs; a prune then
/// deletes a (old) and so finds a's packs unreferenced; the save commits. A day later the
/// next prune finds them referenced by the save's entry and keeps them. Until the commit the
/// save's entry is invisible (a save killed there leaves only packs).
pub fn prune_racing_a_save_keeps_its_packs(f: &dyn Fixture) {
    use std::io::{Read, Write};
    let ns = ns("chunkrace-prune");
    let job = Job::new(f, &ns);
    let Some(packs) = job.env.store.packs() else {
        return;
    };
    let (ka, kb) = (format!("{ns}-a"), format!("{ns}-b"));
    job.fill(24);
    saved(job.save_as(&ka, Format::Chunked));
    let a = job.env.store.list(&ka).unwrap().pop().unwrap();
    let mut stored = Vec::new();
    job.env
        .store
        .open(&a)
        .unwrap()
        .read_to_end(&mut stored)
        .unwrap();
    let base = kura::chunked::Manifest::decode(&stored).unwrap();
    let mut stream = Vec::new();
    kura::chunked::ChunkSource::start(packs.clone(), base.clone(), 2, None)
        .read_to_end(&mut stream)
        .unwrap();
    // The save of b: the same stream, every chunk a's.
    let ((), manifest, stats) = kura::chunked::save(
        &*packs,
        None,
        &base,
        kura::chunked::Tuning {
            level: 3,
            workers: 2,
            avg_chunk: kura::chunked::AVG_CHUNK,
        },
        |mut sink| {
            sink.write_all(&stream)?;
            Ok((sink, ()))
        },
    )
    .unwrap();
    assert_eq!(stats.reused, stats.chunks);
    assert!(
        job.env.store.list(&kb).unwrap().is_empty(),
        "visible before its commit"
    );
    // The prune: a is ten days old and goes.
    f.backdate(&ns, &a, 10);
    let limits = |dry_run| kura::ops::Limits {
        max_size: None,
        max_age: Some("7d"),
        dry_run,
    };
    kura::ops::prune(&job.env, limits(false)).unwrap();
    assert!(job.env.store.list(&ka).unwrap().is_empty());
    // The save commits.
    let body = manifest.encode().unwrap();
    let mut up = job
        .env
        .store
        .create(&a.scope, &a.version, &kb)
        .unwrap()
        .unwrap();
    up.write_all(&body).unwrap();
    let meta = kura::store::Meta {
        size: Some(body.len() as u64),
        sha256: Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))),
        created_ms: kura::store::now_ms(),
        paths: a.paths.clone(),
        format: Format::Chunked,
        packs: manifest.packs.clone(),
        // What kura records of the tree, as a's save did: a restore holds a chunked entry
        // to it.
        kura_version: a.kura_version.clone(),
        files: a.files,
        bytes: a.bytes,
        entries: a.entries,
        ..kura::store::Meta::bare(&kb, &a.version, &a.scope)
    };
    up.commit(&meta, false).unwrap();
    if packs.collected_by_store() {
        // The registry's own sweep keeps what b references...
        f.collect_garbage();
        let want = tree(&job);
        std::fs::remove_dir_all(job.ws.join("d")).unwrap();
        assert!(matches!(job.restore(&kb), Outcome::Hit(_)));
        assert_eq!(tree(&job), want);
        // ...and deletes the packs once no entry references them.
        let b = job.env.store.list(&kb).unwrap().pop().unwrap();
        job.env.store.delete(&b).unwrap();
        f.collect_garbage();
        for p in &manifest.packs {
            let err = packs.get(p, 0..1).expect_err("a pack no entry references");
            assert!(format!("{err:#}").contains("gone"), "{err:#}");
        }
        return;
    }
    // A day later (prune's note says so), the next prune.
    let mut note: std::collections::BTreeMap<String, u64> =
        serde_json::from_slice(&packs.read_note().unwrap().unwrap()).unwrap();
    assert!(
        manifest.packs.iter().all(|p| note.contains_key(p)),
        "{note:?}"
    );
    for since in note.values_mut() {
        *since -= 2 * 86_400_000;
    }
    packs
        .write_note(&serde_json::to_vec(&note).unwrap())
        .unwrap();
    kura::ops::prune(&job.env, limits(false)).unwrap();
    let listed: Vec<String> = packs.list().unwrap().into_iter().map(|p| p.name).collect();
    assert!(
        manifest.packs.iter().all(|p| listed.contains(p)),
        "{listed:?}"
    );
    let want = tree(&job);
    std::fs::remove_dir_all(job.ws.join("d")).unwrap();
    assert!(matches!(job.restore(&kb), Outcome::Hit(_)));
    assert_eq!(tree(&job), want);
}
