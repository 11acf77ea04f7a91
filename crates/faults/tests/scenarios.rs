//! The short forms of the fault scenarios (crates/faults/src/scenarios.rs), each against real
//! processes: `warden server start` replicas over a private PostgreSQL behind HAProxy, two
//! `warden node start` nodes with Docker, a registry. Each test fails with the violated
//! invariants and the history file. Needs root, Docker, PostgreSQL, HAProxy and iproute2
//! (`ip netns`, `tc`) with iptables (scripts/prereqs.sh); nothing is skipped when one is missing.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::panic)]

use warden_faults::scenarios::{self, Form};

/// Runs the scenario's short form; the violations (with the history file) when one did not hold.
async fn holds(name: &str) -> Option<String> {
    let out = std::env::temp_dir().join("warden-faults-tests");
    let o = scenarios::run(name, Form::Short, &out).await.unwrap();
    let c = &o.counts;
    eprintln!(
        "{name}: {} attempts, {} acknowledged, {} unknown, {} runs ({} completed, {} refused for space) in {:.1} s",
        c.attempts,
        c.acknowledged,
        c.unknown,
        c.runs,
        c.completed,
        c.refused_for_space,
        o.elapsed.as_secs_f64()
    );
    if o.violations.is_empty() && c.acknowledged > 0 && c.completed > 0 {
        // The scenario's folder is kept only when it failed: it holds every process's log.
        if let Some(dir) = o.history.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        return None;
    }
    Some(format!(
        "{name}: {} violation(s), counts {c:?}:\n{}\nhistory: {}",
        o.violations.len(),
        o.violations
            .iter()
            .map(|v| format!("  {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        o.history.display()
    ))
}

/// The seven scenarios one after the other (each starts a federation of up to eight processes
/// and Docker containers; run side by side on a small machine they would measure the machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_scenario_holds_every_invariant() {
    let mut failed = Vec::new();
    for name in scenarios::SCENARIOS {
        failed.extend(holds(name).await);
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
