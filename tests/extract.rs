//! The extractor as an attacker sees it: a corpus of hostile archives over a sandbox with
//! sentinels and symlinks outside the roots (nothing outside may change, whatever the archive
//! says), memory bombs, rollback, and generated archives compared with GNU tar.

use crate::hostile;
use crate::snapshot;

use hostile::Entry;
use kura::archive::{unpack, unpack_tar, Tree, UnpackError, UnpackOptions};
use snapshot::{snapshot, without_directory_times};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn opts() -> UnpackOptions {
    UnpackOptions {
        writers: 2,
        window_log_max: 27,
        declared: None,
        spans: true,
    }
}

/// A sandbox: `ws/` is the base, `ws/nm` the root; `outside/` holds sentinels, and links
/// inside the root and beside it lead there.
struct Sandbox {
    _t: tempfile::TempDir,
    /// The temporary directory, canonical: everything below it outside the root is compared.
    top: PathBuf,
    dir: PathBuf,
    ws: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> Sandbox {
    let t = tempfile::tempdir().unwrap();
    // Sixteen levels down, so that even the corpus' `..` chains, followed by a broken
    // extractor, stay inside the temporary directory (whose whole tree is compared).
    let top = t.path().canonicalize().unwrap();
    let mut dir = top.clone();
    for _ in 0..16 {
        dir.push("t");
    }
    let (ws, outside) = (dir.join("ws"), dir.join("outside"));
    let root = ws.join("nm");
    std::fs::create_dir_all(root.join("keep")).unwrap();
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("secret.txt"), "outside data").unwrap();
    std::fs::write(outside.join("sub/deep.txt"), "deep outside").unwrap();
    std::fs::write(root.join("existing.txt"), "was here").unwrap();
    std::fs::write(root.join("keep/old.txt"), "kept").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("pre")).unwrap();
    std::os::unix::fs::symlink("../../outside", root.join("pre-rel")).unwrap();
    std::os::unix::fs::symlink(&outside, ws.join("beside")).unwrap();
    std::fs::write(ws.join("sibling.txt"), "sibling").unwrap();
    Sandbox {
        _t: t,
        top,
        dir,
        ws,
        root,
        outside,
    }
}

impl Sandbox {
    fn tree(&self) -> Tree {
        Tree::new(&self.ws, std::slice::from_ref(&self.root))
    }

    fn outside_the_root(&self) -> BTreeMap<PathBuf, String> {
        snapshot::outside_the_root(&self.top, &self.root)
    }
}

/// Extract `entries` through `tree`, expecting every entry written and a clean commit.
fn extract_all(entries: &[Entry], tree: Tree) {
    let done = unpack_tar(hostile::tar(entries).as_slice(), tree, &opts()).unwrap();
    assert!(done.refused.is_empty(), "{:?}", done.refused);
    assert!(done.commit().is_empty());
}

#[test]
fn hostile_corpus_writes_nothing_outside_the_roots() {
    let corpus = hostile::corpus(Path::new("/placeholder/outside"));
    assert!(corpus.len() >= 20, "{} shapes", corpus.len());
    let seeds = std::env::var_os("FUZZ_SEEDS").map(PathBuf::from);
    for (i, (what, _)) in corpus.iter().enumerate() {
        let sb = sandbox();
        // The shapes name the real sandbox's outside directory.
        let entries = &hostile::corpus(&sb.outside)[i].1;
        let tar = hostile::tar(entries);
        if let Some(dir) = &seeds {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("hostile-{i:02}.tar")), &tar).unwrap();
        }
        let before = sb.outside_the_root();
        let result = unpack_tar(tar.as_slice(), sb.tree(), &opts());
        let refused = match result {
            Ok(done) => {
                let refused = done.refused.clone();
                done.commit();
                refused
            }
            Err(e) => vec![format!("error: {e:#}")],
        };
        assert_eq!(
            sb.outside_the_root(),
            before,
            "shape {i} ({what}) changed something outside the root; refused: {refused:?}"
        );
        assert!(
            !refused.is_empty(),
            "shape {i} ({what}) was not refused in any part"
        );
    }
}

