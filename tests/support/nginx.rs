//! A real WebDAV server for the tests: nginx (Debian's package, installed with apt-get when
//! missing) on 127.0.0.1 with `dav_methods`, `create_full_put_path` and JSON autoindex, as the
//! README tells users to configure it. Started once per test binary, killed when it exits.
//! `/propfind/` lists directories only with WebDAV's PROPFIND (the dav-ext module), not as JSON;
//! `/private/` wants Basic auth (user `kura`, password `s3cret p@ss`); `/small/` takes bodies
//! of at most 1 KiB; `/readonly/` allows no writes.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub const USER: &str = "kura";
/// nginx's WebDAV extension module (PROPFIND), Debian's `libnginx-mod-http-dav-ext`.
const DAV_EXT: &str = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so";
pub const PASSWORD: &str = "s3cret p@ss";

pub struct Nginx {
    /// `http://127.0.0.1:PORT/`
    pub url: String,
    /// The directory the server stores under.
    pub root: PathBuf,
}

pub fn nginx() -> &'static Nginx {
    static N: OnceLock<Nginx> = OnceLock::new();
    N.get_or_init(start)
}

fn binary() -> PathBuf {
    let found = || {
        Command::new("nginx").arg("-v").output().is_ok() && std::path::Path::new(DAV_EXT).exists()
    };
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "nginx",
                "libnginx-mod-http-dav-ext",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("apt-get runs")
            .success()
    };
    // A fresh machine may have no package lists yet.
    if !found() && !install() {
        let _ = Command::new("apt-get").arg("update").status();
        assert!(install(), "apt-get install nginx failed");
    }
    assert!(found(), "nginx is not on PATH");
    PathBuf::from("nginx")
}

/// nginx cannot be told to pick its port: a free one is chosen, and when another process
/// takes it first nginx exits and is started again on another.
fn start() -> Nginx {
    let bin = binary();
    let mut why = String::new();
    for attempt in 1..=5 {
        match try_start(&bin, attempt) {
            Ok(n) => return n,
            Err(e) => why = e,
        }
    }
    panic!("nginx did not start in 5 attempts: {why}");
}

fn try_start(bin: &std::path::Path, attempt: u32) -> Result<Nginx, String> {
    let dir = super::fresh_dir(&format!("nginx-{}-{attempt}", std::process::id()));
    let root = dir.join("root");
    for d in [
        &root,
        &dir.join("tmp"),
        &root.join("private"),
        &root.join("readonly"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(
        dir.join("htpasswd"),
        format!("{USER}:{{PLAIN}}{PASSWORD}\n"),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            r#"load_module {DAV_EXT};
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{}}
http {{
  client_body_temp_path {d}/tmp;
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    root {d}/root;
    client_max_body_size 0;
    location / {{
      dav_methods PUT DELETE;
      create_full_put_path on;
      autoindex on;
      autoindex_format json;
    }}
    location /small/ {{
      client_max_body_size 1k;
      dav_methods PUT DELETE;
      create_full_put_path on;
      autoindex on;
      autoindex_format json;
    }}
    location /propfind/ {{
      dav_methods PUT DELETE;
      dav_ext_methods PROPFIND OPTIONS;
      create_full_put_path on;
    }}
    location /readonly/ {{
      autoindex on;
      autoindex_format json;
    }}
    location /private/ {{
      auth_basic "kura";
      auth_basic_user_file {d}/htpasswd;
      dav_methods PUT DELETE;
      create_full_put_path on;
      autoindex on;
      autoindex_format json;
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    let (exited_tx, exited) = std::sync::mpsc::channel();
    let (b, conf, prefix) = (bin.to_path_buf(), dir.join("nginx.conf"), dir.clone());
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(b);
        cmd.arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let status = cmd.spawn().expect("nginx starts").wait();
        let _ = exited_tx.send(status);
    });
    let log = || std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    for _ in 0..100 {
        if let Ok(status) = exited.try_recv() {
            return Err(format!("nginx exited ({status:?}):\n{}", log()));
        }
        if answers_as_nginx(port) {
            return Ok(Nginx {
                url: format!("http://127.0.0.1:{port}/"),
                root,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(format!("nginx did not listen within 10 s:\n{}", log()))
}

/// Whether nginx (and not another process that took the port) answers on it.
fn answers_as_nginx(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.contains("Server: nginx")
}
