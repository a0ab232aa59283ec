//! Chunked entries on the local store, through the binary: what is on disk after a restore,
//! what a warm save uploads, and what a hostile store (a pack gone, a pack damaged, a save
//! killed between packs and manifest) does to a restore.

use crate::snapshot;
use crate::support;

use crate::support::{json, noise, run, tree, Out, Sandbox};
use snapshot::snapshot;

fn save(s: &Sandbox, key: &str) -> Out {
    run(s.kura().args([
        "--json", "save", "--format", "chunked", "--key", key, "--path", "d",
    ]))
}

fn restore(s: &Sandbox, key: &str) -> Out {
    run(s
        .kura()
        .args(["--json", "restore", "--key", key, "--path", "d"]))
}

/// `n` files of 64 KiB of noise, and a few odd ones.
fn grow(s: &Sandbox, n: usize) {
    for i in 0..n {
        s.write_bytes(&format!("d/f{i:04}"), &noise(64 << 10, i as u64));
    }
    s.write("d/empty", "");
    s.write("d/deep/er/text", "hello");
    std::os::unix::fs::symlink("f0000", s.ws.join("d/link")).unwrap();
}

fn packs(s: &Sandbox) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(s.store.join(".packs"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn bytes(paths: &[std::path::PathBuf]) -> u64 {
    paths.iter().map(|p| p.metadata().unwrap().len()).sum()
}

#[test]
fn a_chunked_entry_restores_the_tree_exactly() {
    let s = Sandbox::new();
    grow(&s, 40);
    let out = save(&s, "k");
    let j = json(&out);
    assert_eq!(j["outcome"], "saved", "{}", out.stderr);
    assert_eq!(j["chunks"]["reused"], 0, "{}", out.stderr);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::walk_find(&s.store, "meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["format"], "chunked");
    let on_disk = packs(&s);
    assert!(!on_disk.is_empty());
    assert_eq!(j["chunks"]["uploaded"].as_u64(), Some(bytes(&on_disk)));
    // Noise does not compress: the packs hold about the tree, not a copy per chunk.
    assert!(bytes(&on_disk) < 40 * (64 << 10) * 11 / 10);
    // The entry's size is its manifest (the entry's object) and its frames, all in the packs.
    let manifest = support::walk_find(&s.store, "meta.json").with_file_name("archive");
    let size = bytes(&on_disk) + bytes(&[manifest]);
    assert_eq!(j["size"].as_u64(), Some(size), "{}", out.stderr);
    assert_eq!(j["chunks"]["stored"].as_u64(), Some(size));
    let line = format!("Cache Size: {}", kura::units::size(size));
    assert!(out.stderr.contains(&line), "{line:?} in {}", out.stderr);
    let before = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = restore(&s, "k");
    support::assert_clean_hit(&out);
    // What the restore read from the store: the same bytes.
    assert!(
        out.stderr.contains(&format!("({size} B)")),
        "{size} in {}",
        out.stderr
    );
    // `--json` and `ls` give the entry's size the same way.
    assert_eq!(json(&out)["size"].as_u64(), Some(size), "{}", out.stdout);
    let listed = json(&run(s.kura().args(["--json", "ls"])));
    assert_eq!(
        listed["entries"][0]["size"].as_u64(),
        Some(size),
        "{listed}"
    );
    assert_eq!(tree(&s.ws.join("d")), before);
    assert_eq!(
        std::fs::read_link(s.ws.join("d/link")).unwrap(),
        std::path::Path::new("f0000")
    );
}

#[test]
fn a_warm_save_uploads_only_what_changed() {
    let s = Sandbox::new();
    grow(&s, 200);
    let cold = json(&save(&s, "v1-a"));
    let cold_bytes = cold["chunks"]["uploaded"].as_u64().unwrap();
    // A newer entry of the same paths with other content: the base must be the one restored.
    let other = Sandbox::new();
    std::fs::rename(&s.store, &other.store).unwrap();
    for i in 0..20 {
        other.write_bytes(&format!("d/o{i}"), &noise(64 << 10, 9000 + i));
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(json(&save(&other, "v1-z"))["outcome"], "saved");
    std::fs::rename(&other.store, &s.store).unwrap();
    // The job restores v1-a (and so records its base), then 2 files of 200 change.
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "v1-a"));
    s.write_bytes("d/f0007", &noise(64 << 10, 1007));
    s.write_bytes("d/f0150", &noise(64 << 10, 1150));
    let before = packs(&s);
    let out = save(&s, "v1-b");
    let warm = json(&out);
    assert_eq!(warm["outcome"], "saved", "{}", out.stderr);
    let uploaded = warm["chunks"]["uploaded"].as_u64().unwrap();
    assert!(
        uploaded * 100 <= cold_bytes * 5,
        "a warm save uploaded {uploaded} of the cold {cold_bytes} bytes"
    );
    let grown = bytes(&packs(&s)) - bytes(&before);
    assert_eq!(grown, uploaded);
    // Its size is the whole entry's, most of it in packs it shares with v1-a.
    let size = warm["size"].as_u64().unwrap();
    assert!(
        size > cold_bytes * 9 / 10,
        "{size} of {cold_bytes}: {}",
        out.stderr
    );
    assert!(out.stderr.contains("taken from key v1-a"), "{}", out.stderr);
    // Both entries restore to their own trees.
    let now = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "v1-b"));
    assert_eq!(tree(&s.ws.join("d")), now);
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "v1-a"));
    assert_ne!(tree(&s.ws.join("d")), now);
    // A job that restored nothing has no base it checked: entries it did not read are no
    // base (anyone who can write the store could have written their chunk locations), so it
    // uploads the whole tree again.
    let fresh = Sandbox::new();
    std::fs::rename(&s.store, &fresh.store).unwrap();
    std::fs::rename(s.ws.join("d"), fresh.ws.join("d")).unwrap();
    let out = save(&fresh, "v1-c");
    let third = json(&out)["chunks"]["uploaded"].as_u64().unwrap();
    assert!(
        third * 10 >= cold_bytes * 9,
        "{third} of {cold_bytes}: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("taken from key"), "{}", out.stderr);
}

