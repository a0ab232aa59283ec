//! What the host CI tells us: branch, revision, workflow and job, workspace.
//!
//! One file per CI. Each only translates its environment into a [`CiInfo`]; nothing here
//! decides anything about caching.

mod circleci;
mod github;
mod gitlab;
mod local;

pub use github::fork_pr;

use crate::settings;
use crate::vars::Vars;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    CircleCi,
    GitLab,
    Local,
}

#[derive(Debug, Clone)]
pub struct CiInfo {
    pub provider: Provider,
    /// A human name for messages: "GitHub Actions", "CircleCI", ...
    pub name: &'static str,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub build_num: Option<String>,
    /// Identifies one run of a workflow; workspaces are namespaced by it.
    pub workflow_id: Option<String>,
    pub job: Option<String>,
    /// The attempt of this run (GitHub re-runs); a later attempt's layer replaces an earlier one.
    pub attempt: u32,
    /// The base directory for archive names (GITHUB_WORKSPACE, CIRCLE_WORKING_DIRECTORY, ...).
    pub workspace: Option<PathBuf>,
    /// The scope saves write to, and the scopes restores read, in order ("" = unscoped).
    /// GitHub: own ref, then the PR's base branch, then the default branch. GitLab: the
    /// protected or the non_protected half. CircleCI and local: none.
    pub write_scope: String,
    pub read_scopes: Vec<String>,
}

impl CiInfo {
    fn empty(provider: Provider, name: &'static str) -> CiInfo {
        CiInfo {
            provider,
            name,
            branch: None,
            revision: None,
            build_num: None,
            workflow_id: None,
            job: None,
            attempt: 1,
            workspace: None,
            write_scope: String::new(),
            read_scopes: vec![String::new()],
        }
    }
}

/// Detect the CI from the environment, then apply `KURA_*` overrides.
pub fn detect(env: &Vars) -> CiInfo {
    let mut info = github::detect(env)
        .or_else(|| circleci::detect(env))
        .or_else(|| gitlab::detect(env))
        .unwrap_or_else(|| local::detect(env));
    let over = |v: &mut Option<String>, name: &str| {
        if let Some(x) = env.string(name) {
            *v = Some(x);
        }
    };
    over(&mut info.branch, settings::BRANCH.name);
    over(&mut info.revision, settings::REVISION.name);
    over(&mut info.build_num, settings::BUILD_NUM.name);
    over(&mut info.workflow_id, settings::WORKFLOW.name);
    over(&mut info.job, settings::JOB.name);
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vars {
        Vars::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn github_pull_request_uses_head_ref_and_run_id() {
        let i = detect(&env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF_NAME", "12/merge"),
            ("GITHUB_HEAD_REF", "feature/x"),
            ("GITHUB_SHA", "abc"),
            ("GITHUB_RUN_ID", "99"),
            ("GITHUB_RUN_ATTEMPT", "3"),
            ("GITHUB_RUN_NUMBER", "7"),
            ("GITHUB_JOB", "build"),
            ("GITHUB_WORKSPACE", "/w"),
        ]));
        assert_eq!(i.provider, Provider::GitHub);
        assert_eq!(i.branch.as_deref(), Some("feature/x"));
        assert_eq!(i.workflow_id.as_deref(), Some("99"));
        assert_eq!(i.attempt, 3);
        assert_eq!(i.build_num.as_deref(), Some("7"));
        assert_eq!(i.workspace, Some(PathBuf::from("/w")));
        assert_eq!(i.write_scope, "");
    }

    #[test]
    fn github_scopes_read_own_ref_then_base_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let event = dir.path().join("event.json");
        std::fs::write(&event, r#"{"repository":{"default_branch":"trunk"}}"#).unwrap();
        let i = detect(&env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF", "refs/pull/12/merge"),
            ("GITHUB_BASE_REF", "release"),
            ("GITHUB_EVENT_PATH", event.to_str().unwrap()),
        ]));
        assert_eq!(i.write_scope, "refs/pull/12/merge");
        assert_eq!(
            i.read_scopes,
            [
                "refs/pull/12/merge",
                "refs/heads/release",
                "refs/heads/trunk"
            ]
        );
    }

    #[test]
    fn circleci_parallel_jobs_get_distinct_job_names() {
        let i = detect(&env(&[
            ("CIRCLECI", "true"),
            ("CIRCLE_BRANCH", "main"),
            ("CIRCLE_WORKFLOW_ID", "wf"),
            ("CIRCLE_JOB", "test"),
            ("CIRCLE_NODE_TOTAL", "4"),
            ("CIRCLE_NODE_INDEX", "2"),
        ]));
        assert_eq!(i.provider, Provider::CircleCi);
        assert_eq!(i.job.as_deref(), Some("test-2"));
        assert_eq!(i.workflow_id.as_deref(), Some("wf"));
    }

    #[test]
    fn gitlab_and_overrides() {
        let i = detect(&env(&[
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_REF_NAME", "dev"),
            ("CI_PIPELINE_ID", "5"),
            ("CI_JOB_NAME", "rspec 1/2"),
            ("CI_PROJECT_DIR", "/builds/p"),
            ("KURA_BRANCH", "override"),
        ]));
        assert_eq!(i.provider, Provider::GitLab);
        assert_eq!(i.branch.as_deref(), Some("override"));
        assert_eq!(i.job.as_deref(), Some("rspec 1/2"));
        assert_eq!(i.read_scopes, ["non_protected"]);
    }
}
