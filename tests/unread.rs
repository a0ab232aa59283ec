//! A chunked save after a restore takes what the restore wrote, and nothing changed since, from
//! the base without reading it. Every way of changing a file that keeps its size and mtime is
//! read all the same, and a record of another kura or another clock is not trusted: what the
//! save commits always restores the tree as it was saved.

use crate::support::{json, noise, run, tree, Out, Sandbox};
use filetime::FileTime;
use kura::chunked::Record;

fn save(s: &Sandbox, key: &str) -> Out {
    let out = run(s.kura().args([
        "--json", "save", "--format", "chunked", "--key", key, "--path", "d",
    ]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    out
}

fn restore(s: &Sandbox, key: &str) {
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = run(s
        .kura()
        .args(["--json", "restore", "--key", key, "--path", "d"]));
    assert_eq!(json(&out)["outcome"], "hit", "{}", out.stderr);
}

/// Small files grouped into chunks, large ones cut alone, a directory, a symlink, a hard link.
fn grow(s: &Sandbox) {
    for i in 0..300 {
        let text = format!("module {i} exports {}\n", "x".repeat(i * 7 % 2000));
        s.write(&format!("d/m/f{i:03}"), &text);
    }
    for i in 0..3 {
        s.write_bytes(&format!("d/big{i}"), &noise(400 << 10, i));
    }
    s.write("d/empty", "");
    std::os::unix::fs::symlink("big0", s.ws.join("d/link")).unwrap();
    std::fs::hard_link(s.ws.join("d/m/f007"), s.ws.join("d/hard")).unwrap();
}

/// A cold save, then the restore a job begins with (which records what it wrote).
fn begin(s: &Sandbox) -> u64 {
    grow(s);
    let cold = save(s, "k0");
    restore(s, "k0");
    json(&cold)["chunks"]["uploaded"].as_u64().unwrap()
}

fn unread(out: &Out) -> u64 {
    json(out)["chunks"]["unread"].as_u64().unwrap()
}

/// Save `key`, restore it into an empty directory: the tree must be what was saved.
fn saved_exactly(s: &Sandbox, key: &str) -> Out {
    let want = tree(&s.ws.join("d"));
    let out = save(s, key);
    restore(s, key);
    assert_eq!(tree(&s.ws.join("d")), want, "{key}: {}", out.stderr);
    out
}

/// New bytes of the same length, the mtime put back as it was.
fn rewrite_keeping_size_and_mtime(path: &std::path::Path, replace: bool) {
    let old = std::fs::read(path).unwrap();
    let mtime = FileTime::from_last_modification_time(&path.metadata().unwrap());
    let new: Vec<u8> = old.iter().map(|b| b.wrapping_add(1)).collect();
    if replace {
        std::fs::remove_file(path).unwrap();
    }
    std::fs::write(path, &new).unwrap();
    filetime::set_file_mtime(path, mtime).unwrap();
}

#[test]
fn a_warm_save_reads_only_what_changed() {
    let s = Sandbox::new();
    let cold = begin(&s);
    // The record is settled after the restore's last change: a change in the same clock tick
    // cannot look like none.
    edit_record(&s, |r| {
        assert!(r.written.iter().all(|w| w.stamp.ctime < r.settled))
    });
    s.write("d/m/f100", "changed");
    let out = saved_exactly(&s, "k1");
    let stream = json(&out)["bytes"].as_u64().unwrap();
    assert!(unread(&out) > stream * 9 / 10, "{}", out.stderr);
    let up = json(&out)["chunks"]["uploaded"].as_u64().unwrap();
    assert!(up < cold / 10, "uploaded {up} of {cold}");
}

#[test]
fn a_file_changed_without_changing_its_size_or_mtime_is_read() {
    let s = Sandbox::new();
    begin(&s);
    // At once after the restore (within the clock's tick), rewritten in place, and replaced
    // by another file: small files, a large one, and one of a hard link's names.
    rewrite_keeping_size_and_mtime(&s.ws.join("d/m/f010"), false);
    rewrite_keeping_size_and_mtime(&s.ws.join("d/m/f200"), true);
    rewrite_keeping_size_and_mtime(&s.ws.join("d/big1"), false);
    rewrite_keeping_size_and_mtime(&s.ws.join("d/m/f007"), false);
    let out = saved_exactly(&s, "k1");
    assert!(unread(&out) > 0, "{}", out.stderr);
}

/// The restore's record rewritten by `edit`.
fn edit_record(s: &Sandbox, edit: impl FnOnce(&mut Record)) {
    let dir = s.home.join(".cache/kura/.state");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".bin"))
        .expect("no record of what the restore wrote");
    let mut r = Record::decode(&std::fs::read(&path).unwrap()).unwrap();
    assert!(r.written.len() > 300, "{}", r.written.len());
    edit(&mut r);
    std::fs::write(&path, r.encode()).unwrap();
}

#[test]
fn a_record_of_another_kura_or_clock_is_not_trusted() {
    // Another kura may write other headers: its record is not used.
    let s = Sandbox::new();
    begin(&s);
    edit_record(&s, |r| r.kura = "0.0.1/pax-1".into());
    s.write("d/m/f100", "changed");
    assert_eq!(unread(&saved_exactly(&s, "k1")), 0);

    // The clock set back an hour after the restore: every file the job then changes has an
    // earlier ctime than the restore recorded, and none is taken for unchanged.
    let s = Sandbox::new();
    begin(&s);
    edit_record(&s, |r| {
        r.settled.0 += 3600;
        for w in &mut r.written {
            w.stamp.ctime.0 += 3600;
        }
    });
    rewrite_keeping_size_and_mtime(&s.ws.join("d/m/f010"), false);
    assert_eq!(unread(&saved_exactly(&s, "k1")), 0);

    // Headers in the base other than this kura writes for the same file (another writer's
    // layout): nothing is taken, since the stream would not be the one this save makes.
    let s = Sandbox::new();
    begin(&s);
    edit_record(&s, |r| {
        for w in &mut r.written {
            w.header[0] ^= 1;
        }
    });
    s.write("d/m/f100", "changed");
    assert_eq!(unread(&saved_exactly(&s, "k1")), 0);
}

/// The record of what the restore wrote, as a FIFO (a plain read blocks for ever) or as a link
/// to a valid record (planted by whoever can write elsewhere): not read, the save reads every
/// file.
#[test]
fn a_planted_record_neither_hangs_a_save_nor_is_followed() {
    let s = Sandbox::new();
    begin(&s);
    let dir = s.home.join(".cache/kura/.state");
    let record = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".bin"))
        .unwrap();
    let kept = s.dir.path().join("kept.bin");
    std::fs::rename(&record, &kept).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(&record)
        .status()
        .unwrap();
    assert!(st.success());
    let mut child = s
        .kura_std()
        .args([
            "--json", "save", "--format", "chunked", "--key", "k1", "--path", "d",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the save hangs on the FIFO"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let j: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(j["outcome"], "saved");
    assert_eq!(j["chunks"]["unread"], 0);
    std::fs::remove_file(&record).unwrap();
    std::os::unix::fs::symlink(&kept, &record).unwrap();
    assert_eq!(unread(&save(&s, "k2")), 0);
    // The same record, in its place, is used.
    std::fs::remove_file(&record).unwrap();
    std::fs::rename(&kept, &record).unwrap();
    assert!(unread(&save(&s, "k3")) > 0);
}
