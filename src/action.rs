//! The GitHub Action's steps (`action.yml`, `restore/`, `save/`): the runner's `INPUT_*` and
//! `STATE_*` variables in, the arguments of a verb out. Outputs and state go back through
//! the report (`report::github`).

use crate::cli::{Global, Step};
use crate::error::user_error;
use crate::ops::{Keys, RestoreOptions, SaveKey, SaveOptions};
use crate::vars::{truthy, Vars};

/// An input as the runner passes it: `INPUT_` and the name upper-cased, spaces as `_`.
pub fn input(vars: &Vars, name: &str) -> String {
    let var = format!("INPUT_{}", name.to_uppercase().replace(' ', "_"));
    vars.get(&var).unwrap_or_default().trim().to_string()
}

/// A boolean input as the runner's `getBooleanInput` reads it (YAML 1.2 core schema);
/// anything else is bad input that names the input.
fn flag(vars: &Vars, name: &str) -> anyhow::Result<bool> {
    match input(vars, name).as_str() {
        "" | "false" | "False" | "FALSE" => Ok(false),
        "true" | "True" | "TRUE" => Ok(true),
        other => Err(user_error(format!(
            "input {name} is {other:?}; it must be true or false"
        ))),
    }
}

/// The `format` input: archive (the default), or chunked where the store keeps packs.
fn format(vars: &Vars) -> anyhow::Result<crate::store::Format> {
    use crate::store::Format;
    match input(vars, "format").as_str() {
        "chunked" => Ok(Format::Chunked),
        "" | "archive" => Ok(Format::Archive),
        other => Err(user_error(format!(
            "input format is {other:?}; it must be chunked or archive"
        ))),
    }
}

/// An input the step cannot do without, with the runner's own message.
fn required(vars: &Vars, name: &str) -> anyhow::Result<String> {
    let v = input(vars, name);
    if v.is_empty() {
        return Err(user_error(format!(
            "Input required and not supplied: {name}"
        )));
    }
    Ok(v)
}

fn lines(vars: &Vars, name: &str) -> Vec<String> {
    input(vars, name)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// kura's extra inputs fill the global flags the environment did not set.
pub fn globals(g: &mut Global, vars: &Vars) {
    // An empty variable (a workflow's `KURA_STORE: ''`) sets nothing.
    let set = |v: &mut Option<String>, name: &str| {
        if v.as_deref().is_none_or(|s| s.trim().is_empty()) && !input(vars, name).is_empty() {
            *v = Some(input(vars, name));
        }
    };
    set(&mut g.store, "store");
    set(&mut g.scope, "scope");
    // A malformed `strict` is reported by the step's own validation; here it only must not
    // turn a failure into a success.
    g.strict |= truthy(&input(vars, "strict"));
}

/// A key input as actions/cache checks it, with its words, in the restore and save steps
/// alike.
fn valid_key(key: String) -> anyhow::Result<String> {
    if key.contains(',') {
        return Err(user_error(format!(
            "Key Validation Error: {key} cannot contain commas."
        )));
    }
    if key.chars().count() > 512 {
        return Err(user_error(format!(
            "Key Validation Error: {key} cannot be larger than 512 characters."
        )));
    }
    Ok(key)
}

pub fn restore_args(vars: &Vars) -> anyhow::Result<RestoreOptions> {
    flag(vars, "strict")?;
    Ok(RestoreOptions {
        keys: Keys::Exact {
            key: valid_key(required(vars, "key")?)?,
            restore_keys: lines(vars, "restore-keys")
                .into_iter()
                .map(valid_key)
                .collect::<anyhow::Result<_>>()?,
        },
        paths: vec![required(vars, "path")?],
        lookup_only: flag(vars, "lookup-only")?,
        fail_on_miss: flag(vars, "fail-on-cache-miss")?,
        dry_run: false,
    })
}

/// What the post step does: skip, with the reason, or save.
pub enum Post {
    Skip(String),
    Save(SaveOptions),
}

pub fn save_args(step: Step, vars: &Vars) -> anyhow::Result<Post> {
    flag(vars, "strict")?;
    let level = match input(vars, "compression-level").as_str() {
        "" => 3,
        l => l
            .parse()
            .ok()
            .filter(|l| (1..=22).contains(l))
            .ok_or_else(|| {
                user_error(format!(
                    "input compression-level {l:?} is not a zstd level from 1 to 22"
                ))
            })?,
    };
    let key = valid_key(required(vars, "key")?)?;
    let mut args = SaveOptions {
        key: SaveKey::Template(key),
        paths: vec![required(vars, "path")?],
        level,
        overwrite: flag(vars, "overwrite")?,
        dry_run: false,
        format: format(vars)?,
        chunk_size: crate::chunked::AVG_CHUNK,
    };
    if step == Step::Post {
        let state = |k: &str| vars.string(&format!("STATE_{k}")).unwrap_or_default();
        let (primary, matched) = (state("CACHE_KEY"), state("CACHE_RESULT"));
        if !primary.is_empty() && primary.eq_ignore_ascii_case(&matched) && !args.overwrite {
            return Ok(Post::Skip(format!(
                "Cache hit occurred on the primary key {primary}, not saving cache."
            )));
        }
        // The key as the restore evaluated it: hashFiles over a tree the job has since
        // changed would give another one.
        if !primary.is_empty() {
            args.key = SaveKey::Literal(primary);
        }
    }
    Ok(Post::Save(args))
}
