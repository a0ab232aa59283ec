//! The composition root: flags and environment into one verb's context, run, and its outcome
//! into what the user sees and the exit code. The policy that belongs to no verb lives here:
//! which failures fail the job, how the action's save steps treat bad input, and that a
//! CircleCI workspace needs a shared store. `main.rs` only parses the flags.

use crate::cli::{self, Cli, Command, Step};
use crate::error::UserError;
use crate::outcome::Outcome;
use crate::report::Report;
use crate::vars::Vars;
use crate::{action, ci, key, ops, select, store};

/// The command line's parser, with the environment settings in its help.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let settings = crate::settings::help();
    Cli::command()
        .after_help(settings.clone())
        .after_long_help(settings)
}

/// Run one command; the exit code.
pub fn run(mut cli: Cli, vars: Vars) -> u8 {
    if let Some(code) = documents(&cli.command) {
        return code;
    }
    if let Command::Action { .. } = cli.command {
        action::globals(&mut cli.global, &vars);
    }
    let ci = ci::detect(&vars);
    let report = Report::new(cli.global.json, ci.provider == ci::Provider::GitHub, &vars);
    let policy = Policy::of(&cli);
    let outcome = match verb(cli, ci, &vars, report.clone()) {
        Ok(o) => o,
        Err(e) => failed(e, policy.strict),
    };
    let outcome = match outcome {
        // The action's save steps treat bad inputs as actions/cache does: a warning.
        Outcome::Invalid { error } if policy.save_step => Outcome::Error {
            error,
            strict: policy.strict,
        },
        outcome => outcome,
    };
    tell(&report, &outcome, &policy);
    report.finish(&outcome);
    // Stopped by a signal during an extraction (and rolled back): exit as the signal would.
    if let Some(sig) = crate::platform::interrupted() {
        return 128 + sig as u8;
    }
    exit_code(&outcome)
}

/// The commands that print kura's own documents (completions, the man page), which need
/// no store and no CI: their exit code.
fn documents(command: &Command) -> Option<u8> {
    let mut out = std::io::stdout().lock();
    let written = match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut self::command(), "kura", &mut out);
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(self::command()).render(&mut out),
        _ => return None,
    };
    Some(match written {
        Ok(()) => 0,
        // `kura man | head`: the reader had enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            1
        }
    })
}

/// What the command's kind decides about failures.
struct Policy {
    /// Failures fail the job: `--strict`, and always for workspaces, `key` and the commands
    /// that look after a store (a script must tell an unreachable store from an empty one).
    strict: bool,
    /// How the user asks for strictness: the action's input, else the flag.
    strict_by: &'static str,
    /// actions/cache's words for a failed cache step, which users grep their logs for.
    failed_to: &'static str,
    /// The action's save and post steps.
    save_step: bool,
}

impl Policy {
    fn of(cli: &Cli) -> Policy {
        let save_step = matches!(
            cli.command,
            Command::Action {
                step: Step::Save | Step::Post
            }
        );
        let strict = cli.global.strict
            || matches!(
                cli.command,
                Command::Persist(_)
                    | Command::Attach(_)
                    | Command::Key { .. }
                    | Command::Ls { .. }
                    | Command::Rm { .. }
                    | Command::Prune { .. }
            );
        let strict_by = match &cli.command {
            Command::Action { .. } => "set the action's strict input to true",
            _ => "pass --strict",
        };
        let failed_to = match &cli.command {
            Command::Save(_) => "Failed to save: ",
            _ if save_step => "Failed to save: ",
            Command::Restore(_) | Command::Action { .. } => "Failed to restore: ",
            _ => "",
        };
        Policy {
            strict,
            strict_by,
            failed_to,
            save_step,
        }
    }
}

