//! The verbs. The only place that combines keys, selections, archives and stores.

mod chunked;
mod manage;
mod restore;
mod save;
mod state;
mod workspace;

pub use manage::{ls, prune, rm, Limits};
pub use restore::{restore, Keys, RestoreOptions};
pub use save::{save, SaveKey, SaveOptions};
pub use workspace::{attach, persist, AttachOptions, PersistOptions, RunIds};

use crate::key::Context;
use crate::report::Report;
use crate::store::{Format, Store};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// What every verb needs, built once by the composition root (`app`).
pub struct Env {
    pub ctx: Context,
    pub store: Box<dyn Store>,
    pub report: Report,
    /// Archive names are relative to it (absolute).
    pub base: PathBuf,
    pub write_scope: String,
    pub read_scopes: Vec<String>,
    pub workers: u32,
    /// The opt-in local cache of chunks (`--chunk-cache`).
    pub chunk_cache: Option<std::sync::Arc<crate::chunked::ChunkCache>>,
}

pub use crate::error::{user_error, UserError};

/// Where a save (or persist) puts its entry, and how.
pub(super) struct Target<'a> {
    pub scope: &'a str,
    pub version: &'a str,
    pub key: &'a str,
    pub paths: &'a [String],
    pub overwrite: bool,
    /// Workspace layers: the layers the job had attached.
    pub parents: Vec<String>,
    /// Chunked where the store takes it, else an archive.
    pub format: Format,
    /// The average chunk size of a chunked save.
    pub chunk_size: u32,
}

impl Env {
    /// On CircleCI kura prints its native step's lines, which users know from their logs.
    fn circleci(&self) -> bool {
        self.ctx.ci.provider == crate::ci::Provider::CircleCi
    }
}

/// The path lines as GitHub's version hash sees them: split on newlines, trimmed, empty lines
/// dropped, `! x` written `!x`.
pub fn path_lines(raw: &[String]) -> Vec<String> {
    raw.iter()
        .flat_map(|r| r.split('\n'))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.strip_prefix('!') {
            Some(rest) => format!("!{}", rest.trim_start()),
            None => l.to_string(),
        })
        .collect()
}

/// GitHub's cache version: sha256 of the path lines, the compression and the salt, joined
/// with `|`. An entry restores only into a job that asks for the same paths.
pub fn cache_version(paths: &[String]) -> String {
    cache_version_for(paths, crate::archive::COMPRESSION)
}

/// The version of these paths for one compression method (`zstd-without-long`, `zstd`, `gzip`).
pub fn cache_version_for(paths: &[String], compression: &str) -> String {
    let mut parts: Vec<&str> = paths.iter().map(String::as_str).collect();
    parts.push(compression);
    parts.push("1.0");
    hex::encode(Sha256::digest(parts.join("|").as_bytes()))
}

/// Render templates, mapping template errors to bad input and warning of what rendering
/// noticed (a `hashFiles` that matched nothing).
pub fn render_all(
    templates: &[String],
    ctx: &Context,
    report: &Report,
) -> anyhow::Result<Vec<String>> {
    let keys = templates
        .iter()
        .map(|t| crate::key::render(t, ctx).map_err(|e| user_error(e.to_string())))
        .collect();
    for note in ctx.take_notes() {
        report.warn(note);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_matches_the_official_client() {
        // Vectors from actions/toolkit and the reference brief, checked with sha256sum.
        assert_eq!(
            cache_version(&["node_modules".into()]),
            "7fcda33c1e1d849a13bcc06f49b9ab64efc01ca9dabe4d7a8d0d387feef4fc88"
        );
        assert_eq!(
            cache_version(&["~/.npm".into()]),
            "c242501c19ada3dcced7a83b074ccb8e79f816602d4125493924624b38591de2"
        );
        assert_eq!(
            cache_version(&["some/dir".into()]),
            "faf2a4e2d8f18b7049831daf84358f4bac067ce5b585c9fafd5789b9fd94e6de"
        );
    }

    #[test]
    fn path_lines_are_trimmed_split_and_bang_joined() {
        let raw = vec!["  a \n\n! b".to_string(), "c".to_string()];
        assert_eq!(path_lines(&raw), ["a", "!b", "c"]);
    }
}
