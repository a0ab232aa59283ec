//! kura: cache and workspace verbs for every CI. The binary (`main.rs`) parses flags and hands
//! them to the composition root (`app.rs`); everything else lives here, so tests and fuzz
//! targets drive the same code.

// The extractor is built on Unix directory handles (openat, renameat2, O_NOFOLLOW); the
// release targets are Linux and macOS.
#[cfg(not(unix))]
compile_error!(
    "kura runs on Unix (Linux and macOS): its safe extractor needs Unix directory handles"
);

pub mod action;
pub mod app;
pub mod archive;
pub mod chunked;
pub mod ci;
pub mod cli;
pub mod error;
pub mod key;
#[cfg(unix)]
pub mod nofollow;
pub mod ops;
pub mod outcome;
#[cfg(unix)]
pub mod platform;
pub mod random;
pub mod report;
pub mod select;
pub mod settings;
pub mod store;
#[cfg(test)]
mod structure;
pub mod text;
pub mod units;
pub mod vars;
