//! GitHub Actions.

use super::{CiInfo, Provider};
use crate::settings;
use crate::vars::Vars;
use std::path::PathBuf;

pub fn detect(env: &Vars) -> Option<CiInfo> {
    env.string("GITHUB_ACTIONS")?;
    let mut i = CiInfo::empty(Provider::GitHub, "GitHub Actions");
    // On pull requests GITHUB_REF_NAME is "<n>/merge"; the head branch is what users mean.
    i.branch = env
        .string("GITHUB_HEAD_REF")
        .or_else(|| env.string("GITHUB_REF_NAME"));
    i.revision = env.string("GITHUB_SHA");
    i.build_num = env.string("GITHUB_RUN_NUMBER");
    // The run id without the attempt: a re-run of failed jobs must still see the layers that
    // the jobs which succeeded in the first attempt persisted.
    i.workflow_id = env.string("GITHUB_RUN_ID");
    i.attempt = env
        .string("GITHUB_RUN_ATTEMPT")
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    i.job = env.string("GITHUB_JOB");
    i.workspace = env.string("GITHUB_WORKSPACE").map(PathBuf::from);
    if let Some(own) = env.string("GITHUB_REF") {
        let mut read = vec![own.clone()];
        let base = env.string("GITHUB_BASE_REF");
        let default = env
            .string(settings::DEFAULT_BRANCH.name)
            .or_else(|| default_branch(env));
        for b in [base, default].into_iter().flatten() {
            let r = format!("refs/heads/{b}");
            if !read.contains(&r) {
                read.push(r);
            }
        }
        i.write_scope = own;
        i.read_scopes = read;
    }
    Some(i)
}

/// The repository's default branch, from the event payload the runner writes.
fn default_branch(env: &Vars) -> Option<String> {
    let raw = std::fs::read(env.string("GITHUB_EVENT_PATH")?).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v["repository"]["default_branch"]
        .as_str()
        .map(str::to_string)
}

/// Whether the job runs for a pull request from a fork (its token is read-only), from the
/// event payload the runner writes.
pub fn fork_pr(vars: &Vars) -> bool {
    let pr = matches!(
        vars.get("GITHUB_EVENT_NAME"),
        Some("pull_request" | "pull_request_review" | "pull_request_review_comment")
    );
    let event = vars
        .get("GITHUB_EVENT_PATH")
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some(e) = event.filter(|_| pr) else {
        return false;
    };
    let head = &e["pull_request"]["head"]["repo"];
    head["fork"].as_bool() == Some(true)
        || head["full_name"]
            .as_str()
            .is_some_and(|h| Some(h) != e["repository"]["full_name"].as_str())
}
