//! Tags for entries. A tag may hold `[A-Za-z0-9_.-]`, at most 128 characters, not starting with
//! `.` or `-`. It is `<scope hash 8><version hash 8>-<key>`, the key written byte by byte:
//! `[a-z0-9.-]` as they are, any other byte as `_` and two lowercase hex digits. Every byte maps
//! to a fixed token and `_` starts only escapes, so a key prefix's encoding is a prefix of the
//! key's: a restore key is a tag prefix. Keys too long for a tag are cut (never inside an
//! escape) and end in `Z` and a hash of the whole key; `Z` never occurs in an encoding (capital
//! letters are escaped). The key in the manifest decides.

use sha2::{Digest, Sha256};

const MAX: usize = 128;
/// `Z` and 16 hex digits.
const CUT_SUFFIX: usize = 17;

/// The distribution spec's tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. A tag from a
/// registry's listing goes into a URL only if it is one.
pub fn valid(tag: &str) -> bool {
    tag.len() <= MAX
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn head(scope: &str, version: &str) -> String {
    let h = |s: &str| hex::encode(Sha256::digest(s.as_bytes()))[..8].to_string();
    format!("{}{}-", h(scope), h(version))
}

fn encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The longest encoding that fits beside the head and a cut suffix, never splitting an escape.
fn cut(enc: &str, room: usize) -> &str {
    let mut end = enc.len().min(room);
    while end > 0 && (enc[..end].ends_with('_') || enc[..end.saturating_sub(1)].ends_with('_')) {
        end -= 1;
    }
    &enc[..end]
}

pub fn of(scope: &str, version: &str, key: &str) -> String {
    let head = head(scope, version);
    let enc = encode(key);
    if head.len() + enc.len() <= MAX {
        return head + &enc;
    }
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    format!(
        "{head}{}Z{}",
        cut(&enc, MAX - head.len() - CUT_SUFFIX),
        &digest[..16]
    )
}

/// What the tags of every key starting with `prefix` begin with.
pub fn prefix(scope: &str, version: &str, prefix: &str) -> String {
    let head = head(scope, version);
    let enc = encode(prefix);
    let room = MAX - head.len() - CUT_SUFFIX;
    head + cut(&enc, room)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tags_are_valid_and_prefixes_stay_prefixes(key in "\\PC{0,200}", split in 0usize..200) {
            let t = of("refs/heads/main", "v", &key);
            prop_assert!(valid(&t), "{}", t);
            let cut_at = key.char_indices().map(|(i, _)| i).chain([key.len()]).nth(split).unwrap_or(key.len());
            let p = prefix("refs/heads/main", "v", &key[..cut_at]);
            prop_assert!(t.starts_with(&p), "{} does not start with {}", t, p);
        }

        #[test]
        fn different_keys_get_different_tags(a in "\\PC{1,150}", b in "\\PC{1,150}") {
            prop_assume!(a != b);
            prop_assert_ne!(of("", "v", &a), of("", "v", &b));
        }
    }

    #[test]
    fn scope_and_version_are_part_of_the_tag() {
        assert_ne!(of("a", "v", "k"), of("b", "v", "k"));
        assert_ne!(of("a", "v", "k"), of("a", "w", "k"));
        assert!(of("a", "v", "Key_1").ends_with("-_4bey_5f1"));
    }
}
