//! Replies no honest server sends, from the HTTP store, the GitHub cache service and its
//! blob URLs, an OCI registry and an S3 endpoint: bodies without end, a byte at a time,
//! lengths that lie, sizes no store holds, text that would be workflow commands. Each ends
//! within its deadline, in bounded memory, without a panic or an abort, exit 0 (a cache
//! failure is a warning), changing nothing outside the store.

use super::*;
use crate::support::stub::{self, Http};
use crate::support::Sandbox;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Send a reply head; `length` None means "until the connection closes".
pub(super) fn head(c: &mut TcpStream, status: &str, length: Option<u64>, kind: &str) {
    let len = length.map_or(String::new(), |l| format!("Content-Length: {l}\r\n"));
    let _ = write!(
        c,
        "HTTP/1.1 {status}\r\n{len}Content-Type: {kind}\r\nConnection: close\r\n\r\n"
    );
}

/// A body that never ends (until kura hangs up, or 16 GiB).
pub(super) fn endless(c: &mut TcpStream, unit: &[u8]) {
    let block = unit.repeat((64 << 10) / unit.len().max(1) + 1);
    let mut sent = 0u64;
    while sent < 16 << 30 && c.write_all(&block).is_ok() {
        sent += block.len() as u64;
    }
}

/// One byte every 200 ms (until kura hangs up, or 10 minutes).
fn trickle(c: &mut TcpStream, unit: &[u8]) {
    let until = Instant::now() + Duration::from_secs(600);
    for b in unit.iter().cycle() {
        if Instant::now() > until || c.write_all(&[*b]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(super) fn reply(c: &mut TcpStream, status: &str, kind: &str, body: &[u8]) {
    head(c, status, Some(body.len() as u64), kind);
    let _ = c.write_all(body);
}

/// Everything in the sandbox, but kura's own state beside its default store (what this job
/// found unreadable), and with the runner's output file in place.
pub(super) fn sandbox(s: &Sandbox) -> BTreeMap<PathBuf, String> {
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.dir.path().join("gh-output"));
    let state = s.home.join(".cache");
    std::fs::create_dir_all(state.join("kura")).unwrap();
    around(s)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&state))
        .collect()
}

/// What a cache step must show after a hostile reply: the step did not fail, nothing outside
/// the store changed, and no panic or abort.
pub(super) fn survived(s: &Sandbox, before: &BTreeMap<PathBuf, String>, out: &Out) {
    assert_eq!(out.code, 0, "{}", out.stderr);
    unharmed(s, before, out);
}

/// A restore of `k` (`--json`) that ended, harmed nothing and is no hit.
pub(super) fn no_hit(s: &Sandbox, before: &BTreeMap<PathBuf, String>, out: &Out) {
    survived(s, before, out);
    assert_ne!(json(out)["outcome"], "hit", "{}", out.stdout);
}

/// `started` is less than `secs` ago.
pub(super) fn within(started: Instant, secs: u64) {
    let took = started.elapsed();
    assert!(took < Duration::from_secs(secs), "{took:?}");
}

/// The same for `ls`, which says (exit 1) when it could not read the store.
pub(super) fn listed(s: &Sandbox, before: &BTreeMap<PathBuf, String>, out: &Out) {
    let failed = json(out)["outcome"] == "error";
    assert_eq!(out.code, i32::from(failed), "{}", out.stderr);
    unharmed(s, before, out);
}

fn unharmed(s: &Sandbox, before: &BTreeMap<PathBuf, String>, out: &Out) {
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(&sandbox(s), before, "files outside the store changed");
}

use std::collections::BTreeMap;

pub(super) const RESTORE: &[&str] = &["--json", "restore", "--key", "k", "--path", "d"];

// ---- The HTTP store -------------------------------------------------------------------

