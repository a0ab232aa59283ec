//! kura: cache and workspace verbs for every CI. The binary (`main.rs`) parses flags and runs
//! one verb; everything else lives here, so tests and fuzz targets drive the same code.

pub mod action;
pub mod archive;
pub mod ci;
pub mod cli;
pub mod key;
pub mod ops;
pub mod outcome;
pub mod report;
pub mod select;
pub mod store;
pub mod vars;
