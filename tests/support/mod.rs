//! Shared set-up for the integration tests: a sandbox with a workspace, a home and a store,
//! and the kura binary run with a clean environment (no CI variables leak in from the host).

#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub ws: PathBuf,
    pub home: PathBuf,
    pub store: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let home = dir.path().join("home");
        let store = dir.path().join("store");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        Sandbox {
            dir,
            ws,
            home,
            store,
        }
    }

    pub fn kura(&self) -> Command {
        Command::from_std(self.kura_std())
    }

    /// The same command as a plain `std::process::Command`, for spawning several at once.
    pub fn kura_std(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("kura"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("TMPDIR", self.dir.path())
            .env("KURA_STORE", format!("file://{}", self.store.display()))
            .env("KURA_BRANCH", "main")
            .current_dir(&self.ws);
        c
    }

    pub fn write(&self, rel: &str, data: &str) -> PathBuf {
        self.write_bytes(rel, data.as_bytes())
    }

    pub fn write_bytes(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.ws.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.ws.join(rel)).unwrap()
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.ws.join(rel).exists()
    }
}

/// Incompressible bytes (xorshift), the same for the same seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Run commands at the same time and return each one's `--json` outcome.
pub fn concurrent_outcomes(cmds: Vec<std::process::Command>) -> Vec<String> {
    let children: Vec<_> = cmds
        .into_iter()
        .map(|mut c| {
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout)
                .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
            v["outcome"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Start a save and return once it has handed at least `bytes` to its store (read from its
/// progress lines), so that a test can kill it mid-upload; fails if it ends before that. The
/// save runs on one worker at level 12, so that it is still running when the test kills it.
pub fn spawn_until_sent(cmd: std::process::Command, bytes: u64) -> std::process::Child {
    spawn_until_sent_logged(cmd, bytes).0
}

/// [`spawn_until_sent`], and what the save prints on stderr from then until it ends.
pub fn spawn_until_sent_logged(
    mut cmd: std::process::Command,
    bytes: u64,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    cmd.args(["--compression-level", "12"]);
    spawn_until_sent_as_is(cmd, bytes)
}

/// [`spawn_until_sent_logged`] for a command that takes no compression level (`persist`).
pub fn spawn_until_sent_as_is(
    mut cmd: std::process::Command,
    bytes: u64,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let mut child = cmd
        .args(["--workers", "1"])
        .env("KURA_PROGRESS_SECONDS", "0.05")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("the save ended before sending {bytes} bytes: {seen:?}");
        };
        if sent(&line).is_some_and(|n| n >= bytes) {
            break;
        }
        seen.push(line);
    }
    // Keep draining, so the save never blocks on a full pipe before it is killed.
    let rest =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    (child, rest)
}

/// The bytes sent of a save's progress line:
/// `Packed 12.0 MiB of 40.0 MiB (30.0%), sent 9.5 MiB, 3.1 MiB/s`.
fn sent(line: &str) -> Option<u64> {
    if !line.starts_with("Packed ") {
        return None;
    }
    let rest = &line[line.find(", sent ")? + ", sent ".len()..];
    let mut it = rest.split([' ', ',']);
    let n: f64 = it.next()?.parse().ok()?;
    let unit = match it.next()? {
        "B" => 1u64,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    Some((n * unit as f64) as u64)
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(c: &mut Command) -> Out {
    let o = c.output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A restore that found its exact key and wrote every entry.
pub fn assert_clean_hit(out: &Out) {
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = json(out);
    assert_eq!(j["outcome"], "hit", "{}", out.stderr);
    assert_eq!(j["cache_hit"], true, "{}", out.stderr);
    assert_eq!(j["refused"], serde_json::json!([]), "{}", out.stderr);
}

pub fn json(out: &Out) -> serde_json::Value {
    serde_json::from_str(out.stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!(
            "no JSON on stdout ({e}): {}\nstderr: {}",
            out.stdout, out.stderr
        )
    })
}

/// Files and links below `dir` (directories left empty do not count).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(files_below(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
/// Every regular file below `dir`, relative, sorted, with its content.
/// Copy every file below `from` to the same place below `to`, directories made as needed.
pub fn copy_tree(from: &Path, to: &Path) {
    for f in files_below(from) {
        let rel = f.strip_prefix(from).unwrap();
        std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&f, to.join(rel)).unwrap();
    }
}

pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(root, &p, out);
            } else if t.is_file() {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

pub fn save(s: &Sandbox, key: &str, paths: &[&str]) -> Out {
    let mut c = s.kura();
    c.args(["--json", "save", "--key", key]);
    for p in paths {
        c.args(["--path", p]);
    }
    run(&mut c)
}

pub fn restore(s: &Sandbox, args: &[&str]) -> Out {
    let mut c = s.kura();
    c.arg("--json").arg("restore").args(args);
    run(&mut c)
}

pub fn walk_find(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    fn find(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.file_name()? == name {
                return Some(p);
            }
            if p.is_dir() && !p.file_name()?.to_string_lossy().starts_with('.') {
                if let Some(found) = find(&p, name) {
                    return Some(found);
                }
            }
        }
        None
    }
    find(dir, name).unwrap_or_else(|| panic!("{name} not found under {}", dir.display()))
}

/// `target/tmp/NAME`, empty, for a server this test process starts. The first call also
/// removes what earlier test processes left there (`NAME-PID...` of a process that is gone):
/// their servers' data, gigabytes after the 1 GiB round trips, would fill the disk.
pub fn fresh_dir(name: &str) -> PathBuf {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    SWEPT.call_once(|| {
        for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .split('-')
                .find_map(|w| w.parse::<i32>().ok().filter(|p| *p > 0));
            let gone = |pid: i32| {
                // Signal 0 checks that a process exists; EPERM means it does, someone else's.
                let r = unsafe { libc::kill(pid, 0) };
                r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
            };
            if pid.is_some_and(|p| p as u32 != std::process::id() && gone(p)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
    let dir = tmp.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub mod faults;
pub mod garage;
pub mod gha;
pub mod nginx;
pub mod registry;
pub mod stub;

/// Pinned npm packages (`name@version`, several separated by spaces) installed once into the test scratch directory, for tests that run
/// the real tools kura must agree with. Installing needs the npm registry; failing to is a
/// test failure, never a skip.
pub fn npm_package(spec: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("npm")
        .join(spec.replace(['/', ' '], "+"));
    let done = dir.join(".installed");
    if !done.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let st = std::process::Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
            ])
            .arg(&dir)
            .args(spec.split_whitespace())
            .status()
            .unwrap_or_else(|e| panic!("cannot run npm to install {spec}: {e}"));
        assert!(st.success(), "npm install {spec} failed");
        std::fs::write(&done, spec).unwrap();
    }
    dir
}

/// A JSON schema of SchemaStore's (`github-actions`, `github-workflows`, `circle-ci`), as
/// the pinned PyPI package check-jsonschema 0.39.0 vendors them: its wheel is fetched once into
/// `target/tmp/schemas`, checked against its published sha256, and the file read out of it.
pub fn vendored_schema(name: &str) -> PathBuf {
    const WHEEL: &str = "https://files.pythonhosted.org/packages/06/e9/644e47c8b929f14cbda2b6779be047caa2098cc06f8bd7e04e8c62416cdc/check_jsonschema-0.39.0-py3-none-any.whl";
    const SHA256: &str = "14ce5c94871c551268ea948ffe21e9f1464dc48fb20bf9a4c13deeaaf756cf9b";
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemas");
    let wheel = dir.join("check_jsonschema-0.39.0-py3-none-any.whl");
    let sound = |p: &Path| {
        use sha2::Digest;
        std::fs::read(p).is_ok_and(|b| hex::encode(sha2::Sha256::digest(&b)) == SHA256)
    };
    if !sound(&wheel) {
        std::fs::create_dir_all(&dir).unwrap();
        let st = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])",
                WHEEL,
            ])
            .arg(&wheel)
            .status()
            .expect("python3 runs");
        assert!(st.success() && sound(&wheel), "cannot fetch {WHEEL}");
    }
    let out = dir.join(format!("{name}.json"));
    if !out.exists() {
        let inner = format!("check_jsonschema/builtin_schemas/vendor/{name}.json");
        let got = std::process::Command::new("python3")
            .args(["-c", "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))"])
            .arg(&wheel)
            .arg(&inner)
            .output()
            .expect("python3 runs");
        assert!(got.status.success(), "{inner} is not in the wheel");
        serde_json::from_slice::<serde_json::Value>(&got.stdout).expect("the schema is JSON");
        std::fs::write(&out, &got.stdout).unwrap();
    }
    out
}

