//! The HTTP machinery against a server in this process: retries, `Retry-After`, the body's
//! cap and pace, and ranged reads.

use super::*;
use std::io::Write as _;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What the server does with one request.
#[derive(Clone)]
enum Answer {
    /// A whole reply: status, extra header lines, body.
    Reply(u16, &'static str, &'static [u8]),
    /// 200 with a chunked body that never ends; the server counts what it wrote.
    Endless,
    /// 200 declaring `len` bytes, one byte every `every`.
    Trickle { len: usize, every: Duration },
    /// Nothing at all: the connection stays open and quiet.
    Silent,
}

struct Server {
    url: String,
    requests: Arc<AtomicUsize>,
    /// Body bytes written by the `Endless` and `Trickle` answers.
    sent: Arc<AtomicUsize>,
}

/// A server that answers its nth request with `answers[n]` (the last one from then on), one
/// request per connection.
fn serve(answers: Vec<Answer>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let (r, s) = (requests.clone(), sent.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let n = r.fetch_add(1, Ordering::SeqCst);
            let answer = answers[n.min(answers.len() - 1)].clone();
            let s = s.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = answer_with(&mut conn, answer, &s);
            });
        }
    });
    Server {
        url,
        requests,
        sent,
    }
}

fn answer_with(
    conn: &mut std::net::TcpStream,
    answer: Answer,
    sent: &AtomicUsize,
) -> std::io::Result<()> {
    match answer {
        Answer::Reply(status, headers, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes())?;
            conn.write_all(body)
        }
        Answer::Endless => {
            conn.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")?;
            let chunk = [b'x'; 64 << 10];
            loop {
                conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                conn.write_all(&chunk)?;
                conn.write_all(b"\r\n")?;
                sent.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        }
        Answer::Trickle { len, every } => {
            conn.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").as_bytes())?;
            for _ in 0..len {
                std::thread::sleep(every);
                conn.write_all(b"x")?;
                sent.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
        Answer::Silent => {
            std::thread::sleep(Duration::from_secs(120));
            Ok(())
        }
    }
}

const QUICK: Retry = Retry {
    attempts: 3,
    first: Duration::from_millis(10),
    factor: 2.0,
    within: None,
};

fn get(server: &Server, limits: BodyLimits) -> Result<bytes::Bytes> {
    let rt = runtime().unwrap();
    let client = client(&Vars::default()).unwrap();
    let url = server.url.clone();
    rt.block_on(send_within(
        QUICK,
        limits,
        "get",
        || client.get(&url),
        |r| match r.status {
            200 => Verdict::Done(r.body),
            s if r.transient() => Verdict::Again(format!("get: HTTP {s}")),
            s => Verdict::Fail(anyhow::anyhow!("get: HTTP {s}")),
        },
    ))
}

#[test]
fn a_transient_failure_is_tried_again_and_a_refusal_is_not() {
    let s = serve(vec![
        Answer::Reply(503, "", b""),
        Answer::Reply(200, "", b"ok"),
    ]);
    assert_eq!(&get(&s, BODY).unwrap()[..], b"ok");
    assert_eq!(s.requests.load(Ordering::SeqCst), 2);

    let s = serve(vec![Answer::Reply(403, "", b"no")]);
    assert!(get(&s, BODY).is_err());
    assert_eq!(s.requests.load(Ordering::SeqCst), 1);

    let s = serve(vec![Answer::Reply(500, "", b"")]);
    let err = get(&s, BODY).unwrap_err().to_string();
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert_eq!(s.requests.load(Ordering::SeqCst), 3);
}

/// A store that accepts connections and never answers is given up on within
/// `KURA_HTTP_TIMEOUT`, retries included: each attempt waits a third of it, and no attempt
/// starts once two thirds are spent (with 10 attempts allowed, 3 fit).
#[test]
fn a_silent_server_is_given_up_on_within_the_timeout_retries_included() {
    let s = serve(vec![Answer::Silent]);
    let vars = Vars::from_pairs([("KURA_HTTP_TIMEOUT", "3")]);
    let client = client(&vars).unwrap();
    let rt = runtime().unwrap();
    let policy = Retry {
        attempts: 10,
        ..QUICK
    }
    .within(idle(&vars));
    let started = Instant::now();
    let err = rt
        .block_on(send(
            policy,
            "get",
            || client.get(&s.url),
            |r| Verdict::Done(r.status),
        ))
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3500), "{took:?}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let tries = s.requests.load(Ordering::SeqCst);
    assert!((2..=3).contains(&tries), "{tries} attempts");
    assert!(err.contains("KURA_HTTP_TIMEOUT"), "{err}");
}

/// The budget is for silence: a store that answers, asking for a wait longer than the
/// budget's share, is waited for and asked again.
#[test]
fn a_store_that_answers_is_not_cut_short_by_the_silence_budget() {
    let s = serve(vec![
        Answer::Reply(429, "retry-after: 2\r\n", b""),
        Answer::Reply(200, "", b"ok"),
    ]);
    let vars = Vars::from_pairs([("KURA_HTTP_TIMEOUT", "3")]);
    let client = client(&vars).unwrap();
    let rt = runtime().unwrap();
    let got = rt.block_on(send(
        QUICK.within(idle(&vars)),
        "get",
        || client.get(&s.url),
        |r| match r.status {
            200 => Verdict::Done(r.body),
            st => Verdict::Again(format!("HTTP {st}")),
        },
    ));
    assert_eq!(&got.unwrap()[..], b"ok");
}

#[test]
fn a_retry_after_of_any_size_is_at_most_a_minute() {
    for (v, want) in [("1e20", 60.0), ("5", 5.0), ("0.5", 0.5)] {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", v.parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs_f64(want)), "{v}");
    }
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("retry-after", "-1".parse().unwrap());
    assert_eq!(retry_after(&h), None);
}

#[test]
fn retry_after_sets_the_wait() {
    let s = serve(vec![
        Answer::Reply(429, "retry-after: 1\r\n", b""),
        Answer::Reply(200, "", b"ok"),
    ]);
    let t = Instant::now();
    assert_eq!(&get(&s, BODY).unwrap()[..], b"ok");
    // The policy's own wait is 10 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn an_endless_body_stops_at_the_cap_and_is_not_tried_again() {
    let s = serve(vec![Answer::Endless]);
    let limits = BodyLimits {
        cap: 1 << 20,
        ..BODY
    };
    let err = get(&s, limits).unwrap_err().to_string();
    assert!(err.contains("larger than"), "{err}");
    assert_eq!(s.requests.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(200));
    // What the server got out before the connection closed: the cap and the socket buffers,
    // not the gigabytes it would have sent.
    let sent = s.sent.load(Ordering::SeqCst);
    assert!(sent < 32 << 20, "{sent}");
}

#[test]
fn a_declared_length_over_the_cap_reads_nothing() {
    let s = serve(vec![Answer::Reply(200, "", &[b'x'; 4096])]);
    let limits = BodyLimits { cap: 100, ..BODY };
    let err = get(&s, limits).unwrap_err().to_string();
    assert!(err.contains("larger than the 100 bytes"), "{err}");
}

#[test]
fn a_body_slower_than_the_minimum_rate_is_given_up_on() {
    let s = serve(vec![Answer::Trickle {
        len: 1000,
        every: Duration::from_millis(100),
    }]);
    let limits = BodyLimits {
        cap: 1 << 20,
        grace: Duration::from_millis(500),
        min_rate: 1 << 10,
    };
    let t = Instant::now();
    let err = get(&s, limits).unwrap_err().to_string();
    assert!(err.contains("too slowly"), "{err}");
    // One try of about half a second, not the 100 s the server would take: a server that
    // trickles would trickle again.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(s.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn ranged_reads_hand_on_parts_in_order_and_end_where_the_object_does() {
    let rt = runtime().unwrap();
    let data: Arc<Vec<u8>> = Arc::new((0..100u8).collect());
    let read = |size: u64, stored: usize| {
        let d = data.clone();
        let mut r = ranged(&rt, size, 7, 3, None, move |r| {
            let d = d.clone();
            async move {
                let end = (r.end as usize).min(stored);
                let start = (r.start as usize).min(end);
                Ok(bytes::Bytes::copy_from_slice(&d[start..end]))
            }
        });
        let mut out = Vec::new();
        r.read_to_end(&mut out).map(|_| out)
    };
    assert_eq!(read(100, 100).unwrap(), *data);
    // The object is shorter than its size said: the stream ends where it does.
    assert_eq!(read(100, 40).unwrap(), data[..40]);
    // A store that sends more than a range asked for is an error, not more bytes.
    let mut r = ranged(&rt, 10, 5, 1, None, |_| async {
        Ok(bytes::Bytes::from_static(b"0123456789"))
    });
    let mut out = Vec::new();
    assert!(r.read_to_end(&mut out).is_err());
}

#[test]
fn a_ranged_read_past_its_deadline_fails_with_the_setting_named() {
    let rt = runtime().unwrap();
    let mut r = ranged(
        &rt,
        10,
        5,
        1,
        Some((Duration::from_millis(200), "KURA_X")),
        |_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(bytes::Bytes::new())
        },
    );
    let t = Instant::now();
    let mut out = Vec::new();
    let err = r.read_to_end(&mut out).unwrap_err().to_string();
    assert!(err.contains("KURA_X"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
}
