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

/// Tell the runner what happened, as `actions/cache` does: step outputs (`cache-hit` is
/// `true` on an exact hit, `false` on a restore-key hit and empty on a miss;
/// `cache-primary-key`, `cache-matched-key`), state for a later save step (`CACHE_KEY`,
/// `CACHE_RESULT`), and a row in the job summary. Files the runner did not provide are
/// skipped; a file that cannot be written is reported, never fatal.
pub fn talk_back(outcome: &serde_json::Value) -> std::io::Result<()> {
    let s = |k: &str| outcome[k].as_str().unwrap_or("").to_string();
    let kind = s("outcome");
    if outcome.get("primary_key").is_some() {
        let hit = match outcome["cache_hit"].as_bool() {
            Some(true) if kind == "hit" => "true",
            Some(false) if kind == "hit" || kind == "partial" => "false",
            _ => "",
        };
        let matched = s("matched_key");
        let primary = s("primary_key");
        append(
            "GITHUB_OUTPUT",
            &format!("cache-hit={hit}\ncache-primary-key={primary}\ncache-matched-key={matched}\n"),
        )?;
        append(
            "GITHUB_STATE",
            &format!("CACHE_KEY={primary}\nCACHE_RESULT={matched}\n"),
        )?;
    }
    let row = match kind.as_str() {
        "hit" => Some(("restore", s("matched_key"), "restored")),
        "partial" => Some(("restore", s("matched_key"), "restored in part")),
        "miss" => Some(("restore", s("primary_key"), "not found")),
        "saved" => Some(("save", s("key"), "saved")),
        "exists" => Some(("save", s("key"), "already saved")),
        _ => None,
    };
    if let Some((verb, key, what)) = row {
        let size = outcome["size"].as_u64().unwrap_or(0);
        let secs = outcome["seconds"].as_f64().unwrap_or(0.0);
        let (size_s, time_s, speed_s) = if size > 0 && secs > 0.0 {
            (
                crate::report::human(size),
                format!("{secs:.1} s"),
                format!(
                    "{}/s",
                    crate::report::human((size as f64 / secs.max(1e-3)) as u64)
                ),
            )
        } else {
            ("".into(), "".into(), "".into())
        };
        append(
            "GITHUB_STEP_SUMMARY",
            &format!(
                "| kura {verb} | key | result | size | time | speed |\n|---|---|---|---|---|---|\n| | `{}` | {what} | {size_s} | {time_s} | {speed_s} |\n\n",
                key.replace('`', "'"),
            ),
        )?;
    }
    Ok(())
}

fn append(var: &str, text: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?
        .write_all(text.as_bytes())
}
