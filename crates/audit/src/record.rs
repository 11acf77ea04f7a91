//! One audit record: a decision or a run at the node.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What happened: the admission decision for a run, or the run itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Decision,
    Run,
}

/// How it ended: a decision admits or rejects, a run completes or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Admitted,
    Rejected,
    Completed,
    Failed,
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
}
