//! A real OCI registry for the tests: Debian's `docker-registry` (distribution 2.8.2, installed
//! with apt-get when missing) on 127.0.0.1, deletes enabled, started once per test binary and
//! killed when it exits. `open()` takes anyone; `basic()` wants `kura` / `s3cret` (htpasswd,
//! bcrypt).

use std::io::BufRead;
use std::path::{Path, PathBuf};
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

impl Registry {
    /// One plain request to the registry, without credentials: its status and body.
    #[allow(dead_code)]
    pub fn http(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\n{headers}Content-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status = String::from_utf8_lossy(&out[9..12]).parse().unwrap();
        (status, out[split + 4..].to_vec())
    }
}

/// The OCI image-spec's JSON schemas (draft-04), from Debian's Go package of the spec
/// (`golang-github-opencontainers-image-spec-dev`, 1.1.0~rc2 on bookworm), installed with the
/// registry.
#[allow(dead_code)]
pub fn image_spec_schemas() -> PathBuf {
    install();
    PathBuf::from(SCHEMAS)
}

const SCHEMAS: &str = "/usr/share/gocode/src/github.com/opencontainers/image-spec/schema";

pub fn open() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| start("open", false))
}

/// A registry of its own for the test that runs the registry's garbage collection: run on the
/// shared one, it deletes what other tests are uploading at that moment (a manifest put while
/// it marks is untagged to it), which no registry allows either.
pub fn collected() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| start("collected", false))
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
    let has_schemas = || {
        Path::new(SCHEMAS)
            .join("image-manifest-schema.json")
            .exists()
    };
    if found() && has_htpasswd() && has_schemas() {
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
                "golang-github-opencontainers-image-spec-dev",
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
            "apt-get install docker-registry apache2-utils golang-github-opencontainers-image-spec-dev failed"
        );
    }
    assert!(found() && has_htpasswd() && has_schemas());
}

fn start(name: &str, auth: bool) -> Registry {
    install();
    let dir = super::fresh_dir(&format!("registry-{name}-{}", std::process::id()));
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
    serve(&dir)
}

/// A registry behind token auth (the flow GHCR, Docker Hub and ECR use): a 401 challenge names
/// a token service, here a small one in this process. It signs ES256 tokens with a key made by
/// openssl; `kura` / `s3cret` get what they ask for, anyone else pull only, wrong credentials
/// a 401.
pub fn token() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(start_token)
}

fn start_token() -> Registry {
    install();
    let dir = super::fresh_dir(&format!("registry-token-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let openssl = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(st.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-subj",
        "/CN=kura-test",
    ]);
    openssl(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
    ]);
    openssl(&[
        "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
    ]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let realm = format!("http://{}/token", listener.local_addr().unwrap());
    let key = std::fs::read(dir.join("key.der")).unwrap();
    let cert = std::fs::read(dir.join("cert.der")).unwrap();
    std::thread::spawn(move || serve_tokens(listener, key, cert));
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n  secret: kura-test\nauth:\n  token:\n    realm: {realm}\n    service: kura-test-registry\n    issuer: kura-test-issuer\n    rootcertbundle: {}\n",
            dir.join("data").display(),
            dir.join("cert.pem").display()
        ),
    )
    .unwrap();
    serve(&dir)
}

impl Registry {
    /// The registry's own garbage collection (`docker-registry garbage-collect
    /// --delete-untagged`): manifests no tag names go, then blobs no manifest references. The registry keeps serving meanwhile, as in a test
    /// nothing else writes to it then.
    #[allow(dead_code)]
    pub fn collect_garbage(&self) {
        let conf = self.data.parent().unwrap().join("config.yml");
        super::succeed(
            Command::new("docker-registry")
                .args(["garbage-collect", "--delete-untagged"])
                .arg(&conf),
        );
    }
}

/// Start docker-registry on `dir/config.yml`; returns once it says where it listens.
fn serve(dir: &std::path::Path) -> Registry {
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

fn serve_tokens(listener: std::net::TcpListener, key: Vec<u8>, cert: Vec<u8>) {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rng = ring::rand::SystemRandom::new();
    let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key,
        &rng,
    )
    .expect("an ECDSA P-256 key");
    let granted = format!("Basic {}", b64.encode(format!("{USER}:{PASSWORD}")));
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut buf = vec![0u8; 16 << 10];
        let n = conn.read(&mut buf).unwrap_or(0);
        let req = String::from_utf8_lossy(&buf[..n]).into_owned();
        let target = req.split_whitespace().nth(1).unwrap_or("").to_string();
        let auth = req
            .lines()
            .find_map(|l| {
                l.strip_prefix("Authorization: ")
                    .or_else(|| l.strip_prefix("authorization: "))
            })
            .map(str::trim);
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let scope = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let reply = |status: &str, body: String| {
            format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        };
        let out = match auth {
            Some(a) if a != granted => reply(
                "401 Unauthorized",
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.into(),
            ),
            _ => {
                // "repository:NAME:pull,push": everything to the known user, pull to anyone.
                let mut parts = scope.splitn(3, ':');
                let (_, name, actions) = (
                    parts.next(),
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or(""),
                );
                let actions: Vec<&str> = actions
                    .split(',')
                    .filter(|a| !a.is_empty() && (auth.is_some() || *a == "pull"))
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header =
                    serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [b64.encode(&cert)]});
                let claims = serde_json::json!({
                    "iss": "kura-test-issuer", "sub": if auth.is_some() { USER } else { "" },
                    "aud": "kura-test-registry", "exp": now + 300, "nbf": now - 10, "iat": now,
                    "jti": format!("{now}-{}", std::process::id()),
                    "access": [{"type": "repository", "name": name, "actions": actions}],
                });
                let signing = format!(
                    "{}.{}",
                    url.encode(header.to_string()),
                    url.encode(claims.to_string())
                );
                let sig = signer.sign(&rng, signing.as_bytes()).expect("signs");
                let token = format!("{signing}.{}", url.encode(sig.as_ref()));
                reply(
                    "200 OK",
                    serde_json::json!({"token": token, "expires_in": 300}).to_string(),
                )
            }
        };
        let _ = conn.write_all(out.as_bytes());
    }
}
