//! No CI: a developer's machine or a self-hosted runner kura does not know. Branch and
//! revision come from git when the current directory is a checkout.

use super::{CiInfo, Provider};
use crate::vars::Vars;
use std::process::Command;

pub fn detect(_env: &Vars) -> CiInfo {
    let mut i = CiInfo::empty(Provider::Local, "no CI detected");
    i.branch = git(&["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD");
    i.revision = git(&["rev-parse", "HEAD"]);
    i
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}
