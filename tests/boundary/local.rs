//! The local directory store and the files kura keeps itself: metadata, archives, packs and
//! prune's note as whoever shares the directory may leave them.

use super::*;
use crate::snapshot;
use crate::support::{json, run, Out, Sandbox};
use kura::chunked::{Chunk, Manifest};
use sha2::Digest;
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn metadata_naming_another_place_never_chooses_what_is_deleted() {
    // A planted entry directory `.ssh` whose metadata says key `.ssh` and a version that
    // climbs out of the store: a store that built the entry's path from those fields would
    // find `~/.ssh` (or `<abs>/.ssh`) as the entry to open, and delete it as corrupt.
    for climb in ["../../home", "abs"] {
        let s = Sandbox::new();
        save(&s, "k", "archive");
        let ssh = victim(&s);
        let abs = s.dir.path().join("abs");
        std::fs::create_dir_all(abs.join(".ssh")).unwrap();
        std::fs::write(abs.join(".ssh/keep"), "keep").unwrap();
        let version = match climb {
            "abs" => abs.display().to_string(),
            c => c.to_string(),
        };
        let honest = entry_dir(&s, "k");
        let planted = honest.with_file_name(".ssh");
        support::copy_tree(&honest, &planted);
        // A sha256 that fails: a restore that trusted the fields would delete "its" entry.
        edit_meta(&planted, |m| {
            m["key"] = ".ssh".into();
            m["version"] = version.clone().into();
            m["sha256"] = "00".repeat(32).into();
        });
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let before = around(&s);
        let out = restore(&s, ".ssh");
        assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
        kura_bounded(&s, &["rm", ".ssh"]);
        kura_bounded(&s, &["prune", "--max-age", "0s"]);
        assert_eq!(around(&s), before, "version {version:?}");
        assert!(ssh.join("id_ed25519").exists() && abs.join(".ssh/keep").exists());
    }
}

#[test]
fn metadata_that_disagrees_with_its_directory_is_no_entry() {
    let s = Sandbox::new();
    save(&s, "honest", "archive");
    save(&s, "other", "archive");
    // `other`'s metadata claims to be `honest`'s entry: neither listed nor restored as it.
    let dir = entry_dir(&s, "other");
    edit_meta(&dir, |m| m["key"] = "honest".into());
    let out = kura_bounded(&s, &["--json", "ls"]);
    let keys: Vec<String> = json(&out)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["honest"], "{}", out.stderr);
    // Removing `honest` removes its own directory, not the one that claims its name.
    kura_bounded(&s, &["rm", "honest"]);
    assert!(dir.join("meta.json").exists());
    assert!(!entry_dir_exists(&s, "honest"));
}

fn entry_dir_exists(s: &Sandbox, key: &str) -> bool {
    fn find(d: &Path, name: &str) -> bool {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name() == name
                    || (e.file_type().is_ok_and(|t| t.is_dir()) && find(&e.path(), name))
            })
    }
    find(&s.store, key)
}

