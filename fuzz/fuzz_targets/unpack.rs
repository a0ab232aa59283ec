//! The unpacker on arbitrary tar bytes, over a sandbox with a sentinel and symlinks outside
//! the root: it may refuse, fail or restore, but never panic and never change anything
//! outside the root.

#![no_main]

use kura::archive::{unpack_tar, Tree, UnpackOptions};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn outside_the_root(dir: &Path, root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.starts_with(root) {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        let content = if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        let mtime = if Some(p.as_path()) == root.parent() {
            0
        } else {
            m.mtime_nsec()
        };
        out.insert(p, (m.mode(), m.size(), mtime, m.ino(), content));
    }
    out
}

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
