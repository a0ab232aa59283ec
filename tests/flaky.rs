//! Each store through a flaky network: a proxy between kura and the real server loses the
//! reply to a request the server carried out, cuts a request's body halfway, or cuts a reply
//! halfway. A save must still save what is on disk (or fail and say so); a restore must give
//! back exactly the tree, never a torn one. The proxy reports that each fault fired.

use crate::support;
use crate::support::faults::{proxy, rule, Fault, Rule};
use crate::support::{json, noise, run, tree, Sandbox};

/// Save `d` (40 MiB of noise and a small file: three upload pieces of 16 MiB) to `store`
/// through faults `on_save`, restore it through faults `on_restore`, and compare.
fn round_trip(
    p: &support::faults::Proxy,
    store: &str,
    env: &[(&str, &str)],
    format: &str,
    on_save: Vec<Rule>,
    on_restore: Vec<Rule>,
) {
    let s = Sandbox::new();
    s.write_bytes("d/big", &noise(40 << 20, 7));
    s.write("d/small/x", "x");
    let before = tree(&s.ws.join("d"));
    let want = (on_save.len(), on_restore.len());
    p.set(on_save);
    let out = run(s
        .kura()
        .env("KURA_STORE", store)
        .envs(env.iter().copied())
        .args([
            "--json", "save", "--key", "k", "--path", "d", "--format", format,
        ]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert_eq!(p.fired().len(), want.0, "faults fired: {:?}", p.fired());
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    p.set(on_restore);
    let out = run(s
        .kura()
        .env("KURA_STORE", store)
        .envs(env.iter().copied())
        .args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(p.fired().len(), want.1, "faults fired: {:?}", p.fired());
    assert!(tree(&s.ws.join("d")) == before, "the restored tree differs");
}

/// A blob upload's PATCH is not idempotent: after a lost reply or a cut body kura starts the
/// blob again in a new session (distribution cancels a session a PATCH was sent twice to);
/// after a lost reply to the closing PUT it finds the blob there.
#[test]
fn oci_uploads_resume_after_lost_replies_and_cut_bodies() {
    let reg = support::registry::open();
    for format in ["archive", "chunked"] {
        let p = proxy(&reg.addr);
        let store = format!(
            "oci://{}/kura/flaky-{format}-{}",
            p.addr,
            std::process::id()
        );
        round_trip(
            &p,
            &store,
            &[],
            format,
            vec![
                rule("PATCH", "/blobs/uploads/", 1, Fault::LoseReply),
                rule("PATCH", "/blobs/uploads/", 3, Fault::LoseReply),
                rule("PATCH", "/blobs/uploads/", 5, Fault::CutBody),
                rule("PUT", "/blobs/uploads/", 1, Fault::LoseReply),
            ],
            vec![rule("GET", "/blobs/sha256:", 1, Fault::CutReply)],
        );
        if format == "archive" {
            // A session per failed PATCH (4 for the archive), one for the config blob, and
            // none after the lost reply to the closing PUT: the blob was found there.
            let posts = p.log().iter().filter(|l| l.starts_with("POST ")).count();
            assert_eq!(posts, 5, "{:#?}", p.log());
        }
    }
}

/// A registry that goes silent: the PATCH is given up on after its deadline (here 2 s for a
/// small piece) and the blob starts again; silent five times, the save fails with a warning
/// that names the setting. A refusal (403) is not tried again at all.
#[test]
fn oci_a_silent_registry_times_out_and_a_refusal_is_not_tried_again() {
    let reg = support::registry::open();
    let p = proxy(&reg.addr);
    let s = Sandbox::new();
    s.write_bytes("d/x", &noise(100 << 10, 3));
    let save = |key: &str| {
        let started = std::time::Instant::now();
        let out = run(s
            .kura()
            .env(
                "KURA_STORE",
                format!("oci://{}/kura/silent-{}", p.addr, std::process::id()),
            )
            .env("KURA_HTTP_TIMEOUT", "2")
            .args([
                "--json", "save", "--key", key, "--path", "d", "--format", "archive",
            ]));
        (out, started.elapsed())
    };
    p.set(vec![rule("PATCH", "/blobs/uploads/", 1, Fault::Hang)]);
    let (out, took) = save("once");
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert_eq!(p.fired().len(), 1);
    assert!(took.as_secs() < 30, "{took:?}");
    // Other bytes each time: a blob the registry has is not uploaded again.
    s.write_bytes("d/x", &noise(100 << 10, 4));
    p.set(
        (1..=5)
            .map(|n| rule("PATCH", "/blobs/uploads/", n, Fault::Hang))
            .collect(),
    );
    let (out, took) = save("always");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert_eq!(p.fired().len(), 5);
    assert!(out.stderr.contains("KURA_HTTP_TIMEOUT"), "{}", out.stderr);
    assert!(out.stderr.contains("5 sessions"), "{}", out.stderr);
    assert!(took.as_secs() < 60, "{took:?}");
    s.write_bytes("d/x", &noise(100 << 10, 5));
    p.set(vec![
        rule("POST", "/blobs/uploads/", 1, Fault::Status(403)),
        rule("POST", "/blobs/uploads/", 2, Fault::Status(403)),
    ]);
    let (out, _) = save("refused");
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert_eq!(p.fired().len(), 1, "a refusal was tried again");
    assert!(out.stderr.contains("push rights"), "{}", out.stderr);
}

/// S3: a part or a pack sent again is harmless; a lost reply to the multipart completion or to
/// the marker that decides which of several saves won must not turn a save into a failure.
#[test]
fn s3_saves_survive_lost_replies_and_cut_bodies() {
    use support::garage::{garage, BUCKET, KEY_ID, SECRET};
    let upstream = garage()
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let p = proxy(upstream);
    let env = [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    let store = |format: &str| {
        format!(
            "s3://{BUCKET}/flaky-{format}-{}?endpoint=http://{}&region=garage",
            std::process::id(),
            p.addr
        )
    };
    round_trip(
        &p,
        &store("archive"),
        &env,
        "archive",
        vec![
            rule("PUT", "partNumber=2", 1, Fault::LoseReply),
            rule("PUT", "partNumber=3", 1, Fault::CutBody),
            rule("POST", "?uploadId=", 1, Fault::LoseReply),
            rule("PUT", ".json", 1, Fault::LoseReply),
            rule("PUT", ".won", 1, Fault::LoseReply),
        ],
        vec![rule("GET", ".tzst", 2, Fault::CutReply)],
    );
    round_trip(
        &p,
        &store("chunked"),
        &env,
        "chunked",
        vec![
            rule("PUT", "/.packs/", 1, Fault::LoseReply),
            rule("PUT", "/.packs/", 2, Fault::CutBody),
            rule("PUT", ".tzst", 1, Fault::LoseReply),
            rule("PUT", ".won", 1, Fault::LoseReply),
        ],
        vec![rule("GET", "/.packs/", 3, Fault::CutReply)],
    );
}

/// The HTTP store (nginx, WebDAV): an archive streams up in one PUT, so a reply lost after
/// nginx stored it must be recognised as done; packs and metadata are sent again.
#[test]
fn dav_saves_survive_lost_replies_and_cut_bodies() {
    let n = support::nginx::nginx();
    let p = proxy(n.url.trim_start_matches("http://").trim_end_matches('/'));
    let store = |format: &str| format!("http://{}/flaky-{format}-{}/", p.addr, std::process::id());
    round_trip(
        &p,
        &store("archive"),
        &[],
        "archive",
        vec![
            rule("PUT", ".tzst", 1, Fault::LoseReply),
            rule("PUT", ".json", 1, Fault::LoseReply),
            rule("PUT", ".won", 1, Fault::LoseReply),
        ],
        vec![rule("GET", ".tzst", 2, Fault::CutReply)],
    );
    round_trip(
        &p,
        &store("chunked"),
        &[],
        "chunked",
        vec![
            rule("PUT", "/.packs/", 1, Fault::LoseReply),
            rule("PUT", "/.packs/", 2, Fault::CutBody),
            rule("PUT", ".tzst", 1, Fault::CutBody),
        ],
        vec![rule("GET", "/.packs/", 3, Fault::CutReply)],
    );
}

/// An archive larger than one buffer streams up as it is packed, so a PUT cut halfway cannot
/// be sent again: the save fails with a warning, the job goes on, and nothing of it is left
/// on the server or visible to a restore.
#[test]
fn dav_a_streamed_upload_cut_halfway_leaves_nothing() {
    let n = support::nginx::nginx();
    let p = proxy(n.url.trim_start_matches("http://").trim_end_matches('/'));
    let prefix = format!("flaky-cut-{}", std::process::id());
    let store = format!("http://{}/{prefix}/", p.addr);
    let s = Sandbox::new();
    s.write_bytes("d/big", &noise(40 << 20, 9));
    p.set(vec![rule("PUT", ".tzst", 1, Fault::CutBody)]);
    let out = run(s.kura().env("KURA_STORE", &store).args([
        "--json", "save", "--key", "k", "--path", "d", "--format", "archive",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert_eq!(p.fired().len(), 1);
    let left = files(&n.root.join(&prefix));
    assert!(left.is_empty(), "left on the server: {left:?}");
    let out = run(s
        .kura()
        .env("KURA_STORE", &store)
        .args(["--json", "restore", "--key", "k", "--path", "d2"]));
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
    assert!(!s.ws.join("d2").exists());
    // Where the server keeps this store's files, once a save goes through.
    p.set(vec![]);
    let out = run(s.kura().env("KURA_STORE", &store).args([
        "--json", "save", "--key", "k", "--path", "d", "--format", "archive",
    ]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    assert!(!files(&n.root.join(&prefix)).is_empty());
}

/// The files under `dir`, if any.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(files(&p));
        } else {
            found.push(p);
        }
    }
    found
}
