//! The GitHub Action's steps (`action.yml`, `restore/`, `save/`): the runner's `INPUT_*` and
//! `STATE_*` variables in, the arguments of a verb out. Outputs and state go back through
//! the report (see `ci::github::talk_back`).

use crate::cli::{Global, PathArgs, RestoreArgs, SaveArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// `restore/` and the main step of the root action.
    Restore,
    /// `save/`: save under the `key` input.
    Save,
    /// The root action's post step: save under the key the restore evaluated, unless the
    /// restore hit it exactly.
    Post,
}

/// An input as the runner passes it: `INPUT_` and the name upper-cased, spaces as `_`.
pub fn input(name: &str) -> String {
    let var = format!("INPUT_{}", name.to_uppercase().replace(' ', "_"));
    std::env::var(var).unwrap_or_default().trim().to_string()
}

fn flag(name: &str) -> bool {
    input(name).eq_ignore_ascii_case("true")
}

fn lines(name: &str) -> Vec<String> {
    input(name)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// kura's extra inputs fill the global flags the environment did not set.
pub fn globals(g: &mut Global) {
    let set = |v: &mut Option<String>, name: &str| {
        if v.is_none() && !input(name).is_empty() {
            *v = Some(input(name));
        }
    };
    set(&mut g.store, "store");
    set(&mut g.scope, "scope");
    g.strict |= flag("strict");
}

pub fn restore_args() -> RestoreArgs {
    RestoreArgs {
        key: Some(input("key")),
        restore_keys: lines("restore-keys"),
        keys: Vec::new(),
        paths: PathArgs {
            paths: lines("path"),
        },
        lookup_only: flag("lookup-only"),
        fail_on_miss: flag("fail-on-cache-miss"),
        dry_run: false,
    }
}

/// What the post step does: skip, with the reason, or save.
pub enum Post {
    Skip(String),
    Save(SaveArgs),
}

pub fn save_args(step: Step) -> Post {
    let level = input("compression-level").parse().unwrap_or(3);
    let mut args = SaveArgs {
        key: input("key"),
        paths: PathArgs {
            paths: lines("path"),
        },
        compression_level: level,
        overwrite: flag("overwrite"),
        dry_run: false,
        literal_key: false,
    };
    if step == Step::Post {
        let state = |k: &str| std::env::var(format!("STATE_{k}")).unwrap_or_default();
        let (primary, matched) = (state("CACHE_KEY"), state("CACHE_RESULT"));
        if !primary.is_empty() && primary.eq_ignore_ascii_case(&matched) && !args.overwrite {
            return Post::Skip(format!(
                "Cache hit occurred on the primary key {primary}, not saving cache."
            ));
        }
        // The key as the restore evaluated it: hashFiles over a tree the job has since
        // changed would give another one.
        if !primary.is_empty() {
            args.key = primary;
            args.literal_key = true;
        }
    }
    Post::Save(args)
}
