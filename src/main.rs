//! kura: cache and workspace verbs for every CI.

use clap::Parser;
use kura::cli::{Cli, Command};
use kura::report::Report;
use kura::{action, ci, key, ops, select, store};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Command::Action { .. } = cli.command {
        action::globals(&mut cli.global);
    }
    let env_vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    let ci = ci::detect(&env_vars);
    let report = Report {
        json: cli.global.json,
        github: ci.provider == ci::Provider::GitHub,
    };
    // Workspaces are not optional the way caches are: their failures fail the job.
    let fatal = matches!(
        cli.command,
        Command::Persist(_) | Command::Attach(_) | Command::Key { .. }
    );
    let strict = cli.global.strict || fatal;
    match run(cli, ci, &report) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            if let Some(u) = e.downcast_ref::<ops::UserError>() {
                report.error(u);
                return ExitCode::from(2);
            }
            // The job's own settings forbid it (GitHub's cache-mode, a read-only token).
            if let Some(s) = e.downcast_ref::<store::Skipped>() {
                report.info(s);
                report.outcome(serde_json::json!({"outcome": "skipped", "reason": s.0}));
                return ExitCode::SUCCESS;
            }
            let msg = format!("{e:#}");
            if strict {
                report.error(&msg);
                report.outcome(serde_json::json!({"outcome": "error", "error": msg}));
                ExitCode::from(1)
            } else {
                report.warn(format!("{msg}\n(the job goes on: a cache failure is not fatal; pass --strict to make it so)"));
                report.outcome(serde_json::json!({"outcome": "error", "error": msg}));
                ExitCode::SUCCESS
            }
        }
    }
}

fn run(cli: Cli, ci: ci::CiInfo, report: &Report) -> anyhow::Result<i32> {
    let g = cli.global;
    let ctx = key::Context::from_process(ci);
    if let Command::Key { templates } = &cli.command {
        for k in ops::render_all(templates, &ctx)? {
            println!("{k}");
        }
        return Ok(0);
    }
    let store = store::open(g.store.as_deref()).map_err(|e| ops::user_error(e.to_string()))?;
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
    let env = ops::Env {
        ctx,
        store,
        report: Report {
            json: report.json,
            github: report.github,
        },
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
            action::Step::Restore => ops::restore(&env, &action::restore_args()),
            action::Step::Save | action::Step::Post => match action::save_args(*step) {
                action::Post::Skip(why) => {
                    env.report.info(why);
                    Ok(0)
                }
                action::Post::Save(a) => ops::save(&env, &a),
            },
        },
        Command::Persist(a) => ops::persist(&env, a),
        Command::Attach(a) => ops::attach(&env, a),
        Command::Ls { prefix } => ops::ls(&env, prefix.as_deref()),
        Command::Rm { key, git_ref } => ops::rm(&env, key, git_ref.as_deref()),
        Command::Prune { max_size, max_age } => {
            ops::prune(&env, max_size.as_deref(), max_age.as_deref())
        }
    }
}
