//! OCI manifests from arbitrary bytes, read under a tag: what is read back is an entry whose
//! key follows the rules of user keys and whose own tag is the one it was read under.
#![no_main]

use kura::store::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Any tag the input's own metadata would give, and one it would not.
    let mut tags = vec!["0123abcd0123abcd-k".to_string()];
    if let Some(meta) = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v["annotations"]["dev.kura.meta"].as_str().map(str::to_string))
        .and_then(|s| serde_json::from_str::<kura::store::Meta>(&s).ok())
    {
        tags.push(parse::tag_of(&meta));
    }
    for tag in tags {
        let Some((m, _)) = parse::manifest(data, &tag) else {
            continue;
        };
        assert!(kura::key::check_key(&m.key).is_ok(), "{:?}", m.key);
        assert!(!m.scope.chars().any(char::is_control));
        assert_eq!(parse::tag_of(&m), tag);
        assert!(m.entry_size().is_none_or(|s| s <= 5 << 40));
    }
});
