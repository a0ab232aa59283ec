//! The OCI store through the binary, against Debian's docker-registry on 127.0.0.1: what the
//! store contract (`tests/contract`) does not cover — credentials, and an unchanged archive
//! that is not uploaded again.

use crate::support;
use crate::support::registry::{basic, open, token, PASSWORD, USER};
use crate::support::{json, run, tree, Sandbox};

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
        "--format",
        "archive",
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
        "--format",
        "archive",
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

use crate::support::stub;

/// The tag kura gives a key (its encoding, written again here from the README's description).
fn tag_of(scope: &str, version: &str, key: &str) -> String {
    use sha2::Digest;
    let h = |s: &str| hex::encode(sha2::Sha256::digest(s.as_bytes()))[..8].to_string();
    let enc: String = key
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("_{b:02x}"),
        })
        .collect();
    format!("{}{}-{enc}", h(scope), h(version))
}

/// Two real entries (`v1-deps-a`, then `v1-deps-b`) made by kura on a local store, as a
/// registry would hold them: their tags and manifests, and b's archive.
struct Entries {
    tag_a: String,
    tag_b: String,
    ma: String,
    mb: String,
    archive: Vec<u8>,
}

fn entries(s: &Sandbox) -> Entries {
    use sha2::Digest;
    // Real entries, made by kura on a local store.
    s.write("d/f", "paged");
    for key in ["v1-deps-a", "v1-deps-b"] {
        let out = run(s.kura().args([
            "--json", "save", "--format", "archive", "--key", key, "--path", "d",
        ]));
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let entry = |key: &str| support::walk_find(&s.store, key);
    let archive = std::fs::read(entry("v1-deps-b").join("archive")).unwrap();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&archive)));
    let manifest = |key: &str| {
        let meta = std::fs::read_to_string(entry(key).join("meta.json")).unwrap();
        serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.kura.entry.v1",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                       "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
            "layers": [{"mediaType": "application/vnd.kura.archive.v1.tar+zstd", "digest": digest, "size": archive.len()}],
            "annotations": {"dev.kura.meta": meta},
        })
        .to_string()
    };
    let version: String = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(entry("v1-deps-a").join("meta.json")).unwrap(),
    )
    .unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let (tag_a, tag_b) = (
        tag_of("", &version, "v1-deps-a"),
        tag_of("", &version, "v1-deps-b"),
    );
    let (ma, mb) = (manifest("v1-deps-a"), manifest("v1-deps-b"));
    Entries {
        tag_a,
        tag_b,
        ma,
        mb,
        archive,
    }
}

