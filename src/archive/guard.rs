//! Where an extraction may write.
//!
//! A name is accepted only when it resolves inside one of the allowed roots, twice over:
//! lexically (after `..` is folded) and on disk (the nearest existing ancestor, with symlinks
//! resolved, is still inside a root). Link targets are checked the same way. Links from the
//! archive are created after every file, so no file is ever written through one.

use crate::select::normalize;
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// Longest name accepted; longer ones are hostile or broken, never a real cache.
const MAX_NAME: usize = 4096;
const MAX_COMPONENT: usize = 255;

pub struct Guard {
    base: PathBuf,
    roots: Vec<PathBuf>,
    real_roots: Vec<PathBuf>,
    checked: HashSet<PathBuf>,
}

impl Guard {
    /// `base` is what archive names are relative to; `roots` are absolute.
    pub fn new(base: &Path, roots: &[PathBuf]) -> Guard {
        let roots: Vec<PathBuf> = roots.iter().map(|r| normalize(r)).collect();
        let real_roots = roots.iter().map(|r| real_path(r)).collect();
        Guard {
            base: normalize(base),
            roots,
            real_roots,
            checked: HashSet::new(),
        }
    }

    fn inside(&self, p: &Path) -> bool {
        self.roots.iter().any(|r| p.starts_with(r))
    }

    /// The destination of an archive name, or why it is refused.
    pub fn dest(&self, name: &[u8]) -> Result<PathBuf, String> {
        if name.contains(&0) {
            return Err("name contains a NUL byte".into());
        }
        if name.len() > MAX_NAME {
            return Err(format!("name is {} bytes long", name.len()));
        }
        let name = std::str::from_utf8(name).map_err(|_| "name is not UTF-8".to_string())?;
        let p = Path::new(name);
        if p.is_absolute() {
            return Err("absolute names are refused".into());
        }
        if p.components().any(|c| c.as_os_str().len() > MAX_COMPONENT) {
            return Err("a path component is over 255 bytes".into());
        }
        let dest = normalize(&self.base.join(p));
        if dest.components().any(|c| c == Component::ParentDir) || !self.inside(&dest) {
            return Err("resolves outside the restore's paths".into());
        }
        Ok(dest)
    }

    /// Is a symlink at `link` pointing at `target` (as stored) inside the roots?
    pub fn symlink_target(&self, link: &Path, target: &[u8]) -> Result<(), String> {
        if target.contains(&0) || target.is_empty() {
            return Err("link target is empty or contains a NUL byte".into());
        }
        let t = Path::new(std::str::from_utf8(target).map_err(|_| "link target is not UTF-8")?);
        let resolved = if t.is_absolute() {
            normalize(t)
        } else {
            normalize(&link.parent().unwrap_or(Path::new("/")).join(t))
        };
        if !self.inside(&resolved) {
            return Err(format!(
                "link points outside the restore's paths (to {})",
                resolved.display()
            ));
        }
        Ok(())
    }

    /// Check that `dir`, as it is on disk, is inside a root (an existing symlink could lead
    /// elsewhere). Results are remembered: only kura creates directories during an extraction.
    pub fn check_dir(&mut self, dir: &Path) -> Result<(), String> {
        if self.checked.contains(dir) {
            return Ok(());
        }
        // Below a checked directory only a symlink could lead out: one lstat instead of a
        // full resolution.
        if dir.parent().is_some_and(|p| self.checked.contains(p))
            && !std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink())
        {
            self.checked.insert(dir.to_path_buf());
            return Ok(());
        }
        let real = real_path(dir);
        if !self.real_roots.iter().any(|r| real.starts_with(r)) {
            return Err(format!(
                "{} leads outside the restore's paths through a symlink (to {})",
                dir.display(),
                real.display()
            ));
        }
        self.checked.insert(dir.to_path_buf());
        Ok(())
    }
}

/// The path with its longest existing prefix resolved through symlinks.
fn real_path(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}
