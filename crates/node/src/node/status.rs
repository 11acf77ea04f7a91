//! `warden node status`: what the node tracks about itself, gathered for the local socket
//! (`GET /v1/status`). Nothing here changes the node.

use warden_api::local as wire;

use super::{AUDIT_UNAVAILABLE, Node};
use crate::local::LocalError;

impl Node {
    /// The node's health and what it holds; `healthy` is false when its audit log cannot be
    /// written or the server did not answer the last exchange.
    pub(crate) fn local_status(&self) -> Result<wire::Status, LocalError> {
        let s = &self.inner;
        let pending = self.local_pending()?;
        let (in_flight, queued) = {
            let active = s.active.lock().unwrap_or_else(|p| p.into_inner());
            let queued = s.queued.lock().unwrap_or_else(|p| p.into_inner());
            (
                active
                    .iter()
                    .filter(|r| !queued.contains(r))
                    .copied()
                    .collect::<Vec<_>>(),
                queued.iter().copied().collect::<Vec<_>>(),
            )
        };
        let contact = s.server.contact();
        let server = wire::ServerStatus {
            url: s.server.base().to_owned(),
            connected: contact.connected,
            event_push: s.push_connected.load(std::sync::atomic::Ordering::SeqCst),
            last_contact: contact.last_ok,
            last_error: contact
                .last_error
                .map(|(at, message)| wire::ContactError { at, message }),
        };
        let policy = s.gate.policy();
        let audit = self.audit_status();
        let mut problems = Vec::new();
        if let Some(p) = &audit.problem {
            problems.push(p.clone());
        }
        if !server.connected {
            problems.push(match &server.last_error {
                Some(e) => format!("the server is unreachable: {}", e.message),
                None => "the server has not answered yet".to_owned(),
            });
        }
        Ok(wire::Status {
            healthy: problems.is_empty(),
            problems,
            node: wire::NodeStatus {
                node_id: s.me.node_id,
                organization: s.organization.clone(),
                organization_id: s.me.organization_id,
                collaboration_id: s.me.collaboration_id,
                label: s.label.clone(),
                started_at: s.started_at,
            },
            server,
            policy: wire::PolicyStatus {
                file: s.config.node.policy.display().to_string(),
                sha256: s.gate.policy_sha256().to_owned(),
                version: warden_policy::SUPPORTED_VERSION,
                allow_rules: policy.allow_rules().len(),
                deny_rules: policy.deny_rules().len(),
            },
            runs: wire::RunsStatus {
                in_flight: wire::RunSet::of(in_flight),
                queued: wire::RunSet::of(queued),
                held_results: wire::RunSet::of(pending.results.iter().map(|r| r.run_id).collect()),
                awaiting_approval: wire::RunSet::of(
                    pending.approvals.iter().map(|a| a.run_id).collect(),
                ),
                concurrent_runs: s.config.limits.concurrent_runs,
            },
            self_check: wire::SelfCheckStatus {
                passed: true,
                at: s.self_check_at,
                probe: match &s.config.node.probe {
                    Some(path) => path.display().to_string(),
                    None => crate::embedded_probe_name(),
                },
            },
            audit,
        })
    }

    /// Writable when the last append succeeded and the log file opens for writing now, as the
    /// node opens it again after a failed write.
    fn audit_status(&self) -> wire::AuditStatus {
        let s = &self.inner;
        let state = s.audit.lock().unwrap_or_else(|p| p.into_inner());
        let log = state.log.as_ref();
        let problem = if state.failed || log.is_none() {
            Some(format!(
                "{AUDIT_UNAVAILABLE}: its last write failed; no run starts or is delivered until \
                 it can be written (the node's log says why)"
            ))
        } else {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&s.audit_path)
                .err()
                .map(|e| {
                    format!(
                        "{AUDIT_UNAVAILABLE}: {} cannot be opened for writing ({e}); the next \
                         failed write stops every run",
                        s.audit_path.display()
                    )
                })
        };
        wire::AuditStatus {
            path: s.audit_path.display().to_string(),
            writable: problem.is_none(),
            problem,
            entries: log.map(|l| l.entries()),
            uncovered: log.map(|l| l.uncovered()),
            last_checkpoint_at: log
                .and_then(|l| l.last_checkpoint_at())
                .map(|t| t.unix_timestamp()),
        }
    }
}