#[test]
fn tags_across_pages_and_credentials_never_follow_a_redirect() {
    use std::sync::atomic::Ordering;
    let s = Sandbox::new();
    let Entries {
        tag_a,
        tag_b,
        ma,
        mb,
        archive,
    } = entries(&s);
    // The blob host, on another address: counts requests, and those that carried credentials.
    let (blob_hits, leaked) = (stub::counter(), stub::counter());
    let (hits, leaks) = (blob_hits.clone(), leaked.clone());
    let body = archive.clone();
    let blob_host = stub::serve("127.0.0.2", move |r| {
        stub::bump(&hits);
        if r.auth {
            stub::bump(&leaks);
        }
        let (a, b) = r.range.unwrap_or((0, body.len() - 1));
        (
            "206 Partial Content".into(),
            vec![],
            body[a..=b.min(body.len() - 1)].to_vec(),
        )
    });
    // The first read of entry b's manifest is throttled: 429, come back in a second.
    let throttled = stub::counter();
    let t = throttled.clone();
    let registry = stub::serve("127.0.0.1", move |r| {
        let json = |b: &str| {
            (
                "200 OK".to_string(),
                vec![("Content-Type".to_string(), "application/json".to_string())],
                b.as_bytes().to_vec(),
            )
        };
        if !r.auth {
            return (
                "401 Unauthorized".into(),
                vec![("WWW-Authenticate".into(), "Basic realm=\"stub\"".into())],
                vec![],
            );
        }
        let p = r.path.as_str();
        if p.starts_with("/v2/stub/repo/tags/list") && !p.contains("last=") {
            let mut a = json(&format!(r#"{{"name":"stub/repo","tags":["{tag_a}"]}}"#));
            a.1.push((
                "Link".into(),
                "</v2/stub/repo/tags/list?n=1000&last=x>; rel=\"next\"".into(),
            ));
            return a;
        }
        if p.starts_with("/v2/stub/repo/tags/list") {
            return json(&format!(r#"{{"name":"stub/repo","tags":["{tag_b}"]}}"#));
        }
        if p == format!("/v2/stub/repo/manifests/{tag_a}") {
            return json(&ma);
        }
        if p == format!("/v2/stub/repo/manifests/{tag_b}") {
            if t.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                stub::bump(&t);
                return (
                    "429 Too Many Requests".into(),
                    vec![("Retry-After".into(), "1".into())],
                    br#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#.to_vec(),
                );
            }
            return json(&mb);
        }
        if r.method == "DELETE" {
            return (
                "405 Method Not Allowed".into(),
                vec![],
                br#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#
                    .to_vec(),
            );
        }
        if p.starts_with("/v2/stub/repo/blobs/") {
            return (
                "307 Temporary Redirect".into(),
                vec![("Location".into(), format!("http://{blob_host}{p}"))],
                vec![],
            );
        }
        (
            "404 Not Found".into(),
            vec![],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#.to_vec(),
        )
    });
    let url = format!("oci://{registry}/stub/repo");
    let stubbed = || {
        let mut c = kura(&s, &url);
        c.env("KURA_OCI_USERNAME", USER)
            .env("KURA_OCI_PASSWORD", PASSWORD);
        c
    };
    // Both pages are read, the throttled manifest after waiting as asked.
    let started = std::time::Instant::now();
    let out = run(stubbed().args(["--json", "ls"]));
    assert_eq!(throttled.load(Ordering::Relaxed), 1);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(
        json(&out)["entries"].as_array().map(Vec::len),
        Some(2),
        "{}",
        out.stderr
    );
    // The newest prefix match, downloaded from the other host without the credentials.
    let before = tree(&s.ws.join("d"));
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(stubbed().args([
        "--json",
        "restore",
        "--key",
        "v1-deps-x",
        "--restore-key",
        "v1-deps-",
        "--path",
        "d",
    ]));
    assert_eq!(json(&out)["matched_key"], "v1-deps-b", "{}", out.stderr);
    assert_eq!(tree(&s.ws.join("d")), before);
    assert!(
        blob_hits.load(Ordering::Relaxed) > 0,
        "the redirect was not followed"
    );
    assert_eq!(
        leaked.load(Ordering::Relaxed),
        0,
        "credentials went to the blob host"
    );
    // A registry that refuses deletes says how to enable them.
    let out = run(stubbed().args(["rm", "v1-deps-b"]));
    assert!(
        out.stderr.contains("HTTP 405") && out.stderr.contains("storage.delete.enabled"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_fork_pull_request_skips_its_save_and_other_refusals_say_what_to_grant() {
    let s = Sandbox::new();
    s.write("d/f", "x");
    // A registry that lets anyone read and nobody write, as GHCR does for a fork's token.
    let registry = stub::serve("127.0.0.1", |r| {
        if r.method == "POST" {
            return (
                "403 Forbidden".into(),
                vec![],
                br#"{"errors":[{"code":"DENIED","message":"permission_denied: write_package"}]}"#
                    .to_vec(),
            );
        }
        (
            "404 Not Found".into(),
            vec![],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#.to_vec(),
        )
    });
    let url = format!("oci://{registry}/owner/cache");
    let event = s.dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"repository":{"full_name":"owner/repo"},"pull_request":{"head":{"repo":{"full_name":"someone/repo","fork":true}}}}"#,
    )
    .unwrap();
    let out = run(kura(&s, &url)
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", &event)
        .args(["--json", "save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "skipped", "{}", out.stderr);
    assert!(
        out.stderr.contains("pull request from a fork"),
        "{}",
        out.stderr
    );
    // The same refusal outside a fork is an error that names what to grant.
    let out = run(kura(&s, &url).args(["--json", "save", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert!(
        out.stderr.contains("permission_denied: write_package")
            && out.stderr.contains("push rights"),
        "{}",
        out.stderr
    );
    // Restores from such a registry still work (here: a plain miss).
    let out = run(kura(&s, &url)
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", &event)
        .args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
}

/// GHCR answers 405 to the registry API's delete; kura finds the package version that is the
/// entry's manifest through GitHub's Packages API (a stand-in here, paged, the package a
/// user's) and deletes it there, with the token as a bearer.
#[test]
fn deletes_that_the_registry_refuses_go_through_the_packages_api() {
    use sha2::Digest;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let s = Sandbox::new();
    let Entries { tag_b, mb, .. } = entries(&s);
    let digest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(mb.as_bytes()))
    );
    let gone = Arc::new(AtomicBool::new(false));
    let g = gone.clone();
    let registry = stub::serve("127.0.0.1", move |r| {
        let p = r.path.as_str();
        let tags = if g.load(Ordering::SeqCst) {
            String::new()
        } else {
            format!("\"{tag_b}\"")
        };
        if p.starts_with("/v2/acme/cache/tags/list") {
            return (
                "200 OK".into(),
                vec![],
                format!(r#"{{"tags":[{tags}]}}"#).into_bytes(),
            );
        }
        if p == format!("/v2/acme/cache/manifests/{tag_b}")
            && !g.load(Ordering::SeqCst)
            && r.method == "GET"
        {
            return ("200 OK".into(), vec![], mb.clone().into_bytes());
        }
        if r.method == "DELETE" {
            return (
                "405 Method Not Allowed".into(),
                vec![],
                br#"{"errors":[{"code":"UNSUPPORTED"}]}"#.to_vec(),
            );
        }
        (
            "404 Not Found".into(),
            vec![],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#.to_vec(),
        )
    });
    // The Packages API: the organisation path knows no such package; the user's lists 100
    // other versions on page 1 and the entry's on page 2.
    let seen = Arc::new(Mutex::new(Vec::<(String, String, Option<String>)>::new()));
    let (log, g) = (seen.clone(), gone.clone());
    let versions = "/users/acme/packages/container/cache/versions";
    let api = move |refuse: bool| {
        let (log, g, digest) = (log.clone(), g.clone(), digest.clone());
        move |r: &stub::Http| {
            log.lock()
                .unwrap()
                .push((r.method.clone(), r.path.clone(), r.authorization.clone()));
            let p = r.path.as_str();
            let json = |b: String| ("200 OK".to_string(), vec![], b.into_bytes());
            if r.method == "GET" && p.starts_with(&format!("{versions}?")) && p.ends_with("&page=1")
            {
                let others: Vec<_> = (1..=100)
                    .map(|i| serde_json::json!({"id": i, "name": format!("sha256:{i:064x}")}))
                    .collect();
                return json(serde_json::Value::from(others).to_string());
            }
            if r.method == "GET" && p.starts_with(&format!("{versions}?")) && p.ends_with("&page=2")
            {
                return json(serde_json::json!([{"id": 4242, "name": digest}, {"id": 7, "name": "sha256:77"}]).to_string());
            }
            if r.method == "DELETE" && p == format!("{versions}/4242") {
                if refuse {
                    return (
                        "403 Forbidden".into(),
                        vec![],
                        br#"{"message":"Must have admin rights to Repository."}"#.to_vec(),
                    );
                }
                g.store(true, Ordering::SeqCst);
                return ("204 No Content".into(), vec![], vec![]);
            }
            (
                "404 Not Found".into(),
                vec![],
                br#"{"message":"Not Found"}"#.to_vec(),
            )
        }
    };
    let url = format!("oci://{registry}/acme/cache");
    let rm = |api_addr: &str| {
        run(kura(&s, &url)
            .arg("--strict")
            .env("KURA_OCI_USERNAME", USER)
            .env("KURA_OCI_PASSWORD", PASSWORD)
            .env("KURA_OCI_PACKAGES_API", format!("http://{api_addr}"))
            .args(["rm", "v1-deps-b"]))
    };
    // An API that refuses: the message says what the token needs, and never shows it.
    let out = rm(&stub::serve("127.0.0.1", api(true)));
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Must have admin rights") && out.stderr.contains("delete:packages"),
        "{}{:?}",
        out.stderr,
        seen.lock().unwrap()
    );
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);
    assert!(!gone.load(Ordering::SeqCst));
    // An API whose page of versions is far larger than 100 versions can be: not read whole,
    // nothing deleted.
    let huge = format!("[{}{{}}]", r#"{"id":1,"name":"x"},"#.repeat(300_000));
    let out = rm(&stub::serve("127.0.0.1", move |_| {
        ("200 OK".to_string(), vec![], huge.clone().into_bytes())
    }));
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("larger than"), "{}", out.stderr);
    assert!(!gone.load(Ordering::SeqCst));
    // An API that allows it: the version that is the entry's manifest goes, and its tag.
    seen.lock().unwrap().clear();
    let out = rm(&stub::serve("127.0.0.1", api(false)));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        gone.load(Ordering::SeqCst),
        "no version was deleted: {:?}",
        seen.lock().unwrap()
    );
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(
        |(m, p, _)| m == "GET" && p.starts_with("/orgs/acme/packages/container/cache/versions")
    ));
    assert!(
        seen.iter()
            .all(|(_, _, a)| a.as_deref() == Some(&*format!("Bearer {PASSWORD}"))),
        "{seen:?}"
    );
    let out = run(kura(&s, &url).args(["--json", "ls"]));
    assert_eq!(
        json(&out)["entries"].as_array().map(Vec::len),
        Some(0),
        "{}",
        out.stderr
    );
}

/// The manifest kura puts is a valid OCI image manifest by the image-spec's own JSON schema,
/// and its descriptors tell the truth: the layer is the blob the registry serves (digest and
/// size), the config is the empty descriptor.
#[test]
fn the_manifest_is_a_valid_oci_image_manifest_that_tells_the_truth() {
    for format in ["archive", "chunked"] {
        a_valid_manifest_that_tells_the_truth(format);
    }
}

fn a_valid_manifest_that_tells_the_truth(format: &str) {
    use sha2::Digest;
    let s = Sandbox::new();
    s.write_bytes("d/blob", &support::noise(100_000, 3));
    s.write("d/deep/f", "x");
    let repo = format!("kura/schema-{format}-{}", std::process::id());
    let url = format!("oci://{}/{repo}", open().addr);
    let out = run(kura(&s, &url).args([
        "--json",
        "save",
        "--format",
        format,
        "--key",
        "v1 Schema/ü",
        "--path",
        "d",
    ]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    let reg = open();
    let get = |path: &str| {
        let (status, body) = reg.http(
            "GET",
            &format!("/v2/{repo}/{path}"),
            "Accept: application/vnd.oci.image.manifest.v1+json\r\n",
            b"",
        );
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        body
    };
    let tags: serde_json::Value = serde_json::from_slice(&get("tags/list")).unwrap();
    let tag = tags["tags"][0].as_str().unwrap().to_string();
    let bytes = get(&format!("manifests/{tag}"));
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    // The schema, and a copy without its layer that the same check must refuse.
    let good = s.dir.path().join("manifest.json");
    std::fs::write(&good, &bytes).unwrap();
    let mut broken = manifest.clone();
    broken["layers"] = serde_json::json!([]);
    let bad = s.dir.path().join("broken.json");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let check = |file: &std::path::Path| {
        std::process::Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/oci-schema.cjs"
            ))
            .arg(support::npm_package("ajv-draft-04@1.0.0 ajv@8.17.1"))
            .arg(support::registry::image_spec_schemas())
            .arg(file)
            .output()
            .unwrap()
    };
    let ok = check(&good);
    assert!(
        ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains(": valid"),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = check(&bad);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    // What the schema cannot know.
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["artifactType"], "application/vnd.kura.entry.v1");
    let empty = format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"{}")));
    assert_eq!(manifest["config"]["digest"], empty.as_str());
    assert_eq!(manifest["config"]["size"], 2);
    let layer = &manifest["layers"][0];
    let blob = get(&format!("blobs/{}", layer["digest"].as_str().unwrap()));
    assert_eq!(
        layer["digest"].as_str().unwrap(),
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob)))
    );
    assert_eq!(layer["size"].as_u64(), Some(blob.len() as u64));
    let meta: serde_json::Value =
        serde_json::from_str(manifest["annotations"]["dev.kura.meta"].as_str().unwrap()).unwrap();
    assert_eq!(meta["key"], "v1 Schema/ü");
    assert!(chrono::DateTime::parse_from_rfc3339(
        manifest["annotations"]["org.opencontainers.image.created"]
            .as_str()
            .unwrap()
    )
    .is_ok());
    if format == "chunked" {
        // The chunk manifest, then one layer per pack: each the blob the registry serves,
        // named by its BLAKE3 as the entry's packs say.
        assert_eq!(layer["mediaType"], "application/vnd.kura.chunks.v1+zstd");
        let packs = &manifest["layers"].as_array().unwrap()[1..];
        assert!(!packs.is_empty());
        let mut named = Vec::new();
        for l in packs {
            assert_eq!(l["mediaType"], "application/vnd.kura.pack.v1");
            let blob = get(&format!("blobs/{}", l["digest"].as_str().unwrap()));
            assert_eq!(
                l["digest"].as_str().unwrap(),
                format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob)))
            );
            assert_eq!(l["size"].as_u64(), Some(blob.len() as u64));
            let name = blake3::hash(&blob).to_hex().to_string();
            assert_eq!(l["annotations"]["dev.kura.pack"], name.as_str());
            named.push(serde_json::Value::from(name));
        }
        assert_eq!(meta["packs"], serde_json::Value::from(named));
        // And it restores, from the registry alone.
        let want = tree(&s.ws.join("d"));
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let out =
            run(kura(&s, &url).args(["--json", "restore", "--key", "v1 Schema/ü", "--path", "d"]));
        assert_eq!(json(&out)["outcome"], "hit", "{}", out.stderr);
        assert_eq!(tree(&s.ws.join("d")), want);
        return;
    }
    assert_eq!(
        layer["mediaType"],
        "application/vnd.kura.archive.v1.tar+zstd"
    );
    // The blob is the archive: zstd that holds the tree.
    let unpacked = s.dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    std::fs::write(s.dir.path().join("blob.tzst"), &blob).unwrap();
    let st = std::process::Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(s.dir.path().join("blob.tzst"))
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(tree(&unpacked.join("d")), tree(&s.ws.join("d")));
}

