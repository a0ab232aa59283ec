//! Key templates from arbitrary text: parsing and rendering never panic, errors point inside
//! the template, and every key that renders follows the rules every store shares.
#![no_main]

use kura::key::{render, Context, MAX_KEY_LEN};
use kura::vars::Vars;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn context() -> &'static Context {
    static CTX: OnceLock<(tempfile::TempDir, Context)> = OnceLock::new();
    &CTX.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("go.sum"), "sum").unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/Cargo.lock"), "lock").unwrap();
        let vars = Vars::from_pairs([
            ("HOME", dir.path().to_str().unwrap()),
            ("KURA_BRANCH", "main"),
            ("NAME", "value"),
        ]);
        let mut ctx = Context::new(kura::ci::detect(&vars), &vars);
        ctx.cwd = dir.path().to_path_buf();
        ctx.workspace = dir.path().to_path_buf();
        (dir, ctx)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else {
        return;
    };
    match render(template, context()) {
        Ok(key) => {
            assert!(!key.is_empty() && key.chars().count() <= MAX_KEY_LEN, "{key:?}");
            assert!(!key.contains(',') && !key.chars().any(char::is_control), "{key:?}");
        }
        Err(e) => {
            assert!(e.column >= 1 && e.column <= template.chars().count() + 1, "{e:?}");
            let _ = context().take_notes();
        }
    }
});
