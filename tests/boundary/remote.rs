//! Servers that misbehave: a registry whose pages link back to themselves or to another
//! host, a manifest that claims another entry's tag, an S3 listing that never ends and a
//! redirect that would carry S3's session token elsewhere. Stand-ins (`support::stub`) show
//! what the real servers never do.

use super::replies::{listed, sandbox, survived};
use super::*;
use crate::support::stub::{self, counter};
use crate::support::{Out, Sandbox};
use std::sync::atomic::Ordering;

type Reply = (String, Vec<(String, String)>, Vec<u8>);

fn json_reply(body: &str) -> Reply {
    (
        "200 OK".into(),
        vec![("Content-Type".into(), "application/json".into())],
        body.as_bytes().to_vec(),
    )
}

fn oci(s: &Sandbox, registry: &str, args: &[&str]) -> Out {
    bounded(
        s.kura_std()
            .env("KURA_STORE", format!("oci://{registry}/stub/repo"))
            .env("KURA_OCI_USERNAME", "user")
            .env("KURA_OCI_PASSWORD", "s3cret")
            .args(args),
        60,
    )
    .0
}

/// A registry that asks for Basic credentials and answers tag listings with `tags`.
fn registry(tags: impl Fn(&stub::Http) -> Reply + Send + Sync + 'static) -> String {
    stub::serve("127.0.0.1", move |r| {
        if !r.auth {
            return (
                "401 Unauthorized".into(),
                vec![("WWW-Authenticate".into(), "Basic realm=\"stub\"".into())],
                vec![],
            );
        }
        if r.path.starts_with("/v2/stub/repo/tags/list") {
            return tags(r);
        }
        ("404 Not Found".into(), vec![], b"{}".to_vec())
    })
}

#[test]
fn a_tag_listing_that_links_to_itself_ends() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let pages = counter();
    let p = pages.clone();
    let reg = registry(move |r| {
        stub::bump(&p);
        let mut a = json_reply(r#"{"name":"stub/repo","tags":["t"]}"#);
        a.1.push(("Link".into(), format!("<{}>; rel=\"next\"", r.path)));
        a
    });
    let out = oci(&s, &reg, &["--json", "ls"]);
    listed(&s, &before, &out);
    assert!(out.stderr.contains("loop"), "{}", out.stderr);
    assert!(
        pages.load(Ordering::SeqCst) <= 3,
        "{} pages",
        pages.load(Ordering::SeqCst)
    );
}

