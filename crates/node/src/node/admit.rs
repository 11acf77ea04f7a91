//! Steps 1 to 6 of the trust chain for one run, with the input's binding: the server's word is
//! only a request, checked against what the sealed input proves.

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use warden_api::{self as api, RunState};
use warden_audit::{Event as AuditEvent, Outcome as AuditOutcome, Record};
use warden_policy::Requester;

use super::{AUDIT_UNAVAILABLE, Collab, Node, RunTiming, sanitize, sha256_hex};
use crate::admission::{Admitted, Rejection};
use crate::binding::{self, Here, ServerClaims, quote};
use crate::budget::Spent;
use crate::replay::Seen;
use crate::server::ServerError;
use crate::slots::RunSlot;
use crate::spool::{Final, Phase, RunRecord};

impl Node {
    /// One run, from the event to the spooled outcome.
    pub(super) async fn handle(
        &self,
        run_id: i64,
        event_image: Option<String>,
        received: Instant,
        slot: RunSlot,
        resumed: Option<RunRecord>,
    ) {
        let s = &self.inner;
        let run = match s.server.run(run_id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(run = run_id, error = %e, "cannot read the run; it is retried on the next catch-up");
                return;
            }
        };
        // A run that waited for its digest's approval is taken again from the start of the
        // trust chain; the server shows it awaiting approval (or still pending, when that
        // report did not reach it).
        let waiting_since = match &resumed {
            Some(r) if run.state == RunState::AwaitingApproval => Some(
                r.waiting_since
                    .unwrap_or_else(|| OffsetDateTime::now_utc().unix_timestamp()),
            ),
            Some(_) if run.state == RunState::Pending => None,
            Some(_) => {
                tracing::warn!(run = run_id, state = %run.state, "a run that waited for approval is no longer waiting at the server; forgotten");
                let _ = s.spool.remove(run_id);
                return;
            }
            None if run.state != RunState::Pending => return,
            None => None,
        };
        if run.organization_id != s.me.organization_id
            || run.collaboration_id != s.me.collaboration_id
        {
            tracing::warn!(
                run = run_id,
                "the server sent a run of another organization; ignored"
            );
            return;
        }
        // Acknowledge delivery without waiting: the run's state is what matters.
        let server = s.server.clone();
        tokio::spawn(async move {
            if let Err(e) = server.ack(run_id).await {
                tracing::debug!(run = run_id, error = %e, "ack failed");
            }
        });
        let task = match s.server.task(run.task_id).await {
            Ok(t) => t.task,
            Err(e) => {
                tracing::warn!(run = run_id, error = %e, "cannot read the task");
                return;
            }
        };
        let mut record = RunRecord::received(
            run_id,
            task.id,
            run.collaboration_id,
            task.organization_id,
            &task.image,
        );
        record.waiting_since = waiting_since;
        let spool_full = match s.spool.save(&record) {
            Ok(()) => false,
            Err(e) if e.is_no_space() => {
                tracing::error!(run = run_id, error = %e, "the spool disk is full; refusing the run");
                true
            }
            Err(e) => {
                tracing::error!(run = run_id, error = %e, "cannot record the run; not taking it");
                return;
            }
        };
        // Who asks is filled in once it is known: proven from the sealed input, or in plaintext
        // mode the server's word.
        let mut audit = Record {
            time: OffsetDateTime::now_utc(),
            event: AuditEvent::Decision,
            run_id: Some(run_id),
            task_id: Some(task.id),
            organization: None,
            user: None,
            collaboration: None,
            function: None,
            image: task.image.clone(),
            digest: None,
            rule: None,
            signers: Vec::new(),
            input_sha256: None,
            output_sha256: None,
            outcome: AuditOutcome::Rejected,
            reason: None,
            by: None,
            approvals: Vec::new(),
        };
        if spool_full {
            self.refuse_for_space(run_id, audit).await;
            return;
        }
        let admission_started = Instant::now();
        let admitted = self
            .admit(&mut record, &mut audit, event_image.as_deref(), &task)
            .await;
        if !matches!(admitted, Err(Refused::Transient(_))) {
            s.metrics.observe_admission(admission_started.elapsed());
        }
        let mut timing = RunTiming {
            run_id,
            to_container: Duration::ZERO,
            admission: admission_started.elapsed(),
            pin: Duration::ZERO,
        };
        match admitted {
            Ok((admitted, established, collab)) => {
                let run = Admission {
                    admitted,
                    established,
                    collab,
                    received,
                    slot,
                };
                self.execute(record, audit, run, &mut timing).await;
            }
            Err(Refused::Rejected(reason)) => {
                audit.reason = Some(reason.clone());
                record.phase = Phase::Finished;
                // A decision that is not on record is not reported as one.
                record.outcome = Some(match self.audit(audit) {
                    Ok(()) => {
                        tracing::info!(run = run_id, %reason, "run rejected");
                        Final::Rejected {
                            reason: sanitize(&reason),
                        }
                    }
                    Err(_) => Final::Failed {
                        reason: AUDIT_UNAVAILABLE.to_owned(),
                    },
                });
                self.save_and_deliver(record).await;
            }
            Err(Refused::Audit) => {
                tracing::warn!(
                    run = run_id,
                    "run failed: its admission could not be recorded in the audit log"
                );
                record.phase = Phase::Finished;
                record.outcome = Some(Final::Failed {
                    reason: AUDIT_UNAVAILABLE.to_owned(),
                });
                self.save_and_deliver(record).await;
            }
            Err(Refused::Transient(why)) => {
                // Nothing was decided; forget the run so that the next catch-up retries it.
                tracing::warn!(run = run_id, %why, "run postponed");
                match &resumed {
                    // It goes on waiting (the sweep takes it again).
                    Some(old) => {
                        let _ = s.spool.save(old);
                    }
                    None => {
                        let _ = s.spool.remove(run_id);
                    }
                }
            }
        }
    }

    /// Steps 1 to 6 of the trust chain for one run; the server's word is only a request.
    async fn admit(
        &self,
        record: &mut RunRecord,
        audit: &mut Record,
        event_image: Option<&str>,
        task: &api::Task,
    ) -> Result<(Admitted, Established, Collab), Refused> {
        let s = &self.inner;
        consistent_image(event_image, &task.image).map_err(Refused::Rejected)?;
        // The three reads are independent: make them at once.
        let (collab, requesting, sealed) = tokio::join!(
            self.collaboration(),
            s.server.organization(task.organization_id),
            s.server.input(record.run_id),
        );
        let collab = collab.map_err(Refused::server)?;
        audit.collaboration = Some(collab.name.clone());
        let requesting = requesting.map_err(Refused::server)?;
        if requesting.id != task.organization_id {
            return Err(Refused::Rejected(format!(
                "asked the server for organization {}, it answered with organization {}",
                task.organization_id, requesting.id
            )));
        }
        let sealed = sealed.map_err(Refused::server)?;
        audit.input_sha256 = Some(sha256_hex(&sealed));
        let established = if s
            .config
            .encryption
            .plaintext(&collab.name, collab.encrypted)
        {
            // Nothing is proven: the policy sees no organization and no user.
            audit.organization = Some(requesting.name.clone());
            audit.user = task.creator_username.clone();
            let input = binding::parse_input(&sealed).map_err(Refused::Rejected)?;
            audit.function = Some(input.function.clone());
            record.plaintext = true;
            Established {
                input: input.canonical,
                function: input.function,
                requester: None,
                binding: None,
            }
        } else {
            self.bind(record, audit, &sealed, task, &collab, &requesting.name)?
        };
        let requester = Requester {
            organization: established
                .requester
                .as_ref()
                .map(|r| r.organization.clone()),
            user: established.requester.as_ref().map(|r| r.user.clone()),
            collaboration: Some(collab.name.clone()),
            function: Some(established.function.clone()),
        };
        let checked = s
            .gate
            .precheck(&task.image, &requester)
            .map_err(|r| rejected(audit, r))?;
        audit.image = checked.reference().to_string();
        let admitted = match &s.images {
            Some(images) => s.gate.admit(&*images.source(), checked).await,
            None => s.gate.admit(&s.registry, checked).await,
        }
        .map_err(|r| rejected(audit, r))?;
        audit.digest = Some(admitted.digest().to_string());
        if let Some(b) = &established.binding {
            binding::check_digest(b, &admitted.digest().to_string()).map_err(Refused::Rejected)?;
        }
        note_admission(audit, &s.gate, &admitted);
        self.spend_budget(record.run_id, &admitted, audit.organization.as_deref())?;
        audit.outcome = AuditOutcome::Admitted;
        audit.reason = None;
        // Fails closed: no run starts unless its admission is on record.
        self.audit(audit.clone()).map_err(|_| Refused::Audit)?;
        tracing::info!(run = record.run_id, digest = %admitted.digest(), rule = %admitted.rule().name(), "run admitted");
        record.digest = Some(admitted.digest().to_string());
        record.allow_rule = Some(admitted.rule().number);
        record.phase = Phase::Admitted;
        let _ = s.spool.save(record);
        Ok((admitted, established, collab))
    }

    /// The admitting rule's `runs_per_day`, per requesting organization (the proven one; in
    /// plaintext mode the server's word) and rule over a rolling 24 hours: this run is counted,
    /// durably, or rejected when the budget is spent.
    fn spend_budget(
        &self,
        run_id: i64,
        admitted: &Admitted,
        organization: Option<&str>,
    ) -> Result<(), Refused> {
        let s = &self.inner;
        let rule = admitted.rule();
        let rule_budget = s
            .gate
            .policy()
            .output_rules(rule)
            .and_then(|o| o.runs_per_day);
        let default_budget = s.config.output.runs_per_day;
        let (budget, whose) = match (rule_budget, default_budget) {
            (None, None) => return Ok(()),
            (Some(r), Some(d)) if d < r => (d, " (default)"),
            (None, Some(d)) => (d, " (default)"),
            (Some(r), _) => (r, ""),
        };
        let organization = organization.unwrap_or_default();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        match s
            .budget
            .spend(organization, &rule.name(), budget, run_id, now)
        {
            Ok(Spent::Within) => Ok(()),
            Ok(Spent::Over { used }) => Err(Refused::Rejected(format!(
                "organization {} already ran {used} run{} under {} within the last 24 hours, its \
                 budget of runs_per_day = {budget}{whose}: try again later",
                quote(organization),
                if used == 1 { "" } else { "s" },
                rule.name()
            ))),
            Err(e) => {
                tracing::error!(run = run_id, error = %e, "cannot count the run against runs_per_day");
                Err(Refused::Transient(format!(
                    "cannot count the run against runs_per_day: {e}"
                )))
            }
        }
    }

    /// Sealed mode: opens the input, proves its sender, checks its binding against the run and
    /// records its nonce; the record keeps what the result is sealed with.
    fn bind(
        &self,
        record: &mut RunRecord,
        audit: &mut Record,
        sealed: &[u8],
        task: &api::Task,
        collab: &Collab,
        requesting_organization: &str,
    ) -> Result<Established, Refused> {
        let s = &self.inner;
        let opened = warden_seal::open_input(&s.secret, sealed).map_err(|e| {
            Refused::Rejected(binding::open_refusal(
                &e,
                sealed,
                &collab.name,
                collab.encrypted,
            ))
        })?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = ServerClaims {
            task_nonce: task.nonce.as_deref(),
            task_image: &task.image,
            collaboration: &collab.name,
            requesting_organization,
            creator_username: task.creator_username.as_deref(),
            creator_run_id: task.creator_run_id,
            parent_task_id: task.parent_task_id,
        };
        let here = Here {
            organization: &s.organization,
            trusted: &s.trusted,
            now,
            max_input_age_secs: s.config.encryption.max_input_age_secs,
        };
        let bound = binding::check(opened, &claims, &here).map_err(|r| {
            if let Some(q) = r.requester {
                audit.organization = Some(q.organization);
                audit.user = Some(q.user);
            }
            Refused::Rejected(r.reason)
        })?;
        audit.organization = Some(bound.requester.organization.clone());
        audit.user = Some(bound.requester.user.clone());
        audit.function = Some(bound.input.function.clone());
        let nonce = &bound.binding.nonce;
        match s
            .replay
            .admit(nonce, record.run_id, bound.binding.issued_at, now)
        {
            Ok(Seen::New | Seen::SameRun) => {}
            Ok(Seen::OtherRun(other)) => {
                return Err(Refused::Rejected(format!(
                    "the input's nonce {} was already used by run {other} at this node: \
                     refusing a replayed input",
                    quote(nonce)
                )));
            }
            Err(e) => {
                tracing::error!(run = record.run_id, error = %e, "cannot record an input nonce");
                return Err(Refused::Transient(format!(
                    "cannot record the input's nonce: {e}"
                )));
            }
        }
        record.reply_key = Some(bound.reply_key.to_base64());
        record.nonce = Some(nonce.clone());
        record.organization = Some(s.organization.clone());
        Ok(Established {
            input: bound.input.canonical,
            function: bound.input.function,
            requester: Some(bound.requester),
            binding: Some(bound.binding),
        })
    }
}