/// Validate YAML files of the repository (paths from its root) against a vendored schema
/// ([`vendored_schema`]) with the pinned ajv and yaml; every file must be valid.
pub fn assert_valid(schema: &str, files: &[&str]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("node")
        .arg(root.join("tests/support/validate.cjs"))
        .arg(npm_package("ajv@8.17.1"))
        .arg(npm_package("yaml@2.6.1"))
        .arg(vendored_schema(schema))
        .args(files.iter().map(|f| root.join(f)))
        .output()
        .expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in files {
        let line = format!("{}: valid", root.join(f).display());
        assert!(text.contains(&line), "{f} against {schema}: {text}");
    }
}

/// A directory served over http on 127.0.0.1 (python's http.server), for download tests.
/// Kill the child to stop it.
pub fn serve_dir(dir: &Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    // Port 0: the server picks a free port and says which (no race with other tests).
    let mut child = std::process::Command::new("python3")
        .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "Serving HTTP on 127.0.0.1 port 43379 (http://127.0.0.1:43379/) ..."
    let port: u16 = line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("python's http.server did not say its port: {line:?}"));
    (child, format!("http://127.0.0.1:{port}"))
}

/// Run a command and return its outcome with its peak resident memory in bytes (the child's
/// own, from wait4, whatever else this process runs).
// wait4 reaps the child (std's wait would lose its resource usage).
#[allow(clippy::zombie_processes)]
/// Linux records the starting process's peak at `exec` too (the child shares its memory until
/// then): a test binary that measures must not itself hold hundreds of megabytes meanwhile.
pub fn run_measured(cmd: &mut std::process::Command) -> (Out, u64) {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_measured(child)
}

