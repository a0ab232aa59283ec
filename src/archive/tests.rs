//! Round trips, and a corpus of hostile archives the extractor must refuse.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn opts() -> PackOptions {
    PackOptions {
        level: 3,
        workers: 2,
        readers: 3,
        manifest: true,
        progress: None,
        raw: false,
        reuse: None,
    }
}

fn unpack_opts() -> UnpackOptions {
    UnpackOptions {
        writers: 2,
        window_log_max: 30,
        declared: None,
        spans: true,
    }
}

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[test]
fn round_trip_keeps_links_modes_mtimes_and_long_names() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let long = format!("nm/{}/{}.txt", "d".repeat(120), "é".repeat(40));
    write(&src.join(&long), b"long");
    write(&src.join("nm/a/bin.sh"), b"#!/bin/sh\n");
    std::fs::set_permissions(
        src.join("nm/a/bin.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write(&src.join("nm/big.bin"), &big);
    std::fs::hard_link(src.join("nm/big.bin"), src.join("nm/big-link.bin")).unwrap();
    std::os::unix::fs::symlink("a/bin.sh", src.join("nm/run")).unwrap();
    let mtime = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_file_mtime(src.join("nm/a/bin.sh"), mtime).unwrap();

    let sel = crate::select::select(&src, &["nm".to_string()], None).unwrap();
    let (buf, stats) = pack(replay(&sel.entries), Vec::new(), &opts()).unwrap();
    assert_eq!(stats.files, 3); // the hard link's second name carries no data
                                // Content digests as sha256sum computes them, for both names of the hard link.
    let out = std::process::Command::new("sha256sum")
        .arg(src.join("nm/big.bin"))
        .output()
        .unwrap();
    let want = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    assert_eq!(stats.manifest["nm/big.bin"], want);
    assert_eq!(stats.manifest["nm/big-link.bin"], want);

    let dst = t.path().join("dst");
    let out = unpack(
        buf.as_slice(),
        Tree::new(&dst, &[dst.join("nm")]),
        &unpack_opts(),
    )
    .unwrap();
    assert!(out.refused.is_empty(), "{:?}", out.refused);
    assert!(out.commit().is_empty());
    assert_eq!(std::fs::read(dst.join(&long)).unwrap(), b"long");
    assert_eq!(std::fs::read(dst.join("nm/big.bin")).unwrap(), big);
    let m = std::fs::metadata(dst.join("nm/a/bin.sh")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o750);
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 123_456_789));
    assert_eq!(
        std::fs::read_link(dst.join("nm/run")).unwrap(),
        PathBuf::from("a/bin.sh")
    );
    let (a, b) = (
        std::fs::metadata(dst.join("nm/big.bin")).unwrap(),
        std::fs::metadata(dst.join("nm/big-link.bin")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());

    // GNU tar reads what kura writes.
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg("zstd -dc | tar -tf -")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&buf)?;
            c.wait_with_output()
        })
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.lines().any(|l| l == long), "{listing}");
    assert!(listing.lines().any(|l| l == "nm/big-link.bin"));
}

#[test]
fn a_file_that_changes_during_save_is_refused() {
    let t = tempfile::tempdir().unwrap();
    for (name, size) in [("small.log", 10usize), ("big.log", 2 << 20)] {
        let f = t.path().join("d").join(name);
        write(&f, &vec![b'x'; size]);
        let sel = crate::select::select(t.path(), &["d".to_string()], None).unwrap();
        // The walk has seen the file; it grows before the archive reads it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let err = pack(replay(&sel.entries), Vec::new(), &opts())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(name) && err.contains("changed while it was being saved"),
            "{err}"
        );
        std::fs::remove_file(&f).unwrap();
    }
}

use std::io::Write;

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            out.extend(all_files(&e.path()));
        }
    }
    out
}

#[test]
fn a_truncated_archive_is_corrupt_and_leaves_nothing_behind() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    for i in 0..50 {
        let data: Vec<u8> = (0..20_000u32)
            .map(|x| (x.wrapping_mul(2654435761) >> (i % 24)) as u8)
            .collect();
        write(&src.join(format!("nm/f{i}")), &data);
    }
    let sel = crate::select::select(&src, &["nm".to_string()], None).unwrap();
    let (buf, _) = pack(replay(&sel.entries), Vec::new(), &opts()).unwrap();
    let dst = t.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let tree = Tree::new(&dst, &[dst.join("nm")]);
    let Err(err) = unpack(&buf[..buf.len() * 2 / 3], tree, &unpack_opts()) else {
        panic!("a truncated archive unpacked");
    };
    assert!(matches!(err, UnpackError::Corrupt(_)), "{err:#}");
    assert!(
        all_files(&dst).is_empty(),
        "left behind: {:?}",
        all_files(&dst)
    );
}

#[test]
fn gzip_and_long_window_archives_restore() {
    let t = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("nm/a.txt").unwrap();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"hi"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    // A frame that declares a 1 GiB window, as `zstd --long=30` writes.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.long_distance_matching(true).unwrap();
    enc.window_log(30).unwrap();
    enc.write_all(&tar).unwrap();
    let long = enc.finish().unwrap();
    for (i, archive) in [gz, long].iter().enumerate() {
        let dst = t.path().join(format!("d{i}"));
        let tree = Tree::new(&dst, std::slice::from_ref(&dst));
        let Ok(done) = unpack(archive.as_slice(), tree, &unpack_opts()) else {
            panic!("archive {i} did not unpack");
        };
        done.commit();
        assert_eq!(std::fs::read(dst.join("nm/a.txt")).unwrap(), b"hi");
    }
}
