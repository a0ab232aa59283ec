//! The packs of chunked entries in a registry: blobs of the repository, which an entry's
//! manifest lists as layers after its chunk manifest. A registry addresses blobs by sha256 and
//! kura names packs by BLAKE3, so each pack layer carries its name in an annotation; the store
//! learns the names from the manifests it reads and the packs it puts. A registry cannot list
//! its blobs, and its own garbage collection deletes those no manifest references: prune only
//! forgets entries here.

use super::blob::put_bytes;
use super::client::Registry;
use crate::chunked::{PackInfo, Packs};
use crate::store::{StoreError, StoreResult};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// A pack layer's media type.
pub(super) const PACK_LAYER: &str = "application/vnd.kura.pack.v1";
/// The annotation naming the pack a layer holds.
pub(super) const PACK_NAME: &str = "dev.kura.pack";

pub(super) struct OciPacks {
    pub rt: Arc<tokio::runtime::Runtime>,
    pub reg: Arc<Registry>,
    /// Pack name → the blob's digest and size, as learned.
    known: Mutex<HashMap<String, Known>>,
    /// Names that manifests gave different blobs: trusted for none of them.
    conflicting: Mutex<std::collections::HashSet<String>>,
}

#[derive(Clone)]
pub(super) struct Known {
    pub digest: String,
    pub size: u64,
    /// When this process put it (0: learned from a manifest; a registry does not say).
    put_ms: u64,
}

impl OciPacks {
    pub fn new(rt: Arc<tokio::runtime::Runtime>, reg: Arc<Registry>) -> OciPacks {
        OciPacks {
            rt,
            reg,
            known: Mutex::default(),
            conflicting: Mutex::default(),
        }
    }

    /// Learn the pack layers of a manifest read from the registry. A name that two manifests
    /// give different blobs is forgotten: one of them lies (anyone who may push to the
    /// repository may write a manifest), and an entry that needs it is a miss rather than a
    /// restore from a blob another entry chose.
    pub fn learn(&self, manifest: &serde_json::Value) {
        let mut known = self.known.lock().unwrap();
        let mut conflicting = self.conflicting.lock().unwrap();
        for l in manifest["layers"].as_array().into_iter().flatten() {
            let (Some(name), Some(digest), Some(size)) = (
                l["annotations"][PACK_NAME].as_str(),
                l["digest"].as_str(),
                l["size"].as_u64(),
            ) else {
                continue;
            };
            if l["mediaType"] != PACK_LAYER
                || !crate::chunked::valid_pack_name(name)
                || !super::valid_digest(digest)
                || conflicting.contains(name)
            {
                continue;
            }
            match known.get(name) {
                Some(k) if k.digest != digest || k.size != size => {
                    known.remove(name);
                    conflicting.insert(name.to_string());
                }
                Some(_) => {}
                None => {
                    known.insert(
                        name.to_string(),
                        Known {
                            digest: digest.to_string(),
                            size,
                            put_ms: 0,
                        },
                    );
                }
            }
        }
    }

    /// The blob holding pack `name`, if known.
    pub fn blob(&self, name: &str) -> Option<Known> {
        self.known.lock().unwrap().get(name).cloned()
    }

    fn gone(&self, name: &str) -> StoreError {
        StoreError::NotFound(format!(
            "pack {name} is gone from {}/{}",
            self.reg.host, self.reg.repo
        ))
    }
}

impl Packs for OciPacks {
    fn put(&self, name: &str, data: bytes::Bytes) -> StoreResult<()> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        self.rt.block_on(put_bytes(&self.reg, &digest, &data))?;
        self.known.lock().unwrap().insert(
            name.to_string(),
            Known {
                digest,
                size: data.len() as u64,
                put_ms: crate::store::now_ms(),
            },
        );
        Ok(())
    }

    fn get(&self, name: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        let Some(k) = self.blob(name) else {
            return Err(self.gone(name));
        };
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let reg = &self.reg;
        let r = self
            .rt
            .block_on(reg.send("read a pack", &[200, 206, 404, 416], |h| {
                h.get(reg.url(&format!("blobs/{}", k.digest)))
                    .header("range", &header)
            }))?;
        match r.status {
            404 => Err(self.gone(name)),
            // Past the blob's end: nothing, which the restore finds is short (damage).
            416 => Ok(Vec::new()),
            206 => Ok(r.body.to_vec()),
            // The whole blob: a registry that ignores ranges.
            _ => Ok(r
                .body
                .get(range.start as usize..(range.end as usize).min(r.body.len()))
                .unwrap_or_default()
                .to_vec()),
        }
    }

    /// The packs this store has learned of: a registry cannot list its blobs.
    fn list(&self) -> StoreResult<Vec<PackInfo>> {
        Ok(self
            .known
            .lock()
            .unwrap()
            .iter()
            .map(|(name, k)| PackInfo {
                name: name.clone(),
                size: k.size,
                modified_ms: k.put_ms,
            })
            .collect())
    }

    /// Forgets the pack; the blob stays. A registry checks every blob's digest as it takes
    /// it, so a pack that does not hash to its name was named wrongly by a manifest, and its
    /// blob may be another entry's: the registry's garbage collection decides.
    fn delete(&self, name: &str) -> StoreResult<()> {
        self.known.lock().unwrap().remove(name);
        self.conflicting.lock().unwrap().insert(name.to_string());
        Ok(())
    }

    fn read_note(&self) -> StoreResult<Option<Vec<u8>>> {
        Ok(None)
    }

    fn write_note(&self, _data: &[u8]) -> StoreResult<()> {
        Ok(())
    }

    fn collected_by_store(&self) -> bool {
        true
    }
}
