//! The GitLab CI template: its before_script and after_script, run under bash in a simulated
//! GitLab job, do what GitLab's `cache:` does (policy, fallback keys, when, protected refs).

use crate::support;
use crate::support::{npm_package, Sandbox};
use std::path::PathBuf;
use std::process::Command;

fn template_part(parts: &[&str]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = support::succeed(
        Command::new("node")
            .arg(root.join("tests/support/yaml-get.cjs"))
            .arg(npm_package("yaml@2.6.1"))
            .arg(root.join("templates/gitlab/kura.gitlab-ci.yml"))
            .args(parts),
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_template_validates_against_gitlab_ci_schema() {
    support::assert_valid("gitlab-ci", &["templates/gitlab/kura.gitlab-ci.yml"]);
}

/// One job phase under bash: "before" (install, restore) or "after" (save).
fn phase(s: &Sandbox, which: &str, vars: &[(&str, &str)]) -> support::Out {
    let script = match which {
        "before" => template_part(&[".kura-install/script/0", ".kura-cache/before_script/1"]),
        _ => template_part(&[".kura-cache/after_script/0"]),
    };
    let bin = assert_cmd::cargo::cargo_bin("kura");
    let mut cmd = Command::new("bash");
    cmd.args(["-e", "-c", &script]).env_clear();
    for (k, v) in s.kura_std().get_envs() {
        if let (Some(v), false) = (v, k == "KURA_BRANCH") {
            cmd.env(k, v);
        }
    }
    cmd.env("GITLAB_CI", "true")
        .env("CI_PROJECT_DIR", &s.ws)
        .env("CI_COMMIT_REF_NAME", "main")
        .env("CI_COMMIT_REF_PROTECTED", "true")
        .env("CI_JOB_STATUS", "success")
        .env("KURA_BIN", &bin)
        .env("KURA_PATH", "vendor\n")
        .env("KURA_POLICY", "pull-push")
        .env("KURA_WHEN", "on_success")
        .current_dir(&s.ws)
        .envs(vars.iter().copied());
    let out = support::run(&mut assert_cmd::Command::from_std(cmd));
    assert_eq!(out.code, 0, "{which}: {}\n{}", out.stdout, out.stderr);
    out
}

/// The keys in the sandbox's store, sorted.
fn keys(s: &Sandbox) -> Vec<String> {
    let out = support::run(s.kura().args(["--json", "ls"]));
    let mut keys: Vec<String> = support::json(&out)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

#[test]
fn policies_fallback_keys_and_protected_refs() {
    let s = Sandbox::new();
    s.write("vendor/gem", "v1");
    let key = [("KURA_KEY", "gems-1")];
    // pull-push: a miss, then the save.
    let out = phase(&s, "before", &key);
    assert!(out.stderr.contains("Cache not found"), "{}", out.stderr);
    let out = phase(&s, "after", &key);
    assert!(
        out.stderr.contains("Cache saved with key: gems-1"),
        "{}",
        out.stderr
    );
    assert_eq!(keys(&s), ["gems-1"]);

    // The next job restores through a fallback key.
    s.write("vendor/gem", "local");
    let fallback = [
        ("KURA_KEY", "gems-2"),
        ("KURA_RESTORE_KEYS", "nope-\ngems-"),
    ];
    let out = phase(&s, "before", &fallback);
    assert!(
        out.stderr.contains("Cache restored from key: gems-1"),
        "{}",
        out.stderr
    );
    assert_eq!(s.read("vendor/gem"), "v1");

    // GitLab's project-wide CACHE_FALLBACK_KEY comes after the job's own fallback keys.
    s.write("vendor/gem", "local");
    let global = [
        ("KURA_KEY", "gems-7"),
        ("KURA_RESTORE_KEYS", "nope-"),
        ("CACHE_FALLBACK_KEY", "gems-1"),
    ];
    let out = phase(&s, "before", &global);
    assert!(
        out.stderr.contains("Cache restored from key: gems-1"),
        "{}",
        out.stderr
    );
    assert_eq!(s.read("vendor/gem"), "v1");

    // An unprotected ref does not see the protected half.
    let unprotected = [("KURA_KEY", "gems-1"), ("CI_COMMIT_REF_PROTECTED", "false")];
    let out = phase(&s, "before", &unprotected);
    assert!(out.stderr.contains("Cache not found"), "{}", out.stderr);

    // policy pull never saves; policy push never restores.
    let pull = [("KURA_KEY", "gems-3"), ("KURA_POLICY", "pull")];
    phase(&s, "after", &pull);
    assert_eq!(keys(&s), ["gems-1"], "policy pull saved");
    s.write("vendor/gem", "mine");
    let push = [("KURA_KEY", "gems-1"), ("KURA_POLICY", "push")];
    phase(&s, "before", &push);
    assert_eq!(s.read("vendor/gem"), "mine", "policy push restored");

    // when: on_success skips the save of a failed job; always does not.
    let failed = [("KURA_KEY", "gems-4"), ("CI_JOB_STATUS", "failed")];
    phase(&s, "after", &failed);
    assert_eq!(
        keys(&s),
        ["gems-1"],
        "a failed job saved under when: on_success"
    );
    let always = [
        ("KURA_KEY", "gems-4"),
        ("CI_JOB_STATUS", "failed"),
        ("KURA_WHEN", "always"),
    ];
    phase(&s, "after", &always);
    assert_eq!(keys(&s), ["gems-1", "gems-4"], "when: always did not save");
}

#[test]
fn the_template_takes_the_new_store_urls() {
    let s = Sandbox::new();
    let tag = std::process::id();
    for store in [
        format!("{}gitlab-{tag}/", support::nginx::nginx().url),
        format!("oci://{}/gitlab/t{tag}", support::registry::open().addr),
    ] {
        s.write("vendor/gem", "v1");
        let vars = [("KURA_KEY", "gems-url"), ("KURA_STORE", store.as_str())];
        // The first job: installs kura, misses, saves.
        let out = phase(&s, "before", &vars);
        assert!(
            out.stderr.contains("Cache not found"),
            "{store}: {}",
            out.stderr
        );
        let out = phase(&s, "after", &vars);
        assert!(
            out.stderr.contains("Cache saved with key: gems-url"),
            "{store}: {}",
            out.stderr
        );
        s.write("vendor/gem", "local");
        let out = phase(&s, "before", &vars);
        assert!(
            out.stderr.contains("Cache restored from key: gems-url"),
            "{store}: {}",
            out.stderr
        );
        assert_eq!(s.read("vendor/gem"), "v1", "{store}");
    }
}