#[test]
fn store_directories_replaced_by_symlinks_are_not_followed() {
    for which in [".tmp", ".packs", "_"] {
        let s = Sandbox::new();
        save(&s, "k", "chunked");
        // A linked directory full of old files, as a linked home would be.
        let linked = s.dir.path().join("linked");
        std::fs::create_dir_all(linked.join(".ssh")).unwrap();
        std::fs::write(linked.join(".bashrc"), "x").unwrap();
        std::fs::write(linked.join(".ssh/id_rsa"), "secret").unwrap();
        let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
        for p in [linked.join(".bashrc"), linked.join(".ssh/id_rsa")] {
            filetime::set_file_mtime(&p, old).unwrap();
        }
        let target = s.store.join(which);
        if target.exists() {
            std::fs::rename(&target, s.dir.path().join("moved")).unwrap();
        }
        std::os::unix::fs::symlink(&linked, &target).unwrap();
        let linked_tree = || snapshot::snapshot(&linked, &|_| false);
        let before = linked_tree();
        kura_bounded(&s, &["prune", "--max-age", "0s"]);
        kura_bounded(&s, &["ls"]);
        std::fs::remove_dir_all(s.ws.join("d")).ok();
        // A restore needs no `.tmp`: only where the entry's own parts are linked away is it
        // a miss.
        let out = restore(&s, "k");
        if which != ".tmp" {
            assert_ne!(json(&out)["outcome"], "hit", "{which}: {}", out.stderr);
        }
        // A save goes on (or fails cleanly) without writing through the link.
        s.write("d/f", "again");
        kura_bounded(
            &s,
            &["save", "--format", "chunked", "--key", "k2", "--path", "d"],
        );
        kura_bounded(&s, &["prune", "--max-size", "1"]);
        assert_eq!(linked_tree(), before, "{which}");
        assert!(linked.join(".ssh/id_rsa").exists() && linked.join(".bashrc").exists());
        assert_eq!(std::fs::read_dir(&linked).unwrap().count(), 2, "{which}");
    }
}

#[test]
fn fifos_where_files_belong_never_hang_a_command() {
    let s = Sandbox::new();
    save(&s, "arch", "archive");
    save(&s, "chunks", "chunked");
    mkfifo(&entry_dir(&s, "arch").join("archive"));
    let packs = s.store.join(".packs");
    let pack = std::fs::read_dir(&packs)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().len() == 64)
        .unwrap()
        .path();
    mkfifo(&pack);
    mkfifo(&packs.join("dead.json"));
    std::fs::remove_dir_all(s.ws.join("d")).ok();
    for key in ["arch", "chunks"] {
        let out = restore(&s, key);
        assert_ne!(json(&out)["outcome"], "hit", "{key}: {}", out.stderr);
    }
    // A FIFO as metadata: the entry is not one; ls and prune finish.
    save(&s, "meta", "archive");
    mkfifo(&entry_dir(&s, "meta").join("meta.json"));
    let out = kura_bounded(&s, &["--json", "ls"]);
    assert!(!out.stdout.contains("\"meta\""), "{}", out.stdout);
    let out = kura_bounded(&s, &["--json", "prune", "--max-size", "1G"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_giant_sparse_metadata_file_or_pack_is_never_read_whole() {
    let s = Sandbox::new();
    save(&s, "big", "archive");
    save(&s, "chunks", "chunked");
    let meta = std::fs::OpenOptions::new()
        .write(true)
        .open(entry_dir(&s, "big").join("meta.json"))
        .unwrap();
    meta.set_len(2 << 30).unwrap();
    // The pack grows to 1 GiB (sparse) and no longer hashes to its name: a restore finds
    // the entry's chunk damaged and looks at the pack once, in pieces.
    let packs = s.store.join(".packs");
    for e in std::fs::read_dir(&packs).unwrap().flatten() {
        if e.file_name().len() == 64 {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(e.path())
                .unwrap();
            let len = f.metadata().unwrap().len();
            use std::os::unix::fs::FileExt;
            f.write_all_at(b"garbage", len / 2).unwrap();
            f.set_len(1 << 30).unwrap();
        }
    }
    std::fs::remove_dir_all(s.ws.join("d")).ok();
    for key in ["big", "chunks"] {
        let out = restore(&s, key);
        assert_ne!(json(&out)["outcome"], "hit", "{key}: {}", out.stderr);
    }
    kura_bounded(&s, &["ls"]);
}

type Pairs = Vec<(String, String)>;

/// The runner's outputs and state, and the log lines it would act on.
fn on_github(s: &Sandbox, args: &[&str]) -> (Out, Pairs, Pairs) {
    let (output, state) = (s.dir.path().join("out"), s.dir.path().join("state"));
    std::fs::write(&output, "").unwrap();
    std::fs::write(&state, "").unwrap();
    let (out, _) = bounded(
        s.kura_std()
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_WORKSPACE", &s.ws)
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STATE", &state)
            .env("GITHUB_STEP_SUMMARY", s.dir.path().join("summary"))
            .args(args),
        60,
    );
    (
        out,
        support::runner_pairs(&output),
        support::runner_pairs(&state),
    )
}

/// Lines the runner would take as workflow commands (`::cmd::`, after its trim, or `##[`).
fn commands(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            l.trim().starts_with("::")
                && !l.starts_with("::warning::")
                && !l.starts_with("::error::")
                || l.contains("##[")
        })
        .collect()
}

