//! The layering rule, checked on the sources: no import cycle between the crate's top-level
//! modules, nor between the files of one module. A file's imports are the `crate::`, `super::`
//! and `self::` paths it names; a file and its own parent or child modules do not count as a
//! cycle (a `mod.rs` declares its children and hands their names on).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every source file's module path (`src/ops/save.rs` → `ops::save`), and its text.
fn sources(dir: &Path, module: &[String], out: &mut BTreeMap<Vec<String>, String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            sources(&path, &[module, &[name]].concat(), out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let m = match stem {
                "mod" | "lib" => module.to_vec(),
                "main" => continue,
                _ => [module, &[stem.to_string()]].concat(),
            };
            out.insert(m, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The paths a text names from `crate`, `super` or `self`, braces expanded one level deep
/// (`use super::{a, b::c}` names `super::a` and `super::b::c`).
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for root in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(root) {
            if code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            {
                continue;
            }
            let rest = &code[at..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let head = rest[..end].trim_end_matches(':');
            let segs: Vec<String> = head.split("::").map(str::to_string).collect();
            if rest[end..].starts_with('{') && rest[..end].ends_with("::") {
                let group = &rest[end..];
                expand(&segs, &group[1..closing(group).unwrap_or(1)], &mut out);
            } else {
                out.push(segs);
            }
        }
    }
    out
}

/// Where the brace group `text` starts with closes (its index), nested groups counted.
fn closing(text: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The paths of a `use` group's items (`a::{b, c}, d as e`) under `prefix`, nested groups too.
fn expand(prefix: &[String], group: &str, out: &mut Vec<Vec<String>>) {
    let (mut depth, mut start) = (0, 0);
    let mut items = Vec::new();
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        let path = item.split(" as ").next().unwrap_or("").trim();
        let segs = |p: &str| -> Vec<String> {
            prefix
                .iter()
                .cloned()
                .chain(p.split("::").filter(|s| !s.is_empty()).map(str::to_string))
                .collect()
        };
        match path.find("::{") {
            Some(at) => {
                let inner = &path[at + 2..];
                expand(
                    &segs(&path[..at]),
                    &inner[1..closing(inner).unwrap_or(1)],
                    out,
                );
            }
            None => out.push(segs(path)),
        }
    }
}

/// The module a path names from module `from`: the longest prefix that is a source file.
/// (`super` is the parent of the naming module, whether a file or a `mod.rs` names it.)
fn resolve(from: &[String], path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut base: Vec<String> = from.to_vec();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
    }
    let full = [base.as_slice(), rest].concat();
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|m| known.contains(m))
}

/// A cycle in `edges`, if there is one, as the modules along it.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            return Some(path[at..].to_vec());
        }
        if !done.insert(n.to_string()) {
            return None;
        }
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, done, path) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut done, &mut Vec::new()))
}

/// The imports between the crate's top-level modules, and between the files (or folders) of
/// one module, as edges from importer to imported.
type Edges = BTreeMap<String, BTreeSet<String>>;

fn imports() -> (Edges, Edges) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&src, &[], &mut files);
    let known: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let (mut top, mut inner) = (BTreeMap::new(), BTreeMap::new());
    for (m, text) in &files {
        for p in paths(text) {
            let Some(to) = resolve(m, &p, &known) else {
                continue;
            };
            // A module and its own parents or children: declared and handed on, not a cycle.
            if to.starts_with(m) || m.starts_with(&to) {
                continue;
            }
            // Between the two rooms under the deepest module both are in.
            let k = m.iter().zip(&to).take_while(|(a, b)| a == b).count();
            let edges: &mut Edges = if k == 0 { &mut top } else { &mut inner };
            edges
                .entry(m[..=k].join("::"))
                .or_default()
                .insert(to[..=k].join("::"));
        }
    }
    assert!(top.len() > 5, "the modules were not read: {top:?}");
    (top, inner)
}

#[test]
fn no_module_imports_itself_in_a_circle() {
    let (top, inner) = imports();
    assert_eq!(cycle(&top), None, "top-level modules import each other");
    assert_eq!(cycle(&inner), None, "files of one module import each other");
}

