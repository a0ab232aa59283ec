//! Which files a list of path patterns means.
//!
//! Patterns are the lines users write under `path:`: `~` is expanded, relative patterns start
//! at the base directory, `*`/`?`/`[..]`/`**` glob, and a leading `!` excludes. Unlike
//! actions/cache, an exclude removes what it matches even inside an included directory.
//! Archive names are relative to the base directory, with `../` for paths outside it: the
//! layout the official GitHub client writes.

mod runner;
pub use runner::glob_files;

use crate::platform;
use anyhow::{bail, Context as _, Result};
use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Component, Path, PathBuf};

/// `~` and `~/x` become the home directory; `~user` is left alone, as in actions/cache.
pub fn expand_tilde(p: &str, home: Option<&Path>) -> PathBuf {
    match (p, home) {
        ("~", Some(h)) => h.to_path_buf(),
        (_, Some(h)) if p.starts_with("~/") => h.join(&p[2..]),
        _ => PathBuf::from(p),
    }
}

/// Remove `.` and `..` without touching the file system.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The archive name of `path` relative to `base`: `a/b`, `../x/y`, or `.` for the base itself.
/// Names are bytes: Linux file names need not be UTF-8, and they must round-trip.
pub fn archive_name(base: &Path, path: &Path) -> Vec<u8> {
    let b: Vec<_> = base.components().collect();
    let p: Vec<_> = path.components().collect();
    let common = b.iter().zip(&p).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&[u8]> = vec![b".."; b.len() - common];
    parts.extend(p[common..].iter().map(|c| platform::bytes(c.as_os_str())));
    if parts.is_empty() {
        b".".to_vec()
    } else {
        parts.join(&b'/')
    }
}

/// An archive name for messages and manifests: as it is when UTF-8, else with the bytes that
/// are not escaped as `\xNN`.
pub fn shown(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(s) => s.to_string(),
        Err(_) => name.escape_ascii().to_string(),
    }
}

struct Pattern {
    raw: String,
    /// The longest leading part without glob characters: where the walk starts, and the
    /// root a restore may write under.
    root: PathBuf,
    glob: Option<GlobMatcher>,
    /// How deep below `root` a match can be; `None` with `**`.
    max_depth: Option<usize>,
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn glob_of(p: &str) -> Result<globset::Glob> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .with_context(|| format!("invalid path pattern {p:?}"))
}

/// The glob of a pattern split at its literal root: the root (the workspace, the home, the
/// user's literal directories) is matched as it is, whatever characters it holds, and braces
/// are literal everywhere (`{a,b}` is no alternation for the runner's glob either).
fn pattern_glob(root: &Path, rest: &[String]) -> Result<globset::Glob> {
    let mut p = globset::escape(&root.to_string_lossy());
    for part in rest {
        if !p.ends_with('/') {
            p.push('/');
        }
        p.push_str(&part.replace('{', "\\{").replace('}', "\\}"));
    }
    glob_of(&p)
}

/// Split pattern lines into includes and one set of excludes.
fn parse(lines: &[String], base: &Path, home: Option<&Path>) -> Result<(Vec<Pattern>, GlobSet)> {
    let mut includes = Vec::new();
    let mut excludes = GlobSetBuilder::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (exclude, body) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        if body.is_empty() {
            bail!("path pattern {line:?} is empty after '!'");
        }
        let abs = absolute(body, base, home);
        let (root, rest) = literal_root(&abs);
        if exclude {
            excludes.add(
                pattern_glob(&root, &rest)
                    .with_context(|| format!("invalid path pattern {line:?}"))?,
            );
            continue;
        }
        let (glob, max_depth) = if rest.is_empty() {
            (None, Some(0))
        } else {
            let depth = (!rest.iter().any(|s| s.contains("**"))).then_some(rest.len());
            let g = pattern_glob(&root, &rest)
                .with_context(|| format!("invalid path pattern {line:?}"))?;
            (Some(g.compile_matcher()), depth)
        };
        includes.push(Pattern {
            raw: line.to_string(),
            root,
            glob,
            max_depth,
        });
    }
    let excludes = excludes.build().context("invalid exclude pattern")?;
    Ok((includes, excludes))
}

/// A pattern's path: `~` expanded, relative to `base`, `.` and `..` resolved.
fn absolute(body: &str, base: &Path, home: Option<&Path>) -> PathBuf {
    let p = expand_tilde(body, home);
    normalize(&if p.is_absolute() { p } else { base.join(p) })
}

