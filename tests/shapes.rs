//! Every cache shape comes back as it was saved, through the CLI on the local store: a single
//! file, a nested file, a Python venv, a pnpm symlink farm, a root that is a symlink, names
//! that are not UTF-8. And a restore that could not write everything says so.

use crate::support;
use crate::support::{assert_clean_hit, json, restore, run, save, Sandbox};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Everything below `dir` (links not followed): type, content or target, mode.
fn full_tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let what = if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            "dir".to_string()
        } else if m.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else {
            format!("{:?}", std::fs::read(&p).unwrap())
        };
        let rel = p.strip_prefix(dir).unwrap().to_path_buf();
        out.insert(rel, format!("{what} {:o}", m.mode()));
    }
    out
}

#[test]
fn a_single_file_and_a_nested_file_round_trip() {
    for path in ["single.txt", "a/b/f.txt"] {
        let s = Sandbox::new();
        s.write(path, "only me");
        let out = save(&s, "one", &[path]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(json(&out)["files"], 1);
        std::fs::remove_dir_all(&s.ws).unwrap();
        std::fs::create_dir(&s.ws).unwrap();
        let out = restore(&s, &["--key", "one", "--path", path]);
        assert_clean_hit(&out);
        assert_eq!(s.read(path), "only me", "{}", out.stderr);
        assert_eq!(json(&out)["files"], 1);
        // Over an existing copy (a file, then a link to an outside file) it is replaced.
        std::fs::write(s.ws.join(path), "stale").unwrap();
        assert_clean_hit(&restore(&s, &["--key", "one", "--path", path]));
        assert_eq!(s.read(path), "only me");
        let outside = s.dir.path().join("outside.txt");
        std::fs::write(&outside, "outside").unwrap();
        std::fs::remove_file(s.ws.join(path)).unwrap();
        std::os::unix::fs::symlink(&outside, s.ws.join(path)).unwrap();
        assert_clean_hit(&restore(&s, &["--key", "one", "--path", path]));
        assert_eq!(s.read(path), "only me");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "outside");
    }
}

#[test]
fn a_glob_round_trips_and_leaves_what_it_does_not_match() {
    let s = Sandbox::new();
    s.write("pkgs/x/dist/x.js", "x");
    s.write("pkgs/y/dist/y.js", "y");
    s.write("pkgs/y/src/not-me.js", "src");
    assert_eq!(save(&s, "glob", &["pkgs/*/dist"]).code, 0);
    let before = full_tree(&s.ws.join("pkgs"));
    std::fs::remove_dir_all(s.ws.join("pkgs/x")).unwrap();
    std::fs::remove_dir_all(s.ws.join("pkgs/y/dist")).unwrap();
    assert_clean_hit(&restore(&s, &["--key", "glob", "--path", "pkgs/*/dist"]));
    assert_eq!(full_tree(&s.ws.join("pkgs")), before);
}

#[test]
fn a_python_venv_comes_back_with_its_interpreter() {
    let s = Sandbox::new();
    let made = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip", ".venv"])
        .current_dir(&s.ws)
        .status()
        .unwrap();
    assert!(made.success(), "python3 -m venv failed");
    let before = full_tree(&s.ws.join(".venv"));
    assert!(
        before.values().any(|v| v.starts_with("-> /")),
        "the venv has no absolute link: {before:?}"
    );
    assert_eq!(save(&s, "venv", &[".venv"]).code, 0);
    std::fs::remove_dir_all(s.ws.join(".venv")).unwrap();
    assert_clean_hit(&restore(&s, &["--key", "venv", "--path", ".venv"]));
    assert_eq!(full_tree(&s.ws.join(".venv")), before);
    let py = std::process::Command::new(s.ws.join(".venv/bin/python3"))
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .unwrap();
    assert!(py.status.success());
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        s.ws.join(".venv").to_str().unwrap()
    );
}

