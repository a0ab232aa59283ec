//! Where entries live. One file per store behind the [`Store`] trait; `ops/` talks only to
//! the trait. Stores know nothing of tar: an entry is opaque bytes plus its [`Meta`].

pub mod blob;
mod dav;
mod gha;
pub(crate) mod http;
mod local;
pub mod objects;
mod oci;
pub mod parse;
mod s3;

pub use gha::GhaStore;
pub use local::LocalStore;
pub use oci::OciStore;

pub use crate::error::{StoreError, StoreResult};

use crate::error::user_error;
use crate::vars::Vars;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

/// What travels with an entry's bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub key: String,
    pub version: String,
    pub scope: String,
    /// Archive size in bytes, where the store knows it (GitHub's lookups do not say).
    pub size: Option<u64>,
    /// The archive's sha256 (hex), checked on every restore, where the store records one
    /// (GitHub's does not: zstd's frame checksum and the length stand in).
    #[serde(default, deserialize_with = "some_text")]
    pub sha256: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When a restore last used it (local store: the entry directory's mtime).
    #[serde(default)]
    pub used_ms: u64,
    pub kura_version: String,
    /// Files and bytes before compression (0 where the store does not record them).
    pub files: u64,
    pub bytes: u64,
    /// Entries of the tar stream (files, directories, links); 0 where not recorded (entries
    /// of older kura, other tools).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub entries: u64,
    pub paths: Vec<String>,
    /// The CI build that saved it (CircleCI's "Found a cache from build N").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Workspace layers only: archive name → content digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub manifest: BTreeMap<String, String>,
    /// Workspace layers only: the layers the persisting job had attached (its upstream).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// What the entry's object is: an archive, or the manifest of a chunked entry.
    #[serde(default, skip_serializing_if = "Format::is_archive")]
    pub format: Format,
    /// Chunked entries: the packs they reference (for `prune`'s mark) and the bytes of
    /// their chunks as stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<String>,
    /// Chunked entries: the entry's size in the store, its manifest and the frames it
    /// references (`size` is the manifest's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<u64>,
    /// Where the store found the entry; never stored.
    #[serde(skip)]
    pub handle: Handle,
}

/// The two kinds of entry (`save --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One tar + zstd archive: what every store and actions/cache read.
    #[default]
    Archive,
    /// A manifest of content-defined chunks kept in shared packs: a save uploads only the
    /// chunks its base entry does not have.
    Chunked,
}

impl Format {
    fn is_archive(&self) -> bool {
        *self == Format::Archive
    }
}

/// How a store finds an entry again, when its key, version and scope do not say.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Handle {
    /// Built by kura from the user's own key, version and scope, never read from a store.
    #[default]
    Derived,
    /// The local store's scope, version and entry directory names, as found.
    Dir {
        scope: String,
        version: String,
        name: String,
    },
    /// The metadata object's name (S3, HTTP).
    Object(String),
    /// An OCI manifest (by digest) and the archive blob it names.
    Manifest { digest: String, blob: String },
    /// A signed download URL (GitHub's lookups).
    Url(String),
    /// A GitHub cache id (GitHub's REST listings).
    Id(u64),
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Early entries wrote `"sha256": ""` for "none".
fn some_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()))
}

impl Meta {
    /// What a store knows of an entry it did not write itself (the GitHub cache).
    /// What the user knows as the entry's size: the archive's, or what a chunked entry
    /// takes in the store.
    pub fn entry_size(&self) -> Option<u64> {
        self.stored.or(self.size)
    }

    pub fn bare(key: &str, version: &str, scope: &str) -> Meta {
        Meta {
            key: key.to_string(),
            version: version.to_string(),
            scope: scope.to_string(),
            size: None,
            sha256: None,
            created_ms: 0,
            used_ms: 0,
            kura_version: String::new(),
            files: 0,
            bytes: 0,
            entries: 0,
            paths: Vec::new(),
            build: None,
            manifest: BTreeMap::new(),
            parents: Vec::new(),
            format: Format::Archive,
            packs: Vec::new(),
            stored: None,
            handle: Handle::Derived,
        }
    }
}

/// One restore candidate. GitHub order tries the exact key before prefixes; CircleCI order
/// treats every candidate as a prefix, newest wins.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub key: String,
    pub exact_first: bool,
}

pub enum Committed {
    Saved,
    /// Another save of the same key, version and scope got there first.
    Exists,
}

/// A streaming write of one entry. Nothing is visible until `commit`; dropping it aborts.
pub trait Upload: Write + Send {
    fn commit(self: Box<Self>, meta: &Meta, overwrite: bool) -> StoreResult<Committed>;
}

pub trait Store: Send + Sync {
    /// Where entries go, for dry runs and messages.
    fn location(&self) -> String;

    /// Entries in one scope and version whose key starts with `prefix`.
    fn list_prefix(&self, scope: &str, version: &str, prefix: &str) -> StoreResult<Vec<Meta>>;

