//! GitHub's `hashFiles` file list, as the runner's `@actions/glob` makes it: patterns in
//! order (the last that matches decides), directories standing for what is below them,
//! symlinks never followed, files in the runner's walk order.

use super::{absolute, children_with_meta, literal_root, matches, parse, pattern_glob};
use anyhow::{Context as _, Result};
use globset::GlobMatcher;
use std::path::{Path, PathBuf};

/// One line of `hashFiles`' patterns, in order: the last that matches a file (or a directory
/// above it) decides whether it counts, as in @actions/glob.
struct Rule {
    negate: bool,
    /// None: a literal path, which only `root` itself matches.
    glob: Option<GlobMatcher>,
    /// Where a file it matches can be: its leading components without glob characters.
    root: PathBuf,
    /// Written with a trailing `/`: it matches directories only (and so what is below them).
    dirs_only: bool,
}

fn rules(lines: &[String], base: &Path, home: Option<&Path>) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    for line in lines.iter().map(|l| l.trim()) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // As the runner reads them: an odd number of `!` negates, an even one cancels out.
        let body = line.trim_start_matches('!');
        let negate = (line.len() - body.len()) % 2 == 1;
        let dirs_only = body.ends_with('/');
        let (root, rest) = literal_root(&absolute(body, base, home));
        let glob = match rest.is_empty() {
            true => None,
            false => Some(
                pattern_glob(&root, &rest)
                    .with_context(|| format!("invalid path pattern {line:?}"))?
                    .compile_matcher(),
            ),
        };
        out.push(Rule {
            negate,
            glob,
            root,
            dirs_only,
        });
    }
    Ok(out)
}

impl Rule {
    fn matches(&self, p: &Path) -> bool {
        match &self.glob {
            Some(g) => g.is_match(p),
            None => p == self.root,
        }
    }
}

/// GitHub's `hashFiles` file list: regular files (or symlinks to them) under `base` that the
/// patterns match, directories expanded, in the runner's order.
pub fn glob_files(base: &Path, lines: &[String], home: Option<&Path>) -> Result<Vec<PathBuf>> {
    let rules = rules(lines, base, home)?;
    // The includes, for where to look: `!!x` is an include.
    let lines: Vec<String> = lines
        .iter()
        .map(|l| l.trim())
        .map(|l| {
            let body = l.trim_start_matches('!');
            match (l.len() - body.len()) % 2 {
                1 => format!("!{body}"),
                _ => body.to_string(),
            }
        })
        .collect();
    let (mut includes, _) = parse(&lines, base, home)?;
    // The runner follows no symlink, not even a pattern's root: `link/**` with `link` a
    // symlink to a directory finds `link` itself, which is no file.
    for p in &mut includes {
        if std::fs::symlink_metadata(&p.root).is_ok_and(|m| m.file_type().is_symlink()) {
            p.glob = None;
            p.max_depth = Some(0);
        }
    }
    let mut ignored = Vec::new();
    let mut files = Vec::new();
    for top in matches(&includes, &mut ignored)? {
        // Which rules match the top or a directory above it (a match covers what is below).
        let above: Vec<bool> = rules
            .iter()
            .map(|r| top.ancestors().skip(1).any(|a| r.matches(a)))
            .collect();
        let mut stack = vec![(top, above)];
        while let Some((p, above)) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let hit: Vec<bool> = rules
                .iter()
                .zip(&above)
                .map(|(r, up)| *up || (r.matches(&p) && (!r.dirs_only || meta.is_dir())))
                .collect();
            if meta.is_dir() {
                if !excluded_for_good(&rules, &hit, &p) {
                    let kids = children_with_meta(&p).unwrap_or_default();
                    stack.extend(kids.into_iter().rev().map(|(kid, _)| (kid, hit.clone())));
                }
            } else if counts(&rules, &hit)
                && p.starts_with(base)
                && std::fs::metadata(&p).is_ok_and(|m| m.is_file())
            {
                files.push(p);
            }
        }
    }
    Ok(in_runner_order(files, &rules))
}

/// The runner walks each search path (an include's literal root, unless another include's
/// root is above it), in pattern order, depth first with children in byte order. Files found
/// through patterns in another order are put in that one.
fn in_runner_order(mut files: Vec<PathBuf>, rules: &[Rule]) -> Vec<PathBuf> {
    let roots: Vec<&Path> = rules
        .iter()
        .filter(|r| !r.negate)
        .map(|r| r.root.as_path())
        .collect();
    let searched: Vec<&Path> = roots
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            !roots
                .iter()
                .enumerate()
                .any(|(j, o)| (o != *r && r.starts_with(o)) || (o == *r && j < *i))
        })
        .map(|(_, r)| *r)
        .collect();
    let group = |f: &Path| {
        searched
            .iter()
            .position(|r| f.starts_with(r))
            .unwrap_or(usize::MAX)
    };
    // Path order is component by component, names compared as bytes: a depth-first walk's.
    files.sort_by(|a, b| (group(a), a).cmp(&(group(b), b)));
    files.dedup();
    files
}

/// Whether the last rule that matches decides for inclusion.
fn counts(rules: &[Rule], hit: &[bool]) -> bool {
    let last = (0..rules.len()).rev().find(|&i| hit[i]);
    last.is_some_and(|i| !rules[i].negate)
}

/// A directory excluded by its last matching rule, which no later include can reach into:
/// nothing below it can count, so the walk skips it (`!node_modules/**`).
fn excluded_for_good(rules: &[Rule], hit: &[bool], dir: &Path) -> bool {
    let Some(last) = (0..rules.len()).rev().find(|&i| hit[i]) else {
        return false;
    };
    rules[last].negate
        && !rules[last + 1..]
            .iter()
            .any(|r| !r.negate && (r.root.starts_with(dir) || dir.starts_with(&r.root)))
}