/// An HTTP store whose directories hold one entry, `k`, and whose other replies are the
/// test's: `meta` answers the entry's metadata object, `archive` its archive.
pub(super) fn http_store(
    meta: impl Fn(&Http, &mut TcpStream, &str) + Send + Sync + 'static,
    archive: impl Fn(&Http, &mut TcpStream) + Send + Sync + 'static,
) -> String {
    const STEM: &str = "0000000000001-0123456789abcdef";
    stub::serve_raw("127.0.0.1", move |r, c| {
        let json = "application/json";
        if r.path.ends_with("/k/") {
            let files = format!(
                r#"[{{"name":"{STEM}.json","type":"file","size":400}},{{"name":"{STEM}.tzst","type":"file","size":100}}]"#
            );
            reply(c, "200 OK", json, files.as_bytes());
        } else if r.path.ends_with('/') {
            reply(c, "200 OK", json, br#"[{"name":"k","type":"directory"}]"#);
        } else if r.path.ends_with(".json") {
            // `/cache/_/<version>/k/<stem>.json`: the version the restore asked for.
            let version = r.path.rsplit('/').nth(2).unwrap_or("").to_string();
            meta(r, c, &version);
        } else if r.path.ends_with(".tzst") {
            archive(r, c);
        } else {
            reply(c, "404 Not Found", json, b"{}");
        }
    })
}

pub(super) fn honest_meta(version: &str, size: u64) -> Vec<u8> {
    declared_meta(version, size, 9)
}

/// Metadata of an archive of `size` bytes holding files of `bytes` bytes.
pub(super) fn declared_meta(version: &str, size: u64, bytes: u64) -> Vec<u8> {
    serde_json::json!({
        "key": "k", "version": version, "scope": "", "size": size,
        "created_ms": 1, "kura_version": "0", "files": 1, "bytes": bytes, "paths": ["d"],
    })
    .to_string()
    .into_bytes()
}

pub(super) fn on_http(s: &Sandbox, addr: &str, args: &[&str]) -> Out {
    bounded(
        s.kura_std()
            .env("KURA_STORE", format!("http://{addr}/cache/"))
            .env("KURA_HTTP_TIMEOUT", "3")
            .args(args),
        120,
    )
    .0
}

#[test]
fn an_endless_listing_is_given_up_on() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let addr = stub::serve_raw("127.0.0.1", |_, c| {
        head(c, "200 OK", None, "application/json");
        let _ = c.write_all(b"[");
        endless(c, br#"{"name":"k","type":"directory"},"#);
    });
    let out = on_http(&s, &addr, &["--json", "ls"]);
    listed(&s, &before, &out);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stdout);
}

#[test]
fn a_listing_sent_a_byte_at_a_time_is_given_up_on() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let addr = stub::serve_raw("127.0.0.1", |_, c| {
        head(c, "200 OK", Some(1 << 20), "application/json");
        trickle(c, br#"[{"name":"k","type":"directory"},"#);
    });
    let started = Instant::now();
    let out = on_http(&s, &addr, &["--json", "ls"]);
    listed(&s, &before, &out);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stdout);
    within(started, 100);
}

#[test]
fn endless_metadata_is_no_entry() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let addr = http_store(
        |_, c, _| {
            head(c, "200 OK", None, "application/json");
            endless(c, b"{\"key\":\"k\",                ");
        },
        |_, c| reply(c, "404 Not Found", "text/plain", b""),
    );
    let out = on_http(&s, &addr, RESTORE);
    no_hit(&s, &before, &out);
    assert!(!s.ws.join("d").exists());
}

#[test]
fn metadata_claiming_a_size_no_store_holds_is_no_entry() {
    for size in [u64::MAX, 1 << 52] {
        let s = Sandbox::new();
        let before = sandbox(&s);
        let asked = stub::counter();
        let a = asked.clone();
        let addr = http_store(
            move |_, c, version| {
                reply(c, "200 OK", "application/json", &honest_meta(version, size))
            },
            move |_, c| {
                stub::bump(&a);
                reply(c, "404 Not Found", "text/plain", b"")
            },
        );
        let out = on_http(&s, &addr, RESTORE);
        survived(&s, &before, &out);
        assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
        // Not read at all: the entry was judged by its metadata.
        assert_eq!(
            asked.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "size {size}"
        );
    }
}

