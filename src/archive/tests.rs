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
    }
}

fn unpack_opts() -> UnpackOptions {
    UnpackOptions { writers: 2 }
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
    assert_eq!(
        stats.manifest["nm/big-link.bin"],
        stats.manifest["nm/big.bin"]
    );

    let dst = t.path().join("dst");
    let mut guard = Guard::new(&dst, &[dst.join("nm")]);
    let out = unpack(buf.as_slice(), &mut guard, &unpack_opts()).unwrap();
    assert!(out.refused.is_empty(), "{:?}", out.refused);
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

/// A hand-made entry: raw name bytes (pax `path` when long or odd), type, link, data.
struct Raw<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    link: &'a [u8],
    data: &'a [u8],
}

fn hostile(entries: &[Raw]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut pax: Vec<(&str, &[u8])> = Vec::new();
        let mut h = tar::Header::new_ustar();
        if e.name.len() > 100 || e.name.contains(&0) {
            pax.push(("path", e.name));
        } else {
            h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name);
        }
        if !e.link.is_empty() {
            h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link);
        }
        if !pax.is_empty() {
            b.append_pax_extensions(pax).unwrap();
        }
        h.set_entry_type(e.kind);
        h.set_mode(0o644);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    zstd::encode_all(b.into_inner().unwrap().as_slice(), 3).unwrap()
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: tar::EntryType::Regular,
        link: b"",
        data,
    }
}

fn link<'a>(name: &'a str, kind: tar::EntryType, target: &'a str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind,
        link: target.as_bytes(),
        data: b"",
    }
}

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
fn hostile_archives_never_write_outside_the_roots() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(ws.join("nm")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    // A symlink already on disk inside the root that leads out.
    std::os::unix::fs::symlink(&outside, ws.join("nm/pre")).unwrap();
    std::fs::write(outside.join("secret.txt"), "outside data").unwrap();
    let abs_name = outside.join("abs.txt").to_string_lossy().into_owned();
    let outside_s = outside.to_string_lossy().into_owned();
    let huge = format!("nm/{}", "x/".repeat(3000));
    let nul = b"nm/nul\0/../../../outside/x".to_vec();

    let archive = hostile(&[
        file("nm/ok.txt", b"fine"),
        file("../outside/dotdot.txt", b"evil"),
        file("nm/../../outside/sneaky.txt", b"evil"),
        file(&abs_name, b"evil"),
        link("nm/evil", tar::EntryType::Symlink, &outside_s),
        file("nm/evil/through-link.txt", b"evil"),
        link("nm/rel-evil", tar::EntryType::Symlink, "../../outside"),
        link("nm/inside", tar::EntryType::Symlink, "ok.txt"),
        link("nm/passwd", tar::EntryType::Link, "/etc/passwd"),
        link(
            "nm/passwd2",
            tar::EntryType::Link,
            "../../../../../../etc/passwd",
        ),
        file("nm/pre/through-existing-link.txt", b"evil"),
        link("nm/secret", tar::EntryType::Link, "nm/pre/secret.txt"),
        Raw {
            name: &nul,
            kind: tar::EntryType::Regular,
            link: b"",
            data: b"evil",
        },
        Raw {
            name: huge.as_bytes(),
            kind: tar::EntryType::Regular,
            link: b"",
            data: b"evil",
        },
        link("nm/dev", tar::EntryType::Char, ""),
    ]);
    let mut guard = Guard::new(&ws, &[ws.join("nm")]);
    let stats = unpack(archive.as_slice(), &mut guard, &unpack_opts()).unwrap();

    assert_eq!(
        all_files(&outside),
        [outside.join("secret.txt")],
        "wrote outside"
    );
    assert!(!ws.join("nm/secret").exists(), "linked an outside file in");
    assert_eq!(std::fs::read(ws.join("nm/ok.txt")).unwrap(), b"fine");
    assert_eq!(
        std::fs::read_link(ws.join("nm/inside")).unwrap(),
        PathBuf::from("ok.txt")
    );
    let refused = stats.refused.join("\n");
    for name in [
        "../outside/dotdot.txt",
        "nm/../../outside/sneaky.txt",
        abs_name.as_str(),
        "nm/evil: link points outside",
        "nm/rel-evil: link points outside",
        "nm/passwd: hard link target /etc/passwd",
        "nm/passwd2: hard link target",
        "nm/pre/through-existing-link.txt",
        "nm/secret: hard link target nm/pre/secret.txt",
        "NUL",
        "bytes long",
        "nm/dev",
    ] {
        assert!(refused.contains(name), "{name} not refused in:\n{refused}");
    }
    // The file "through" the refused symlink landed in a real directory inside the root.
    assert!(std::fs::symlink_metadata(ws.join("nm/evil"))
        .unwrap()
        .is_dir());
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
    let mut guard = Guard::new(&dst, &[dst.join("nm")]);
    let err = unpack(&buf[..buf.len() * 2 / 3], &mut guard, &unpack_opts()).unwrap_err();
    assert!(err.downcast_ref::<Corrupt>().is_some(), "{err:#}");
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
        let mut guard = Guard::new(&dst, std::slice::from_ref(&dst));
        unpack(archive.as_slice(), &mut guard, &unpack_opts()).unwrap();
        assert_eq!(std::fs::read(dst.join("nm/a.txt")).unwrap(), b"hi");
    }
}