#[test]
fn a_pack_gone_or_damaged_is_a_miss_and_leaves_the_tree_as_it_was() {
    for damage in ["gone", "flipped", "short"] {
        let s = Sandbox::new();
        grow(&s, 60);
        assert_eq!(json(&save(&s, "k"))["outcome"], "saved");
        // The job's tree differs from the entry, so that a restore begun would show.
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        s.write("d/mine", "my own file");
        let pack = packs(&s).pop().unwrap();
        match damage {
            "gone" => std::fs::remove_file(&pack).unwrap(),
            "flipped" => {
                let mut b = std::fs::read(&pack).unwrap();
                let at = b.len() / 2;
                b[at] ^= 0xff;
                std::fs::write(&pack, b).unwrap();
            }
            _ => {
                let b = std::fs::read(&pack).unwrap();
                std::fs::write(&pack, &b[..b.len() - 100]).unwrap();
            }
        }
        let before = snapshot(&s.ws, &|_| false);
        let out = restore(&s, "k");
        assert_eq!(out.code, 0, "{damage}: {}", out.stderr);
        let j = json(&out);
        assert!(out.stderr.contains("warning"), "{damage}: {}", out.stderr);
        assert_eq!(snapshot(&s.ws, &|_| false), before, "{damage}");
        let listed = json(&run(s.kura().args(["--json", "ls"])))["entries"].clone();
        if damage == "gone" {
            // A pack that is not there is not proof against the entry (a proxy's 404, a
            // name another manifest claims): a failure, and the entry stays; but this job's
            // next save of the key replaces it.
            assert_eq!(j["outcome"], "error", "{}", out.stderr);
            assert_eq!(listed.as_array().map(Vec::len), Some(1));
            std::fs::remove_dir_all(s.ws.join("d")).unwrap();
            grow(&s, 60);
            let want = tree(&s.ws.join("d"));
            let out = save(&s, "k");
            assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
            std::fs::remove_dir_all(s.ws.join("d")).unwrap();
            support::assert_clean_hit(&restore(&s, "k"));
            assert_eq!(tree(&s.ws.join("d")), want);
        } else {
            // Bytes that fail their own hash: the entry is corrupt, a miss, and goes.
            assert_eq!(j["outcome"], "miss", "{damage}: {}", out.stderr);
            assert_eq!(listed, serde_json::json!([]), "{damage}");
        }
    }
}

