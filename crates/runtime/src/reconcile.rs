//! After a node crash: find the node's containers by label, settle each, leave none behind.

use std::path::PathBuf;

use crate::engine::{ContainerState, Engine, EngineError};
use crate::output::{collect_output, overflow, remove_all_entries, remove_extra_entries};
use crate::run::{
    FailureReason, LABEL_NODE, LABEL_OUTPUT_CAP, LABEL_RUN, OUTPUT_MOUNT, Outcome, RunReport,
    judge, remove,
};

/// Settles every container of `node_id`:
/// - exited: its outcome is judged as a normal run's (exit code, OOM, output cap from the
///   container's label) and its output read from its output mount;
/// - running (or paused, restarting): killed, reported failed with "node restarted while the run
///   was executing";
/// - created but never started: reported failed "node restarted before the run started".
///
/// Every container is removed. The error is returned only when the engine cannot list
/// containers; a container that cannot be removed is reported with `removed: false`.
pub async fn reconcile<E: Engine + ?Sized>(
    engine: &E,
    node_id: &str,
    log_tail_bytes: usize,
) -> Result<Vec<RunReport>, EngineError> {
    let ids = engine.list_containers(LABEL_NODE, node_id).await?;
    let mut reports = Vec::with_capacity(ids.len());
    for id in ids {
        // A sidecar is removed, never reported as a run.
        if engine
            .inspect_container(&id)
            .await
            .is_ok_and(|i| i.labels.contains_key(crate::LABEL_SIDECAR))
        {
            let removed = remove(engine, &id).await;
            tracing::info!(container = %id, removed, "reconciled a sidecar");
            continue;
        }
        let report = settle(engine, &id, log_tail_bytes).await;
        tracing::info!(container = %id, run = %report.run_id, outcome = ?report.reason().map(ToString::to_string), removed = report.removed, "reconciled");
        reports.push(report);
    }
    Ok(reports)
}

async fn settle<E: Engine + ?Sized>(engine: &E, id: &str, log_tail_bytes: usize) -> RunReport {
    let info = match engine.inspect_container(id).await {
        Ok(info) => info,
        Err(e) => {
            let removed = remove(engine, id).await;
            return RunReport {
                run_id: String::new(),
                outcome: Outcome::Failed {
                    reason: FailureReason::Engine(e.to_string()),
                },
                exit_code: None,
                logs: Vec::new(),
                removed,
            };
        }
    };
    let run_id = info.labels.get(LABEL_RUN).cloned().unwrap_or_default();
    let output_dir: Option<PathBuf> = info
        .mounts
        .iter()
        .find(|(_, dest)| dest == OUTPUT_MOUNT)
        .map(|(src, _)| src.clone());
    let cap: Option<u64> = info
        .labels
        .get(LABEL_OUTPUT_CAP)
        .and_then(|c| c.parse().ok());
    let mut logs = Vec::new();
    let outcome = match &info.state {
        ContainerState::Created => Outcome::Failed {
            reason: FailureReason::NeverStarted,
        },
        ContainerState::Exited => {
            logs = engine
                .logs_tail(id, log_tail_bytes)
                .await
                .unwrap_or_default();
            match (output_dir.as_deref(), cap) {
                (Some(dir), Some(cap)) => {
                    match judge(info.oom_killed, overflow(dir, cap), info.exit_code) {
                        Some(reason) => Outcome::Failed { reason },
                        None => Outcome::Completed { output: Vec::new() },
                    }
                }
                _ => Outcome::Failed {
                    reason: FailureReason::Engine(
                        "the container has no output mount or output cap label".into(),
                    ),
                },
            }
        }
        ContainerState::Running | ContainerState::Other(_) => {
            if let Err(e) = engine.kill_container(id).await {
                tracing::warn!(container = %id, error = %e, "kill during reconciliation failed");
            }
            Outcome::Failed {
                reason: FailureReason::NodeRestarted,
            }
        }
    };
    let removed = remove(engine, id).await;
    let outcome = match (outcome, output_dir.as_deref(), cap) {
        (Outcome::Completed { .. }, Some(dir), Some(cap)) => match collect_output(dir, cap) {
            Ok(output) => {
                remove_extra_entries(dir);
                Outcome::Completed { output }
            }
            Err(p) => {
                remove_all_entries(dir);
                Outcome::Failed { reason: p.into() }
            }
        },
        (outcome, dir, _) => {
            if let Some(dir) = dir {
                remove_all_entries(dir);
            }
            outcome
        }
    };
    RunReport {
        run_id,
        outcome,
        exit_code: info.exit_code,
        logs,
        removed,
    }
}
