//! The tests that measure a kura process's peak memory, in a binary of their own. Linux counts
//! a child's peak resident memory from its parent's at the exec (a spawned process starts in
//! its parent's address space), so the measuring process must stay small: here it runs
//! nothing but these tests.

#[path = "support/snapshot.rs"]
mod snapshot;
mod support;

mod boundary;

use support::nginx::nginx;

#[test]
fn a_gib_archive_both_ways_in_bounded_memory_on_http() {
    support::gib_both_ways_in_bounded_memory(
        &format!("{}rss-{}/", nginx().url, std::process::id()),
        "archive",
    );
}

#[test]
fn a_gib_chunked_entry_both_ways_in_bounded_memory_on_http() {
    support::gib_both_ways_in_bounded_memory(
        &format!("{}rss-chunked-{}/", nginx().url, std::process::id()),
        "chunked",
    );
}

#[test]
fn a_gib_chunked_entry_both_ways_in_bounded_memory_on_the_local_store() {
    let s = support::Sandbox::new();
    support::gib_both_ways_in_bounded_memory(
        &format!("file://{}", s.dir.path().join("gib").display()),
        "chunked",
    );
}

#[test]
fn a_gib_archive_both_ways_in_bounded_memory_on_oci() {
    support::gib_both_ways_in_bounded_memory(
        &format!(
            "oci://{}/kura/rss-{}",
            support::registry::open().addr,
            std::process::id()
        ),
        "archive",
    );
}

#[test]
fn a_gib_chunked_entry_both_ways_in_bounded_memory_on_s3() {
    use support::garage::*;
    let g = garage();
    support::gib_both_ways_in_bounded_memory_with(
        &format!("s3://{BUCKET}/rss-chunked-{}", std::process::id()),
        "chunked",
        &[
            ("KURA_S3_ENDPOINT", g.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_REGION", "garage"),
        ],
    );
}

#[test]
fn a_gib_archive_both_ways_in_bounded_memory_on_s3() {
    use support::garage::*;
    let g = garage();
    support::gib_both_ways_in_bounded_memory_with(
        &format!("s3://{BUCKET}/rss-{}", std::process::id()),
        "archive",
        &[
            ("KURA_S3_ENDPOINT", g.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_REGION", "garage"),
        ],
    );
}
