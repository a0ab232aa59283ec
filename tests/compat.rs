//! Compatibility: archives as GNU tar and the official GitHub client write and read them, and
//! the scoping rules of GitHub and GitLab.

use crate::support;
use crate::support::{json, restore, run, walk_find, Sandbox};

fn sh(cmd: &str, dir: &std::path::Path) {
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "{cmd}");
}

#[test]
fn gnu_tar_extracts_kura_archives_as_actions_cache_does() {
    let s = Sandbox::new();
    s.write("node_modules/a/index.js", "a");
    std::os::unix::fs::symlink("index.js", s.ws.join("node_modules/a/main.js")).unwrap();
    let outside = s.dir.path().join("outside/dir");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("o.txt"), "outside").unwrap();
    let out = run(s.kura().args([
        "save",
        "--format",
        "archive",
        "--key",
        "k",
        "--path",
        "node_modules",
        "--path",
        outside.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let archive = walk_find(&s.store, "archive");
    // The official client's extraction: tar -xf <archive> -P -C $GITHUB_WORKSPACE --use-compress-program unzstd
    let ws2 = s.dir.path().join("other/ws");
    std::fs::create_dir_all(&ws2).unwrap();
    sh(
        &format!(
            "tar -xf {} -P -C {} --use-compress-program unzstd",
            archive.display(),
            ws2.display()
        ),
        &s.ws,
    );
    assert_eq!(
        std::fs::read_to_string(ws2.join("node_modules/a/index.js")).unwrap(),
        "a"
    );
    assert_eq!(
        std::fs::read_link(ws2.join("node_modules/a/main.js"))
            .unwrap()
            .to_str(),
        Some("index.js")
    );
    // `../outside/dir` relative to the new workspace: the same depth, as with actions/cache.
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("other/outside/dir/o.txt")).unwrap(),
        "outside"
    );
}

