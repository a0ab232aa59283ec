//! The GitHub Action: its files validate against the published schema, and its shim runs
//! kura the way the runner runs a node24 action (INPUT_* variables, the GITHUB_* files,
//! STATE_* for the post step).

use crate::support;
use crate::support::Sandbox;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn action_files_validate_against_the_schema() {
    support::assert_valid(
        "github-actions",
        &["action.yml", "restore/action.yml", "save/action.yml"],
    );
}

/// The runner's side of one step: the inputs, the files, the state from earlier steps.
struct Runner<'a> {
    s: &'a Sandbox,
    output: PathBuf,
    state: PathBuf,
    summary: PathBuf,
}

impl<'a> Runner<'a> {
    fn new(s: &'a Sandbox) -> Runner<'a> {
        let r = Runner {
            s,
            output: s.dir.path().join("gh-output"),
            state: s.dir.path().join("gh-state"),
            summary: s.dir.path().join("gh-summary"),
        };
        for f in [&r.output, &r.state, &r.summary] {
            std::fs::write(f, "").unwrap();
        }
        r
    }

    /// `node <shim>` with the inputs; state from earlier steps comes back as STATE_*.
    fn step(
        &self,
        script: &Path,
        inputs: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> std::process::Output {
        std::fs::write(&self.output, "").unwrap();
        let mut c = Command::new("node");
        c.arg(script)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.s.home)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_WORKSPACE", &self.s.ws)
            .env("GITHUB_OUTPUT", &self.output)
            .env("GITHUB_STATE", &self.state)
            .env("GITHUB_STEP_SUMMARY", &self.summary)
            .env("KURA_STORE", format!("file://{}", self.s.store.display()))
            .env("KURA_PROGRESS_SECONDS", "0")
            .current_dir(&self.s.ws);
        for (k, v) in support::runner_pairs(&self.state) {
            c.env(format!("STATE_{k}"), v);
        }
        for (k, v) in inputs {
            c.env(format!("INPUT_{}", k.to_uppercase()), v);
        }
        c.envs(env.iter().copied()).output().unwrap()
    }

    fn outputs(&self) -> String {
        support::runner_file(&self.output)
    }
}

fn kura_bin() -> String {
    assert_cmd::cargo::cargo_bin("kura").display().to_string()
}

#[test]
fn the_root_action_restores_then_saves_in_post_unless_the_key_hit() {
    let s = Sandbox::new();
    s.write("deps/lock", "v1");
    s.write("deps/pkg/a", "a");
    let shim = |f: &str| root().join("action").join(f);
    let inputs = [
        ("path", "deps/pkg\n"),
        ("key", r#"deps-{{ hashFiles "deps/lock" }}"#),
        ("restore-keys", "deps-\n"),
    ];
    let bin = kura_bin();
    let env = [("KURA_BIN", bin.as_str())];

    // A cold cache: a miss, the evaluated key kept in the state.
    let mut r = Runner::new(&s);
    let out = r.step(&shim("restore.js"), &inputs, &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs = r.outputs();
    assert!(
        outputs.starts_with("cache-hit=\ncache-primary-key=deps-"),
        "{outputs}"
    );
    let key = outputs.lines().nth(1).unwrap()["cache-primary-key=".len()..].to_string();
    // The job changes the lock file; the post step still saves under the key it restored.
    s.write("deps/lock", "v2");
    let out = r.step(&shim("post.js"), &inputs, &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("Cache saved with key: {key}")));
    assert!(std::fs::read_to_string(&r.summary)
        .unwrap()
        .contains("| saved |"));

    // The next run with the same lock file: an exact hit, and the post step does not save.
    s.write("deps/lock", "v1");
    std::fs::remove_dir_all(s.ws.join("deps/pkg")).unwrap();
    r = Runner::new(&s);
    let out = r.step(&shim("restore.js"), &inputs, &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        r.outputs(),
        format!("cache-hit=true\ncache-primary-key={key}\ncache-matched-key={key}\n")
    );
    assert_eq!(s.read("deps/pkg/a"), "a");
    let out = r.step(&shim("post.js"), &inputs, &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Cache hit occurred on the primary key {key}, not saving cache."
        )),
        "{err}"
    );

