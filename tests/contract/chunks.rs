//! Chunked entries, on every store: those that keep packs save chunks, the others an archive
//! (a `--format chunked` save never fails for want of packs). What a restore writes is
//! compared with the tree saved, file by file.

use crate::suite::{entries, ns, Job};
use crate::Fixture;
use kura::outcome::{MissReason, Outcome};
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

pub fn missing_pack_is_a_miss(f: &dyn Fixture) {
    let ns = ns("chunkgone");
    let job = Job::new(f, &ns);
    let Some(packs) = job.env.store.packs() else {
        return; // archives only: the corrupt-entry test covers them
    };
    let key = format!("{ns}-k");
    job.fill(48);
    saved(job.save_as(&key, Format::Chunked));
    let meta = job.env.store.list(&key).unwrap().pop().unwrap();
    // The last pack goes: the first chunks are good, so the extractor has begun writing.
    packs.delete(meta.packs.last().unwrap()).unwrap();
    std::fs::remove_dir_all(job.ws.join("d")).unwrap();
    match job.restore(&key) {
        Outcome::Miss(m) => assert_eq!(m.reason, MissReason::Corrupt),
        other => panic!("an entry without its pack restored as {other:?}"),
    }
    assert_eq!(entries(&job.ws), Vec::<std::path::PathBuf>::new());
    assert!(
        job.env.store.list(&key).unwrap().is_empty(),
        "the entry is deleted"
    );
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
        .put(&orphan, b"a pack no entry references yet")
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
        assert!(p.modified_ms <= now + 5_000 && p.modified_ms + 3_600_000 > now, "{p:?}");
    }
    let names: Vec<String> = listed.into_iter().map(|p| p.name).collect();
    assert!(names.contains(&orphan), "{names:?}");
    let want = tree(&job);
    std::fs::remove_dir_all(job.ws.join("d")).unwrap();
    assert!(matches!(job.restore(&key), Outcome::Hit(_)));
    assert_eq!(tree(&job), want);
}