#[test]
fn a_stored_key_cannot_write_the_steps_outputs_or_commands() {
    let s = Sandbox::new();
    save(&s, "k-1", "archive");
    // A key with a newline, under the directory name its encoding gives: the fields agree
    // with the place, but no user key has a newline.
    let evil = "k-2\ncache-hit=true\nCACHE_KEY=attacker";
    let planted = plant(&s, "k-1", evil);
    let (out, outputs, state) = on_github(
        &s,
        &[
            "restore",
            "--key",
            "k-x",
            "--restore-key",
            "k-",
            "--path",
            "d",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let names: Vec<&str> = outputs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["cache-hit", "cache-primary-key", "cache-matched-key"]
    );
    assert_eq!(outputs[2].1, "k-1", "{outputs:?}");
    assert_eq!(
        state,
        [
            ("CACHE_KEY".into(), "k-x".into()),
            ("CACHE_RESULT".into(), "k-1".into())
        ]
    );
    // A key that is valid but reads as a workflow command is printed, never obeyed.
    let cmd_key = "::add-mask::k-3";
    edit_meta(&planted, |m| m["key"] = cmd_key.into());
    let named = planted.with_file_name(kura_name(cmd_key));
    std::fs::rename(&planted, &named).unwrap();
    for args in [
        vec!["restore", "--key", "::add-mask::k-3", "--path", "d"],
        vec!["ls"],
        vec![
            "restore",
            "--key",
            "none",
            "--restore-key",
            "::",
            "--path",
            "nothing",
        ],
    ] {
        let (out, outputs, _) = on_github(&s, &args);
        assert!(commands(&out.stderr).is_empty(), "{args:?}: {}", out.stderr);
        assert!(commands(&out.stdout).is_empty(), "{args:?}: {}", out.stdout);
        assert!(outputs.len() == 3 || outputs.is_empty(), "{outputs:?}");
    }
}

/// A stored key that is valid but holds Markdown's cell break and code-span mark reaches the
/// job summary as one cell of one row: the table keeps its seven columns.
#[test]
fn a_stored_key_keeps_to_its_cell_in_the_job_summary() {
    let s = Sandbox::new();
    save(&s, "k-1", "archive");
    let sly = "k-2` | hit | 1 TB | `x";
    plant(&s, "k-1", sly);
    let args = [
        "restore",
        "--key",
        "k-x",
        "--restore-key",
        "k-",
        "--path",
        "d",
    ];
    let (out, outputs, _) = on_github(&s, &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(outputs[2].1, sly, "{outputs:?}");
    let summary = std::fs::read_to_string(s.dir.path().join("summary")).unwrap();
    let rows: Vec<&str> = summary.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 3, "{summary}");
    for row in rows {
        let cells = row.replace("\\|", "").matches('|').count();
        assert_eq!(cells, 8, "{row}");
    }
}

/// A copy of the entry of `key` under `as_key`, a moment newer, in the directory its
/// encoding gives (its fields agree with its place): what a writer of the store can plant.
fn plant(s: &Sandbox, key: &str, as_key: &str) -> std::path::PathBuf {
    let good = entry_dir(s, key);
    let planted = good.with_file_name(kura_name(as_key));
    support::copy_tree(&good, &planted);
    edit_meta(&planted, |m| {
        m["key"] = as_key.into();
        m["created_ms"] = (m["created_ms"].as_u64().unwrap() + 1).into();
    });
    planted
}

/// The directory name the local store gives a key (the README's encoding).
fn kura_name(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'.')
        .remove(b'_')
        .remove(b'-');
    percent_encoding::utf8_percent_encode(key, KEEP).to_string()
}

