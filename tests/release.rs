//! Release plumbing: the workflows validate against GitHub's schema, a release's sums land in
//! the action, the orb and the GitLab template, and the orb's install then accepts exactly
//! that binary.

use crate::support;
use crate::support::{npm_package, Sandbox};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn workflows_validate_against_the_schema() {
    support::assert_valid(
        "github-workflows",
        &[".github/workflows/ci.yml", ".github/workflows/release.yml"],
    );
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

fn hex_sha256(path: &Path) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(std::fs::read(path).unwrap());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn release_sums_reach_every_installer_and_the_orb_installs_that_binary() {
    let s = Sandbox::new();
    let tree = s.dir.path().join("repo");
    for f in [
        "release/write-sums.py",
        "action/sha256sums.txt",
        "orb/src/scripts/install.sh",
        "templates/gitlab/kura.gitlab-ci.yml",
    ] {
        copy(&root().join(f), &tree.join(f));
    }
    let arch = if cfg!(target_arch = "aarch64") {
        "aarch64"
    } else {
        "x86_64"
    };
    let asset = format!("kura-{arch}-unknown-linux-musl");
    let dist = s.dir.path().join("dist");
    copy(&assert_cmd::cargo::cargo_bin("kura"), &dist.join(&asset));
    let digest = hex_sha256(&dist.join(&asset));
    std::fs::write(
        dist.join("sha256sums.txt"),
        format!(
            "{digest}  {asset}\n{}  kura-aarch64-apple-darwin\n",
            "a".repeat(64)
        ),
    )
    .unwrap();
    for version in ["0.0.9", "0.1.0"] {
        let st = Command::new("python3")
            .arg(tree.join("release/write-sums.py"))
            .arg(version)
            .arg(dist.join("sha256sums.txt"))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let action = std::fs::read_to_string(tree.join("action/sha256sums.txt")).unwrap();
    assert!(action.contains(&format!("{digest}  {asset}\n")), "{action}");
    let template =
        std::fs::read_to_string(tree.join("templates/gitlab/kura.gitlab-ci.yml")).unwrap();
    assert!(
        template.contains(&format!("0.0.9 {asset} {digest}")),
        "{template}"
    );
    assert!(
        template.contains(&format!("0.1.0 {asset} {digest}")),
        "{template}"
    );

    // A binary that differs from the release (one byte more) is refused by every installer,
    // and nothing of it is left behind; the release binary itself is installed and runs.
    let bad = s.dir.path().join("tampered");
    let mut bytes = std::fs::read(dist.join(&asset)).unwrap();
    bytes.push(0);
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join(&asset), bytes).unwrap();
    for (dir, genuine) in [(&bad, false), (&dist, true)] {
        let (mut server, url) = support::serve_dir(dir);
        for installer in ["orb", "gitlab"] {
            let home = s.dir.path().join(format!("home-{installer}-{genuine}"));
            std::fs::create_dir_all(&home).unwrap();
            let out = install(&tree, installer, &home, &url);
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            let files = support::files_below(&home);
            if genuine {
                assert!(out.status.success(), "{installer}: {text}");
                assert!(text.contains("kura 0.1.0"), "{installer} ran it: {text}");
                assert!(home.join("bin/kura").exists(), "{installer}: {files:?}");
            } else {
                assert!(
                    !out.status.success(),
                    "{installer} installed a tampered binary: {text}"
                );
                assert!(text.contains("not installing it"), "{installer}: {text}");
                assert!(
                    files.iter().all(|f| !f.to_string_lossy().contains("kura")),
                    "{installer} left {files:?}"
                );
            }
        }
        server.kill().unwrap();
        let _ = server.wait();
    }
}

/// Run one installer of `tree` (the orb's install script, or the GitLab template's
/// `.kura-install` script) against a download URL, in a home of its own.
fn install(tree: &Path, installer: &str, home: &Path, url: &str) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.env_clear();
    if installer == "orb" {
        cmd.arg(tree.join("orb/src/scripts/install.sh"))
            .env("KURA_PARAM_VERSION", "0.1.0")
            .env("KURA_PARAM_INSTALL_PATH", "~/bin");
    } else {
        let out = Command::new("node")
            .arg(root().join("tests/support/yaml-get.cjs"))
            .arg(npm_package("yaml@2.6.1"))
            .arg(tree.join("templates/gitlab/kura.gitlab-ci.yml"))
            .arg(".kura-install/script/0")
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap() + "\nkura --version\n";
        cmd.args(["-e", "-c", &script]).env("KURA_VERSION", "0.1.0");
    }
    cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("KURA_DOWNLOAD_URL", url)
        .output()
        .unwrap()
}

#[test]
fn only_unix_targets_are_released_or_downloaded() {
    // kura does not build for Windows: no workflow builds it and no installer fetches it.
    for f in [
        ".github/workflows/release.yml",
        "action/kura.js",
        "orb/src/scripts/install.sh",
        "templates/gitlab/kura.gitlab-ci.yml",
    ] {
        let text = std::fs::read_to_string(root().join(f))
            .unwrap()
            .to_lowercase();
        assert!(
            !text.contains("windows") && !text.contains("win32"),
            "{f} still names Windows"
        );
    }
}

