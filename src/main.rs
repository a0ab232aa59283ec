//! kura: cache and workspace verbs for every CI. This file parses the flags; the library's
//! composition root (`app.rs`) does the rest.

use clap::FromArgMatches;
use kura::cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    // CI configurations pass settings as `KURA_X: ${{ inputs.x }}`, which is empty when the
    // input is: an empty setting is no setting, not a bad value. Nothing else runs yet.
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_str().is_some_and(|n| n.starts_with("KURA_")) {
            std::env::remove_var(name);
        }
    }
    let cli =
        Cli::from_arg_matches(&kura::app::command().get_matches()).unwrap_or_else(|e| e.exit());
    ExitCode::from(kura::app::run(cli, kura::vars::Vars::from_process()))
}