#[test]
fn stored_paths_and_names_reach_the_log_on_one_line() {
    let s = Sandbox::new();
    save(&s, "k", "archive");
    edit_meta(&entry_dir(&s, "k"), |m| {
        m["paths"] = serde_json::json!(["d\n::stop-commands::pwned", "x##[add-mask]y"]);
    });
    // A miss under another version explains itself with the stored entry's paths.
    for args in [vec!["restore", "--key", "k", "--path", "other"], vec!["ls"]] {
        let (out, _, _) = on_github(&s, &args);
        assert!(commands(&out.stderr).is_empty(), "{args:?}: {}", out.stderr);
        assert!(commands(&out.stdout).is_empty(), "{args:?}: {}", out.stdout);
    }
}

/// Rewrite a chunked entry's manifest and its metadata's digest (as whoever can write the
/// store can).
pub(super) fn replace_manifest(s: &Sandbox, key: &str, edit: impl FnOnce(&mut Manifest)) {
    let dir = entry_dir(s, key);
    let stored = std::fs::read(dir.join("archive")).unwrap();
    let mut m = Manifest::decode(&stored).unwrap();
    edit(&mut m);
    let bytes = m.encode().unwrap();
    std::fs::write(dir.join("archive"), &bytes).unwrap();
    edit_meta(&dir, |meta| {
        meta["size"] = bytes.len().into();
        meta["sha256"] = hex::encode(sha2::Sha256::digest(&bytes)).into();
    });
}

/// A frame of `data` and the chunk it holds whole, at `offset` in pack 0.
fn frame(data: &[u8], offset: u64) -> (Vec<u8>, Chunk) {
    let z = zstd::bulk::compress(data, 3).unwrap();
    let c = Chunk {
        id: *blake3::hash(data).as_bytes(),
        pack: 0,
        offset,
        stored: z.len() as u32,
        frame_len: data.len() as u32,
        skip: 0,
        len: data.len() as u32,
    };
    (z, c)
}

