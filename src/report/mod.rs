//! What kura tells the user: log lines on stderr (with GitHub annotations when on GitHub),
//! machine output (keys, listings, `--json`) on stdout, and on GitHub the step's outputs,
//! state and summary row (`github.rs`). `progress.rs` prints transfer progress, `units.rs`
//! reads and writes sizes and durations.

mod github;
mod progress;

pub use progress::{Progress, Ticker};

use crate::outcome::Outcome;
use crate::settings;
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
    /// `warning:` and `error:` in colour: only on a terminal, never in CI or with NO_COLOR.
    colour: bool,
    /// Progress as an in-place bar: stderr is a terminal and this is not a CI log.
    pub tty: bool,
}

impl Report {
    pub fn new(json: bool, github: bool, vars: &Vars) -> Report {
        let secs = vars
            .get(settings::PROGRESS_SECONDS.name)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(10.0);
        let path = |k: &str| vars.get(k).map(PathBuf::from);
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal()
            && vars.get("CI").is_none()
            && vars.get("TERM") != Some("dumb");
        let colour = tty && vars.get("NO_COLOR").is_none();
        Report {
            json,
            github,
            colour,
            tty,
            progress: crate::units::seconds(secs).filter(|d| !d.is_zero()),
            files: github::Files {
                output: path("GITHUB_OUTPUT"),
                state: path("GITHUB_STATE"),
                summary: path("GITHUB_STEP_SUMMARY"),
            },
        }
    }

    pub fn info(&self, msg: impl Display) {
        eprintln!("{}", shown(msg));
    }

    /// On GitHub a `::warning::` annotation (the whole message, escaped as the runner
    /// requires), elsewhere `warning: ...`.
    pub fn warn(&self, msg: impl Display) {
        let msg = shown(msg);
        if self.github {
            eprintln!("::warning::{}", annotation(&msg.to_string()));
        } else if self.colour {
            eprintln!("\x1b[1;33mwarning\x1b[0m: {msg}");
        } else {
            eprintln!("warning: {msg}");
        }
    }

    pub fn error(&self, msg: impl Display) {
        let msg = shown(msg);
        if self.github {
            eprintln!("::error::{}", annotation(&msg.to_string()));
        } else if self.colour {
            eprintln!("\x1b[1;31merror\x1b[0m: {msg}");
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

/// Most bytes of one message: a server's 8 MB error page is cut, not logged whole.
const MAX_MESSAGE: usize = 16 << 10;

/// Every message may quote text from a store, a server or an archive: bounded, control
/// characters escaped, and no line of it a workflow command.
fn shown(msg: impl Display) -> String {
    crate::text::message(&msg.to_string(), MAX_MESSAGE)
}

/// A workflow command's data as the runner reads it: `%`, CR and LF escaped, so that a `%2F`
/// in a URL stays `%2F` and a multi-line message stays one annotation.
pub fn annotation(msg: &str) -> String {
    msg.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    #[test]
    fn annotations_escape_what_the_runner_would_decode() {
        // The runner's own escaping (actions/toolkit core/src/command.ts escapeData).
        assert_eq!(
            super::annotation("s3://b/a%2Fb\r\nsecond line"),
            "s3://b/a%252Fb%0D%0Asecond line"
        );
    }
}
