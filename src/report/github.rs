//! Telling the runner what happened, as `actions/cache` does: step outputs (`cache-hit` is
//! `true` on an exact hit, `false` on a restore-key hit or a partial restore, and empty on a
//! miss; `cache-primary-key`, `cache-matched-key`), state for a later save step (`CACHE_KEY`,
//! `CACHE_RESULT`), and a row in the job summary. Files the runner did not provide are
//! skipped; a file that cannot be written is reported, never fatal.

use crate::outcome::{Missed, Outcome, Restored};
use crate::units::human;
use std::io::Write;
use std::path::PathBuf;

#[derive(Clone)]
pub struct Files {
    pub output: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub summary: Option<PathBuf>,
}

pub fn talk_back(outcome: &Outcome, files: &Files) -> std::io::Result<()> {
    match outcome {
        Outcome::Hit(r) | Outcome::Partial(r) => {
            let hit = if r.cache_hit { "true" } else { "false" };
            outputs(files, hit, &r.primary_key, &r.matched_key)?;
        }
        Outcome::Miss(Missed { primary_key, .. }) => outputs(files, "", primary_key, "")?,
        _ => {}
    }
    let (verb, key, what, size, secs, store) = match outcome {
        Outcome::Hit(r) if r.lookup_only || r.dry_run => restore_row(r, "found"),
        Outcome::Hit(r) => restore_row(r, "restored"),
        Outcome::Partial(r) => restore_row(r, "restored in part"),
        Outcome::Miss(m) => (
            "restore",
            m.primary_key.as_str(),
            "not found",
            None,
            0.0,
            m.store.as_str(),
        ),
        Outcome::Saved(s) => (
            "save",
            s.key.as_str(),
            "saved",
            Some(s.size),
            s.seconds,
            s.store.as_str(),
        ),
        Outcome::Exists { key, .. } => ("save", key.as_str(), "already saved", None, 0.0, ""),
        _ => return Ok(()),
    };
    let (size_s, time_s, speed_s) = match size {
        Some(size) if size > 0 && secs > 0.0 => (
            human(size),
            format!("{secs:.1} s"),
            format!("{}/s", human((size as f64 / secs.max(1e-3)) as u64)),
        ),
        _ => Default::default(),
    };
    append(
        &files.summary,
        &format!(
            "| kura {verb} | key | result | size | time | speed | store |\n|---|---|---|---|---|---|---|\n| | `{}` | {what} | {size_s} | {time_s} | {speed_s} | {} |\n\n",
            summary_cell(key),
            summary_cell(store),
        ),
    )
}

type Row<'a> = (
    &'static str,
    &'a str,
    &'static str,
    Option<u64>,
    f64,
    &'a str,
);

fn restore_row<'a>(r: &'a Restored, what: &'static str) -> Row<'a> {
    ("restore", &r.matched_key, what, r.size, r.seconds, &r.store)
}

fn outputs(files: &Files, hit: &str, primary: &str, matched: &str) -> std::io::Result<()> {
    let outputs = [
        ("cache-hit", hit),
        ("cache-primary-key", primary),
        ("cache-matched-key", matched),
    ];
    append(&files.output, &file_commands(&outputs)?)?;
    append(
        &files.state,
        &file_commands(&[("CACHE_KEY", primary), ("CACHE_RESULT", matched)])?,
    )
}

/// Name-value pairs in the runner's delimiter form (`name<<DELIM`, the value, `DELIM`), as
/// `@actions/core` writes them: whatever a value holds (a key a store returned), it cannot
/// end early or add a pair, since the delimiter is random and checked against it.
fn file_commands(pairs: &[(&str, &str)]) -> std::io::Result<String> {
    let delim = format!("ghadelimiter_{}", crate::random::hex());
    let mut out = String::new();
    for (name, value) in pairs {
        if name.contains(&delim) || value.contains(&delim) {
            return Err(std::io::Error::other(
                "a value holds the random delimiter: refusing to write it",
            ));
        }
        out.push_str(&format!("{name}<<{delim}\n{value}\n{delim}\n"));
    }
    Ok(out)
}

/// A key in a Markdown table cell: on one line, no cell break, no code span end.
fn summary_cell(key: &str) -> String {
    crate::text::untrusted(key)
        .replace('`', "'")
        .replace('|', "\\|")
}

fn append(path: &Option<PathBuf>, text: &str) -> std::io::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?
        .write_all(text.as_bytes())
}
