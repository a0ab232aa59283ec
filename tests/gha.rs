//! The GitHub cache store against the stand-in service and a real Azurite: matching, faults,
//! refusals, scopes, the REST API and the legacy service (interop with the official client is
//! in `gha_interop.rs`).

use crate::support;
use crate::support::gha::{after, kura, main_token, populate, service, token, wipe};
use crate::support::{assert_clean_hit, json, run, Out, Sandbox};

#[test]
fn save_then_restore_with_github_matching() {
    let s = Sandbox::new();
    let tok = main_token();
    s.write("m/f", "one");
    let out = kura(&s, &tok, &["save", "--key", "rt-linux-1", "--path", "m"]);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    // The same key again: the service already has it; nothing is packed or sent.
    let out = kura(&s, &tok, &["save", "--key", "rt-linux-1", "--path", "m"]);
    assert_eq!(json(&out)["outcome"], "exists", "{}", out.stderr);
    std::thread::sleep(std::time::Duration::from_millis(5));
    s.write("m/f", "two");
    let out = kura(&s, &tok, &["save", "--key", "rt-linux-2", "--path", "m"]);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);

    s.write("m/f", "local");
    assert_clean_hit(&kura(
        &s,
        &tok,
        &["restore", "--key", "rt-linux-1", "--path", "m"],
    ));
    assert_eq!(s.read("m/f"), "one");
    // A restore key: the newest entry with the prefix.
    let out = kura(
        &s,
        &tok,
        &[
            "restore",
            "--key",
            "rt-linux-9",
            "--restore-key",
            "rt-",
            "--path",
            "m",
        ],
    );
    let v = json(&out);
    assert_eq!(
        (v["matched_key"].as_str(), v["cache_hit"].as_bool()),
        (Some("rt-linux-2"), Some(false))
    );
    assert_eq!(s.read("m/f"), "two");
    assert!(
        out.stderr.contains("Cache restored from key: rt-linux-2"),
        "{}",
        out.stderr
    );
    // Other paths are another version: a miss.
    let out = kura(
        &s,
        &tok,
        &["restore", "--key", "rt-linux-1", "--path", "other"],
    );
    assert_eq!(json(&out)["outcome"], "miss");
    assert!(out
        .stderr
        .contains("Cache not found for input keys: rt-linux-1"));
    // The service takes ten keys; kura says so before asking.
    let mut args = vec!["restore", "--key", "rt-x", "--path", "m"];
    for _ in 0..10 {
        args.extend(["--restore-key", "rt-"]);
    }
    let out = kura(&s, &tok, &args);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("at most 10"), "{}", out.stderr);
    assert!(service().log("rt-x").is_empty());
}

