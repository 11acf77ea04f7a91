//! The node's local API, as the data owner's `warden node pending|show|release|refuse|approve|
//! refuse-digest` speak it over the node's Unix socket (`[local] socket`; no network listener).
//! The node serves it (crates/node/src/local.rs), knows who asks from the socket's peer
//! credentials, and records every view, release, refusal and approval in its audit log.
//! docs/node.md describes it.
//!
//! Errors travel as the server's [`crate::ErrorBody`].

use serde::{Deserialize, Serialize};

/// `GET`: both queues, a [`Pending`].
pub const PENDING_PATH: &str = "/v1/pending";
/// `GET {RUNS_PATH}/{run}`: a held result in plaintext ([`HeldResult`]); `POST
/// {RUNS_PATH}/{run}/release` releases it, `POST {RUNS_PATH}/{run}/refuse` with a [`Refusal`]
/// refuses it; both answer an [`Answer`].
pub const RUNS_PATH: &str = "/v1/runs";
/// `POST` a [`DigestDecision`] without a reason: the digest runs from now on.
pub const APPROVE_PATH: &str = "/v1/digests/approve";
/// `POST` a [`DigestDecision`] with a reason: the runs waiting for that digest fail with it.
pub const REFUSE_DIGEST_PATH: &str = "/v1/digests/refuse";
/// Longest reason a data owner may give, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// A result held at the node until its owner releases it (`release = "manual"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingResult {
    pub run_id: i64,
    pub task_id: i64,
    pub image: String,
    pub digest: Option<String>,
    /// The allow rule that admitted the run, e.g. `allow[1]`.
    pub rule: Option<String>,
    /// Size and `sha256:<hex>` of the plaintext result.
    pub bytes: u64,
    pub sha256: String,
    /// Unix seconds: held since, and refused automatically at.
    pub held_at: i64,
    pub deadline: i64,
    /// How many different local users must release it, and who already did.
    pub checkers: u32,
    pub released_by: Vec<String>,
}

/// A run waiting for its owner to approve its image digest (`first_run = "approve"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingApproval {
    pub run_id: i64,
    pub task_id: i64,
    pub image: String,
    pub digest: String,
    pub rule: Option<String>,
    pub waiting_since: i64,
    pub deadline: i64,
}

/// The answer to `GET /v1/pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub results: Vec<PendingResult>,
    pub approvals: Vec<PendingApproval>,
}

/// The answer to `GET /v1/runs/{run}`: the held result in plaintext, at the node only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldResult {
    pub pending: PendingResult,
    /// The result's bytes, base64 (standard, padded).
    pub result_base64: String,
}

/// The body of a refusal: the data owner's reason, sent to the researcher as the run's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    pub reason: String,
}

/// The body of `POST /v1/digests/approve` (no reason) and `/v1/digests/refuse` (a reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestDecision {
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a release, refusal or approval did, in words for the data owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub message: String,
    /// For a release: whether the result left the node (every checker released it).
    #[serde(default)]
    pub done: bool,
    /// The runs the decision moved (a digest's approval starts every run waiting for it).
    #[serde(default)]
    pub runs: Vec<i64>,
}

/// `GET`: the node's health and what it holds, a [`Status`] (`warden node status`).
pub const STATUS_PATH: &str = "/v1/status";

/// The answer to `GET /v1/status`: what the node tracks about itself, for its data owner.
/// docs/node.md documents every field. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// No problem below: the audit log is writable and the server answered the last exchange.
    pub healthy: bool,
    /// One sentence per problem, in Warden's words (empty when healthy).
    pub problems: Vec<String>,
    pub node: NodeStatus,
    pub server: ServerStatus,
    pub policy: PolicyStatus,
    pub runs: RunsStatus,
    pub self_check: SelfCheckStatus,
    pub audit: AuditStatus,
}

/// Who the node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStatus {
    pub node_id: i64,
    /// This organization's name (its `[organizations]` pin) and the server's ids.
    pub organization: String,
    pub organization_id: i64,
    pub collaboration_id: i64,
    /// The label value on its containers.
    pub label: String,
    pub started_at: i64,
}

/// The connection to the coordination server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerStatus {
    pub url: String,
    /// The last exchange with the server succeeded.
    pub connected: bool,
    /// The WebSocket event push is connected (otherwise the node polls).
    pub event_push: bool,
    /// Last successful exchange.
    pub last_contact: Option<i64>,
    /// The last failed exchange, in Warden's words (never the server's text).
    pub last_error: Option<ContactError>,
}

/// A failed exchange with the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactError {
    pub at: i64,
    pub message: String,
}

/// The policy the node loaded at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyStatus {
    pub file: String,
    /// `sha256:<hex>` of the file's bytes as loaded.
    pub sha256: String,
    /// The policy format version (`version = 1`).
    pub version: i64,
    pub allow_rules: usize,
    pub deny_rules: usize,
}

/// Run ids in one state, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSet {
    pub count: usize,
    pub ids: Vec<i64>,
}

impl RunSet {
    pub fn of(mut ids: Vec<i64>) -> RunSet {
        ids.sort_unstable();
        ids.dedup();
        RunSet {
            count: ids.len(),
            ids,
        }
    }
}

/// The runs the node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsStatus {
    /// Taken: between their run slot and their delivery.
    pub in_flight: RunSet,
    /// Waiting for a run slot (`[limits] concurrent_runs`).
    pub queued: RunSet,
    /// Results held for release (`warden node pending`).
    pub held_results: RunSet,
    /// Runs waiting for a digest's approval.
    pub awaiting_approval: RunSet,
    pub concurrent_runs: u32,
}

/// The isolation self-check (the probe run hardened), done at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfCheckStatus {
    pub passed: bool,
    pub at: i64,
    pub probe: String,
}

/// The audit log's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditStatus {
    pub path: String,
    /// Its last append succeeded and the file can be opened for writing now (what the node
    /// does again after a failed write).
    pub writable: bool,
    /// When not writable: `audit log unavailable: ...`, in Warden's words.
    pub problem: Option<String>,
    /// Record entries, and those after the last signed checkpoint (unknown while the log is
    /// closed after a failure).
    pub entries: Option<u64>,
    pub uncovered: Option<u64>,
    /// When this node process last signed a checkpoint (none since start: null).
    pub last_checkpoint_at: Option<i64>,
}
