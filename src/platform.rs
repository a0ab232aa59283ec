//! What kura needs of the operating system beyond std, for Unix (Linux, macOS): names as bytes,
//! file modes, nanosecond mtimes, file identities and the effective uid. A port to another
//! system is this module plus the extractor's directory handles (`archive/tree.rs`,
//! `archive/journal.rs`); all three are behind `cfg(unix)`.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

/// A name's bytes, as the file system holds them (not necessarily UTF-8).
pub fn bytes(s: &OsStr) -> &[u8] {
    s.as_bytes()
}

pub fn os_str(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// Permission bits, with setuid, setgid and sticky.
pub fn mode(m: &Metadata) -> u32 {
    m.mode() & 0o7777
}

/// Seconds and nanoseconds since the epoch.
pub fn mtime(m: &Metadata) -> (i64, u32) {
    (m.mtime(), m.mtime_nsec() as u32)
}

/// Device and inode: the same file under two names (hard links).
pub fn file_id(m: &Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Names the file has (more than one: hard links).
pub fn links(m: &Metadata) -> u64 {
    m.nlink()
}

pub fn owner(m: &Metadata) -> u32 {
    m.uid()
}

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
