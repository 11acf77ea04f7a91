//! One audit record: a decision or a run at the node.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What happened: the admission decision for a run, or the run itself; or what a local user
/// of the node did at its airlock (the node's local socket): viewed a held result, released or
/// refused it, approved or refused an image digest. Those name the user in [`Record::by`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Decision,
    Run,
    /// A held result was shown in plaintext at the node.
    View,
    /// A held result was released (by one checker; the result leaves once all did).
    Release,
    /// A held result was refused: its run fails with the data owner's reason.
    Refuse,
    /// An image digest was approved: it runs without asking from now on.
    Approve,
    /// An image digest was refused: the runs waiting for it fail.
    RefuseDigest,
    /// What a run's algorithm printed was released (sealed for the requester) or withheld
    /// (kept at the node), with the reason.
    Logs,
    /// An algorithm store was refused: a checkpoint another node verified (relayed by the
    /// server) is not consistent with the one this node verified, a fork. `image` is empty;
    /// the reason names the store.
    StoreRefused,
    /// The server said the run was cancelled: the node stopped it (a container removed, a
    /// queued run dropped, a held or undelivered result dropped) and nothing of it leaves. The
    /// reason names who cancelled it as the server claims it.
    Cancel,
    /// An image archive was imported by a local user (an air-gapped node, `[registry] offline`):
    /// `image`, `digest`, `rule`, `signers` and `approvals` of the decision made on import,
    /// `done` when the image was loaded, `denied` with the reason otherwise.
    Import,
}

/// How it ended: a decision admits or rejects, a run completes or fails, or waits at the
/// airlock; a local user's request is done or denied (with the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Admitted,
    Rejected,
    Completed,
    Failed,
    /// The result passed its checks and is held until it is released.
    AwaitingRelease,
    /// The run waits for its image digest to be approved.
    AwaitingApproval,
    /// A local user's request was carried out.
    Done,
    /// A local user's request was refused (the reason says why).
    Denied,
    /// A run's logs were sealed for the requester (`output_sha256` is the sealed bytes').
    Released,
    /// A run's logs stay at the node (the reason says why; `output_sha256` is the plaintext's).
    Withheld,
    /// A run was stopped because the server said it was cancelled.
    Cancelled,
}

/// The local user who asked the node, from its socket's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalUser {
    pub uid: u32,
    pub gid: u32,
    /// The user's name in `/etc/passwd`, when it has one.
    pub name: Option<String>,
}

impl std::fmt::Display for LocalUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n} (uid {})", self.uid),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// One decision or run, as written in the `record` member of an entry line. Every field is
/// always written (absent values as `null`), in this order, so a line has one canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// When it happened (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub event: Event,
    pub run_id: Option<i64>,
    pub task_id: Option<i64>,
    /// The requesting organization.
    pub organization: Option<String>,
    /// The requesting user.
    pub user: Option<String>,
    pub collaboration: Option<String>,
    pub function: Option<String>,
    /// The image reference as requested (or normalised, as the node chooses to record it).
    pub image: String,
    /// The resolved manifest digest, once known.
    pub digest: Option<String>,
    /// The policy rule that matched.
    pub rule: Option<String>,
    /// Key IDs of the verified signers.
    pub signers: Vec<String>,
    /// `sha256:<hex>` of the (sealed) input.
    pub input_sha256: Option<String>,
    /// `sha256:<hex>` of the (sealed) output.
    pub output_sha256: Option<String>,
    pub outcome: Outcome,
    /// Why, for a rejection or failure.
    pub reason: Option<String>,
    /// Who asked, for what a local user did at the airlock (absent otherwise, so that the
    /// lines written before it existed keep their one canonical form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<LocalUser>,
    /// The algorithm store approvals that admitted the run, for a rule with `approved_by`
    /// (absent otherwise, so that the lines written before it existed keep their one canonical
    /// form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

/// One algorithm store approval that counted for the rule that admitted a run, as the node
/// verified it: included in the store's log, signed by a reviewer key the node pins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The store's name in the node configuration (`[[stores]] name`).
    pub store: String,
    /// The reviewer key that signed it: `sha256:<hex>` of its DER SubjectPublicKeyInfo.
    pub key_id: String,
    /// The organization the node's configuration maps that key to (never the envelope's).
    pub organization: String,
    /// The approval's leaf index in the store's log.
    pub index: u64,
}
