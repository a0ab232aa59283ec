//! `kura save` / `kura restore` / `kura key` driven as a user would, on real directory trees.

use crate::snapshot;
use crate::support;

use crate::support::{json, restore, run, save, tree, walk_find, Sandbox};
use snapshot::snapshot;
use std::time::Duration;

#[test]
fn round_trip_with_paths_outside_the_workspace() {
    let s = Sandbox::new();
    s.write("node_modules/a/index.js", "module.exports = 1");
    s.write("node_modules/.bin/tool", "#!/bin/sh");
    std::fs::write(s.home.join(".npmrc"), "cache").unwrap();
    std::fs::create_dir_all(s.home.join(".npm/_cacache")).unwrap();
    std::fs::write(s.home.join(".npm/_cacache/x"), "blob").unwrap();
    let out = save(&s, "npm-{{ .Branch }}-1", &["node_modules", "~/.npm"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Cache saved with key: npm-main-1"),
        "{}",
        out.stderr
    );
    assert_eq!(json(&out)["files"], 3);

    let before_ws = tree(&s.ws.join("node_modules"));
    let before_home = tree(&s.home.join(".npm"));
    std::fs::remove_dir_all(s.ws.join("node_modules")).unwrap();
    std::fs::remove_dir_all(s.home.join(".npm")).unwrap();
    let out = restore(
        &s,
        &[
            "--key",
            "npm-{{ .Branch }}-1",
            "--path",
            "node_modules",
            "--path",
            "~/.npm",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Cache restored from key: npm-main-1"),
        "{}",
        out.stderr
    );
    assert_eq!(json(&out)["cache_hit"], true);
    assert_eq!(tree(&s.ws.join("node_modules")), before_ws);
    assert_eq!(tree(&s.home.join(".npm")), before_home);
    // ~/.npmrc was not among the paths and is untouched.
    assert_eq!(
        std::fs::read_to_string(s.home.join(".npmrc")).unwrap(),
        "cache"
    );
}

#[test]
fn github_order_exact_then_prefix_then_restore_keys_newest_wins() {
    let s = Sandbox::new();
    for (key, content) in [
        ("deps-a", "a"),
        ("deps-b-1", "b1"),
        ("deps-b-2", "b2"),
        ("other-x", "x"),
    ] {
        s.write("d/f", content);
        assert_eq!(save(&s, key, &["d"]).code, 0);
        std::thread::sleep(Duration::from_millis(20));
    }
    let cases: [(&[&str], &str, bool); 5] = [
        (&["--key", "deps-a"], "a", true),   // exact
        (&["--key", "deps-b"], "b2", false), // prefix of the key: newest
        (
            &[
                "--key",
                "nope",
                "--restore-key",
                "other-",
                "--restore-key",
                "deps-",
            ],
            "x",
            false,
        ),
        (&["--key", "deps-b-1", "--restore-key", "deps-"], "b1", true), // exact beats newer prefix
        (&["--key", "nope", "--restore-key", "deps-"], "b2", false),
    ];
    for (args, want, hit) in cases {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--path", "d"]);
        let out = restore(&s, &a);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(s.read("d/f"), want, "{args:?}");
        assert_eq!(json(&out)["cache_hit"], hit, "{args:?}");
    }
}

#[test]
fn circleci_order_newest_prefix_wins_even_over_exact() {
    let s = Sandbox::new();
    s.write("d/f", "old");
    save(&s, "v1-myapp-cache", &["d"]);
    std::thread::sleep(Duration::from_millis(20));
    s.write("d/f", "new");
    save(&s, "v1-myapp-cache-new", &["d"]);
    let out = restore(&s, &["--keys", "v1-myapp-cache", "--path", "d"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.read("d/f"), "new");
    assert_eq!(json(&out)["matched_key"], "v1-myapp-cache-new");
    // The first candidate with any match is used, even if a later one matches a newer entry.
    std::thread::sleep(Duration::from_millis(20));
    s.write("d/f", "newest");
    save(&s, "v1-other", &["d"]);
    let out = restore(&s, &["--keys", "zzz", "v1-myapp-cache\nv1-", "--path", "d"]);
    assert_eq!(json(&out)["matched_key"], "v1-myapp-cache-new");
    assert_eq!(s.read("d/f"), "new");
    // Alone, the later candidate would have found the newer entry.
    let out = restore(&s, &["--keys", "v1-", "--path", "d"]);
    assert_eq!(json(&out)["matched_key"], "v1-other");
}

#[test]
fn miss_is_exit_0_unless_fail_on_miss_and_versions_keep_paths_apart() {
    let s = Sandbox::new();
    s.write("vendor/x", "1");
    save(&s, "k", &["vendor"]);
    let out = restore(
        &s,
        &["--key", "k", "--restore-key", "j", "--path", "node_modules"],
    );
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("Cache not found for input keys: k, j"),
        "{}",
        out.stderr
    );
    assert_eq!(json(&out)["outcome"], "miss");
    let out = restore(
        &s,
        &["--key", "k", "--path", "node_modules", "--fail-on-miss"],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("fail-on-cache-miss"), "{}", out.stderr);
}

#[test]
fn existing_key_is_skipped_unless_overwrite() {
    let s = Sandbox::new();
    s.write("d/f", "one");
    assert_eq!(json(&save(&s, "k", &["d"]))["outcome"], "saved");
    s.write("d/f", "two");
    let out = save(&s, "k", &["d"]);
    assert!(
        out.stderr
            .contains("Cache already exists for key k, not saving"),
        "{}",
        out.stderr
    );
    restore(&s, &["--key", "k", "--path", "d"]);
    assert_eq!(s.read("d/f"), "one");
    s.write("d/f", "two");
    let out = run(s
        .kura()
        .args(["save", "--key", "k", "--path", "d", "--overwrite"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    s.write("d/f", "three");
    restore(&s, &["--key", "k", "--path", "d"]);
    assert_eq!(s.read("d/f"), "two");
    let ls = run(s.kura().args(["--json", "ls"]));
    assert_eq!(json(&ls)["entries"].as_array().unwrap().len(), 1);
}

#[test]
fn paths_matching_nothing_store_nothing() {
    let s = Sandbox::new();
    let out = save(&s, "k", &["missing-dir", "also/*.missing"]);
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("nothing was saved"), "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "empty");
    let ls = run(s.kura().args(["--json", "ls"]));
    assert!(json(&ls)["entries"].as_array().unwrap().is_empty());
}

#[test]
fn dry_run_reports_and_touches_nothing() {
    let s = Sandbox::new();
    s.write("d/a", "12345");
    s.write("d/b", "678");
    let before = snapshot(s.dir.path(), &|_| false);
    let out = run(s.kura().args([
        "--json",
        "save",
        "--dry-run",
        "--key",
        "k-{{ .Branch }}",
        "--path",
        "d",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out);
    assert_eq!(
        (v["key"].as_str(), v["files"].as_u64(), v["bytes"].as_u64()),
        (Some("k-main"), Some(2), Some(8))
    );
    assert!(
        out.stderr
            .contains(&format!("file://{}", s.store.display())),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("version "), "{}", out.stderr);
    assert_eq!(
        snapshot(s.dir.path(), &|_| false),
        before,
        "the dry run changed something"
    );
    save(&s, "k-main", &["d"]);
    std::fs::write(s.ws.join("d/a"), "changed").unwrap();
    let before = snapshot(s.dir.path(), &|_| false);
    let out = run(s
        .kura()
        .args(["restore", "--dry-run", "--key", "k-", "--path", "d"]));
    assert_eq!(
        snapshot(s.dir.path(), &|_| false),
        before,
        "the dry run changed something"
    );
    assert!(
        out.stderr.contains("Would restore from key: k-main"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("2 files"), "{}", out.stderr);
    assert_eq!(s.read("d/a"), "changed");
    // A dry run of a save whose key is taken says the save would skip it.
    let out = run(s.kura().args([
        "--json",
        "save",
        "--dry-run",
        "--key",
        "k-main",
        "--path",
        "d",
    ]));
    assert_eq!(json(&out)["outcome"], "exists", "{}", out.stderr);
    assert!(!out.stderr.contains("Would save"), "{}", out.stderr);
    assert_eq!(
        snapshot(s.dir.path(), &|_| false),
        before,
        "the dry run changed something"
    );
}

#[test]
fn corrupted_entry_is_a_miss_and_leaves_no_files() {
    let s = Sandbox::new();
    for i in 0..20 {
        s.write(&format!("d/f{i}"), &"payload ".repeat(1000 + i));
    }
    save(&s, "k", &["d"]);
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let archive = walk_find(&s.store, "archive");
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let out = restore(&s, &["--key", "k", "--path", "d"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("corrupt"), "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "miss");
    assert!(tree(&s.ws.join("d")).is_empty(), "files left behind");
    // The corrupt entry is gone, so the next save can store a good one.
    s.write("d/f0", "fresh");
    assert_eq!(json(&save(&s, "k", &["d"]))["outcome"], "saved");
}

#[test]
fn bad_input_is_exit_2_with_the_culprit() {
    let s = Sandbox::new();
    let out = run(s.kura().args(["key", r#"v1-{{ checksum "go.sum" }}"#]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("go.sum") && out.stderr.contains("column 4"),
        "{}",
        out.stderr
    );
    let out = run(s.kura().args(["save", "--key", "a,b", "--path", "d"]));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("comma"), "{}", out.stderr);
    let out = run(s
        .kura()
        .args(["--store", "ftp://x", "save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("ftp://x"), "{}", out.stderr);
    let out = run(s
        .kura()
        .args(["restore", "--key", "{{ .Nope }}", "--path", "d"]));
    assert_eq!(out.code, 2);
}

#[test]
fn flags_come_from_the_environment_and_key_prints_keys() {
    let s = Sandbox::new();
    s.write("go.sum", "nightly-2018-07-18\n");
    let out = run(s.kura().args([
        "key",
        "v1-{{ .Branch }}-{{ checksum \"go.sum\" }}",
        "<< .Environment.HOME >>",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "v1-main-aWt1SBJau3sI1Ix2iCYSsQvxk8WUCz3k1FaUSTDBdBo="
    );
    assert_eq!(lines[1], s.home.to_string_lossy());
    s.write("d/x", "env");
    let out = run(s
        .kura()
        .env("KURA_KEY", "from-env")
        .env("KURA_PATH", "d\n!d/skip")
        .arg("save"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Cache saved with key: from-env"),
        "{}",
        out.stderr
    );
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(s
        .kura()
        .env("KURA_KEY", "from-env")
        .env("KURA_PATH", "d\n!d/skip")
        .arg("restore"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.read("d/x"), "env");
}

#[test]
fn concurrent_saves_of_one_key_leave_exactly_one_entry() {
    let s = Sandbox::new();
    for i in 0..200 {
        s.write(&format!("d/{i}"), &format!("{i}").repeat(500));
    }
    let outcomes = support::concurrent_outcomes(
        (0..6)
            .map(|_| {
                let mut c = s.kura_std();
                c.args(["--json", "save", "--key", "race", "--path", "d"]);
                c
            })
            .collect(),
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "saved").count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().all(|o| o == "saved" || o == "exists"),
        "{outcomes:?}"
    );
    let ls = run(s.kura().args(["--json", "ls"]));
    assert_eq!(json(&ls)["entries"].as_array().unwrap().len(), 1);
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    assert_eq!(restore(&s, &["--key", "race", "--path", "d"]).code, 0);
    assert_eq!(tree(&s.ws.join("d")).len(), 200);
}

#[test]
fn long_keys_are_stored_and_found_by_long_prefixes() {
    let s = Sandbox::new();
    let stem = "é-ключ-".repeat(40); // 280 characters, far over a file name once encoded
    let key = format!("{stem}tail");
    assert!(key.chars().count() <= 512);
    s.write("d/f", "long");
    let out = save(&s, &key, &["d"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = restore(
        &s,
        &["--key", "miss", "--restore-key", &stem, "--path", "d"],
    );
    assert_eq!(json(&out)["matched_key"], key.as_str(), "{}", out.stderr);
    assert_eq!(s.read("d/f"), "long");
    let out = restore(&s, &["--key", &format!("{stem}other"), "--path", "d"]);
    assert_eq!(json(&out)["outcome"], "miss");
    let out = run(s.kura().args(["rm", &key]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(json(&run(s.kura().args(["--json", "ls"])))["entries"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn long_transfers_print_progress_lines() {
    let s = Sandbox::new();
    s.write_bytes("d/blob", &support::noise(24 << 20, 7));
    let out = run(s
        .kura()
        .env("KURA_PROGRESS_SECONDS", "0.001")
        .args(["save", "--key", "p", "--path", "d"]));
    // Once the walk is done the total is known: percent of the 24 MiB, and what was sent.
    assert!(
        out.stderr.lines().any(|l| l.starts_with("Packed ")
            && l.contains(" of 24.0 MiB (")
            && l.contains("%), sent ")
            && l.ends_with("/s")),
        "{}",
        out.stderr
    );
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(s
        .kura()
        .env("KURA_PROGRESS_SECONDS", "0.001")
        .args(["restore", "--key", "p", "--path", "d"]));
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("Received ") && l.contains(" of ") && l.contains("%")),
        "{}",
        out.stderr
    );
    let out = run(s
        .kura()
        .env("KURA_PROGRESS_SECONDS", "0")
        .args(["restore", "--key", "p", "--path", "d"]));
    assert!(!out.stderr.contains("Received "), "{}", out.stderr);
}

#[test]
fn dot_only_keys_and_scopes_stay_inside_the_store() {
    let s = Sandbox::new();
    for (key, scope) in [(".", ".."), ("..", "."), ("...", "")] {
        s.write("d/f", key);
        let out = run(s.kura().args([
            "--json", "--scope", scope, "save", "--key", key, "--path", "d",
        ]));
        assert_eq!(json(&out)["outcome"], "saved", "{key}: {}", out.stderr);
        s.write("d/f", "changed");
        let out = run(s.kura().args([
            "--json", "--scope", scope, "restore", "--key", key, "--path", "d",
        ]));
        assert_eq!(json(&out)["cache_hit"], true, "{key}: {}", out.stderr);
        assert_eq!(s.read("d/f"), key);
    }
    // Nothing was written beside the store directory.
    let siblings: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(siblings.len(), 3, "{siblings:?}"); // ws, home, store
    let ls = json(&run(s.kura().args(["--json", "ls"])));
    assert_eq!(ls["entries"].as_array().unwrap().len(), 3, "{ls}");
}

/// CI configurations pass settings as `KURA_X: ${{ inputs.x }}`, empty when the input is: an
/// empty setting is no setting (the default), never a bad value that fails the step.
#[test]
fn empty_settings_in_the_environment_are_defaults() {
    let s = Sandbox::new();
    s.write("d/a", "one");
    let empty = [
        "KURA_STRICT",
        "KURA_OVERWRITE",
        "KURA_DRY_RUN",
        "KURA_JSON",
        "KURA_FORMAT",
        "KURA_COMPRESSION_LEVEL",
        "KURA_WORKERS",
        "KURA_BASE_DIR",
        "KURA_CHUNK_CACHE",
        "KURA_CHUNK_SIZE",
    ];
    let out = run(s
        .kura()
        .envs(empty.iter().map(|k| (*k, "")))
        .args(["--json", "save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(s
        .kura()
        .envs(empty.iter().map(|k| (*k, "")))
        .args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(s.read("d/a"), "one");
}

/// A crash can tear an entry of the local store (it does not fsync): its metadata empty or
/// garbage, or its archive gone. Such an entry must not hold its key for good: a restore
/// misses (and removes it), the next save replaces it, and prune collects one left a day.
#[test]
fn a_torn_local_entry_is_a_miss_and_the_next_save_replaces_it() {
    for tear in ["empty meta", "garbage meta", "no archive"] {
        let s = Sandbox::new();
        s.write("d/a", "one");
        assert_eq!(json(&save(&s, "k", &["d"]))["outcome"], "saved");
        let meta = walk_find(&s.store, "meta.json");
        let entry = meta.parent().unwrap().to_path_buf();
        match tear {
            "empty meta" => std::fs::write(&meta, "").unwrap(),
            "garbage meta" => std::fs::write(&meta, "{\"key\": 7").unwrap(),
            _ => std::fs::remove_file(entry.join("archive")).unwrap(),
        }
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let out = restore(&s, &["--key", "k", "--path", "d"]);
        assert_eq!(out.code, 0, "{tear}: {}", out.stderr);
        assert_eq!(json(&out)["outcome"], "miss", "{tear}: {}", out.stderr);
        assert!(!s.ws.join("d").exists(), "{tear}");
        s.write("d/a", "two");
        let out = save(&s, "k", &["d"]);
        assert_eq!(json(&out)["outcome"], "saved", "{tear}: {}", out.stderr);
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let out = restore(&s, &["--key", "k", "--path", "d"]);
        assert_eq!(json(&out)["cache_hit"], true, "{tear}: {}", out.stderr);
        assert_eq!(s.read("d/a"), "two", "{tear}");
    }
    // Torn and a day old: prune removes the directory no listing shows.
    let s = Sandbox::new();
    s.write("d/a", "one");
    assert_eq!(json(&save(&s, "k", &["d"]))["outcome"], "saved");
    let entry = walk_find(&s.store, "meta.json")
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::write(entry.join("meta.json"), "").unwrap();
    let day_ago = filetime::FileTime::from_unix_time(chrono_now() - 2 * 86400, 0);
    filetime::set_file_mtime(&entry, day_ago).unwrap();
    let out = run(s.kura().args(["prune", "--max-age", "30d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!entry.exists(), "the torn entry is still there");
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A symlink's own mtime comes back, as GNU tar restores it (set on the link, not through it).
#[test]
fn symlink_mtimes_round_trip() {
    for format in ["archive", "chunked"] {
        let s = Sandbox::new();
        s.write("d/t", "target");
        let link = s.ws.join("d/l");
        std::os::unix::fs::symlink("t", &link).unwrap();
        let old = filetime::FileTime::from_unix_time(978_307_200, 123_000_000); // 2001
        filetime::set_symlink_file_times(&link, old, old).unwrap();
        let out = run(s.kura().args([
            "--json", "save", "--key", "k", "--path", "d", "--format", format,
        ]));
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        assert_eq!(
            json(&restore(&s, &["--key", "k", "--path", "d"]))["cache_hit"],
            true
        );
        let md = std::fs::symlink_metadata(&link).unwrap();
        assert!(md.file_type().is_symlink());
        assert_eq!(
            filetime::FileTime::from_last_modification_time(&md),
            old,
            "{format}"
        );
        let target = std::fs::metadata(s.ws.join("d/t")).unwrap();
        assert_ne!(
            filetime::FileTime::from_last_modification_time(&target),
            old
        );
    }
}