#[test]
fn a_pnpm_symlink_farm_round_trips() {
    let s = Sandbox::new();
    s.write(".pnpm-store/x", "store");
    s.write(
        "node_modules/.pnpm/lodash@4/node_modules/lodash/index.js",
        "lodash",
    );
    s.write(
        "node_modules/.pnpm/a@1/node_modules/a/bin.js",
        "#!/usr/bin/env node",
    );
    let nm = s.ws.join("node_modules");
    std::os::unix::fs::symlink(".pnpm/lodash@4/node_modules/lodash", nm.join("lodash")).unwrap();
    std::os::unix::fs::symlink(
        "../../lodash@4/node_modules/lodash",
        nm.join(".pnpm/a@1/node_modules/lodash"),
    )
    .unwrap();
    std::fs::create_dir(nm.join(".bin")).unwrap();
    std::os::unix::fs::symlink("../.pnpm/a@1/node_modules/a/bin.js", nm.join(".bin/a")).unwrap();
    std::os::unix::fs::symlink("../.pnpm-store", nm.join(".store")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/env", nm.join(".bin/env")).unwrap();
    let before = full_tree(&nm);
    assert_eq!(save(&s, "pnpm", &["node_modules"]).code, 0);
    std::fs::remove_dir_all(&nm).unwrap();
    assert_clean_hit(&restore(&s, &["--key", "pnpm", "--path", "node_modules"]));
    assert_eq!(full_tree(&nm), before);
    assert_eq!(s.read("node_modules/lodash/index.js"), "lodash");
}

#[test]
fn a_root_that_is_a_symlink_and_a_root_reached_through_one() {
    let s = Sandbox::new();
    // The saved path itself is a link: it is saved and restored as the link.
    s.write("real/a.txt", "a");
    std::os::unix::fs::symlink("real", s.ws.join("nm")).unwrap();
    assert_eq!(save(&s, "link-root", &["nm"]).code, 0);
    std::fs::remove_file(s.ws.join("nm")).unwrap();
    assert_clean_hit(&restore(&s, &["--key", "link-root", "--path", "nm"]));
    assert_eq!(
        std::fs::read_link(s.ws.join("nm")).unwrap(),
        Path::new("real")
    );
    assert_eq!(s.read("nm/a.txt"), "a");

    // A path below a link the user has (a cache directory on another disk) is written there.
    s.write("disk/cache/x.txt", "x");
    std::os::unix::fs::symlink("disk", s.ws.join("mnt")).unwrap();
    assert_eq!(save(&s, "through", &["mnt/cache"]).code, 0);
    std::fs::remove_dir_all(s.ws.join("disk/cache")).unwrap();
    assert_clean_hit(&restore(&s, &["--key", "through", "--path", "mnt/cache"]));
    assert_eq!(s.read("disk/cache/x.txt"), "x");
    assert!(std::fs::symlink_metadata(s.ws.join("mnt"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn names_that_are_not_utf8_round_trip() {
    let s = Sandbox::new();
    let dir = s.ws.join("odd");
    std::fs::create_dir(&dir).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(dir.join(name), "latin-1").unwrap();
    std::os::unix::fs::symlink(name, dir.join(std::ffi::OsStr::from_bytes(b"l\xff"))).unwrap();
    let before = full_tree(&dir);
    let out = run(s.kura().args([
        "save", "--format", "archive", "--key", "odd", "--path", "odd",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // GNU tar reads the same names from kura's archive (pax records, hdrcharset=BINARY).
    let gnu = s.dir.path().join("gnu");
    std::fs::create_dir(&gnu).unwrap();
    let archive = support::walk_find(&s.store, "archive");
    let extracted = std::process::Command::new("sh")
        .arg("-c")
        .arg("zstd -dc \"$0\" | tar -xf - -C \"$1\"")
        .arg(&archive)
        .arg(&gnu)
        .status()
        .unwrap();
    assert!(extracted.success());
    assert_eq!(full_tree(&gnu.join("odd")), before);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_clean_hit(&restore(&s, &["--key", "odd", "--path", "odd"]));
    assert_eq!(full_tree(&dir), before);
    // And as a chunked entry.
    let out = run(s.kura().args([
        "save", "--format", "chunked", "--key", "odd-c", "--path", "odd",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_clean_hit(&restore(&s, &["--key", "odd-c", "--path", "odd"]));
    assert_eq!(full_tree(&dir), before);
}

#[test]
fn a_restore_that_could_not_write_everything_is_not_a_hit() {
    let s = Sandbox::new();
    s.write("nm/x", "file");
    s.write("nm/y", "file");
    assert_eq!(save(&s, "part", &["nm"]).code, 0);
    std::fs::remove_file(s.ws.join("nm/x")).unwrap();
    s.write(
        "nm/x/mine.txt",
        "a directory of the user's where the cache has a file",
    );
    let gh_out = s.dir.path().join("gh-output");
    std::fs::write(&gh_out, "").unwrap();
    let mut c = s.kura();
    c.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &gh_out)
        .args(["--json", "restore", "--key", "part", "--path", "nm"]);
    let out = run(&mut c);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = json(&out);
    assert_eq!(j["outcome"], "partial", "{}", out.stderr);
    assert_eq!(j["cache_hit"], false);
    assert!(
        j["refused"][0].as_str().unwrap().starts_with("nm/x: "),
        "{j}"
    );
    assert!(
        out.stderr
            .contains("::warning::the cache from key part was restored only in part"),
        "{}",
        out.stderr
    );
    let outputs = support::runner_file(&gh_out);
    assert!(outputs.contains("cache-hit=false\n"), "{outputs}");
    assert_eq!(
        s.read("nm/x/mine.txt"),
        "a directory of the user's where the cache has a file"
    );
    assert_eq!(s.read("nm/y"), "file");
}

#[test]
fn paths_from_the_entry_are_accepted_only_under_home_and_the_workspace() {
    let s = Sandbox::new();
    let elsewhere = s.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("data"), "d").unwrap();
    s.write("inws/f", "f");
    let out = save(&s, "meta-paths", &[elsewhere.to_str().unwrap(), "inws"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::remove_dir_all(&elsewhere).unwrap();
    std::fs::remove_dir_all(s.ws.join("inws")).unwrap();
    // CircleCI's restore_cache names no paths: the entry's own are used, within limits.
    let out = restore(&s, &["--keys", "meta-paths"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = json(&out);
    assert_eq!(j["outcome"], "partial", "{}", out.stderr);
    assert!(out.stderr.contains("name it with --path"), "{}", out.stderr);
    assert!(!elsewhere.exists(), "wrote outside home and workspace");
    assert_eq!(s.read("inws/f"), "f");
    // Named with --path, it is restored.
    let p = elsewhere.to_str().unwrap();
    let out = restore(&s, &["--key", "meta-paths", "--path", p, "--path", "inws"]);
    assert_clean_hit(&out);
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("data")).unwrap(),
        "d"
    );
}

#[test]
fn odd_s3_prefixes_are_bad_input_not_a_panic() {
    let s = Sandbox::new();
    s.write("f", "f");
    for url in ["s3://bucket/a//b", "s3://bucket/a/./b", "s3://bucket/../b"] {
        let mut c = s.kura();
        c.env("KURA_STORE", url)
            .args(["save", "--key", "k", "--path", "f", "--overwrite"]);
        let out = run(&mut c);
        assert_eq!(out.code, 2, "{url}: {}", out.stderr);
        assert!(out.stderr.contains("segment"), "{url}: {}", out.stderr);
    }
}
