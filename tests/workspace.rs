//! `kura persist` / `kura attach`, and the store management verbs.

use crate::snapshot;
use crate::support;

use std::os::unix::fs::PermissionsExt;

use crate::support::{json, run, tree, Sandbox};
use snapshot::snapshot;
use std::time::Duration;

fn persist(s: &Sandbox, job: &str, root: &str, paths: &[&str]) -> support::Out {
    let mut c = s.kura();
    c.args([
        "--json",
        "persist",
        "--workflow",
        "wf-1",
        "--job",
        job,
        "--root",
        root,
    ]);
    for p in paths {
        c.args(["--path", p]);
    }
    run(&mut c)
}

fn attach(s: &Sandbox, job: &str, at: &str) -> support::Out {
    run(s.kura().args([
        "--json",
        "attach",
        "--workflow",
        "wf-1",
        "--job",
        job,
        "--at",
        at,
    ]))
}

#[test]
fn layers_of_several_jobs_are_applied_together() {
    let s = Sandbox::new();
    s.write("build/out/app.bin", "binary");
    s.write("build/out/skip.tmp", "tmp");
    s.write("docs/site/index.html", "<html>");
    let out = persist(&s, "build", "build", &["out", "!out/*.tmp"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["layer"], "build~001~001");
    assert_eq!(persist(&s, "docs", "docs", &["site/*.html"]).code, 0);

    let out = attach(&s, "deploy", "ws-attached");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = tree(&s.ws.join("ws-attached"));
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["out/app.bin", "site/index.html"]);
    assert_eq!(json(&out)["layers"].as_array().unwrap().len(), 2);
}

#[test]
fn unrelated_jobs_persisting_one_path_differently_fail_attach() {
    let s = Sandbox::new();
    s.write("a/shared/config.json", "{\"from\":\"a\"}");
    s.write("a/same.txt", "same");
    s.write("b/shared/config.json", "{\"from\":\"b\"}");
    s.write("b/same.txt", "same");
    persist(&s, "job-a", "a", &["shared", "same.txt"]);
    persist(&s, "job-b", "b", &["shared", "same.txt"]);
    s.write("out/mine.txt", "the job's own file");
    let before = snapshot(s.dir.path(), &|_| false);
    let out = attach(&s, "fan-in", "out");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("Concurrent upstream jobs persisted the same file(s) into the workspace:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("shared/config.json (jobs job-a, job-b)"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("same.txt"),
        "identical content is no conflict: {}",
        out.stderr
    );
    assert_eq!(
        snapshot(s.dir.path(), &|_| false),
        before,
        "nothing anywhere changes when layers conflict"
    );
}

/// One job persists `x` as a file, another (unrelated) `x/` as a directory: in either order,
/// that is a conflict, reported before anything is written.
#[test]
fn a_file_and_a_directory_at_one_path_from_unrelated_jobs_conflict() {
    for order in [["job-a", "job-b"], ["job-b", "job-a"]] {
        let s = Sandbox::new();
        s.write("a/x", "a file");
        s.write("b/x/y", "in a directory");
        for job in order {
            let root = &job[4..];
            assert_eq!(persist(&s, job, root, &["x"]).code, 0);
        }
        let before = snapshot(s.dir.path(), &|_| false);
        let out = attach(&s, "fan-in", "out");
        assert_eq!(out.code, 1, "{order:?}: {}", out.stderr);
        assert!(out.stderr.contains("x (jobs "), "{order:?}: {}", out.stderr);
        assert_eq!(snapshot(s.dir.path(), &|_| false), before, "{order:?}");
    }
}

/// A persist path that leaves its root is bad input, as an absolute one is.
#[test]
fn a_persist_path_that_leaves_its_root_is_refused() {
    let s = Sandbox::new();
    s.write("root/in", "in");
    s.write("other/x", "x");
    for p in ["../other/x", "in/../../other", "/etc/hostname"] {
        let out = persist(&s, "job", "root", &[p]);
        assert_eq!(out.code, 2, "{p}: {}", out.stderr);
        assert!(out.stderr.contains("stay below it"), "{p}: {}", out.stderr);
    }
    assert_eq!(persist(&s, "job", "root", &["in/../in"]).code, 0);
}