#[test]
fn archives_made_by_the_official_clients_tar_command_restore() {
    let s = Sandbox::new();
    s.write("node_modules/x/y.js", "from gnu tar");
    s.write("node_modules/x/cache.tzst", "a file named like the archive");
    std::os::unix::fs::symlink("y.js", s.ws.join("node_modules/x/z.js")).unwrap();
    let tmp = s.dir.path().join("runner-temp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("manifest.txt"), "node_modules").unwrap();
    // The official client's creation command line, verbatim.
    sh(
        &format!(
            "tar --posix -cf cache.tzst --exclude cache.tzst -P -C {} --files-from manifest.txt --use-compress-program zstdmt",
            s.ws.display()
        ),
        &tmp,
    );
    // Put it in the store as an entry, the way a store would hold it.
    let bytes = std::fs::read(tmp.join("cache.tzst")).unwrap();
    let version = "7fcda33c1e1d849a13bcc06f49b9ab64efc01ca9dabe4d7a8d0d387feef4fc88"; // node_modules|zstd-without-long|1.0
    let dir = s.store.join("_").join(version).join("gh-key");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("archive"), &bytes).unwrap();
    let sha = {
        let o = std::process::Command::new("sha256sum")
            .arg(dir.join("archive"))
            .output()
            .unwrap();
        String::from_utf8(o.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let meta = serde_json::json!({"key": "gh-key", "version": version, "scope": "", "size": bytes.len(),
        "sha256": sha, "created_ms": 1, "kura_version": "gnu-tar", "files": 1, "bytes": 12,
        "paths": ["node_modules"]});
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    std::fs::remove_dir_all(s.ws.join("node_modules")).unwrap();
    let out = restore(&s, &["--key", "gh-key", "--path", "node_modules"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(s.read("node_modules/x/y.js"), "from gnu tar");
    assert_eq!(
        std::fs::read_link(s.ws.join("node_modules/x/z.js"))
            .unwrap()
            .to_str(),
        Some("y.js")
    );
    // GNU tar's unanchored --exclude dropped the user's file named cache.tzst; kura keeps such files.
    assert!(!s.exists("node_modules/x/cache.tzst"));
}

#[test]
fn github_scopes_keep_branches_from_poisoning_the_default_branch() {
    let s = Sandbox::new();
    let event = s.dir.path().join("event.json");
    std::fs::write(&event, r#"{"repository":{"default_branch":"main"}}"#).unwrap();
    let gh = |git_ref: &str, base: Option<&str>| {
        let mut c = s.kura();
        c.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REF", git_ref)
            .env("GITHUB_EVENT_PATH", &event)
            .env("GITHUB_WORKSPACE", &s.ws);
        if let Some(b) = base {
            c.env("GITHUB_BASE_REF", b);
        }
        c
    };
    s.write("d/f", "from feature");
    assert_eq!(
        run(gh("refs/heads/feature", None).args(["save", "--key", "k", "--path", "d"])).code,
        0
    );
    // main cannot see what a branch saved.
    let out =
        run(gh("refs/heads/main", None).args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
    s.write("d/f", "from main");
    assert_eq!(
        run(gh("refs/heads/main", None).args(["save", "--key", "k", "--path", "d"])).code,
        0
    );
    // A branch reads its own entry first, then the default branch's.
    let out = run(
        gh("refs/heads/feature", None).args(["--json", "restore", "--key", "k", "--path", "d"])
    );
    assert_eq!(json(&out)["scope"], "refs/heads/feature");
    assert_eq!(s.read("d/f"), "from feature");
    let out =
        run(gh("refs/heads/other", None).args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["scope"], "refs/heads/main");
    assert_eq!(s.read("d/f"), "from main");
    // A pull request reads its base branch before the default branch.
    s.write("d/f", "from release");
    assert_eq!(
        run(gh("refs/heads/release", None).args(["save", "--key", "k", "--path", "d"])).code,
        0
    );
    let out = run(gh("refs/pull/7/merge", Some("release"))
        .args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["scope"], "refs/heads/release");
    // --scope overrides the CI's rule.
    let out = run(gh("refs/heads/main", None).args([
        "--json",
        "--scope",
        "refs/heads/feature",
        "restore",
        "--key",
        "k",
        "--path",
        "d",
    ]));
    assert_eq!(json(&out)["scope"], "refs/heads/feature");
}

#[test]
fn gitlab_protected_and_unprotected_caches_are_apart() {
    let s = Sandbox::new();
    let gl = |protected: &str| {
        let mut c = s.kura();
        c.env("GITLAB_CI", "true")
            .env("CI_COMMIT_REF_PROTECTED", protected)
            .env("CI_PROJECT_DIR", &s.ws);
        c
    };
    s.write("d/f", "unprotected");
    assert_eq!(
        run(gl("false").args(["save", "--key", "k", "--path", "d"])).code,
        0
    );
    let out = run(gl("true").args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
    let out = run(gl("false").args(["--json", "restore", "--key", "k", "--path", "d"]));
    assert_eq!(json(&out)["scope"], "non_protected");
}

#[test]
fn hash_files_agrees_with_the_runner_on_the_real_actions_glob() {
    let npm = support::npm_package("@actions/glob@0.7.0");
    let script = npm.join("hashfiles.mjs");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hashfiles.mjs"),
        &script,
    )
    .unwrap();
    let s = Sandbox::new();
    for (f, content) in [
        ("a/b/package-lock.json", "1"),
        ("a.b/package-lock.json", "2"),
        ("a-b/x.lock", "3"),
        ("package-lock.json", "4"),
        ("node_modules/x/package-lock.json", "5"),
        (".hidden/y.lock", "6"),
        ("src/deep/er/z.lock", "7"),
        ("src/Z.lock", "8"),
        ("src/a.lock", "9"),
    ] {
        s.write(f, content);
    }
    std::os::unix::fs::symlink("package-lock.json", s.ws.join("link.lock")).unwrap();
    std::os::unix::fs::symlink("a", s.ws.join("linkdir")).unwrap();
    let outside = s.dir.path().join("outside/o.lock");
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    std::fs::write(&outside, "out").unwrap();
    let outside = outside.to_string_lossy().into_owned();
    let sets: Vec<Vec<&str>> = vec![
        vec!["**/package-lock.json"],
        vec!["**/*.lock"],
        vec!["a", "src"],
        vec!["**/*.lock", "!src/**"],
        vec!["*.json"],
        vec!["nothing/*"],
        vec!["**"],
        vec![&outside, "package-lock.json"],
        vec!["src/*.lock", "a-b/*"],
        // The last pattern that matches a file decides, as in @actions/glob.
        vec!["src/**", "!src/deep/**", "src/deep/er/z.lock"],
        vec!["!src/**", "**"],
        vec!["**/*.lock", "!a-b/**", "a-b/x.lock", "!src/a.lock"],
        vec!["linkdir/**"],
        vec!["linkdir"],
        // One search path holds the other: the walk of the outer one decides the order.
        vec!["src/a.lock", "*.json"],
        vec!["src/*.lock", "a/b/package-lock.json", "**/*.json"],
        // `!!` cancels out; a trailing `/` matches directories only.
        vec!["!!a-b/x.lock"],
        vec!["**/*.lock", "!!src/**", "!src/a.lock"],
        vec!["a-b/x.lock/"],
        vec!["src/"],
        vec!["**", "!a-b/", "!package-lock.json/"],
    ];
    // The same hash from the runner's glob and from kura, for `patterns` in workspace `ws`.
    let agree = |ws: &std::path::Path, patterns: &[&str]| {
        let node = std::process::Command::new("node")
            .arg(&script)
            .env("KURA_PATTERNS", patterns.join("\n"))
            .current_dir(ws)
            .output()
            .expect("node runs");
        assert!(
            node.status.success(),
            "{}",
            String::from_utf8_lossy(&node.stderr)
        );
        let stdout = String::from_utf8(node.stdout).unwrap();
        let want = stdout
            .lines()
            .find_map(|l| l.strip_prefix("hashFiles="))
            .expect("a result line")
            .to_string();
        let args: Vec<String> = patterns.iter().map(|p| format!("{p:?}")).collect();
        let template = format!("x{{{{ hashFiles {} }}}}", args.join(" "));
        let out = run(s
            .kura()
            .current_dir(ws)
            .env("GITHUB_WORKSPACE", ws)
            .args(["key", &template]));
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            out.stdout.trim_end(),
            format!("x{want}"),
            "patterns {patterns:?} in {}",
            ws.display()
        );
        want
    };
    for patterns in sets {
        agree(&s.ws, &patterns);
    }
    // Braces are no alternation, in a pattern or in the workspace's own path.
    s.write("br/{a,b}.txt", "literal");
    s.write("br/a.txt", "a");
    s.write("br/{x}/p.json", "x");
    s.write("w{1}/lock.json", "w");
    s.write("w{1}/d/e.lock", "e");
    for patterns in [
        vec!["br/{a,b}.txt"],
        vec!["br/{x}/p.json"],
        vec!["br/**", "!br/{x}/**"],
    ] {
        assert_ne!(agree(&s.ws, &patterns), "", "{patterns:?}");
    }
    for patterns in [vec!["lock.json"], vec!["**/*.lock"], vec!["**", "!d/**"]] {
        assert_ne!(agree(&s.ws.join("w{1}"), &patterns), "", "{patterns:?}");
    }
}