/// The layers of the design, from the top: the parser and the composition root; the verbs;
/// the entry formats, selection and the stores beside them. A layer never reaches up.
#[test]
fn no_layer_imports_one_above_it() {
    let (top, _) = imports();
    let forbidden: &[(&str, &[&str])] = &[
        // The verbs take options the composition root built, never the parser's types.
        ("ops", &["cli", "app", "action"]),
        // Stores return typed errors; the verbs and the root decide what they mean.
        (
            "store",
            &["cli", "app", "action", "ops", "outcome", "report"],
        ),
        // The chunk format is given its packs; it does not know which store holds them.
        ("chunked", &["cli", "app", "ops", "store", "report"]),
        // The archive packs what selection chose; selection knows nothing of archives.
        ("archive", &["cli", "app", "ops", "store", "chunked"]),
        (
            "select",
            &["cli", "app", "ops", "store", "archive", "chunked"],
        ),
    ];
    let mut broken = Vec::new();
    for (from, above) in forbidden {
        for to in top.get(*from).into_iter().flatten() {
            if above.contains(&to.as_str()) {
                broken.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        top.contains_key("ops") && top.contains_key("store"),
        "{top:?}"
    );
    assert_eq!(
        broken,
        Vec::<String>::new(),
        "imports that reach up a layer"
    );
}

#[test]
fn nested_use_groups_are_read_whole() {
    let got = paths("use crate::{a::{b, c::D}, e as f, g::{h::{i}}};");
    let want: Vec<Vec<String>> = [
        "crate::a::b",
        "crate::a::c::D",
        "crate::e",
        "crate::g::h::i",
    ]
    .iter()
    .map(|p| p.split("::").map(str::to_string).collect())
    .collect();
    assert_eq!(got, want);
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let edges: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
            .collect();
    assert_eq!(cycle(&edges).map(|c| c.len()), Some(3));
    let known: BTreeSet<Vec<String>> = [vec!["ops".to_string()], vec!["ops".into(), "save".into()]]
        .into_iter()
        .collect();
    let from = ["ops".to_string(), "chunked".to_string()];
    let p = paths("use super::{save::Target, Env};");
    let got: Vec<_> = p.iter().filter_map(|p| resolve(&from, p, &known)).collect();
    assert_eq!(
        got,
        [
            known.iter().nth(1).unwrap().clone(),
            vec!["ops".to_string()]
        ]
    );
}

/// Every Rust file below `dir` but the test modules (`tests.rs`), each with its code before
/// any `#[cfg(test)]` (tests name what the code may not).
pub(crate) fn code_below(dir: &Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name().is_some_and(|n| n != "tests.rs")
            {
                let text = std::fs::read_to_string(&p).unwrap();
                // The test module, wherever it starts; a single `#[cfg(test)]` item above it
                // (a helper for tests) does not hide the code after it.
                let code = text.split("#[cfg(test)]\nmod ").next().unwrap().to_string();
                out.push((p, code));
            }
        }
    }
    out
}

/// The functions of `dir` (outside test code) longer than `max` lines, with their files.
fn long_functions(dir: &Path, max: usize) -> Vec<String> {
    const FN: [&str; 7] = [
        "fn ",
        "pub fn ",
        "pub(super) fn ",
        "pub(crate) fn ",
        "async fn ",
        "pub async fn ",
        "pub(super) async fn ",
    ];
    let mut out = Vec::new();
    for (p, code) in code_below(dir) {
        let lines: Vec<&str> = code.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            if !FN.iter().any(|s| t.starts_with(s)) || t.trim_end().ends_with(';') {
                continue;
            }
            let close = format!("{indent}}}");
            let end = lines[i..].iter().position(|l| *l == close).unwrap_or(0);
            if end + 1 > max {
                let name = t.split("fn ").nth(1).unwrap_or("");
                let name = name.split(['(', '<']).next().unwrap_or("");
                out.push(format!("{} {name}: {} lines", p.display(), end + 1));
            }
        }
    }
    out
}

#[test]
fn no_function_of_the_verbs_or_the_stores_is_over_60_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for dir in ["ops", "store"] {
        assert_eq!(long_functions(&src.join(dir), 60), Vec::<String>::new());
    }
    // The check sees a long one.
    assert!(!long_functions(&src.join("ops"), 20).is_empty());
}
