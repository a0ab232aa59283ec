//! Random damage to a real chunked entry on the local store — bytes flipped, files cut short,
//! grown or gone, in the metadata, the chunk manifest or the packs — is always a clean miss
//! (the job's tree as it was) or an exact restore, never a partial tree, a panic or a failed
//! step.

use crate::snapshot::snapshot;
use crate::support::{copy_tree, files_below, json, noise, run, tree, Sandbox};
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;

type Tree = Vec<(String, Vec<u8>)>;

/// A store holding one chunked entry `k` of the tree `d`, and that tree: made once, copied
/// for every case.
fn pristine() -> &'static (Sandbox, Tree) {
    static P: OnceLock<(Sandbox, Tree)> = OnceLock::new();
    P.get_or_init(|| {
        let s = Sandbox::new();
        for i in 0..24 {
            // Some files alike, so that chunks are shared within the entry too.
            s.write_bytes(&format!("d/f{i:02}"), &noise(40 << 10, (i % 18) as u64));
        }
        s.write("d/empty", "");
        s.write("d/deep/er/text", "hello");
        let out = run(s.kura().args([
            "--json",
            "save",
            "--format",
            "chunked",
            "--key",
            "k",
            "--path",
            "d",
            "--chunk-size",
            "4K",
        ]));
        assert_eq!(json(&out)["outcome"], "saved", "{}", out.stderr);
        let want = tree(&s.ws.join("d"));
        (s, want)
    })
}

#[derive(Debug, Clone)]
enum Damage {
    Flip { file: usize, at: f64, xor: u8 },
    Cut { file: usize, keep: f64 },
    Grow { file: usize, tail: Vec<u8> },
    Gone { file: usize },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (any::<usize>(), 0.0..1.0f64, 1..=255u8).prop_map(|(file, at, xor)| Damage::Flip { file, at, xor }),
        2 => (any::<usize>(), 0.0..1.0f64).prop_map(|(file, keep)| Damage::Cut { file, keep }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..64)).prop_map(|(file, tail)| Damage::Grow { file, tail }),
        1 => any::<usize>().prop_map(|file| Damage::Gone { file }),
    ]
}

fn apply(files: &[PathBuf], d: &Damage) {
    let pick = |i: usize| &files[i % files.len()];
    match d {
        Damage::Flip { file, at, xor } => {
            let p = pick(*file);
            let Ok(mut b) = std::fs::read(p) else { return };
            if !b.is_empty() {
                let i = ((b.len() as f64 * at) as usize).min(b.len() - 1);
                b[i] ^= xor;
                std::fs::write(p, b).unwrap();
            }
        }
        Damage::Cut { file, keep } => {
            let p = pick(*file);
            let Ok(b) = std::fs::read(p) else { return };
            std::fs::write(p, &b[..(b.len() as f64 * keep) as usize]).unwrap();
        }
        Damage::Grow { file, tail } => {
            let p = pick(*file);
            let Ok(mut b) = std::fs::read(p) else { return };
            b.extend_from_slice(tail);
            std::fs::write(p, b).unwrap();
        }
        Damage::Gone { file } => {
            let _ = std::fs::remove_file(pick(*file));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_damage_is_a_clean_miss_or_an_exact_restore(
        damages in proptest::collection::vec(damage(), 1..4)
    ) {
        let (p, want) = pristine();
        let s = Sandbox::new();
        copy_tree(&p.store, &s.store);
        let mut files = files_below(&s.store);
        files.sort();
        prop_assert!(files.len() >= 3, "{files:?}");
        for d in &damages {
            apply(&files, d);
        }
        // The job's tree differs from the entry, so that a restore begun would show.
        s.write("d/mine", "my own file");
        let before = snapshot(&s.ws, &|_| false);
        let out = run(s.kura().args(["--json", "restore", "--key", "k", "--path", "d"]));
        prop_assert_eq!(out.code, 0, "{}", out.stderr);
        prop_assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        let outcome = json(&out)["outcome"].as_str().unwrap_or_default().to_string();
        if outcome == "hit" {
            // The job's own file stays beside what was restored.
            let mut got = tree(&s.ws.join("d"));
            got.retain(|(n, _)| n != "mine");
            prop_assert!(&got == want, "a hit restored another tree after {damages:?}");
        } else {
            prop_assert!(outcome == "miss" || outcome == "error", "{outcome}: {}", out.stderr);
            prop_assert_eq!(&snapshot(&s.ws, &|_| false), &before, "a miss changed the tree after {:?}", damages);
        }
    }
}
