//! A stand-in HTTP server for what the real servers cannot show: a registry's tags in pages
//! joined by `Link`, redirects to another host (which must never see the credentials), and
//! the replies of a hostile or broken server. One thread answers each request in turn with
//! what `answer` returns; every connection is closed after its reply.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Http {
    pub method: String,
    pub path: String,
    pub auth: bool,
    pub authorization: Option<String>,
    pub range: Option<(usize, usize)>,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Http {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serve on `ip` with `answer` (status line, headers, body) for every request.
pub fn serve(
    ip: &str,
    answer: impl Fn(&Http) -> (String, Vec<(String, String)>, Vec<u8>) + Send + 'static,
) -> String {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let mut first = text.split_whitespace();
            let (method, path) = (
                first.next().unwrap_or("").to_string(),
                first.next().unwrap_or("").to_string(),
            );
            let header = |name: &str| {
                text.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let range = header("range").and_then(|r| {
                let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            });
            let headers = text
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
                })
                .collect();
            let req = Http {
                headers,
                method,
                path,
                auth: header("authorization").is_some(),
                authorization: header("authorization"),
                range,
            };
            let (status, headers, body) = answer(&req);
            let mut out = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            let _ = c.write_all(out.as_bytes());
            if req.method != "HEAD" {
                let _ = c.write_all(&body);
            }
        }
    });
    addr
}

pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

pub fn bump(c: &AtomicUsize) {
    c.fetch_add(1, Ordering::Relaxed);
}
