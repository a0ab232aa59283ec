//! GitLab CI.

use super::{get, CiInfo, Provider};
use std::collections::HashMap;
use std::path::PathBuf;

pub fn detect(env: &HashMap<String, String>) -> Option<CiInfo> {
    get(env, "GITLAB_CI")?;
    let mut i = CiInfo::empty(Provider::GitLab, "GitLab CI");
    i.branch = get(env, "CI_COMMIT_REF_NAME");
    i.revision = get(env, "CI_COMMIT_SHA");
    i.build_num = get(env, "CI_JOB_ID");
    i.workflow_id = get(env, "CI_PIPELINE_ID");
    i.job = get(env, "CI_JOB_NAME");
    i.workspace = get(env, "CI_PROJECT_DIR").map(PathBuf::from);
    // GitLab keeps caches of protected and unprotected refs apart so that an unprotected
    // branch cannot poison what protected pipelines restore.
    let half = if get(env, "CI_COMMIT_REF_PROTECTED").as_deref() == Some("true") {
        "protected"
    } else {
        "non_protected"
    };
    i.write_scope = half.to_string();
    i.read_scopes = vec![half.to_string()];
    Some(i)
}
