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

/// What a store answers when it does not do what was asked. Stores, packs and uploads return
/// it; the verbs match on it, and the composition root turns it into an outcome. Everything
/// but `Failed` is a kind a caller acts on; `Failed` carries the reason with its context.
#[derive(Debug)]
pub enum StoreError {
    /// The entry, pack or object is not there (or no longer).
    NotFound(String),
    /// An entry with this key, version and scope exists, or is being saved.
    Exists,
    /// The store will not do this for this job, by the job's own settings (GitHub's
    /// cache-mode, a read-only token): information, never a failure.
    Skipped(String),
    /// The service refused the request (not a transient failure): its HTTP status, the
    /// service's error code if it gave one, and what to tell the user.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// Anything else: the network, a disk, a reply kura cannot read.
    Failed(anyhow::Error),
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

impl StoreError {
    pub fn refused(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Refused {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// The store error an adapter raised beneath the context its helpers added, if any. An
    /// adapter's helpers speak `anyhow` (for context); this is how a kind raised deep inside
    /// one reaches the adapter's edge.
    pub fn within(e: &anyhow::Error) -> Option<&StoreError> {
        e.downcast_ref::<StoreError>()
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound(m) | StoreError::Skipped(m) => f.write_str(m),
            StoreError::Exists => f.write_str("an entry with this key already exists"),
            StoreError::Refused { message, .. } => f.write_str(message),
            StoreError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

// `Failed` shows its whole chain in its own message: no source, or it would print twice.
impl std::error::Error for StoreError {}

/// An adapter's `anyhow` error at its edge: the store error raised inside it, or a failure.
impl From<anyhow::Error> for StoreError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<StoreError>() {
            Ok(s) => s,
            Err(e) => StoreError::Failed(e),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Failed(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_kind_raised_inside_an_adapter_reaches_its_edge_typed() {
        let deep: anyhow::Result<()> =
            Err(StoreError::refused(403, "DENIED", "no push rights").into());
        let e = deep.context("push a pack").context("save").unwrap_err();
        match StoreError::from(e) {
            StoreError::Refused { status, code, .. } => {
                assert_eq!((status, code.as_str()), (403, "DENIED"))
            }
            other => panic!("not a refusal: {other:?}"),
        }
        let io: anyhow::Result<()> = Err(std::io::Error::other("disk full").into());
        let e = StoreError::from(io.context("write the archive").unwrap_err());
        assert!(matches!(e, StoreError::Failed(_)), "{e:?}");
        // The chain is shown once, whole.
        assert_eq!(e.to_string(), "write the archive: disk full");
        let wrapped = anyhow::Error::from(e).context("saving");
        assert_eq!(
            format!("{wrapped:#}"),
            "saving: write the archive: disk full"
        );
    }

    #[test]
    fn a_skip_survives_the_verbs_context() {
        let e = anyhow::Error::from(StoreError::Skipped("cache-mode forbids writes".into()))
            .context("while saving key k");
        assert!(
            matches!(StoreError::within(&e), Some(StoreError::Skipped(m)) if m == "cache-mode forbids writes")
        );
        let plain = anyhow::anyhow!("network down");
        assert!(StoreError::within(&plain).is_none());
    }
}