/// The leading components without glob characters, and the rest.
fn literal_root(abs: &Path) -> (PathBuf, Vec<String>) {
    let mut root = PathBuf::new();
    let mut rest = Vec::new();
    for c in abs.components() {
        let s = c.as_os_str().to_string_lossy();
        if rest.is_empty() && !is_glob(&s) {
            root.push(c.as_os_str());
        } else {
            rest.push(s.into_owned());
        }
    }
    (root, rest)
}

/// The directories a restore of these patterns may write under.
pub fn allowed_roots(lines: &[String], base: &Path, home: Option<&Path>) -> Result<Vec<PathBuf>> {
    Ok(parse(lines, base, home)?
        .0
        .into_iter()
        .map(|p| p.root)
        .collect())
}

/// The paths each include pattern matches (not their descendants), in pattern order, then
/// walk order; a match inside an earlier match is dropped (the earlier one covers it).
fn matches(includes: &[Pattern], missing: &mut Vec<String>) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    for pat in includes {
        let before = out.len();
        if std::fs::symlink_metadata(&pat.root).is_ok() {
            match &pat.glob {
                None => out.push(pat.root.clone()),
                Some(g) => walk_matches(&pat.root, g, 0, pat.max_depth, &mut out)?,
            }
        }
        if out.len() == before {
            missing.push(pat.raw.clone());
        }
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    for p in out {
        if !seen.iter().any(|s| p.starts_with(s)) {
            seen.retain(|s| !s.starts_with(&p));
            seen.push(p);
        }
    }
    Ok(seen)
}