#[test]
fn an_archive_reply_that_lies_about_its_length_is_no_hit() {
    for length in [u64::MAX >> 1, 1 << 40] {
        let s = Sandbox::new();
        let before = sandbox(&s);
        let addr = http_store(
            |_, c, version| reply(c, "200 OK", "application/json", &honest_meta(version, 100)),
            move |_, c| {
                head(c, "200 OK", Some(length), "application/octet-stream");
                let _ = c.write_all(&[0x28, 0xb5, 0x2f, 0xfd]);
            },
        );
        let out = on_http(&s, &addr, RESTORE);
        no_hit(&s, &before, &out);
        assert!(!s.ws.join("d").exists());
    }
}

#[test]
fn an_endless_archive_reply_is_cut_at_the_entrys_size() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let addr = http_store(
        |_, c, version| reply(c, "200 OK", "application/json", &honest_meta(version, 100)),
        |_, c| {
            head(c, "200 OK", None, "application/octet-stream");
            endless(c, &[0x28, 0xb5, 0x2f, 0xfd]);
        },
    );
    let out = on_http(&s, &addr, RESTORE);
    no_hit(&s, &before, &out);
}

// ---- The GitHub cache service --------------------------------------------------------

/// A GitHub cache service: `twirp` answers the RPCs (by method name), `blob` the signed URL.
pub(super) fn gha_service(
    twirp: impl Fn(&str, &mut TcpStream, &str) + Send + Sync + 'static,
    blob: impl Fn(&Http, &mut TcpStream) + Send + Sync + 'static,
) -> String {
    let me = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let m = me.clone();
    let addr = stub::serve_raw("127.0.0.1", move |r, c| {
        let origin = m.get().cloned().unwrap_or_default();
        match r.path.rsplit_once("CacheService/") {
            Some((_, method)) => twirp(method, c, &origin),
            None => blob(r, c),
        }
    });
    me.set(addr.clone()).unwrap();
    addr
}

pub(super) fn on_gha(s: &Sandbox, addr: &str, args: &[&str]) -> (Out, Vec<(String, String)>) {
    let output = s.dir.path().join("gh-output");
    let (out, _) = bounded(
        s.kura_std()
            .env_remove("KURA_STORE")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_WORKSPACE", &s.ws)
            .env("GITHUB_OUTPUT", &output)
            .env("ACTIONS_RUNTIME_TOKEN", "token")
            .env("ACTIONS_RESULTS_URL", format!("http://{addr}/"))
            .env("KURA_HTTP_TIMEOUT", "3")
            .args(args),
        120,
    );
    let pairs = crate::support::runner_pairs(&output);
    (out, pairs)
}

/// Lines the runner would act on, other than kura's own warnings.
fn workflow_commands(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let t = l.trim();
            (t.starts_with("::") && !t.starts_with("::warning::") && !t.starts_with("::error::"))
                || t.contains("##[")
        })
        .collect()
}

pub(super) fn found(origin: &str, key: &str) -> Vec<u8> {
    serde_json::json!({
        "ok": true,
        "signed_download_url": format!("http://{origin}/blob?sig=x"),
        "matched_key": key,
    })
    .to_string()
    .into_bytes()
}

#[test]
fn an_endless_reply_from_the_cache_service_is_given_up_on() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let addr = gha_service(
        |_, c, _| {
            head(c, "200 OK", None, "application/json");
            let _ = c.write_all(b"{\"ok\":true,\"matched_key\":\"");
            endless(c, b"kkkkkkkk");
        },
        |_, c| reply(c, "404 Not Found", "text/plain", b""),
    );
    let (out, _) = on_gha(&s, &addr, RESTORE);
    no_hit(&s, &before, &out);
}

