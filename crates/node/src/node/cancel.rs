//! Cancellation: the server says a run was cancelled (a `run_cancelled` event, pushed or
//! polled). The server's word can only stop a run here, never start or release one: a cancel for
//! a run this node does not have is ignored; for one it has, the container is removed (killed)
//! at once, a queued run never starts, a held or spooled result is dropped, and nothing of the
//! run is sealed, uploaded or reported afterwards. One `cancel` audit record names the run and
//! who cancelled it as the server claims it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use warden_audit::{Event as AuditEvent, Outcome as AuditOutcome};

use super::Node;
use super::airlock::record_of;
use crate::spool::Phase;

/// While a cancelled run's container may still come into being, how often it is removed again.
const KILL_EVERY: Duration = Duration::from_millis(100);
/// Longest claimed name kept in the audit record's reason.
const MAX_CLAIM_CHARS: usize = 200;

/// The runs cancelled while this process handles them, each with a signal its execution waits
/// on. Entries go when the run's handling ends ([`Cancels::forget`]).
#[derive(Debug, Default)]
pub(super) struct Cancels {
    runs: Mutex<HashMap<i64, watch::Sender<bool>>>,
}

impl Cancels {
    fn sender(map: &mut HashMap<i64, watch::Sender<bool>>, run: i64) -> &watch::Sender<bool> {
        map.entry(run).or_insert_with(|| watch::channel(false).0)
    }

    /// Marks the run cancelled; whether it was not already.
    pub(super) fn cancel(&self, run: i64) -> bool {
        let mut map = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        !Self::sender(&mut map, run).send_replace(true)
    }

    pub(super) fn is_cancelled(&self, run: i64) -> bool {
        let map = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&run).is_some_and(|tx| *tx.borrow())
    }

    /// A receiver that sees `true` once the run is cancelled.
    pub(super) fn watch(&self, run: i64) -> watch::Receiver<bool> {
        let mut map = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        Self::sender(&mut map, run).subscribe()
    }

    /// The run's handling ended: nothing waits on its signal any more.
    pub(super) fn forget(&self, run: i64) {
        let mut map = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&run);
    }
}

/// What a cancellation found of the run at this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Waiting for a run slot, or being admitted: it never starts.
    InFlight,
    /// Its result held in the airlock: dropped.
    Held,
    /// Waiting for its digest's approval: it never runs.
    AwaitingApproval,
    /// Finished, its outcome in the spool waiting for delivery: dropped.
    Undelivered,
}

