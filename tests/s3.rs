//! The S3 store against a real Garage server on 127.0.0.1, through the binary: what the store
//! contract (`tests/contract`) does not cover — URL options, multipart sizes, errors that
//! name their cause, killed processes, odd keys.

use crate::support;
use crate::support::garage::{garage, ABORT_BUCKET, BUCKET, KEY_ID, RO_KEY_ID, RO_SECRET, SECRET};
use crate::support::{assert_clean_hit, json, run, tree, Sandbox};

/// How to run kura against a fresh prefix of the Garage bucket.
struct S3 {
    url: String,
    endpoint: String,
}

impl S3 {
    fn std(&self, s: &Sandbox) -> std::process::Command {
        let mut c = s.kura_std();
        c.env("KURA_STORE", &self.url)
            .env("KURA_S3_ENDPOINT", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "garage");
        c
    }

    fn cmd(&self, s: &Sandbox) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.std(s))
    }
}

fn s3_sandbox(prefix: &str) -> (Sandbox, S3) {
    let s3 = S3 {
        url: format!("s3://{BUCKET}/{prefix}-{}", std::process::id()),
        endpoint: garage().endpoint.clone(),
    };
    (Sandbox::new(), s3)
}

#[test]
fn round_trip_small_and_multipart() {
    let (s, kura) = s3_sandbox("round-trip");
    s.write("small/a.txt", "tiny");
    // 40 MB of noise: over the 8 MiB part size, so a multipart upload and several ranged GETs.
    s.write_bytes("big/blob", &support::noise(40 << 20, 3));
    for (key, path) in [("small-1", "small"), ("big-1", "big")] {
        let out = run(kura
            .cmd(&s)
            .args(["--json", "save", "--key", key, "--path", path]));
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        let before = tree(&s.ws.join(path));
        std::fs::remove_dir_all(s.ws.join(path)).unwrap();
        let out = run(kura
            .cmd(&s)
            .args(["--json", "restore", "--key", key, "--path", path]));
        assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
        assert_eq!(tree(&s.ws.join(path)), before);
    }
}

#[test]
fn a_single_file_a_nested_file_and_a_glob_round_trip() {
    let (s, kura) = s3_sandbox("shapes");
    s.write("single.txt", "one");
    s.write("a/b/nested.txt", "two");
    s.write("pkgs/x/dist/x.js", "x");
    s.write("pkgs/y/dist/y.js", "y");
    s.write("pkgs/y/src/not-me.js", "src");
    let paths = ["single.txt", "a/b/nested.txt", "pkgs/*/dist"];
    // Every path saved (then restored) under its own key.
    let each = |verb: &str| -> Vec<support::Out> {
        let one = |(i, path): (usize, &&str)| {
            let key = format!("shape-{i}");
            run(kura
                .cmd(&s)
                .args(["--json", verb, "--key", &key, "--path", path]))
        };
        paths.iter().enumerate().map(one).collect()
    };
    for out in each("save") {
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    }
    let before = tree(&s.ws);
    std::fs::remove_dir_all(&s.ws).unwrap();
    std::fs::create_dir(&s.ws).unwrap();
    for out in each("restore") {
        assert_clean_hit(&out);
    }
    let expected: Vec<_> = before
        .into_iter()
        .filter(|(p, _)| !p.contains("src"))
        .collect();
    assert_eq!(tree(&s.ws), expected);
}