#[test]
fn a_matched_key_with_a_newline_writes_no_output_and_no_command() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let evil = "k\ncache-hit=true\n::add-mask::x\n::stop-commands::y";
    let addr = gha_service(
        move |_, c, origin| reply(c, "200 OK", "application/json", &found(origin, evil)),
        |_, c| reply(c, "404 Not Found", "text/plain", b""),
    );
    let (out, outputs) = on_gha(&s, &addr, &["restore", "--key", "k", "--path", "d"]);
    survived(&s, &before, &out);
    assert_eq!(
        workflow_commands(&out.stderr),
        Vec::<&str>::new(),
        "{}",
        out.stderr
    );
    assert_eq!(
        workflow_commands(&out.stdout),
        Vec::<&str>::new(),
        "{}",
        out.stdout
    );
    assert!(
        outputs.iter().all(|(k, v)| k != "cache-hit" || v != "true"),
        "{outputs:?}"
    );
    assert!(
        outputs.iter().all(|(_, v)| !v.contains('\n')),
        "{outputs:?}"
    );
}

#[test]
fn a_denial_message_with_commands_reaches_the_log_on_one_line() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let addr = gha_service(
        |_, c, _| {
            let msg = format!(
                "cache read denied: no\n::add-mask::secret\n::error::owned{}",
                "x".repeat(4 << 20)
            );
            let body = serde_json::json!({ "code": "permission_denied", "msg": msg });
            reply(
                c,
                "403 Forbidden",
                "application/json",
                body.to_string().as_bytes(),
            );
        },
        |_, c| reply(c, "404 Not Found", "text/plain", b""),
    );
    let (out, _) = on_gha(&s, &addr, &["restore", "--key", "k", "--path", "d"]);
    survived(&s, &before, &out);
    assert_eq!(
        workflow_commands(&out.stderr),
        Vec::<&str>::new(),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("\n::error::owned"), "{}", out.stderr);
    // Capped: not the 4 MiB the service sent.
    assert!(
        out.stderr.len() < 256 << 10,
        "{} bytes of log",
        out.stderr.len()
    );
}

/// A blob that trickles is given up on by its pace, whatever size its HEAD claims; one
/// claiming more than any disk holds (2^50 bytes) is not begun at all.
#[test]
fn a_blob_claiming_a_huge_size_or_trickling_is_given_up_on() {
    for (claim, secs) in [(1u64 << 30, 110), (1 << 50, 10)] {
        let s = Sandbox::new();
        let before = sandbox(&s);
        let addr = gha_service(
            |_, c, origin| reply(c, "200 OK", "application/json", &found(origin, "k")),
            move |r, c| match (r.method.as_str(), r.range) {
                ("GET", Some((from, to))) => {
                    let _ = write!(
                        c,
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{to}/{claim}\r\nConnection: close\r\n\r\n",
                        to - from + 1
                    );
                    trickle(c, &[0x28, 0xb5, 0x2f, 0xfd]);
                }
                _ => head(c, "200 OK", Some(claim), "application/octet-stream"),
            },
        );
        let started = Instant::now();
        let (out, _) = on_gha(&s, &addr, RESTORE);
        no_hit(&s, &before, &out);
        within(started, secs);
        if claim > 1 << 40 {
            assert!(out.stderr.contains("free on the disk"), "{}", out.stderr);
        }
    }
}

#[test]
fn a_cache_service_that_trickles_is_given_up_on() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let addr = gha_service(
        |_, c, _| {
            head(c, "200 OK", Some(1 << 20), "application/json");
            trickle(c, b"{\"ok\":true,\"matched_key\":\"kkkkkkkkkkk");
        },
        |_, c| reply(c, "404 Not Found", "text/plain", b""),
    );
    let started = Instant::now();
    let (out, _) = on_gha(&s, &addr, RESTORE);
    no_hit(&s, &before, &out);
    within(started, 110);
}

// ---- An OCI registry and an S3 endpoint ---------------------------------------------

