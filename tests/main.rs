//! Every integration test but those that measure memory (`memory.rs`), in one binary: the
//! support code is compiled once, and the servers it starts (Garage, nginx, docker-registry,
//! the GitHub cache stand-in) are started once for all the tests that use them.

#[path = "support/hostile.rs"]
mod hostile;
#[path = "support/snapshot.rs"]
mod snapshot;
mod support;

mod action;
mod cache;
mod chunked;
mod compat;
mod contract;
mod damage;
mod extract;
mod extract_oracle;
mod first_hour;
mod flaky;
mod gha;
mod gha_interop;
mod gitlab;
mod http;
mod interrupt;
mod oci;
mod orb;
mod promises;
mod release;
mod runner;
mod s3;
mod shapes;
mod static_binary;
mod unread;
mod workspace;
