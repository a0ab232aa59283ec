use super::*;
use crate::ci::{CiInfo, Provider};
use std::path::Path;
use std::process::Command;

fn ctx(dir: &Path) -> Context {
    let mut ci = crate::ci::detect(&crate::vars::Vars::default());
    ci.provider = Provider::Local;
    ci.branch = Some("main".into());
    ci.revision = Some("abc123".into());
    ci.build_num = None;
    let ci = CiInfo { name: "test", ..ci };
    Context {
        ci,
        env: [("HOME_NAME".to_string(), "kura".to_string())]
            .into_iter()
            .collect(),
        cwd: dir.to_path_buf(),
        workspace: dir.to_path_buf(),
        home: Some(dir.join("home")),
        now_epoch: 1_700_000_000,
        notes: Default::default(),
    }
}

fn write(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[test]
fn checksum_matches_circleci() {
    // A real CircleCI key segment (tikv, 2018): checksum of a rust-toolchain file holding
    // "nightly-2018-07-18\n" rendered as aWt1SBJau3sI1Ix2iCYSsQvxk8WUCz3k1FaUSTDBdBo=.
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "rust-toolchain", b"nightly-2018-07-18\n");
    write(t.path(), "home/lock", b"nightly-2018-07-18\n");
    let c = ctx(t.path());
    assert_eq!(
        render(
            r#"v3-target-{{ .Branch }}-{{ checksum "rust-toolchain" }}"#,
            &c
        )
        .unwrap(),
        "v3-target-main-aWt1SBJau3sI1Ix2iCYSsQvxk8WUCz3k1FaUSTDBdBo="
    );
    // `~` is expanded, and << >> is the same language.
    assert_eq!(
        render(r#"<< checksum "~/lock" >>"#, &c).unwrap(),
        "aWt1SBJau3sI1Ix2iCYSsQvxk8WUCz3k1FaUSTDBdBo="
    );
}

#[test]
fn variables_functions_and_delimiters() {
    let t = tempfile::tempdir().unwrap();
    let c = ctx(t.path());
    assert_eq!(
        render(
            "a-{{.Revision}}-<< .Environment.HOME_NAME >>-{{ env \"HOME_NAME\" }}-{{ epoch }}",
            &c
        )
        .unwrap(),
        "a-abc123-kura-kura-1700000000"
    );
    assert_eq!(render("{{- .Branch -}}", &c).unwrap(), "main");
    assert_eq!(render("<< pipeline.git.branch >>", &c).unwrap(), "main");
    let arch = render("{{ arch }}", &c).unwrap();
    assert!(arch.starts_with("arch1-linux-"), "{arch}");
    // The host as uname names it, mapped by hand to actions/cache's names.
    let uname = |flag: &str| {
        let out = std::process::Command::new("uname")
            .arg(flag)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let os = match uname("-s").as_str() {
        "Linux" => "linux",
        "Darwin" => "macos",
        other => panic!("untested host {other}"),
    };
    let arch = match uname("-m").as_str() {
        "x86_64" => "x64",
        "aarch64" | "arm64" => "arm64",
        other => panic!("untested machine {other}"),
    };
    assert_eq!(render("{{ .Arch }}", &c).unwrap(), format!("{os}-{arch}"));
    assert_eq!(render("{{ .OS }}", &c).unwrap(), os);
}

#[test]
fn errors_name_template_column_and_fix() {
    let t = tempfile::tempdir().unwrap();
    let c = ctx(t.path());
    let e = render(r#"v1-{{ checksum "missing.lock" }}"#, &c).unwrap_err();
    assert_eq!(e.column, 4);
    assert!(
        e.to_string().contains("missing.lock") && e.to_string().contains("check the path"),
        "{e}"
    );
    let e = render("x-{{ nope }}", &c).unwrap_err();
    assert!(
        e.message.contains("function \"nope\" is not defined"),
        "{e}"
    );
    assert_eq!(e.column, 3);
    let e = render("{{ .BuildNum }}", &c).unwrap_err();
    assert!(e.message.contains("KURA_BUILD_NUM"), "{e}");
    let e = render("{{ .Environment.UNSET_VAR_X }}", &c).unwrap_err();
    assert!(e.message.contains("UNSET_VAR_X is not set"), "{e}");
    let e = render("{{ .Nope }}", &c).unwrap_err();
    assert!(e.message.contains("unknown variable .Nope"), "{e}");
    // A GitHub expression pasted in: pointed at the `$`, with kura's form of it.
    let e = render("v1-${{ hashFiles('**/x.lock') }}", &c).unwrap_err();
    assert_eq!(e.column, 4);
    assert!(
        e.message
            .contains(r#"{{ hashFiles "**/package-lock.json" }}"#),
        "{e}"
    );
    let e = render("v1-{{ hashFiles('x') }}", &c).unwrap_err();
    assert!(!e.message.contains("GitHub expression"), "{e}");
    assert!(render("{{ .Branch", &c)
        .unwrap_err()
        .message
        .contains("never closed"));
    assert!(render("a,b", &c).unwrap_err().message.contains("comma"));
    let long = "k".repeat(513);
    assert!(render(&long, &c)
        .unwrap_err()
        .message
        .contains("513 characters"));
    assert!(render(&"k".repeat(512), &c).is_ok());
    assert!(render("{{ checksum bare }}", &c)
        .unwrap_err()
        .message
        .contains("must be quoted"));
}

/// The runner's definition, computed independently with Python's hashlib: the sha256 of the
/// concatenated sha256 digests of the matched files in walk order.
fn python_hash_files(files: &[std::path::PathBuf]) -> String {
    let list: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", f.to_str().unwrap()))
        .collect();
    let script = format!(
        "import hashlib\nh=hashlib.sha256()\nfor f in [{}]:\n    h.update(hashlib.sha256(open(f,'rb').read()).digest())\nprint(h.hexdigest())",
        list.join(",")
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 runs");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn hash_files_follows_the_runner() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    write(&ws, "a/b/package-lock.json", b"one");
    write(&ws, "a.b/package-lock.json", b"two");
    write(&ws, "package-lock.json", b"three");
    write(&ws, "node_modules/x/package-lock.json", b"four");
    write(t.path(), "outside/package-lock.json", b"five");
    let mut c = ctx(&ws);
    c.workspace = ws.clone();
    // Walk order: depth first, children in byte order ("a" < "a.b" < "node_modules" < "package-lock.json").
    let expected = python_hash_files(&[
        ws.join("a/b/package-lock.json"),
        ws.join("a.b/package-lock.json"),
        ws.join("node_modules/x/package-lock.json"),
        ws.join("package-lock.json"),
    ]);
    assert_eq!(
        render(r#"{{ hashFiles "**/package-lock.json" }}"#, &c).unwrap(),
        expected
    );
    // Excludes, and files outside the workspace are ignored.
    let without_nm = python_hash_files(&[
        ws.join("a/b/package-lock.json"),
        ws.join("a.b/package-lock.json"),
        ws.join("package-lock.json"),
    ]);
    let out = ws.parent().unwrap().join("outside/package-lock.json");
    let tpl = format!(
        r#"{{{{ hashFiles "**/package-lock.json" "!node_modules/**" "{}" }}}}"#,
        out.display()
    );
    assert_eq!(render(&tpl, &c).unwrap(), without_nm);
    // A directory pattern hashes the files below it; no match is the empty string.
    assert_eq!(
        render(r#"{{ hashFiles "a/b" }}"#, &c).unwrap(),
        python_hash_files(&[ws.join("a/b/package-lock.json")])
    );
    assert_eq!(render(r#"x{{ hashFiles "*.none" }}"#, &c).unwrap(), "x");
}
