//! A real S3 server for the tests: a single-node Garage on 127.0.0.1, started once per test
//! binary and killed when the binary exits. Installed with cargo when missing (pinned);
//! a Garage that cannot be had fails the test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub const GARAGE_VERSION: &str = "2.5.0";
pub const BUCKET: &str = "kura-test";
/// A bucket for the one test that counts unfinished multipart uploads.
pub const ABORT_BUCKET: &str = "kura-abort";
pub const KEY_ID: &str = "GK31c2f218a2e44f485b94239e";
pub const SECRET: &str = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835";
/// A key that may only read the test bucket.
pub const RO_KEY_ID: &str = "GK5d0e1f2a3b4c5d6e7f8a9b0c";
pub const RO_SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

pub struct Garage {
    pub endpoint: String,
    config: PathBuf,
    bin: PathBuf,
}

impl Garage {
    pub fn cli(&self, args: &[&str]) -> String {
        let out = super::succeed(
            Command::new(&self.bin)
                .arg("-c")
                .arg(&self.config)
                .args(args),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn binary() -> PathBuf {
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let installed = home.join(".cargo/bin/garage");
    let ok = |p: &PathBuf| {
        Command::new(p).arg("--version").output().is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(GARAGE_VERSION)
        })
    };
    if !ok(&installed) {
        let st = Command::new("cargo")
            // Only the LMDB engine the tests configure: a third of the default build.
            .args(["install", "garage", "--version", GARAGE_VERSION, "--locked"])
            .args(["--no-default-features", "--features", "lmdb,bundled-libs"])
            .status()
            .expect("cargo runs");
        assert!(st.success(), "cargo install garage {GARAGE_VERSION} failed");
    }
    assert!(
        ok(&installed),
        "garage {GARAGE_VERSION} is not at {}",
        installed.display()
    );
    installed
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn garage() -> &'static Garage {
    static G: OnceLock<Garage> = OnceLock::new();
    G.get_or_init(start)
}

/// Garage cannot be told to pick its own ports: free ones are chosen, and when another
/// process takes one before Garage binds it, Garage exits and is started again on new ones.
fn start() -> Garage {
    let bin = binary();
    let mut why = String::new();
    for attempt in 1..=5 {
        match try_start(&bin, attempt) {
            Ok(g) => return g,
            Err(e) => why = e,
        }
    }
    panic!("garage did not start in 5 attempts: {why}");
}

fn try_start(bin: &std::path::Path, attempt: u32) -> Result<Garage, String> {
    let dir = super::fresh_dir(&format!("garage-{}-{attempt}", std::process::id()));
    let (rpc, s3, admin) = (free_port(), free_port(), free_port());
    let config = dir.join("garage.toml");
    std::fs::write(
        &config,
        format!(
            r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "4425f5c26c5e11581d3223904324dcb5b5d5dfb14e5e7d3a6f8d0b8e6f2a1c3d"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    let (b, c, log) = (bin.to_path_buf(), config.clone(), dir.join("server.log"));
    let (exited_tx, exited) = std::sync::mpsc::channel();
    // The server belongs to a thread that lives as long as the test binary; when the binary
    // exits, the kernel kills the server (PR_SET_PDEATHSIG follows the spawning thread).
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(b);
        cmd.arg("-c")
            .arg(c)
            .arg("server")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // Waiting keeps this thread (and so the server) alive until the binary exits.
        let status = cmd.spawn().expect("garage starts").wait();
        let _ = exited_tx.send(status);
    });
    let g = Garage {
        endpoint: format!("http://127.0.0.1:{s3}"),
        config,
        bin: bin.to_path_buf(),
    };
    let log = || std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let mut id = None;
    for _ in 0..300 {
        if let Ok(status) = exited.try_recv() {
            return Err(format!("garage exited ({status:?}):\n{}", log()));
        }
        let out = Command::new(&g.bin)
            .arg("-c")
            .arg(&g.config)
            .arg("status")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains(&format!("127.0.0.1:{rpc}")))
        {
            id = line.split_whitespace().next().map(str::to_string);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let id = id.ok_or_else(|| format!("garage did not answer `status` within 30 s:\n{}", log()))?;
    // The S3 port is bound once the node answers; a port taken meanwhile shows here.
    std::net::TcpStream::connect(("127.0.0.1", s3))
        .map_err(|e| format!("garage's S3 port {s3} does not answer: {e}\n{}", log()))?;
    g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
    g.cli(&["layout", "apply", "--version", "1"]);
    g.cli(&["key", "import", "--yes", KEY_ID, SECRET, "-n", "kura-test"]);
    for bucket in [BUCKET, ABORT_BUCKET] {
        g.cli(&["bucket", "create", bucket]);
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            "kura-test",
        ]);
    }
    g.cli(&[
        "key",
        "import",
        "--yes",
        RO_KEY_ID,
        RO_SECRET,
        "-n",
        "kura-read-only",
    ]);
    g.cli(&[
        "bucket",
        "allow",
        "--read",
        BUCKET,
        "--key",
        "kura-read-only",
    ]);
    Ok(g)
}

/// A client of the test bucket, for writing behind kura's back.
pub fn client() -> object_store::aws::AmazonS3 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(&garage().endpoint)
        .with_allow_http(true)
        .with_region("garage")
        .with_access_key_id(KEY_ID)
        .with_secret_access_key(SECRET)
        .build()
        .unwrap()
}
