//! The key template language: `v1-{{ .Branch }}-{{ checksum "go.sum" }}`.
//!
//! A subset of Go's `text/template` (what CircleCI evaluates), with `{{ }}` and `<< >>` as
//! interchangeable delimiters. An action is either a variable (`.Branch`, `.Environment.NAME`)
//! or a function call with string arguments (`checksum "a" "b"`). Errors carry the template
//! and the column so that a user can fix a key from the log line alone.

mod funcs;
mod parse;

use crate::ci::CiInfo;
use std::collections::HashMap;
use std::path::PathBuf;

pub use parse::{parse, Action, Arg, Part};

/// The longest key any store accepts (GitHub's limit; CircleCI allows 900).
pub const MAX_KEY_LEN: usize = 512;

/// Everything a template may read. Built once per run from the detected CI.
pub struct Context {
    pub ci: CiInfo,
    pub env: HashMap<String, String>,
    /// Where relative `checksum` paths start (CircleCI: the working directory).
    pub cwd: PathBuf,
    /// Where `hashFiles` patterns start and which files it may read (GitHub: the workspace).
    pub workspace: PathBuf,
    pub home: Option<PathBuf>,
    pub now_epoch: u64,
    /// What rendering noticed but is not an error (a `hashFiles` that matched nothing),
    /// for the caller to report.
    pub notes: std::sync::Mutex<Vec<String>>,
}

impl Context {
    pub fn new(ci: CiInfo, vars: &crate::vars::Vars) -> Context {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Context {
            workspace: ci.workspace.clone().unwrap_or_else(|| cwd.clone()),
            ci,
            env: vars.all().clone(),
            cwd,
            home: vars.home(),
            now_epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            notes: Default::default(),
        }
    }

    /// The notes gathered since the last call.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A template error: which template, where, what went wrong and how to fix it.
#[derive(Debug)]
pub struct TemplateError {
    pub template: String,
    /// 1-based column (in characters) of the action at fault.
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key template {:?}, column {}: {}",
            self.template, self.column, self.message
        )
    }
}

impl std::error::Error for TemplateError {}

/// Evaluate a template into a key, checking the limits every store shares.
pub fn render(template: &str, ctx: &Context) -> Result<String, TemplateError> {
    let parts = parse(template)?;
    let mut out = String::new();
    for part in &parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Action { column, action } => {
                let value = funcs::eval(action, ctx).map_err(|message| TemplateError {
                    template: template.to_string(),
                    column: *column,
                    message,
                })?;
                out.push_str(&value);
            }
        }
    }
    check_key(&out).map_err(|message| TemplateError {
        template: template.to_string(),
        column: 1,
        message,
    })?;
    Ok(out)
}

/// The rules a rendered key must follow (GitHub's, the strictest of the stores).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty; give a non-empty key".into());
    }
    let n = key.chars().count();
    if n > MAX_KEY_LEN {
        return Err(format!(
            "the key is {n} characters long, over the limit of {MAX_KEY_LEN}; shorten the fixed text or hash long parts with checksum"
        ));
    }
    if key.contains(',') {
        return Err("the key contains a comma, which the GitHub cache service forbids; use '-' or '_' instead".into());
    }
    if key.chars().any(|c| c.is_control()) {
        return Err("the key contains a control character (newline, tab, ...); remove it".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
