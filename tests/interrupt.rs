//! A cancelled job: CI runners stop a cancelled step with SIGINT or SIGTERM. A restore that is
//! stopped midway undoes what it wrote, puts the user's files back where they were, and exits
//! as the signal would; a save that is stopped leaves no entry.

use crate::snapshot;
use crate::support;

use crate::support::{json, noise, save, Sandbox};
use snapshot::{snapshot, without_directory_times};

/// Stop a restore over a changed tree as soon as it has moved a first file aside; the whole
/// workspace must be as it was before the restore began, byte for byte.
#[test]
fn a_restore_stopped_by_a_signal_puts_the_tree_back() {
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let s = Sandbox::new();
        for i in 0..300 {
            s.write_bytes(&format!("d/f{i:03}"), &noise(300 << 10, i));
        }
        let out = save(&s, "k", &["d"]);
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        for i in 0..300 {
            s.write(&format!("d/f{i:03}"), "the job's own version");
        }
        // Everything but a directory's size and mtime, which creating and renaming change.
        let before = without_directory_times(snapshot(&s.ws, &|_| false));
        let mut child = s
            .kura_std()
            .args(["restore", "--key", "k", "--path", "d"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let moved_aside = || {
            std::fs::read_dir(s.ws.join("d"))
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".kura-aside"))
        };
        let started = std::time::Instant::now();
        while !moved_aside() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the restore ended before it moved anything aside"
            );
            assert!(started.elapsed().as_secs() < 60);
        }
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        let name = if signal == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        assert!(stderr.contains(&format!("stopped by {name}")), "{stderr}");
        assert!(stderr.contains("the tree is as it was"), "{stderr}");
        assert!(!stderr.contains("corrupt"), "{stderr}");
        let after = without_directory_times(snapshot(&s.ws, &|_| false));
        let differ: Vec<_> = before
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(v))
            .map(|(k, v)| format!("{}: {v} -> {:?}", k.display(), after.get(k)))
            .chain(
                after
                    .keys()
                    .filter(|k| !before.contains_key(*k))
                    .map(|k| format!("new {}", k.display())),
            )
            .take(5)
            .collect();
        assert!(
            differ.is_empty(),
            "the workspace differs after the stopped restore: {differ:#?}"
        );
        // The entry is not to blame: it stays, and a restore that is not stopped hits.
        let out = support::restore(&s, &["--key", "k", "--path", "d"]);
        assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    }
}

/// A save stopped midway (either format) says so, exits as the signal would, and leaves
/// nothing: no entry (a restore of its key misses, `ls` lists nothing), no temporary files and
/// none of the packs it had uploaded.
#[test]
fn a_save_stopped_by_a_signal_leaves_nothing() {
    for (format, signal, code) in [
        ("archive", libc::SIGTERM, 143),
        ("chunked", libc::SIGINT, 130),
    ] {
        let s = Sandbox::new();
        // Enough that the first 32 MiB pack of a chunked save goes up well before the end.
        for i in 0..100 {
            s.write_bytes(&format!("d/f{i:03}"), &noise(1 << 20, i));
        }
        let mut cmd = s.kura_std();
        cmd.args(["save", "--key", "k", "--path", "d", "--format", format]);
        let (mut child, log) = support::spawn_until_sent_logged(cmd, 20 << 20);
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        let stderr = log.join().unwrap();
        assert_eq!(status.code(), Some(code), "{format}: {stderr}");
        assert!(
            stderr.contains("stopped by SIG") && stderr.contains("nothing is saved"),
            "{format}: {stderr}"
        );
        assert!(!stderr.contains("the job goes on"), "{format}: {stderr}");
        let left: Vec<_> = support::files_below(&s.store);
        assert_eq!(
            left,
            Vec::<std::path::PathBuf>::new(),
            "{format}: the store keeps {left:?}"
        );
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let out = support::restore(&s, &["--key", "k", "--path", "d"]);
        assert_eq!(json(&out)["outcome"], "miss", "{format}: {}", out.stderr);
        let out = support::run(s.kura().args(["ls"]));
        assert!(!out.stdout.contains('k'), "{format}: {}", out.stdout);
        // Where a save that is not stopped shows.
        s.write("d/a", "a");
        assert_eq!(json(&save(&s, "k", &["d"]))["outcome"], "saved");
        assert!(support::run(s.kura().args(["ls"])).stdout.contains('k'));
    }
}

/// What a restore killed with SIGKILL leaves aside (`.kura-aside.PID.N`, named as the
/// stopped restore above showed them) is no part of the next save; other names that look
/// alike are.
#[test]
fn a_save_leaves_out_what_a_killed_restore_moved_aside() {
    let s = Sandbox::new();
    s.write("d/kept", "kept");
    s.write("d/.kura-aside.4242.1", "the user's old file");
    s.write("d/sub/.kura-aside.17.23", "another");
    s.write("d/.kura-aside.notes", "a file of the user's");
    s.write("d/.kura-aside.1.2.3", "one more");
    assert_eq!(json(&save(&s, "k", &["d"]))["outcome"], "saved");
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = support::restore(&s, &["--key", "k", "--path", "d"]);
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    let names: Vec<String> = support::tree(&s.ws.join("d"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, [".kura-aside.1.2.3", ".kura-aside.notes", "kept"]);
}

/// A workspace layer stopped midway leaves no layer and nothing in the store.
#[test]
fn a_persist_stopped_by_a_signal_leaves_nothing() {
    let s = Sandbox::new();
    for i in 0..60 {
        s.write_bytes(&format!("w/f{i:02}"), &noise(1 << 20, i));
    }
    let mut cmd = s.kura_std();
    cmd.env("KURA_WORKFLOW", "wf-1")
        .env("KURA_JOB", "build")
        .args(["persist", "--root", "w", "--path", "."]);
    let (mut child, log) = support::spawn_until_sent_as_is(cmd, 8 << 20);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let stderr = log.join().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped by SIGINT"), "{stderr}");
    let left = support::files_below(&s.store);
    assert_eq!(
        left,
        Vec::<std::path::PathBuf>::new(),
        "the store keeps {left:?}"
    );
}
