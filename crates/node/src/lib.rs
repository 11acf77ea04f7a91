//! The Warden node: a data owner's station. It connects out to the coordination server, takes
//! each run through the trust chain ([`admission`]), runs admitted images hardened
//! (warden-runtime) within its run [`slots`], offers the algorithm a narrow [`proxy`], seals results for the requesting
//! organization, spools them until the server acknowledges them, and records every decision and
//! run in its audit log. docs/node.md is the operator's reference.

#![forbid(unsafe_code)]

pub mod admission;
pub mod airlock;
pub mod approvals;
pub mod binding;
pub mod budget;
pub mod config;
pub mod images;
pub mod inspect;
mod jsonl;
pub mod local;
pub mod metrics;
pub mod node;
pub mod orgs;
pub mod proxy;
pub mod replay;
pub mod server;
pub mod slots;
pub mod spool;
pub mod stores;
pub mod unix;
pub mod vantage6;

pub use node::{Node, StartError};

/// The isolation probe the node runs at start when `[node] probe` names no other: a static build
/// of algorithms/hostile/probe.c made by this crate's build script.
pub const EMBEDDED_PROBE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe"));

/// How the node's status names the built-in probe: `built-in (sha256:...)`.
pub fn embedded_probe_name() -> String {
    use sha2::Digest;
    format!(
        "built-in (sha256:{})",
        hex::encode(sha2::Sha256::digest(EMBEDDED_PROBE))
    )
}