#[test]
fn the_issue_chain_is_restored_as_links_and_nothing_goes_through_them() {
    let sb = sandbox();
    let entries = vec![
        Entry::dir("nm/deps/sub"),
        Entry::symlink("nm/deps/sub/up", ".."),
        Entry::symlink("nm/deps/l1", "sub/up/../../outside"),
        Entry::file("nm/deps/l1/x", b"evil"),
        Entry::symlink("nm/deps/l1/s", "/etc"),
        Entry::hard("nm/deps/l1/h", "nm/deps/ok"),
        Entry::file("nm/deps/ok", b"fine"),
    ];
    let before = sb.outside_the_root();
    let done = unpack_tar(hostile::tar(&entries).as_slice(), sb.tree(), &opts()).unwrap();
    let refused = done.refused.join("\n");
    done.commit();
    assert_eq!(sb.outside_the_root(), before);
    // The links are there, as saved; what would go through them is refused.
    assert_eq!(
        std::fs::read_link(sb.root.join("deps/l1")).unwrap(),
        PathBuf::from("sub/up/../../outside")
    );
    assert_eq!(
        std::fs::read_link(sb.root.join("deps/sub/up")).unwrap(),
        PathBuf::from("..")
    );
    for name in ["nm/deps/l1/x", "nm/deps/l1/s", "nm/deps/l1/h"] {
        assert!(refused.contains(name), "{name} not refused:\n{refused}");
    }
    assert_eq!(std::fs::read(sb.root.join("deps/ok")).unwrap(), b"fine");
}

#[test]
fn a_symlink_on_disk_in_the_way_of_a_directory_is_replaced_not_followed() {
    let sb = sandbox();
    let entries = vec![
        Entry::file("nm/pre/new.txt", b"inside"),
        Entry::dir("nm/pre-rel"),
    ];
    let before = sb.outside_the_root();
    extract_all(&entries, sb.tree());
    assert_eq!(sb.outside_the_root(), before);
    assert!(std::fs::symlink_metadata(sb.root.join("pre"))
        .unwrap()
        .is_dir());
    assert!(std::fs::symlink_metadata(sb.root.join("pre-rel"))
        .unwrap()
        .is_dir());
    assert_eq!(
        std::fs::read(sb.root.join("pre/new.txt")).unwrap(),
        b"inside"
    );
    // Nothing moved aside is left behind after the commit.
    let names: Vec<_> = std::fs::read_dir(&sb.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.to_string_lossy().starts_with(".kura-aside")),
        "{names:?}"
    );
}

#[test]
fn the_root_may_be_a_link_the_user_made_but_never_one_the_archive_made() {
    let sb = sandbox();
    // The user's root is a symlink to a real directory elsewhere: restores go there.
    let real = sb.dir.join("real-nm");
    std::fs::create_dir(&real).unwrap();
    std::fs::remove_dir_all(&sb.root).unwrap();
    std::os::unix::fs::symlink(&real, &sb.root).unwrap();
    let done = unpack_tar(
        hostile::tar(&[Entry::file("nm/a.txt", b"a")]).as_slice(),
        sb.tree(),
        &opts(),
    )
    .unwrap();
    done.commit();
    assert_eq!(std::fs::read(real.join("a.txt")).unwrap(), b"a");

    // An archive that makes the root a link and then writes below it writes nothing there.
    let sb = sandbox();
    std::fs::remove_dir_all(&sb.root).unwrap();
    let entries = vec![
        Entry::symlink("nm", sb.outside.to_str().unwrap()),
        Entry::file("nm/evil.txt", b"evil"),
    ];
    let before = sb.outside_the_root();
    let done = unpack_tar(hostile::tar(&entries).as_slice(), sb.tree(), &opts());
    match done {
        Ok(d) => {
            assert!(
                d.refused.iter().any(|r| r.starts_with("nm/evil.txt")),
                "{:?}",
                d.refused
            );
            d.commit();
        }
        Err(e) => panic!("{e:#}"),
    }
    assert_eq!(sb.outside_the_root(), before);
}