impl Node {
    /// A `run_cancelled` event for `run_id`, claimed by the server to come from `by`.
    pub(super) async fn on_cancel(&self, run_id: i64, by: Option<&str>) {
        let s = &self.inner;
        let active = s
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&run_id);
        let spooled = s.spool.load(run_id).ok().flatten();
        let found = match (&spooled, active) {
            (_, true) => Found::InFlight,
            (Some(r), false) => match r.phase {
                Phase::AwaitingRelease => Found::Held,
                Phase::AwaitingApproval => Found::AwaitingApproval,
                Phase::Finished => Found::Undelivered,
                // Left by an earlier process and settled by its recovery.
                Phase::Received | Phase::Admitted | Phase::Running => Found::Undelivered,
            },
            (None, false) => {
                tracing::info!(
                    run = run_id,
                    "the server cancelled a run this node does not have; ignored"
                );
                return;
            }
        };
        if !s.cancels.cancel(run_id) {
            return;
        }
        let what = match found {
            Found::InFlight => {
                // Its execution watches the signal: the container is removed now if it runs.
                self.kill_now(run_id).await;
                "the run was stopped (a container it had was removed) and nothing of it leaves \
                 the node"
            }
            Found::Held => {
                let _guard = s.airlock_lock.lock().await;
                if let Err(e) = s.airlock.remove(run_id) {
                    tracing::error!(run = run_id, error = %e, "cannot drop the held result of a cancelled run");
                }
                "the result held for release was dropped and nothing of the run leaves the node"
            }
            Found::AwaitingApproval => "the run waited for its digest's approval and never runs",
            Found::Undelivered => {
                "the undelivered outcome was dropped and nothing of the run leaves the node"
            }
        };
        if !active {
            // Not being handled: nothing else will clean up after it.
            self.discard(run_id);
            s.cancels.forget(run_id);
        }
        let mut a = record_of(
            AuditEvent::Cancel,
            spooled.as_ref(),
            AuditOutcome::Cancelled,
        );
        a.run_id = Some(run_id);
        a.time = OffsetDateTime::now_utc();
        a.reason = Some(format!("{}: {what}", claim(by)));
        if self.audit(a).is_err() {
            // The run is stopped all the same: a cancel only makes the node stricter.
            tracing::error!(
                run = run_id,
                "the cancellation could not be recorded in the audit log; the run is stopped all the same"
            );
        }
        tracing::info!(run = run_id, found = ?found, "run cancelled at the server's request");
    }

    /// Whether the run was cancelled (its handling then stops and sends nothing).
    pub(super) fn cancelled(&self, run_id: i64) -> bool {
        self.inner.cancels.is_cancelled(run_id)
    }

    /// Drops everything the node kept of a cancelled run: its record, a spooled or held
    /// result, sealed logs, withheld output and working directories.
    pub(super) fn discard(&self, run_id: i64) {
        let s = &self.inner;
        let _ = s.airlock.remove(run_id);
        let _ = s.spool.remove_result(run_id);
        let _ = s.spool.remove_sealed_logs(run_id);
        let _ = std::fs::remove_file(s.spool.withheld_path(run_id));
        s.spool.remove_work(run_id);
        if let Err(e) = s.spool.remove(run_id) {
            tracing::error!(run = run_id, error = %e, "cannot remove the record of a cancelled run");
        }
    }

    /// Removes the run's container (killing it) if it exists.
    async fn kill_now(&self, run_id: i64) {
        use warden_runtime::Engine as _;
        let s = &self.inner;
        let name = warden_runtime::container_name(&s.label, &format!("run-{run_id}"));
        if let Err(e) = s.engine.remove_container(&name).await {
            tracing::warn!(run = run_id, error = %e, "cannot remove the container of a cancelled run; retrying");
        }
    }

    /// Runs `run` (the container's whole life) while removing the container again and again
    /// once the run is cancelled, until `run` has ended.
    pub(super) async fn killable<T>(&self, run_id: i64, run: impl Future<Output = T>) -> T {
        let mut cancelled = self.inner.cancels.watch(run_id);
        tokio::pin!(run);
        let signal = async {
            let _ = cancelled.wait_for(|c| *c).await;
        };
        tokio::pin!(signal);
        tokio::select! {
            out = &mut run => return out,
            () = &mut signal => {}
        }
        loop {
            self.kill_now(run_id).await;
            tokio::select! {
                out = &mut run => return out,
                () = tokio::time::sleep(KILL_EVERY) => {}
            }
        }
    }
}

/// Who cancelled, as the server claims it, made safe for one line of the log.
fn claim(by: Option<&str>) -> String {
    match by {
        Some(name) => {
            let name: String = warden_api::display::safe(name)
                .chars()
                .take(MAX_CLAIM_CHARS)
                .collect();
            format!("cancelled at the server by {name} (the server's claim)")
        }
        None => "cancelled at the server (the server names nobody)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_is_kept_once_and_signalled_to_its_watchers() {
        let c = Cancels::default();
        let rx = c.watch(7);
        assert!(!*rx.borrow());
        assert!(!c.is_cancelled(7));
        assert!(c.cancel(7));
        assert!(!c.cancel(7), "a second cancel is not new");
        assert!(*rx.borrow());
        assert!(c.is_cancelled(7) && !c.is_cancelled(8));
        c.forget(7);
        assert!(!c.is_cancelled(7));
    }

    #[test]
    fn the_claimed_name_is_made_safe_and_bounded() {
        let long = "x".repeat(1000);
        assert!(claim(Some(&long)).len() < 300);
        assert!(!claim(Some("evil\nname\u{202e}")).contains('\n'));
        assert!(claim(None).contains("names nobody"));
    }
}
