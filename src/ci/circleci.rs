//! CircleCI.

use super::{get, CiInfo, Provider};
use std::collections::HashMap;

pub fn detect(env: &HashMap<String, String>) -> Option<CiInfo> {
    get(env, "CIRCLECI")?;
    let mut i = CiInfo::empty(Provider::CircleCi, "CircleCI");
    i.branch = get(env, "CIRCLE_BRANCH").or_else(|| get(env, "CIRCLE_TAG"));
    i.revision = get(env, "CIRCLE_SHA1");
    i.build_num = get(env, "CIRCLE_BUILD_NUM");
    i.workflow_id = get(env, "CIRCLE_WORKFLOW_ID");
    // Parallel copies of one job share CIRCLE_JOB; each persists its own layer.
    let parallel = get(env, "CIRCLE_NODE_TOTAL").is_some_and(|t| t != "1");
    i.job = get(env, "CIRCLE_JOB").map(|j| match get(env, "CIRCLE_NODE_INDEX") {
        Some(n) if parallel => format!("{j}-{n}"),
        _ => j,
    });
    i.workspace = get(env, "CIRCLE_WORKING_DIRECTORY").map(|d| {
        // CircleCI gives "~/project" literally.
        crate::select::expand_tilde(&d, crate::select::home_dir().as_deref())
    });
    Some(i)
}
