//! Delivery of spooled outcomes (idempotent, retried while the server is away) and recovery of
//! what a previous process left.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use warden_api::{self as api, RunState};
use warden_audit::{Event as AuditEvent, Outcome as AuditOutcome, Record};

use super::Node;
use super::execute::outcome_of;
use crate::server::ServerError;
use crate::spool::{Final, Phase, RunRecord};

impl Node {
    /// After a restart: settle leftover containers (collect finished outputs, fail the rest),
    /// finish or fail every run the spool knows, remove leftover working directories, deliver.
    pub async fn recover(&self) {
        let s = &self.inner;
        let reports = match warden_runtime::reconcile(
            &s.engine,
            &s.label,
            warden_runtime::DEFAULT_LOG_TAIL_BYTES,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot list this node's containers to reconcile");
                Vec::new()
            }
        };
        let mut by_run: BTreeMap<i64, warden_runtime::RunReport> = BTreeMap::new();
        for r in reports {
            if let Some(id) = r.run_id.strip_prefix("run-").and_then(|i| i.parse().ok()) {
                by_run.insert(id, r);
            }
        }
        // Nothing saves yet: the directories a crash left without a record can go.
        match s.spool.prune_unrecorded() {
            Ok(0) => {}
            Ok(n) => tracing::info!(directories = n, "removed run directories without a record"),
            Err(e) => tracing::error!(error = %e, "cannot prune the spool"),
        }
        let records = match s.spool.records() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool");
                Vec::new()
            }
        };
        for mut record in records {
            match record.phase {
                Phase::Finished => {}
                Phase::Running => {
                    let outcome = match by_run.remove(&record.run_id) {
                        Some(report) => {
                            self.keep_logs(record.run_id, &report);
                            outcome_of(&report)
                        }
                        None => Err("node restarted while the run was executing".to_owned()),
                    };
                    let mut closing = settled_record(&record);
                    self.finish(&mut record, outcome, Some(&mut closing)).await;
                }
                // The airlock's waits outlive a restart: the sweep reports them, refuses those
                // that waited too long, and takes again the runs approved meanwhile.
                Phase::AwaitingRelease => {}
                Phase::AwaitingApproval => {
                    let digest = record.digest.clone().unwrap_or_default();
                    if s.approved.is_approved(&digest) {
                        self.resume(record);
                    }
                }
                Phase::Received | Phase::Admitted => {
                    let mut closing = settled_record(&record);
                    self.finish(
                        &mut record,
                        Err("node restarted before the run started".to_owned()),
                        Some(&mut closing),
                    )
                    .await;
                }
            }
        }
        for (run, report) in by_run {
            tracing::warn!(run, outcome = ?report.reason().map(ToString::to_string), "a container without a spool record was removed");
        }
        for run in s.spool.work_runs() {
            s.spool.remove_work(run);
        }
        self.deliver_pending().await;
    }

    pub(super) async fn save_and_deliver(&self, record: RunRecord) {
        let m = &self.inner.metrics;
        match &record.outcome {
            Some(Final::Completed) => crate::metrics::Metrics::inc(&m.runs_completed),
            Some(Final::Failed { .. }) => crate::metrics::Metrics::inc(&m.runs_failed),
            Some(Final::Rejected { .. }) => crate::metrics::Metrics::inc(&m.runs_rejected),
            None => {}
        }
        if let Err(e) = self.inner.spool.save(&record) {
            tracing::error!(run = record.run_id, error = %e, "cannot spool the outcome");
        }
        if let Err(e) = self.deliver(&record).await {
            tracing::warn!(run = record.run_id, error = %e, "delivery postponed; the outcome stays in the spool");
        }
    }

    /// Delivers every finished run in the spool that is not being handled now.
    pub async fn deliver_pending(&self) {
        let s = &self.inner;
        let Ok(records) = s.spool.records() else {
            return;
        };
        for r in records {
            if r.phase != Phase::Finished {
                continue;
            }
            let busy = s
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&r.run_id);
            if busy {
                continue;
            }
            if let Err(e) = self.deliver(&r).await {
                tracing::debug!(run = r.run_id, error = %e, "delivery postponed");
                if e.is_transient() {
                    return;
                }
            }
        }
    }

    /// Delivers one finished run now; whether it reached the server.
    pub(super) async fn deliver_now(&self, record: &RunRecord) -> bool {
        match self.deliver(record).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(run = record.run_id, error = %e, "delivery postponed; the outcome stays in the spool");
                false
            }
        }
    }

    /// Reports a finished run to the server (idempotent), then forgets it.
    async fn deliver(&self, record: &RunRecord) -> Result<(), ServerError> {
        let s = &self.inner;
        let Some(outcome) = &record.outcome else {
            return Ok(());
        };
        let run = s.server.run(record.run_id).await?;
        if run.state.is_final() {
            if !matches!(
                (outcome, run.state),
                (Final::Completed, RunState::Completed)
                    | (Final::Failed { .. }, RunState::Failed)
                    | (Final::Rejected { .. }, RunState::Rejected)
            ) {
                tracing::warn!(run = record.run_id, server_state = %run.state, ?outcome, "the server already holds another final state");
            }
            let _ = s.spool.remove(record.run_id);
            return Ok(());
        }
        // Released logs go up before the final state, while the server still takes them.
        if matches!(outcome, Final::Completed | Final::Failed { .. })
            && matches!(run.state, RunState::Running | RunState::AwaitingRelease)
        {
            self.deliver_logs(record.run_id).await?;
        }
        let update = match outcome {
            Final::Completed => {
                // Running, or awaiting release when its owner released it.
                if !matches!(run.state, RunState::Running | RunState::AwaitingRelease) {
                    api::UpdateRun {
                        state: RunState::Failed,
                        reason: Some(
                            "the run completed but the server did not record it as running".into(),
                        ),
                        digest: None,
                    }
                } else {
                    if !run.has_result {
                        let sealed = s.spool.result(record.run_id).map_err(|e| {
                            ServerError::Client(format!("the spooled result is unreadable: {e}"))
                        })?;
                        s.server.put_result(record.run_id, &sealed).await?;
                    }
                    api::UpdateRun {
                        state: RunState::Completed,
                        reason: None,
                        digest: None,
                    }
                }
            }
            Final::Failed { reason } => api::UpdateRun {
                state: RunState::Failed,
                reason: Some(reason.clone()),
                digest: None,
            },
            Final::Rejected { reason } => {
                let state = if run.state.can_become(RunState::Rejected) {
                    RunState::Rejected
                } else {
                    RunState::Failed
                };
                api::UpdateRun {
                    state,
                    reason: Some(reason.clone()),
                    digest: None,
                }
            }
        };
        s.server.update(record.run_id, &update).await?;
        tracing::info!(run = record.run_id, state = %update.state, "outcome delivered");
        let _ = s.spool.remove(record.run_id);
        Ok(())
    }
}