/// What admission established about a run's input.
pub(super) struct Established {
    /// The canonical input: what the algorithm reads.
    pub(super) input: Vec<u8>,
    pub(super) function: String,
    /// On whose behalf it runs, proven; `None` in plaintext mode.
    pub(super) requester: Option<warden_seal::Requester>,
    /// The sealed input's binding; `None` in plaintext mode.
    pub(super) binding: Option<warden_seal::InputBinding>,
}

/// An admitted run on its way to the container.
pub(super) struct Admission {
    pub(super) admitted: Admitted,
    pub(super) established: Established,
    pub(super) collab: Collab,
    pub(super) received: Instant,
    pub(super) slot: RunSlot,
}

/// Why a run was not admitted.
enum Refused {
    /// A final decision: report `rejected` with this reason.
    Rejected(String),
    /// The server could not be reached; try again later.
    Transient(String),
    /// Admitted, but the decision could not be written to the audit log: the run fails with
    /// [`AUDIT_UNAVAILABLE`] and nothing starts.
    Audit,
}

impl Refused {
    fn server(e: ServerError) -> Refused {
        if e.is_transient() {
            Refused::Transient(e.to_string())
        } else {
            Refused::Rejected(format!("the server could not provide the run: {e}"))
        }
    }
}

impl Node {
    /// A run taken while the spool disk is full: nothing of it can be kept, so it is rejected
    /// at once with the reason (on the audit log, which lives elsewhere, and at the server), so
    /// that the researcher sees why rather than a run pending without end. New runs are taken
    /// again as soon as the spool has space. When the audit log cannot record the refusal
    /// either, nothing is reported and the run stays pending for the next catch-up.
    async fn refuse_for_space(&self, run_id: i64, mut audit: Record) {
        let reason = SPOOL_FULL.to_owned();
        audit.reason = Some(reason.clone());
        if self.audit(audit).is_err() {
            return;
        }
        let update = api::UpdateRun {
            state: RunState::Rejected,
            reason: Some(reason),
            digest: None,
        };
        match self.inner.server.update(run_id, &update).await {
            Ok(_) => tracing::warn!(run = run_id, "run refused: the spool disk is full"),
            Err(e) => {
                tracing::warn!(run = run_id, error = %e, "cannot report the refusal; the run stays pending")
            }
        }
    }
}

