//! Directory listings of an HTTP store: nginx's JSON autoindex, or WebDAV's PROPFIND.

/// One listed name: a file or a directory.
#[derive(serde::Deserialize)]
pub(super) struct Listed {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Files: bytes and last modification (HTTP date), where the listing says.
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub mtime: Option<String>,
}

impl Listed {
    /// The modification time in milliseconds since the epoch, 0 when unknown.
    pub fn modified_ms(&self) -> u64 {
        self.mtime
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc2822(t.trim()).ok())
            .map_or(0, |t| t.timestamp_millis().max(0) as u64)
    }
}

/// The members of a PROPFIND `Depth: 1` answer: each `<response>`'s last `href` segment
/// (percent-decoded: the stored name), a directory when its resource type is a collection. The
/// directory itself (its `href` ends in `/` and is the first) is left out.
pub(super) fn multistatus(xml: &str) -> Vec<Listed> {
    let lower = xml.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut first = true;
    for (at, _) in lower.match_indices("response>") {
        // Only opening tags: `<D:response>` or `<response>`, not `</D:response>`.
        let open = lower[..at].rfind('<').unwrap_or(0);
        if lower[open..at].starts_with("</") {
            continue;
        }
        let start = at + "response>".len();
        let end = lower[start..]
            .find("response>")
            .map_or(lower.len(), |e| start + e);
        let block = &xml[start..end];
        let Some(href) = block
            .to_ascii_lowercase()
            .find("href>")
            .and_then(|h| block[h + 5..].split('<').next().map(str::trim))
        else {
            continue;
        };
        let dir = href.ends_with('/') || block.to_ascii_lowercase().contains("collection");
        let last = href.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let name = percent_encoding::percent_decode_str(last)
            .decode_utf8_lossy()
            .to_string();
        if std::mem::take(&mut first) && href.ends_with('/') {
            continue; // the listed directory itself
        }
        let prop = |tag: &str| {
            let lower = block.to_ascii_lowercase();
            let at = lower.find(&format!("{tag}>"))? + tag.len() + 1;
            block[at..].split('<').next().map(|v| v.trim().to_string())
        };
        out.push(Listed {
            name,
            kind: if dir { "directory" } else { "file" }.to_string(),
            size: prop("getcontentlength").and_then(|v| v.parse().ok()),
            mtime: prop("getlastmodified"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn propfind_answers_list_the_members_by_their_stored_names() {
        // nginx's dav-ext module answering for a directory named `a%2Fb` on disk.
        let xml = r#"<?xml version="1.0" encoding="utf-8" ?>
<D:multistatus xmlns:D="DAV:">
<D:response><D:href>/a%252Fb/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
<D:response><D:href>/a%252Fb/sub/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
<D:response><D:href>/a%252Fb/1795-ab.json</D:href><D:propstat><D:prop><D:getcontentlength>3</D:getcontentlength><D:resourcetype></D:resourcetype></D:prop></D:propstat></D:response>
</D:multistatus>"#;
        let got: Vec<(String, String)> = super::multistatus(xml)
            .into_iter()
            .map(|l| (l.name, l.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("sub".to_string(), "directory".to_string()),
                ("1795-ab.json".to_string(), "file".to_string())
            ]
        );
    }
}