/// Run a script of the GitLab template (`what`: a YAML path such as `.kura-install/script/0`)
/// under bash, or one of the orb's scripts, with `env` and a PATH without kura.
fn script(tree: &Path, what: &str, home: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new("bash");
    cmd.env_clear();
    if let Some(orb) = what.strip_prefix("orb:") {
        cmd.arg(tree.join("orb/src/scripts").join(orb));
    } else {
        let out = Command::new("node")
            .arg(root().join("tests/support/yaml-get.cjs"))
            .arg(npm_package("yaml@2.6.1"))
            .arg(tree.join("templates/gitlab/kura.gitlab-ci.yml"))
            .arg(what)
            .output()
            .unwrap();
        assert!(out.status.success(), "{what}");
        cmd.args(["-e", "-c", &String::from_utf8(out.stdout).unwrap()]);
    }
    let out = cmd
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn an_install_that_cannot_happen_leaves_the_cache_steps_a_miss() {
    let s = Sandbox::new();
    let tree = s.dir.path().join("repo");
    for f in [
        "orb/src/scripts/install.sh",
        "orb/src/scripts/restore_cache.sh",
        "orb/src/scripts/save_cache.sh",
        "orb/src/scripts/persist_to_workspace.sh",
        "templates/gitlab/kura.gitlab-ci.yml",
    ] {
        copy(&root().join(f), &tree.join(f));
    }
    // A server that takes every connection and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            held.push(c);
        }
    });
    // 9.9.9 has no sha256 in any list; 0.1.0 is given one, and its download never comes.
    let arch = if cfg!(target_arch = "aarch64") {
        "aarch64"
    } else {
        "x86_64"
    };
    let sums = s.dir.path().join("sums");
    std::fs::write(
        &sums,
        format!("{}  kura-{arch}-unknown-linux-musl\n", "3".repeat(64)),
    )
    .unwrap();
    std::fs::create_dir_all(tree.join("release")).unwrap();
    copy(
        &root().join("release/write-sums.py"),
        &tree.join("release/write-sums.py"),
    );
    std::fs::create_dir_all(tree.join("action")).unwrap();
    let st = Command::new("python3")
        .arg(tree.join("release/write-sums.py"))
        .args(["0.1.0", sums.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    for (version, why) in [
        ("9.9.9", "written when a release is made"),
        ("0.1.0", "cannot download"),
    ] {
        for installer in ["orb:install.sh", ".kura-install/script/0"] {
            let home = s
                .dir
                .path()
                .join(format!("home-{version}-{}", installer.len()));
            std::fs::create_dir_all(&home).unwrap();
            let env = [
                ("KURA_PARAM_VERSION", version),
                ("KURA_VERSION", version),
                ("KURA_PARAM_INSTALL_PATH", "~/bin"),
                ("KURA_DOWNLOAD_URL", silent.as_str()),
                ("KURA_DOWNLOAD_TIMEOUT", "1"),
            ];
            let started = std::time::Instant::now();
            let (code, text) = script(&tree, installer, &home, &env);
            assert_eq!(code, 0, "{installer} {version}: {text}");
            assert!(
                text.contains("warning") && text.contains(why),
                "{installer} {version}: {text}"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(40),
                "{:?}",
                started.elapsed()
            );
            let files = support::files_below(&home);
            assert!(
                files.iter().all(|f| !f.to_string_lossy().contains("kura")),
                "{files:?}"
            );
        }
    }
    // Without kura, the cache steps say so and go on; a workspace cannot be skipped.
    let home = s.dir.path().join("home-steps");
    std::fs::create_dir_all(&home).unwrap();
    let params = [
        ("KURA_PARAM_KEY", "k"),
        ("KURA_PARAM_PATHS", "d"),
        ("KURA_PARAM_ROOT", "."),
    ];
    for (step, want) in [
        ("orb:restore_cache.sh", 0),
        ("orb:save_cache.sh", 0),
        ("orb:persist_to_workspace.sh", 1),
        (".kura-cache/before_script/1", 0),
        (".kura-cache/after_script/0", 0),
    ] {
        let (code, text) = script(&tree, step, &home, &params);
        assert_eq!(code, want, "{step}: {text}");
        assert!(text.contains("not installed"), "{step}: {text}");
    }
    // A KURA_WHEN that no job status matches is said, not a cache that never saves.
    let (code, text) = script(
        &tree,
        ".kura-cache/before_script/1",
        &home,
        &[("KURA_WHEN", "on_fail")],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("KURA_WHEN must be"), "{text}");
}

/// The files a user pins to a tag carry that release's sums: the sums are written and
/// committed before the tag is made on that commit (a workflow run by a pushed tag could only
/// write them after it, into a commit no tag names).
#[test]
fn a_release_tags_the_commit_that_carries_its_sums() {
    let yml = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    let on = yml
        .split("\non:")
        .nth(1)
        .unwrap()
        .split("\njobs:")
        .next()
        .unwrap();
    assert!(!on.contains("tags:"), "a release run by its own tag: {on}");
    let at = |what: &str| {
        yml.find(what)
            .unwrap_or_else(|| panic!("release.yml does not {what}"))
    };
    let (sums, commit, tag, release) = (
        at("release/write-sums.py"),
        at("git commit -am"),
        at("git tag \"v$VERSION\""),
        at("gh release create \"v$VERSION\""),
    );
    assert!(sums < commit && commit < tag && tag < release, "{yml}");
    assert!(yml.contains("--verify-tag"), "{yml}");
}