/// Chunked entries in a registry, one process per step as in CI: a warm save after a restore
/// uploads only the changed file's chunks, found through the manifests the registry holds.
#[test]
fn a_warm_chunked_save_uploads_only_what_changed() {
    let s = Sandbox::new();
    for i in 0..24 {
        s.write_bytes(&format!("d/f{i:02}"), &support::noise(64 << 10, 100 + i));
    }
    let url = format!("oci://{}/kura/warm-{}", open().addr, std::process::id());
    let save = |key: &str| {
        let out = run(kura(&s, &url).args([
            "--json", "save", "--format", "chunked", "--key", key, "--path", "d",
        ]));
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        json(&out)["chunks"].clone()
    };
    let cold = save("v1-a");
    assert_eq!(cold["reused"], 0);
    let restored = run(kura(&s, &url).args(["--json", "restore", "--key", "v1-a", "--path", "d"]));
    assert_eq!(json(&restored)["outcome"], "hit", "{}", restored.stderr);
    s.write_bytes("d/f07", &support::noise(64 << 10, 999));
    let warm = save("v1-b");
    let (cold_up, warm_up) = (
        cold["uploaded"].as_u64().unwrap(),
        warm["uploaded"].as_u64().unwrap(),
    );
    assert!(
        warm_up * 10 < cold_up,
        "the warm save uploaded {warm_up} of {cold_up}"
    );
    // Both entries restore whole: the second reads packs the first put.
    for (key, changed) in [("v1-b", true), ("v1-a", false)] {
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let out = run(kura(&s, &url).args(["--json", "restore", "--key", key, "--path", "d"]));
        assert_eq!(json(&out)["outcome"], "hit", "{}", out.stderr);
        let f07 = std::fs::read(s.ws.join("d/f07")).unwrap();
        assert_eq!(f07 == support::noise(64 << 10, 999), changed, "{key}");
        assert_eq!(
            std::fs::read(s.ws.join("d/f03")).unwrap(),
            support::noise(64 << 10, 103)
        );
    }
}