#[test]
fn server_errors_are_retried_and_429_waits_for_retry_after() {
    let s = Sandbox::new();
    let tok = main_token();
    s.write("f/x", "retry");
    service().fault(serde_json::json!({"match": "fault-5xx", "rpc": "CreateCacheEntry", "status": 503, "times": 2}));
    let out = kura(&s, &tok, &["save", "--key", "fault-5xx", "--path", "f"]);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    let creates = service()
        .log("fault-5xx")
        .iter()
        .filter(|l| l["method"] == "CreateCacheEntry")
        .count();
    assert_eq!(creates, 3);

    service().fault(serde_json::json!({"match": "fault-5xx", "rpc": "GetCacheEntryDownloadURL", "status": 429, "times": 1, "retry_after": 1}));
    let started = std::time::Instant::now();
    let out = kura(&s, &tok, &["restore", "--key", "fault-5xx", "--path", "f"]);
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

/// Save `dir` under `key`, make its download stall after `stall_after` bytes, and restore it
/// with `env`; returns what kura said and how long it took.
fn stalled_restore(
    key: &str,
    dir: &str,
    stall_after: u64,
    env: &[(&str, &str)],
) -> (Sandbox, Out, std::time::Duration) {
    let s = Sandbox::new();
    let tok = main_token();
    s.write_bytes(&format!("{dir}/big"), &support::noise(3 << 20, 9));
    s.write(&format!("{dir}/small"), "s");
    let out = kura(&s, &tok, &["save", "--key", key, "--path", dir]);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    std::fs::remove_dir_all(s.ws.join(dir)).unwrap();
    service().fault(serde_json::json!({"match": key, "rpc": "download", "times": 100, "stall_after": stall_after}));
    let started = std::time::Instant::now();
    let mut c = service().kura(&s, &tok);
    c.envs(env.iter().copied())
        .args(["--json", "restore", "--key", key, "--path", dir]);
    let out = run(&mut assert_cmd::Command::from_std(c));
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_ne!(json(&out)["outcome"], "hit");
    // Nothing half-restored is left behind.
    assert!(!s.ws.join(dir).join("small").exists() && !s.ws.join(dir).join("big").exists());
    (s, out, took)
}

#[test]
fn a_stalled_download_times_out_without_partial_files() {
    let (_s, out, took) =
        stalled_restore("fault-stall", "st", 100_000, &[("KURA_HTTP_TIMEOUT", "1")]);
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    assert!(out.stderr.contains("stalled"), "{}", out.stderr);
}

#[test]
fn a_download_slower_than_the_deadline_is_abandoned() {
    // Idle timeouts alone would wait a minute per try; the deadline (3 s) ends it first.
    let env = [
        ("KURA_HTTP_TIMEOUT", "60"),
        ("SEGMENT_DOWNLOAD_TIMEOUT_MINS", "0.05"),
    ];
    let (_s, out, took) = stalled_restore("fault-deadline", "dl", 1000, &env);
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
    assert!(
        out.stderr.contains("SEGMENT_DOWNLOAD_TIMEOUT_MINS"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_409_on_create_means_another_job_saved_it() {
    let s = Sandbox::new();
    s.write("c/x", "conflict");
    service().fault(serde_json::json!({"match": "fault-409", "rpc": "CreateCacheEntry", "status": 409, "times": 1}));
    let out = kura(
        &s,
        &main_token(),
        &["save", "--key", "fault-409", "--path", "c"],
    );
    assert_eq!(out.code, 0);
    assert_eq!(json(&out)["outcome"], "exists", "{}", out.stderr);
    assert!(
        out.stderr.contains("another job saved it first"),
        "{}",
        out.stderr
    );
    // Nothing was uploaded.
    assert!(!service()
        .log("fault-409")
        .iter()
        .any(|l| l["kind"] == "blob"));
}

#[test]
fn refusals_are_warnings_that_name_the_fix() {
    let s = Sandbox::new();
    s.write("r/x", "denied");
    // A read-only token (pull_request_target and friends).
    let ro = token(&[("refs/heads/main", 1)]);
    let out = kura(&s, &ro, &["save", "--key", "deny-write", "--path", "r"]);
    assert_eq!(out.code, 0);
    assert_eq!(json(&out)["outcome"], "skipped", "{}", out.stderr);
    assert!(
        out.stderr.contains("cache write denied") && out.stderr.contains("read-only"),
        "{}",
        out.stderr
    );
    // A token that may write but not read: the restore is skipped with the reason.
    let wo = token(&[("refs/heads/main", 2)]);
    let out = kura(&s, &wo, &["restore", "--key", "deny-read", "--path", "r"]);
    assert_eq!(out.code, 0);
    assert_eq!(json(&out)["outcome"], "skipped", "{}", out.stderr);
    assert!(out.stderr.contains("cache read denied"), "{}", out.stderr);
    // cache-mode: read skips saves, write-only skips restores, before any request.
    let modes = [
        ("read", "save"),
        ("write-only", "restore"),
        ("none", "save"),
        ("none", "restore"),
    ];
    for (mode, verb) in modes {
        let mut c = service().kura(&s, &main_token());
        c.env("ACTIONS_CACHE_MODE", mode).args([
            "--json",
            verb,
            "--key",
            "deny-mode",
            "--path",
            "r",
        ]);
        let out = run(&mut assert_cmd::Command::from_std(c));
        assert_eq!(json(&out)["outcome"], "skipped", "{mode}: {}", out.stderr);
        assert!(service().log("deny-mode").is_empty());
    }
    // From a `run:` step, with gha:// asked for but no runtime token.
    let mut c = s.kura_std();
    c.env("KURA_STORE", "gha://")
        .env("GITHUB_ACTIONS", "true")
        .args(["restore", "--key", "k", "--path", "r"]);
    let out = run(&mut assert_cmd::Command::from_std(c));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("ACTIONS_RUNTIME_TOKEN") && out.stderr.contains("run:"),
        "{}",
        out.stderr
    );
    // The same without the token but --strict: the job fails.
    let mut c = s.kura_std();
    c.env("KURA_STORE", "gha://")
        .args(["--strict", "restore", "--key", "k", "--path", "r"]);
    assert_eq!(run(&mut assert_cmd::Command::from_std(c)).code, 1);
}

#[test]
fn pull_requests_read_the_base_branch_and_write_their_own_ref() {
    let s = Sandbox::new();
    s.write("p/x", "main's");
    let out = kura(
        &s,
        &main_token(),
        &["save", "--key", "scoped-1", "--path", "p"],
    );
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    let pr = token(&[("refs/pull/7/merge", 3), ("refs/heads/main", 1)]);
    s.write("p/x", "pr's");
    let out = kura(&s, &pr, &["restore", "--key", "scoped-1", "--path", "p"]);
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(s.read("p/x"), "main's");
    s.write("p/x", "pr's");
    let out = kura(&s, &pr, &["save", "--key", "scoped-2", "--path", "p"]);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    // main cannot read what the pull request wrote.
    let out = kura(
        &s,
        &main_token(),
        &["restore", "--key", "scoped-2", "--path", "p"],
    );
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
}

#[test]
fn ls_rm_and_overwrite_through_the_rest_api() {
    let s = Sandbox::new();
    let tok = main_token();
    s.write("o/x", "first");
    assert_eq!(
        json(&kura(&s, &tok, &["save", "--key", "mgmt-1", "--path", "o"]))["outcome"],
        "saved"
    );
    assert_eq!(
        json(&kura(&s, &tok, &["save", "--key", "mgmt-2", "--path", "o"]))["outcome"],
        "saved"
    );
    let ls = json(&kura(&s, &tok, &["ls", "mgmt-"]));
    let keys: Vec<&str> = ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{ls}");
    assert!(
        ls["entries"][0]["scope"] == "refs/heads/main"
            && ls["entries"][0]["size"].as_u64().unwrap() > 0,
        "{ls}"
    );
    // --overwrite deletes the old entry, then saves.
    s.write("o/x", "second");
    let out = kura(
        &s,
        &tok,
        &["save", "--key", "mgmt-1", "--path", "o", "--overwrite"],
    );
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    s.write("o/x", "local");
    kura(&s, &tok, &["restore", "--key", "mgmt-1", "--path", "o"]);
    assert_eq!(s.read("o/x"), "second");
    // rm, narrowed by ref.
    let out = kura(&s, &tok, &["rm", "mgmt-2", "--ref", "refs/heads/other"]);
    assert!(out.stderr.contains("no entry"), "{}", out.stderr);
    let out = kura(&s, &tok, &["rm", "mgmt-2", "--ref", "refs/heads/main"]);
    assert_eq!(json(&out)["count"], 1, "{}", out.stderr);
    let ls = json(&kura(&s, &tok, &["ls", "mgmt-"]));
    assert_eq!(ls["entries"].as_array().unwrap().len(), 1, "{ls}");
    // A token without actions: write is told what it needs.
    let mut c = service().kura(&s, &tok);
    c.env("GITHUB_TOKEN", "read-only-token")
        .args(["rm", "mgmt-1"]);
    let out = run(&mut assert_cmd::Command::from_std(c));
    // A command that looks after the store says it could not.
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("actions: write"), "{}", out.stderr);
}

/// GitHub Enterprise Server and act: the legacy v1 service at ACTIONS_CACHE_URL.
fn v1_env(c: &mut std::process::Command, how: &str) {
    let url = format!("{}/secret-act-token/", service().url);
    match how {
        // act sets only ACTIONS_CACHE_URL.
        "act" => {
            c.env_remove("ACTIONS_RESULTS_URL")
                .env("ACTIONS_CACHE_URL", url);
        }
        // GHES: both may be set; the server URL decides.
        _ => {
            c.env("ACTIONS_CACHE_URL", url)
                .env("GITHUB_SERVER_URL", "https://ghe.example.com");
        }
    }
}

fn kura_v1(s: &Sandbox, how: &str, args: &[&str]) -> Out {
    let mut c = service().kura(s, &main_token());
    v1_env(&mut c, how);
    c.arg("--json").args(args);
    run(&mut assert_cmd::Command::from_std(c))
}

#[test]
fn act_and_ghes_speak_the_legacy_service() {
    let s = Sandbox::new();
    s.write_bytes("v/big", &support::noise(20 << 20, 11));
    s.write("v/x", "legacy");
    let out = kura_v1(&s, "act", &["save", "--key", "legacy-act", "--path", "v"]);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert!(!out.stderr.contains("secret-act-token"), "{}", out.stderr);
    let log = service().log("legacy-act");
    let patches = log
        .iter()
        .filter(|l| l["kind"] == "v1" && l["method"] == "PATCH")
        .count();
    assert!(patches >= 3, "ranges in parallel: {log:?}");
    assert!(!log.iter().any(|l| l["kind"] == "twirp"));
    let out = kura_v1(&s, "act", &["save", "--key", "legacy-act", "--path", "v"]);
    assert_eq!(json(&out)["outcome"], "exists", "{}", out.stderr);
    s.write("v/x", "changed");
    let out = kura_v1(
        &s,
        "ghes",
        &[
            "restore",
            "--key",
            "legacy-a",
            "--restore-key",
            "legacy-",
            "--path",
            "v",
        ],
    );
    assert_eq!(json(&out)["matched_key"], "legacy-act", "{}", out.stderr);
    assert_eq!(s.read("v/x"), "legacy");
}

#[test]
fn the_official_client_on_ghes_and_kura_read_each_other() {
    let s = Sandbox::new();
    let tok = main_token();
    let o = populate(&s, 12, 0);
    let url = format!("{}/secret-act-token/", service().url);
    let ghes = [
        ("ACTIONS_CACHE_URL", url.as_str()),
        ("GITHUB_SERVER_URL", "https://ghe.example.com"),
    ];
    let saved = service().official_with(&s, &tok, &ghes, &["save", "legacy-off", "deps", &o]);
    assert!(saved["result"].as_i64().unwrap() > 0, "{saved}");
    assert!(service()
        .log("legacy-off")
        .iter()
        .any(|l| l["kind"] == "v1"));
    let before = wipe(&s);
    let out = kura_v1(
        &s,
        "ghes",
        &[
            "restore",
            "--key",
            "legacy-off",
            "--path",
            "deps",
            "--path",
            &o,
        ],
    );
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(after(&s), before);
    let out = kura_v1(
        &s,
        "ghes",
        &[
            "save",
            "--key",
            "legacy-kura",
            "--path",
            "deps",
            "--path",
            &o,
        ],
    );
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    wipe(&s);
    let got = service().official_with(&s, &tok, &ghes, &["restore", "legacy-kura", "", "deps", &o]);
    assert_eq!(got["result"], "legacy-kura");
    assert_eq!(after(&s), before);
}

#[test]
fn the_server_url_alone_decides_between_twirp_and_the_legacy_service() {
    // Both services are offered (ACTIONS_RESULTS_URL and ACTIONS_CACHE_URL); the stand-in
    // answers both, so only its request log tells which one kura spoke.
    let s = Sandbox::new();
    s.write("d/f", "x");
    let url = format!("{}/secret-act-token/", service().url);
    for (n, (server, legacy)) in [
        ("https://ghe.example.com", true),
        ("https://octo.ghe.com", false),
        ("http://github.localhost:8080", false),
        ("https://github.com", false),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("select-{n}-");
        let mut c = service().kura(&s, &main_token());
        c.env("ACTIONS_CACHE_URL", &url)
            .env("GITHUB_SERVER_URL", server)
            .args(["--json", "save", "--key", &format!("{key}k"), "--path", "d"]);
        let out = run(&mut assert_cmd::Command::from_std(c));
        assert_eq!(json(&out)["outcome"], "saved", "{server}: {}", out.stderr);
        let kinds: Vec<String> = service()
            .log(&key)
            .iter()
            .map(|l| l["kind"].as_str().unwrap().to_string())
            .filter(|k| k != "blob" && k != "rest")
            .collect();
        let want = if legacy { "v1" } else { "twirp" };
        assert!(
            !kinds.is_empty() && kinds.iter().all(|k| k == want),
            "{server}: expected only {want} calls, saw {kinds:?}"
        );
    }
}

#[test]
fn a_short_blob_is_a_miss_that_removes_the_files_begun() {
    let s = Sandbox::new();
    let tok = main_token();
    for i in 0..40 {
        s.write_bytes(&format!("cut/{i}"), &support::noise(64 << 10, i));
    }
    let out = kura(&s, &tok, &["save", "--key", "short-blob", "--path", "cut"]);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert_eq!(service().truncate("short-blob"), 1);
    std::fs::remove_dir_all(s.ws.join("cut")).unwrap();
    let out = kura(
        &s,
        &tok,
        &["restore", "--key", "short-blob", "--path", "cut"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
    assert!(out.stderr.contains("::warning::"), "{}", out.stderr);
    assert!(out.stderr.contains("corrupt"), "{}", out.stderr);
    assert!(!s.exists("cut"), "files of the cut entry were left");
}

#[test]
fn a_miss_on_github_says_when_the_key_exists_under_another_version() {
    let s = Sandbox::new();
    let tok = main_token();
    s.write("v/f", "x");
    let out = kura(&s, &tok, &["save", "--key", "explain-1", "--path", "v"]);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    let out = kura(&s, &tok, &["restore", "--key", "explain-1", "--path", "w"]);
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "an entry for key explain-1 exists, saved under another version (other paths, or another compression) (this job asks for [w])"
        ),
        "{}",
        out.stderr
    );
}
