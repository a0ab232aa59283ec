//! Promises the README makes that the other test files do not hold, each asserted on what
//! is on disk or in the store, from the command line as a user runs it.

use crate::snapshot;
use crate::support;

use crate::support::{json, restore, run, save, tree, Sandbox};
use snapshot::snapshot;

fn entries(s: &Sandbox) -> Vec<serde_json::Value> {
    let out = run(s.kura().args(["--json", "ls"]));
    json(&out)["entries"].as_array().unwrap().clone()
}

#[test]
fn lookup_only_finds_the_entry_and_writes_nothing() {
    let s = Sandbox::new();
    s.write("d/f", "cached");
    assert_eq!(json(&save(&s, "k", &["d"]))["outcome"], "saved");
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let before = snapshot(s.dir.path(), &|_| false);
    let ways: [(&[&str], Option<&str>); 3] = [
        (&["--lookup-only"], None),
        (&[], Some("1")),
        (&[], Some("yes")),
    ];
    for (flag, env) in ways {
        let mut c = s.kura();
        if let Some(v) = env {
            c.env("KURA_LOOKUP_ONLY", v);
        }
        c.args(["--json", "restore", "--key", "k", "--path", "d"])
            .args(flag);
        let out = run(&mut c);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let j = json(&out);
        assert_eq!(
            (&j["outcome"], &j["lookup_only"], &j["cache_hit"]),
            (&"hit".into(), &true.into(), &true.into()),
            "{j}"
        );
        assert!(
            out.stderr
                .contains("Cache found and can be restored from key: k"),
            "{}",
            out.stderr
        );
        assert_eq!(
            snapshot(s.dir.path(), &|_| false),
            before,
            "{flag:?} {env:?}"
        );
    }
}

