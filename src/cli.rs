//! Every flag, with its documentation and the environment variable it also reads.

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

/// A chunk size: a power of two from 4 KiB to 1 MiB.
fn chunk_size(s: &str) -> Result<u32, String> {
    let n = crate::units::parse_size(s).map_err(|e| e.to_string())?;
    if !n.is_power_of_two() || !(4 << 10..=1 << 20).contains(&n) {
        return Err(format!("{s} is not a power of two from 4K to 1M"));
    }
    Ok(n as u32)
}

/// Boolean flags read from the environment take 1/0, true/false, yes/no and on/off.
fn boolish() -> BoolishValueParser {
    BoolishValueParser::new()
}

#[derive(Parser, Debug)]
#[command(
    name = "kura",
    version,
    about = "Cache and workspace verbs for every CI: restore, save, persist, attach",
    long_about = "kura restores and saves CI caches under templated keys, and passes files between the \
                  jobs of one workflow run. Archives are tar + zstd; entries live in a store \
                  (a local directory by default).\n\nEvery flag can also be set through the environment \
                  variable shown with it."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Where entries live: file:///DIR, s3://BUCKET/PREFIX, http(s)://HOST/PATH/,
    /// oci://HOST/REPOSITORY or gha:// (default: GitHub's cache inside an action given the
    /// runtime token, else $XDG_CACHE_HOME/kura or ~/.cache/kura).
    #[arg(long, global = true, env = "KURA_STORE")]
    pub store: Option<String>,
    /// Print one JSON object with the outcome on stdout.
    #[arg(long, global = true, env = "KURA_JSON", value_parser = boolish())]
    pub json: bool,
    /// Make store failures fail the command (exit 1) instead of warning.
    #[arg(long, global = true, env = "KURA_STRICT", value_parser = boolish())]
    pub strict: bool,
    /// The scope entries are written to and read from (default: none for the local store).
    #[arg(long, global = true, env = "KURA_SCOPE")]
    pub scope: Option<String>,
    /// Directory archive names are relative to (default: the CI's workspace, else the
    /// current directory).
    #[arg(long, global = true, env = "KURA_BASE_DIR")]
    pub base_dir: Option<std::path::PathBuf>,
    /// Threads for compression, file reads and writes (default: the CPUs available).
    #[arg(long, global = true, env = "KURA_WORKERS")]
    pub workers: Option<u32>,
    /// Keep the chunks of chunked entries in this directory and serve restores from it
    /// before the store (persistent runners).
    #[arg(long, global = true, env = "KURA_CHUNK_CACHE")]
    pub chunk_cache: Option<std::path::PathBuf>,
    /// How big the chunk cache may grow; the least recently used chunks go beyond it.
    #[arg(
        long,
        global = true,
        env = "KURA_CHUNK_CACHE_SIZE",
        default_value = "10G"
    )]
    pub chunk_cache_size: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the key(s) the templates evaluate to.
    Key {
        /// Templates such as 'v1-{{ .Branch }}-{{ checksum "go.sum" }}'.
        #[arg(required = true)]
        templates: Vec<String>,
    },
    /// Restore the newest matching entry into the paths it was saved from.
    Restore(RestoreArgs),
    /// Save paths under a key, unless an entry for the key already exists.
    Save(SaveArgs),
    /// Persist paths under ROOT as this job's layer of the workflow workspace.
    Persist(PersistArgs),
    /// Apply every layer of this workflow's workspace under a directory.
    Attach(AttachArgs),
    /// Print the completions of a shell for kura, e.g.
    /// `kura completions bash > ~/.local/share/bash-completion/completions/kura`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print kura's manual page (roff), e.g. `kura man > ~/.local/share/man/man1/kura.1`.
    Man,
    /// Run one step of the GitHub Action: reads the runner's INPUT_* (path, key,
    /// restore-keys, fail-on-cache-miss, lookup-only, store, scope, compression-level, format,
    /// overwrite, strict; enableCrossOsArchive, upload-chunk-size and save-always are
    /// accepted as actions/cache's) and STATE_* variables.
    Action {
        /// Which step: restore (restore/ and the main step), save (save/) or post.
        #[arg(value_enum)]
        step: Step,
    },
    /// List entries whose key starts with PREFIX, with size, age, version, scope and paths.
    Ls {
        /// Only the entries whose key starts with this (default: all).
        prefix: Option<String>,
    },
    /// Delete every entry with this exact key.
    Rm {
        /// The exact key of the entries to delete.
        key: String,
        /// Only the entries of this scope (GitHub: a ref such as refs/heads/main).
        #[arg(long = "ref")]
        git_ref: Option<String>,
        /// Show what would be deleted, deleting nothing.
        #[arg(long, env = "KURA_DRY_RUN", value_parser = boolish())]
        dry_run: bool,
    },
    /// Delete entries unused for longer than --max-age, then the least recently used until
    /// the store is under --max-size.
    Prune {
        /// Such as 10G, 500M or 1.5GiB: K, M, G and T are powers of 1024.
        #[arg(long, env = "KURA_MAX_SIZE")]
        max_size: Option<String>,
        /// Such as 7d, 12h, 30m, 1.5d or "1d 12h".
        #[arg(long, env = "KURA_MAX_AGE")]
        max_age: Option<String>,
        /// Show what would be deleted, deleting nothing.
        #[arg(long, env = "KURA_DRY_RUN", value_parser = boolish())]
        dry_run: bool,
    },
}

/// One step of the GitHub Action.
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