/// The outcome's line, for outcomes that are not reported as they happen.
fn tell(report: &Report, outcome: &Outcome, policy: &Policy) {
    let failed_to = policy.failed_to;
    match outcome {
        Outcome::Invalid { error } => report.error(error),
        Outcome::Skipped { reason } => report.info(reason),
        Outcome::Error {
            error,
            strict: true,
        } => report.error(format!("{failed_to}{error}")),
        // Stopped by a signal: the job is ending anyway; the exit code says how.
        Outcome::Error { error, .. } if crate::platform::interrupted().is_some() => {
            report.error(format!("{failed_to}{error}"))
        }
        Outcome::Error { error, .. } => report.warn(format!(
            "{failed_to}{error}\n(the job goes on: a cache failure is not fatal; {} to make it so)",
            policy.strict_by
        )),
        _ => {}
    }
}

/// The one place an outcome becomes an exit code: 2 for bad input, 1 for what the user asked
/// to fail on (a miss with --fail-on-miss, a workspace conflict, any failure under --strict),
/// else 0: a cache failure never fails the job unasked. Every outcome is named, so a new one
/// must be given its code.
pub fn exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Invalid { .. } => 2,
        Outcome::Miss(m) => u8::from(m.fail),
        Outcome::Conflict { .. } => 1,
        Outcome::Error { strict, .. } => u8::from(*strict),
        Outcome::Hit(_)
        | Outcome::Partial(_)
        | Outcome::Saved(_)
        | Outcome::Exists { .. }
        | Outcome::Empty { .. }
        | Outcome::DryRun(_)
        | Outcome::Persisted { .. }
        | Outcome::Attached { .. }
        | Outcome::Listed { .. }
        | Outcome::Deleted { .. }
        | Outcome::Pruned { .. }
        | Outcome::Keys { .. }
        | Outcome::Skipped { .. } => 0,
    }
}

fn failed(e: anyhow::Error, strict: bool) -> Outcome {
    if let Some(u) = e.downcast_ref::<UserError>() {
        return Outcome::Invalid { error: u.0.clone() };
    }
    if let Some(store::StoreError::Skipped(reason)) = store::StoreError::within(&e) {
        return Outcome::Skipped {
            reason: reason.clone(),
        };
    }
    // A server's error text may be megabytes: the outcome (and its JSON) keeps a bounded,
    // escaped form of it.
    Outcome::Error {
        error: crate::text::message(&format!("{e:#}"), 16 << 10),
        strict,
    }
}

/// The context every verb runs in, from the global flags and the CI.
fn env(
    g: &crate::cli::Global,
    ci: ci::CiInfo,
    vars: &Vars,
    report: Report,
) -> anyhow::Result<ops::Env> {
    let ctx = key::Context::new(ci, vars);
    let store = store::open(g.store.as_deref(), vars)?;
    let base = ctx.ci.workspace.clone().unwrap_or_else(|| ctx.cwd.clone());
    let base = select::normalize(&ctx.cwd.join(base));
    let (write_scope, read_scopes) = match &g.scope {
        Some(s) => (s.clone(), vec![s.clone()]),
        None => (ctx.ci.write_scope.clone(), ctx.ci.read_scopes.clone()),
    };
    let chunk_cache = match &g.chunk_cache {
        Some(dir) => {
            let max = crate::units::parse_size(&g.chunk_cache_size)?;
            Some(std::sync::Arc::new(crate::chunked::ChunkCache::new(
                dir.clone(),
                max,
            )))
        }
        None => None,
    };
    Ok(ops::Env {
        ctx,
        store,
        chunk_cache,
        report,
        base,
        write_scope,
        read_scopes,
        // zstd's own -T0 counts physical cores; count what the machine gives us instead.
        workers: g.workers.filter(|w| *w > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(2)
        }),
    })
}