#[test]
fn wrong_credentials_and_missing_bucket_say_so_and_do_not_fail_the_job() {
    let (s, kura) = s3_sandbox("errors");
    s.write("d/f", "x");
    let out = run(kura
        .cmd(&s)
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .args(["save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("warning: Failed to save: S3 rejected the credentials")
            && out.stderr.contains("AWS_SECRET_ACCESS_KEY"),
        "{}",
        out.stderr
    );
    let out = run(kura
        .cmd(&s)
        .env("KURA_STORE", "s3://no-such-bucket/p")
        .args(["save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("no-such-bucket"), "{}", out.stderr);
    let out = run(kura
        .cmd(&s)
        .env("KURA_STORE", "s3://no-such-bucket/p")
        .args(["--strict", "save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
}

fn names(prefix: &str) -> Vec<String> {
    use object_store::list::{PaginatedListOptions, PaginatedListStore};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(
        crate::support::garage::client()
            .list_paginated(Some(prefix), PaginatedListOptions::default()),
    )
    .unwrap()
    .result
    .objects
    .into_iter()
    .map(|o| o.location.to_string())
    .collect()
}

#[test]
fn a_killed_save_leaves_nothing_visible_and_prune_works() {
    let (s, kura) = s3_sandbox("killed");
    for i in 0..6 {
        s.write_bytes(&format!("big/{i}"), &support::noise(8 << 20, i + 20));
    }
    let mut save = kura.std(&s);
    // An archive: killed once a whole part (8 MiB) went to the multipart upload (killed
    // chunked saves are the contract suite's).
    save.args([
        "save", "--format", "archive", "--key", "killed", "--path", "big",
    ]);
    let mut child = support::spawn_until_sent(save, 9 << 20);
    child.kill().unwrap();
    child.wait().unwrap();
    let ls = json(&run(kura.cmd(&s).args(["--json", "ls"])));
    assert!(ls["entries"].as_array().unwrap().is_empty(), "{ls}");
    // Small part size and concurrency through the URL options: many parts, in order.
    s.write_bytes("mid/blob", &support::noise(12 << 20, 5));
    let url = format!(
        "s3://{BUCKET}/killed-{}?part_size=5M&concurrency=2",
        std::process::id()
    );
    let out = run(kura
        .cmd(&s)
        .env("KURA_STORE", &url)
        .args(["save", "--key", "mid", "--path", "mid"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let before = tree(&s.ws.join("mid"));
    std::fs::remove_dir_all(s.ws.join("mid")).unwrap();
    let out = run(kura
        .cmd(&s)
        .env("KURA_STORE", &url)
        .args(["--json", "restore", "--key", "mid", "--path", "mid"]));
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(tree(&s.ws.join("mid")), before);
    let out = run(kura.cmd(&s).args(["--json", "prune", "--max-age", "0s"]));
    assert_eq!(
        json(&out)["removed"],
        serde_json::json!(["mid"]),
        "{}",
        out.stderr
    );
    let out = run(kura
        .cmd(&s)
        .env("KURA_STORE", format!("s3://{BUCKET}/x?part_size=1M"))
        .args(["ls"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("5 MiB"), "{}", out.stderr);
}

#[test]
fn github_scopes_apply_on_s3_too() {
    let (s, kura) = s3_sandbox("scopes");
    let gh = |git_ref: &str| {
        let mut c = kura.cmd(&s);
        c.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REF", git_ref)
            .env("KURA_DEFAULT_BRANCH", "main")
            .env("GITHUB_WORKSPACE", &s.ws);
        c
    };
    s.write("d/f", "feature");
    assert_eq!(
        run(gh("refs/heads/feature").args(["save", "--key", "k", "--path", "d"])).code,
        0
    );
    let out = run(gh("refs/heads/main").args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
    s.write("d/f", "main");
    assert_eq!(
        run(gh("refs/heads/main").args(["save", "--key", "k", "--path", "d"])).code,
        0
    );
    let out = run(gh("refs/heads/other").args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["scope"], "refs/heads/main", "{}", out.stderr);
    assert_eq!(s.read("d/f"), "main");
}

#[test]
fn keys_with_any_characters_and_long_keys_round_trip() {
    let (s, kura) = s3_sandbox("odd-keys");
    let long = format!("{}-tail", "é/ключ %~+=".repeat(30));
    for (i, key) in ["v1/linux+x64 %2F ~a", "..", long.as_str()]
        .iter()
        .enumerate()
    {
        s.write("d/f", &format!("{i}"));
        let out = run(kura
            .cmd(&s)
            .args(["--json", "save", "--key", key, "--path", "d"]));
        assert_eq!(json(&out)["outcome"], "saved", "{key}: {}", out.stderr);
        s.write("d/f", "changed");
        let prefix: String = key.chars().take(key.chars().count() - 1).collect();
        let out = run(kura.cmd(&s).args([
            "--json",
            "restore",
            "--key",
            "nope",
            "--restore-key",
            &prefix,
            "--path",
            "d",
        ]));
        assert_eq!(json(&out)["matched_key"], *key, "{key}: {}", out.stderr);
        assert_eq!(s.read("d/f"), format!("{i}"));
    }
}

#[test]
fn prune_removes_archives_whose_save_never_committed() {
    use object_store::ObjectStoreExt;
    let (s, kura) = s3_sandbox("orphans");
    s.write("d/f", "kept");
    assert_eq!(
        run(kura.cmd(&s).args(["save", "--key", "kept", "--path", "d"])).code,
        0
    );
    let prefix = format!("orphans-{}/", std::process::id());
    let old = format!("{prefix}_/v/k/0000000000001-00000000000000aa.tzst");
    let fresh = format!(
        "{prefix}_/v/k/{:013}-00000000000000bb.tzst",
        99_999_999_999_999u64 / 10
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    for o in [&old, &fresh] {
        rt.block_on(crate::support::garage::client().put(
            &object_store::path::Path::parse(o).unwrap(),
            b"partial".to_vec().into(),
        ))
        .unwrap();
    }
    let out = run(kura.cmd(&s).args(["prune", "--max-age", "30d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let left = names(&prefix);
    assert!(!left.contains(&old), "{left:?}");
    assert!(left.contains(&fresh), "{left:?}");
    assert_eq!(
        left.iter().filter(|n| n.ends_with(".json")).count(),
        1,
        "{left:?}"
    );
}

/// Multipart uploads started in `bucket` and neither completed nor aborted, as Garage
/// counts them.
fn unfinished_uploads(bucket: &str) -> u64 {
    let info = garage().cli(&["bucket", "info", bucket]);
    info.lines()
        .find_map(|l| l.strip_prefix("Unfinished uploads:"))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn a_failed_save_aborts_its_multipart_upload() {
    let s = Sandbox::new();
    // A bucket of its own, so that no other test's uploads are counted.
    let kura = S3 {
        url: format!("s3://{ABORT_BUCKET}/failed"),
        endpoint: garage().endpoint.clone(),
    };
    // Several parts go out before the growing file, last in the archive, is read.
    s.write_bytes("a/big", &support::noise(24 << 20, 31));
    let growing = s.write_bytes("z/growing.log", &support::noise(1 << 20, 32));
    let writer = support::keep_growing(growing, b"line\n");
    let out = run(kura.cmd(&s).args([
        "--json", "save", "--format", "archive", "--key", "failed", "--path", "a", "--path", "z",
    ]));
    drop(writer);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert!(out.stderr.contains("growing.log"), "{}", out.stderr);
    assert_eq!(
        unfinished_uploads(ABORT_BUCKET),
        0,
        "the upload was left open"
    );
    // The count is real: a save killed mid-upload (it cannot abort) shows in it.
    let mut save = kura.std(&s);
    save.args([
        "save", "--format", "archive", "--key", "killed", "--path", "a",
    ]);
    let mut child = support::spawn_until_sent(save, 9 << 20);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(unfinished_uploads(ABORT_BUCKET), 1);
}

#[test]
fn circleci_restores_without_paths_go_back_where_they_were_saved() {
    let (s, kura) = s3_sandbox("no-path");
    s.write("deps/a/x", "one");
    s.write("deps/b", "two");
    let out = run(kura
        .cmd(&s)
        .args(["--json", "save", "--key", "v1-deps-abc", "--path", "deps"]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    let before = tree(&s.ws.join("deps"));
    std::fs::remove_dir_all(s.ws.join("deps")).unwrap();
    let out = run(kura
        .cmd(&s)
        .args(["--json", "restore", "--keys", "v1-deps-"]));
    assert_eq!(json(&out)["matched_key"], "v1-deps-abc", "{}", out.stderr);
    assert_eq!(tree(&s.ws.join("deps")), before);
}

#[test]
fn a_hanging_endpoint_is_given_up_within_the_time_limit() {
    // A server that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    let (s, _) = s3_sandbox("hang");
    s.write("d/f", "x");
    let started = std::time::Instant::now();
    let out = run(s
        .kura()
        .env("KURA_STORE", "s3://hanging/p")
        .env("KURA_S3_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "garage")
        .env("KURA_HTTP_TIMEOUT", "6")
        .args(["--json", "restore", "--key", "k", "--path", "d"]));
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert!(
        took < std::time::Duration::from_secs(9),
        "gave up after {took:?}: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did not answer in time"),
        "{}",
        out.stderr
    );
}

#[test]
fn no_credentials_say_where_kura_looked() {
    let (s, kura) = s3_sandbox("no-creds");
    s.write("d/f", "x");
    // Only the endpoint: no keys, no role. The metadata endpoint is unreachable here.
    let out = run(s
        .kura()
        .env("KURA_STORE", &kura.url)
        .env("KURA_S3_ENDPOINT", &kura.endpoint)
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:1")
        .env("KURA_HTTP_TIMEOUT", "3")
        .args(["restore", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("no S3 credentials found"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("AWS_ACCESS_KEY_ID") && out.stderr.contains("169.254.169.254"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("s3:ListBucket"), "{}", out.stderr);
}

#[test]
fn a_refusal_names_the_permission_that_was_missing() {
    let (s, kura) = s3_sandbox("read-only");
    s.write("d/f", "x");
    let out = run(kura
        .cmd(&s)
        .env("AWS_ACCESS_KEY_ID", RO_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", RO_SECRET)
        .args(["--json", "save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert!(
        out.stderr
            .contains("S3 refused the request on bucket \"kura-test\"")
            && out.stderr.contains("s3:PutObject"),
        "{}",
        out.stderr
    );
    // Reading is allowed: a restore is a plain miss.
    let out = run(kura
        .cmd(&s)
        .env("AWS_ACCESS_KEY_ID", RO_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", RO_SECRET)
        .args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
}