/// The reason a run taken while the spool disk is full is rejected with.
pub(crate) const SPOOL_FULL: &str = "refused: no space left on the node's spool disk; the node \
     takes new runs again when its spool has space";

fn rejected(audit: &mut Record, r: Rejection) -> Refused {
    Refused::Rejected(note_rejection(audit, &r))
}

/// What a refused admission learnt, into its audit record; returns the reason with its stage.
pub(super) fn note_rejection(audit: &mut Record, r: &Rejection) -> String {
    audit.digest = r.evidence.digest.as_ref().map(ToString::to_string);
    audit.rule = r.rule.map(|id| id.name());
    audit.signers = r.evidence.signers.iter().map(ToString::to_string).collect();
    format!("{} ({})", r.reason, r.stage.as_str())
}

/// The rule, signers and counted approvals of an admission, into its audit record.
pub(super) fn note_admission(audit: &mut Record, gate: &crate::admission::Gate, a: &Admitted) {
    audit.rule = Some(a.rule().name());
    audit.signers = a
        .evidence()
        .signers
        .iter()
        .map(ToString::to_string)
        .collect();
    audit.approvals = gate.admitting_approvals(a);
}

/// The server must name one image for a run: the event's and the task's must agree.
fn consistent_image(event_image: Option<&str>, task_image: &str) -> Result<(), String> {
    match event_image {
        Some(img) if img != task_image => Err(format!(
            "the server announced image `{img}` but the task names `{task_image}`; refusing an inconsistent request"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_and_the_task_must_name_the_same_image() {
        assert!(consistent_image(None, "r/a:1").is_ok());
        assert!(consistent_image(Some("r/a:1"), "r/a:1").is_ok());
        let e = consistent_image(Some("r/a:1"), "r/evil:1").unwrap_err();
        assert!(e.contains("r/evil:1") && e.contains("inconsistent"), "{e}");
    }
}
