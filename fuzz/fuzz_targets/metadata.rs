//! Metadata objects from arbitrary bytes, under a name of the layout: what is read back is
//! an entry whose key follows the rules of user keys (no line breaks, no control characters,
//! so it can reach a log or the runner's files), that agrees with its name, and that reads back
//! the same once written again.
#![no_main]

use kura::store::{parse, Meta};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The name a restore of key `k` (no scope, version `0123abcd`) would read, and the name
    // an entry made from the input itself would have.
    let mut names = vec!["_/0123abcd/k/0000000000001-0123456789abcdef.json".to_string()];
    if let Ok(m) = serde_json::from_slice::<Meta>(data) {
        let (scope, version, name) = parse::layout_of(&m);
        names.push(format!("{scope}/{version}/{name}/0000000000001-0123456789abcdef.json"));
    }
    for rel in names {
        let Some(m) = parse::metadata(data, &rel) else {
            continue;
        };
        assert!(kura::key::check_key(&m.key).is_ok(), "{:?}", m.key);
        assert!(!m.key.chars().any(char::is_control));
        assert!(!m.scope.chars().any(char::is_control));
        assert!(m.entry_size().is_none_or(|s| s <= 5 << 40));
        let again = serde_json::to_vec(&m).unwrap();
        let back = parse::metadata(&again, &rel).expect("written again, read again");
        assert_eq!((back.key, back.version, back.scope), (m.key, m.version, m.scope));
    }
});
