//! Hand-made tar archives: any name, type, link and mode, with pax records where a name does
//! not fit, and the hostile shapes the extractor must survive (shared by the extraction tests
//! and the fuzz target's seed corpus).

#![allow(dead_code)]

use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hard,
    Char,
    Fifo,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    pub mode: u32,
    pub mtime: u64,
}

impl Entry {
    fn new(name: &[u8], kind: Kind, link: &[u8], data: &[u8]) -> Entry {
        let mode = if kind == Kind::Dir { 0o755 } else { 0o644 };
        Entry {
            name: name.to_vec(),
            kind,
            link: link.to_vec(),
            data: data.to_vec(),
            mode,
            mtime: 1_700_000_000,
        }
    }
    pub fn file(name: &str, data: &[u8]) -> Entry {
        Entry::new(name.as_bytes(), Kind::File, b"", data)
    }
    pub fn raw_file(name: &[u8], data: &[u8]) -> Entry {
        Entry::new(name, Kind::File, b"", data)
    }
    pub fn dir(name: &str) -> Entry {
        Entry::new(name.as_bytes(), Kind::Dir, b"", b"")
    }
    pub fn symlink(name: &str, target: &str) -> Entry {
        Entry::new(name.as_bytes(), Kind::Symlink, target.as_bytes(), b"")
    }
    pub fn raw_symlink(name: &[u8], target: &[u8]) -> Entry {
        Entry::new(name, Kind::Symlink, target, b"")
    }
    pub fn hard(name: &str, target: &str) -> Entry {
        Entry::new(name.as_bytes(), Kind::Hard, target.as_bytes(), b"")
    }
    pub fn device(name: &str, kind: Kind) -> Entry {
        Entry::new(name.as_bytes(), kind, b"", b"")
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn header(name: &[u8], kind: u8, link: &[u8], size: u64, mode: u32, mtime: u64) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    let old = h.as_old_mut();
    let n = name.len().min(100);
    old.name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(100);
    old.linkname[..l].copy_from_slice(&link[..l]);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_size(size);
    h.set_cksum();
    let mut out = [0u8; 512];
    out.copy_from_slice(h.as_bytes());
    out
}

fn push(out: &mut Vec<u8>, header: &[u8; 512], data: &[u8]) {
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// An uncompressed tar stream of `entries`, pax records for names and links that do not fit
/// the ustar fields as ASCII.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut pax = Vec::new();
        if e.name.len() > 100 || !e.name.is_ascii() || e.name.contains(&0) {
            pax.extend(pax_record("path", &e.name));
        }
        if e.link.len() > 100 || !e.link.is_ascii() || e.link.contains(&0) {
            pax.extend(pax_record("linkpath", &e.link));
        }
        if !pax.is_empty() {
            if std::str::from_utf8(&pax).is_err() {
                let mut p = pax_record("hdrcharset", b"BINARY");
                p.extend(pax);
                pax = p;
            }
            let h = header(b"PaxHeaders/x", b'x', b"", pax.len() as u64, 0o644, 0);
            push(&mut out, &h, &pax);
        }
        let kind = match e.kind {
            Kind::File => b'0',
            Kind::Hard => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        };
        let h = header(&e.name, kind, &e.link, e.data.len() as u64, e.mode, e.mtime);
        push(&mut out, &h, &e.data);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A pax header of `size` bytes (one long comment record) before a small file.
pub fn pax_bomb(size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let record = pax_record("comment", &vec![b'a'; size]);
    push(
        &mut out,
        &header(b"PaxHeaders/x", b'x', b"", record.len() as u64, 0o644, 0),
        &record,
    );
    push(&mut out, &header(b"nm/a", b'0', b"", 1, 0o644, 0), b"a");
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A GNU long name of `size` bytes before a small file.
pub fn longname_bomb(size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut hb = [0u8; 512];
    hb.copy_from_slice(h.as_bytes());
    push(&mut out, &hb, &vec![b'n'; size]);
    push(&mut out, &header(b"nm/a", b'0', b"", 1, 0o644, 0), b"a");
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Hostile shapes for a sandbox whose base holds the root `nm/`, with `outside` beside it
/// (and, on disk, `nm/pre -> outside`, `nm/pre-rel -> ../../outside`, `nm/existing.txt`).
/// Each shape has at least one entry that must be refused.
pub fn corpus(outside: &Path) -> Vec<(&'static str, Vec<Entry>)> {
    let out = outside.to_str().unwrap().to_string();
    let secret = format!("{out}/secret.txt");
    let abs_name = format!("{out}/abs.txt");
    let huge = format!("nm/{}", "x/".repeat(3000));
    vec![
        (
            "dot-dot name",
            vec![Entry::file("../outside/dotdot.txt", b"evil")],
        ),
        (
            "dot-dot after the root",
            vec![Entry::file("nm/../../outside/sneaky.txt", b"evil")],
        ),
        ("absolute name", vec![Entry::file(&abs_name, b"evil")]),
        (
            "through an absolute link of the archive",
            vec![
                Entry::symlink("nm/evil", &out),
                Entry::file("nm/evil/through.txt", b"evil"),
            ],
        ),
        (
            "through a relative outward link of the archive",
            vec![
                Entry::symlink("nm/rel", "../../outside"),
                Entry::file("nm/rel/through.txt", b"evil"),
            ],
        ),
        (
            "the chain: a link to .. and a link through it",
            vec![
                Entry::dir("nm/deps/sub"),
                Entry::symlink("nm/deps/sub/up", ".."),
                Entry::symlink("nm/deps/l1", "sub/up/../../outside"),
                Entry::file("nm/deps/l1/x", b"evil"),
                Entry::symlink("nm/deps/l1/s", "/"),
                Entry::dir("nm/deps/l1/sub"),
            ],
        ),
        (
            "a deep chain to /",
            vec![
                Entry::symlink("nm/a/b/c", "../../../../../../../../../.."),
                Entry::file("nm/a/b/c/tmp/kura-escape", b"evil"),
            ],
        ),
        (
            "hard link to an absolute path",
            vec![Entry::hard("nm/passwd", "/etc/passwd")],
        ),
        (
            "hard link through dot-dot",
            vec![Entry::hard("nm/passwd2", "../../../../../etc/passwd")],
        ),
        (
            "hard link to a sentinel by dot-dot",
            vec![Entry::hard("nm/s", "../outside/secret.txt")],
        ),
        (
            "hard link through a link on disk",
            vec![Entry::hard("nm/secret", "nm/pre/secret.txt")],
        ),
        (
            "hard link to a file the archive did not write",
            vec![Entry::hard("nm/e2", "nm/existing.txt")],
        ),
        (
            "hard link through a link of the archive",
            vec![
                Entry::symlink("nm/o", &out),
                Entry::hard("nm/h", "nm/o/secret.txt"),
            ],
        ),
        (
            "hard link to a link of the archive",
            vec![Entry::symlink("nm/y", &secret), Entry::hard("nm/z", "nm/y")],
        ),
        (
            "NUL in a name",
            vec![Entry::raw_file(b"nm/nul\0/../../../outside/x", b"evil")],
        ),
        ("a 6000-byte name", vec![Entry::file(&huge, b"evil")]),
        (
            "devices and fifos",
            vec![
                Entry::device("nm/dev", Kind::Char),
                Entry::device("nm/fifo", Kind::Fifo),
            ],
        ),
        (
            "the root made a link, then written below",
            vec![
                Entry::symlink("nm", &out),
                Entry::file("nm/evil.txt", b"evil"),
                Entry::dir("nm/sub"),
            ],
        ),
        (
            "a file made, then used as a directory",
            vec![
                Entry::file("nm/f", b"file"),
                Entry::file("nm/f/child", b"evil"),
            ],
        ),
        (
            "a link over a non-empty directory on disk",
            vec![Entry::symlink("nm/keep", &out)],
        ),
        (
            "a file over a non-empty directory on disk",
            vec![Entry::file("nm/keep", b"evil")],
        ),
        (
            "a link to a sentinel, then a hard link beside the root",
            vec![
                Entry::symlink("nm/t", &secret),
                Entry::hard("beside-root", "nm/t"),
            ],
        ),
        (
            "a dot-dot link target then a dir through it",
            vec![
                Entry::symlink("nm/up", ".."),
                Entry::dir("nm/up/nm2"),
                Entry::symlink("nm/up/up2", ".."),
            ],
        ),
        ("an empty name", vec![Entry::raw_file(b"", b"evil")]),
        (
            "a hard link to itself",
            vec![Entry::file("nm/me", b"me"), Entry::hard("nm/me", "nm/me")],
        ),
    ]
}