#[test]
fn the_last_entry_of_a_name_wins_as_in_gnu_tar() {
    let sb = sandbox();
    let secret = sb.outside.join("secret.txt");
    let entries = vec![
        Entry::symlink("nm/a", secret.to_str().unwrap()),
        Entry::file("nm/a", b"file after link"),
        Entry::file("nm/b", b"file first"),
        Entry::symlink("nm/b", "a"),
        Entry::dir("nm/c"),
        Entry::file("nm/c", b"file over empty dir"),
        Entry::file("nm/existing.txt", b"replaced"),
    ];
    extract_all(&entries, sb.tree());
    assert_eq!(
        std::fs::read(sb.root.join("a")).unwrap(),
        b"file after link"
    );
    assert!(!std::fs::symlink_metadata(sb.root.join("a"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(sb.root.join("b")).unwrap(),
        PathBuf::from("a")
    );
    assert_eq!(
        std::fs::read(sb.root.join("c")).unwrap(),
        b"file over empty dir"
    );
    assert_eq!(
        std::fs::read(sb.root.join("existing.txt")).unwrap(),
        b"replaced"
    );
    assert_eq!(std::fs::read(&secret).unwrap(), b"outside data");
}

#[test]
fn a_rollback_leaves_the_tree_as_it_was() {
    let sb = sandbox();
    let before = snapshot(&sb.dir, &|_| false);
    let entries = vec![
        Entry::file("nm/existing.txt", b"replaced"),
        Entry::dir("nm/pre"),
        Entry::file("nm/pre/in.txt", b"x"),
        Entry::symlink("nm/keep/old.txt", "elsewhere"),
        Entry::file("nm/new/deep/file.txt", b"new"),
        Entry::dir("nm/keep"),
    ];
    let done = unpack_tar(hostile::tar(&entries).as_slice(), sb.tree(), &opts()).unwrap();
    assert!(done.refused.is_empty(), "{:?}", done.refused);
    assert_ne!(snapshot(&sb.dir, &|_| false), before);
    done.rollback();
    // Directory mtimes move with every rename; everything else is exactly as before.
    assert_eq!(
        without_directory_times(snapshot(&sb.dir, &|_| false)),
        without_directory_times(before)
    );
}

#[test]
fn a_corrupt_archive_is_rolled_back_and_pre_existing_files_stay() {
    let sb = sandbox();
    let mut entries: Vec<Entry> = (0..40)
        .map(|i| Entry::file(&format!("nm/f{i}"), &vec![b'x'; 3000]))
        .collect();
    entries.insert(5, Entry::file("nm/existing.txt", b"replaced"));
    let tar = hostile::tar(&entries);
    let zst = zstd::encode_all(tar.as_slice(), 3).unwrap();
    let before = snapshot(&sb.root, &|_| false);
    let tree = sb.tree();
    let Err(e) = unpack(&zst[..zst.len() / 2], tree, &opts()) else {
        panic!("half an archive unpacked");
    };
    assert!(matches!(e, UnpackError::Corrupt(_)), "{e:#}");
    let after = snapshot(&sb.root, &|_| false);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read(sb.root.join("existing.txt")).unwrap(),
        b"was here"
    );
}

/// A zstd frame that declares a window of 2^`log` bytes, as `zstd --long=LOG` writes.
fn zstd_with_window(data: &[u8], log: u32) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.window_log(log).unwrap();
    enc.long_distance_matching(true).unwrap();
    std::io::Write::write_all(&mut enc, data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn memory_is_bounded_by_kura_not_by_the_archive() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("nm");
    // A frame that declares a 2 GiB window.
    let tar = hostile::tar(&[Entry::file("nm/a", &vec![7u8; 4096])]);
    let big_window = zstd_with_window(&tar, 31);
    let tree = Tree::new(t.path(), std::slice::from_ref(&root));
    let Err(e) = unpack(big_window.as_slice(), tree, &opts()) else {
        panic!("a 2 GiB window was accepted");
    };
    assert!(matches!(e, UnpackError::Corrupt(_)), "{e:#}");
    assert!(!root.exists());
    // Long (2^30) windows are accepted when the entry's version says so.
    let mut long = opts();
    long.window_log_max = 30;
    let w30 = zstd_with_window(&tar, 30);
    let tree = Tree::new(t.path(), std::slice::from_ref(&root));
    assert!(unpack(w30.as_slice(), tree, &opts()).is_err());
    let tree = Tree::new(t.path(), std::slice::from_ref(&root));
    unpack(w30.as_slice(), tree, &long).unwrap().commit();
    assert_eq!(std::fs::read(root.join("a")).unwrap().len(), 4096);

    // Header records the tar reader would hold in memory: a pax header and a GNU long name
    // of 64 MiB each (a few KiB compressed).
    for bomb in [
        hostile::pax_bomb(64 << 20),
        hostile::longname_bomb(64 << 20),
    ] {
        let zst = zstd::encode_all(bomb.as_slice(), 3).unwrap();
        assert!(zst.len() < 1 << 20);
        let tree = Tree::new(t.path(), std::slice::from_ref(&root));
        let Err(e) = unpack(zst.as_slice(), tree, &opts()) else {
            panic!("a 64 MiB header was accepted");
        };
        assert!(matches!(e, UnpackError::Corrupt(_)), "{e:#}");
    }
}

#[test]
fn names_that_are_not_utf8_round_trip() {
    let sb = sandbox();
    let entries = vec![
        Entry::raw_file(b"nm/caf\xe9.txt", b"latin-1"),
        Entry::raw_symlink(b"nm/l\xff", b"caf\xe9.txt"),
    ];
    extract_all(&entries, sb.tree());
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    assert_eq!(std::fs::read(sb.root.join(name)).unwrap(), b"latin-1");
    let link = std::ffi::OsStr::from_bytes(b"l\xff");
    assert_eq!(
        std::fs::read_link(sb.root.join(link)).unwrap(),
        Path::new(name)
    );
}

#[test]
fn modes_and_mtimes_are_restored_and_read_only_directories_filled() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("nm");
    // One directory that exists before the restore, with another mode and time.
    std::fs::create_dir_all(root.join("old")).unwrap();
    std::fs::set_permissions(root.join("old"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = |name: &str, mode: u32, mtime: u64| {
        let mut d = Entry::dir(name);
        (d.mode, d.mtime) = (mode, mtime);
        d
    };
    let mut f = Entry::file("nm/ro/x.sh", b"#!/bin/sh\n");
    (f.mode, f.mtime) = (0o750, 1_400_000_000);
    let entries = [
        dir("nm/ro", 0o555, 1_500_000_000),
        f,
        dir("nm/plain", 0o755, 1_510_000_000),
        dir("nm/plain/deep", 0o755, 1_520_000_000),
        Entry::file("nm/plain/deep/f", b"f"),
        dir("nm/old", 0o755, 1_530_000_000),
        Entry::file("nm/old/g", b"g"),
        // Replaced by a later entry of the same name: its mode and time go with it.
        dir("nm/gone", 0o700, 1_540_000_000),
        Entry::symlink("nm/gone", "plain"),
    ];
    extract_all(&entries, Tree::new(t.path(), std::slice::from_ref(&root)));
    for (path, mode, mtime) in [
        ("ro", 0o555, 1_500_000_000),
        ("ro/x.sh", 0o750, 1_400_000_000),
        ("plain", 0o755, 1_510_000_000),
        ("plain/deep", 0o755, 1_520_000_000),
        ("old", 0o755, 1_530_000_000),
    ] {
        let m = std::fs::metadata(root.join(path)).unwrap();
        assert_eq!((m.mode() & 0o7777, m.mtime()), (mode, mtime), "{path}");
    }
    let gone = std::fs::symlink_metadata(root.join("gone")).unwrap();
    assert!(gone.file_type().is_symlink());
    assert_ne!(gone.mtime(), 1_540_000_000);
    std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn names_reused_while_their_writes_are_queued_still_go_in_order() {
    // Small files go to the writer threads; a hard link to one, or a second entry of its
    // name, right behind it must wait for them: the last entry wins and links share the file's
    // inode. Files of 512 KiB keep the writers' queue full, so the race is real.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("nm");
    let n = 64;
    let body = |what: &str, i: usize| {
        let mut b = format!("{what} {i}\n").into_bytes();
        b.resize(512 << 10, b'.');
        b
    };
    let mut entries = Vec::new();
    for i in 0..n {
        let f = format!("nm/d{}/f{i}", i % 7);
        entries.push(Entry::file(&f, &body("first", i)));
        entries.push(Entry::hard(&format!("nm/links/l{i}"), &f));
        if i % 3 == 0 {
            entries.push(Entry::file(&f, &body("second", i)));
        }
    }
    extract_all(&entries, Tree::new(t.path(), std::slice::from_ref(&root)));
    for i in 0..n {
        let f = root.join(format!("d{}/f{i}", i % 7));
        let l = root.join(format!("links/l{i}"));
        // The link was made before the second entry of the name replaced the file.
        assert_eq!(std::fs::read(&l).unwrap(), body("first", i), "{i}");
        let want = if i % 3 == 0 { "second" } else { "first" };
        assert_eq!(std::fs::read(&f).unwrap(), body(want, i), "{i}");
        let same = std::fs::metadata(&f).unwrap().ino() == std::fs::metadata(&l).unwrap().ino();
        assert_eq!(same, i % 3 != 0, "{i}");
    }
}