    /// Every entry whose key starts with `prefix`, in every scope and version.
    fn list(&self, prefix: &str) -> StoreResult<Vec<Meta>>;

    fn open(&self, meta: &Meta) -> StoreResult<Box<dyn Read + Send>>;

    /// A new upload, or None when an entry with this key, version and scope exists or is
    /// being saved (stores that know this before any byte is sent).
    fn create(&self, scope: &str, version: &str, key: &str)
        -> StoreResult<Option<Box<dyn Upload>>>;

    fn delete(&self, meta: &Meta) -> StoreResult<()>;

    /// Most keys one restore may try (GitHub's service takes ten).
    fn max_keys(&self) -> Option<usize> {
        None
    }

    /// Make room for `save --overwrite` where entries cannot be replaced in place.
    fn prepare_overwrite(&self, _scope: &str, _version: &str, _key: &str) -> StoreResult<()> {
        Ok(())
    }

    /// Remove what killed saves left behind (temporary files, unfinished uploads).
    fn clean_incomplete(&self) {}

    /// Record that a restore used the entry (for pruning least recently used entries).
    fn touch(&self, _meta: &Meta) {}

    /// Where chunked entries keep their packs, on stores that take them.
    fn packs(&self) -> Option<std::sync::Arc<dyn crate::chunked::Packs>> {
        None
    }

    /// Scope by scope, candidate by candidate: exact key first where asked, then the newest
    /// entry whose key has the candidate as a prefix. Stores whose service matches keys
    /// itself override this.
    fn lookup(
        &self,
        scopes: &[String],
        version: &str,
        candidates: &[Candidate],
    ) -> StoreResult<Option<Meta>> {
        for scope in scopes {
            for c in candidates {
                let found = self.list_prefix(scope, version, &c.key)?;
                if c.exact_first {
                    if let Some(m) = newest(found.iter().filter(|m| m.key == c.key)) {
                        return Ok(Some(m.clone()));
                    }
                }
                if let Some(m) = newest(found.iter()) {
                    return Ok(Some(m.clone()));
                }
            }
        }
        Ok(None)
    }

    fn exists(&self, scope: &str, version: &str, key: &str) -> StoreResult<bool> {
        Ok(self
            .list_prefix(scope, version, key)?
            .iter()
            .any(|m| m.key == key))
    }
}

fn newest<'a>(it: impl Iterator<Item = &'a Meta>) -> Option<&'a Meta> {
    it.max_by_key(|m| m.created_ms)
}

/// Open the store a URL names; no URL means GitHub's cache inside an action given the runtime
/// token, else the local default directory. A URL kura cannot read is bad input (exit 2); a
/// store that cannot start is a failure like any other.
pub fn open(url: Option<&str>, vars: &Vars) -> Result<Box<dyn Store>> {
    let url = url.map(str::trim).filter(|u| !u.is_empty());
    match url {
        None if gha::available(vars) => Ok(Box::new(GhaStore::open("gha://", vars)?)),
        None => Ok(Box::new(LocalStore::new(default_dir(vars)?))),
        Some(u) if u.starts_with("file://") => {
            let path = &u["file://".len()..];
            if !path.starts_with('/') {
                return Err(user_error(format!("store URL {u:?}: a file:// URL needs an absolute path, as in file:///var/cache/kura")));
            }
            Ok(Box::new(LocalStore::new(PathBuf::from(path))))
        }
        Some(u) if u.starts_with('/') => Ok(Box::new(LocalStore::new(PathBuf::from(u)))),
        Some(u) if u.starts_with("s3://") => Ok(Box::new(s3::open(u, vars)?)),
        Some(u) if u.starts_with("gha://") => Ok(Box::new(GhaStore::open(u, vars)?)),
        Some(u) if u.starts_with("oci://") || u.starts_with("oci+http://") => {
            Ok(Box::new(OciStore::open(u, vars)?))
        }
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            Ok(Box::new(dav::open(u, vars)?))
        }
        Some(u) => Err(user_error(format!(
            "store URL {u:?} is not understood; use file:///DIR, s3://BUCKET/PREFIX, oci://HOST/REPOSITORY, http(s)://HOST/PATH or gha://"
        ))),
    }
}

/// The directory [`open`] keeps entries in when it picks the local default (no URL given,
/// and no GitHub cache service for this job); None for any other store.
pub fn job_local_default(url: Option<&str>, vars: &Vars) -> Option<PathBuf> {
    let given = url.map(str::trim).is_some_and(|u| !u.is_empty());
    if given || gha::available(vars) {
        return None;
    }
    default_dir(vars).ok()
}

pub fn default_dir(vars: &Vars) -> Result<PathBuf> {
    if let Some(x) = vars.get("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(x).join("kura"));
    }
    match vars.home() {
        Some(h) => Ok(h.join(".cache").join("kura")),
        None => Err(user_error(
            "no store given and neither XDG_CACHE_HOME nor HOME is set; pass --store file:///DIR",
        )),
    }
}

