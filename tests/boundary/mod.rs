//! The store is a trust boundary: whoever can write it (a job on a shared runner, any branch
//! with the bucket's credentials, a registry that misbehaves) writes the metadata, manifests,
//! listings and replies kura reads. Each test plants one hostile shape and checks the outcome
//! from outside: nothing written, deleted or read outside the store (the whole sandbox before
//! and after), the command ends within its deadline and in bounded memory, and what reaches
//! the runner's files and log is what kura meant to write.

mod bases;
mod bodies;
mod local;
mod remote;
mod replies;
use crate::snapshot;
use crate::support;

use crate::support::{json, run, Out, Sandbox};
use snapshot::outside_the_root;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Run `cmd`, killed after `secs`: its output, peak RSS and wall time. A command still running
/// at the deadline fails the test.
pub(crate) fn bounded(cmd: &mut std::process::Command, secs: u64) -> (Out, u64) {
    let started = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    cmd.stdin(std::process::Stdio::null());
    let (out, rss) = {
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        let d = done.clone();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < until {
                if d.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        support::wait_measured(child)
    };
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        started.elapsed() < Duration::from_secs(secs),
        "still running after {secs} s: {}",
        out.stderr
    );
    assert!(rss < 512 << 20, "peak RSS {} MiB", rss >> 20);
    (out, rss)
}

/// Everything in the sandbox but the store (and, for a restore, the restored directory).
pub(crate) fn around(s: &Sandbox) -> std::collections::BTreeMap<PathBuf, String> {
    outside_the_root(s.dir.path(), &s.store)
}

/// A directory an attacker would like removed: `~/.ssh` with a key in it.
pub(crate) fn victim(s: &Sandbox) -> PathBuf {
    let ssh = s.home.join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(ssh.join("id_ed25519"), "secret").unwrap();
    ssh
}

pub(crate) fn save(s: &Sandbox, key: &str, format: &str) {
    s.write("d/f", "the cache");
    let out = run(s.kura().args([
        "--json", "save", "--format", format, "--key", key, "--path", "d",
    ]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
}

/// The one entry directory of `key` in the store.
pub(crate) fn entry_dir(s: &Sandbox, key: &str) -> PathBuf {
    support::walk_find(&s.store, key)
}

pub(crate) fn edit_meta(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("meta.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
}

pub(crate) fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A restore of `key` that misses or hits (never fails the step), within a deadline.
pub(crate) fn restore(s: &Sandbox, key: &str) -> Out {
    let (out, _) = bounded(
        s.kura_std()
            .args(["--json", "restore", "--key", key, "--path", "d"]),
        60,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    out
}

pub(crate) fn kura_bounded(s: &Sandbox, args: &[&str]) -> Out {
    bounded(s.kura_std().args(args), 60).0
}