fn verb(cli: Cli, mut ci: ci::CiInfo, vars: &Vars, report: Report) -> anyhow::Result<Outcome> {
    let g = &cli.global;
    // `--base-dir` (or KURA_BASE_DIR) is the workspace the CI would otherwise name.
    if let Some(b) = &g.base_dir {
        ci.workspace = Some(b.clone());
    }
    if let Command::Key { templates } = &cli.command {
        let ctx = key::Context::new(ci, vars);
        let keys = ops::render_all(templates, &ctx, &report)?;
        if !report.json {
            for k in &keys {
                println!("{k}");
            }
        }
        return Ok(Outcome::Keys { keys });
    }
    // CircleCI's jobs run on separate machines: a workspace in the default job-local
    // directory would persist fine and attach nothing in the next job.
    let workspace = matches!(cli.command, Command::Persist(_) | Command::Attach(_));
    let store_given = g.store.as_deref().is_some_and(|s| !s.trim().is_empty());
    if workspace && !store_given && ci.provider == ci::Provider::CircleCi {
        return Err(crate::error::user_error(
            "a CircleCI workspace needs a store every job of the workflow reaches: set KURA_STORE (or the orb's store parameter) to a bucket, such as s3://BUCKET/kura; the default store is a directory on this job's machine",
        ));
    }
    let cache_step = matches!(
        cli.command,
        Command::Save(_) | Command::Restore(_) | Command::Action { .. }
    );
    if cache_step && ci.provider != ci::Provider::Local {
        if let Some(dir) = store::job_local_default(g.store.as_deref(), vars) {
            let msg = job_local(&dir, &ci);
            if g.strict {
                anyhow::bail!(msg);
            }
            report.warn(msg);
        }
    }
    let env = env(g, ci, vars, report)?;
    match &cli.command {
        Command::Key { .. } | Command::Completions { .. } | Command::Man => {
            unreachable!("answered above")
        }
        Command::Restore(a) => ops::restore(&env, &restore_options(a)),
        Command::Save(a) => ops::save(&env, &save_options(a)),
        Command::Action { step } => match step {
            Step::Restore => ops::restore(&env, &action::restore_args(vars)?),
            Step::Save | Step::Post => match action::save_args(*step, vars)? {
                action::Post::Skip(reason) => Ok(Outcome::Skipped { reason }),
                action::Post::Save(a) => ops::save(&env, &a),
            },
        },
        Command::Persist(a) => ops::persist(&env, &persist_options(a)),
        Command::Attach(a) => ops::attach(&env, &attach_options(a)),
        Command::Ls { prefix } => ops::ls(&env, prefix.as_deref()),
        Command::Rm {
            key,
            git_ref,
            dry_run,
        } => ops::rm(&env, key, git_ref.as_deref(), *dry_run),
        Command::Prune {
            max_size,
            max_age,
            dry_run,
        } => ops::prune(
            &env,
            ops::Limits {
                max_size: max_size.as_deref(),
                max_age: max_age.as_deref(),
                dry_run: *dry_run,
            },
        ),
    }
}

/// A cache in CI without a store: kept on a machine the next job will not run on.
fn job_local(dir: &std::path::Path, ci: &ci::CiInfo) -> String {
    let gha = match ci.provider {
        ci::Provider::GitHub => ", or gha:// (GitHub's cache) through the kura action",
        _ => "",
    };
    format!(
        "no store is configured, so this cache is kept in {dir} on this {name} machine, where the next job will not find it. Set KURA_STORE (or --store) to a store every job reaches: s3://BUCKET/PREFIX, oci://REGISTRY/REPOSITORY, https://HOST/PATH{gha}. Where this machine's disk outlives its jobs (a self-hosted runner), KURA_STORE=file://{dir} keeps the cache here and silences this warning",
        dir = dir.display(),
        name = ci.name,
    )
}

// The verbs' requests from their flags: the verbs never see the parser's types.

