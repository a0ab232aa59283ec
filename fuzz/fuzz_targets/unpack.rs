//! The unpacker on arbitrary tar bytes, over a sandbox with a sentinel and symlinks outside
//! the root: it may refuse, fail or restore, but never panic and never change anything
//! outside the root.

#![no_main]

#[path = "../../tests/support/snapshot.rs"]
mod snapshot;

use kura::archive::{unpack_tar, Tree, UnpackOptions};
use libfuzzer_sys::fuzz_target;
use snapshot::outside_the_root;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().canonicalize().unwrap();
    let (ws, outside) = (dir.join("ws"), dir.join("outside"));
    let root = ws.join("nm");
    std::fs::create_dir_all(root.join("keep")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("pre")).unwrap();
    std::os::unix::fs::symlink("../../outside", root.join("pre-rel")).unwrap();
    let before = outside_the_root(&dir, &root);
    let opts = UnpackOptions {
        writers: 2,
        window_log_max: 27,
        declared: None,
        spans: true,
    };
    if let Ok(done) = unpack_tar(data, Tree::new(&ws, std::slice::from_ref(&root)), &opts) {
        done.commit();
    }
    assert_eq!(
        outside_the_root(&dir, &root),
        before,
        "wrote outside the root"
    );
    // A restore that reaches `/` through a chain would show here.
    assert!(!Path::new("/tmp/kura-escape").exists());
});