#[test]
fn a_save_killed_between_packs_and_manifest_leaves_no_entry() {
    let s = Sandbox::new();
    // Over two packs of noise: the first pack is on disk long before the manifest.
    s.write_bytes("d/big", &noise(80 << 20, 1));
    let mut child = s
        .kura_std()
        .args([
            "--workers",
            "1",
            "save",
            "--format",
            "chunked",
            "--compression-level",
            "12",
            "--key",
            "k",
            "--path",
            "d",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while packs(&s).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the save ended first");
        assert!(started.elapsed().as_secs() < 120);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = run(s.kura().args(["--json", "ls"]));
    let j = json(&out);
    assert_eq!(j["entries"], serde_json::json!([]), "{}", out.stderr);
    // What it left is dead bytes, and `ls` says so.
    assert_eq!(j["packs"]["live_bytes"], 0, "{}", out.stdout);
    assert_eq!(j["packs"]["dead_bytes"].as_u64(), Some(bytes(&packs(&s))));
    // The 80 MiB file is compared by its metadata: a snapshot would hold it, printed, in this
    // process, whose peak memory Linux also counts for the children it starts afterwards.
    let big = s.ws.join("d/big");
    let stat = |p: &std::path::Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (
            m.len(),
            m.modified().unwrap(),
            std::os::unix::fs::MetadataExt::ino(&m),
        )
    };
    let before = (snapshot(&s.ws, &|p| p == big), stat(&big));
    let j = json(&restore(&s, "k"));
    assert_eq!(j["outcome"], "miss");
    assert_eq!((snapshot(&s.ws, &|p| p == big), stat(&big)), before);
    // The orphan pack is dead bytes to prune, kept within the grace period.
    let out = run(s.kura().args(["--json", "prune", "--max-age", "7d"]));
    let j = json(&out);
    assert!(j["dead_pack_bytes"].as_u64().unwrap() > 0, "{}", out.stdout);
    assert_eq!(j["packs_deleted"], 0);
    assert!(!packs(&s).is_empty());
}

/// Make every pack, prune's note of dead packs and the entry `old` look `days` older.
fn age(s: &Sandbox, days: i64) {
    let then = filetime::FileTime::from_unix_time(now() - days * 86400, 0);
    for p in packs(s) {
        filetime::set_file_mtime(&p, then).unwrap();
    }
    let note = s.store.join(".packs/dead.json");
    if let Ok(b) = std::fs::read(&note) {
        let mut n: std::collections::BTreeMap<String, i64> = serde_json::from_slice(&b).unwrap();
        for since in n.values_mut() {
            *since -= days * 86_400_000;
        }
        std::fs::write(&note, serde_json::to_vec(&n).unwrap()).unwrap();
    }
}

#[test]
fn prune_sweeps_packs_no_entry_references_a_day_after_it_found_them_dead() {
    let s = Sandbox::new();
    grow(&s, 50);
    assert_eq!(json(&save(&s, "old"))["outcome"], "saved");
    let old_packs = packs(&s);
    // A second entry that reuses old's chunks (one file changed), and a third with nothing
    // in common.
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "old"));
    s.write_bytes("d/f0003", &noise(64 << 10, 999));
    let out = save(&s, "reuses");
    assert!(
        json(&out)["chunks"]["reused"].as_u64().unwrap() > 0,
        "{}",
        out.stderr
    );
    let reusing_tree = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    for i in 0..50 {
        s.write_bytes(&format!("d/g{i}"), &noise(64 << 10, 5000 + i));
    }
    assert_eq!(json(&save(&s, "new"))["outcome"], "saved");
    // "old" and "reuses" ten days unused, every pack two days old.
    for key in ["old", "reuses"] {
        let entry = support::walk_find(&s.store, key);
        let meta = entry.join("meta.json");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        m["created_ms"] = ((now() - 10 * 86400) * 1000).into();
        std::fs::write(&meta, m.to_string()).unwrap();
        let then = filetime::FileTime::from_unix_time(now() - 10 * 86400, 0);
        filetime::set_file_mtime(&entry, then).unwrap();
    }
    age(&s, 2);
    // The first prune removes both entries and notes their packs dead; none goes yet (a save
    // in flight may reference them).
    let out = run(s.kura().args(["--json", "prune", "--max-age", "7d"]));
    let j = json(&out);
    assert_eq!(
        j["removed"].as_array().map(Vec::len),
        Some(2),
        "{}",
        out.stderr
    );
    assert_eq!(j["packs_deleted"], 0, "{}", out.stdout);
    let all = packs(&s);
    // A day later: a dry run says which would go, and deletes nothing.
    age(&s, 2);
    let out = run(s
        .kura()
        .args(["--json", "prune", "--max-age", "7d", "--dry-run"]));
    let dead = json(&out)["packs_deleted"].as_u64().unwrap();
    assert!(dead >= old_packs.len() as u64, "{}", out.stdout);
    assert_eq!(packs(&s), all);
    let out = run(s.kura().args(["--json", "prune", "--max-age", "7d"]));
    let j = json(&out);
    assert_eq!(j["packs_deleted"].as_u64(), Some(dead), "{}", out.stdout);
    let left = packs(&s);
    assert_eq!(j["live_pack_bytes"].as_u64(), Some(bytes(&left)));
    assert_eq!(j["dead_pack_bytes"], 0);
    assert!(old_packs.iter().all(|p| !left.contains(p)));
    // The entry left restores whole.
    let now_tree = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "new"));
    assert_eq!(tree(&s.ws.join("d")), now_tree);
    assert_ne!(now_tree, reusing_tree);
}