#[test]
fn an_endless_manifest_is_given_up_on() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let asked = stub::counter();
    let a = asked.clone();
    let addr = stub::serve_raw("127.0.0.1", move |r, c| {
        if r.path.contains("/tags/list") {
            let tags = br#"{"name":"stub/repo","tags":["0123456789abcdef-k"]}"#;
            reply(c, "200 OK", "application/json", tags);
        } else if r.path.contains("/manifests/") {
            stub::bump(&a);
            head(
                c,
                "200 OK",
                None,
                "application/vnd.oci.image.manifest.v1+json",
            );
            let _ = c.write_all(b"{\"layers\":[");
            endless(c, b"{\"size\":1},");
        } else {
            reply(c, "404 Not Found", "application/json", b"{}");
        }
    });
    let (out, _) = bounded(
        s.kura_std()
            .env("KURA_STORE", format!("oci+http://{addr}/stub/repo"))
            .env("KURA_HTTP_TIMEOUT", "3")
            .args(["--json", "ls"]),
        120,
    );
    listed(&s, &before, &out);
    assert_ne!(
        json(&out)["entries"].as_array().map(Vec::len).unwrap_or(0),
        1
    );
    assert!(
        asked.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "{}",
        out.stderr
    );
}

pub(super) fn on_s3(s: &Sandbox, addr: &str, args: &[&str]) -> Out {
    bounded(
        s.kura_std()
            .env("KURA_STORE", "s3://bucket/prefix")
            .env("KURA_S3_ENDPOINT", format!("http://{addr}"))
            .env("AWS_ACCESS_KEY_ID", "id")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "us-east-1")
            .env("KURA_HTTP_TIMEOUT", "3")
            .args(args),
        120,
    )
    .0
}

#[test]
fn an_endless_s3_listing_is_given_up_on() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let addr = stub::serve_raw("127.0.0.1", |_, c| {
        head(c, "200 OK", None, "application/xml");
        let _ = c.write_all(
            br#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bucket</Name>"#,
        );
        endless(c, b"<Contents><Key>prefix/x</Key><Size>1</Size></Contents>");
    });
    let out = on_s3(&s, &addr, &["--json", "ls"]);
    listed(&s, &before, &out);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stdout);
}

/// A listing sent a byte at a time: under the cap for days, so only its pace ends it.
#[test]
fn an_s3_listing_sent_a_byte_at_a_time_is_given_up_on() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let addr = stub::serve_raw("127.0.0.1", |_, c| {
        head(c, "200 OK", None, "application/xml");
        trickle(
            c,
            br#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>"#,
        );
    });
    let started = Instant::now();
    let out = on_s3(&s, &addr, &["--json", "ls"]);
    listed(&s, &before, &out);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stdout);
    within(started, 100);
}

#[test]
fn s3_metadata_larger_than_any_kura_writes_is_not_read() {
    for (size, lying) in [(1u64 << 30, false), (400, true)] {
        let s = Sandbox::new();
        let before = sandbox(&s);
        let reads = stub::counter();
        let r2 = reads.clone();
        let addr = stub::serve_raw("127.0.0.1", move |r, c| {
            if r.path.contains("list-type=2") {
                let body = format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bucket</Name><IsTruncated>false</IsTruncated><Contents><Key>prefix/_/v/k/0000000000001-0123456789abcdef.json</Key><Size>{size}</Size><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents></ListBucketResult>"#
                );
                reply(c, "200 OK", "application/xml", body.as_bytes());
            } else {
                stub::bump(&r2);
                head(c, "200 OK", Some(u64::MAX >> 1), "application/json");
                endless(c, b"{\"key\":\"k\"  ");
            }
        });
        let out = on_s3(&s, &addr, &["--json", "ls"]);
        listed(&s, &before, &out);
        if lying {
            // Listed small, sent without end: refused by its declared length, not read.
            assert_eq!(json(&out)["outcome"], "error", "{}", out.stdout);
        } else {
            assert_eq!(
                json(&out)["entries"],
                serde_json::json!([]),
                "{}",
                out.stdout
            );
            assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 0);
        }
    }
}