#[test]
fn a_manifest_repeating_one_chunk_is_stopped_at_what_its_entry_declares() {
    // As saved, and with metadata that claims another tool wrote it (only kura writes chunked
    // entries: it is held to what it declares all the same).
    for other_tool in [false, true] {
        let s = Sandbox::new();
        save(&s, "bomb", "chunked");
        if other_tool {
            edit_meta(&entry_dir(&s, "bomb"), |m| m["kura_version"] = "".into());
        }
        // A tar header declaring a 1.6 TiB file, then one 8 MiB chunk of zeros 200,000 times:
        // a manifest of a few KB stored, a stream far past the entry's 9 bytes of files.
        const ZEROS: usize = 8 << 20;
        const TIMES: u64 = 200_000;
        let mut h = tar::Header::new_gnu();
        h.set_path("d/f").unwrap();
        h.set_size(TIMES * ZEROS as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let (head, head_chunk) = frame(h.as_bytes(), 0);
        let (zeros, zero_chunk) = frame(&vec![0u8; ZEROS], head.len() as u64);
        let pack = [head, zeros].concat();
        let name = blake3::hash(&pack).to_hex().to_string();
        std::fs::write(s.store.join(".packs").join(&name), &pack).unwrap();
        replace_manifest(&s, "bomb", |m| {
            m.packs = vec![name.clone()];
            m.chunks = std::iter::once(head_chunk)
                .chain(std::iter::repeat_n(zero_chunk, TIMES as usize))
                .collect();
        });
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let before = around(&s);
        let out = restore(&s, "bomb");
        assert_eq!(
            json(&out)["outcome"],
            "miss",
            "{other_tool}: {}",
            out.stderr
        );
        assert_eq!(around(&s), before);
    }
}

/// The same bomb with metadata that declares the whole stream (2^60 bytes of files): more
/// than the disk holds, so the restore is not begun (a warning, exit 0), instead of writing
/// at disk speed for hours; the entry is not the restore's to forget.
#[test]
fn an_entry_declaring_more_than_the_disk_holds_is_not_begun() {
    let s = Sandbox::new();
    save(&s, "bomb", "chunked");
    const ZEROS: usize = 8 << 20;
    const TIMES: usize = 200_000;
    let mut h = tar::Header::new_gnu();
    h.set_path("d/f").unwrap();
    h.set_size((TIMES * ZEROS) as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let (head, head_chunk) = frame(h.as_bytes(), 0);
    let (zeros, zero_chunk) = frame(&vec![0u8; ZEROS], head.len() as u64);
    let pack = [head, zeros].concat();
    let name = blake3::hash(&pack).to_hex().to_string();
    std::fs::write(s.store.join(".packs").join(&name), &pack).unwrap();
    replace_manifest(&s, "bomb", |m| {
        m.packs = vec![name.clone()];
        m.chunks = std::iter::once(head_chunk)
            .chain(std::iter::repeat_n(zero_chunk, TIMES))
            .collect();
    });
    edit_meta(&entry_dir(&s, "bomb"), |m| m["bytes"] = (1u64 << 60).into());
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let before = around(&s);
    let started = Instant::now();
    let out = restore(&s, "bomb");
    assert_eq!(json(&out)["outcome"], "error", "{}", out.stderr);
    assert!(out.stderr.contains("free on the disk"), "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(around(&s), before);
    assert!(entry_dir(&s, "bomb").join("meta.json").is_file());
}

#[test]
fn a_zstd_bomb_is_stopped_at_what_its_entry_declares() {
    let s = Sandbox::new();
    save(&s, "bomb", "archive");
    // One file of 2 GiB of zeros, a few hundred KB compressed, in place of the small archive
    // (made as a stream: the test holds no gigabytes while it measures the restore).
    let dir = entry_dir(&s, "bomb");
    let file = std::fs::File::create(dir.join("archive")).unwrap();
    let mut tar = tar::Builder::new(zstd::Encoder::new(file, 3).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(2 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "d/f", std::io::repeat(0).take_bytes(2 << 30))
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    let z = std::fs::read(dir.join("archive")).unwrap();
    edit_meta(&dir, |m| {
        m["size"] = z.len().into();
        m["sha256"] = hex::encode(sha2::Sha256::digest(&z)).into();
    });
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let before = around(&s);
    let started = Instant::now();
    let out = restore(&s, "bomb");
    assert_eq!(json(&out)["outcome"], "miss", "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(around(&s), before);
}

trait TakeBytes: std::io::Read + Sized {
    fn take_bytes(self, n: u64) -> std::io::Take<Self> {
        self.take(n)
    }
}
impl<R: std::io::Read> TakeBytes for R {}

/// An entry whose chunk locations point at other bytes, the newest of its paths (ten years
/// ahead, or just now): a later save in a job that did not restore it takes nothing from it,
/// and the entry that save commits restores exactly.
#[test]
fn an_entry_this_job_did_not_check_is_not_the_base_of_its_save() {
    for ahead in [10 * 365 * 86_400_000u64, 0] {
        let s = Sandbox::new();
        s.write("d/f", "honest content");
        save_chunked(&s, "honest-1");
        s.write("d/f", "hostile content");
        save_chunked(&s, "hostile");
        replace_manifest(&s, "hostile", |m| {
            for c in &mut m.chunks {
                c.offset += 7;
            }
        });
        edit_meta(&entry_dir(&s, "hostile"), |m| {
            m["created_ms"] = (m["created_ms"].as_u64().unwrap() + ahead).into();
        });
        s.write("d/f", "hostile content");
        let out = save_chunked(&s, "honest-2");
        assert!(!out.stderr.contains("taken from key"), "{}", out.stderr);
        std::fs::remove_dir_all(s.ws.join("d")).unwrap();
        let out = restore(&s, "honest-2");
        assert_eq!(json(&out)["outcome"], "hit", "{}", out.stderr);
        assert_eq!(s.read("d/f"), "hostile content");
    }
}

pub(super) fn save_chunked(s: &Sandbox, key: &str) -> Out {
    let out = run(s.kura().args([
        "--json", "save", "--format", "chunked", "--key", key, "--path", "d",
    ]));
    assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
    out
}

/// Save and prune interleaved by hand (packs and `dead.json` aged as a day's wait would):
/// a save that reuses a pack a prune found dead renews it, so the next prune keeps it.
#[test]
fn a_pack_reused_by_a_save_survives_the_prune_that_found_it_dead() {
    let s = Sandbox::new();
    s.write("d/f", &"reused ".repeat(10_000));
    save_chunked(&s, "first");
    let packs = s.store.join(".packs");
    let pack_names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&packs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect();
        v.sort();
        v
    };
    let names = pack_names();
    // The entry goes; a prune notes its pack dead; two days pass.
    kura_bounded(&s, &["rm", "first"]);
    kura_bounded(&s, &["prune", "--max-age", "30d"]);
    let note: serde_json::Value =
        serde_json::from_slice(&std::fs::read(packs.join("dead.json")).unwrap()).unwrap();
    assert!(names.iter().all(|n| note.get(n).is_some()), "{note}");
    let now_ms = std::time::UNIX_EPOCH.elapsed().unwrap().as_millis() as u64;
    let two_days_ago = now_ms - 2 * 86_400_000;
    let aged: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| (n.clone(), two_days_ago.into()))
        .collect();
    std::fs::write(packs.join("dead.json"), serde_json::to_vec(&aged).unwrap()).unwrap();
    let old = filetime::FileTime::from_unix_time((two_days_ago / 1000) as i64, 0);
    for n in &names {
        filetime::set_file_mtime(packs.join(n), old).unwrap();
    }
    // A save of the same content reuses the pack (it is there); a prune that listed the
    // entries before that save committed (here: while its entry is moved out of sight) must
    // still keep the pack.
    save_chunked(&s, "second");
    let second = entry_dir(&s, "second");
    let hidden = s.dir.path().join("hidden");
    std::fs::rename(&second, &hidden).unwrap();
    kura_bounded(&s, &["prune", "--max-age", "30d"]);
    std::fs::rename(&hidden, &second).unwrap();
    assert_eq!(pack_names(), names);
    std::fs::remove_dir_all(s.ws.join("d")).unwrap();
    let out = restore(&s, "second");
    assert_eq!(json(&out)["outcome"], "hit", "{}", out.stderr);
}

#[test]
fn one_entry_that_cannot_be_deleted_does_not_stop_prune() {
    let s = Sandbox::new();
    save(&s, "a", "archive");
    save(&s, "b", "archive");
    // `.tmp` is a file: no entry can be moved aside, so none is deleted; prune says so for
    // each and still ends, sweeping what it can.
    std::fs::remove_dir_all(s.store.join(".tmp")).ok();
    std::fs::write(s.store.join(".tmp"), "not a directory").unwrap();
    let out = kura_bounded(&s, &["--json", "prune", "--max-age", "0s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("cannot delete the entry").count(),
        2,
        "{}",
        out.stderr
    );
    assert_eq!(json(&out)["removed"], serde_json::json!([]));
    assert!(entry_dir(&s, "a").join("meta.json").exists());
}

#[test]
fn a_fifo_where_a_key_file_belongs_is_bad_input_not_a_hang() {
    let s = Sandbox::new();
    mkfifo(&s.ws.join("go.sum"));
    let out = kura_bounded(&s, &["key", r#"v1-{{ checksum "go.sum" }}"#]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("not a regular file"), "{}", out.stderr);
    // hashFiles matches files only, as the runner's glob: a FIFO is no match.
    let out = kura_bounded(&s, &["key", r#"v1-{{ hashFiles "go.sum" }}"#]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("matched no file"), "{}", out.stderr);
}