/// A layer that cannot be written whole (a downstream job's file where its upstream left a
/// non-empty directory) fails the attach, and the attach is all or nothing: the layers before
/// it are rolled back too, newest first, and the user's own files are as they were.
#[test]
fn a_layer_that_cannot_be_written_whole_fails_the_attach_and_writes_nothing() {
    let s = Sandbox::new();
    s.write("up/x/y", "upstream's directory");
    s.write("up/v.txt", "1");
    assert_eq!(persist(&s, "up", "up", &["x", "v.txt"]).code, 0);
    assert_eq!(attach(&s, "mid", "mid").code, 0);
    std::fs::write(s.ws.join("mid/v.txt"), "2").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(persist(&s, "mid", "mid", &["v.txt"]).code, 0);
    assert_eq!(attach(&s, "down", "down").code, 0);
    std::fs::remove_dir_all(s.ws.join("down/x")).unwrap();
    s.write("down/x", "downstream's file");
    s.write("down/z", "downstream's other file");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(persist(&s, "down", "down", &["x", "z"]).code, 0);
    s.write("last/v.txt", "the job's own");
    let before = snapshot::without_directory_times(snapshot(&s.ws.join("last"), &|_| false));
    let out = attach(&s, "last", "last");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("could not be written whole"),
        "{}",
        out.stderr
    );
    let after = snapshot::without_directory_times(snapshot(&s.ws.join("last"), &|_| false));
    assert_eq!(after, before, "the failed attach left something");
    assert_eq!(s.read("last/v.txt"), "the job's own");
}

#[test]
fn a_downstream_job_may_overwrite_what_it_attached() {
    let s = Sandbox::new();
    s.write("up/v.txt", "1");
    persist(&s, "up", "up", &["v.txt"]);
    assert_eq!(attach(&s, "down", "down").code, 0);
    std::fs::write(s.ws.join("down/v.txt"), "2").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(persist(&s, "down", "down", &["v.txt"]).code, 0);
    let out = attach(&s, "last", "last");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.read("last/v.txt"), "2");
}

