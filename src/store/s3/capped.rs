//! object_store reads some replies whole on its own (listings, multipart replies, errors):
//! every reply of the S3 client passes through here, so that none is larger than a range asks
//! for, or [`http::BODY`]'s cap, whatever the server sends or declares, and none comes slower
//! than [`http::BODY`]'s pace (the same rule as `http::read_within`'s).

use crate::store::http;
use bytes::Bytes;
use http_body::{Body, Frame};
use object_store::client::{HttpError, HttpErrorKind, HttpRequest, HttpResponse};
use object_store::client::{HttpRequestBody, HttpResponseBody, HttpService};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The largest listing page read.
const LISTING_CAP: u64 = 8 << 20;

/// object_store's reqwest client with every reply body capped.
#[derive(Debug)]
pub(super) struct Capped(pub reqwest::Client);

#[async_trait::async_trait]
impl HttpService for Capped {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        // A ranged read may take its range (and a little slack for a server that ignores
        // the end); anything else what every whole reply may be.
        // A listing page (a thousand keys, some 300 KB) is parsed whole: kept small.
        let listing = req.uri().query().is_some_and(|q| q.contains("list-type=2"));
        let cap = req
            .headers()
            .get("range")
            .and_then(|r| r.to_str().ok())
            .and_then(range_len)
            .unwrap_or(if listing {
                LISTING_CAP
            } else {
                http::BODY.cap as u64
            })
            .min(http::BODY.cap as u64);
        let (parts, body) = req.into_parts();
        let url = parts
            .uri
            .to_string()
            .parse()
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        let mut out = reqwest::Request::new(parts.method, url);
        *out.headers_mut() = parts.headers;
        *out.body_mut() = Some(body_of(body));
        let reply = self.0.execute(out).await.map_err(transport)?;
        if reply.content_length().is_some_and(|n| n > cap) {
            return Err(too_large(cap));
        }
        let reply: ::http::Response<reqwest::Body> = reply.into();
        let (parts, body) = reply.into_parts();
        let started = tokio::time::Instant::now();
        let body = HttpResponseBody::new(CappedBody {
            inner: body,
            left: cap,
            cap,
            started,
            next_by: Box::pin(tokio::time::sleep_until(started + http::BODY.grace)),
        });
        Ok(HttpResponse::from_parts(parts, body))
    }
}

/// The request body as reqwest takes it, as object_store's own client hands it on.
fn body_of(body: HttpRequestBody) -> reqwest::Body {
    if let Some(b) = body.as_bytes() {
        return reqwest::Body::from(b.clone());
    }
    reqwest::Body::wrap_stream(http::pieces(body))
}

/// The length a `bytes=a-b` range asks for.
fn range_len(r: &str) -> Option<u64> {
    let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    b.checked_sub(a)?.checked_add(1)
}

fn too_large(cap: u64) -> HttpError {
    HttpError::new(
        HttpErrorKind::Decode,
        std::io::Error::other(format!(
            "the reply is larger than the {cap} bytes it may be; the server is broken"
        )),
    )
}

fn transport(e: reqwest::Error) -> HttpError {
    let kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_body() || e.is_request() {
        HttpErrorKind::Interrupted
    } else {
        HttpErrorKind::Unknown
    };
    HttpError::new(kind, e.without_url())
}

/// A reply body that ends in an error, not in memory, once it passes its cap, and not in a
/// wait without end once it falls behind its pace.
struct CappedBody {
    inner: reqwest::Body,
    left: u64,
    cap: u64,
    started: tokio::time::Instant,
    /// When the next piece must have come: the grace, and a second for each `min_rate`
    /// bytes so far.
    next_by: Pin<Box<tokio::time::Sleep>>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                if self.next_by.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(HttpError::new(
                        HttpErrorKind::Timeout,
                        std::io::Error::other("the reply came too slowly"),
                    ))));
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(transport(e)))),
            Poll::Ready(Some(Ok(f))) => f,
        };
        if let Some(data) = frame.data_ref() {
            let n = data.len() as u64;
            if n > self.left {
                return Poll::Ready(Some(Err(too_large(self.cap))));
            }
            self.left -= n;
            let got = self.cap - self.left;
            let allowed =
                http::BODY.grace + std::time::Duration::from_secs(got / http::BODY.min_rate.max(1));
            let by = self.started + allowed;
            self.next_by.as_mut().reset(by);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