fn restore_options(a: &cli::RestoreArgs) -> ops::RestoreOptions {
    ops::RestoreOptions {
        // The parser lets --key and --keys not both be given, and one of them must be.
        keys: match &a.key {
            Some(key) => ops::Keys::Exact {
                key: key.clone(),
                restore_keys: a.restore_keys.clone(),
            },
            None => ops::Keys::Prefixes(a.keys.clone()),
        },
        paths: a.paths.paths.clone(),
        lookup_only: a.lookup_only,
        fail_on_miss: a.fail_on_miss,
        dry_run: a.dry_run,
    }
}

fn save_options(a: &cli::SaveArgs) -> ops::SaveOptions {
    ops::SaveOptions {
        key: ops::SaveKey::Template(a.key.clone()),
        paths: a.paths.clone(),
        level: a.compression_level,
        overwrite: a.overwrite,
        dry_run: a.dry_run,
        format: a.format,
        chunk_size: a.chunk_size,
    }
}

fn run_ids(r: &cli::RunArgs) -> ops::RunIds {
    ops::RunIds {
        workflow: r.workflow.clone(),
        job: r.job.clone(),
    }
}

fn persist_options(a: &cli::PersistArgs) -> ops::PersistOptions {
    ops::PersistOptions {
        root: a.root.clone(),
        paths: a.paths.clone(),
        run: run_ids(&a.run),
        dry_run: a.dry_run,
    }
}

fn attach_options(a: &cli::AttachArgs) -> ops::AttachOptions {
    ops::AttachOptions {
        at: a.at.clone(),
        run: run_ids(&a.run),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    fn readme() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
    }

    /// Every variable a flag reads, from the parser itself.
    fn flag_variables() -> BTreeSet<String> {
        fn walk(c: &clap::Command, out: &mut BTreeSet<String>) {
            for a in c.get_arguments() {
                if let Some(e) = a.get_env() {
                    out.insert(e.to_string_lossy().into_owned());
                }
            }
            for s in c.get_subcommands() {
                walk(s, out);
            }
        }
        let mut out = BTreeSet::new();
        walk(&super::command(), &mut out);
        out
    }

    #[test]
    fn the_readme_lists_every_setting_as_declared() {
        let readme = readme();
        // The settings table: each row as declared, doc and all.
        for s in crate::settings::ALL {
            let row = format!("| `{}` | {} |", s.name, s.doc);
            assert!(readme.contains(&row), "the README lacks the row {row}");
        }
        let rows = readme.lines().filter(|l| l.starts_with("| `KURA_")).count();
        assert_eq!(
            rows,
            crate::settings::ALL.len(),
            "a README row no setting declares"
        );
        // The flags' variables: the paragraph that lists them names each, and no other.
        let start = readme
            .find("Every flag also reads an environment variable")
            .unwrap();
        let para = &readme[start..start + readme[start..].find("\n\n").unwrap()];
        let named: BTreeSet<String> = para
            .split('`')
            .filter(|w| {
                w.starts_with("KURA_") && w[5..].chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
            .map(str::to_string)
            .collect();
        assert_eq!(named, flag_variables());
    }

    #[test]
    fn help_shows_every_setting() {
        let help = super::command().render_long_help().to_string();
        for s in crate::settings::ALL {
            assert!(help.contains(s.name), "--help lacks {}", s.name);
        }
    }

    #[test]
    fn settings_are_read_by_their_declaration_only() {
        // A variable name spelled out in the code is a setting declared twice.
        let mut found = Vec::new();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for (p, code) in crate::structure::code_below(&src) {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if ["cli.rs", "settings.rs"].contains(&name.as_str()) {
                continue;
            }
            for (at, _) in code.match_indices("\"KURA_") {
                let next = code[at + 6..].chars().next();
                if next.is_some_and(|c| c.is_ascii_uppercase()) {
                    let shown: String = code[at..].chars().take(30).collect();
                    found.push(format!("{}: {shown}", p.display()));
                }
            }
        }
        assert_eq!(found, Vec::<String>::new());
    }
}
