//! A real OCI registry for the tests: Debian's `docker-registry` (distribution 2.8.2, installed
//! with apt-get when missing) on 127.0.0.1, deletes enabled, started once per test binary and
//! killed when it exits. `open()` takes anyone; `basic()` wants `kura` / `s3cret` (htpasswd,
//! bcrypt).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub const USER: &str = "kura";
pub const PASSWORD: &str = "s3cret";

pub struct Registry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Where the registry keeps its blobs (`docker/registry/v2/...`).
    pub data: PathBuf,
}

pub fn open() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| start("open", false))
}

pub fn basic() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| start("basic", true))
}

fn install() {
    let found = || {
        Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_ok()
    };
    let has_htpasswd = || Command::new("htpasswd").arg("-h").output().is_ok();
    if found() && has_htpasswd() {
        return;
    }
    let apt = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "docker-registry",
                "apache2-utils",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("apt-get runs")
            .success()
    };
    if !apt() {
        let _ = Command::new("apt-get").arg("update").status();
        assert!(
            apt(),
            "apt-get install docker-registry apache2-utils failed"
        );
    }
    assert!(found() && has_htpasswd());
}

fn start(name: &str, auth: bool) -> Registry {
    install();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("registry-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut auth_conf = String::new();
    if auth {
        let out = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::write(dir.join("htpasswd"), out.stdout).unwrap();
        auth_conf = format!(
            "auth:\n  htpasswd:\n    realm: kura-test\n    path: {}\n",
            dir.join("htpasswd").display()
        );
    }
    // Port 0: the registry picks a free port and logs it.
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n  secret: kura-test\n{auth_conf}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let conf = dir.join("config.yml");
    let log_path = dir.join("registry.log");
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("docker-registry starts");
        let mut log = std::fs::File::create(log_path).unwrap();
        let mut sent = false;
        for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
            let Ok(line) = line else { break };
            use std::io::Write;
            let _ = writeln!(log, "{line}");
            if !sent {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split(['"', ',', ' ']).next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
        let _ = child.wait();
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "docker-registry did not say where it listens (see {})",
                dir.display()
            )
        });
    Registry {
        addr,
        data: dir.join("data"),
    }
}