/// The packs an entry references, from its metadata.
fn packs_of(s: &Sandbox, key: &str) -> Vec<String> {
    let meta = support::walk_find(&s.store, key).join("meta.json");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    m["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_pack_mostly_dead_is_written_again_and_then_swept() {
    let s = Sandbox::new();
    grow(&s, 50);
    assert_eq!(json(&save(&s, "v1"))["outcome"], "saved");
    let first = packs_of(&s, "v1");
    assert_eq!(first.len(), 1);
    // v2 keeps 20 of the 50 files: it still references v1's pack, now mostly dead.
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "v1"));
    for i in 20..50 {
        s.write_bytes(&format!("d/f{i:04}"), &noise(64 << 10, 7000 + i as u64));
    }
    assert_eq!(json(&save(&s, "v2"))["outcome"], "saved");
    assert!(packs_of(&s, "v2").contains(&first[0]));
    // v3, based on v2: the 20 files' chunks go into a new pack instead.
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "v2"));
    s.write_bytes("d/f0049", &noise(64 << 10, 31337));
    let out = save(&s, "v3");
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert!(out.stderr.contains("stored again"), "{}", out.stderr);
    assert!(
        json(&out)["chunks"]["uploaded"].as_u64().unwrap() > 20 * (64 << 10),
        "{}",
        out.stdout
    );
    assert!(!packs_of(&s, "v3").contains(&first[0]));
    let want = tree(&s.ws.join("d"));
    // Once v1 and v2 are gone, two prunes a day apart delete the old pack, and v3 restores.
    run(s.kura().args(["rm", "v1"]));
    run(s.kura().args(["rm", "v2"]));
    age(&s, 2);
    run(s.kura().args(["--json", "prune", "--max-age", "7d"]));
    age(&s, 2);
    run(s.kura().args(["--json", "prune", "--max-age", "7d"]));
    let left = packs(&s);
    assert!(
        left.iter().all(|p| !p.ends_with(&first[0])),
        "{left:?} still holds {}",
        first[0]
    );
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "v3"));
    assert_eq!(tree(&s.ws.join("d")), want);
}