/// Wait for a child spawned with piped stdout and stderr: its output and peak RSS. The peak
/// counts the spawning process's own at the exec: measure only from a small process (the
/// `memory` test binary).
pub fn wait_measured(mut child: std::process::Child) -> (Out, u64) {
    use std::io::Read;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = out.read_to_string(&mut stdout);
    let stderr = reader.join().unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // ru_maxrss is in KiB on Linux.
    (
        Out {
            code,
            stdout,
            stderr,
        },
        usage.ru_maxrss as u64 * 1024,
    )
}

/// A 1 GiB tree of incompressible files under `rel`.
pub fn write_gib(s: &Sandbox, rel: &str) {
    for i in 0..16 {
        s.write_bytes(&format!("{rel}/{i}"), &noise(64 << 20, 1000 + i));
    }
}

/// Save a 1 GiB tree to `store` as `format` (archive, chunked) and restore it, each in its own
/// kura process; asserts a whole round trip and that neither peaked at 200 MB of resident
/// memory.
pub fn gib_both_ways_in_bounded_memory(store: &str, format: &str) {
    gib_both_ways_in_bounded_memory_with(store, format, &[]);
}

/// The same, with the store's settings in `env` (credentials, an endpoint).
pub fn gib_both_ways_in_bounded_memory_with(store: &str, format: &str, env: &[(&str, &str)]) {
    let s = Sandbox::new();
    write_gib(&s, "big");
    let (out, save_rss) = run_measured(
        s.kura_std()
            .env("KURA_STORE", store)
            .envs(env.iter().copied())
            .args(["--json", "save", "--key", "big", "--path", "big"])
            .args(["--format", format]),
    );
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    std::fs::remove_dir_all(s.ws.join("big")).unwrap();
    let (out, restore_rss) = run_measured(
        s.kura_std()
            .env("KURA_STORE", store)
            .envs(env.iter().copied())
            .args(["--json", "restore", "--key", "big", "--path", "big"]),
    );
    assert_eq!(json(&out)["cache_hit"], true, "{}", out.stderr);
    assert_eq!(json(&out)["bytes"], 1u64 << 30);
    for (what, rss) in [("save", save_rss), ("restore", restore_rss)] {
        assert!(rss < 200 << 20, "{what} peaked at {} MiB", rss >> 20);
    }
}

/// A thread that appends `line` to `path` every millisecond until the returned guard is
/// dropped (a log a job is still writing while kura saves it).
pub fn keep_growing(path: PathBuf, line: &'static [u8]) -> Growing {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            f.write_all(line).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
    Growing {
        stop,
        writer: Some(writer),
    }
}

pub struct Growing {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Growing {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Run a helper command (not kura) to its end: its output, or a failure showing the command
/// and its stderr.
#[allow(dead_code)]
pub fn succeed(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The name-value pairs of a runner file (`GITHUB_OUTPUT`, `GITHUB_STATE`), read as the runner
/// reads them: `name=value` lines and `name<<DELIMITER` blocks ending at a line that is the
/// delimiter alone. A block that never ends fails the test, as it fails the runner's step.
pub fn runner_pairs(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let (eq, heredoc) = (line.find('='), line.find("<<"));
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                out.push((line[..e].to_string(), line[e + 1..].to_string()))
            }
            (_, Some(h)) => {
                let (name, delim) = (&line[..h], &line[h + 2..]);
                let mut value = Vec::new();
                loop {
                    let l = lines
                        .next()
                        .unwrap_or_else(|| panic!("{name}: no closing {delim} in {text:?}"));
                    if l == delim {
                        break;
                    }
                    value.push(l);
                }
                out.push((name.to_string(), value.join("\n")));
            }
            _ => panic!("not a runner file line: {line:?}"),
        }
    }
    out
}

/// A runner file's pairs as `name=value` lines, for comparing.
pub fn runner_file(path: &Path) -> String {
    runner_pairs(path)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
}
