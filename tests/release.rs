//! Release plumbing: the workflows validate against GitHub's schema, a release's sums land in
//! the action, the orb and the GitLab template, and the orb's install then accepts exactly
//! that binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{npm_package, Sandbox};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn workflows_validate_against_the_schema() {
    let out = Command::new("node")
        .arg(root().join("tests/support/validate.cjs"))
        .arg(npm_package("ajv@8.17.1"))
        .arg(npm_package("yaml@2.6.1"))
        .arg(root().join("../shared/reference/github/github-workflow.schema.json"))
        .args(["ci.yml", "release.yml"].map(|f| root().join(".github/workflows").join(f)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(": valid").count(), 2, "{text}");
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
            "{digest}  {asset}\n{}  kura-x86_64-pc-windows-msvc.exe\n",
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

    // The orb's install script, with those sums, fetches and accepts the binary.
    let (mut server, url) = support::serve_dir(&dist);
    let out = Command::new("bash")
        .arg(tree.join("orb/src/scripts/install.sh"))
        .env("HOME", &s.home)
        .env("KURA_PARAM_VERSION", "0.1.0")
        .env("KURA_PARAM_INSTALL_PATH", "~/bin")
        .env("KURA_DOWNLOAD_URL", &url)
        .output()
        .unwrap();
    server.kill().unwrap();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("kura "));
    assert!(s.home.join("bin/kura").exists());
}
