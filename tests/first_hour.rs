//! A new user's first hour: the traps a team meets before its first green build, each
//! asserted on what the user sees and what is on disk.

use crate::support::{json, run, Sandbox};

/// `kura` as a CI job with no store configured would run it.
fn in_ci(s: &Sandbox, ci: (&str, &str)) -> assert_cmd::Command {
    let mut c = s.kura();
    c.env_remove("KURA_STORE").env(ci.0, ci.1);
    c
}

fn keys_in(dir: &std::path::Path) -> Vec<String> {
    let s = Sandbox::new();
    let out = run(s
        .kura()
        .env("KURA_STORE", format!("file://{}", dir.display()))
        .args(["--json", "ls"]));
    json(&out)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_cache_in_ci_without_a_store_warns_and_strict_refuses_it() {
    for ci in [
        ("CIRCLECI", "true"),
        ("GITLAB_CI", "true"),
        ("GITHUB_ACTIONS", "true"),
    ] {
        let s = Sandbox::new();
        s.write("d/f", "x");
        let local = s.home.join(".cache/kura");
        let out = run(in_ci(&s, ci).args(["--json", "save", "--key", "k", "--path", "d"]));
        assert_eq!(out.code, 0, "{ci:?}: {}", out.stderr);
        assert_eq!(json(&out)["outcome"], "saved");
        assert_eq!(
            json(&out)["store"]
                .as_str()
                .map(|l| l.contains(".cache/kura")),
            Some(true),
            "{}",
            out.stdout
        );
        assert_eq!(
            out.stderr.matches("no store is configured").count(),
            1,
            "{ci:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&local.display().to_string()),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("KURA_STORE"), "{}", out.stderr);
        assert_eq!(
            out.stderr.contains("gha://"),
            ci.0 == "GITHUB_ACTIONS",
            "{}",
            out.stderr
        );
        // --strict: an error, and nothing kept.
        let out = run(in_ci(&s, ci).args(["--strict", "save", "--key", "k2", "--path", "d"]));
        assert_eq!(out.code, 1, "{ci:?}: {}", out.stderr);
        assert_eq!(keys_in(&local), vec!["k".to_string()]);
        // Named on purpose (a self-hosted runner's disk): no warning.
        let out = run(in_ci(&s, ci)
            .env("KURA_STORE", format!("file://{}", local.display()))
            .args(["restore", "--key", "k", "--path", "d"]));
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            !out.stderr.contains("no store is configured"),
            "{}",
            out.stderr
        );
    }
    // Not in CI: the local default is what a laptop wants.
    let s = Sandbox::new();
    s.write("d/f", "x");
    let out = run(s
        .kura()
        .env_remove("KURA_STORE")
        .args(["save", "--key", "k", "--path", "d"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stderr.contains("no store is configured"),
        "{}",
        out.stderr
    );
}

fn bytes_below(dir: &std::path::Path) -> u64 {
    crate::support::files_below(dir)
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum()
}

#[test]
fn prune_says_what_it_freed_what_waits_and_until_when() {
    let s = Sandbox::new();
    for i in 0..4u64 {
        s.write_bytes("d/f", &crate::support::noise(256 << 10, i));
        let out = run(s.kura().args([
            "--json",
            "save",
            "--format",
            "chunked",
            "--key",
            &format!("k{i}"),
            "--path",
            "d",
        ]));
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before = bytes_below(&s.store);
    // A dry run names each entry it would remove, and removes nothing.
    let out = run(s
        .kura()
        .args(["--json", "prune", "--max-size", "600K", "--dry-run"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let would = json(&out)["removed"].clone();
    assert!(!would.as_array().unwrap().is_empty(), "{}", out.stdout);
    for k in would.as_array().unwrap() {
        let line = format!("Would prune {}", k.as_str().unwrap());
        assert!(out.stderr.contains(&line), "{line}: {}", out.stderr);
    }
    assert_eq!(bytes_below(&s.store), before);
    // The prune: what it says it freed is what left the disk (with the entries' small
    // metadata files), and the packs it could not delete yet are named with their day.
    let started = kura::store::now_ms();
    let out = run(s.kura().args(["--json", "prune", "--max-size", "600K"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = json(&out);
    assert_eq!(j["removed"], would);
    let freed = j["freed_bytes"].as_u64().unwrap();
    let gone = before - bytes_below(&s.store);
    assert!(
        freed <= gone && gone <= freed + (16 << 10),
        "freed {freed}, gone {gone}"
    );
    let dead = j["dead_pack_bytes"].as_u64().unwrap();
    assert!(dead >= 256 << 10, "{}", out.stdout);
    let go = j["dead_packs_go_ms"].as_u64().unwrap();
    let day = 24 * 3600 * 1000;
    assert!(go >= started + day && go <= started + day + 60_000, "{go}");
    assert!(
        out.stderr
            .contains("no longer referenced, which a prune deletes from"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&kura::units::human(freed)),
        "{}",
        out.stderr
    );
    // ls says the same: what waits, and from when it goes.
    let said = out
        .stderr
        .split("which a prune deletes from ")
        .nth(1)
        .unwrap();
    let when = &said[..said.find(" on").unwrap()];
    let ls = run(s.kura().args(["ls"]));
    assert!(
        ls.stderr
            .contains(&format!("a prune deletes those from {when} on")),
        "{}",
        ls.stderr
    );
}

#[test]
fn rm_of_a_key_in_another_scope_says_where_it_is() {
    let s = Sandbox::new();
    s.write("d/f", "x");
    let out = run(s.kura().args([
        "--json", "--scope", "a", "save", "--key", "k", "--path", "d",
    ]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    for dry in [true, false] {
        let mut c = s.kura();
        c.args(["--json", "rm", "k", "--ref", "b"]);
        if dry {
            c.arg("--dry-run");
        }
        let out = run(&mut c);
        assert_eq!(json(&out)["count"], 0, "{}", out.stdout);
        assert!(
            out.stderr.contains("the key is in scope a"),
            "{}",
            out.stderr
        );
    }
    let listed = json(&run(s.kura().args(["--json", "ls"])));
    assert_eq!(listed["entries"].as_array().unwrap().len(), 1);
}

#[test]
fn save_and_restore_say_one_size_in_one_form() {
    for (github, format) in [
        (false, "chunked"),
        (false, "archive"),
        (true, "chunked"),
        (true, "archive"),
    ] {
        let s = Sandbox::new();
        s.write_bytes("d/f", &crate::support::noise(300 << 10, 7));
        let kura = || {
            let mut c = s.kura();
            if github {
                c.env("GITHUB_ACTIONS", "true");
            }
            c
        };
        let size_of = |out: &crate::support::Out| {
            let line = out
                .stderr
                .lines()
                .find(|l| l.starts_with("Cache Size: "))
                .unwrap_or_else(|| panic!("{}", out.stderr))
                .to_string();
            line["Cache Size: ".len()..]
                .split(", ")
                .next()
                .unwrap()
                .to_string()
        };
        let saved = run(kura().args(["save", "--format", format, "--key", "k", "--path", "d"]));
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let restored = run(kura().args(["restore", "--key", "k", "--path", "d"]));
        let (a, b) = (size_of(&saved), size_of(&restored));
        assert_eq!(a, b, "{format} github={github}");
        if github {
            // actions/cache's form: `~0 MB (307712 B)`.
            assert!(a.starts_with('~') && a.contains(" MB ("), "{a}");
        } else {
            assert!(a.contains(" KiB ("), "{a}");
        }
    }
}

/// The visible lines a terminal shows of `raw`: split where the cursor returns, escapes out.
fn screen_lines(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in raw.split(['\r', '\n']) {
        let mut line = String::new();
        let mut chars = piece.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters final-byte.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
                continue;
            }
            line.push(c);
        }
        if !line.trim().is_empty() {
            out.push(line);
        }
    }
    out
}

#[test]
fn the_bar_fits_an_80_column_terminal_and_shows_rate_and_eta() {
    let s = Sandbox::new();
    for i in 0..24u64 {
        s.write_bytes(&format!("d/f{i:02}"), &crate::support::noise(1 << 20, i));
    }
    for format in ["archive", "chunked"] {
        // A slow save (level 19, one worker): the bar is drawn for a few seconds.
        let kura = assert_cmd::cargo::cargo_bin("kura");
        let line = format!(
        "stty cols 80 rows 24; {} save --key k-{format} --path d --workers 1 --compression-level 19 --format {format}",
        kura.display()
    );
        let mut c = std::process::Command::new("script");
        c.args(["-qefc", &line, "/dev/null"]).env_clear();
        for (k, v) in s.kura_std().get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        let out = c.env("TERM", "xterm").current_dir(&s.ws).output().unwrap();
        let raw = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{raw}");
        let lines = screen_lines(&raw);
        let bars: Vec<&String> = lines.iter().filter(|l| l.starts_with("Packed")).collect();
        assert!(
            bars.iter()
                .any(|l| l.contains("ETA") && l.contains("/s") && l.contains('[')),
            "{lines:#?}"
        );
        assert!(bars.iter().all(|l| !l.contains("0 B/0 B")), "{lines:#?}");
        let widest = bars.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(
            widest <= 80,
            "{format}: a bar of {widest} columns: {bars:#?}"
        );
    }
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    let s = Sandbox::new();
    let subcommands = [
        "key", "restore", "save", "persist", "attach", "ls", "rm", "prune",
    ];
    // bash loads the script and registers it for kura.
    let out = run(s.kura().args(["completions", "bash"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let script = s.dir.path().join("kura.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p kura", script.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("_kura"),
        "{loaded:?}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(s.kura().args(["completions", shell]));
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for c in subcommands {
            assert!(out.stdout.contains(c), "{shell} lacks {c}");
        }
    }
    // The man page: a roff page naming every command and the settings no flag sets.
    let out = run(s.kura().args(["man"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(".ie") || out.stdout.contains(".TH kura 1"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );
    for c in subcommands {
        assert!(out.stdout.contains(c), "the man page lacks {c}");
    }
    assert!(
        out.stdout.contains("KURA_HTTP_TIMEOUT"),
        "the man page lacks the settings"
    );
}

#[test]
fn the_log_names_the_store_and_maintenance_says_when_it_cannot_reach_it() {
    let s = Sandbox::new();
    s.write("d/f", "x");
    let store = format!("file://{}", s.store.display());
    let out = run(s.kura().args(["save", "--key", "k", "--path", "d"]));
    assert!(
        out.stderr.contains(&format!("; store {store}")),
        "{}",
        out.stderr
    );
    let out = run(s.kura().args(["restore", "--key", "k", "--path", "d"]));
    assert!(
        out.stderr.contains(&format!("; store {store}")),
        "{}",
        out.stderr
    );
    let out = run(s.kura().args(["restore", "--key", "nope", "--path", "d"]));
    assert!(
        out.stderr.contains(&format!("(looked in {store})")),
        "{}",
        out.stderr
    );
    // A store nobody answers at: the cache steps go on, the commands that look after the
    // store say they could not (exit 1), so that a script can tell.
    let away = "http://127.0.0.1:9/kura/";
    for (args, code) in [
        (&["restore", "--key", "k", "--path", "d"][..], 0),
        (&["ls"][..], 1),
        (&["rm", "k"][..], 1),
        (&["prune", "--max-age", "7d"][..], 1),
    ] {
        let out = run(s
            .kura()
            .env("KURA_STORE", away)
            .env("KURA_HTTP_TIMEOUT", "2")
            .args(args));
        assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
    }
}

/// A number no clock holds, in every setting and flag that is a time: a save and restore
/// still work (or the flag is refused as bad input), and nothing panics. `1e20` seconds made
/// Rust's conversion to a Duration panic in four places.
#[test]
fn times_no_clock_holds_are_refused_or_ignored_never_a_panic() {
    let s = Sandbox::new();
    s.write("d/f", "cached");
    for (var, value) in [
        ("KURA_PROGRESS_SECONDS", "1e20"),
        ("KURA_HTTP_TIMEOUT", "1e20"),
        ("KURA_HTTP_TIMEOUT", "18446744073709551615"),
        ("SEGMENT_DOWNLOAD_TIMEOUT_MINS", "1e300"),
    ] {
        let key = format!("{var}-{value}");
        let out = run(s
            .kura()
            .env(var, value)
            .args(["--json", "save", "--key", &key, "--path", "d"]));
        assert_eq!(
            json(&out)["outcome"],
            "saved",
            "{var}={value}: {}",
            out.stderr
        );
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let out = run(s
            .kura()
            .env(var, value)
            .args(["--json", "restore", "--key", &key, "--path", "d"]));
        assert_eq!(
            json(&out)["cache_hit"],
            true,
            "{var}={value}: {}",
            out.stderr
        );
        assert_eq!(s.read("d/f"), "cached");
    }
    // On the stores that read them: an S3 endpoint and the GitHub service that are not there.
    for (store, extra) in [
        (
            "s3://b/p",
            [
                ("KURA_S3_ENDPOINT", "http://127.0.0.1:1"),
                ("AWS_ACCESS_KEY_ID", "a"),
            ],
        ),
        (
            "gha://",
            [
                ("ACTIONS_RUNTIME_TOKEN", "t"),
                ("ACTIONS_RESULTS_URL", "http://127.0.0.1:1/"),
            ],
        ),
    ] {
        let out = run(s
            .kura()
            .env("KURA_STORE", store)
            .env("KURA_HTTP_TIMEOUT", "1e20")
            .env("SEGMENT_DOWNLOAD_TIMEOUT_MINS", "1e20")
            .env("AWS_SECRET_ACCESS_KEY", "b")
            .env("AWS_REGION", "us-east-1")
            .envs(extra)
            .args(["--json", "restore", "--key", "k", "--path", "d"]));
        assert_eq!(out.code, 0, "{store}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{store}: {}", out.stderr);
    }
    let out = run(s
        .kura()
        .args(["prune", "--max-age", "100000000000000000000000d"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
}
