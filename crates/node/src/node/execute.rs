//! Steps 7 and 8: report, pin, run with the proxy, keep the logs at the node, seal the result to
//! the input's reply key, spool.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use warden_api::{self as api, RunState};
use warden_audit::{Event as AuditEvent, Outcome as AuditOutcome, Record};
use warden_runtime::{Outcome, RunSpec};

use super::admit::{Admission, Established};
use super::{AUDIT_UNAVAILABLE, Collab, MAX_TIMINGS, Node, RunTiming, sanitize, sha256_hex};
use crate::admission::Admitted;
use crate::proxy::{Proxy, ProxyDeps, ProxyLimits, RunScope};
use crate::slots::RunSlot;
use crate::spool::{Final, Phase, RunRecord};

/// How long a run holds its slot while the server cannot be told of its admission (a link
/// down, a replica restarting): the report is retried, backing off to 5 s, before the run fails.
/// A run failed at once for a passing outage was lost work (found by the fault harness,
/// crates/faults `link-cut`).
const REPORT_PATIENCE: Duration = Duration::from_secs(600);

impl Node {
    /// Reports the admission or the start; a transient failure (server unreachable, 5xx, 429)
    /// is retried within [`REPORT_PATIENCE`] unless the run is cancelled meanwhile.
    /// The update is idempotent at the server (a state already reached is accepted).
    async fn report_patiently(
        &self,
        run_id: i64,
        update: &api::UpdateRun,
    ) -> Result<(), crate::server::ServerError> {
        let deadline = Instant::now() + REPORT_PATIENCE;
        let mut pause = Duration::from_millis(250);
        loop {
            match self.inner.server.update(run_id, update).await {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.is_transient()
                        && Instant::now() + pause < deadline
                        && !self.cancelled(run_id) =>
                {
                    tracing::warn!(run = run_id, state = ?update.state, error = %e, "cannot report the run's state yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Node {
    /// Steps 7 and 8: report, pin, run with the proxy, seal, spool.
    pub(super) async fn execute(
        &self,
        mut record: RunRecord,
        audit: Record,
        run: Admission,
        timing: &mut RunTiming,
    ) {
        let Admission {
            admitted,
            established,
            collab,
            received,
            slot,
        } = run;
        let s = &self.inner;
        let run_id = record.run_id;
        let mut run_audit = audit;
        run_audit.event = AuditEvent::Run;
        run_audit.time = OffsetDateTime::now_utc();
        // `first_run = "approve"`: a digest no local user approved waits, holding nothing.
        if self.must_wait_for_approval(&record, &admitted.digest().to_string()) {
            drop(slot);
            return self.wait_for_approval(&mut record, &mut run_audit).await;
        }
        // A run taken again after its approval is `awaiting_approval` at the server, which
        // goes on to `running`: its admission was reported before it waited.
        let resumed = record.waiting_since.is_some();
        let update = api::UpdateRun {
            state: RunState::Admitted,
            reason: None,
            digest: Some(admitted.digest().to_string()),
        };
        // Report the admission while pulling: both must succeed before the run starts.
        let pin_started = Instant::now();
        let (reported, pinned) = tokio::join!(
            async {
                if resumed {
                    Ok(())
                } else {
                    self.report_patiently(run_id, &update).await
                }
            },
            async {
                let p = match &s.images {
                    Some(images) => {
                        crate::admission::pin_imported(&s.engine, &admitted, images).await
                    }
                    None => crate::admission::pin(&s.engine, &admitted).await,
                };
                (p, pin_started.elapsed())
            }
        );
        let (pinned, pin_time) = pinned;
        timing.pin = pin_time;
        if let Err(e) = reported {
            tracing::warn!(run = run_id, error = %e, "cannot report admitted");
            let outcome = Err(format!("cannot report the admission to the server: {e}"));
            return self.finish_audited(&mut record, outcome, run_audit).await;
        }
        let pinned = match pinned {
            Ok(p) => p,
            Err(e) => {
                let outcome = Err(format!("the admitted image could not be pinned: {e}"));
                return self.finish_audited(&mut record, outcome, run_audit).await;
            }
        };
        // Room under `max_containers`: a run waiting for its subtasks lends its run slot but
        // keeps its container, so this cap, not the slots, bounds the containers alive. The wait
        // is bounded: a subtask whose ancestors at this node hold the room would wait forever.
        let container = match tokio::time::timeout(
            s.config.limits.container_wait(),
            s.containers.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            _ => {
                let outcome = Err(containers_full(s.config.limits.max_containers()));
                return self.finish_audited(&mut record, outcome, run_audit).await;
            }
        };
        // Room under the memory budget: every live container counts its memory limit, waiting
        // ones too, within the same wait as the container cap.
        let memory = match &s.memory {
            None => None,
            Some(pool) => {
                let need = memory_units(s.config.limits.memory_bytes);
                match tokio::time::timeout(
                    s.config.limits.container_wait(),
                    pool.clone().acquire_many_owned(need),
                )
                .await
                {
                    Ok(Ok(permit)) => Some(permit),
                    _ => {
                        drop(container);
                        let outcome = Err(memory_full(
                            s.config.limits.memory_budget_bytes.unwrap_or_default(),
                            s.config.limits.memory_bytes,
                        ));
                        return self.finish_audited(&mut record, outcome, run_audit).await;
                    }
                }
            }
        };
        // Cancelled while it was admitted or pulled: it never starts.
        if self.cancelled(run_id) {
            return self.discard(run_id);
        }
        // Recorded before it is reported: after a crash, reconciliation looks for the container.
        record.phase = Phase::Running;
        let _ = s.spool.save(&record);
        let outcome = self
            .run_container(
                &record,
                &admitted,
                &pinned,
                &established,
                &collab,
                (received, timing, &slot),
            )
            .await;
        // The container is gone (removed by the runtime): its room is free.
        drop(memory);
        drop(container);
        self.finish_audited(&mut record, outcome, run_audit).await;
    }

    async fn run_container(
        &self,
        record: &RunRecord,
        admitted: &Admitted,
        pinned: &warden_runtime::PinnedImage,
        established: &Established,
        collab: &Collab,
        (received, timing, slot): (Instant, &mut RunTiming, &RunSlot),
    ) -> Result<Vec<u8>, String> {
        let s = &self.inner;
        let run_id = record.run_id;
        let running = api::UpdateRun {
            state: RunState::Running,
            reason: None,
            digest: None,
        };
        // Report the start while the directories and the proxy are prepared.
        let (reported, prepared) = tokio::join!(
            self.report_patiently(run_id, &running),
            self.prepare(record, admitted, established, collab, slot)
        );
        let (proxy, spec, sidecar) = match prepared {
            Ok(p) => p,
            Err(e) => {
                s.spool.remove_work(run_id);
                return Err(e);
            }
        };
        if let Err(e) = reported {
            if let Some(sidecar) = &sidecar {
                sidecar.remove(&s.engine).await;
            }
            proxy.stop().await;
            s.spool.remove_work(run_id);
            return Err(format!("cannot report the start to the server: {e}"));
        }
        timing.to_container = received.elapsed();
        {
            let mut t = s.timings.lock().unwrap_or_else(|p| p.into_inner());
            if t.len() == MAX_TIMINGS {
                t.pop_front();
            }
            t.push_back(*timing);
        }
        tracing::info!(
            run = run_id,
            to_container_ms = timing.to_container.as_secs_f64() * 1e3,
            admission_ms = timing.admission.as_secs_f64() * 1e3,
            pin_ms = timing.pin.as_secs_f64() * 1e3,
            "starting the container"
        );
        // A cancellation removes the container while it runs (and again should it be created
        // after the cancel arrived).
        let report = self
            .killable(run_id, warden_runtime::run_pinned(&s.engine, pinned, &spec))
            .await;
        // The sidecar goes with the run.
        if let Some(sidecar) = &sidecar
            && !sidecar.remove(&s.engine).await
        {
            tracing::error!(
                run = run_id,
                container = sidecar.id(),
                "cannot remove the run's sidecar; the next start's reconciliation will"
            );
        }
        proxy.stop().await;
        s.spool.remove_work(run_id);
        self.keep_logs(run_id, &report);
        outcome_of(&report)
    }

    /// Keeps what the algorithm printed at the node, for the data owner: never in a reason.
    pub(super) fn keep_logs(&self, run_id: i64, report: &warden_runtime::RunReport) {
        match self.inner.spool.put_log(run_id, &report.logs) {
            Ok(path) => {
                tracing::info!(run = run_id, log = %path.display(), bytes = report.logs.len(), "run log kept");
            }
            Err(e) => tracing::error!(run = run_id, error = %e, "cannot keep the run's log"),
        }
    }

    /// The run's directories, input file, proxy and container spec.
    async fn prepare(
        &self,
        record: &RunRecord,
        admitted: &Admitted,
        established: &Established,
        collab: &Collab,
        slot: &RunSlot,
    ) -> Result<(Proxy, RunSpec, Option<warden_runtime::Sidecar>), String> {
        let s = &self.inner;
        let run_id = record.run_id;
        // The admitting rule's container contract: Warden's own, or vantage6 4.x's (its input,
        // token and databases prepared here; an input it cannot express fails the run before
        // anything is created).
        let contract = s
            .gate
            .policy()
            .contract(admitted.rule())
            .unwrap_or_default();
        let v6 = match contract {
            warden_policy::Contract::Warden => None,
            warden_policy::Contract::Vantage6 => {
                let why = |e: String| {
                    format!(
                        "{} runs the image with contract = \"vantage6\": {e} (docs/vantage6.md)",
                        admitted.rule().name()
                    )
                };
                if s.vantage6_shim.is_none() {
                    return Err(why(
                        "this node has no vantage6 shim ([node] vantage6_shim), so it cannot \
                         serve the vantage6 API in the container and runs no such image"
                            .into(),
                    ));
                }
                let input = crate::vantage6::input(&established.input).map_err(why)?;
                let dbs = crate::vantage6::databases(input.databases.as_deref(), &s.config.data)
                    .map_err(why)?;
                Some((input, dbs))
            }
        };
        let work = s
            .spool
            .work(run_id)
            .map_err(|e| format!("cannot prepare the run's directories: {e}"))?;
        let input_file = work.input.join("input");
        let input_bytes = match &v6 {
            Some((input, _)) => &input.file[..],
            None => &established.input[..],
        };
        write_readable(&input_file, input_bytes)
            .map_err(|e| format!("cannot write the input: {e}"))?;
        let limits = &s.config.limits;
        let scope = RunScope {
            run_id,
            task_id: record.task_id,
            collaboration_id: record.collaboration_id,
            organization_id: s.me.organization_id,
            organization: s.organization.clone(),
            collaboration: collab.name.clone(),
            sealed: !record.plaintext,
            requester: established.requester.clone(),
            pinned_image: admitted.pinned_reference(),
            digest: admitted.digest().to_string(),
            members: collab.members.clone(),
            parent_task_id: established
                .binding
                .as_ref()
                .and_then(|b| b.via.as_ref())
                .map(|v| v.task_id),
            vantage6: v6.is_some(),
        };
        // The smallest of the node's cap, the default output section's and the admitting
        // rule's; the refusal names whichever set it (the rule on a tie).
        let rule_cap = s
            .gate
            .policy()
            .output_rules(admitted.rule())
            .and_then(|o| o.max_subtasks);
        let default_cap = s.config.output.max_subtasks;
        let mut max_subtasks = limits.max_subtasks;
        let mut max_subtasks_rule = None;
        if let Some(cap) = default_cap
            && cap < max_subtasks
        {
            max_subtasks = cap;
            max_subtasks_rule = Some("default".to_owned());
        }
        if let Some(cap) = rule_cap
            && cap <= max_subtasks
            && (cap < limits.max_subtasks || max_subtasks_rule.is_some())
        {
            max_subtasks = cap;
            max_subtasks_rule = Some(admitted.rule().name());
        }
        let deps = ProxyDeps {
            server: s.server.clone(),
            run: Arc::new(tokio::sync::OnceCell::new()),
            keys: s.keys.clone(),
            secret: s.secret.clone(),
            limits: ProxyLimits {
                request_bytes: limits.proxy_request_bytes,
                result_bytes: limits.proxy_result_bytes,
                requests_per_second: limits.proxy_requests_per_second,
                max_subtasks,
                max_subtasks_rule,
                max_subtask_depth: limits.max_subtask_depth,
            },
            slot: slot.clone(),
        };
        // The proxy's token: random per run; under the vantage6 contract wrapped as the JWT the
        // tools read their claims from, and given as `TOKEN_FILE`.
        let secret = crate::proxy::new_token();
        let token = match &v6 {
            None => secret,
            Some((_, dbs)) => {
                let claims = crate::vantage6::Claims {
                    task_id: record.task_id,
                    node_id: s.me.node_id,
                    organization_id: s.me.organization_id,
                    collaboration_id: record.collaboration_id,
                    image: admitted.pinned_reference(),
                    databases: dbs.iter().map(|(l, _, t)| (l.clone(), *t)).collect(),
                };
                let token = zeroize::Zeroizing::new(crate::vantage6::token(&claims, &secret));
                write_readable(
                    &work.input.join(crate::vantage6::TOKEN_NAME),
                    token.as_bytes(),
                )
                .map_err(|e| format!("cannot write the token file: {e}"))?;
                token
            }
        };
        let proxy = Proxy::start_with_token(&work.proxy, scope, deps, token)
            .await
            .map_err(|e| e.to_string())?;
        let mut spec = RunSpec::new(
            format!("run-{run_id}"),
            s.label.clone(),
            &work.input,
            &work.output,
        );
        spec.proxy_socket_dir = Some(work.proxy.clone());
        spec.limits = limits.runtime();
        spec.timeout = limits.timeout();
        match &v6 {
            None => {
                spec.data_sources = s
                    .config
                    .data
                    .iter()
                    .map(|(name, path)| (name.clone(), path.clone()))
                    .collect();
                spec.env = BTreeMap::from([
                    ("WARDEN_TOKEN".to_owned(), proxy.token().to_owned()),
                    ("WARDEN_RUN_ID".to_owned(), run_id.to_string()),
                    ("WARDEN_TASK_ID".to_owned(), record.task_id.to_string()),
                    (
                        "WARDEN_ORGANIZATION_ID".to_owned(),
                        s.me.organization_id.to_string(),
                    ),
                    (
                        "WARDEN_COLLABORATION_ID".to_owned(),
                        record.collaboration_id.to_string(),
                    ),
                ]);
            }
            // Only the requested databases are mounted; the environment is vantage6's alone.
            Some((_, dbs)) => {
                spec.data_sources = dbs
                    .iter()
                    .filter_map(|(label, _, _)| {
                        s.config.data.get(label).map(|p| (label.clone(), p.clone()))
                    })
                    .collect();
                spec.env = crate::vantage6::environment(dbs);
            }
        }
        // Under the vantage6 contract the algorithm joins the network namespace of the run's
        // shim (only `lo`, where the shim listens on HOST:PORT), itself without network.
        let sidecar = match (&v6, &s.vantage6_shim) {
            (Some(_), Some(image)) => {
                let sidecar = warden_runtime::Sidecar::start(
                    &s.engine,
                    image,
                    &s.label,
                    &spec.run_id,
                    &work.proxy,
                )
                .await?;
                spec.network_of = Some(sidecar.id().to_owned());
                Some(sidecar)
            }
            _ => None,
        };
        Ok((proxy, spec, sidecar))
    }

    async fn finish_audited(
        &self,
        record: &mut RunRecord,
        outcome: Result<Vec<u8>, String>,
        mut audit: Record,
    ) {
        self.finish(record, outcome, Some(&mut audit)).await;
    }

    /// Seals a completed output to the input's reply key, spools the outcome, delivers.
    pub(super) async fn finish(
        &self,
        record: &mut RunRecord,
        outcome: Result<Vec<u8>, String>,
        audit: Option<&mut Record>,
    ) {
        let s = &self.inner;
        // A cancelled run's outcome is never sealed, held, spooled or reported; its `cancel`
        // audit record says what became of it.
        if self.cancelled(record.run_id) {
            tracing::info!(
                run = record.run_id,
                "the run was cancelled; its outcome is discarded"
            );
            return self.discard(record.run_id);
        }
        // The admitting rule's output rules: a result that breaks them never leaves the node.
        let mut withheld_hash = None;
        let outcome = match outcome {
            Ok(output) => match self.check_output(record, &output) {
                Ok(()) => {
                    // `release = "manual"`: the result waits for its owner's release.
                    if let Ok(rules) = self.rules_of(record)
                        && let warden_policy::Release::Manual { checkers } = rules.release
                    {
                        return self.hold(record, &output, checkers, audit).await;
                    }
                    Ok(output)
                }
                Err(reason) => {
                    withheld_hash = Some(sha256_hex(&output));
                    self.withhold(record.run_id, &output);
                    Err(reason)
                }
            },
            Err(reason) => Err(reason),
        };
        let (mut final_, output_hash) = match outcome {
            Ok(output) => match seal_output(&s.secret, record, &output) {
                Ok(sealed) => {
                    let hash = sha256_hex(&sealed);
                    match s.spool.put_result(record.run_id, &sealed) {
                        Ok(()) => (Final::Completed, Some(hash)),
                        Err(e) => (
                            Final::Failed {
                                reason: format!("cannot spool the result: {e}"),
                            },
                            None,
                        ),
                    }
                }
                Err(reason) => (Final::Failed { reason }, None),
            },
            Err(reason) => (
                Final::Failed {
                    reason: sanitize(&reason),
                },
                withheld_hash,
            ),
        };
        // The run's logs: released (sealed, spooled with the outcome) or withheld, on record
        // before the outcome is. Under `release = "manual"` they leave only with a released
        // result, which a run ending here does not have.
        let manual = matches!(
            self.rules_of(record).map(|r| r.release),
            Ok(warden_policy::Release::Manual { .. })
        );
        let logs_audited = self.settle_logs(
            record,
            audit.as_deref(),
            manual.then(|| {
                "release = \"manual\": logs leave only with a released result, and this run \
                 has none"
                    .to_owned()
            }),
        );
        if !logs_audited {
            // The audit log fails closed: nothing of the run leaves, and it fails.
            if let Err(e) = s.spool.remove_result(record.run_id) {
                tracing::error!(run = record.run_id, error = %e, "cannot drop the undelivered result");
            }
            final_ = Final::Failed {
                reason: AUDIT_UNAVAILABLE.to_owned(),
            };
        } else if let Some(a) = audit {
            a.output_sha256 = output_hash;
            match &final_ {
                Final::Completed => {
                    a.outcome = AuditOutcome::Completed;
                    a.reason = None;
                }
                Final::Failed { reason } | Final::Rejected { reason } => {
                    a.outcome = AuditOutcome::Failed;
                    a.reason = Some(reason.clone());
                }
            }
            a.time = OffsetDateTime::now_utc();
            // The outcome is delivered only once its record is on disk: a result whose closing
            // record cannot be written is dropped and the run fails.
            if self.audit(a.clone()).is_err() {
                if matches!(final_, Final::Completed)
                    && let Err(e) = s.spool.remove_result(record.run_id)
                {
                    tracing::error!(run = record.run_id, error = %e, "cannot drop the undelivered result");
                }
                // Nor do its logs leave.
                if let Err(e) = s.spool.remove_sealed_logs(record.run_id) {
                    tracing::error!(run = record.run_id, error = %e, "cannot drop the undelivered logs");
                }
                final_ = Final::Failed {
                    reason: AUDIT_UNAVAILABLE.to_owned(),
                };
            }
        }
        tracing::info!(run = record.run_id, outcome = ?final_, "run finished");
        record.phase = Phase::Finished;
        record.outcome = Some(final_);
        self.save_and_deliver(record.clone()).await;
    }
}

/// Writes a file of the run's input directory, readable by the run's user.
fn write_readable(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)))
}

impl Node {
    /// Applies the stricter of the node's default output section and the output rules of the
    /// allow rule that admitted the run (as the record names it) to its result; the violation's text (which never quotes the result) on failure.
    fn check_output(&self, record: &RunRecord, output: &[u8]) -> Result<(), String> {
        self.rules_of(record)?
            .check_result(output)
            .map_err(|v| v.to_string())
    }

    /// The output rules a run is held to: the stricter of the node's default section and the
    /// admitting rule's (as the record names it); why they cannot be known otherwise.
    pub(super) fn rules_of(
        &self,
        record: &RunRecord,
    ) -> Result<warden_policy::OutputRules, String> {
        let policy = self.inner.gate.policy();
        let Some(number) = record.allow_rule else {
            return Err(
                "the run's record names no admitting rule (it was taken by an older version of \
                 this node), so its output rules cannot be checked; the result is withheld"
                    .into(),
            );
        };
        let Some(rule) = number
            .checked_sub(1)
            .and_then(|i| policy.allow_rules().get(i))
        else {
            return Err(format!(
                "the policy no longer has allow[{number}], the rule that admitted the run, so \
                 its output rules cannot be checked; the result is withheld"
            ));
        };
        Ok(self.inner.config.output.stricter(&rule.output))
    }

    /// Keeps a withheld result at the node for the data owner; never uploaded.
    fn withhold(&self, run_id: i64, output: &[u8]) {
        match self.inner.spool.put_withheld(run_id, output) {
            Ok(path) => {
                tracing::warn!(run = run_id, withheld = %path.display(), bytes = output.len(), "result withheld by its rule's output rules");
            }
            Err(e) => {
                tracing::error!(run = run_id, error = %e, "cannot keep the withheld result; it is dropped");
            }
        }
    }
}

/// The memory budget is counted in KiB (a semaphore's permits).
pub(super) fn memory_units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// The reason of a run that found no room under the memory budget within the wait.
pub(super) fn memory_full(budget: u64, each: u64) -> String {
    format!(
        "the node's memory budget of {budget} bytes (limits.memory_budget_bytes) is taken by \
         the containers alive ({each} bytes each, limits.memory_bytes): no room within the \
         wait, e.g. a subtask whose ancestors at this node hold it"
    )
}

/// The reason of a run that found no room under `max_containers` within the wait.
pub(super) fn containers_full(max: u32) -> String {
    format!(
        "the node's limit of {max} containers alive is reached (limits.max_containers): no room \
         within the wait, e.g. a subtask whose ancestors at this node hold it"
    )
}

/// Seals the output to the reply key the input proved, bound to the run: what the record holds
/// is enough, so a restart needs neither the input nor the server. In plaintext mode (decided by
/// the node at admission) the output stays plain.
pub(super) fn seal_output(
    secret: &warden_seal::SecretKey,
    record: &RunRecord,
    output: &[u8],
) -> Result<Vec<u8>, String> {
    if record.plaintext {
        return Ok(output.to_vec());
    }
    seal_for_requester(secret, record, warden_seal::Kind::Result, output)
}

/// Seals `bytes` (a result, or released logs with [`warden_seal::Kind::Logs`]) to the reply key
/// the input proved, bound to the run (nonce, run, producer, digest) under `kind`, so that logs
/// and a result, or two runs' logs, cannot be swapped. Never plaintext.
pub(super) fn seal_for_requester(
    secret: &warden_seal::SecretKey,
    record: &RunRecord,
    kind: warden_seal::Kind,
    output: &[u8],
) -> Result<Vec<u8>, String> {
    let (Some(reply_key), Some(nonce), Some(organization), Some(digest)) = (
        &record.reply_key,
        &record.nonce,
        &record.organization,
        &record.digest,
    ) else {
        return Err(
            "cannot seal the result: the run's record holds no reply key, nonce or digest (it \
             was taken by an older version of this node); submit the task again"
                .into(),
        );
    };
    let key = warden_seal::PublicKey::from_base64(reply_key)
        .map_err(|e| format!("cannot seal the result: the recorded reply key is malformed: {e}"))?;
    let binding = warden_seal::ResultBinding {
        nonce: nonce.clone(),
        run_id: record.run_id,
        organization: organization.clone(),
        digest: digest.clone(),
    };
    warden_seal::seal_result(secret, kind, &key, &binding, output)
        .map_err(|e| format!("cannot seal the result: {e}"))
}

/// The outcome of a runtime report: the output, or Warden's own reason (exit code, memory,
/// timeout, output caps...). What the algorithm printed never goes into it: it is in the run's
/// log at the node ([`Node::keep_logs`]).
pub(super) fn outcome_of(report: &warden_runtime::RunReport) -> Result<Vec<u8>, String> {
    match &report.outcome {
        Outcome::Completed { output } => Ok(output.clone()),
        Outcome::Failed { reason } => Err(reason.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use warden_runtime::FailureReason;

    use super::*;

    #[test]
    fn the_capacity_reasons_read_as_one_sentence() {
        for reason in [memory_full(100, 10), containers_full(2)] {
            assert!(!reason.contains("  "), "{reason}");
        }
        assert!(memory_full(100, 10).contains("is taken by the containers alive (10 bytes each"));
    }

    #[test]
    fn a_failed_exit_says_the_code_and_nothing_the_algorithm_printed() {
        let report = warden_runtime::RunReport {
            run_id: "run-1".into(),
            outcome: Outcome::Failed {
                reason: FailureReason::NonZeroExit(3),
            },
            exit_code: Some(3),
            logs: b"one\nthe secret is 42\n".to_vec(),
            removed: true,
        };
        assert_eq!(
            outcome_of(&report).unwrap_err(),
            "the algorithm exited with code 3"
        );
    }

    #[test]
    fn a_result_is_sealed_to_the_reply_key_and_bound_to_the_run() {
        let org = warden_seal::SecretKey::generate();
        let researcher = warden_seal::SecretKey::generate();
        let digest = format!("sha256:{}", "c".repeat(64));
        let nonce = warden_seal::new_nonce();
        let mut record = RunRecord::received(9, 1, 2, 3, "x");
        record.reply_key = Some(researcher.public_key().to_base64());
        record.nonce = Some(nonce.clone());
        record.organization = Some("hospital-b".into());
        record.digest = Some(digest.clone());
        let sealed = seal_output(&org, &record, b"42").unwrap();
        let (binding, body) = warden_seal::open_result(
            &researcher,
            &org.public_key(),
            warden_seal::Kind::Result,
            &sealed,
        )
        .unwrap();
        assert_eq!(&body[..], b"42");
        assert_eq!(
            binding,
            warden_seal::ResultBinding {
                nonce,
                run_id: 9,
                organization: "hospital-b".into(),
                digest,
            }
        );
        // A record of an older node (no reply key) is never sealed another way, nor sent plain.
        let mut old = RunRecord::received(9, 1, 2, 3, "x");
        old.result_key = Some(researcher.public_key().to_base64());
        let e = seal_output(&org, &old, b"42").unwrap_err();
        assert!(e.contains("older version"), "{e}");
        // Plaintext only when the node decided so.
        let mut plain = RunRecord::received(9, 1, 2, 3, "x");
        plain.plaintext = true;
        assert_eq!(seal_output(&org, &plain, b"42").unwrap(), b"42");
    }
}
