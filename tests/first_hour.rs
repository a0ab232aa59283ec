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

fn bytes_below(dir: &std::path::Path) -> u64 {
    crate::support::files_below(dir)
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum()
}

#[test]
fn prune_says_what_it_freed_what_waits_and_until_when() {
    let s = Sandbox::new();
    for i in 0..4u64 {
        s.write_bytes("d/f", &crate::support::noise(256 << 10, i));
        let out = run(s.kura().args([
            "--json",
            "save",
            "--format",
            "chunked",
            "--key",
            &format!("k{i}"),
            "--path",
            "d",
        ]));
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before = bytes_below(&s.store);
    // A dry run names each entry it would remove, and removes nothing.
    let out = run(s
        .kura()
        .args(["--json", "prune", "--max-size", "600K", "--dry-run"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let would = json(&out)["removed"].clone();
    assert!(!would.as_array().unwrap().is_empty(), "{}", out.stdout);
    for k in would.as_array().unwrap() {
        let line = format!("Would prune {}", k.as_str().unwrap());
        assert!(out.stderr.contains(&line), "{line}: {}", out.stderr);
    }
    assert_eq!(bytes_below(&s.store), before);
    // The prune: what it says it freed is what left the disk (with the entries' small
    // metadata files), and the packs it could not delete yet are named with their day.
    let started = kura::store::now_ms();
    let out = run(s.kura().args(["--json", "prune", "--max-size", "600K"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = json(&out);
    assert_eq!(j["removed"], would);
    let freed = j["freed_bytes"].as_u64().unwrap();
    let gone = before - bytes_below(&s.store);
    assert!(
        freed <= gone && gone <= freed + (16 << 10),
        "freed {freed}, gone {gone}"
    );
    let dead = j["dead_pack_bytes"].as_u64().unwrap();
    assert!(dead >= 256 << 10, "{}", out.stdout);
    let go = j["dead_packs_go_ms"].as_u64().unwrap();
    let day = 24 * 3600 * 1000;
    assert!(go >= started + day && go <= started + day + 60_000, "{go}");
    assert!(
        out.stderr
            .contains("no longer referenced, which a prune deletes from"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&kura::units::human(freed)),
        "{}",
        out.stderr
    );
}

#[test]
fn rm_of_a_key_in_another_scope_says_where_it_is() {
    let s = Sandbox::new();
    s.write("d/f", "x");
    let out = run(s.kura().args([
        "--json", "--scope", "a", "save", "--key", "k", "--path", "d",
    ]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    for dry in [true, false] {
        let mut c = s.kura();
        c.args(["--json", "rm", "k", "--ref", "b"]);
        if dry {
            c.arg("--dry-run");
        }
        let out = run(&mut c);
        assert_eq!(json(&out)["count"], 0, "{}", out.stdout);
        assert!(
            out.stderr.contains("the key is in scope a"),
            "{}",
            out.stderr
        );
    }
    let listed = json(&run(s.kura().args(["--json", "ls"])));
    assert_eq!(listed["entries"].as_array().unwrap().len(), 1);
}
