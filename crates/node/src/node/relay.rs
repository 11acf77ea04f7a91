//! Split views: the node reports the latest checkpoint it verified of each algorithm store to
//! the server, and checks the ones other nodes reported (relayed by the server) against its
//! own with [`crate::stores::Stores::check_peer_checkpoint`]. A checkpoint of the same store
//! under the same pinned key that is not consistent with this node's is a fork: the store is
//! refused (the marker, a loud log line) and the refusal is an audit record. The server cannot
//! forge a checkpoint (the note must verify under the key this node pins; one that does not is
//! ignored with a log line, never taken as evidence either way), only withhold them; nothing
//! it relays makes this node accept more.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;
use warden_api::store::RelayedCheckpoint;
use warden_audit::{Event as AuditEvent, Outcome as AuditOutcome, Record};

use super::Node;

/// Most (store, relayed note, own note) triples remembered as already found consistent.
const MAX_REMEMBERED: usize = 10_000;

/// What the relay remembers between rounds.
#[derive(Debug, Default)]
pub(super) struct RelayState {
    /// Store -> the note last reported to the server.
    sent: BTreeMap<String, String>,
    /// (store, relayed note, own note) already found consistent.
    consistent: BTreeSet<(String, String, String)>,
}

impl Node {
    /// One round: report this node's checkpoints that changed, then check every relayed one.
    pub(super) async fn relay_checkpoints(&self, state: &mut RelayState) {
        let s = &self.inner;
        let Some(stores) = s.gate.stores().cloned() else {
            return;
        };
        if stores.is_empty() {
            return;
        }
        let mut own: BTreeMap<String, String> = BTreeMap::new();
        for name in stores.names() {
            match stores.saved_checkpoint(name) {
                Ok(Some((_, note))) => {
                    own.insert(name.to_owned(), note);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(store = name, error = %e, "cannot read the saved store checkpoint to relay it")
                }
            }
        }
        for (name, note) in &own {
            if state.sent.get(name) == Some(note) {
                continue;
            }
            let Some(pinned) = stores.get(name) else {
                continue;
            };
            let report = RelayedCheckpoint {
                store: name.clone(),
                key: pinned.verifier.to_string(),
                checkpoint: note.clone(),
            };
            match s.server.put_store_checkpoint(&report).await {
                Ok(()) => {
                    state.sent.insert(name.clone(), note.clone());
                }
                Err(e) => {
                    tracing::debug!(store = %name, error = %e, "cannot report the store checkpoint; retried next round");
                }
            }
        }
        let relayed = match s.server.store_checkpoints().await {
            Ok(r) => r.checkpoints,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the relayed store checkpoints; retried next round");
                return;
            }
        };
        for c in relayed {
            let Some(pinned) = stores.get(&c.store) else {
                continue;
            };
            // Another key's checkpoints are not this node's to judge.
            if c.key != pinned.verifier.to_string() {
                continue;
            }
            let Some(mine) = own.get(&c.store) else {
                // Nothing verified yet to compare with.
                continue;
            };
            if &c.checkpoint == mine || stores.is_refused(&c.store) {
                continue;
            }
            let seen = (c.store.clone(), c.checkpoint.clone(), mine.clone());
            if state.consistent.contains(&seen) {
                continue;
            }
            match stores.check_peer_checkpoint(&c.store, &c.checkpoint).await {
                Ok(_) => {
                    if state.consistent.len() >= MAX_REMEMBERED {
                        state.consistent.clear();
                    }
                    state.consistent.insert(seen);
                }
                Err(r) if r.is_inconsistent() => {
                    // `check_peer_checkpoint` wrote the marker and the loud log line.
                    let record = Record {
                        time: OffsetDateTime::now_utc(),
                        event: AuditEvent::StoreRefused,
                        run_id: None,
                        task_id: None,
                        organization: None,
                        user: None,
                        collaboration: None,
                        function: None,
                        image: String::new(),
                        digest: None,
                        rule: None,
                        signers: Vec::new(),
                        input_sha256: None,
                        output_sha256: None,
                        outcome: AuditOutcome::Rejected,
                        reason: Some(r.to_string()),
                        by: None,
                        approvals: Vec::new(),
                    };
                    if self.audit(record).is_err() {
                        tracing::error!(store = %c.store, "the store's refusal could not be written to the audit log");
                    }
                }
                Err(r) => {
                    tracing::warn!(store = %c.store, reason = %r, "a relayed store checkpoint is ignored: it is not evidence either way");
                }
            }
        }
    }
}
