//! Warden under faults: a harness that starts real processes (server replicas over one
//! PostgreSQL behind HAProxy, nodes with Docker, a registry), does real faults to them
//! (SIGKILL, SIGSTOP, a cut link, a slow and lossy link, PostgreSQL crashed and restarted,
//! rolling restarts, a full spool disk), records a history of what clients asked and were answered and what the servers and
//! the nodes' audit logs hold at the end, and checks the invariants on that history
//! ([`history::check`]). The scenarios are in [`scenarios`]; `scripts/soak` runs them for an
//! operator, `tests/scenarios.rs` runs their short forms. See docs/operations.md.
//!
//! Needs root (a private PostgreSQL run as the `postgres` user, a tmpfs mount, a network
//! namespace with a veth pair, `tc` and `iptables` in it), the Docker engine, PostgreSQL,
//! HAProxy and iproute2 installed (scripts/prereqs.sh).

pub mod delay;
pub mod history;
pub mod procs;
pub mod scenarios;
pub mod world;
