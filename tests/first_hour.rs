//! A new user's first hour: the traps a team meets before its first green build, each
//! asserted on what the user sees and what is on disk.

use crate::support::{json, run, Sandbox};

/// `kura` as a CI job with no store configured would run it.
fn in_ci(s: &Sandbox, ci: (&str, &str)) -> assert_cmd::Command {
    let mut c = s.kura();
    c.env_remove("KURA_STORE").env(ci.0, ci.1);
    c
}

fn keys_in(dir: &std::path::Path) -> Vec<String> {
    let s = Sandbox::new();
    let out = run(s
        .kura()
        .env("KURA_STORE", format!("file://{}", dir.display()))
        .args(["--json", "ls"]));
    json(&out)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_cache_in_ci_without_a_store_warns_and_strict_refuses_it() {
    for ci in [
        ("CIRCLECI", "true"),
        ("GITLAB_CI", "true"),
        ("GITHUB_ACTIONS", "true"),
    ] {
        let s = Sandbox::new();
        s.write("d/f", "x");
        let local = s.home.join(".cache/kura");
        let out = run(in_ci(&s, ci).args(["--json", "save", "--key", "k", "--path", "d"]));
        assert_eq!(out.code, 0, "{ci:?}: {}", out.stderr);
        assert_eq!(json(&out)["outcome"], "saved");
        assert_eq!(
            json(&out)["store"]
                .as_str()
                .map(|l| l.contains(".cache/kura")),
            Some(true),
            "{}",
            out.stdout
        );
        assert_eq!(
            out.stderr.matches("no store is configured").count(),
            1,
            "{ci:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&local.display().to_string()),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("KURA_STORE"), "{}", out.stderr);
        assert_eq!(
            out.stderr.contains("gha://"),
            ci.0 == "GITHUB_ACTIONS",
            "{}",
            out.stderr
        );
        // --strict: an error, and nothing kept.
        let out = run(in_ci(&s, ci).args(["--strict", "save", "--key", "k2", "--path", "d"]));
        assert_eq!(out.code, 1, "{ci:?}: {}", out.stderr);
        assert_eq!(keys_in(&local), vec!["k".to_string()]);
        // Named on purpose (a self-hosted runner's disk): no warning.
        let out = run(in_ci(&s, ci)
            .env("KURA_STORE", format!("file://{}", local.display()))
            .args(["restore", "--key", "k", "--path", "d"]));
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            !out.stderr.contains("no store is configured"),
            "{}",
            out.stderr
        );
    }
    // Not in CI: the local default is what a laptop wants.
    let s = Sandbox::new();
    s.write("d/f", "x");
    let out = run(s
        .kura()
        .env_remove("KURA_STORE")
        .args(["save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stderr.contains("no store is configured"),
        "{}",
        out.stderr
    );
}
