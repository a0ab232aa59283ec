//! What kura tells the user: log lines on stderr (with GitHub annotations when on GitHub),
//! machine output (keys, listings, `--json`) on stdout, and on GitHub the step's outputs,
//! state and summary row (`github.rs`). `progress.rs` prints transfer progress, `units.rs`
//! reads and writes sizes and durations.

mod github;
mod progress;
mod units;

pub use progress::Ticker;
pub use units::{human, parse_duration, parse_size, size, speed};

use crate::outcome::Outcome;
use crate::vars::Vars;
use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone)]
pub struct Report {
    pub json: bool,
    pub github: bool,
    /// Seconds between progress lines (`KURA_PROGRESS_SECONDS`, default 10; 0: none).
    pub progress: Option<Duration>,
    /// The runner's files for step outputs, state and the job summary.
    files: github::Files,
}

impl Report {
    pub fn new(json: bool, github: bool, vars: &Vars) -> Report {
        let secs = vars
            .get("KURA_PROGRESS_SECONDS")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(10.0);
        let path = |k: &str| vars.get(k).map(PathBuf::from);
        Report {
            json,
            github,
            progress: (secs > 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs)),
            files: github::Files {
                output: path("GITHUB_OUTPUT"),
                state: path("GITHUB_STATE"),
                summary: path("GITHUB_STEP_SUMMARY"),
            },
        }
    }

    pub fn info(&self, msg: impl Display) {
        eprintln!("{msg}");
    }

    pub fn warn(&self, msg: impl Display) {
        if self.github {
            // Annotations are one line; the rest of a message stays in the log.
            let msg = msg.to_string();
            let (first, rest) = msg.split_once('\n').unwrap_or((&msg, ""));
            eprintln!("::warning::{first}");
            if !rest.is_empty() {
                eprintln!("{rest}");
            }
        } else {
            eprintln!("warning: {msg}");
        }
    }

    pub fn error(&self, msg: impl Display) {
        if self.github {
            eprintln!("::error::{msg}");
        } else {
            eprintln!("error: {msg}");
        }
    }

    /// The end of a command: on GitHub the step's outputs, state and summary; with `--json`
    /// the outcome object on stdout.
    pub fn finish(&self, outcome: &Outcome) {
        if self.github {
            if let Err(e) = github::talk_back(outcome, &self.files) {
                self.warn(format!("cannot write the step's outputs or summary: {e}"));
            }
        }
        if self.json {
            match serde_json::to_string(outcome) {
                Ok(s) => println!("{s}"),
                Err(e) => self.warn(format!("cannot print the outcome as JSON: {e}")),
            }
        }
    }
}
