//! Reply bodies that are too much: an S3 range without end, WebDAV listings larger than a
//! page may be, and a store that says nothing at all. Each ends within its deadline, in
//! bounded memory, exit 0 for a cache step (exit 1 for `ls`, which says it could not read),
//! changing nothing outside the store.

use super::replies::*;
use super::*;
use crate::support::stub;
use crate::support::Sandbox;
use std::io::Write;
use std::time::{Duration, Instant};

/// The one entry an S3 listing of a key's directory names, for any version asked.
fn s3_entry(
    r: &stub::Http,
    c: &mut std::net::TcpStream,
    bytes: u64,
    archive: impl Fn(&mut std::net::TcpStream),
) {
    const STEM: &str = "0000000000001-0123456789abcdef";
    let decoded = percent_encoding::percent_decode_str(&r.path)
        .decode_utf8_lossy()
        .into_owned();
    if let Some(prefix) = decoded
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("prefix="))
        .filter(|_| decoded.contains("list-type=2"))
    {
        // The key's own directory holds the entry; wider listings (a miss's explanation)
        // hold nothing.
        let contents = match prefix.strip_suffix("/k") {
            Some(_) => ["json", "tzst"]
                .map(|ext| format!("<Contents><Key>{prefix}/{STEM}.{ext}</Key><Size>100</Size><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>"))
                .concat(),
            None => String::new(),
        };
        let body = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bucket</Name><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"#
        );
        reply(c, "200 OK", "application/xml", body.as_bytes());
    } else if decoded.ends_with(".json") {
        // `/bucket/prefix/_/<version>/k/<stem>.json`
        let version = decoded.rsplit('/').nth(2).unwrap_or("").to_string();
        reply(
            c,
            "200 OK",
            "application/json",
            &declared_meta(&version, 100, bytes),
        );
    } else if decoded.ends_with(".tzst") {
        archive(c);
    } else {
        reply(
            c,
            "404 Not Found",
            "application/xml",
            b"<Error><Code>NoSuchKey</Code></Error>",
        );
    }
}

/// An archive the metadata says is 100 bytes, sent as a range without end: without a length,
/// and claiming a terabyte (then zstd's magic and noise until kura hangs up). Cut at the range,
/// never read past it.
#[test]
fn an_endless_s3_range_is_cut_at_the_entrys_size() {
    for length in [None, Some(1u64 << 40)] {
        let s = Sandbox::new();
        let before = sandbox(&s);
        let asked = stub::counter();
        let a = asked.clone();
        let addr = stub::serve_raw("127.0.0.1", move |r, c| {
            s3_entry(r, c, 9, |c| {
                stub::bump(&a);
                head(c, "206 Partial Content", length, "application/octet-stream");
                endless(c, &[0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4]);
            })
        });
        let started = Instant::now();
        let out = on_s3(&s, &addr, RESTORE);
        no_hit(&s, &before, &out);
        within(started, 30);
        assert!(
            asked.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "{}",
            out.stderr
        );
    }
}

/// A reply of `count` times `unit` between `open` and `close`, with its length declared, made
/// as it is sent: this test process stays small (a child's peak RSS counts its parent's).
fn repeated(
    c: &mut std::net::TcpStream,
    status: &str,
    open: &str,
    unit: &str,
    count: usize,
    close: &str,
) {
    let len = open.len() + unit.len() * count + close.len();
    head(c, status, Some(len as u64), "application/octet-stream");
    let block = unit.repeat(1024);
    let _ = c.write_all(open.as_bytes());
    for _ in 0..count / 1024 {
        if c.write_all(block.as_bytes()).is_err() {
            return;
        }
    }
    let _ = c.write_all(unit.repeat(count % 1024).as_bytes());
    let _ = c.write_all(close.as_bytes());
}