/// A branch's save based on the default branch's entry does not replace it: the packs that
/// entry keeps alive are referenced, not stored again once per branch.
#[test]
fn a_branch_based_on_mains_entry_does_not_rewrite_its_packs() {
    let s = Sandbox::new();
    let event = s.dir.path().join("event.json");
    std::fs::write(&event, r#"{"repository":{"default_branch":"main"}}"#).unwrap();
    let gh = |branch: &str, args: &[&str]| {
        run(s
            .kura()
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REF", format!("refs/heads/{branch}"))
            .env("GITHUB_EVENT_PATH", &event)
            .env("GITHUB_WORKSPACE", &s.ws)
            .args(["--json"])
            .args(args))
    };
    let save = |branch: &str, key: &str| {
        let out = gh(
            branch,
            &["save", "--format", "chunked", "--key", key, "--path", "d"],
        );
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        out
    };
    let restore = |branch: &str, key: &str| {
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let out = gh(branch, &["restore", "--key", key, "--path", "d"]);
        assert_eq!(json(&out)["outcome"], "hit", "{}", out.stderr);
    };
    grow(&s, 50);
    save("main", "v1");
    let first = packs_of(&s, "v1");
    // main's v2 keeps 20 of the 50 files: v1's pack is mostly dead in it.
    restore("main", "v1");
    for i in 20..50 {
        s.write_bytes(&format!("d/f{i:04}"), &noise(64 << 10, 7000 + i as u64));
    }
    save("main", "v2");
    // A feature branch restores main's v2 and saves after a small change.
    restore("feature", "v2");
    s.write_bytes("d/f0049", &noise(64 << 10, 4242));
    let out = save("feature", "f1");
    assert!(!out.stderr.contains("stored again"), "{}", out.stderr);
    assert!(
        json(&out)["chunks"]["uploaded"].as_u64().unwrap() < 5 * (64 << 10),
        "{}",
        out.stdout
    );
    assert!(packs_of(&s, "f1").contains(&first[0]));
}

#[test]
fn a_chain_keeps_the_packs_its_newest_entry_reuses() {
    let s = Sandbox::new();
    grow(&s, 50);
    assert_eq!(json(&save(&s, "v1"))["outcome"], "saved");
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "v1"));
    s.write_bytes("d/f0011", &noise(64 << 10, 4242));
    assert_eq!(json(&save(&s, "v2"))["outcome"], "saved");
    let want = tree(&s.ws.join("d"));
    run(s.kura().args(["rm", "v1"]));
    // Two prunes a day apart: v1's packs that v2 reuses stay.
    age(&s, 2);
    run(s.kura().args(["--json", "prune", "--max-age", "7d"]));
    age(&s, 2);
    run(s.kura().args(["--json", "prune", "--max-age", "7d"]));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "v2"));
    assert_eq!(tree(&s.ws.join("d")), want);
}

#[test]
fn a_file_inserted_at_the_front_shifts_nothing_else() {
    let s = Sandbox::new();
    grow(&s, 100);
    let cold = json(&save(&s, "a"))["chunks"]["uploaded"].as_u64().unwrap();
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "a"));
    s.write("d/0-first", "a new file at the front of the stream");
    let out = save(&s, "b");
    let warm = json(&out)["chunks"]["uploaded"].as_u64().unwrap();
    assert!(warm * 100 <= cold * 5, "{warm} of {cold}: {}", out.stderr);
}