impl Node {
    /// Uploads a run's sealed logs, if they were released. A refusal other than the server
    /// being away is logged and does not hold back the run's outcome.
    async fn deliver_logs(&self, run_id: i64) -> Result<(), ServerError> {
        let s = &self.inner;
        let sealed = match s.spool.sealed_logs(run_id) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::error!(run = run_id, error = %e, "the spooled sealed logs are unreadable; not delivered");
                return Ok(());
            }
        };
        match s.server.put_logs(run_id, &sealed).await {
            Ok(()) => {
                tracing::info!(run = run_id, bytes = sealed.len(), "sealed logs delivered");
                Ok(())
            }
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                tracing::warn!(run = run_id, error = %e, "the server refused the sealed logs; they are not delivered");
                Ok(())
            }
        }
    }
}

/// The closing audit record of a run settled after a restart, from what the spool kept (who
/// asked and the function are in the run's admission record); the outcome is filled in by
/// `finish`, which delivers nothing unless this record is written.
fn settled_record(record: &RunRecord) -> Record {
    Record {
        time: OffsetDateTime::now_utc(),
        event: AuditEvent::Run,
        run_id: Some(record.run_id),
        task_id: Some(record.task_id),
        organization: None,
        user: None,
        collaboration: None,
        function: None,
        image: record.image.clone(),
        digest: record.digest.clone(),
        rule: None,
        signers: Vec::new(),
        input_sha256: None,
        output_sha256: None,
        outcome: AuditOutcome::Failed,
        reason: None,
        by: None,
        approvals: Vec::new(),
    }
}