#[test]
fn fail_on_miss_and_scope_come_from_the_environment() {
    let s = Sandbox::new();
    let miss = |v: &str| {
        let out = run(s
            .kura()
            .env("KURA_FAIL_ON_MISS", v)
            .args(["restore", "--key", "absent", "--path", "d"]));
        out.code
    };
    assert_eq!(miss("true"), 1);
    assert_eq!(miss("1"), 1);
    assert_eq!(miss("false"), 0);
    assert_eq!(miss("0"), 0);
    s.write("d/f", "team a");
    let out = run(s
        .kura()
        .env("KURA_SCOPE", "team-a")
        .args(["--json", "save", "--key", "scoped", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert_eq!(entries(&s)[0]["scope"], "team-a");
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(s
        .kura()
        .env("KURA_SCOPE", "team-b")
        .args(["--json", "restore", "--key", "scoped", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
    assert!(!s.exists("d"));
    let out = run(s
        .kura()
        .env("KURA_SCOPE", "team-a")
        .args(["--json", "restore", "--key", "scoped", "--path", "d"]));
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(s.read("d/f"), "team a");
}

#[test]
fn bad_keys_and_globs_are_exit_2_and_store_nothing() {
    let s = Sandbox::new();
    s.write("d/f", "x");
    let long = "k".repeat(513);
    for (key, says) in [
        ("a\u{1}b", "control"),
        ("tab\there", "control"),
        (long.as_str(), "512"),
    ] {
        let out = run(s.kura().args(["save", "--key", key, "--path", "d"]));
        assert_eq!(out.code, 2, "{key:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{key:?}: {}", out.stderr);
        let out = run(s.kura().args(["restore", "--key", key, "--path", "d"]));
        assert_eq!(out.code, 2, "{key:?}: {}", out.stderr);
    }
    for verb in ["save", "restore"] {
        let out = run(s.kura().args([verb, "--key", "k", "--path", "d/[a"]));
        assert_eq!(out.code, 2, "{verb}: {}", out.stderr);
        assert!(out.stderr.contains("d/[a"), "{verb}: {}", out.stderr);
    }
    assert!(entries(&s).is_empty());
    // Even --strict does not turn bad input into a store failure.
    let out = run(s
        .kura()
        .args(["--strict", "save", "--key", "a\u{1}b", "--path", "d"]));
    assert_eq!(out.code, 2);
}

#[test]
fn a_file_changing_during_save_is_named_and_nothing_is_stored() {
    for format in ["chunked", "archive"] {
        a_file_changing_during_a_save_of(format);
    }
}

fn a_file_changing_during_a_save_of(format: &str) {
    let s = Sandbox::new();
    s.write("d/small", "x");
    let growing = s.write_bytes("d/growing.log", &support::noise(64 << 20, 3));
    let writer = support::keep_growing(growing, b"another line\n");
    let out = run(s.kura().args([
        "--json", "save", "--format", format, "--key", "busy", "--path", "d",
    ]));
    drop(writer);
    assert_eq!(out.code, 0, "a cache failure is a warning: {}", out.stderr);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert!(
        out.stderr.contains("growing.log") && out.stderr.contains("changed while"),
        "{}",
        out.stderr
    );
    assert!(entries(&s).is_empty());
    assert_eq!(
        std::fs::read_dir(s.store.join(".tmp"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "the failed save left its temporary files"
    );
}

#[test]
fn workspace_verbs_fail_the_job_when_the_store_fails_and_caches_do_not() {
    let s = Sandbox::new();
    s.write("r/x", "x");
    // A store "directory" that is a file: every write and listing fails.
    let not_a_dir = s.dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "").unwrap();
    let store = format!("file://{}/store", not_a_dir.display());
    let kura = || {
        let mut c = s.kura();
        c.env("KURA_STORE", &store)
            .env("KURA_WORKFLOW", "wf")
            .env("KURA_JOB", "j");
        c
    };
    let out = run(kura().args(["persist", "--root", "r", "--path", "x"]));
    assert_eq!(out.code, 1, "persist: {}", out.stderr);
    assert!(out.stderr.starts_with("error:"), "{}", out.stderr);
    let out = run(kura().args(["attach", "--at", "out"]));
    assert_eq!(out.code, 1, "attach: {}", out.stderr);
    assert!(!s.exists("out"));
    let out = run(kura().args(["save", "--key", "k", "--path", "r"]));
    assert_eq!(out.code, 0, "save: {}", out.stderr);
    assert!(out.stderr.contains("--strict"), "{}", out.stderr);
    let out = run(kura().args(["--strict", "save", "--key", "k", "--path", "r"]));
    assert_eq!(out.code, 1, "save --strict: {}", out.stderr);
}

#[test]
fn on_github_warnings_are_annotations_and_the_summary_has_its_columns() {
    let s = Sandbox::new();
    s.write("d/f", &"payload ".repeat(10_000));
    let summary = s.dir.path().join("summary.md");
    let github = || {
        let mut c = s.kura();
        c.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_WORKSPACE", &s.ws);
        c
    };
    let out = run(github().args(["save", "--key", "gh-k", "--path", "d", "--path", "gone"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .any(|l| l == "::warning::path \"gone\" matched nothing"),
        "{}",
        out.stderr
    );
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(github().args(["restore", "--key", "gh-k", "--path", "d", "--path", "gone"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&summary).unwrap();
    let header = "| kura restore | key | result | size | time | speed | store |";
    assert!(text.contains(header), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains("`gh-k`") && l.contains("restored"))
        .unwrap_or_else(|| panic!("no restore row: {text}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    // | | `gh-k` | restored | 1.2 KiB | 0.0 s | 3.4 MiB/s | file:///.../store |
    assert_eq!(cells.len(), 9, "{row}");
    assert!(
        cells[7].starts_with("file://") && cells[7].ends_with("store"),
        "store: {row}"
    );
    assert!(cells[4].ends_with("B"), "size: {row}");
    assert!(cells[5].ends_with(" s"), "time: {row}");
    assert!(cells[6].ends_with("B/s"), "speed: {row}");
    assert!(text.contains("| kura save |"), "{text}");
}

#[test]
fn the_highest_compression_levels_keep_the_window_restores_accept() {
    let s = Sandbox::new();
    // Text-like data, large enough for zstd's biggest windows to matter.
    let words: Vec<u8> = support::noise(1 << 20, 8)
        .iter()
        .map(|b| b"abcdefgh \n"[(*b % 10) as usize])
        .collect();
    for i in 0..12 {
        s.write_bytes(&format!("d/{i}.txt"), &words);
    }
    let before = tree(&s.ws.join("d"));
    for level in ["20", "22"] {
        let key = format!("level-{level}");
        let out = run(s.kura().args([
            "--json",
            "save",
            "--key",
            &key,
            "--path",
            "d",
            "--compression-level",
            level,
        ]));
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        let archive = support::walk_find(&s.store, &key).join("archive");
        // zstd's own reading of the frame header.
        let info = std::process::Command::new("zstd")
            .arg("-lv")
            .arg(&archive)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&info.stdout);
        let window: u64 = text
            .lines()
            .find(|l| l.contains("Window Size"))
            .and_then(|l| l.split('(').nth(1))
            .and_then(|b| b.trim_end_matches(" B)").parse().ok())
            .unwrap_or_else(|| panic!("zstd -lv said {text}"));
        assert!(window <= 1 << 27, "level {level}: window {window}");
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let out = restore(&s, &["--key", &key, "--path", "d"]);
        support::assert_clean_hit(&out);
        assert_eq!(tree(&s.ws.join("d")), before);
    }
}

/// A restore into a directory kura may not write: another user's (as root, kura runs as
/// nobody against root's directory), or its own user's made read-only (mode 0555). Each
/// message names the cause and the fix, and the job goes on.
#[test]
fn a_restore_into_a_directory_it_may_not_write_says_what_to_do() {
    let me = std::process::Command::new("id").arg("-u").output().unwrap();
    let me: u32 = String::from_utf8(me.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Another user's directory can only be set up as root.
    let cases: &[bool] = if me == 0 { &[false, true] } else { &[true] };
    for &own in cases {
        let out = locked_restore(me, own);
        let said = if own {
            out.stderr.contains("is not writable (mode 555)") && out.stderr.contains("chmod u+w")
        } else {
            out.stderr.contains("belongs to uid 0") && out.stderr.contains("directory you own")
        };
        assert!(
            said && out.stderr.contains("permission denied"),
            "own {own}: {}",
            out.stderr
        );
    }
}

/// Restore into `locked/d`, with `locked` not writable for the kura process; `own`: it
/// belongs to kura's user (mode 0555), else to root.
fn locked_restore(me: u32, own: bool) -> support::Out {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new();
    let locked = s.dir.path().join("locked");
    std::fs::create_dir_all(locked.join("d")).unwrap();
    std::fs::write(locked.join("d/f"), "cached").unwrap();
    let path = locked.join("d").display().to_string();
    assert_eq!(json(&save(&s, "k", &[&path]))["outcome"], "saved");
    std::fs::remove_dir_all(locked.join("d")).unwrap();
    let shell = |args: &[&str]| {
        let st = std::process::Command::new(args[0])
            .args(&args[1..])
            .status()
            .unwrap();
        assert!(st.success(), "{args:?}");
    };
    let mut cmd = if me == 0 {
        for p in [s.dir.path(), s.store.as_path()] {
            shell(&["chmod", "-R", "a+rX", &p.display().to_string()]);
        }
        if own {
            shell(&["chown", "65534:65534", &locked.display().to_string()]);
        }
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(assert_cmd::cargo::cargo_bin("kura"));
        c
    } else {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("kura"))
    };
    if own {
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KURA_STORE", format!("file://{}", s.store.display()))
        .env("TMPDIR", "/tmp")
        .current_dir(&s.ws)
        .args(["--json", "restore", "--key", "k", "--path", &path]);
    let out = run(&mut assert_cmd::Command::from_std(cmd));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A cache failure: a warning, and the job goes on; nothing was written.
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);
    out
}

#[test]
fn failed_cache_steps_say_failed_to_save_or_restore_as_actions_cache_does() {
    let s = Sandbox::new();
    s.write("d/f", "x");
    let not_a_dir = s.dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "").unwrap();
    let run_on_github = |args: &[&str]| {
        run(s
            .kura()
            .env("GITHUB_ACTIONS", "true")
            .env(
                "KURA_STORE",
                format!("file://{}/store", not_a_dir.display()),
            )
            .args(args))
    };
    let out = run_on_github(&["save", "--key", "k", "--path", "d"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = out.stderr.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("::warning::Failed to save: "),
        "{}",
        out.stderr
    );
    // One annotation: the note about --strict is part of it, its line break escaped.
    assert!(line.contains("%0A(the job goes on"), "{line}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    // A failed restore (the store cannot be listed).
    let out = run_on_github(&["restore", "--key", "k", "--path", "d"]);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("::warning::Failed to restore: ")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_miss_says_when_the_key_exists_for_other_paths_and_ls_shows_them() {
    let s = Sandbox::new();
    s.write("d/f", "x");
    assert_eq!(json(&save(&s, "deps-1", &["d"]))["outcome"], "saved");
    let out = restore(&s, &["--key", "deps-1", "--path", "e", "--path", "d/f"]);
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "an entry for key deps-1 exists, saved for paths [d] (this job asks for [e, d/f])"
        ),
        "{}",
        out.stderr
    );
    // A plain miss says nothing more.
    let out = restore(&s, &["--key", "other", "--path", "d"]);
    assert!(!out.stderr.contains("exists"), "{}", out.stderr);
    // ls shows each entry's version and paths, and says when a prefix matches nothing.
    let version = kura_version_of(&["d"]);
    let out = run(s.kura().args(["ls"]));
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("deps-1 "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        row.contains(&version[..12]) && row.ends_with("  d"),
        "{row}"
    );
    let out = run(s.kura().args(["ls", "nope-"]));
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("no entry's key starts with \"nope-\""),
        "{}",
        out.stderr
    );
}

/// GitHub's version of these paths, computed here as the official client does.
fn kura_version_of(paths: &[&str]) -> String {
    use sha2::Digest;
    let mut parts: Vec<&str> = paths.to_vec();
    parts.extend(["zstd-without-long", "1.0"]);
    hex::encode(sha2::Sha256::digest(parts.join("|")))
}

#[test]
fn rm_and_prune_dry_runs_delete_nothing() {
    let s = Sandbox::new();
    s.write("d/f", "x");
    assert_eq!(json(&save(&s, "gone-soon", &["d"]))["outcome"], "saved");
    let before = snapshot(s.dir.path(), &|_| false);
    let out = run(s.kura().args(["--json", "rm", "--dry-run", "gone-soon"]));
    let j = json(&out);
    assert_eq!(
        (&j["count"], &j["dry_run"]),
        (&1.into(), &true.into()),
        "{j}"
    );
    assert!(out
        .stderr
        .contains("Would delete 1 entry with key gone-soon"));
    let out = run(s
        .kura()
        .args(["--json", "prune", "--dry-run", "--max-age", "0s"]));
    assert_eq!(json(&out)["removed"], serde_json::json!(["gone-soon"]));
    assert_eq!(
        snapshot(s.dir.path(), &|_| false),
        before,
        "a dry run changed something"
    );
    let out = run(s.kura().args(["--json", "rm", "gone-soon"]));
    assert_eq!(json(&out)["count"], 1);
    assert!(entries(&s).is_empty());
}

#[test]
fn a_hash_files_that_matches_nothing_warns() {
    let s = Sandbox::new();
    s.write("Cargo.lock", "x");
    let out = run(s.kura().args([
        "--json",
        "key",
        r#"v1-{{ hashFiles "nothing/**/*.lock" }}-{{ hashFiles "Cargo.lock" }}"#,
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let key = json(&out)["keys"][0].as_str().unwrap().to_string();
    assert!(key.starts_with("v1--"), "{key}");
    assert_eq!(out.stderr.matches("warning:").count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("hashFiles(\"nothing/**/*.lock\") matched no file"),
        "{}",
        out.stderr
    );
}

#[test]
fn warnings_are_coloured_on_a_terminal_only() {
    let s = Sandbox::new();
    let kura = assert_cmd::cargo::cargo_bin("kura");
    // `script` gives kura a terminal; the save warns that its path matched nothing.
    let under_tty = |extra: &str| {
        let cmd = format!(
            "{extra} {} --store file://{} save --key k --path missing",
            kura.display(),
            s.store.display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env_remove("CI")
            .env_remove("NO_COLOR")
            .env("TERM", "xterm")
            .current_dir(&s.ws)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tty = under_tty("");
    assert!(tty.contains("\x1b[1;33mwarning\x1b[0m: "), "{tty:?}");
    let plain = under_tty("NO_COLOR=1");
    assert!(
        plain.contains("warning: ") && !plain.contains('\x1b'),
        "{plain:?}"
    );
    let ci = under_tty("CI=true");
    assert!(!ci.contains('\x1b'), "{ci:?}");
    // Not a terminal: plain.
    let out = run(s.kura().args(["save", "--key", "k", "--path", "missing"]));
    assert!(out.stderr.starts_with("warning: "), "{:?}", out.stderr);
}

#[test]
fn the_readme_first_command_saves_and_restores_a_real_directory() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/first-run.sh");
    let out = std::process::Command::new(&script)
        .env("KURA", assert_cmd::cargo::cargo_bin("kura"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Cache saved with key: demo-"), "{err}");
    assert!(err.contains("Cache restored from key: demo-"), "{err}");
    assert!(!err.contains("restore-key"), "an exact hit: {err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored src/ exactly as it was saved"),
        "{err}"
    );
}

#[test]
fn a_terminal_shows_a_progress_bar_and_a_log_shows_lines() {
    let s = Sandbox::new();
    for i in 0..4 {
        s.write_bytes(&format!("d/{i}"), &support::noise(32 << 20, 40 + i));
    }
    let kura = assert_cmd::cargo::cargo_bin("kura");
    let cmd = format!(
        // Level 12 on one worker: long enough for the bar, whatever the build.
        "{} --store file://{} --workers 1 save --key bar --path d --compression-level 12",
        kura.display(),
        s.store.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("CI")
        .env("TERM", "xterm")
        .env("KURA_PROGRESS_SECONDS", "1")
        .current_dir(&s.ws)
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    let short: String = tty.chars().take(600).collect();
    // indicatif redraws in place: a carriage return and an erase-line before each frame.
    assert!(tty.contains("Packed ["), "{short:?}");
    assert!(
        tty.contains("/128.00 MiB ") && tty.contains(" ETA "),
        "the bar knows the total: {short:?}"
    );
    assert!(tty.contains("\r\x1b[2K"), "{short:?}");
    // No periodic log lines on a terminal.
    assert!(
        !tty.lines()
            .any(|l| l.starts_with("Packed ") && l.contains(" of ")),
        "{short:?}"
    );
    assert!(tty.contains("Cache saved with key: bar"), "{short:?}");
}
