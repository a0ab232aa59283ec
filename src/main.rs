//! kura: cache and workspace verbs for every CI.

use clap::Parser;
use kura::cli::{Cli, Command, Step};
use kura::outcome::{Outcome, UserError};
use kura::report::Report;
use kura::vars::Vars;
use kura::{action, ci, key, ops, select, store};
use std::process::ExitCode;

fn main() -> ExitCode {
    // CI configurations pass settings as `KURA_X: ${{ inputs.x }}`, which is empty when the
    // input is: an empty setting is no setting, not a bad value. Nothing else runs yet.
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_str().is_some_and(|n| n.starts_with("KURA_")) {
            std::env::remove_var(name);
        }
    }
    let mut cli = Cli::parse();
    let vars = Vars::from_process();
    if let Command::Action { .. } = cli.command {
        action::globals(&mut cli.global, &vars);
    }
    let ci = ci::detect(&vars);
    let report = Report::new(cli.global.json, ci.provider == ci::Provider::GitHub, &vars);
    // Workspaces are not optional the way caches are: their failures fail the job.
    let strict = cli.global.strict
        || matches!(
            cli.command,
            Command::Persist(_) | Command::Attach(_) | Command::Key { .. }
        );
    // actions/cache's words for a failed cache step, which users grep their logs for.
    let failed_to = match &cli.command {
        Command::Save(_) => "Failed to save: ",
        Command::Action {
            step: Step::Save | Step::Post,
        } => "Failed to save: ",
        Command::Restore(_) | Command::Action { .. } => "Failed to restore: ",
        _ => "",
    };
    // The action's save steps treat bad inputs as actions/cache does: a warning, the job goes on.
    let save_step = matches!(
        cli.command,
        Command::Action {
            step: Step::Save | Step::Post
        }
    );
    let outcome = match run(cli, ci, vars, report.clone()).unwrap_or_else(|e| failed(e, strict)) {
        Outcome::Invalid { error } if save_step => Outcome::Error { error, strict },
        outcome => outcome,
    };
    match &outcome {
        Outcome::Invalid { error } => report.error(error),
        Outcome::Skipped { reason } => report.info(reason),
        Outcome::Error {
            error,
            strict: true,
        } => report.error(format!("{failed_to}{error}")),
        Outcome::Error { error, .. } => report.warn(format!(
            "{failed_to}{error}\n(the job goes on: a cache failure is not fatal; pass --strict to make it so)"
        )),
        _ => {}
    }
    report.finish(&outcome);
    // Stopped by a signal during an extraction (and rolled back): exit as the signal would.
    if let Some(sig) = kura::platform::interrupted() {
        return ExitCode::from(128 + sig as u8);
    }
    ExitCode::from(exit_code(&outcome))
}

/// The one place an outcome becomes an exit code: 2 for bad input, 1 for what the user asked
/// to fail on (a miss with --fail-on-miss, a workspace conflict, any failure under --strict),
/// else 0: a cache failure never fails the job unasked.
fn exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Invalid { .. } => 2,
        Outcome::Miss(m) if m.fail => 1,
        Outcome::Conflict { .. } => 1,
        Outcome::Error { strict: true, .. } => 1,
        _ => 0,
    }
}

fn failed(e: anyhow::Error, strict: bool) -> Outcome {
    if let Some(u) = e.downcast_ref::<UserError>() {
        return Outcome::Invalid { error: u.0.clone() };
    }
    if let Some(s) = e.downcast_ref::<store::Skipped>() {
        return Outcome::Skipped {
            reason: s.0.clone(),
        };
    }
    // A server's error text may be megabytes: the outcome (and its JSON) keeps a bounded,
    // escaped form of it.
    Outcome::Error {
        error: kura::text::message(&format!("{e:#}"), 16 << 10),
        strict,
    }
}

fn run(cli: Cli, ci: ci::CiInfo, vars: Vars, report: Report) -> anyhow::Result<Outcome> {
    let g = cli.global;
    let ctx = key::Context::new(ci, &vars);
    if let Command::Key { templates } = &cli.command {
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
    if workspace && !store_given && ctx.ci.provider == ci::Provider::CircleCi {
        return Err(kura::outcome::user_error(
            "a CircleCI workspace needs a store every job of the workflow reaches: set KURA_STORE (or the orb's store parameter) to a bucket, such as s3://BUCKET/kura; the default store is a directory on this job's machine",
        ));
    }
    let store = store::open(g.store.as_deref(), &vars)?;
    let base = g
        .base_dir
        .clone()
        .or_else(|| ctx.ci.workspace.clone())
        .unwrap_or_else(|| ctx.cwd.clone());
    let base = select::normalize(&ctx.cwd.join(base));
    let (write_scope, read_scopes) = match &g.scope {
        Some(s) => (s.clone(), vec![s.clone()]),
        None => (ctx.ci.write_scope.clone(), ctx.ci.read_scopes.clone()),
    };
    let chunk_cache = match &g.chunk_cache {
        Some(dir) => {
            let max = kura::report::parse_size(&g.chunk_cache_size)?;
            Some(std::sync::Arc::new(kura::chunked::ChunkCache::new(
                dir.clone(),
                max,
            )))
        }
        None => None,
    };
    let env = ops::Env {
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
    };
    match &cli.command {
        Command::Key { .. } => unreachable!(),
        Command::Restore(a) => ops::restore(&env, a),
        Command::Save(a) => ops::save(&env, a),
        Command::Action { step } => match step {
            Step::Restore => ops::restore(&env, &action::restore_args(&vars)?),
            Step::Save | Step::Post => match action::save_args(*step, &vars)? {
                action::Post::Skip(reason) => Ok(Outcome::Skipped { reason }),
                action::Post::Save(a) => ops::save(&env, &a),
            },
        },
        Command::Persist(a) => ops::persist(&env, a),
        Command::Attach(a) => ops::attach(&env, a),
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
