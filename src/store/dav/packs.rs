//! The packs of chunked entries on an HTTP store: `<base>/.packs/<name>`, one PUT each, read
//! by ranges, listed (with sizes and times) for `prune`.

use super::{refusal, DavStore, RETRY};
use crate::chunked::{valid_pack_name, PackInfo, Packs, NOTE};
use crate::store::http::{self, Verdict};
use anyhow::Result;
use std::ops::Range;
use std::sync::Arc;

const DIR: &str = ".packs/";

pub(super) struct DavPacks(pub Arc<DavStore>);

impl Packs for DavPacks {
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        let s = &self.0;
        let (url, body) = (
            s.url(&format!("{DIR}{name}")),
            bytes::Bytes::from(data.to_vec()),
        );
        let location = s.base.to_string();
        let make = || {
            // The upload client: a slow server may take longer than the idle limit to answer
            // a 32 MiB body.
            let req = s.uploads.put(&url).body(body.clone());
            match &s.auth {
                Some((u, p)) => req.basic_auth(u, Some(p)),
                None => req,
            }
        };
        s.rt.block_on(http::send(RETRY, "upload a pack", make, |r| {
            match r.status {
                200 | 201 | 204 => Verdict::Done(()),
                st if r.transient() => Verdict::Again(format!("upload a pack: HTTP {st}")),
                st => Verdict::Fail(refusal("upload a pack", st, &location)),
            }
        }))
    }

    fn get(&self, name: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let s = &self.0;
        let rel = format!("{DIR}{name}");
        let bytes = format!("bytes={}-{}", range.start, range.end.saturating_sub(1));
        let r = s.send("read a pack", &[200, 206, 404, 416], || {
            s.request(reqwest::Method::GET, &rel)
                .header("range", &bytes)
        })?;
        match r.status {
            // The server says the range is past the pack's end: nothing of it, which the
            // restore finds is short (damage of the entry's own bytes).
            416 => Ok(Vec::new()),
            // A pack gone is the entry's fault, not the network's: named as such.
            404 => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("pack {name} is gone from {}", s.url(DIR)),
            )
            .into()),
            206 => Ok(r.body.to_vec()),
            // A server that ignores ranges sends the whole pack.
            _ => {
                let (a, b) = (range.start as usize, range.end as usize);
                Ok(r.body
                    .get(a.min(r.body.len())..b.min(r.body.len()))
                    .unwrap_or_default()
                    .to_vec())
            }
        }
    }

    fn list(&self) -> Result<Vec<PackInfo>> {
        Ok(self
            .0
            .list_dir(DIR)?
            .into_iter()
            .filter(|l| l.kind == "file" && valid_pack_name(&l.name))
            .map(|l| PackInfo {
                modified_ms: l.modified_ms(),
                size: l.size.unwrap_or(0),
                name: l.name,
            })
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.0.delete_name(&format!("{DIR}{name}"))
    }

    fn read_note(&self) -> Result<Option<Vec<u8>>> {
        let s = &self.0;
        let rel = format!("{DIR}{NOTE}");
        let r = s.send("read prune's note", &[200, 404], || {
            s.request(reqwest::Method::GET, &rel)
        })?;
        Ok((r.status == 200).then(|| r.body.to_vec()))
    }

    fn write_note(&self, data: &[u8]) -> Result<()> {
        self.put(NOTE, data)
    }
}
