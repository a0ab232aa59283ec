//! Random values from the operating system's cryptographic source: delimiters of the runner's
//! files (which an attacker who chooses a stored key must not guess), names of temporary files
//! and upload sessions.

/// 128 random bits.
pub fn u128() -> u128 {
    let mut b = [0u8; 16];
    // The OS source does not fail on the systems kura runs on; if it ever did, a value that
    // still differs per process and call is better than stopping a cache step.
    if getrandom::fill(&mut b).is_err() {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
        return (h.finish() as u128) << 64 | std::process::id() as u128;
    }
    u128::from_le_bytes(b)
}

/// 32 random hex digits.
pub fn hex() -> String {
    format!("{:032x}", u128())
}