#[test]
fn a_pack_gone_late_in_a_long_stream_stops_every_reader_cleanly() {
    let s = Sandbox::new();
    // Five packs, forty ranges: the extractor is four packs in when the last one fails, and
    // readers wait at the window for ranges further on when it stops.
    for i in 0..40 {
        s.write_bytes(&format!("d/big{i:02}"), &noise(4 << 20, 70 + i));
    }
    assert_eq!(json(&save(&s, "k"))["outcome"], "saved");
    let all = packs(&s);
    assert!(all.len() >= 2, "{all:?}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::walk_find(&s.store, "meta.json")).unwrap())
            .unwrap();
    let last = meta["packs"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(s.store.join(".packs").join(&last)).unwrap();
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = restore(&s, "k");
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(!s.ws.join("d").exists());
}

#[test]
fn concurrent_saves_that_share_new_chunks_both_restore() {
    let s = Sandbox::new();
    grow(&s, 100);
    let cmds = ["a", "b", "c"]
        .into_iter()
        .map(|k| {
            let mut c = s.kura_std();
            c.args([
                "--json", "save", "--format", "chunked", "--key", k, "--path", "d",
            ]);
            c
        })
        .collect();
    let outcomes = support::concurrent_outcomes(cmds);
    assert_eq!(outcomes, ["saved", "saved", "saved"]);
    let before = tree(&s.ws.join("d"));
    for k in ["a", "b", "c"] {
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        support::assert_clean_hit(&restore(&s, k));
        assert_eq!(tree(&s.ws.join("d")), before, "{k}");
    }
    // No temporary pack left behind.
    let stray: Vec<_> = std::fs::read_dir(s.store.join(".packs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|sub| {
            std::fs::read_dir(sub.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[test]
fn the_chunk_cache_serves_restores_before_the_store_and_heals_itself() {
    let s = Sandbox::new();
    grow(&s, 40);
    let cache = s.dir.path().join("chunks");
    let with_cache = |args: &[&str]| run(s.kura().env("KURA_CHUNK_CACHE", &cache).args(args));
    let out = with_cache(&[
        "--json", "save", "--format", "chunked", "--key", "k", "--path", "d",
    ]);
    let j = json(&out);
    assert_eq!(j["outcome"], "saved", "{}", out.stderr);
    // Every chunk of the entry, once.
    let cached = cache_files(&cache);
    let distinct =
        j["chunks"]["chunks"].as_u64().unwrap() - j["chunks"]["reused"].as_u64().unwrap();
    assert_eq!(cached.len() as u64, distinct);
    let want = tree(&s.ws.join("d"));
    // The store's packs out of reach: the cache alone restores the entry.
    let packs_dir = s.store.join(".packs");
    let away = s.dir.path().join("packs-away");
    std::fs::rename(&packs_dir, &away).unwrap();
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&with_cache(&[
        "--json", "restore", "--key", "k", "--path", "d",
    ]));
    assert_eq!(tree(&s.ws.join("d")), want);
    // A damaged cached chunk is dropped and fetched from the store again.
    std::fs::rename(&away, &packs_dir).unwrap();
    let victim = &cached[cached.len() / 2];
    let good = std::fs::read(victim).unwrap();
    std::fs::write(victim, b"not the chunk").unwrap();
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&with_cache(&[
        "--json", "restore", "--key", "k", "--path", "d",
    ]));
    assert_eq!(tree(&s.ws.join("d")), want);
    assert_eq!(std::fs::read(victim).unwrap(), good);
    // Over its size, the least recently used chunks go.
    std::fs::write(victim, b"damaged again").unwrap();
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(s
        .kura()
        .env("KURA_CHUNK_CACHE", &cache)
        .env("KURA_CHUNK_CACHE_SIZE", "1M")
        .args(["--json", "restore", "--key", "k", "--path", "d"]));
    support::assert_clean_hit(&out);
    let total: u64 = cache_files(&cache)
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(total <= 1 << 20, "{total}");
}

#[test]
fn a_planted_state_file_neither_hangs_a_save_nor_picks_its_base() {
    let s = Sandbox::new();
    grow(&s, 20);
    assert_eq!(json(&save(&s, "a"))["outcome"], "saved");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::walk_find(&s.store, "meta.json")).unwrap())
            .unwrap();
    let version = meta["version"].as_str().unwrap();
    let state = s
        .home
        .join(".cache/kura/.state")
        .join(format!("restored-{}.json", &version[..16]));
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    // A FIFO where the record goes: reading it plainly would block the save for ever.
    let st = std::process::Command::new("mkfifo")
        .arg(&state)
        .status()
        .unwrap();
    assert!(st.success());
    let mut child = s
        .kura_std()
        .args([
            "--json", "save", "--format", "chunked", "--key", "b", "--path", "d",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the save hangs on the FIFO"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let j: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(j["outcome"], "saved");
    // A complete record naming entry a: as the file itself, it makes a the base...
    std::fs::remove_file(&state).unwrap();
    let record = format!(
        r#"{{"store":"file://{}","scope":"","key":"a","sha256":{}}}"#,
        s.store.display(),
        meta["sha256"]
    );
    std::fs::write(&state, &record).unwrap();
    let out = save(&s, "c");
    assert!(out.stderr.contains("taken from key a"), "{}", out.stderr);
    // ...but a link to it is not followed: no record, so no base.
    std::fs::remove_file(&state).unwrap();
    let planted = s.dir.path().join("planted.json");
    std::fs::write(&planted, &record).unwrap();
    std::os::unix::fs::symlink(&planted, &state).unwrap();
    let out = save(&s, "d");
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert!(!out.stderr.contains("taken from key"), "{}", out.stderr);
    assert_eq!(std::fs::read_link(&state).unwrap(), planted);
}

#[test]
fn a_scope_named_like_the_stores_own_directories_stays_apart() {
    let s = Sandbox::new();
    grow(&s, 10);
    for scope in [".packs", ".tmp"] {
        let out = run(s.kura().args([
            "--json", "--scope", scope, "save", "--format", "chunked", "--key", scope, "--path",
            "d",
        ]));
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    }
    // Only packs in .packs/ (and prune's note at most); both entries listed and restorable.
    for f in std::fs::read_dir(s.store.join(".packs")).unwrap().flatten() {
        let n = f.file_name().to_string_lossy().into_owned();
        assert!(f.file_type().unwrap().is_file(), "{n} in .packs");
    }
    let out = run(s.kura().args(["--json", "ls"]));
    assert_eq!(
        json(&out)["entries"].as_array().map(Vec::len),
        Some(2),
        "{}",
        out.stdout
    );
    let want = tree(&s.ws.join("d"));
    for scope in [".packs", ".tmp"] {
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let out = run(s.kura().args([
            "--json", "--scope", scope, "restore", "--key", scope, "--path", "d",
        ]));
        support::assert_clean_hit(&out);
        assert_eq!(tree(&s.ws.join("d")), want);
    }
}

#[test]
fn a_chunk_size_that_is_no_power_of_two_in_range_is_bad_input() {
    let s = Sandbox::new();
    grow(&s, 2);
    for bad in ["3K", "2K", "2M", "lots"] {
        let out = run(s.kura().args([
            "save",
            "--format",
            "chunked",
            "--chunk-size",
            bad,
            "--key",
            "k",
            "--path",
            "d",
        ]));
        assert_eq!(out.code, 2, "{bad}: {}", out.stderr);
    }
    assert!(!s.store.exists());
}

/// An entry whose manifest is of another layout version (another kura saved it) is a failure
/// to restore with a warning, not a damaged entry: it stays for the kura that reads it.
#[test]
fn a_manifest_of_another_version_is_not_deleted() {
    use sha2::Digest;
    let s = Sandbox::new();
    grow(&s, 4);
    assert_eq!(json(&save(&s, "other"))["outcome"], "saved");
    let entry = support::walk_find(&s.store, "other");
    let object = std::fs::read_dir(&entry)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| !p.ends_with("meta.json"))
        .unwrap();
    let mut raw = zstd::bulk::decompress(&std::fs::read(&object).unwrap(), 64 << 20).unwrap();
    assert_eq!(&raw[..7], b"KURACHK");
    raw[7] = b'9';
    let stored = zstd::bulk::compress(&raw, 3).unwrap();
    std::fs::write(&object, &stored).unwrap();
    let meta = entry.join("meta.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    m["size"] = stored.len().into();
    m["sha256"] = hex::encode(sha2::Sha256::digest(&stored)).into();
    std::fs::write(&meta, m.to_string()).unwrap();
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = restore(&s, "other");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_ne!(json(&out)["outcome"], "hit", "{}", out.stderr);
    assert!(
        out.stderr.contains("another kura version"),
        "{}",
        out.stderr
    );
    assert!(!s.ws.join("d").exists());
    assert!(meta.exists() && object.exists(), "the entry was deleted");
}
