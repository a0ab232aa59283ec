//! One save to a registry: the archive (or a chunked entry's manifest) packs into a temporary
//! file (hashed on the way), and `commit` uploads the blob unless the registry has it, then
//! puts the manifest under the tag. Packs go up before, through `OciPacks`.

use super::client::Registry;
use super::packs::{OciPacks, PACK_LAYER, PACK_NAME};
use super::{ARTIFACT, CHUNKS_LAYER, LAYER, MANIFEST, META};
use crate::store::{Committed, Format, Meta, Upload};
use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Chunks of a blob upload (PATCH): what one request holds in memory.
const CHUNK: usize = 16 << 20;
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
        let mut file = File::open(&self.path)?;
        put_pieces(&self.reg, digest, || {
            let mut piece = vec![0u8; CHUNK];
            let n = read_full(&mut file, &mut piece)?;
            piece.truncate(n);
            Ok((n > 0).then(|| bytes::Bytes::from(piece)))
        })
        .await
    }
}

/// Upload a blob held in memory (a pack) unless the registry has it.
pub(super) async fn put_blob(reg: &Registry, digest: &str, data: &[u8]) -> Result<()> {
    let mut pieces = data.chunks(CHUNK);
    put_pieces(reg, digest, || {
        Ok(pieces.next().map(bytes::Bytes::copy_from_slice))
    })
    .await
}

/// Upload a blob unless the registry has it: one PATCH per piece `next` gives (at most
/// `CHUNK` bytes each, so a request holds no more in memory), then the digest.
async fn put_pieces(
    reg: &Registry,
    digest: &str,
    mut next: impl FnMut() -> Result<Option<bytes::Bytes>>,
) -> Result<()> {
    let head = reg
        .send("check a blob", &[200, 404], |h| {
            h.head(reg.url(&format!("blobs/{digest}")))
        })
        .await?;
    if head.status == 200 {
        return Ok(()); // unchanged bytes are not sent again
    }
    let mut location = start(reg).await?;
    let mut at = 0u64;
    while let Some(body) = next()? {
        let range = format!("{at}-{}", at + body.len() as u64 - 1);
        let r = reg
            .send("upload", &[202], |h| {
                h.patch(reg.url(&location))
                    .header("content-type", "application/octet-stream")
                    .header("content-range", &range)
                    .body(body.clone())
            })
            .await?;
        location = next_location(&r, &location);
        at += body.len() as u64;
    }
    finish(reg, &location, digest, bytes::Bytes::new()).await
}

/// Open an upload session: its URL.
async fn start(reg: &Registry) -> Result<String> {
    let r = reg
        .send("start an upload", &[202], |h| {
            h.post(reg.url("blobs/uploads/"))
                .header("content-length", "0")
        })
        .await?;
    r.headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} started an upload without a Location", reg.host))
}

fn next_location(r: &crate::store::http::Reply, old: &str) -> String {
    r.headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map_or_else(|| old.to_string(), str::to_string)
}

/// Close an upload session with the blob's digest (and its last bytes, if any).
async fn finish(reg: &Registry, location: &str, digest: &str, body: bytes::Bytes) -> Result<()> {
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = reg.url(&format!("{location}{sep}digest={digest}"));
    reg.send("finish an upload", &[201], |h| {
        h.put(&url)
            .header("content-type", "application/octet-stream")
            .body(body.clone())
    })
    .await
    .map(drop)
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
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
    fn commit(mut self: Box<Self>, meta: &Meta, overwrite: bool) -> Result<Committed> {
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
            let config = reg
                .send("check a blob", &[200, 404], |h| {
                    h.head(reg.url(&format!("blobs/{EMPTY}")))
                })
                .await?;
            if config.status == 404 {
                let at = start(&reg).await?;
                finish(&reg, &at, EMPTY, bytes::Bytes::from_static(b"{}")).await?;
            }
            // Right before the commit: a key saved meanwhile is kept.
            let taken = reg
                .send("check the tag", &[200, 404], |h| {
                    h.head(&tag_url).header("accept", MANIFEST)
                })
                .await?;
            if taken.status == 200 && !overwrite {
                return Ok(Committed::Exists);
            }
            let body = bytes::Bytes::from(manifest.clone());
            // distribution's filesystem driver can refuse one of several manifests put to one
            // tag at once (400, "digest did not match"): then another save has the key, or
            // the put goes through when tried again.
            let mut tries = 0;
            loop {
                let put = reg
                    .send("save the manifest", &[201], |h| {
                        h.put(&tag_url)
                            .header("content-type", MANIFEST)
                            .body(body.clone())
                    })
                    .await;
                let Err(e) = put else { break };
                tries += 1;
                let again = reg
                    .send("check the tag", &[200, 404], |h| {
                        h.head(&tag_url).header("accept", MANIFEST)
                    })
                    .await?;
                if again.status == 200 && !overwrite {
                    return Ok(Committed::Exists);
                }
                if tries == 3 {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // Concurrent saves of the key have put their manifests by now: the tag names the
            // last, and only its writer reports "saved".
            tokio::time::sleep(SETTLE).await;
            let now = reg
                .send("check the tag", &[200, 404], |h| {
                    h.head(&tag_url).header("accept", MANIFEST)
                })
                .await?;
            let named = now
                .headers
                .get("docker-content-digest")
                .and_then(|d| d.to_str().ok())
                .unwrap_or_default();
            if named.is_empty() {
                bail!("{} did not say which manifest the tag names", reg.host);
            }
            Ok(if named == mine {
                Committed::Saved
            } else {
                Committed::Exists
            })
        })
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
fn manifest(meta: &Meta, digest: &str, size: u64, packs: &OciPacks) -> Result<Vec<u8>> {
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
