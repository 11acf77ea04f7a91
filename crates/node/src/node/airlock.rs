//! The airlock at the node: results held for release (`release = "manual"`, `checkers`) and
//! runs waiting for their digest's approval (`first_run = "approve"`), what the local socket's
//! requests do to them, and the sweep that reports their waits and refuses those that waited
//! too long (`[airlock]`).

use time::OffsetDateTime;
use warden_api::local as wire;
use warden_api::{self as api, RunState};
use warden_audit::{Event as AuditEvent, LocalUser, Outcome as AuditOutcome, Record};

use super::execute::seal_output;
use super::{AUDIT_UNAVAILABLE, Node, sanitize, sha256_hex};
use crate::airlock::{Held, Progress};
use crate::local::LocalError;
use crate::slots::RunSlot;
use crate::spool::{Final, Phase, RunRecord};

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// An audit record of what happened to a run at the airlock.
pub(super) fn record_of(
    event: AuditEvent,
    record: Option<&RunRecord>,
    outcome: AuditOutcome,
) -> Record {
    Record {
        time: OffsetDateTime::now_utc(),
        event,
        run_id: record.map(|r| r.run_id),
        task_id: record.map(|r| r.task_id),
        organization: None,
        user: None,
        collaboration: None,
        function: None,
        image: record.map(|r| r.image.clone()).unwrap_or_default(),
        digest: record.and_then(|r| r.digest.clone()),
        rule: record
            .and_then(|r| r.allow_rule)
            .map(|n| format!("allow[{n}]")),
        signers: Vec::new(),
        input_sha256: None,
        output_sha256: None,
        outcome,
        reason: None,
        by: None,
        approvals: Vec::new(),
    }
}

impl Node {
    /// Audits what a local user did (or was refused); `Err` when it is not on disk.
    pub(crate) fn audit_local(
        &self,
        who: &LocalUser,
        event: AuditEvent,
        run: Option<i64>,
        digest: Option<&str>,
        done: bool,
        reason: Option<String>,
    ) -> Result<(), LocalError> {
        let spooled = run.and_then(|r| self.inner.spool.load(r).ok().flatten());
        let mut a = record_of(
            event,
            spooled.as_ref(),
            if done {
                AuditOutcome::Done
            } else {
                AuditOutcome::Denied
            },
        );
        if a.run_id.is_none() {
            a.run_id = run;
        }
        if let Some(d) = digest {
            a.digest = Some(d.to_owned());
        }
        a.reason = reason;
        a.by = Some(who.clone());
        self.audit(a)
            .map_err(|_| LocalError::unavailable(AUDIT_UNAVAILABLE))
    }

