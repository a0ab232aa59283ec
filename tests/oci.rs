//! The OCI store through the binary, against Debian's docker-registry on 127.0.0.1: what the
//! store contract (`tests/contract`) does not cover — credentials, and an unchanged archive
//! that is not uploaded again.

mod support;

use support::registry::{basic, open, token, PASSWORD, USER};
use support::{json, run, tree, Sandbox};

fn kura(s: &Sandbox, url: &str) -> assert_cmd::Command {
    let mut c = s.kura();
    c.env("KURA_STORE", url);
    c
}

#[test]
fn credentials_from_the_environment_or_docker_login_and_never_in_the_log() {
    let s = Sandbox::new();
    s.write("d/a", "one");
    s.write("d/b/c", "two");
    let url = format!("oci://{}/kura/auth-{}", basic().addr, std::process::id());
    // None: the registry's challenge, and what to do about it.
    let out = run(kura(&s, &url).args(["save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("KURA_OCI_USERNAME"), "{}", out.stderr);
    // From the environment.
    let out = run(kura(&s, &url)
        .env("KURA_OCI_USERNAME", USER)
        .env("KURA_OCI_PASSWORD", PASSWORD)
        .args(["--json", "save", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);
    // From what `docker login` writes.
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::create_dir_all(s.home.join(".docker")).unwrap();
    std::fs::write(
        s.home.join(".docker/config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, basic().addr),
    )
    .unwrap();
    let before = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(kura(&s, &url).args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(tree(&s.ws.join("d")), before);
    // Wrong credentials are named as such.
    let out = run(kura(&s, &url)
        .env("KURA_OCI_USERNAME", USER)
        .env("KURA_OCI_PASSWORD", "wrong")
        .args(["restore", "--key", "k", "--path", "d"]));
    assert!(
        out.stderr.contains("refused the credentials"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong"), "{}", out.stderr);
}

#[test]
fn an_unchanged_archive_is_not_uploaded_again() {
    let s = Sandbox::new();
    s.write_bytes("d/blob", &support::noise(3 << 20, 8));
    let repo = format!("kura/same-{}", std::process::id());
    let url = format!("oci://{}/{repo}", open().addr);
    let log = open().data.parent().unwrap().join("registry.log");
    let uploads = || {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| l.contains(&format!("/v2/{repo}/blobs/uploads")) && l.contains("PATCH"))
            .count()
    };
    let out = run(kura(&s, &url).args([
        "--json",
        "--workers",
        "1",
        "save",
        "--key",
        "one",
        "--path",
        "d",
    ]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    let first = uploads();
    assert!(first > 0, "the first save uploaded nothing");
    // The same tree under another key: the same archive bytes, already in the registry.
    let out = run(kura(&s, &url).args([
        "--json",
        "--workers",
        "1",
        "save",
        "--key",
        "two",
        "--path",
        "d",
    ]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert_eq!(uploads(), first, "the unchanged archive was sent again");
    let out = run(kura(&s, &url).args(["--json", "ls"]));
    assert_eq!(json(&out)["entries"].as_array().unwrap().len(), 2);
}

#[test]
fn token_auth_gets_a_token_for_what_each_request_needs() {
    let s = Sandbox::new();
    s.write("d/a", "one");
    s.write("d/b/c", "two");
    let url = format!("oci://{}/kura/token-{}", token().addr, std::process::id());
    // Anonymous: the token service grants pull only; the push is refused and says so.
    let out = run(kura(&s, &url).args(["--json", "save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert!(out.stderr.contains("KURA_OCI_USERNAME"), "{}", out.stderr);
    // With credentials: a token with push, the save and a restore.
    let with = |c: &mut assert_cmd::Command| {
        c.env("KURA_OCI_USERNAME", USER)
            .env("KURA_OCI_PASSWORD", PASSWORD);
    };
    let mut c = kura(&s, &url);
    with(&mut c);
    let out = run(c.args(["--json", "save", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    let before = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    // Restores need only pull: anonymous tokens do.
    let out = run(kura(&s, &url).args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(tree(&s.ws.join("d")), before);
    // Wrong credentials: the token service's 401, named.
    let out = run(kura(&s, &url)
        .env("KURA_OCI_USERNAME", USER)
        .env("KURA_OCI_PASSWORD", "wrong")
        .args(["restore", "--key", "k", "--path", "d"]));
    assert!(out.stderr.contains("token service"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong"), "{}", out.stderr);
}
