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

/// What says a file is the one a restore left, untouched: device, inode and the inode's change
/// time (which no call can set back: a write, a chmod, a rename or a replacement all move it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub ctime: (i64, u32),
}

pub fn stamp(m: &Metadata) -> Stamp {
    Stamp {
        dev: m.dev(),
        ino: m.ino(),
        ctime: (m.ctime(), m.ctime_nsec() as u32),
    }
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

/// Bytes an unprivileged writer may still put on the file system that holds `path` (or its
/// nearest existing ancestor); None where it cannot be asked.
// The fields' widths differ between systems (u32 on macOS): the conversions are not useless.
#[allow(clippy::useless_conversion)]
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let dir = path.ancestors().find(|p| p.exists())?;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` room for one statvfs, filled on success.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    let st = unsafe { st.assume_init() };
    // root may write into the blocks the file system keeps back for it.
    let blocks = match euid() {
        0 => u64::from(st.f_bfree),
        _ => u64::from(st.f_bavail),
    };
    Some(blocks.saturating_mul(u64::from(st.f_frsize)))
}

/// The signal (SIGINT, SIGTERM) that asked kura to stop while it was catching them, if any.
static INTERRUPTED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_interrupt(sig: libc::c_int) {
    use std::sync::atomic::Ordering;
    // A second signal is not asked twice: it ends the process at once, as by default.
    if INTERRUPTED.swap(sig, Ordering::SeqCst) != 0 {
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// While the returned guard lives, SIGINT and SIGTERM (a cancelled CI job) are noted instead
/// of ending the process, so that an extraction can stop between entries and undo what it
/// wrote rather than leave the tree half-restored and the user's files moved aside, and a save
/// can stop between files and take back what it had put in the store. Elsewhere the default
/// (the process ends) is right.
pub fn catch_interrupts() -> Interrupts {
    let mut old: [libc::sigaction; 2] = unsafe { std::mem::zeroed() };
    for (i, sig) in [libc::SIGINT, libc::SIGTERM].into_iter().enumerate() {
        unsafe {
            // A signal the process was started to ignore (`kura ... &`) stays ignored.
            libc::sigaction(sig, std::ptr::null(), &mut old[i]);
            if old[i].sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as usize;
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, &mut old[i]);
        }
    }
    Interrupts { old }
}

pub struct Interrupts {
    old: [libc::sigaction; 2],
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        for (i, sig) in [libc::SIGINT, libc::SIGTERM].into_iter().enumerate() {
            unsafe {
                libc::sigaction(sig, &self.old[i], std::ptr::null_mut());
            }
        }
    }
}

/// How a stop by `sig` is told: `stopped by SIGINT (Ctrl-C)`.
pub fn stopped_by(sig: i32) -> String {
    match sig {
        libc::SIGINT => "stopped by SIGINT (Ctrl-C)".to_string(),
        libc::SIGTERM => "stopped by SIGTERM (the job was cancelled)".to_string(),
        n => format!("stopped by signal {n}"),
    }
}

/// The signal that asked kura to stop while it was catching them, if one did.
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// The name a restore gives a file it moves aside (`.kura-aside.PID.N`), the `n`th of this
/// process: never a name of the tree, so selections pass over it (`is_aside`).
pub fn aside_name(n: u64) -> std::ffi::OsString {
    format!(".kura-aside.{}.{n}", std::process::id()).into()
}

/// Whether `name` is one a restore gives a file it moved aside (`.kura-aside.PID.N`): left
/// behind only by a restore killed with SIGKILL, and never part of a cache.
pub fn is_aside(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b".kura-aside.") else {
        return false;
    };
    let mut parts = rest.split(|b| *b == b'.');
    let number =
        |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    number(parts.next()) && number(parts.next()) && parts.next().is_none()
}
