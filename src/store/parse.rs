//! What kura makes of the bytes a store hands it as an entry's description: a metadata object
//! (S3, HTTP) or an OCI manifest. Whatever the bytes, the answer is an entry whose key follows
//! the rules of user keys and which agrees with where it was found, or none. Public for the
//! fuzz targets (`fuzz/fuzz_targets/metadata.rs`, `oci_manifest.rs`), which feed it anything.

use super::{agrees_object, oci, Handle, Meta};

/// The entry a metadata object describes, named `rel` below the store's prefix
/// (`<scope>/<version>/<entry>/<object>.json`); none when the bytes are not metadata or
/// disagree with the name.
pub fn metadata(bytes: &[u8], rel: &str) -> Option<Meta> {
    let mut m: Meta = serde_json::from_slice(bytes).ok()?;
    if !agrees_object(&m, rel) {
        return None;
    }
    m.used_ms = m.created_ms;
    m.handle = Handle::Object(rel.to_string());
    Some(m)
}

/// The entry an OCI manifest read under `tag` describes, and the manifest parsed (its pack
/// layers); none when it is not kura's or names another scope, version or key than the tag.
pub fn manifest(bytes: &[u8], tag: &str) -> Option<(Meta, serde_json::Value)> {
    oci::entry_under(bytes, tag)
}

/// The names an entry is stored under on an object store: its scope's, version's and key's.
pub fn layout_of(m: &Meta) -> (String, String, String) {
    let (scope, version, name) = super::layout(&m.scope, &m.version, &m.key);
    (scope, version.to_string(), name)
}

/// The tag an entry is stored under in an OCI registry.
pub fn tag_of(m: &Meta) -> String {
    oci::tag_of(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{layout, Format};

    /// Writes the seeds of the fuzz targets where `FUZZ_SEEDS` says (fuzz/run.sh).
    fn seed(name: &str, bytes: &[u8]) {
        if let Some(dir) = std::env::var_os("FUZZ_SEEDS") {
            std::fs::write(std::path::Path::new(&dir).join(name), bytes).unwrap();
        }
    }

    fn saved(key: &str, format: Format) -> Meta {
        let mut m = Meta::bare(key, "0123abcd", "refs/heads/main");
        m.size = Some(1234);
        m.sha256 = Some("ab".repeat(32));
        m.created_ms = 1_700_000_000_000;
        m.kura_version = "0.1.0".into();
        (m.files, m.bytes, m.entries) = (3, 4096, 5);
        m.paths = vec!["node_modules".into(), "~/.cache/x".into()];
        m.format = format;
        if format == Format::Chunked {
            m.packs = vec!["cd".repeat(32)];
            m.stored = Some(99);
        }
        m
    }

    #[test]
    fn real_metadata_is_read_back_and_disagreeing_metadata_is_not() {
        for (i, (key, format)) in [("v1-deps-é/x", Format::Archive), ("k", Format::Chunked)]
            .into_iter()
            .enumerate()
        {
            let m = saved(key, format);
            let (scope, version, name) = layout(&m.scope, &m.version, &m.key);
            let rel = format!("{scope}/{version}/{name}/0000000000001-0123456789abcdef.json");
            let bytes = serde_json::to_vec(&m).unwrap();
            seed(&format!("seed-{i}"), &bytes);
            let back = metadata(&bytes, &rel).expect("kura's own metadata");
            assert_eq!(
                (back.key.as_str(), back.format, back.packs.len()),
                (key, format, m.packs.len())
            );
            let elsewhere = format!("{scope}/{version}/other/0000000000001-0123456789abcdef.json");
            assert!(metadata(&bytes, &elsewhere).is_none());
        }
    }

    #[test]
    fn real_oci_manifests_are_read_back_and_others_are_not() {
        for (i, format) in [Format::Archive, Format::Chunked].into_iter().enumerate() {
            let m = saved("v1-k", format);
            let bytes = oci::manifest_for_tests(&m);
            seed(&format!("seed-{i}"), &bytes);
            let tag = oci::tag_of(&m);
            let (back, _) = manifest(&bytes, &tag).expect("kura's own manifest");
            assert_eq!(back.key, "v1-k");
            assert!(manifest(&bytes, &format!("{tag}x")).is_none());
        }
    }
}
