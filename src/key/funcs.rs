//! What each variable and function of the template language evaluates to.

use super::{Action, Arg, Context};
use crate::settings;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub fn eval(action: &Action, ctx: &Context) -> Result<String, String> {
    match action {
        Action::Field(path) => field(path, ctx),
        Action::Call(name, args) => {
            let args = args
                .iter()
                .map(|a| match a {
                    Arg::Str(s) => Ok(s.clone()),
                    Arg::Field(p) => field(p, ctx),
                })
                .collect::<Result<Vec<_>, _>>()?;
            call(name, &args, ctx)
        }
    }
}

fn field(path: &[String], ctx: &Context) -> Result<String, String> {
    let ci = &ctx.ci;
    let need = |v: &Option<String>, what: &str, vars: &str| {
        v.clone()
            .ok_or_else(|| format!("{what} is not known here ({}); set {vars}", ci.name))
    };
    match path {
        [one] => match one.as_str() {
            "Branch" => need(&ci.branch, ".Branch", &format!("{} or run inside a git checkout", settings::BRANCH.name)),
            "Revision" => need(&ci.revision, ".Revision", &format!("{} or run inside a git checkout", settings::REVISION.name)),
            "BuildNum" => need(&ci.build_num, ".BuildNum", settings::BUILD_NUM.name),
            "Workflow" => need(&ci.workflow_id, ".Workflow", settings::WORKFLOW.name),
            "Job" => need(&ci.job, ".Job", settings::JOB.name),
            "Arch" => Ok(stable_arch()),
            "OS" => Ok(os_name().to_string()),
            "Environment" => Err(".Environment needs a variable name, as in .Environment.HOME".into()),
            "CheckoutKey" => Err(".CheckoutKey is not supported; use .Revision or checksum a file".into()),
            other => Err(format!(
                "unknown variable .{other}; known: .Branch .Revision .BuildNum .Workflow .Job .Arch .OS .Environment.NAME"
            )),
        },
        [env, name] if env == "Environment" => env_var(name, ctx),
        _ => Err(format!("unknown variable .{}", path.join("."))),
    }
}

fn env_var(name: &str, ctx: &Context) -> Result<String, String> {
    ctx.env.get(name).cloned().ok_or_else(|| {
        format!("environment variable {name} is not set; set it or remove it from the key")
    })
}

fn call(name: &str, args: &[String], ctx: &Context) -> Result<String, String> {
    let no_args = |value: String| {
        if args.is_empty() {
            Ok(value)
        } else {
            Err(format!("{name} takes no arguments"))
        }
    };
    match name {
        "checksum" => checksum(args, ctx),
        "hashFiles" => hash_files(args, ctx),
        "epoch" => no_args(ctx.now_epoch.to_string()),
        "arch" => no_args(circleci_arch()),
        "os" => no_args(os_name().to_string()),
        "env" => match args {
            [one] => env_var(one, ctx),
            _ => Err("env takes one argument: env \"NAME\"".into()),
        },
        // CircleCI pipeline values, for keys written as `<< pipeline.git.branch >>`.
        "pipeline.git.branch" => no_args(field(&["Branch".into()], ctx)?),
        "pipeline.git.revision" => no_args(field(&["Revision".into()], ctx)?),
        "pipeline.number" => no_args(field(&["BuildNum".into()], ctx)?),
        other => Err(format!(
            "function \"{other}\" is not defined; known: checksum hashFiles epoch arch os env"
        )),
    }
}

/// CircleCI's `checksum`: standard base64 (with padding) of the sha256 of the file's bytes.
/// With several files, the sha256 of their digests in argument order, so that file boundaries
/// count.
fn checksum(args: &[String], ctx: &Context) -> Result<String, String> {
    if args.is_empty() {
        return Err("checksum needs a file: checksum \"go.sum\"".into());
    }
    let mut digests = Vec::new();
    for a in args {
        let path = resolve(a, &ctx.cwd, ctx.home.as_deref());
        let d = sha256_file(&path).map_err(|e| {
            format!(
                "checksum cannot read {} ({e}); check the path (relative paths start at {})",
                path.display(),
                ctx.cwd.display()
            )
        })?;
        digests.push(d);
    }
    let digest: Vec<u8> = if digests.len() == 1 {
        digests.pop().unwrap()
    } else {
        let mut h = Sha256::new();
        for d in &digests {
            h.update(d);
        }
        h.finalize().to_vec()
    };
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// GitHub's `hashFiles()`: files (not directories, symlinks not followed) under the workspace
/// matching the patterns, in the runner's walk order; the sha256 of their sha256 digests, hex.
/// No match gives the empty string, as on GitHub.
fn hash_files(args: &[String], ctx: &Context) -> Result<String, String> {
    if args.is_empty() {
        return Err("hashFiles needs a pattern: hashFiles \"**/package-lock.json\"".into());
    }
    let files = crate::select::glob_files(&ctx.workspace, args, ctx.home.as_deref())
        .map_err(|e| format!("hashFiles: {e}"))?;
    if files.is_empty() {
        ctx.notes.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
            "hashFiles({}) matched no file under {}: it gives the empty string, so the key does not change with those files",
            args.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", "),
            ctx.workspace.display()
        ));
        return Ok(String::new());
    }
    let mut h = Sha256::new();
    for f in &files {
        let d =
            sha256_file(f).map_err(|e| format!("hashFiles cannot read {}: {e}", f.display()))?;
        h.update(&d);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn resolve(p: &str, base: &Path, home: Option<&Path>) -> PathBuf {
    let expanded = crate::select::expand_tilde(p, home);
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}

fn sha256_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    // Without blocking: a FIFO (or a device) where a file should be is an error, not a key
    // function that waits for ever.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let md = f.metadata()?;
    if md.is_dir() {
        return Err(std::io::Error::other("it is a directory, not a file"));
    }
    if !md.is_file() {
        return Err(std::io::Error::other(
            "it is not a regular file (a FIFO, socket or device)",
        ));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_vec())
}

pub fn os_name() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macos",
        "windows" => "windows",
        "linux" => "linux",
        other => other,
    }
}

fn arch_name(go_style: bool) -> &'static str {
    match (std::env::consts::ARCH, go_style) {
        ("x86_64", true) => "amd64",
        ("x86_64", false) => "x64",
        ("aarch64", _) => "arm64",
        ("x86", true) => "386",
        ("x86", false) => "x86",
        ("arm", _) => "arm",
        (other, _) => other,
    }
}

/// `linux-x64`, `macos-arm64`: the same on every host of a kind, unlike `arch`.
pub fn stable_arch() -> String {
    format!("{}-{}", os_name(), arch_name(false))
}

/// CircleCI's `{{ arch }}`: `arch1-<GOOS>-<GOARCH>-<cpu family>_<cpu model>`.
fn circleci_arch() -> String {
    let goos = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let (family, model) = cpu_family_model();
    format!("arch1-{goos}-{}-{family}_{model}", arch_name(true))
}

fn cpu_family_model() -> (String, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let get = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    // x86 reports "cpu family"/"model"; ARM reports "CPU architecture"/"CPU part".
    let family = get("cpu family").or_else(|| get("CPU architecture"));
    let model = get("model").or_else(|| get("CPU part"));
    (
        family.unwrap_or_else(|| "0".into()),
        model.unwrap_or_else(|| "0".into()),
    )
}
