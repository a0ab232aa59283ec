//! What kura tells the GitHub runner: step outputs, state and the job summary, as
//! `actions/cache` writes them.

use crate::support;
use crate::support::{run, Sandbox};

struct Files {
    output: std::path::PathBuf,
    state: std::path::PathBuf,
    summary: std::path::PathBuf,
}

fn on_github(s: &Sandbox, args: &[&str]) -> Files {
    let f = Files {
        output: s.dir.path().join("output"),
        state: s.dir.path().join("state"),
        summary: s.dir.path().join("summary"),
    };
    for p in [&f.output, &f.state, &f.summary] {
        std::fs::write(p, "").unwrap();
    }
    let mut c = s.kura();
    c.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", &s.ws)
        .env("GITHUB_OUTPUT", &f.output)
        .env("GITHUB_STATE", &f.state)
        .env("GITHUB_STEP_SUMMARY", &f.summary)
        .args(args);
    let out = run(&mut c);
    assert_eq!(out.code, 0, "{}", out.stderr);
    f
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn outputs_state_and_summary_follow_actions_cache() {
    let s = Sandbox::new();
    s.write("d/f", "x");
    let f = on_github(&s, &["save", "--key", "out-1", "--path", "d"]);
    assert_eq!(
        support::runner_file(&f.output),
        "",
        "a save sets no outputs"
    );
    let summary = read(&f.summary);
    assert!(
        summary.contains("| kura save |") && summary.contains("`out-1` | saved |"),
        "{summary}"
    );

    let f = on_github(&s, &["restore", "--key", "out-1", "--path", "d"]);
    assert_eq!(
        support::runner_file(&f.output),
        "cache-hit=true\ncache-primary-key=out-1\ncache-matched-key=out-1\n"
    );
    assert_eq!(
        support::runner_file(&f.state),
        "CACHE_KEY=out-1\nCACHE_RESULT=out-1\n"
    );
    assert!(read(&f.summary).contains("`out-1` | restored |"));

    let f = on_github(
        &s,
        &[
            "restore",
            "--key",
            "out-2",
            "--restore-key",
            "out-",
            "--path",
            "d",
        ],
    );
    assert_eq!(
        support::runner_file(&f.output),
        "cache-hit=false\ncache-primary-key=out-2\ncache-matched-key=out-1\n"
    );

    // A miss leaves cache-hit empty, as actions/cache does.
    let f = on_github(&s, &["restore", "--key", "nothing", "--path", "d"]);
    assert_eq!(
        support::runner_file(&f.output),
        "cache-hit=\ncache-primary-key=nothing\ncache-matched-key=\n"
    );
    assert!(read(&f.summary).contains("`nothing` | not found |"));
}

#[test]
fn progress_lines_fold_into_a_group_on_github() {
    let s = Sandbox::new();
    s.write_bytes("big/blob", &support::noise(48 << 20, 3));
    let mut c = s.kura();
    c.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", &s.ws)
        .env("KURA_PROGRESS_SECONDS", "0.01")
        .args(["save", "--key", "grouped", "--path", "big"]);
    let out = run(&mut c);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let start = out
        .stderr
        .find("::group::Packed progress")
        .expect(&out.stderr);
    let end = out.stderr.find("::endgroup::").expect(&out.stderr);
    assert!(
        start < end && out.stderr[start..end].contains("Packed "),
        "{}",
        out.stderr
    );
    assert!(out.stderr[end..].contains("Cache saved with key: grouped"));
}
