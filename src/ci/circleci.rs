//! CircleCI.

use super::{CiInfo, Provider};
use crate::vars::Vars;

pub fn detect(env: &Vars) -> Option<CiInfo> {
    env.string("CIRCLECI")?;
    let mut i = CiInfo::empty(Provider::CircleCi, "CircleCI");
    i.branch = env
        .string("CIRCLE_BRANCH")
        .or_else(|| env.string("CIRCLE_TAG"));
    i.revision = env.string("CIRCLE_SHA1");
    i.build_num = env.string("CIRCLE_BUILD_NUM");
    i.workflow_id = env.string("CIRCLE_WORKFLOW_ID");
    // Parallel copies of one job share CIRCLE_JOB; each persists its own layer.
    let parallel = env.string("CIRCLE_NODE_TOTAL").is_some_and(|t| t != "1");
    i.job = env
        .string("CIRCLE_JOB")
        .map(|j| match env.string("CIRCLE_NODE_INDEX") {
            Some(n) if parallel => format!("{j}-{n}"),
            _ => j,
        });
    i.workspace = env.string("CIRCLE_WORKING_DIRECTORY").map(|d| {
        // CircleCI gives "~/project" literally.
        crate::select::expand_tilde(&d, env.home().as_deref())
    });
    Some(i)
}
