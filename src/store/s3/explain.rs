//! S3 failures in one line that names the cause and what to do: no credentials (and where
//! kura looked), an endpoint that cannot be reached or does not answer, a missing bucket,
//! rejected credentials, or a refusal (with the permission to grant).

use anyhow::anyhow;

/// Where the AWS credential chain looks, in order, when no keys are given.
const CHAIN: &str = "AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, then the instance metadata endpoint http://169.254.169.254";

pub fn explain(e: object_store::Error, bucket: &str, permission: &str) -> anyhow::Error {
    // The whole chain: a timeout shows only in the transport error's sources.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    // S3 error bodies carry <Code> and <Message>; they say more than the transport chain.
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{t}>"))? + start;
        Some(text[start..end].to_string())
    };
    let server = match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => text.clone(),
    };
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&[
        "169.254.169.254",
        "169.254.170.2",
        "/latest/api/token",
        "/latest/meta-data",
    ]) {
        // The credential chain ended at the instance (or container) metadata endpoint, which
        // refused or did not answer: no credentials were found anywhere.
        anyhow!(
            "no S3 credentials found: kura looked for {CHAIN} ({text}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an instance role is attached"
        )
    } else if has(&["NoSuchBucket"]) {
        anyhow!("S3 bucket {bucket:?} does not exist (or is in another region); create it or fix the store URL")
    } else if has(&["timed out", "Timeout", "deadline has elapsed"]) {
        anyhow!("the S3 endpoint for bucket {bucket:?} did not answer in time (KURA_HTTP_TIMEOUT, default 30 s); check KURA_S3_ENDPOINT and the network ({text})")
    } else if has(&[
        "error sending request",
        "dns error",
        "Connection refused",
        "connect error",
    ]) {
        anyhow!("cannot reach the S3 endpoint for bucket {bucket:?}; check KURA_S3_ENDPOINT (or ?endpoint= in the store URL) and the network ({text})")
    } else if has(&[
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "Invalid signature",
        "No such key",
        "ExpiredToken",
    ]) {
        anyhow!("S3 rejected the credentials ({server}); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN")
    } else if has(&["403", "AccessDenied", "Forbidden"]) {
        anyhow!("S3 refused the request on bucket {bucket:?} ({server}); the credentials need {permission}")
    } else {
        anyhow!("S3 request on bucket {bucket:?} failed: {server}")
    }
}
