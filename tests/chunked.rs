//! Chunked entries on the local store, through the binary: what is on disk after a restore,
//! what a warm save uploads, and what a hostile store (a pack gone, a pack damaged, a save
//! killed between packs and manifest) does to a restore.

#[path = "support/snapshot.rs"]
mod snapshot;
mod support;

use snapshot::snapshot;
use support::{json, noise, run, tree, Out, Sandbox};

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
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
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
    let before = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = restore(&s, "k");
    support::assert_clean_hit(&out);
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
    assert!(out.stderr.contains("taken from key v1-a"), "{}", out.stderr);
    // Both entries restore to their own trees.
    let now = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "v1-b"));
    assert_eq!(tree(&s.ws.join("d")), now);
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "v1-a"));
    assert_ne!(tree(&s.ws.join("d")), now);
    // A job that restored nothing dedups against the newest chunked entry of its paths (the
    // tree as v1-a left it, mtimes and all: two files differ from v1-b).
    let fresh = Sandbox::new();
    std::fs::rename(&s.store, &fresh.store).unwrap();
    std::fs::rename(s.ws.join("d"), fresh.ws.join("d")).unwrap();
    let out = save(&fresh, "v1-c");
    let third = json(&out)["chunks"]["uploaded"].as_u64().unwrap();
    assert!(third * 100 <= cold_bytes * 5, "{}", out.stderr);
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
        assert_eq!(j["outcome"], "miss", "{damage}: {}", out.stderr);
        assert!(out.stderr.contains("warning"), "{damage}: {}", out.stderr);
        assert_eq!(snapshot(&s.ws, &|_| false), before, "{damage}");
        // The entry that cannot be read is gone; the next save can replace it.
        let out = run(s.kura().args(["--json", "ls"]));
        assert_eq!(json(&out)["entries"], serde_json::json!([]), "{damage}");
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
    assert_eq!(
        json(&out)["entries"],
        serde_json::json!([]),
        "{}",
        out.stderr
    );
    let before = snapshot(&s.ws, &|_| false);
    let j = json(&restore(&s, "k"));
    assert_eq!(j["outcome"], "miss");
    assert_eq!(snapshot(&s.ws, &|_| false), before);
    // The orphan pack is dead bytes to prune, kept within the grace period.
    let out = run(s.kura().args(["--json", "prune", "--max-age", "7d"]));
    let j = json(&out);
    assert!(j["dead_pack_bytes"].as_u64().unwrap() > 0, "{}", out.stdout);
    assert_eq!(j["packs_deleted"], 0);
    assert!(!packs(&s).is_empty());
}

#[test]
fn prune_sweeps_packs_no_entry_references_once_a_day_old() {
    let s = Sandbox::new();
    grow(&s, 50);
    assert_eq!(json(&save(&s, "old"))["outcome"], "saved");
    let old_packs = packs(&s);
    // A second entry that shares nothing: other files.
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    for i in 0..50 {
        s.write_bytes(&format!("d/g{i}"), &noise(64 << 10, 5000 + i));
    }
    assert_eq!(json(&save(&s, "new"))["outcome"], "saved");
    let new_packs: Vec<_> = packs(&s)
        .into_iter()
        .filter(|p| !old_packs.contains(p))
        .collect();
    assert!(!new_packs.is_empty());
    // Every pack two days old; the entry "old" ten days unused.
    let two_days = filetime::FileTime::from_unix_time(now() - 2 * 86400, 0);
    for p in packs(&s) {
        filetime::set_file_mtime(&p, two_days).unwrap();
    }
    let entry = support::walk_find(&s.store, "old");
    filetime::set_file_mtime(
        &entry,
        filetime::FileTime::from_unix_time(now() - 10 * 86400, 0),
    )
    .unwrap();
    let meta = entry.join("meta.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    m["created_ms"] = ((now() - 10 * 86400) * 1000).into();
    std::fs::write(&meta, m.to_string()).unwrap();
    // A dry run deletes nothing and says what would go.
    let out = run(s
        .kura()
        .args(["--json", "prune", "--max-age", "7d", "--dry-run"]));
    assert_eq!(
        json(&out)["packs_deleted"].as_u64(),
        Some(old_packs.len() as u64),
        "{}",
        out.stderr
    );
    assert_eq!(packs(&s).len(), old_packs.len() + new_packs.len());
    let out = run(s.kura().args(["--json", "prune", "--max-age", "7d"]));
    let j = json(&out);
    assert_eq!(j["removed"], serde_json::json!(["old"]), "{}", out.stderr);
    assert_eq!(j["live_pack_bytes"].as_u64(), Some(bytes(&new_packs)));
    assert_eq!(packs(&s), new_packs);
    // The entry left restores whole.
    let now_tree = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    support::assert_clean_hit(&restore(&s, "new"));
    assert_eq!(tree(&s.ws.join("d")), now_tree);
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