#[test]
fn a_next_page_on_another_host_gets_no_credentials() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let (hits, leaked) = (counter(), counter());
    let (h, l) = (hits.clone(), leaked.clone());
    let other = stub::serve("127.0.0.2", move |r| {
        stub::bump(&h);
        if r.auth {
            stub::bump(&l);
        }
        // As a registry would: ask for credentials, with a token service of its own.
        (
            "401 Unauthorized".into(),
            vec![(
                "WWW-Authenticate".into(),
                "Basic realm=\"elsewhere\"".into(),
            )],
            vec![],
        )
    });
    let reg = registry(move |_| {
        let mut a = json_reply(r#"{"name":"stub/repo","tags":["t"]}"#);
        a.1.push((
            "Link".into(),
            format!("<http://{other}/v2/stub/repo/tags/list?last=t>; rel=\"next\""),
        ));
        a
    });
    let out = oci(&s, &reg, &["--json", "ls"]);
    listed(&s, &before, &out);
    assert!(out.stderr.contains("another origin"), "{}", out.stderr);
    assert_eq!(
        leaked.load(Ordering::SeqCst),
        0,
        "credentials went to the other host"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// A registry that redirects (to a blob store, say) whose answer is a 401 naming a token
/// service: the challenge is not the registry's, so the registry's credentials go nowhere.
#[test]
fn a_challenge_from_where_a_redirect_led_gets_no_credentials() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let (asked, leaked) = (counter(), counter());
    let (a, l) = (asked.clone(), leaked.clone());
    let tokens = stub::serve("127.0.0.3", move |r| {
        stub::bump(&a);
        if r.auth {
            stub::bump(&l);
        }
        json_reply(r#"{"token":"t"}"#)
    });
    let elsewhere = stub::serve("127.0.0.2", move |_| {
        (
            "401 Unauthorized".into(),
            vec![(
                "WWW-Authenticate".into(),
                format!("Bearer realm=\"http://{tokens}/token\",service=\"x\""),
            )],
            vec![],
        )
    });
    let reg = stub::serve("127.0.0.1", move |r| {
        (
            "307 Temporary Redirect".into(),
            vec![("Location".into(), format!("http://{elsewhere}{}", r.path))],
            vec![],
        )
    });
    let out = oci(&s, &reg, &["--json", "ls"]);
    listed(&s, &before, &out);
    assert_eq!(
        leaked.load(Ordering::SeqCst),
        0,
        "credentials went to the token service"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 0, "a token was asked for");
}

#[test]
fn a_manifest_under_another_entrys_tag_is_not_that_entry() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    // An entry's metadata, served under a tag that is not the one its key, version and scope
    // give: a registry (or whoever pushed) cannot make it stand for another key.
    let meta = serde_json::json!({
        "key": "v1-honest", "version": "0".repeat(64), "scope": "", "size": 1,
        "sha256": "00".repeat(32), "created_ms": 1, "kura_version": "0.1.0",
        "files": 1, "bytes": 1, "paths": ["d"],
    })
    .to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.kura.entry.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
        "layers": [{"mediaType": "application/vnd.kura.archive.v1.tar+zstd",
                    "digest": format!("sha256:{}", "11".repeat(32)), "size": 1}],
        "annotations": {"dev.kura.meta": meta},
    })
    .to_string();
    let reg = stub::serve("127.0.0.1", move |r| {
        if r.path.starts_with("/v2/stub/repo/tags/list") {
            return json_reply(r#"{"name":"stub/repo","tags":["0000000000000000-v1-other"]}"#);
        }
        if r.path.starts_with("/v2/stub/repo/manifests/") {
            return json_reply(&manifest);
        }
        ("404 Not Found".into(), vec![], b"{}".to_vec())
    });
    let out = oci(&s, &reg, &["--json", "ls"]);
    listed(&s, &before, &out);
    assert_eq!(crate::support::json(&out)["entries"], serde_json::json!([]));
}

fn s3(s: &Sandbox, endpoint: &str, args: &[&str]) -> Out {
    bounded(
        s.kura_std()
            .env("KURA_STORE", "s3://bucket/prefix")
            .env("KURA_S3_ENDPOINT", format!("http://{endpoint}"))
            .env("AWS_ACCESS_KEY_ID", "id")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_SESSION_TOKEN", "session-token")
            .env("AWS_REGION", "us-east-1")
            .env("KURA_HTTP_TIMEOUT", "5")
            .args(args),
        60,
    )
    .0
}

fn listing(truncated: bool, token: &str) -> Reply {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix>prefix/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>{truncated}</IsTruncated><NextContinuationToken>{token}</NextContinuationToken></ListBucketResult>"#
    );
    (
        "200 OK".into(),
        vec![("Content-Type".into(), "application/xml".into())],
        body.into_bytes(),
    )
}

#[test]
fn an_s3_listing_whose_token_comes_back_ends() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let pages = counter();
    let p = pages.clone();
    let endpoint = stub::serve("127.0.0.1", move |_| {
        stub::bump(&p);
        listing(true, "same")
    });
    let out = s3(&s, &endpoint, &["--json", "ls"]);
    listed(&s, &before, &out);
    assert!(out.stderr.contains("loop"), "{}", out.stderr);
    assert!(
        pages.load(Ordering::SeqCst) <= 3,
        "{} pages",
        pages.load(Ordering::SeqCst)
    );
}