fn walk_matches(
    dir: &Path,
    g: &GlobMatcher,
    depth: usize,
    max: Option<usize>,
    out: &mut Vec<PathBuf>,
) -> Result<()> {
    if max.is_some_and(|m| depth >= m) {
        return Ok(());
    }
    let children = match children_with_meta(dir) {
        Ok(c) => c,
        Err(_) => return Ok(()), // not a directory, or unreadable: nothing below it matches
    };
    for (child, meta) in children {
        if g.is_match(&child) {
            out.push(child);
        } else if meta.is_dir() {
            walk_matches(&child, g, depth + 1, max, out)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    File,
    Dir,
    Symlink(PathBuf),
    /// A second name of a file already in the archive: the archive name of the first.
    HardLink(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    /// Name inside the archive, `/`-separated, relative to the base directory.
    pub name: Vec<u8>,
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    pub mtime: (i64, u32),
    /// Whether the file is as a restore left it (chunked saves).
    pub stamp: platform::Stamp,
}

#[derive(Debug, Default)]
pub struct Selection {
    pub entries: Vec<Entry>,
    /// Include patterns that matched nothing.
    pub missing: Vec<String>,
}

impl Selection {
    pub fn file_count(&self) -> u64 {
        self.entries.iter().filter(|e| e.kind != Kind::Dir).count() as u64
    }

    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// Every file, directory and link the patterns mean, each directory before its contents.
pub fn select(base: &Path, lines: &[String], home: Option<&Path>) -> Result<Selection> {
    let mut entries = Vec::new();
    let missing = walk(base, lines, home, &mut |e| {
        entries.push(e);
        Ok(())
    })?;
    Ok(Selection { entries, missing })
}

/// What `select` lists, handed to `each` as it is found. Returns the include patterns that
/// matched nothing.
pub fn walk(
    base: &Path,
    lines: &[String],
    home: Option<&Path>,
    each: &mut dyn FnMut(Entry) -> Result<()>,
) -> Result<Vec<String>> {
    let base = normalize(base);
    let (includes, excludes) = parse(lines, &base, home)?;
    if includes.is_empty() {
        bail!("no path to include: give at least one path that does not start with '!'");
    }
    let mut missing = Vec::new();
    let tops = matches(&includes, &mut missing)?;
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    // The tops are disjoint (`matches` drops nested ones), so nothing is visited twice.
    for top in tops {
        let meta = match std::fs::symlink_metadata(&top) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", top.display())),
        };
        let name = archive_name(&base, &top);
        let mut stack = vec![(top, meta, name)];
        while let Some((p, meta, name)) = stack.pop() {
            if !excludes.is_empty() && excludes.is_match(&p) {
                continue;
            }
            let kind = if meta.is_dir() {
                let kids = children_with_meta(&p)
                    .with_context(|| format!("cannot list directory {}", p.display()))?;
                for (kid, kid_meta) in kids.into_iter().rev() {
                    // What a killed restore left aside is no part of the tree.
                    if kid
                        .file_name()
                        .is_some_and(|n| platform::is_aside(platform::bytes(n)))
                    {
                        continue;
                    }
                    let kid_name = match kid.file_name() {
                        Some(n) if name == b"." => platform::bytes(n).to_vec(),
                        Some(n) => [&name[..], b"/", platform::bytes(n)].concat(),
                        None => continue,
                    };
                    stack.push((kid, kid_meta, kid_name));
                }
                Kind::Dir
            } else if meta.file_type().is_symlink() {
                Kind::Symlink(
                    std::fs::read_link(&p)
                        .with_context(|| format!("cannot read link {}", p.display()))?,
                )
            } else if meta.is_file() {
                if platform::links(&meta) > 1 {
                    match links.get(&platform::file_id(&meta)) {
                        Some(first) => Kind::HardLink(first.clone()),
                        None => {
                            links.insert(platform::file_id(&meta), name.clone());
                            Kind::File
                        }
                    }
                } else {
                    Kind::File
                }
            } else {
                continue; // sockets, fifos, devices: never cache content
            };
            each(entry(p, name, kind, &meta))?;
        }
    }
    Ok(missing)
}

/// Children in byte order of their names (the order the GitHub runner's glob walk yields
/// them, and a stable archive order), each with its lstat, taken relative to the open
/// directory (no path walk per file). Entries that vanish meanwhile are skipped.
fn children_with_meta(dir: &Path) -> std::io::Result<Vec<(PathBuf, Metadata)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        match e.metadata() {
            Ok(m) => out.push((e.path(), m)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    out.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    Ok(out)
}

fn entry(path: PathBuf, name: Vec<u8>, kind: Kind, meta: &Metadata) -> Entry {
    let size = if kind == Kind::File { meta.len() } else { 0 };
    Entry {
        path,
        name,
        kind,
        size,
        mode: platform::mode(meta),
        mtime: platform::mtime(meta),
        stamp: platform::stamp(meta),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_follow_the_github_layout() {
        let base = Path::new("/home/runner/work/r/r");
        assert_eq!(
            archive_name(base, Path::new("/home/runner/work/r/r/node_modules/a")),
            b"node_modules/a"
        );
        assert_eq!(
            archive_name(base, Path::new("/home/runner/.npm")),
            b"../../../.npm"
        );
        assert_eq!(archive_name(base, base), b".");
        let odd = crate::platform::os_str(b"/home/runner/work/r/r/caf\xe9");
        assert_eq!(archive_name(base, Path::new(odd)), b"caf\xe9");
        assert_eq!(shown(b"caf\xe9"), "caf\\xe9");
    }

    #[test]
    fn tilde_and_normalize() {
        let h = Path::new("/home/u");
        assert_eq!(
            expand_tilde("~/.npm", Some(h)),
            PathBuf::from("/home/u/.npm")
        );
        assert_eq!(expand_tilde("~", Some(h)), PathBuf::from("/home/u"));
        assert_eq!(expand_tilde("~other/x", Some(h)), PathBuf::from("~other/x"));
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "nm/a/index.js",
            "nm/a/x.log",
            "nm/.cache/big",
            "nm/b/index.js",
            "src/m.rs",
            "README",
        ] {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        t
    }

    fn names(sel: &Selection) -> Vec<&str> {
        sel.entries
            .iter()
            .map(|e| std::str::from_utf8(&e.name).unwrap())
            .collect()
    }

    #[test]
    fn excludes_really_exclude_inside_included_directories() {
        let t = tree();
        let lines: Vec<String> = ["nm", "!nm/.cache", "!**/*.log"].map(String::from).to_vec();
        let sel = select(t.path(), &lines, None).unwrap();
        assert_eq!(
            names(&sel),
            ["nm", "nm/a", "nm/a/index.js", "nm/b", "nm/b/index.js"]
        );
    }

    #[test]
    fn globs_match_one_level_per_star_and_report_missing() {
        let t = tree();
        let lines: Vec<String> = ["nm/*/index.js", "nothing/here", "**/*.rs"]
            .map(String::from)
            .to_vec();
        let sel = select(t.path(), &lines, None).unwrap();
        assert_eq!(names(&sel), ["nm/a/index.js", "nm/b/index.js", "src/m.rs"]);
        assert_eq!(sel.missing, ["nothing/here"]);
    }

    #[test]
    fn roots_are_the_non_glob_prefixes() {
        let base = Path::new("/w");
        let lines: Vec<String> = ["nm/*/x", "~/.npm", "!nm/a", "/abs/**/y"]
            .map(String::from)
            .to_vec();
        let roots = allowed_roots(&lines, base, Some(Path::new("/h"))).unwrap();
        assert_eq!(
            roots,
            [
                PathBuf::from("/w/nm"),
                PathBuf::from("/h/.npm"),
                PathBuf::from("/abs")
            ]
        );
    }
}
