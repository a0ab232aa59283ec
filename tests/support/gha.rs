//! GitHub's cache service for the tests: a real Azurite (npm, pinned) holding the blobs, and
//! the stand-in of `gha-standin.mjs` answering the Twirp and REST calls, both on 127.0.0.1,
//! started once per test binary and killed when it exits. The official client
//! (`@actions/cache`, pinned) is the interop peer.

use super::{npm_package, run, Out, Sandbox};
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub const ACTIONS_CACHE: &str = "@actions/cache@6.3.0";
pub const AZURITE: &str = "azurite@3.35.0";

pub struct Service {
    /// `http://127.0.0.1:PORT`: Twirp, REST and the blob proxy.
    pub url: String,
    /// Where `@actions/cache` is installed, with the client script beside it.
    pub client_dir: PathBuf,
}

/// Start `cmd` on a thread that lives as long as the test binary; the kernel kills the
/// process when the binary exits. Returns the first line it prints on stdout that contains
/// `marker` (servers started on port 0 print the port they got there).
fn keep(mut cmd: Command, log: PathBuf, marker: &'static str) -> String {
    use std::os::unix::process::CommandExt;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let err = std::fs::File::create(log).unwrap();
        cmd.stdout(Stdio::piped()).stderr(err);
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("node starts");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = tx.send(Err(seen));
                break;
            }
            if line.contains(marker) {
                let _ = tx.send(Ok(line));
                break;
            }
            seen.push_str(&line);
        }
        // Drain the rest so the server never blocks on a full pipe.
        let _ = std::io::copy(&mut out, &mut std::io::sink());
        let _ = child.wait();
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(Ok(line)) => line,
        Ok(Err(seen)) => panic!("the server exited before printing {marker:?}: {seen}"),
        Err(_) => panic!("the server did not print {marker:?} within 60 s"),
    }
}

pub fn service() -> &'static Service {
    static S: OnceLock<Service> = OnceLock::new();
    S.get_or_init(|| {
        let client_dir = npm_package(ACTIONS_CACHE);
        let azurite = npm_package(AZURITE);
        for (name, text) in [
            ("gha-standin.mjs", include_str!("gha-standin.mjs")),
            ("actions-cache.mjs", include_str!("actions-cache.mjs")),
        ] {
            std::fs::write(client_dir.join(name), text).unwrap();
        }
        let dir = super::fresh_dir(&format!("gha-{}", std::process::id()));
        let mut az = Command::new("node");
        az.arg(azurite.join("node_modules/azurite/dist/src/blob/main.js"))
            .arg("--location")
            .arg(dir.join("azurite"))
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0"])
            .args(["--skipApiVersionCheck", "--disableTelemetry", "--silent"]);
        // "Azurite Blob service successfully listens on http://127.0.0.1:PORT"
        let line = keep(az, dir.join("azurite.log"), "listens on http://");
        let azurite_url = line.trim().rsplit(' ').next().unwrap().to_string();
        let mut standin = Command::new("node");
        standin
            .arg(client_dir.join("gha-standin.mjs"))
            .env("AZURITE", &azurite_url);
        let line = keep(standin, dir.join("standin.log"), "ready ");
        let own = line.trim().strip_prefix("ready ").unwrap_or_else(|| {
            panic!(
                "the stand-in did not start: {line:?} (see {})",
                dir.display()
            )
        });
        Service {
            url: format!("http://127.0.0.1:{own}"),
            client_dir,
        }
    })
}

/// A runtime token shaped like the runner's: a JWT whose `ac` claim lists the cache scopes
/// (permission 1 read, 2 write, 3 both). The stand-in reads it as GitHub's service does.
pub fn token(scopes: &[(&str, u8)]) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let ac: Vec<_> = scopes
        .iter()
        .map(|(s, p)| serde_json::json!({"Scope": s, "Permission": p}))
        .collect();
    let claims = serde_json::json!({"ac": serde_json::to_string(&ac).unwrap()});
    format!(
        "{}.{}.sig",
        b64(r#"{"alg":"none"}"#),
        b64(&claims.to_string())
    )
}

impl Service {
    fn http(&self, method: &str, path: &str, body: &str) -> String {
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// Make the stand-in misbehave for keys containing `fault["match"]`.
    pub fn fault(&self, fault: serde_json::Value) {
        self.http("POST", "/_admin/fault", &fault.to_string());
    }

    /// Overwrite the second half of the blobs of entries with exactly this key with noise.
    pub fn corrupt(&self, key: &str) -> u64 {
        self.spoil(key, false)
    }

    /// Cut the blobs of entries with exactly this key to their first half.
    pub fn truncate(&self, key: &str) -> u64 {
        self.spoil(key, true)
    }

    fn spoil(&self, key: &str, short: bool) -> u64 {
        let path = format!("/_admin/corrupt?key={}&short={}", query(key), short as u8);
        let body = self.http("POST", &path, "");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["corrupted"]
            .as_u64()
            .unwrap()
    }

    /// Make entries with exactly this key look created and last used `days` ago.
    pub fn age(&self, key: &str, days: u64) -> u64 {
        let body = self.http(
            "POST",
            &format!("/_admin/age?key={}&days={days}", query(key)),
            "",
        );
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["aged"]
            .as_u64()
            .unwrap()
    }

    /// Every request the stand-in saw for keys containing `key`.
    pub fn log(&self, key: &str) -> Vec<serde_json::Value> {
        let body = self.http("GET", &format!("/_admin/log?match={key}"), "");
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("bad log {body:?}"))
    }

