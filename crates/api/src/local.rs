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
