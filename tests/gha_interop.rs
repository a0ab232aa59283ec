//! kura and the official `@actions/cache` client, on the same stand-in service and Azurite:
//! each restores what the other saved, byte for byte (trees inside and outside the workspace,
//! single files, globs, archives over 128 MiB).

use crate::support::gha::{after, deps, kura, main_token, populate, service, wipe};
use crate::support::{assert_clean_hit, json, Sandbox};

#[test]
fn official_client_saves_and_kura_restores_byte_for_byte() {
    let s = Sandbox::new();
    let tok = main_token();
    let o = populate(&s, 1, 0);
    let saved = service().official(&s, &tok, &["save", "interop-a", "deps", &o]);
    assert!(saved["result"].as_i64().unwrap() > 0, "{saved}");
    let before = wipe(&s);
    let out = deps(&s, &tok, "restore", "interop-a", &o);
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(after(&s), before);
}

#[test]
fn kura_saves_and_the_official_client_restores_byte_for_byte() {
    let s = Sandbox::new();
    let tok = main_token();
    let o = populate(&s, 2, 0);
    let out = deps(&s, &tok, "save", "interop-small-k", &o);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    let before = wipe(&s);
    let got = service().official(&s, &tok, &["restore", "interop-small-k", "", "deps", &o]);
    assert_eq!(got["result"], "interop-small-k");
    assert_eq!(after(&s), before);
    // Only one Put Blob went up for this small archive.
    let blobs: Vec<_> = service()
        .log("interop-small-k")
        .into_iter()
        .filter(|l| l["kind"] == "blob" && l["method"] == "PUT")
        .collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    assert_eq!(blobs[0]["comp"], "");
}

#[test]
fn a_single_file_a_nested_file_and_a_glob_interoperate_both_ways() {
    // Each pattern with the files it names (the glob leaves `src` out).
    let shapes: [(&str, &[&str]); 3] = [
        ("single.txt", &["single.txt"]),
        ("a/b/nested.txt", &["a/b/nested.txt"]),
        ("pkgs/*/dist", &["pkgs/x/dist/x.js", "pkgs/y/dist/y.js"]),
    ];
    for (i, (pattern, files)) in shapes.iter().enumerate() {
        let s = Sandbox::new();
        let tok = main_token();
        s.write("pkgs/y/src/not-me.js", "src");
        let fill = |what: &str| files.iter().for_each(|f| drop(s.write(f, what)));
        let wipe = || {
            files
                .iter()
                .for_each(|f| std::fs::remove_file(s.ws.join(f)).unwrap())
        };
        let check = |what: &str| {
            files
                .iter()
                .for_each(|f| assert_eq!(s.read(f), what, "{f}"))
        };

        fill("only me");
        let key = format!("shape-official-{i}");
        let saved = service().official(&s, &tok, &["save", &key, pattern]);
        assert!(saved["result"].as_i64().unwrap() > 0, "{saved}");
        wipe();
        assert_clean_hit(&kura(
            &s,
            &tok,
            &["restore", "--key", &key, "--path", pattern],
        ));
        check("only me");

        let key = format!("shape-kura-{i}");
        fill("from kura");
        let out = kura(&s, &tok, &["save", "--key", &key, "--path", pattern]);
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        wipe();
        let got = service().official(&s, &tok, &["restore", &key, "", pattern]);
        assert_eq!(got["result"], key.as_str());
        check("from kura");
        assert_eq!(s.read("pkgs/y/src/not-me.js"), "src");
    }
}

#[test]
fn archives_over_128_mib_take_the_block_path_both_ways() {
    let s = Sandbox::new();
    let tok = main_token();
    let o = populate(&s, 3, 140 << 20);
    let out = deps(&s, &tok, "save", "interop-big-kura", &o);
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    let comps: Vec<String> = service()
        .log("interop-big-kura")
        .iter()
        .filter(|l| l["kind"] == "blob" && l["method"] == "PUT")
        .map(|l| l["comp"].as_str().unwrap().to_string())
        .collect();
    assert!(
        comps.iter().filter(|c| *c == "block").count() > 16,
        "{comps:?}"
    );
    assert_eq!(comps.last().map(String::as_str), Some("blocklist"));
    // The official client saves the same tree in 64 MiB blocks; each restores the other's.
    let saved = service().official(&s, &tok, &["save", "interop-big-official", "deps", &o]);
    assert!(saved["result"].as_i64().unwrap() > 0, "{saved}");
    let before = wipe(&s);
    let got = service().official(&s, &tok, &["restore", "interop-big-kura", "", "deps", &o]);
    assert_eq!(got["result"], "interop-big-kura");
    assert_eq!(after(&s), before);
    wipe(&s);
    let out = deps(&s, &tok, "restore", "interop-big-official", &o);
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(after(&s), before);
}
