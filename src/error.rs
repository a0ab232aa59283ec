//! The errors of kura's own making that cross layers. Bad input is one kind: whichever layer
//! finds it (a template, a pattern, a flag, a store URL), the job exits 2.

/// Bad input: a template, a path pattern, a flag, a store URL. Exit 2, whatever `--strict`
/// says.
#[derive(Debug, PartialEq)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

pub fn user_error(msg: impl Into<String>) -> anyhow::Error {
    UserError(msg.into()).into()
}