    /// Holds a result that passed its checks until `checkers` local users release it: kept in
    /// plaintext at the node, audited as awaiting release, the run reported `awaiting_release`.
    pub(super) async fn hold(
        &self,
        record: &mut RunRecord,
        output: &[u8],
        checkers: u32,
        audit: Option<&mut Record>,
    ) {
        let s = &self.inner;
        let timeout = s.config.airlock.release_timeout_secs;
        let held = match s
            .airlock
            .hold(record.run_id, output, checkers, now(), timeout)
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(run = record.run_id, error = %e, "cannot hold the result for release");
                self.settle_logs(
                    record,
                    audit.as_deref(),
                    Some("the result could not be held for release".into()),
                );
                return self
                    .close(
                        record,
                        Final::Failed {
                            reason: "the node could not keep the result for its owner's release; \
                                 it is not released"
                                .into(),
                        },
                        audit,
                        None,
                    )
                    .await;
            }
        };
        if let Some(a) = audit {
            a.outcome = AuditOutcome::AwaitingRelease;
            a.output_sha256 = Some(held.sha256.clone());
            a.reason = Some(format!(
                "held for release by {} local user{} (release = \"manual\")",
                held.checkers,
                if held.checkers == 1 { "" } else { "s" }
            ));
            a.time = OffsetDateTime::now_utc();
            if self.audit(a.clone()).is_err() {
                let _ = s.airlock.remove(record.run_id);
                record.phase = Phase::Finished;
                record.outcome = Some(Final::Failed {
                    reason: AUDIT_UNAVAILABLE.to_owned(),
                });
                return self.save_and_deliver(record.clone()).await;
            }
        }
        record.phase = Phase::AwaitingRelease;
        if let Err(e) = s.spool.save(record) {
            tracing::error!(run = record.run_id, error = %e, "cannot record the held result");
        }
        tracing::info!(
            run = record.run_id,
            bytes = held.bytes,
            checkers = held.checkers,
            "result held for release"
        );
        self.report_wait(record.run_id, RunState::AwaitingRelease)
            .await;
    }

    /// Reports a wait to the server (retried by the sweep when it fails).
    async fn report_wait(&self, run_id: i64, state: RunState) {
        let update = api::UpdateRun {
            state,
            reason: None,
            digest: None,
        };
        if let Err(e) = self.inner.server.update(run_id, &update).await {
            tracing::warn!(run = run_id, error = %e, %state, "cannot report the wait; retried");
        }
    }

    /// Ends a run at the airlock with `outcome`: its closing audit record first (the outcome is
    /// delivered only once it is on disk), then the spool and delivery.
    async fn close(
        &self,
        record: &mut RunRecord,
        outcome: Final,
        audit: Option<&mut Record>,
        output_sha256: Option<String>,
    ) {
        let s = &self.inner;
        let mut outcome = outcome;
        let mut fresh;
        let a = match audit {
            Some(a) => a,
            None => {
                fresh = record_of(AuditEvent::Run, Some(record), AuditOutcome::Failed);
                &mut fresh
            }
        };
        a.time = OffsetDateTime::now_utc();
        a.event = AuditEvent::Run;
        a.output_sha256 = output_sha256;
        match &outcome {
            Final::Completed => {
                a.outcome = AuditOutcome::Completed;
                a.reason = None;
            }
            Final::Failed { reason } | Final::Rejected { reason } => {
                a.outcome = AuditOutcome::Failed;
                a.reason = Some(reason.clone());
            }
        }
        if self.audit(a.clone()).is_err() {
            if matches!(outcome, Final::Completed) {
                let _ = s.spool.remove_result(record.run_id);
            }
            outcome = Final::Failed {
                reason: AUDIT_UNAVAILABLE.to_owned(),
            };
        }
        record.phase = Phase::Finished;
        record.outcome = Some(outcome);
        self.save_and_deliver(record.clone()).await;
    }

    /// A run whose record waits at the airlock in `phase`.
    fn waiting(&self, run: i64, phase: Phase) -> Result<RunRecord, LocalError> {
        let what = match phase {
            Phase::AwaitingRelease => "holds no result of run",
            _ => "has no run waiting for approval with id",
        };
        match self.inner.spool.load(run) {
            Ok(Some(r)) if r.phase == phase => Ok(r),
            Ok(_) => Err(LocalError::not_found(format!(
                "this node {what} {run}; `warden node pending` lists what waits"
            ))),
            Err(e) => Err(LocalError::unavailable(format!(
                "cannot read the spool: {e}"
            ))),
        }
    }

    fn held(&self, run: i64) -> Result<(RunRecord, Held), LocalError> {
        let record = self.waiting(run, Phase::AwaitingRelease)?;
        match self.inner.airlock.held(run) {
            Ok(Some(h)) => Ok((record, h)),
            Ok(None) => Err(LocalError::not_found(format!(
                "the held result of run {run} is missing from the spool"
            ))),
            Err(e) => Err(LocalError::unavailable(format!(
                "cannot read the held result: {e}"
            ))),
        }
    }

    fn pending_result(record: &RunRecord, h: &Held) -> wire::PendingResult {
        wire::PendingResult {
            run_id: record.run_id,
            task_id: record.task_id,
            image: record.image.clone(),
            digest: record.digest.clone(),
            rule: record.allow_rule.map(|n| format!("allow[{n}]")),
            bytes: h.bytes,
            sha256: h.sha256.clone(),
            held_at: h.held_at,
            deadline: h.deadline,
            checkers: h.checkers,
            released_by: h.released_by(),
        }
    }

    /// Both queues.
    pub(crate) fn local_pending(&self) -> Result<wire::Pending, LocalError> {
        let s = &self.inner;
        let records = s
            .spool
            .records()
            .map_err(|e| LocalError::unavailable(format!("cannot read the spool: {e}")))?;
        let mut out = wire::Pending {
            results: Vec::new(),
            approvals: Vec::new(),
        };
        let approval_timeout = s.config.airlock.approval_timeout_secs as i64;
        for r in records {
            match r.phase {
                Phase::AwaitingRelease => {
                    if let Ok(Some(h)) = s.airlock.held(r.run_id) {
                        out.results.push(Self::pending_result(&r, &h));
                    }
                }
                Phase::AwaitingApproval => {
                    let since = r.waiting_since.unwrap_or_else(now);
                    out.approvals.push(wire::PendingApproval {
                        run_id: r.run_id,
                        task_id: r.task_id,
                        image: r.image.clone(),
                        digest: r.digest.clone().unwrap_or_default(),
                        rule: r.allow_rule.map(|n| format!("allow[{n}]")),
                        waiting_since: since,
                        deadline: since.saturating_add(approval_timeout),
                    });
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// A held result in plaintext, for a local user: audited as a view before it is shown.
    pub(crate) fn local_show(
        &self,
        who: &LocalUser,
        run: i64,
    ) -> Result<wire::HeldResult, LocalError> {
        use base64::Engine as _;
        let (record, h) = self.held(run)?;
        let bytes =
            self.inner.airlock.result(run).map_err(|e| {
                LocalError::unavailable(format!("cannot read the held result: {e}"))
            })?;
        self.audit_local(who, AuditEvent::View, Some(run), None, true, None)?;
        Ok(wire::HeldResult {
            pending: Self::pending_result(&record, &h),
            result_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }

    /// One local user's release; the result leaves once `checkers` different users released it.
    pub(crate) async fn local_release(
        &self,
        who: &LocalUser,
        run: i64,
    ) -> Result<wire::Answer, LocalError> {
        let s = &self.inner;
        let _one_at_a_time = s.airlock_lock.lock().await;
        let (mut record, mut h) = self.held(run)?;
        // A release whose delivery failed half-way (the audit log) is carried out again.
        if h.progress() != Progress::Released {
            if let Err(reason) = h.release(who, now()) {
                let _ = self.audit_local(
                    who,
                    AuditEvent::Release,
                    Some(run),
                    None,
                    false,
                    Some(reason.clone()),
                );
                return Err(LocalError::conflict(reason));
            }
            let counted = match h.progress() {
                Progress::Released => format!("released ({} of {})", h.releases.len(), h.checkers),
                Progress::Waiting { have, need } => format!("released ({have} of {need})"),
            };
            self.audit_local(
                who,
                AuditEvent::Release,
                Some(run),
                None,
                true,
                Some(counted),
            )?;
            // The state is written only while more checkers are needed: the last release is
            // on record in the audit log, and the result leaves now.
            if h.progress() != Progress::Released {
                s.airlock.save(&h).map_err(|e| {
                    LocalError::unavailable(format!("cannot record the release: {e}"))
                })?;
            }
        }
        if let Progress::Waiting { have, need } = h.progress() {
            return Ok(wire::Answer {
                message: format!(
                    "run {run}: released by {who}, {have} of {need} checkers; {} more \
                     different local user{} must release it before it leaves the node",
                    need - have,
                    if need - have == 1 { "" } else { "s" }
                ),
                done: false,
                runs: vec![run],
            });
        }
        // Every checker released it: sealed exactly as an automatic release, spooled, its
        // closing record on disk, then delivered.
        let output = s
            .airlock
            .result(run)
            .map_err(|e| LocalError::unavailable(format!("cannot read the held result: {e}")))?;
        let sealed = match seal_output(&s.secret, &record, &output) {
            Ok(b) => b,
            Err(reason) => {
                let _ = s.spool.put_withheld(run, &output);
                let _ = s.airlock.remove(run);
                self.close(
                    &mut record,
                    Final::Failed {
                        reason: sanitize(&reason),
                    },
                    None,
                    None,
                )
                .await;
                return Err(LocalError::conflict(reason));
            }
        };
        let hash = sha256_hex(&sealed);
        s.spool
            .put_result(run, &sealed)
            .map_err(|e| LocalError::unavailable(format!("cannot spool the sealed result: {e}")))?;
        // The logs leave with the released result, when its rules release them.
        let logs_audited = self.settle_logs(&record, None, None);
        let mut closing = record_of(AuditEvent::Run, Some(&record), AuditOutcome::Completed);
        closing.output_sha256 = Some(hash);
        if !logs_audited || self.audit(closing).is_err() {
            let _ = s.spool.remove_result(run);
            let _ = s.spool.remove_sealed_logs(run);
            return Err(LocalError::unavailable(format!(
                "{AUDIT_UNAVAILABLE}: the result stays held; release it again once the log can \
                 be written"
            )));
        }
        record.phase = Phase::Finished;
        record.outcome = Some(Final::Completed);
        if let Err(e) = s.spool.save(&record) {
            tracing::error!(run, error = %e, "cannot record the released run");
        }
        if let Err(e) = s.airlock.remove(run) {
            tracing::warn!(run, error = %e, "cannot remove the released plaintext");
        }
        tracing::info!(run, by = %who, "result released");
        let delivered = self.deliver_now(&record).await;
        Ok(wire::Answer {
            message: format!(
                "run {run}: released by {}; the sealed result {}",
                h.released_by().join(" and "),
                if delivered {
                    "is delivered"
                } else {
                    "is spooled and delivered when the server can be reached"
                }
            ),
            done: true,
            runs: vec![run],
        })
    }

    /// A local user refuses a held result: the run fails with their reason, the plaintext
    /// stays at the node under `<spool>/withheld/`.
    pub(crate) async fn local_refuse(
        &self,
        who: &LocalUser,
        run: i64,
        reason: &str,
    ) -> Result<wire::Answer, LocalError> {
        let _one_at_a_time = self.inner.airlock_lock.lock().await;
        let (record, _) = self.held(run)?;
        self.audit_local(
            who,
            AuditEvent::Refuse,
            Some(run),
            None,
            true,
            Some(reason.to_owned()),
        )?;
        let text = format!("the data owner refused to release the result: {reason}");
        self.refuse_held(record, text).await;
        Ok(wire::Answer {
            message: format!("run {run}: refused by {who}; the run fails with your reason"),
            done: true,
            runs: vec![run],
        })
    }

    async fn refuse_held(&self, mut record: RunRecord, reason: String) {
        let s = &self.inner;
        let run = record.run_id;
        let hash = match s.airlock.result(run) {
            Ok(output) => {
                if let Err(e) = s.spool.put_withheld(run, &output) {
                    tracing::error!(run, error = %e, "cannot keep the refused result");
                }
                Some(sha256_hex(&output))
            }
            Err(_) => None,
        };
        let _ = s.airlock.remove(run);
        // A refused result releases no logs (not even logs sealed by a release that could not
        // be completed).
        if let Err(e) = s.spool.remove_sealed_logs(run) {
            tracing::error!(run, error = %e, "cannot drop the sealed logs of a refused result");
        }
        self.settle_logs(
            &record,
            None,
            Some("the held result was refused, so its logs are not released either".into()),
        );
        self.close(
            &mut record,
            Final::Failed {
                reason: sanitize(&reason),
            },
            None,
            hash,
        )
        .await;
    }

    /// A local user approves a digest: it runs without asking from now on, and every run
    /// waiting for it is taken again.
    pub(crate) async fn local_approve(
        &self,
        who: &LocalUser,
        digest: &str,
    ) -> Result<wire::Answer, LocalError> {
        let s = &self.inner;
        let _one_at_a_time = s.airlock_lock.lock().await;
        self.audit_local(who, AuditEvent::Approve, None, Some(digest), true, None)?;
        let fresh = s
            .approved
            .approve(digest, who.uid, who.name.as_deref(), now())
            .map_err(|e| LocalError::unavailable(format!("cannot record the approval: {e}")))?;
        let runs = self.waiting_for(digest);
        for r in &runs {
            self.resume(r.clone());
        }
        let ids: Vec<i64> = runs.iter().map(|r| r.run_id).collect();
        Ok(wire::Answer {
            message: format!(
                "{digest} {} by {who}; {} waiting run{} start{}",
                if fresh {
                    "approved"
                } else {
                    "was already approved; approved again"
                },
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                if ids.len() == 1 { "s" } else { "" },
            ),
            done: true,
            runs: ids,
        })
    }

    /// A local user refuses a digest: every run waiting for it fails with their reason.
    pub(crate) async fn local_refuse_digest(
        &self,
        who: &LocalUser,
        digest: &str,
        reason: &str,
    ) -> Result<wire::Answer, LocalError> {
        let _one_at_a_time = self.inner.airlock_lock.lock().await;
        let runs = self.waiting_for(digest);
        if runs.is_empty() {
            let why = format!("no run waits for the approval of {digest} at this node");
            let _ = self.audit_local(
                who,
                AuditEvent::RefuseDigest,
                None,
                Some(digest),
                false,
                Some(why.clone()),
            );
            return Err(LocalError::not_found(format!(
                "{why}; `warden node pending` lists what waits"
            )));
        }
        self.audit_local(
            who,
            AuditEvent::RefuseDigest,
            None,
            Some(digest),
            true,
            Some(reason.to_owned()),
        )?;
        let ids: Vec<i64> = runs.iter().map(|r| r.run_id).collect();
        for mut r in runs {
            let text = format!("the data owner refused to run image digest {digest}: {reason}");
            self.close(
                &mut r,
                Final::Failed {
                    reason: sanitize(&text),
                },
                None,
                None,
            )
            .await;
        }
        Ok(wire::Answer {
            message: format!(
                "{digest} refused by {who}; {} waiting run{} fail{} with your reason",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                if ids.len() == 1 { "s" } else { "" },
            ),
            done: true,
            runs: ids,
        })
    }

    /// The runs waiting for `digest`'s approval.
    fn waiting_for(&self, digest: &str) -> Vec<RunRecord> {
        self.inner
            .spool
            .records()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.phase == Phase::AwaitingApproval && r.digest.as_deref() == Some(digest))
            .collect()
    }

    /// Takes a run that waited for approval again, from the start of the trust chain (the
    /// digest is resolved again and must be an approved one to run).
    pub(super) fn resume(&self, waiting: RunRecord) {
        let s = &self.inner;
        if s.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let run_id = waiting.run_id;
        {
            let mut active = s.active.lock().unwrap_or_else(|p| p.into_inner());
            if !active.insert(run_id) {
                return;
            }
        }
        let node = self.clone();
        tokio::spawn(async move {
            let slot = RunSlot::acquire(&node.inner.slots).await;
            // Cancelled while it waited for a slot again: it never runs.
            if node.cancelled(run_id) {
                node.discard(run_id);
            } else {
                node.handle(run_id, None, std::time::Instant::now(), slot, Some(waiting))
                    .await;
            }
            node.inner
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&run_id);
            node.inner.cancels.forget(run_id);
        });
    }

    /// Whether the run must wait for its digest's approval (the stricter output rules say
    /// `first_run = "approve"` and no local user approved the digest yet).
    pub(super) fn must_wait_for_approval(&self, record: &RunRecord, digest: &str) -> bool {
        let approve = self
            .rules_of(record)
            .map(|o| o.first_run == warden_policy::FirstRun::Approve)
            // A rule that cannot be read: wait rather than run unasked.
            .unwrap_or(true);
        approve && !self.inner.approved.is_approved(digest)
    }

    /// Puts an admitted run in the approval queue: audited, recorded, reported; it holds no
    /// slot or container while it waits.
    pub(super) async fn wait_for_approval(&self, record: &mut RunRecord, audit: &mut Record) {
        let s = &self.inner;
        let digest = record.digest.clone().unwrap_or_default();
        let resumed = record.waiting_since.is_some();
        audit.event = AuditEvent::Run;
        audit.outcome = AuditOutcome::AwaitingApproval;
        audit.reason = Some(format!(
            "waits for a local user to approve {digest} (first_run = \"approve\")"
        ));
        audit.time = OffsetDateTime::now_utc();
        if self.audit(audit.clone()).is_err() {
            record.phase = Phase::Finished;
            record.outcome = Some(Final::Failed {
                reason: AUDIT_UNAVAILABLE.to_owned(),
            });
            return self.save_and_deliver(record.clone()).await;
        }
        record.phase = Phase::AwaitingApproval;
        record.waiting_since.get_or_insert_with(now);
        if let Err(e) = s.spool.save(record) {
            tracing::error!(run = record.run_id, error = %e, "cannot record the wait for approval");
        }
        tracing::info!(run = record.run_id, %digest, "run waits for its digest's approval");
        if !resumed {
            let admitted = api::UpdateRun {
                state: RunState::Admitted,
                reason: None,
                digest: Some(digest.clone()),
            };
            if let Err(e) = s.server.update(record.run_id, &admitted).await {
                tracing::warn!(run = record.run_id, error = %e, "cannot report admitted; retried");
                return;
            }
        }
        self.report_wait(record.run_id, RunState::AwaitingApproval)
            .await;
    }

    /// Every few seconds: refuses what waited longer than `[airlock]` allows, takes again the
    /// runs whose digest was approved meanwhile, and reports waits the server missed.
    pub(super) async fn sweep_airlock(&self) {
        let s = &self.inner;
        let Ok(records) = s.spool.records() else {
            return;
        };
        let t = now();
        for r in records {
            let busy = s
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&r.run_id);
            if busy {
                continue;
            }
            match r.phase {
                Phase::AwaitingRelease => {
                    let Ok(Some(h)) = s.airlock.held(r.run_id) else {
                        continue;
                    };
                    if t >= h.deadline {
                        let _one_at_a_time = s.airlock_lock.lock().await;
                        // Released or refused meanwhile: nothing to do.
                        if self.held(r.run_id).is_err() {
                            continue;
                        }
                        let secs = s.config.airlock.release_timeout_secs;
                        let reason = format!(
                            "the result waited {secs} s for its release at the data owner's node \
                             (airlock.release_timeout_secs) and was refused automatically"
                        );
                        let mut a = record_of(AuditEvent::Refuse, Some(&r), AuditOutcome::Done);
                        a.reason = Some(reason.clone());
                        if self.audit(a).is_err() {
                            continue;
                        }
                        tracing::warn!(run = r.run_id, "held result refused: waited too long");
                        self.refuse_held(r, reason).await;
                    } else {
                        self.ensure_reported(&r, RunState::AwaitingRelease).await;
                    }
                }
                Phase::AwaitingApproval => {
                    let since = r.waiting_since.unwrap_or(t);
                    let secs = s.config.airlock.approval_timeout_secs;
                    let digest = r.digest.clone().unwrap_or_default();
                    if s.approved.is_approved(&digest) {
                        self.resume(r);
                    } else if t >= since.saturating_add(secs as i64) {
                        let _one_at_a_time = s.airlock_lock.lock().await;
                        if self.waiting(r.run_id, Phase::AwaitingApproval).is_err() {
                            continue;
                        }
                        let reason = format!(
                            "the run waited {secs} s for the data owner's approval of {digest} \
                             (airlock.approval_timeout_secs) and was refused automatically"
                        );
                        let mut r = r;
                        self.close(&mut r, Final::Failed { reason }, None, None)
                            .await;
                    } else {
                        self.ensure_reported(&r, RunState::AwaitingApproval).await;
                    }
                }
                _ => {}
            }
        }
    }

    /// Reports a wait the server does not show yet (a report that failed).
    async fn ensure_reported(&self, r: &RunRecord, state: RunState) {
        let s = &self.inner;
        let Ok(run) = s.server.run(r.run_id).await else {
            return;
        };
        if run.state == state || run.state.is_final() {
            return;
        }
        if state == RunState::AwaitingApproval && run.state == RunState::Pending {
            let admitted = api::UpdateRun {
                state: RunState::Admitted,
                reason: None,
                digest: r.digest.clone(),
            };
            if s.server.update(r.run_id, &admitted).await.is_err() {
                return;
            }
        }
        self.report_wait(r.run_id, state).await;
    }
}