    /// kura inside a GitHub action: the runtime variables set, the store chosen by itself.
    pub fn kura(&self, s: &Sandbox, token: &str) -> std::process::Command {
        let mut c = s.kura_std();
        c.env_remove("KURA_STORE")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_WORKSPACE", &s.ws)
            .env("GITHUB_REF", "refs/heads/main")
            .env("ACTIONS_RESULTS_URL", format!("{}/", self.url))
            .env("ACTIONS_RUNTIME_TOKEN", token)
            .env("GITHUB_REPOSITORY", "octo/repo")
            .env("GITHUB_API_URL", &self.url)
            .env("GITHUB_TOKEN", "gh-token")
            .env("GHA_TEST_BACKOFF_MS", "100");
        c
    }

    /// The official client, as actions/cache runs it, in the same workspace.
    pub fn official(&self, s: &Sandbox, token: &str, args: &[&str]) -> serde_json::Value {
        self.official_with(s, token, &[("ACTIONS_CACHE_SERVICE_V2", "true")], args)
    }

    /// The official client with the service chosen by `env` (v1: a GHES server URL and
    /// ACTIONS_CACHE_URL).
    pub fn official_with(
        &self,
        s: &Sandbox,
        token: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> serde_json::Value {
        let temp = s.dir.path().join("runner-temp");
        std::fs::create_dir_all(&temp).unwrap();
        let out = Command::new("node")
            .arg(self.client_dir.join("actions-cache.mjs"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &s.home)
            .envs(env.iter().copied())
            .env("ACTIONS_RESULTS_URL", format!("{}/", self.url))
            .env("ACTIONS_RUNTIME_TOKEN", token)
            .env("RUNNER_TEMP", &temp)
            .env("GITHUB_WORKSPACE", &s.ws)
            .current_dir(&s.ws)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "@actions/cache {args:?} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|_| panic!("@actions/cache said {stdout}"))
    }
}

fn query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// Helpers shared by the GitHub store tests and the interop tests.

pub fn main_token() -> String {
    token(&[("refs/heads/main", 3)])
}

/// kura against the service with `--json`, as a test runs it.
pub fn kura(s: &Sandbox, tok: &str, args: &[&str]) -> Out {
    let mut c = service().kura(s, tok);
    c.arg("--json").args(args);
    run(&mut assert_cmd::Command::from_std(c))
}

/// One file, directory or symlink: name, kind, mode, content or target.
pub type Node = (String, String, u32, Vec<u8>);
/// The workspace tree and the tree outside it.
pub type Trees = (Vec<Node>, Vec<Node>);

/// Files, directories and symlinks below `dir` with their modes and contents or targets.
pub fn full_tree(dir: &Path) -> Vec<Node> {
    let mut out = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<Node>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mode = md.permissions().mode() & 0o7777;
            if md.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.push((
                    rel,
                    "link".into(),
                    0,
                    target.to_string_lossy().into_owned().into_bytes(),
                ));
            } else if md.is_dir() {
                out.push((rel, "dir".into(), mode, Vec::new()));
                walk(root, &p, out);
            } else {
                out.push((rel, "file".into(), mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A tree inside the workspace and one outside it (archived as `../outside`), with a
/// symlink and an executable. Returns the outside path as both clients are given it
/// (`@actions/glob` refuses `..` in patterns).
pub fn populate(s: &Sandbox, seed: u64, big: usize) -> String {
    s.write("deps/a.txt", "alpha");
    s.write_bytes("deps/sub/noise.bin", &super::noise(70_000 + big, seed));
    let exe = s.write("deps/run.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("a.txt", s.ws.join("deps/link")).unwrap();
    let outside = s.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("o.txt"), format!("outside {seed}")).unwrap();
    outside.to_string_lossy().into_owned()
}

pub fn wipe(s: &Sandbox) -> Trees {
    let outside = s.dir.path().join("outside");
    let before = (full_tree(&s.ws.join("deps")), full_tree(&outside));
    std::fs::remove_dir_all(s.ws.join("deps")).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
    before
}

pub fn after(s: &Sandbox) -> Trees {
    (
        full_tree(&s.ws.join("deps")),
        full_tree(&s.dir.path().join("outside")),
    )
}

/// kura saving or restoring the populated trees: `deps` and the one outside the workspace.
pub fn deps(s: &Sandbox, tok: &str, verb: &str, key: &str, outside: &str) -> Out {
    kura(
        s,
        tok,
        &[verb, "--key", key, "--path", "deps", "--path", outside],
    )
}
