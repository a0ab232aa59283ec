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

/// The members of a PROPFIND `Depth: 1` answer for the directory whose URL path is `dir`:
/// each `<response>`'s last `href` segment (percent-decoded: the stored name), a directory
/// when its `resourcetype` holds a `collection` (or its `href` ends in `/`). The response for
/// the directory itself is left out, wherever it stands.
pub(super) fn multistatus(xml: &str, dir: &str) -> Vec<Listed> {
    let decoded = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .to_string()
    };
    let own = decoded(dir.trim_end_matches('/'));
    let lower = xml.to_ascii_lowercase();
    let mut out = Vec::new();
    // The last `<` before the match, found by looking back only as far as the previous match:
    // linear in the answer, whatever it holds (a body of `response>` repeated, no `<`).
    let (mut open, mut seen) = (0, 0);
    for (at, _) in lower.match_indices("response>") {
        if let Some(lt) = lower[seen..at].rfind('<') {
            open = seen + lt;
        }
        seen = at;
        // Only opening tags: `<D:response>` or `<response>`, not `</D:response>`.
        if lower[open..at].starts_with("</") {
            continue;
        }
        let start = at + "response>".len();
        let end = lower[start..]
            .find("response>")
            .map_or(lower.len(), |e| start + e);
        let (block, low) = (&xml[start..end], &lower[start..end]);
        let Some(href) = low
            .find("href>")
            .and_then(|h| block[h + 5..].split('<').next().map(str::trim))
        else {
            continue;
        };
        // An absolute href names its path after the authority.
        let path = match href.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => href,
        };
        if decoded(path.trim_end_matches('/')) == own {
            continue; // the listed directory itself
        }
        let collection = low.find("resourcetype").is_some_and(|r| {
            let rest = &low[r + "resourcetype".len()..];
            let close = rest.find("resourcetype").unwrap_or(rest.len());
            rest[..close].contains("collection")
        });
        let dir = href.ends_with('/') || collection;
        let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let prop = |tag: &str| {
            let at = low.find(&format!("{tag}>"))? + tag.len() + 1;
            block[at..].split('<').next().map(|v| v.trim().to_string())
        };
        out.push(Listed {
            name: decoded(last),
            kind: if dir { "directory" } else { "file" }.to_string(),
            size: prop("getcontentlength").and_then(|v| v.parse().ok()),
            mtime: prop("getlastmodified"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    /// A 64 MiB answer made to be slow to read (one tag name repeated, no `<`) is read in a
    /// time that grows with its length, not its square.
    #[test]
    fn a_hostile_answer_is_read_in_linear_time() {
        let started = std::time::Instant::now();
        let body = "response>".repeat((64 << 20) / 9);
        let listed = super::multistatus(&body, "/d/");
        assert!(listed.is_empty());
        let body = "<d:response><d:href>/d/x</d:href></d:response>".repeat(1 << 20);
        assert_eq!(super::multistatus(&body, "/d/").len(), 1 << 20);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn propfind_answers_list_the_members_by_their_stored_names() {
        // nginx's dav-ext module answering for a directory named `a%2Fb` on disk.
        let xml = r#"<?xml version="1.0" encoding="utf-8" ?>
<D:multistatus xmlns:D="DAV:">
<D:response><D:href>/a%252Fb/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
<D:response><D:href>/a%252Fb/sub/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
<D:response><D:href>/a%252Fb/1795-ab.json</D:href><D:propstat><D:prop><D:getcontentlength>3</D:getcontentlength><D:resourcetype></D:resourcetype></D:prop></D:propstat></D:response>
</D:multistatus>"#;
        let got: Vec<(String, String)> = super::multistatus(xml, "/a%252Fb/")
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

    #[test]
    fn a_name_with_collection_in_it_is_a_file_and_the_directory_may_come_anywhere() {
        let xml = r#"<D:multistatus xmlns:D="DAV:">
<D:response><D:href>/collections/k/1795-ab.json</D:href><D:propstat><D:prop><D:resourcetype/></D:prop></D:propstat></D:response>
<D:response><D:href>http://h:8/collections/k/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
<D:response><D:href>/collections/k/maven-collection</D:href><D:propstat><D:prop><D:resourcetype></D:resourcetype></D:prop></D:propstat></D:response>
<D:response><D:href>/collections/k/sub</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
</D:multistatus>"#;
        let got: Vec<(String, String)> = super::multistatus(xml, "/collections/k/")
            .into_iter()
            .map(|l| (l.name, l.kind))
            .collect();
        let want = [
            ("1795-ab.json", "file"),
            ("maven-collection", "file"),
            ("sub", "directory"),
        ];
        assert_eq!(got, want.map(|(n, k)| (n.to_string(), k.to_string())));
    }
}
