//! The S3 store's URL, `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&part_size=8M&concurrency=8]`,
//! and the variables that set the same (`KURA_S3_ENDPOINT`, `KURA_S3_PART_SIZE`,
//! `KURA_S3_CONCURRENCY`, and the `AWS_*` variables the AWS tools read).

use super::{Tuning, PARALLEL, PART};
use crate::error::user_error;
use crate::settings;
use crate::vars::Vars;
use anyhow::Result;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::{HttpClient, HttpConnector};
use object_store::{ClientOptions, RetryConfig};
use std::time::Duration;

pub(super) struct Config {
    pub bucket: String,
    pub prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
    pub tuning: Tuning,
    url: String,
}

impl Config {
    /// Every mistake here is bad input (exit 2), named with the URL.
    pub fn parse(url: &str, vars: &Vars) -> Result<Config> {
        let bad = |msg: String| user_error(format!("store URL {url:?}: {msg}"));
        let rest = &url["s3://".len()..];
        let (loc, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = loc.split_once('/').unwrap_or((loc, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket; write it s3://BUCKET/PREFIX".into()));
        }
        let prefix = prefix.trim_matches('/');
        let odd = |seg: &str| {
            seg.is_empty() || seg == "." || seg == ".." || seg.chars().any(char::is_control)
        };
        if !prefix.is_empty() && prefix.split('/').any(odd) {
            return Err(bad(format!(
                "the prefix {prefix:?} has an empty, '.' or '..' segment (or a control character); write it like s3://{bucket}/team/cache"
            )));
        }
        let mut endpoint = vars.string(settings::S3_ENDPOINT.name);
        let mut region = None;
        let mut part = vars.string(settings::S3_PART_SIZE.name);
        let mut parallel = vars.string(settings::S3_CONCURRENCY.name);
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let v = Some(v.into_owned());
            match &*k {
                "endpoint" => endpoint = v,
                "region" => region = v,
                "part_size" => part = v,
                "concurrency" => parallel = v,
                _ => {
                    return Err(bad(format!(
                        "unknown option {k:?} (known: endpoint, region, part_size, concurrency)"
                    )))
                }
            }
        }
        Ok(Config {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint,
            region,
            tuning: tuning(part, parallel)?,
            url: url.to_string(),
        })
    }

    /// The client: credentials and settings from the `AWS_*` variables, as
    /// `AmazonS3Builder::from_env` reads them but from the variables kura was given.
    pub fn client(&self, vars: &Vars) -> Result<AmazonS3> {
        crate::store::http::tls();
        let mut b = AmazonS3Builder::new().with_bucket_name(&self.bucket);
        // An endpoint that hangs is given up within KURA_HTTP_TIMEOUT (default 30 s) in all:
        // each attempt may stay quiet a third of it, retries stop once two thirds are spent.
        let (limit, quiet) = (
            crate::store::http::idle(vars),
            crate::store::http::quiet(vars),
        );
        let client = ClientOptions::new()
            .with_connect_timeout(quiet.min(Duration::from_secs(5)))
            .with_read_timeout(quiet);
        let retry = RetryConfig {
            retry_timeout: limit - quiet,
            ..RetryConfig::default()
        };
        // First: the client options would reset what the settings below put in them.
        b = b
            .with_client_options(client)
            .with_retry(retry)
            .with_http_connector(SameOrigin {
                connect: quiet.min(Duration::from_secs(5)),
                read: quiet,
            });
        for (k, v) in vars.all() {
            if k.starts_with("AWS_") {
                if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
        }
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        b.build().map_err(|e| {
            user_error(format!(
                "store URL {:?}: cannot configure the S3 client: {e}",
                self.url
            ))
        })
    }
}

/// object_store's own client, but one that never follows a redirect to another origin (the
/// session token travels as a plain header, `x-amz-security-token`, that a redirect would
/// carry to whoever the reply names), and whose replies are capped (`capped.rs`).
#[derive(Debug)]
struct SameOrigin {
    connect: Duration,
    read: Duration,
}

impl HttpConnector for SameOrigin {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<HttpClient> {
        reqwest::Client::builder()
            .user_agent(concat!("kura/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect)
            .read_timeout(self.read)
            .redirect(crate::store::http::same_origin_redirects())
            .build()
            .map(|c| HttpClient::new(super::capped::Capped(c)))
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })
    }
}

fn tuning(part: Option<String>, parallel: Option<String>) -> Result<Tuning> {
    let part = match part {
        Some(p) => crate::units::parse_size(&p)? as usize,
        None => PART,
    };
    if !(5 << 20..=5 << 30).contains(&part) {
        return Err(user_error(format!(
            "S3 part size {part} B is outside what S3 allows (5 MiB to 5 GiB)"
        )));
    }
    let parallel = match parallel {
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|c| (1..=64).contains(c))
            .ok_or_else(|| {
                user_error(format!(
                    "S3 concurrency {c:?} must be a number from 1 to 64"
                ))
            })?,
        None => PARALLEL,
    };
    Ok(Tuning { part, parallel })
}
