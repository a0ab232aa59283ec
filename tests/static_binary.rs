//! The release binary is static: built for the gnu target with `+crt-static` (as the README
//! shows), it has no program interpreter and no shared-library dependencies.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn a_crt_static_build_has_no_dynamic_dependencies() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-gnu",
        _ => "x86_64-unknown-linux-gnu",
    };
    let dir = root.join("target/static-check");
    let flags_var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        target.to_uppercase().replace('-', "_")
    );
    let st = Command::new(env!("CARGO"))
        .args(["build", "--locked", "--bin", "kura", "--target", target])
        .arg("--target-dir")
        .arg(&dir)
        .env(flags_var, "-C target-feature=+crt-static")
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(st.success(), "the static build failed");
    let bin = dir.join(target).join("debug/kura");
    let headers = Command::new("readelf")
        .args(["--program-headers", "--dynamic"])
        .arg(&bin)
        .output()
        .expect("readelf (binutils) runs");
    let text = String::from_utf8_lossy(&headers.stdout);
    assert!(headers.status.success(), "{text}");
    assert!(
        !text.contains("INTERP"),
        "has a program interpreter:\n{text}"
    );
    assert!(
        !text.contains("(NEEDED)"),
        "needs shared libraries:\n{text}"
    );
    // And it runs.
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("kura "));
}
