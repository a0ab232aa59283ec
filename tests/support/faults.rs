//! A proxy that breaks chosen requests on their way to a real server on 127.0.0.1, as a flaky
//! network does: the reply to the n-th request of a method is lost after the server has done
//! the work, a request's body is cut halfway, or a reply is cut halfway. Every other request
//! goes through untouched, one per connection (the proxy asks both sides to close after it).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// The server gets the whole request and answers; the client never hears the answer.
    LoseReply,
    /// The server gets the head and half the body, then the connection breaks.
    CutBody,
    /// The client gets the head and half the reply's bytes, then the connection breaks.
    CutReply,
    /// The server never hears of the request; the client waits, the connection open, for an
    /// answer that never comes (until it gives up, or two minutes pass).
    Hang,
    /// The proxy answers with this status and a registry's error body, as a server that
    /// refuses the request.
    Status(u16),
}

/// Break the `nth` (from 1) request with `method` whose path contains `path`.
#[derive(Clone, Debug)]
pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub nth: usize,
    pub fault: Fault,
}

pub fn rule(method: &'static str, path: &'static str, nth: usize, fault: Fault) -> Rule {
    Rule {
        method,
        path,
        nth,
        fault,
    }
}

pub struct Proxy {
    /// `127.0.0.1:PORT`
    pub addr: String,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// Requests seen per rule, in rule order.
    seen: Vec<usize>,
    /// The rules that fired.
    fired: Vec<Rule>,
    /// Every request the server answered, as "METHOD path STATUS".
    log: Vec<String>,
}

impl Proxy {
    /// Replace the rules (counts start again).
    pub fn set(&self, rules: Vec<Rule>) {
        let mut s = self.state.lock().unwrap();
        s.seen = vec![0; rules.len()];
        s.rules = rules;
        s.fired.clear();
    }

    /// The rules that fired since the last `set`.
    pub fn fired(&self) -> Vec<Rule> {
        self.state.lock().unwrap().fired.clone()
    }

    /// Every request the server answered so far, as "METHOD path STATUS".
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

/// A proxy to `upstream` (`HOST:PORT`) with no rules yet.
pub fn proxy(upstream: &str) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let (state, upstream) = (shared.clone(), upstream.clone());
            std::thread::spawn(move || {
                let _ = relay(c, &upstream, &state);
            });
        }
    });
    Proxy { addr, state }
}

fn relay(mut client: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let head = read_until(&mut client, b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let header = |name: &str| {
        text.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    // The body as it came (a chunked one keeps its framing).
    let body = if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut client)?
    } else {
        let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0u8; length];
        client.read_exact(&mut body)?;
        body
    };
    let fault = {
        let mut s = state.lock().unwrap();
        let mut hit = None;
        for i in 0..s.rules.len() {
            let r = s.rules[i].clone();
            if r.method == method && path.contains(r.path) {
                s.seen[i] += 1;
                if s.seen[i] == r.nth && hit.is_none() {
                    s.fired.push(r.clone());
                    hit = Some(r.fault);
                }
            }
        }
        hit
    };
    match fault {
        Some(Fault::Hang) => {
            client.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
            let _ = client.read(&mut [0u8; 1]); // returns when the client gives up
            return Ok(());
        }
        Some(Fault::Status(status)) => {
            let body = r#"{"errors":[{"code":"DENIED","message":"refused by the test"}]}"#;
            write!(
                client,
                "HTTP/1.1 {status} Refused\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        _ => {}
    }
    // The same head, asking the server to close after its answer.
    let mut out = String::new();
    for (i, line) in text.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        let name = line.split(':').next().unwrap_or("").trim();
        if i > 0
            && (name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(out.as_bytes())?;
    if fault == Some(Fault::CutBody) {
        server.write_all(&body[..body.len() / 2])?;
        std::thread::sleep(std::time::Duration::from_millis(100));
        let _ = server.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    server.write_all(&body)?;
    let mut reply = Vec::new();
    server.read_to_end(&mut reply)?;
    let status = String::from_utf8_lossy(reply.get(9..12).unwrap_or_default()).into_owned();
    state
        .lock()
        .unwrap()
        .log
        .push(format!("{method} {path} {status}"));
    match fault {
        Some(Fault::LoseReply) => {}
        Some(Fault::CutReply) => {
            let split = reply
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |p| p + 4);
            let _ = client.write_all(&reply[..split + (reply.len() - split) / 2]);
        }
        _ => client.write_all(&reply)?,
    }
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// A chunked body, framing and all, up to its last chunk and trailers.
fn read_chunked(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    loop {
        let line = read_until(c, b"\r\n")?;
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        let size = usize::from_str_radix(text.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other(format!("a bad chunk size line: {text:?}")))?;
        if size == 0 {
            loop {
                let trailer = read_until(c, b"\r\n")?;
                raw.extend_from_slice(&trailer);
                if trailer == b"\r\n" {
                    return Ok(raw);
                }
            }
        }
        let at = raw.len();
        raw.resize(at + size + 2, 0);
        c.read_exact(&mut raw[at..])?;
    }
}

/// Bytes up to and including `end` (a line, or a head ending in a blank line).
fn read_until(c: &mut TcpStream, end: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(end) {
        if c.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.push(byte[0]);
    }
    Ok(got)
}
