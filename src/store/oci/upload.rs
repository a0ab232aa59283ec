//! One save to a registry: the archive (or a chunked entry's manifest) packs into a temporary
//! file (hashed on the way), and `commit` uploads the blob unless the registry has it, then
//! puts the manifest under the tag. Packs go up before, through `OciPacks`.

use super::blob;
use super::client::Registry;
use super::packs::{OciPacks, PACK_LAYER, PACK_NAME};
use super::{ARTIFACT, CHUNKS_LAYER, LAYER, MANIFEST, META};
use crate::store::StoreResult;
use crate::store::{Committed, Format, Meta, Upload};
use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long after putting its manifest a writer reads the tag back: concurrent saves of one
/// key have put theirs by then, and the tag names the last.
const SETTLE: Duration = Duration::from_secs(1);
const EMPTY: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

pub(super) struct OciUpload {
    rt: Arc<tokio::runtime::Runtime>,
    reg: Arc<Registry>,
    packs: Arc<OciPacks>,
    tag: String,
    path: PathBuf,
    file: Option<BufWriter<File>>,
    hasher: Sha256,
    size: u64,
}

impl OciUpload {
    pub fn new(
        rt: Arc<tokio::runtime::Runtime>,
        reg: Arc<Registry>,
        packs: Arc<OciPacks>,
        tmp: &std::path::Path,
        tag: String,
    ) -> Result<OciUpload> {
        let path = tmp.join(format!(
            "kura-oci-{:032x}.tzst",
            crate::store::http::random()
        ));
        let file = File::create(&path)
            .with_context(|| format!("cannot create {} to pack into", path.display()))?;
        Ok(OciUpload {
            rt,
            reg,
            packs,
            tag,
            path,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Upload the archive unless the registry already has it, read from its file piece by
    /// piece.
    async fn blob(&self, digest: &str) -> Result<()> {
        use std::os::unix::fs::FileExt as _;
        let file = File::open(&self.path)?;
        blob::put(&self.reg, digest, self.size, |at, len| {
            let mut piece = vec![0u8; len];
            file.read_exact_at(&mut piece, at)?;
            Ok(bytes::Bytes::from(piece))
        })
        .await
    }
}

impl Write for OciUpload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.as_mut().expect("write after commit").write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Upload for OciUpload {
    fn commit(mut self: Box<Self>, meta: &Meta, overwrite: bool) -> StoreResult<Committed> {
        let file = self.file.take().expect("committed twice");
        file.into_inner().map_err(|e| e.into_error())?;
        let digest = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        let manifest = manifest(meta, &digest, self.size, &self.packs)?;
        let mine = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        let reg = self.reg.clone();
        let tag_url = reg.url(&format!("manifests/{}", self.tag));
        let this = &*self;
        self.rt.block_on(async {
            this.blob(&digest).await?;
            blob::put(&reg, EMPTY, 2, |_, _| Ok(bytes::Bytes::from_static(b"{}"))).await?;
            // Right before the commit: a key saved meanwhile is kept.
            if tag_head(&reg, &tag_url).await?.status == 200 && !overwrite {
                return Ok(Committed::Exists);
            }
            if !put_manifest(&reg, &tag_url, manifest, overwrite).await? {
                return Ok(Committed::Exists);
            }
            // Concurrent saves of the key have put their manifests by now: the tag names the
            // last, and only its writer reports "saved".
            tokio::time::sleep(SETTLE).await;
            let named = named_by(&reg, &tag_url).await?;
            Ok(if named == mine {
                Committed::Saved
            } else {
                Committed::Exists
            })
        })
    }
}

/// What the registry says of a tag: 200 with the manifest's digest, or 404.
async fn tag_head(reg: &Registry, tag_url: &str) -> Result<crate::store::http::Reply> {
    reg.send("check the tag", &[200, 404], |h| {
        h.head(tag_url).header("accept", MANIFEST)
    })
    .await
}

/// The digest of the manifest the tag names. A registry may answer a moment without it (the
/// filesystem driver rewrites a tag's link in place; a busy one for longer): asked again, for
/// up to about eight seconds.
async fn named_by(reg: &Registry, tag_url: &str) -> Result<String> {
    let mut status = 0;
    let mut wait = Duration::from_millis(100);
    for _ in 0..10 {
        let now = tag_head(reg, tag_url).await?;
        let named = now
            .headers
            .get("docker-content-digest")
            .and_then(|d| d.to_str().ok())
            .filter(|d| d.starts_with("sha256:"));
        if let (200, Some(d)) = (now.status, named) {
            return Ok(d.to_string());
        }
        status = now.status;
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
    bail!(
        "{} did not say which manifest the tag names (HTTP {status})",
        reg.host
    )
}

/// Put the manifest under the tag; false when another save has the key meanwhile.
/// distribution's filesystem driver can refuse one of several manifests put to one tag at once
/// (400, "digest did not match"): then another save has the key, or the put goes through when
/// tried again.
async fn put_manifest(
    reg: &Registry,
    tag_url: &str,
    manifest: Vec<u8>,
    overwrite: bool,
) -> Result<bool> {
    let body = bytes::Bytes::from(manifest);
    let mut tries = 0;
    loop {
        let put = reg
            .send("save the manifest", &[201], |h| {
                h.put(tag_url)
                    .header("content-type", MANIFEST)
                    .body(body.clone())
            })
            .await;
        let Err(e) = put else { return Ok(true) };
        tries += 1;
        if tag_head(reg, tag_url).await?.status == 200 && !overwrite {
            return Ok(false);
        }
        if tries == 3 {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Drop for OciUpload {
    fn drop(&mut self) {
        self.file.take();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The entry's manifest: the empty config, the archive (or the chunk manifest, then the
/// packs it references) as layers, kura's metadata and the creation time in annotations.
pub(super) fn manifest(meta: &Meta, digest: &str, size: u64, packs: &OciPacks) -> Result<Vec<u8>> {
    let created = chrono::DateTime::from_timestamp_millis(meta.created_ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let (media, title) = match meta.format {
        Format::Archive => (LAYER, "cache.tzst"),
        Format::Chunked => (CHUNKS_LAYER, "chunks.zst"),
    };
    let mut layers = vec![
        serde_json::json!({"mediaType": media, "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.title": title}}),
    ];
    // The packs as layers: the registry keeps them while an entry references them.
    for name in &meta.packs {
        let k = packs
            .blob(name)
            .ok_or_else(|| anyhow!("pack {name} is not known to be in {}", packs.reg.repo))?;
        layers.push(
            serde_json::json!({"mediaType": PACK_LAYER, "digest": k.digest,
            "size": k.size, "annotations": {PACK_NAME: name}}),
        );
    }
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": ARTIFACT,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY, "size": 2},
        "layers": layers,
        "annotations": {
            "org.opencontainers.image.created": created,
            META: serde_json::to_string(meta)?,
        },
    });
    Ok(serde_json::to_vec(&v)?)
}