/// `kura --json ls` against GitHub's REST API and cache service at `addr`, within `secs`.
pub(super) fn rest_ls(s: &Sandbox, addr: &str, secs: u64) -> Out {
    bounded(
        s.kura_std()
            .env("KURA_STORE", "gha://")
            .env("GITHUB_TOKEN", "token")
            .env("GITHUB_REPOSITORY", "owner/repo")
            .env("GITHUB_API_URL", format!("http://{addr}"))
            .env("ACTIONS_RUNTIME_TOKEN", "token")
            .env("ACTIONS_RESULTS_URL", format!("http://{addr}/"))
            .env("KURA_HTTP_TIMEOUT", "3")
            .args(["--json", "ls"]),
        secs,
    )
    .0
}

/// An `ls` that could not read the store, saying `why`: nothing harmed, exit 1.
pub(super) fn refused(
    s: &Sandbox,
    before: &BTreeMap<PathBuf, String>,
    out: &Out,
    why: &str,
    case: &str,
) {
    listed(s, before, out);
    assert_eq!(json(out)["outcome"], "error", "{case}: {}", out.stdout);
    assert!(out.stderr.contains(why), "{case}: {}", out.stderr);
}

#[test]
fn an_endless_rest_listing_of_github_caches_is_given_up_on() {
    // As a page, and as an error whose body never ends (its message would be read whole).
    for status in ["200 OK", "500 Internal Server Error"] {
        let s = Sandbox::new();
        let before = sandbox(&s);
        let addr = stub::serve_raw("127.0.0.1", move |_, c| {
            head(c, status, None, "application/json");
            let _ =
                c.write_all(br#"{"total_count":1000000000000,"message":"no","actions_caches":["#);
            endless(
                c,
                br#"{"id":1,"key":"k","ref":"refs/heads/main","version":"v","size_in_bytes":1,"created_at":"2026-01-01T00:00:00Z","last_accessed_at":"2026-01-01T00:00:00Z"},"#,
            );
        });
        let out = rest_ls(&s, &addr, 120);
        refused(&s, &before, &out, "larger than", status);
    }
}

/// Pages that are finite but far larger than any page asked for: parsed whole, they would
/// take many times their size in memory.
#[test]
fn oversized_listing_pages_are_refused() {
    // An OCI registry's page of a thousand tags, as 6 MiB of one-letter tags.
    let s = Sandbox::new();
    let before = sandbox(&s);
    let tags = format!(
        r#"{{"name":"stub/repo","tags":[{}"a"]}}"#,
        "\"a\",".repeat(1 << 20)
    );
    let reg = stub::serve_raw("127.0.0.1", move |r, c| {
        if r.path.contains("/tags/list") {
            reply(c, "200 OK", "application/json", tags.as_bytes());
        } else {
            reply(c, "404 Not Found", "application/json", b"{}");
        }
    });
    let (out, _) = bounded(
        s.kura_std()
            .env("KURA_STORE", format!("oci+http://{reg}/stub/repo"))
            .args(["--json", "ls"]),
        60,
    );
    refused(&s, &before, &out, "larger than", "OCI tags");
    // GitHub's REST listing: a page of more caches than were asked for.
    let s = Sandbox::new();
    let before = sandbox(&s);
    let cache = r#"{"id":1,"key":"k","ref":"refs/heads/main","version":"v","size_in_bytes":1,"created_at":"2026-01-01T00:00:00Z","last_accessed_at":"2026-01-01T00:00:00Z"}"#;
    let page = format!(
        r#"{{"total_count":101,"actions_caches":[{}]}}"#,
        vec![cache; 101].join(",")
    );
    let api = stub::serve_raw("127.0.0.1", move |_, c| {
        reply(c, "200 OK", "application/json", page.as_bytes())
    });
    let out = rest_ls(&s, &api, 60);
    refused(&s, &before, &out, "100 were asked", "REST page");
}