#[test]
fn an_s3_redirect_to_another_origin_carries_no_session_token() {
    let s = Sandbox::new();
    let before = sandbox(&s);
    let (hits, leaked) = (counter(), counter());
    let (h, l) = (hits.clone(), leaked.clone());
    let other = stub::serve("127.0.0.2", move |r| {
        stub::bump(&h);
        if r.header("x-amz-security-token").is_some() {
            stub::bump(&l);
        }
        listing(false, "")
    });
    let endpoint = stub::serve("127.0.0.1", move |r| {
        (
            "307 Temporary Redirect".into(),
            vec![("Location".into(), format!("http://{other}{}", r.path))],
            vec![],
        )
    });
    let out = s3(&s, &endpoint, &["--json", "ls"]);
    listed(&s, &before, &out);
    assert_eq!(
        leaked.load(Ordering::SeqCst),
        0,
        "the session token went to the other host"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// A name planted in a key's directory of an HTTP store that a URL parser reads as a path
/// elsewhere (`\` for `/`, `..`, a `#` fragment), old enough for the sweep: the sweep, an
/// overwrite and a restore delete nothing outside the store, and the real entry stays.
#[test]
fn a_planted_name_that_climbs_in_a_url_deletes_nothing_outside_the_store() {
    let n = crate::support::nginx::nginx();
    let prefix = format!("climb-{}", std::process::id());
    let store = format!("{}{prefix}/", n.url);
    let s = Sandbox::new();
    s.write("d/f", "cached");
    let save = |extra: &[&str]| {
        run(s
            .kura()
            .env("KURA_STORE", &store)
            .args([
                "--json", "save", "--key", "k", "--path", "d", "--format", "archive",
            ])
            .args(extra))
    };
    assert_eq!(json(&save(&[]))["outcome"], "saved");
    let meta = crate::support::files_below(&n.root.join(&prefix))
        .into_iter()
        .find(|f| f.extension().is_some_and(|x| x == "json"))
        .expect("the entry's metadata");
    let victim = n.root.join(format!("victim-{}", std::process::id()));
    std::fs::write(&victim, "keep").unwrap();
    // key → version → scope → prefix → the server's root, after the name's own segment.
    let climb = "\\..".repeat(5);
    let name = format!("1000000000000{climb}\\victim-{}#.tzst", std::process::id());
    std::fs::write(meta.parent().unwrap().join(&name), "bait").unwrap();
    let out = run(s
        .kura()
        .env("KURA_STORE", &store)
        .args(["--json", "prune", "--max-age", "30d"]));
    assert_eq!(json(&out)["outcome"], "pruned", "{}", out.stderr);
    assert_eq!(json(&save(&["--overwrite"]))["outcome"], "saved");
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(s
        .kura()
        .env("KURA_STORE", &store)
        .args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert!(
        meta.parent().unwrap().join(&name).exists(),
        "not kura's: left alone"
    );
}

/// An HTTP store that takes the start of an upload and then neither reads nor answers: the
/// save gives up within KURA_HTTP_TIMEOUT's bounds (2 s here: the stall, then the clean-up's
/// tries, about 12 s in all), warns, and exits 0, never waiting on the upload to end by itself
/// (which took 40 s here, and forever against some servers).
#[test]
fn an_http_store_that_stops_reading_an_upload_does_not_hang_the_save() {
    let addr = stub::serve("127.0.0.1", |r| {
        if r.method == "PUT" {
            std::thread::sleep(Duration::from_secs(600));
        }
        ("404 Not Found".into(), Vec::new(), Vec::new())
    });
    let s = Sandbox::new();
    s.write_bytes("d/noise", &crate::support::noise(24 << 20, 9));
    let before = sandbox(&s);
    let (out, _) = bounded(
        s.kura_std()
            .env("KURA_STORE", format!("http://{addr}/"))
            .env("KURA_HTTP_TIMEOUT", "2")
            .args([
                "--json", "save", "--key", "k", "--path", "d", "--format", "archive",
            ]),
        30,
    );
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    survived(&s, &before, &out);
}
