//! GitLab CI.

use super::{CiInfo, Provider};
use crate::vars::Vars;
use std::path::PathBuf;

pub fn detect(env: &Vars) -> Option<CiInfo> {
    env.string("GITLAB_CI")?;
    let mut i = CiInfo::empty(Provider::GitLab, "GitLab CI");
    i.branch = env.string("CI_COMMIT_REF_NAME");
    i.revision = env.string("CI_COMMIT_SHA");
    i.build_num = env.string("CI_JOB_ID");
    i.workflow_id = env.string("CI_PIPELINE_ID");
    i.job = env.string("CI_JOB_NAME");
    i.workspace = env.string("CI_PROJECT_DIR").map(PathBuf::from);
    // GitLab keeps caches of protected and unprotected refs apart so that an unprotected
    // branch cannot poison what protected pipelines restore.
    let half = if env.string("CI_COMMIT_REF_PROTECTED").as_deref() == Some("true") {
        "protected"
    } else {
        "non_protected"
    };
    i.write_scope = half.to_string();
    i.read_scopes = vec![half.to_string()];
    Some(i)
}
