//! GitHub Actions.

use super::{get, CiInfo, Provider};
use std::collections::HashMap;
use std::path::PathBuf;

pub fn detect(env: &HashMap<String, String>) -> Option<CiInfo> {
    get(env, "GITHUB_ACTIONS")?;
    let mut i = CiInfo::empty(Provider::GitHub, "GitHub Actions");
    // On pull requests GITHUB_REF_NAME is "<n>/merge"; the head branch is what users mean.
    i.branch = get(env, "GITHUB_HEAD_REF").or_else(|| get(env, "GITHUB_REF_NAME"));
    i.revision = get(env, "GITHUB_SHA");
    i.build_num = get(env, "GITHUB_RUN_NUMBER");
    // The run id without the attempt: a re-run of failed jobs must still see the layers that
    // the jobs which succeeded in the first attempt persisted.
    i.workflow_id = get(env, "GITHUB_RUN_ID");
    i.attempt = get(env, "GITHUB_RUN_ATTEMPT")
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    i.job = get(env, "GITHUB_JOB");
    i.workspace = get(env, "GITHUB_WORKSPACE").map(PathBuf::from);
    if let Some(own) = get(env, "GITHUB_REF") {
        let mut read = vec![own.clone()];
        let base = get(env, "GITHUB_BASE_REF");
        let default = get(env, "KURA_DEFAULT_BRANCH").or_else(|| default_branch(env));
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
fn default_branch(env: &HashMap<String, String>) -> Option<String> {
    let raw = std::fs::read(get(env, "GITHUB_EVENT_PATH")?).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v["repository"]["default_branch"]
        .as_str()
        .map(str::to_string)
}