#[derive(Args, Debug)]
pub struct PathArgs {
    /// Path patterns: ~ expanded, globs, '!' to exclude. Repeat, or separate with newlines.
    /// `restore --keys` may leave them out: entries then go back to the paths they were saved
    /// from, as CircleCI's restore_cache does.
    #[arg(long = "path", env = "KURA_PATH", value_delimiter = '\n')]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The primary key template (GitHub order: exact, then as a prefix).
    #[arg(
        long,
        env = "KURA_KEY",
        conflicts_with = "keys",
        required_unless_present = "keys"
    )]
    pub key: Option<String>,
    /// Fallback key templates, tried in order after --key (exact, then as a prefix).
    #[arg(
        long = "restore-key",
        env = "KURA_RESTORE_KEYS",
        value_delimiter = '\n',
        conflicts_with = "keys"
    )]
    pub restore_keys: Vec<String>,
    /// CircleCI order: every key is a prefix and the newest match wins, even over an exact one.
    #[arg(long, num_args = 1.., env = "KURA_KEYS", value_delimiter = '\n')]
    pub keys: Vec<String>,
    #[command(flatten)]
    pub paths: PathArgs,
    /// Look the entry up without downloading it.
    #[arg(long, env = "KURA_LOOKUP_ONLY", value_parser = boolish())]
    pub lookup_only: bool,
    /// Exit 1 when no entry matches.
    #[arg(long, env = "KURA_FAIL_ON_MISS", value_parser = boolish())]
    pub fail_on_miss: bool,
    /// Show what would be restored, touching nothing.
    #[arg(long, env = "KURA_DRY_RUN", value_parser = boolish())]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// The key template.
    #[arg(long, env = "KURA_KEY")]
    pub key: String,
    /// Path patterns: ~ expanded, globs, '!' to exclude. Repeat, or separate with newlines.
    #[arg(
        long = "path",
        required = true,
        env = "KURA_PATH",
        value_delimiter = '\n'
    )]
    pub paths: Vec<String>,
    /// zstd level, 1 (fastest) to 22.
    #[arg(long, default_value_t = 3, env = "KURA_COMPRESSION_LEVEL", value_parser = clap::value_parser!(i32).range(1..=22))]
    pub compression_level: i32,
    /// Replace an existing entry with the same key instead of skipping the save.
    #[arg(long, env = "KURA_OVERWRITE", value_parser = boolish())]
    pub overwrite: bool,
    /// Show what would be saved, touching nothing.
    #[arg(long, env = "KURA_DRY_RUN", value_parser = boolish())]
    pub dry_run: bool,
    /// archive: one tar + zstd archive, as actions/cache writes; the cheapest to restore, and
    /// most jobs restore. chunked: content-defined chunks in shared packs, so that a save
    /// uploads only what its base entry lacks (local, S3, HTTP and OCI stores; GitHub's cache
    /// saves an archive): for a cache saved on most runs, on a store across a network.
    #[arg(long, value_enum, default_value_t = crate::store::Format::Archive, env = "KURA_FORMAT")]
    pub format: crate::store::Format,
    /// Chunked entries: the average chunk size, a power of two from 4K to 1M (smaller finds
    /// more to reuse when small files change; larger compresses better and lists fewer chunks).
    #[arg(long, default_value = "16K", env = "KURA_CHUNK_SIZE", value_parser = chunk_size)]
    pub chunk_size: u32,
}

#[derive(Args, Debug)]
pub struct PersistArgs {
    /// The directory the paths are relative to.
    #[arg(long, env = "KURA_ROOT")]
    pub root: std::path::PathBuf,
    /// Files, directories or globs relative to --root. Repeat, or separate with newlines.
    #[arg(
        long = "path",
        required = true,
        env = "KURA_PATH",
        value_delimiter = '\n'
    )]
    pub paths: Vec<String>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Show what would be persisted, touching nothing.
    #[arg(long, env = "KURA_DRY_RUN", value_parser = boolish())]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// The directory the workspace is applied under.
    #[arg(long, env = "KURA_AT")]
    pub at: std::path::PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The workflow run (default: from the CI, e.g. CIRCLE_WORKFLOW_ID, GITHUB_RUN_ID).
    #[arg(long, env = crate::settings::WORKFLOW.name)]
    pub workflow: Option<String>,
    /// This job's name (default: from the CI, e.g. CIRCLE_JOB, GITHUB_JOB).
    #[arg(long, env = crate::settings::JOB.name)]
    pub job: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// `kura action --help` names every input the action declares.
    #[test]
    fn the_action_step_help_names_every_input_of_action_yml() {
        let yml =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml")).unwrap();
        let inputs = yml.split("\ninputs:\n").nth(1).unwrap();
        let inputs = inputs.split("\noutputs:").next().unwrap();
        let names: Vec<&str> = inputs
            .lines()
            .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(':'))
            .filter(|n| !n.starts_with(' '))
            .collect();
        assert!(names.len() >= 12, "{names:?}");
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("action")
            .unwrap()
            .render_long_help()
            .to_string()
            .replace(['\n', ' '], "");
        let missing: Vec<&&str> = names.iter().filter(|n| !help.contains(**n)).collect();
        assert!(missing.is_empty(), "kura action --help omits {missing:?}");
    }

    #[test]
    fn every_command_and_argument_has_a_line_of_help() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        for cmd in std::iter::once(&cli).chain(cli.get_subcommands()) {
            if cmd.get_about().is_none() {
                missing.push(format!("command {}", cmd.get_name()));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{} {id}", cmd.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "no help for: {missing:?}");
        let global = cli
            .get_arguments()
            .filter(|a| a.get_help_heading() == Some("Global options"))
            .count();
        assert!(global >= 6, "global options under their own heading");
    }
}
