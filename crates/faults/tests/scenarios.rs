//! The short forms of the fault scenarios (crates/faults/src/scenarios.rs), each against real
//! processes: `warden server start` replicas over a private PostgreSQL behind HAProxy, two
//! `warden node start` nodes with Docker, a registry. Each test fails with the violated
//! invariants and the history file. Needs root, Docker, PostgreSQL and HAProxy
//! (scripts/prereqs.sh); nothing is skipped when one is missing.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::panic)]

use warden_faults::scenarios::{self, Form};

async fn holds(name: &str) {
    let out = std::env::temp_dir().join("warden-faults-tests");
    let o = scenarios::run(name, Form::Short, &out).await.unwrap();
    assert!(
        o.violations.is_empty(),
        "{name}: {} violation(s):\n{}\nhistory: {}",
        o.violations.len(),
        o.violations
            .iter()
            .map(|v| format!("  {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        o.history.display()
    );
    assert!(
        o.counts.acknowledged > 0 && o.counts.completed > 0,
        "{:?}",
        o.counts
    );
    // The scenario's folder is kept only when it failed (above); it holds logs of every process.
    if let Some(dir) = o.history.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_a_burst_of_creations_loses_nothing() {
    holds("replica-killed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_healed_delivers_every_result_once() {
    holds("link-cut").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_the_replicas_recover_by_themselves() {
    holds("postgres-restarted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_request_and_loses_no_run() {
    holds("rolling-restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_new_runs_with_the_reason_and_recovers() {
    holds("spool-full").await;
}
