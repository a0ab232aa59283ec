//! What a verb did. Every verb returns one [`Outcome`]; `--json` prints it, the GitHub
//! talk-back (`report::github`) turns it into step outputs and a summary row, and `app` maps
//! it to the exit code. Field names are the `--json` interface: keep them stable.

use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Restore: the entry was found (and, unless only looked up, written in full).
    Hit(Restored),
    /// Restore: written, but some entries were refused. Not a clean hit.
    Partial(Restored),
    Miss(Missed),
    Saved(Saved),
    /// Save: an entry with the key exists, from before or from a save that got there first.
    Exists {
        key: String,
        version: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    /// Save or persist: no path matched a file, so nothing was stored.
    Empty {
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        workflow: Option<String>,
    },
    /// `--dry-run` of save or persist: what would be stored.
    DryRun(Planned),
    Persisted {
        layer: String,
        workflow: String,
        files: u64,
        bytes: u64,
        size: u64,
    },
    Attached {
        workflow: String,
        layers: Vec<String>,
        files: u64,
        bytes: u64,
    },
    /// Attach: unrelated jobs persisted these paths with different content. Exit 1.
    Conflict {
        paths: Vec<String>,
    },
    Listed {
        entries: Vec<Listed>,
        /// Stores with chunked entries, listed whole: the bytes of packs some entry
        /// references and of those none does.
        #[serde(skip_serializing_if = "Option::is_none")]
        packs: Option<PackBytes>,
    },
    Deleted {
        key: String,
        count: usize,
        dry_run: bool,
    },
    Pruned {
        removed: Vec<String>,
        remaining_bytes: u64,
        dry_run: bool,
        /// Packs of chunked entries: bytes some remaining entry references, bytes none does.
        live_pack_bytes: u64,
        dead_pack_bytes: u64,
        /// Dead packs deleted (those older than the grace period).
        packs_deleted: usize,
        /// Bytes gone from the store now: the entries' objects and the dead packs deleted.
        freed_bytes: u64,
        /// When a prune may delete the first of the dead packs it kept (ms since the epoch).
        #[serde(skip_serializing_if = "Option::is_none")]
        dead_packs_go_ms: Option<u64>,
    },
    Keys {
        keys: Vec<String>,
    },
    /// Bad input (a template, a pattern, a flag, a store URL). Exit 2.
    Invalid {
        error: String,
    },
    /// The job's own settings forbid it (GitHub's cache-mode, a read-only token).
    Skipped {
        reason: String,
    },
    /// The store or the files failed. Exit 1 when `strict` (`--strict`, and always for
    /// workspaces), else a warning and exit 0.
    Error {
        error: String,
        #[serde(skip)]
        strict: bool,
    },
}

#[derive(Debug, Serialize)]
pub struct Restored {
    pub primary_key: String,
    pub matched_key: String,
    /// True only when the primary key matched exactly and everything was written.
    pub cache_hit: bool,
    pub version: String,
    pub scope: String,
    /// Where the entry was found.
    pub store: String,
    pub size: Option<u64>,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Entries the extractor would not write, each with its reason.
    pub refused: Vec<String>,
    /// The CI build that saved the entry, where the store records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Found but not downloaded (`--lookup-only`, `--dry-run`).
    pub lookup_only: bool,
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub struct Missed {
    pub primary_key: String,
    pub keys: Vec<String>,
    pub version: String,
    /// Where the keys were looked for.
    pub store: String,
    pub reason: MissReason,
    /// `--fail-on-miss`: exit 1.
    #[serde(skip)]
    pub fail: bool,
}

#[derive(Debug, Serialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    NotFound,
    /// Found, but its bytes did not check out; removed from the store.
    Corrupt,
}

#[derive(Debug, Serialize)]
pub struct Saved {
    pub key: String,
    pub version: String,
    pub scope: String,
    /// Where the entry went.
    pub store: String,
    pub size: u64,
    pub files: u64,
    pub bytes: u64,
    pub sha256: String,
    pub seconds: f64,
    /// Chunked entries: chunks in all, reused, and the bytes of new packs uploaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<crate::chunked::SaveStats>,
}

#[derive(Debug, Serialize)]
pub struct Planned {
    /// The key (save) or the layer name (persist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    pub version: String,
    pub scope: String,
    pub store: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct PackBytes {
    pub count: usize,
    pub live_bytes: u64,
    pub dead_bytes: u64,
}

/// One row of `ls`.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub key: String,
    pub scope: String,
    pub version: String,
    pub size: Option<u64>,
    pub files: u64,
    pub created_ms: u64,
    pub used_ms: u64,
    /// The paths it was saved from (empty where the store does not record them).
    pub paths: Vec<String>,
}