    // lookup-only: the outputs of a hit, and nothing written.
    std::fs::remove_dir_all(s.ws.join("deps/pkg")).unwrap();
    let mut lookup = inputs.to_vec();
    lookup.push(("lookup-only", "true"));
    r = Runner::new(&s);
    let out = r.step(&shim("restore.js"), &lookup, &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        r.outputs(),
        format!("cache-hit=true\ncache-primary-key={key}\ncache-matched-key={key}\n")
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("Cache found and can be restored from key: {key}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!s.exists("deps/pkg"), "lookup-only restored files");
    s.write("deps/pkg/a", "a");

    // restore/ with fail-on-cache-miss fails the step on a miss.
    let miss = [
        ("path", "deps/pkg"),
        ("key", "other"),
        ("fail-on-cache-miss", "true"),
    ];
    let out = Runner::new(&s).step(&shim("restore.js"), &miss, &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fail-on-cache-miss"));

    // save/ saves under its key input.
    let out = Runner::new(&s).step(
        &shim("save.js"),
        &[("path", "deps/pkg"), ("key", "split-1")],
        &env,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Cache saved with key: split-1"));
}

#[test]
fn the_shim_downloads_verifies_and_caches_the_release_binary() {
    let s = Sandbox::new();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        _ => "aarch64",
    };
    let asset = format!("kura-{arch}-unknown-linux-musl");
    let release = s.dir.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(kura_bin(), release.join(&asset)).unwrap();
    let digest = {
        use sha2::Digest;
        let bytes = std::fs::read(release.join(&asset)).unwrap();
        kura_hex(&sha2::Sha256::digest(&bytes))
    };
    let (mut server, url) = support::serve_dir(&release);
    // A copy of the action whose sha256 list names this binary (or a wrong digest).
    let action = |sums: &str| {
        let dir = s.dir.path().join(format!("action-{}", sums.len()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["kura.js", "restore.js"] {
            std::fs::copy(root().join("action").join(f), dir.join(f)).unwrap();
        }
        std::fs::write(dir.join("sha256sums.txt"), sums).unwrap();
        dir
    };
    let tool_cache = s.dir.path().join("tools");
    let tc = tool_cache.display().to_string();
    let env = [
        ("KURA_DOWNLOAD_URL", url.as_str()),
        ("RUNNER_TOOL_CACHE", tc.as_str()),
        ("GITHUB_ACTION_REF", "v0.1.0"),
    ];
    let inputs = [("path", "d"), ("key", "dl-1")];

    let wrong = action(&format!("{}  {asset}\n", "0".repeat(64)));
    let out = Runner::new(&s).step(&wrong.join("restore.js"), &inputs, &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not running it"), "{text}");
    let left: Vec<_> = support::files_below(&tool_cache);
    assert!(
        left.is_empty(),
        "a refused binary was left behind: {left:?}"
    );

    let right = action(&format!("# sums\n{digest}  {asset}\n"));
    let r = Runner::new(&s);
    let out = r.step(&right.join("restore.js"), &inputs, &env);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(r.outputs().contains("cache-primary-key=dl-1"));
    let cached = tool_cache
        .join("kura/v0.1.0")
        .join(
            std::env::consts::ARCH
                .replace("x86_64", "x64")
                .replace("aarch64", "arm64"),
        )
        .join(&asset);
    assert!(cached.exists(), "{}", cached.display());
    // Cached: the next step runs it without the server.
    server.kill().unwrap();
    let _ = server.wait();
    let out = r.step(&right.join("restore.js"), &inputs, &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn kura_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn bad_inputs_warn_in_save_steps_and_fail_restore_steps_naming_the_input() {
    let s = Sandbox::new();
    s.write("deps/a", "a");
    let shim = |f: &str| root().join("action").join(f);
    let bin = kura_bin();
    let env = [("KURA_BIN", bin.as_str())];
    let save_with = |inputs: &[(&str, &str)]| {
        let out = Runner::new(&s).step(&shim("save.js"), inputs, &env);
        assert_eq!(
            out.status.code(),
            Some(0),
            "a save step's bad input fails the job: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = save_with(&[("path", "deps"), ("key", "a,b")]);
    assert!(
        err.lines().any(|l| l.starts_with(
            "::warning::Failed to save: Key Validation Error: a,b cannot contain commas."
        )),
        "{err}"
    );
    let err = save_with(&[("path", ""), ("key", "k")]);
    assert!(
        err.contains("::warning::Failed to save: Input required and not supplied: path"),
        "{err}"
    );
    let err = save_with(&[("path", "deps"), ("key", "k"), ("compression-level", "99")]);
    assert!(err.contains("input compression-level \"99\""), "{err}");
    let err = save_with(&[("path", "deps"), ("key", "k"), ("format", "zip")]);
    assert!(err.contains("input format is \"zip\""), "{err}");
    let ls = support::run(s.kura().args(["--json", "ls"]));
    assert!(
        support::json(&ls)["entries"].as_array().unwrap().is_empty(),
        "a save with bad inputs stored something"
    );
    // format: an archive by default, chunked when asked on a store that keeps packs.
    save_with(&[("path", "deps"), ("key", "chunks"), ("format", "chunked")]);
    save_with(&[("path", "deps"), ("key", "whole")]);
    let format = |key: &str| {
        let meta = support::walk_find(&s.store, key).join("meta.json");
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
        m["format"].as_str().unwrap_or("archive").to_string()
    };
    assert_eq!(format("chunks"), "chunked");
    assert_eq!(format("whole"), "archive");
    // A restore step fails on bad input, as actions/cache's does.
    let out = Runner::new(&s).step(
        &shim("restore.js"),
        &[("path", "deps"), ("key", "k"), ("lookup-only", "maybe")],
        &env,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("input lookup-only is \"maybe\"; it must be true or false"),
        "{err}"
    );
    // A comma in a key: actions/cache's words in the restore step too, for any of its keys.
    for inputs in [
        [("path", "deps"), ("key", "a,b"), ("restore-keys", "")],
        [("path", "deps"), ("key", "k"), ("restore-keys", "x\na,b")],
    ] {
        let out = Runner::new(&s).step(&shim("restore.js"), &inputs, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains("Key Validation Error: a,b cannot contain commas."),
            "{err}"
        );
    }
    // save-always is declared (so the runner does not warn of an unknown input) and deprecated.
    let yml = std::fs::read_to_string(root().join("action.yml")).unwrap();
    let decl = yml.split("  save-always:").nth(1).unwrap();
    assert!(
        decl.split("\n  strict:")
            .next()
            .unwrap()
            .contains("deprecationMessage:"),
        "{yml}"
    );
}

#[test]
fn the_store_input_takes_the_new_store_urls() {
    // The action's `store` input, an OCI registry and a WebDAV server as stores.
    let s = Sandbox::new();
    s.write("deps/a", "a");
    let shim = |f: &str| root().join("action").join(f);
    let bin = kura_bin();
    let tag = std::process::id();
    for store in [
        format!("oci://{}/action/t{tag}", support::registry::open().addr),
        format!("{}action-{tag}/", support::nginx::nginx().url),
    ] {
        let env = [("KURA_BIN", bin.as_str()), ("KURA_STORE", "")];
        let inputs = [
            ("path", "deps"),
            ("key", "store-input"),
            ("store", store.as_str()),
        ];
        let out = Runner::new(&s).step(&shim("save.js"), &inputs, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Cache saved with key: store-input"),
            "{store}: {err}"
        );
        let ls = support::run(s.kura().env("KURA_STORE", &store).args(["--json", "ls"]));
        let entries = support::json(&ls)["entries"].as_array().unwrap().len();
        assert_eq!(entries, 1, "{store}: {}", ls.stderr);
    }
}

/// A server that takes every connection and never answers.
fn silent_server() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            held.push(c);
        }
    });
    format!("http://{addr}")
}

#[test]
fn an_install_that_cannot_happen_is_a_miss_with_a_warning() {
    let s = Sandbox::new();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        _ => "aarch64",
    };
    let asset = format!("kura-{arch}-unknown-linux-musl");
    let empty = s.dir.path().join("empty-release");
    std::fs::create_dir_all(&empty).unwrap();
    let (mut server, missing) = support::serve_dir(&empty);
    let silent = silent_server();
    let action = |sums: &str| {
        let dir = s.dir.path().join(format!("action-{}", sums.len()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["kura.js", "restore.js", "post.js"] {
            std::fs::copy(root().join("action").join(f), dir.join(f)).unwrap();
        }
        std::fs::write(dir.join("sha256sums.txt"), sums).unwrap();
        dir
    };
    // Between releases the list is empty; else a download that is not there, or never comes.
    let cases = [
        (
            action("# sha256 of each release asset\n"),
            missing.clone(),
            "written when a release is made",
        ),
        (
            action(&format!("{}  {asset}\n", "1".repeat(64))),
            missing.clone(),
            "HTTP 404",
        ),
        (
            action(&format!("{}  {asset}\n", "2".repeat(64))),
            silent,
            "no answer within 2 s",
        ),
    ];
    for (dir, url, why) in cases {
        let tool_cache = s.dir.path().join(format!("tools-{}", why.len()));
        let tc = tool_cache.display().to_string();
        let env = [
            ("KURA_DOWNLOAD_URL", url.as_str()),
            ("RUNNER_TOOL_CACHE", tc.as_str()),
            ("GITHUB_ACTION_REF", "v0.1.0"),
            ("KURA_DOWNLOAD_TIMEOUT", "2"),
        ];
        let inputs = [("path", "d"), ("key", "k-1")];
        let r = Runner::new(&s);
        let started = std::time::Instant::now();
        let out = r.step(&dir.join("restore.js"), &inputs, &env);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{why}: {text}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{why}: {:?}",
            started.elapsed()
        );
        assert!(
            text.contains("::warning::") && text.contains(why),
            "{why}: {text}"
        );
        assert!(!text.contains("::error::"), "{why}: {text}");
        // Outputs as on a miss.
        let outputs = r.outputs();
        assert!(outputs.contains("cache-primary-key=k-1\n"), "{outputs}");
        assert!(outputs.contains("cache-hit=\n"), "{outputs}");
        let out = r.step(&dir.join("post.js"), &inputs, &env);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("not saved"), "{text}");
        assert_eq!(support::files_below(&tool_cache), Vec::<PathBuf>::new());
        assert!(!s.ws.join("d").exists());
    }
    // A miss the job asked to fail on fails, installed or not.
    let dir = action("# sha256 of each release asset\n");
    let out = Runner::new(&s).step(
        &dir.join("restore.js"),
        &[
            ("path", "d"),
            ("key", "k-1"),
            ("fail-on-cache-miss", "true"),
        ],
        &[("KURA_DOWNLOAD_URL", missing.as_str())],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    server.kill().unwrap();
    let _ = server.wait();
}

/// A step that has no runtime token (a `run:` step's variables, or a runner that gives none)
/// and no store: the cache would stay on this machine, and the step says so.
#[test]
fn an_action_step_without_a_store_warns_that_the_next_job_will_not_see_it() {
    let s = Sandbox::new();
    s.write("deps/a", "a");
    let bin = kura_bin();
    let env = [("KURA_BIN", bin.as_str()), ("KURA_STORE", "")];
    let inputs = [("path", "deps"), ("key", "k-1")];
    let r = Runner::new(&s);
    for step in ["restore.js", "post.js"] {
        let out = r.step(&root().join("action").join(step), &inputs, &env);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{step}: {text}");
        assert_eq!(
            text.matches("no store is configured").count(),
            1,
            "{step}: {text}"
        );
        assert!(
            text.contains("::warning::") && text.contains("gha://"),
            "{step}: {text}"
        );
    }
}

/// A `windows-latest` leg of a matrix that used actions/cache: no kura binary for it, so the
/// steps warn and miss, and the job goes on.
#[test]
fn a_runner_kura_has_no_binary_for_is_a_miss_with_a_warning() {
    let s = Sandbox::new();
    let fake = s.dir.path().join("windows.js");
    std::fs::write(
        &fake,
        "Object.defineProperty(process, 'platform', { value: 'win32' });\n",
    )
    .unwrap();
    let options = format!("--require {}", fake.display());
    let env = [("NODE_OPTIONS", options.as_str())];
    let inputs = [("path", "d"), ("key", "win-1")];
    let r = Runner::new(&s);
    let out = r.step(&root().join("action/restore.js"), &inputs, &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("::warning::kura has no release binary for win32-"),
        "{text}"
    );
    assert!(
        r.outputs().contains("cache-primary-key=win-1\n"),
        "{}",
        r.outputs()
    );
    let out = r.step(&root().join("action/post.js"), &inputs, &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