#[test]
fn a_rerun_attempt_replaces_the_jobs_earlier_layers() {
    let s = Sandbox::new();
    s.write("r/out.txt", "attempt 1");
    let persist_attempt = |attempt: &str| {
        run(s
            .kura()
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_RUN_ID", "777")
            .env("GITHUB_RUN_ATTEMPT", attempt)
            .env("GITHUB_JOB", "build")
            .env("GITHUB_WORKSPACE", &s.ws)
            .args(["persist", "--root", "r", "--path", "out.txt"]))
    };
    assert_eq!(persist_attempt("1").code, 0);
    s.write("r/out.txt", "attempt 2");
    std::thread::sleep(Duration::from_millis(20));
    let out = persist_attempt("2");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(s
        .kura()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_RUN_ID", "777")
        .env("GITHUB_RUN_ATTEMPT", "2")
        .env("GITHUB_JOB", "test")
        .args(["--json", "attach", "--at", "a"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.read("a/out.txt"), "attempt 2");
    assert_eq!(json(&out)["layers"], serde_json::json!(["build~002~001"]));
}

#[test]
fn workflow_and_job_come_from_the_ci_or_the_error_says_how() {
    let s = Sandbox::new();
    s.write("r/x", "x");
    let out = run(s.kura().args(["persist", "--root", "r", "--path", "x"]));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--workflow"), "{}", out.stderr);
    let circle = |c: &mut assert_cmd::Command| {
        c.env("CIRCLECI", "true")
            .env("CIRCLE_WORKFLOW_ID", "cwf")
            .env("CIRCLE_JOB", "build");
    };
    let mut c = s.kura();
    circle(&mut c);
    assert_eq!(
        run(c.args(["persist", "--root", "r", "--path", "x"])).code,
        0
    );
    let mut c = s.kura();
    circle(&mut c);
    let out = run(c.args(["attach", "--at", "got"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.read("got/x"), "x");
}

#[test]
fn attach_into_a_directory_kura_may_not_write_says_what_to_do() {
    let s = Sandbox::new();
    s.write("r/x", "x");
    persist(&s, "build", "r", &["x"]);
    let locked = s.dir.path().join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    let me = unsafe_geteuid();
    // As root, kura runs as nobody against a directory root owns; as anyone else, against a
    // directory of one's own without write permission. Either way the target is not writable.
    let (mut cmd, owner) = if me == 0 {
        // Everything the unprivileged user needs is readable; only the target is not writable.
        for p in [s.dir.path(), s.store.as_path()] {
            let st = std::process::Command::new("chmod")
                .args(["-R", "a+rX"])
                .arg(p)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(assert_cmd::cargo::cargo_bin("kura"));
        (c, 0)
    } else {
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        (
            std::process::Command::new(assert_cmd::cargo::cargo_bin("kura")),
            me,
        )
    };
    cmd.args(["attach", "--workflow", "wf-1", "--job", "j", "--at"])
        .arg(&locked)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KURA_STORE", format!("file://{}", s.store.display()))
        .env("TMPDIR", "/tmp")
        .current_dir("/");
    let out = run(&mut assert_cmd::Command::from_std(cmd));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("permission denied"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("belongs to uid {owner}"))
            && out.stderr.contains("directory you own"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("exit status"), "{}", out.stderr);
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);
}

fn unsafe_geteuid() -> u32 {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1)
}

#[test]
fn ls_rm_and_prune() {
    let s = Sandbox::new();
    for (k, size) in [("old", 40_000usize), ("mid", 40_000), ("new", 40_000)] {
        let data: String = (0..size)
            .map(|i| char::from(b'a' + ((i * 7919 + k.len() * 31) % 26) as u8))
            .collect();
        s.write("d/f", &data);
        // Archives: their sizes are all there is (chunked entries share packs).
        run(s
            .kura()
            .args(["save", "--format", "archive", "--key", k, "--path", "d"]));
        std::thread::sleep(Duration::from_millis(30));
    }
    let out = run(s.kura().arg("ls"));
    assert!(
        out.stdout.contains("old") && out.stdout.contains("new"),
        "{}",
        out.stdout
    );
    let out = run(s.kura().args(["rm", "mid"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Using "old" makes it the most recently used: prune by size drops "new" first.
    run(s.kura().args(["restore", "--key", "old", "--path", "d"]));
    let ls = json(&run(s.kura().args(["--json", "ls"])));
    let sizes: u64 = ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["size"].as_u64().unwrap())
        .sum();
    let out = run(s
        .kura()
        .args(["--json", "prune", "--max-size", &format!("{}", sizes - 1)]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["removed"], serde_json::json!(["new"]));
    let out = run(s.kura().args(["--json", "prune", "--max-age", "0s"]));
    assert_eq!(json(&out)["removed"], serde_json::json!(["old"]));
    assert_eq!(run(s.kura().args(["prune"])).code, 2);
}

#[test]
fn a_killed_save_leaves_no_visible_entry_and_prune_clears_it_a_day_later() {
    let s = Sandbox::new();
    for i in 0..8 {
        s.write_bytes(&format!("big/{i}"), &support::noise(8 << 20, i + 1));
    }
    let mut save = s.kura_std();
    // An archive: its bytes reach the store as they are packed, which the progress lines
    // count (a chunked save's reach it a 32 MiB pack at a time, which a loaded machine may
    // not report before the save ends).
    save.args([
        "save", "--format", "archive", "--key", "killed", "--path", "big",
    ]);
    // Killed once bytes reached the store's temporary area (past its 1 MiB write buffer).
    let mut child = support::spawn_until_sent(save, 3 << 20);
    child.kill().unwrap();
    child.wait().unwrap();
    let tmp = s.store.join(".tmp");
    let leftovers = || std::fs::read_dir(&tmp).unwrap().count();
    assert!(leftovers() > 0, "the killed save had begun writing");
    let ls = json(&run(s.kura().args(["--json", "ls"])));
    assert!(ls["entries"].as_array().unwrap().is_empty(), "{ls}");
    let out = run(s
        .kura()
        .args(["--json", "restore", "--key", "killed", "--path", "big"]));
    assert_eq!(json(&out)["outcome"], "miss");
    // A save may still be running: prune leaves what is younger than a day...
    assert_eq!(run(s.kura().args(["prune", "--max-age", "7d"])).code, 0);
    assert!(leftovers() > 0);
    // ...and removes it once it is older.
    let two_days_ago = filetime::FileTime::from_unix_time(
        (std::time::SystemTime::now() - Duration::from_secs(2 * 86400))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        0,
    );
    for e in std::fs::read_dir(&tmp).unwrap().flatten() {
        filetime::set_file_mtime(e.path(), two_days_ago).unwrap();
    }
    assert_eq!(run(s.kura().args(["prune", "--max-age", "7d"])).code, 0);
    assert_eq!(leftovers(), 0);
    // The key is free: a save now succeeds.
    let out = run(s
        .kura()
        .args(["--json", "save", "--key", "killed", "--path", "big"]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
}

#[test]
fn persist_dry_run_reports_and_stores_nothing() {
    let s = Sandbox::new();
    s.write("r/a", "123");
    s.write("r/b/c", "4567");
    let out = run(s.kura().args([
        "--json",
        "persist",
        "--dry-run",
        "--workflow",
        "w",
        "--job",
        "j",
        "--root",
        "r",
        "--path",
        "a",
        "--path",
        "b",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out);
    assert_eq!(
        (
            v["layer"].as_str(),
            v["files"].as_u64(),
            v["bytes"].as_u64()
        ),
        (Some("j~001~001"), Some(2), Some(7))
    );
    assert!(
        out.stderr.contains("Would persist layer j~001~001"),
        "{}",
        out.stderr
    );
    let ls = json(&run(s.kura().args(["--json", "ls"])));
    assert!(ls["entries"].as_array().unwrap().is_empty(), "{ls}");
    let out = run(s.kura().args([
        "persist",
        "--workflow",
        "w",
        "--job",
        "j",
        "--root",
        "r",
        "--path",
        "/etc",
    ]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("must be relative to --root"),
        "{}",
        out.stderr
    );
}

/// What a job attached is remembered in its own state directory, not a shared `/tmp` where
/// another user could plant a FIFO (a read that never returns) or a file of gigabytes; one
/// planted in the state directory is not read either.
#[test]
fn a_planted_record_of_attached_layers_does_not_hang_persist() {
    let s = Sandbox::new();
    s.write("up/v.txt", "1");
    let tmp = s.dir.path().join("shared-tmp");
    let state = s.home.join(".cache/kura/.state");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    for fifo in [
        tmp.join("kura-attached-wf-1~up"),
        tmp.join("kura-attached-wf-1%7Eup"),
        state.join("attached-wf-1%7Eup.json"),
    ] {
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let mut child = s
        .kura_std()
        .env("TMPDIR", &tmp)
        .args([
            "--json",
            "persist",
            "--workflow",
            "wf-1",
            "--job",
            "up",
            "--root",
            "up",
        ])
        .args(["--path", "v.txt"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(started.elapsed().as_secs() < 60, "persist hangs on a FIFO");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert_eq!(attach(&s, "down", "down").code, 0);
    assert_eq!(s.read("down/v.txt"), "1");
}
