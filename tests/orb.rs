//! The CircleCI orb: the packed orb.yml is what orb/pack.cjs makes of orb/src, validates
//! against CircleCI's schema, its scripts are shellcheck-clean, and they do under bash, in a
//! simulated CircleCI job, what the native steps do.

use crate::support;
use crate::support::{npm_package, Sandbox};
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml() -> PathBuf {
    npm_package("yaml@2.6.1")
}

#[test]
fn the_packed_orb_is_up_to_date() {
    let out = support::succeed(
        Command::new("node")
            .arg(root().join("orb/pack.cjs"))
            .env("NODE_PATH", yaml().join("node_modules")),
    );
    let packed = std::fs::read_to_string(root().join("orb/orb.yml")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == packed,
        "orb/orb.yml is stale: run NODE_PATH=<yaml>/node_modules node orb/pack.cjs > orb/orb.yml"
    );
}

#[test]
fn the_packed_orb_validates_against_circleci_schema() {
    crate::support::assert_valid("circle-ci", &["orb/orb.yml"]);
}

#[test]
fn the_scripts_are_shellcheck_clean() {
    let have = Command::new("shellcheck").arg("--version").output().is_ok();
    if !have {
        let st = Command::new("apt-get")
            .args(["install", "-y", "shellcheck"])
            .status()
            .expect("apt-get runs");
        assert!(st.success(), "apt-get install shellcheck failed");
    }
    let scripts: Vec<PathBuf> = std::fs::read_dir(root().join("orb/src/scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(scripts.len() >= 5);
    let out = Command::new("shellcheck").args(&scripts).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// One orb script under bash, as a CircleCI job runs it: CIRCLE_* set, the parameters in
/// KURA_PARAM_*, kura on PATH.
fn script(s: &Sandbox, name: &str, job: &str, params: &[(&str, &str)]) -> support::Out {
    let bin = assert_cmd::cargo::cargo_bin("kura");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("orb/src/scripts").join(name))
        .env_clear();
    // The sandbox's home and store; the branch comes from CircleCI, not from KURA_BRANCH.
    for (k, v) in s.kura_std().get_envs() {
        if let (Some(v), false) = (v, k == "KURA_BRANCH") {
            cmd.env(k, v);
        }
    }
    cmd.env("PATH", path)
        .env("CIRCLECI", "true")
        .env("CIRCLE_BRANCH", "main")
        .env("CIRCLE_WORKING_DIRECTORY", &s.ws)
        .env("CIRCLE_WORKFLOW_ID", "wf-1")
        .env("CIRCLE_JOB", job)
        .env("CIRCLE_BUILD_NUM", "103")
        .current_dir(&s.ws)
        .envs(params.iter().copied());
    support::run(&mut assert_cmd::Command::from_std(cmd))
}

#[test]
fn cache_steps_behave_like_the_native_ones() {
    let s = Sandbox::new();
    s.write("package-lock.json", "lock-1");
    s.write("node_modules/a/index.js", "a");
    std::fs::create_dir_all(s.home.join(".npm")).unwrap();
    std::fs::write(s.home.join(".npm/blob"), "b").unwrap();
    let key = r#"v1-npm-{{ .Branch }}-{{ checksum "package-lock.json" }}"#;
    let save = [
        ("KURA_PARAM_KEY", key),
        ("KURA_PARAM_PATHS", "~/.npm\nnode_modules\n"),
    ];
    let out = script(&s, "save_cache.sh", "build", &save);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Cache saved with key: v1-npm-main-"),
        "{}",
        out.stderr
    );
    // First writer wins, in the native step's words.
    let out = script(&s, "save_cache.sh", "build", &save);
    assert!(
        out.stderr.lines().any(|l| l
            .starts_with("Skipping cache generation, cache already exists for key: v1-npm-main-")),
        "{}",
        out.stderr
    );

    std::fs::remove_dir_all(s.ws.join("node_modules")).unwrap();
    std::fs::remove_dir_all(s.home.join(".npm")).unwrap();
    // No paths, as in the native step: the entry goes back where it came from; the first
    // key misses, the second matches as a prefix.
    let keys = "v1-npm-{{ .Branch }}-nothing\nv1-npm-{{ .Branch }}-\nv1-npm-\n";
    let out = script(
        &s,
        "restore_cache.sh",
        "build",
        &[("KURA_PARAM_KEYS", keys)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("Found a cache from build 103 at v1-npm-main-")),
        "{}",
        out.stderr
    );
    assert_eq!(s.read("node_modules/a/index.js"), "a");
    assert_eq!(
        std::fs::read_to_string(s.home.join(".npm/blob")).unwrap(),
        "b"
    );
    // A miss is not a failure.
    let out = script(
        &s,
        "restore_cache.sh",
        "build",
        &[("KURA_PARAM_KEY", "v2-")],
    );
    assert_eq!(out.code, 0);
    assert!(
        out.stderr
            .lines()
            .any(|l| l == "No cache is found for key: v2-"),
        "{}",
        out.stderr
    );
    // Neither key nor keys: bad input.
    assert_eq!(script(&s, "restore_cache.sh", "build", &[]).code, 2);
}

#[test]
fn workspace_steps_pass_files_between_jobs() {
    let s = Sandbox::new();
    s.write("out/dist/app.js", "built");
    let persist = [("KURA_PARAM_ROOT", "out"), ("KURA_PARAM_PATHS", "dist\n")];
    let out = script(&s, "persist_to_workspace.sh", "build", &persist);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let at = s.ws.join("attached");
    let at_s = at.display().to_string();
    let out = script(
        &s,
        "attach_workspace.sh",
        "test",
        &[("KURA_PARAM_AT", at_s.as_str())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(at.join("dist/app.js")).unwrap(),
        "built"
    );
}

#[test]
fn workspaces_without_a_shared_store_fail_with_the_fix() {
    let s = Sandbox::new();
    s.write("out/dist/app.js", "built");
    // The job's own store setting removed: only the default, job-local directory is left.
    let run_without_store = |name: &str, params: &[(&str, &str)]| {
        let mut env: Vec<(&str, &str)> = params.to_vec();
        env.push(("KURA_STORE", ""));
        script(&s, name, "build", &env)
    };
    let persist = [("KURA_PARAM_ROOT", "out"), ("KURA_PARAM_PATHS", "dist\n")];
    let out = run_without_store("persist_to_workspace.sh", &persist);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("set KURA_STORE") && out.stderr.contains("bucket"),
        "{}",
        out.stderr
    );
    let out = run_without_store("attach_workspace.sh", &[("KURA_PARAM_AT", "in")]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("set KURA_STORE"), "{}", out.stderr);
    assert!(!s.store.exists(), "a job-local layer was stored");
    // Missing parameters are named by the orb, not by bash.
    for (name, says) in [
        (
            "persist_to_workspace.sh",
            "kura/persist_to_workspace: the root parameter is empty",
        ),
        (
            "attach_workspace.sh",
            "kura/attach_workspace: the at parameter is empty",
        ),
        (
            "save_cache.sh",
            "kura/save_cache: the key parameter is empty",
        ),
        ("install.sh", "kura/install: the version parameter is empty"),
    ] {
        let out = script(&s, name, "build", &[]);
        assert_eq!(out.code, 2, "{name}: {}", out.stderr);
        assert!(out.stderr.starts_with(says), "{name}: {}", out.stderr);
        assert!(
            !out.stderr.contains("parameter null or not set"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn install_without_a_checksum_warns_and_installs_nothing() {
    let s = Sandbox::new();
    let out = script(
        &s,
        "install.sh",
        "build",
        &[
            ("KURA_PARAM_VERSION", "0.0.0-none"),
            ("KURA_PARAM_INSTALL_PATH", "~/bin"),
        ],
    );
    // A cache is an optimisation: the job goes on, and its cache steps are a miss.
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("warning: this orb has no sha256 for kura 0.0.0-none"),
        "{}",
        out.stderr
    );
    assert!(!s.home.join("bin/kura").exists());
}

#[test]
fn the_store_parameter_takes_the_new_store_urls() {
    let s = Sandbox::new();
    s.write("node_modules/a/index.js", "a");
    let tag = std::process::id();
    for store in [
        format!("{}orb-{tag}/", support::nginx::nginx().url),
        format!("oci://{}/orb/t{tag}", support::registry::open().addr),
    ] {
        let save = [
            ("KURA_PARAM_KEY", "v1-store-param"),
            ("KURA_PARAM_PATHS", "node_modules\n"),
            ("KURA_PARAM_STORE", store.as_str()),
        ];
        let out = script(&s, "save_cache.sh", "build", &save);
        assert!(
            out.stderr.contains("Cache saved with key: v1-store-param"),
            "{store}: {}",
            out.stderr
        );
        std::fs::remove_dir_all(s.ws.join("node_modules")).unwrap();
        let restore = [
            ("KURA_PARAM_KEYS", "v1-store-"),
            ("KURA_PARAM_STORE", store.as_str()),
        ];
        let out = script(&s, "restore_cache.sh", "build", &restore);
        assert_eq!(out.code, 0, "{store}: {}", out.stderr);
        assert_eq!(s.read("node_modules/a/index.js"), "a", "{store}");
    }
}

/// `format` picks how the entry is stored; empty leaves it to KURA_FORMAT, else archive; a
/// value kura does not know fails the step and names the choices.
#[test]
fn the_format_parameter_picks_archive_or_chunked() {
    let s = Sandbox::new();
    s.write("node_modules/a/index.js", "a");
    // The one entry in the store: its metadata's format (absent for an archive).
    let format_of = || -> serde_json::Value {
        let meta = support::walk_find(&s.store, "meta.json");
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(meta).unwrap()).unwrap()
            ["format"]
            .clone()
    };
    let save = |key: &str, format: &str| {
        script(
            &s,
            "save_cache.sh",
            "build",
            &[
                ("KURA_PARAM_KEY", key),
                ("KURA_PARAM_PATHS", "node_modules\n"),
                ("KURA_PARAM_FORMAT", format),
            ],
        )
    };
    let out = save("v1-chunked", "chunked");
    assert!(out.stderr.contains("Cache saved"), "{}", out.stderr);
    assert_eq!(format_of(), "chunked");
    std::fs::remove_dir_all(&s.store).unwrap();
    let out = save("v1-default", "");
    assert!(out.stderr.contains("Cache saved"), "{}", out.stderr);
    assert_eq!(format_of(), serde_json::Value::Null, "an archive");
    let out = save("v1-zip", "zip");
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("zip") && out.stderr.contains("archive"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_cache_step_without_a_store_warns_that_the_next_job_will_not_see_it() {
    let s = Sandbox::new();
    s.write("node_modules/a/index.js", "a");
    // The orb's one-word migration, with no store parameter and no KURA_STORE.
    let steps: [(&str, &[(&str, &str)]); 2] = [
        (
            "save_cache.sh",
            &[
                ("KURA_PARAM_KEY", "v1-x"),
                ("KURA_PARAM_PATHS", "node_modules"),
                ("KURA_STORE", ""),
            ],
        ),
        (
            "restore_cache.sh",
            &[("KURA_PARAM_KEY", "v1-x"), ("KURA_STORE", "")],
        ),
    ];
    for (step, params) in steps {
        let out = script(&s, step, "build", params);
        assert_eq!(out.code, 0, "{step}: {}", out.stderr);
        assert_eq!(
            out.stderr.matches("no store is configured").count(),
            1,
            "{step}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("CircleCI machine"),
            "{step}: {}",
            out.stderr
        );
    }
}