/// Everything but `[A-Za-z0-9._-]` is percent-encoded in stored names.
const NAME: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'_')
    .remove(b'-');

/// Percent-encode everything but `[A-Za-z0-9._-]`. Encoding is per byte, so the encoding of
/// a prefix is a prefix of the encoding: restore-key lookups stay prefix scans.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, NAME).to_string()
}

/// Longest directory name used for a key; longer encodings are cut and given a hash suffix.
const MAX_NAME: usize = 200;

/// A key's directory name: its encoding, or for long keys (whose encoding would exceed file
/// name and object key limits) a cut encoding with a hash of the key.
/// A name made only of dots would mean "here" or "the parent" as a path segment.
fn no_dot_segment(enc: String) -> String {
    if enc.bytes().all(|b| b == b'.') {
        enc.replace('.', "%2E")
    } else {
        enc
    }
}

/// What the stored names of every key starting with `prefix` begin with, for name-prefix
/// scans: the encoding, shortened to below the point where long names are cut, and nothing
/// for a prefix of dots only (such keys are stored as `%2E...`). Callers still filter on the
/// key in the metadata.
pub(crate) fn name_prefix(prefix: &str) -> String {
    let enc = encode(prefix);
    if enc.bytes().all(|b| b == b'.') {
        return String::new();
    }
    let mut cut = enc.len().min(150);
    while enc[..cut].ends_with('%') || enc[..cut.saturating_sub(1)].ends_with('%') {
        cut -= 1; // never split a %XX escape
    }
    enc[..cut].to_string()
}

/// The directory (or object name segment) of a scope: `_` for none.
pub(crate) fn scope_dir(scope: &str) -> String {
    if scope.is_empty() {
        "_".to_string()
    } else if let Some(rest) = scope.strip_prefix('.') {
        // Names starting with a dot are the store's own (`.packs`, `.tmp`).
        format!("%2E{}", encode(rest))
    } else {
        no_dot_segment(encode(scope))
    }
}

pub(crate) fn entry_name(key: &str) -> String {
    let enc = no_dot_segment(encode(key));
    if enc.len() <= MAX_NAME {
        return enc;
    }
    let mut cut = MAX_NAME - 40;
    while enc.as_bytes()[cut - 1] == b'%' || enc.as_bytes()[cut - 2] == b'%' {
        cut -= 1; // never split a %XX escape
    }
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    format!("{}~{}", &enc[..cut], &digest[..32])
}

/// The names an entry of this scope, version and key is stored under: the scope's directory
/// (or object name segment), the version's, the key's.
pub(crate) fn layout<'a>(scope: &str, version: &'a str, key: &str) -> (String, &'a str, String) {
    (scope_dir(scope), version, entry_name(key))
}

/// Whether an entry's metadata agrees with the place it was found (names relative to the
/// store's root) and holds a key a user could have given. An entry is where it was found:
/// one that disagrees is damage of that place, never a pointer to another.
pub(crate) fn agrees(m: &Meta, scope: &str, version: &str, name: &str) -> bool {
    sane(m)
        && layout(&m.scope, &m.version, &m.key) == (scope.to_string(), version, name.to_string())
}

/// [`agrees`] for an object store's metadata object, named relative to the store's prefix
/// (`<scope>/<version>/<entry>/<object>`).
pub(crate) fn agrees_object(m: &Meta, rel: &str) -> bool {
    match rel.split('/').collect::<Vec<_>>()[..] {
        [scope, version, name, _] => agrees(m, scope, version, name),
        _ => false,
    }
}

/// Whether what a store said of an entry may be printed, matched and written to the CI: its
/// key follows the rules of the user's keys (no newline can reach the runner's files), its
/// version and scope are plain names of bounded length, its sizes possible.
pub(crate) fn sane(m: &Meta) -> bool {
    let plain = |s: &str, max: usize| s.len() <= max && !s.chars().any(|c| c.is_control());
    // S3's largest object: no store holds a larger archive or manifest.
    const MAX_OBJECT: u64 = 5 << 40;
    crate::key::check_key(&m.key).is_ok()
        && m.size.is_none_or(|s| s <= MAX_OBJECT)
        && m.stored.is_none_or(|s| s <= MAX_OBJECT)
        && !m.version.is_empty()
        && m.version.len() <= 128
        && !m.version.starts_with('.')
        && m.version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && plain(&m.scope, 512)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_prefixes_and_round_trips() {
        let key = "v1-deps/linux-+abc=é";
        let enc = encode(key);
        assert!(enc
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-%".contains(c)));
        assert!(enc.starts_with(&encode("v1-deps/li")));
        let back = percent_encoding::percent_decode_str(&enc)
            .decode_utf8()
            .unwrap();
        assert_eq!(back, key);
        // The layout of existing stores: upper-case escapes, '.', '_' and '-' kept.
        assert_eq!(encode("a/b c~é._-"), "a%2Fb%20c%7E%C3%A9._-");
    }
}
