//! The HTTP (WebDAV) store through the binary, against a real nginx on 127.0.0.1: what the
//! store contract (`tests/contract`) does not cover — credentials, and errors that name the
//! server setting to change.

use crate::support;
use crate::support::nginx::{nginx, PASSWORD, USER};
use crate::support::{json, run, tree, Sandbox};

fn with_store(s: &Sandbox, url: &str) -> assert_cmd::Command {
    let mut c = s.kura();
    c.env("KURA_STORE", url);
    c
}

#[test]
fn basic_auth_from_the_url_or_the_environment_and_never_in_the_log() {
    let s = Sandbox::new();
    s.write("d/a", "one");
    s.write("d/b/c", "two");
    let base = nginx().url.trim_start_matches("http://").to_string();
    let tag = std::process::id();
    // Without credentials: the server's 401, and what to do about it.
    let anon = format!("http://{base}private/anon-{tag}/");
    let out = run(with_store(&s, &anon).args(["save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("HTTP 401") && out.stderr.contains("KURA_HTTP_USERNAME"),
        "{}",
        out.stderr
    );
    // In the URL (percent-encoded as URLs require).
    let in_url = format!("http://{USER}:s3cret%20p%40ss@{base}private/url-{tag}/");
    let out = run(with_store(&s, &in_url).args(["--json", "save", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    let before = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(with_store(&s, &in_url).args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(tree(&s.ws.join("d")), before);
    let out = run(with_store(&s, &in_url).args([
        "--json",
        "save",
        "--dry-run",
        "--key",
        "k",
        "--path",
        "d",
    ]));
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains("s3cret") && !text.contains(USER), "{text}");
    }
    // From the environment.
    let plain = format!("http://{base}private/env-{tag}/");
    let out = run(with_store(&s, &plain)
        .env("KURA_HTTP_USERNAME", USER)
        .env("KURA_HTTP_PASSWORD", PASSWORD)
        .args(["--json", "save", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
}

#[test]
fn refusals_name_the_server_setting_to_change() {
    let s = Sandbox::new();
    s.write_bytes("d/big", &support::noise(64 << 10, 3));
    let tag = std::process::id();
    let small = format!("{}small/{tag}/", nginx().url);
    let out = run(with_store(&s, &small).args(["save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("HTTP 413") && out.stderr.contains("client_max_body_size"),
        "{}",
        out.stderr
    );
    let readonly = format!("{}readonly/{tag}/", nginx().url);
    let out = run(with_store(&s, &readonly).args(["save", "--key", "k", "--path", "d"]));
    assert!(
        out.stderr.contains("HTTP 405") && out.stderr.contains("dav_methods"),
        "{}",
        out.stderr
    );
    // Nothing half-written is visible: both stores list no entry.
    for url in [&small, &readonly] {
        let out = run(with_store(&s, url).args(["--json", "ls"]));
        assert!(
            json(&out)["entries"].as_array().unwrap().is_empty(),
            "{url}"
        );
    }
}
