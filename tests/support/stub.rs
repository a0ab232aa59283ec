//! A stand-in HTTP server for what the real servers cannot show: a registry's tags in pages
//! joined by `Link`, redirects to another host (which must never see the credentials), and
//! the replies of a hostile or broken server. One thread answers each request in turn with
//! what `answer` returns; every connection is closed after its reply.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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
    pub body: Vec<u8>,
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
    answer: impl Fn(&Http) -> (String, Vec<(String, String)>, Vec<u8>) + Send + Sync + 'static,
) -> String {
    serve_raw(ip, move |req, c| {
        let (status, headers, body) = answer(req);
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
    })
}

/// Serve on `ip`, each connection on its own thread, with `answer` writing the whole reply
/// itself: for replies no honest server sends (without end, a byte at a time, lying about
/// their length). The connection closes when `answer` returns.
pub fn serve_raw(
    ip: &str,
    answer: impl Fn(&Http, &mut TcpStream) + Send + Sync + 'static,
) -> String {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let req = read_request(&mut c);
                answer(&req, &mut c);
            });
        }
    });
    addr
}

/// A request's head, and its body when it says how long it is.
fn read_request(c: &mut TcpStream) -> Http {
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
    let headers: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let range = header("range").and_then(|r| {
        let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    });
    // Read a small body whole so that the client sees its request taken.
    let len: usize = header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(64 << 20)];
    let _ = c.read_exact(&mut body);
    Http {
        method,
        path,
        auth: header("authorization").is_some(),
        authorization: header("authorization"),
        range,
        headers,
        body,
    }
}

pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

pub fn bump(c: &AtomicUsize) {
    c.fetch_add(1, Ordering::Relaxed);
}