/// A directory listing of 20 MiB, sent whole with its length, as JSON and as PROPFIND's
/// multistatus: over the 16 MiB a listing page may be, refused, not parsed.
#[test]
fn a_webdav_listing_larger_than_a_page_may_be_is_refused() {
    const COUNT: usize = 20 << 20 >> 6;
    for propfind in [false, true] {
        let s = Sandbox::new();
        let before = sandbox(&s);
        let addr = stub::serve_raw("127.0.0.1", move |r, c| {
            let name = "a".repeat(40);
            match (r.method.as_str(), propfind) {
                ("GET", false) => {
                    let unit = format!(r#"{{"name":"{name}","type":"directory"}},"#);
                    repeated(c, "200 OK", "[", &unit, COUNT, "{}]")
                }
                ("GET", true) => reply(c, "405 Method Not Allowed", "text/plain", b""),
                ("PROPFIND", _) => {
                    let unit = format!("<D:response><D:href>/cache/{name}/</D:href></D:response>");
                    let open = r#"<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">"#;
                    repeated(
                        c,
                        "207 Multi-Status",
                        open,
                        &unit,
                        COUNT,
                        "</D:multistatus>",
                    )
                }
                _ => reply(c, "404 Not Found", "text/plain", b""),
            }
        });
        let out = on_http(&s, &addr, &["--json", "ls"]);
        refused(
            &s,
            &before,
            &out,
            "larger than",
            &format!("PROPFIND {propfind}"),
        );
    }
}

/// A store that takes connections and never answers is given up on within
/// `KURA_HTTP_TIMEOUT` (3 s here), retries included, on every kind of store: the restore is a
/// miss well inside twice the setting, not the minutes that attempts × timeout would take.
#[test]
fn a_silent_store_is_given_up_on_within_kura_http_timeout() {
    let silent = || {
        stub::serve_raw("127.0.0.1", |_, _| {
            std::thread::sleep(Duration::from_secs(60))
        })
    };
    let s = Sandbox::new();
    let before = sandbox(&s);
    let http = silent();
    let started = Instant::now();
    let out = on_http(&s, &http, RESTORE);
    no_hit(&s, &before, &out);
    within(started, 6);

    let oci = silent();
    let started = Instant::now();
    let (out, _) = bounded(
        s.kura_std()
            .env("KURA_STORE", format!("oci+http://{oci}/stub/repo"))
            .env("KURA_HTTP_TIMEOUT", "3")
            .args(RESTORE),
        120,
    );
    no_hit(&s, &before, &out);
    within(started, 6);

    let gha = silent();
    let started = Instant::now();
    let (out, pairs) = on_gha(&s, &gha, RESTORE);
    no_hit(&s, &before, &out);
    assert!(
        pairs.iter().all(|(k, v)| k != "cache-hit" || v != "true"),
        "{pairs:?}"
    );
    within(started, 6);

    let s3 = silent();
    let started = Instant::now();
    let out = on_s3(&s, &s3, RESTORE);
    no_hit(&s, &before, &out);
    within(started, 6);
}

/// The peers a store sends kura to are held to the same budget: the blob server of a
/// GitHub cache service's signed URL, GitHub's REST API behind `ls`, and an OCI registry's
/// token service. Each is silent; each is given up on within twice `KURA_HTTP_TIMEOUT`.
#[test]
fn a_silent_peer_a_store_sends_kura_to_is_given_up_on() {
    let silent = || {
        stub::serve_raw("127.0.0.1", |_, _| {
            std::thread::sleep(Duration::from_secs(60))
        })
    };
    let s = Sandbox::new();
    let before = sandbox(&s);

    let blobs = silent();
    let gha = gha_service(
        move |_, c, _| reply(c, "200 OK", "application/json", &found(&blobs, "k")),
        |_, c| reply(c, "404 Not Found", "text/plain", b""),
    );
    let started = Instant::now();
    let (out, _) = on_gha(&s, &gha, RESTORE);
    no_hit(&s, &before, &out);
    within(started, 6);

    let rest = silent();
    let started = Instant::now();
    let out = rest_ls(&s, &rest, 60);
    listed(&s, &before, &out);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stdout);
    within(started, 6);

    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let was_asked = asked.clone();
    let tokens = stub::serve_raw("127.0.0.1", move |_, _| {
        was_asked.store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(60))
    });
    let registry = stub::serve_raw("127.0.0.1", move |_, c| {
        let _ = write!(
            c,
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{tokens}/token\",service=\"stub\",scope=\"repository:stub/repo:pull\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    let started = Instant::now();
    let (out, _) = bounded(
        s.kura_std()
            .env("KURA_STORE", format!("oci+http://{registry}/stub/repo"))
            .env("KURA_HTTP_TIMEOUT", "3")
            .args(RESTORE),
        120,
    );
    no_hit(&s, &before, &out);
    within(started, 6);
    assert!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        "the token service was not asked"
    );
}

/// An entry whose metadata declares more bytes of files than the disk has free is not
/// fetched from a remote store either: the restore is a miss that says why, and the archive
/// is never asked for.
#[test]
fn an_entry_declaring_more_than_the_disk_holds_is_not_fetched() {
    let huge = 1u64 << 50;
    for store in ["http", "s3"] {
        let s = Sandbox::new();
        let before = sandbox(&s);
        let asked = stub::counter();
        let a = asked.clone();
        let archive = move |c: &mut std::net::TcpStream| {
            stub::bump(&a);
            reply(c, "404 Not Found", "text/plain", b"")
        };
        let out = if store == "http" {
            let addr = http_store(
                move |_, c, version| {
                    reply(
                        c,
                        "200 OK",
                        "application/json",
                        &declared_meta(version, 100, huge),
                    )
                },
                move |_, c| archive(c),
            );
            on_http(&s, &addr, RESTORE)
        } else {
            let addr = stub::serve_raw("127.0.0.1", move |r, c| s3_entry(r, c, huge, &archive));
            on_s3(&s, &addr, RESTORE)
        };
        no_hit(&s, &before, &out);
        assert!(
            out.stderr.contains("free on the disk"),
            "{store}: {}",
            out.stderr
        );
        assert_eq!(
            asked.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{store}"
        );
    }
}
