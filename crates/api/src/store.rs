//! HTTP JSON wire types of the algorithm store (docs/store.md), shared by the store, its client
//! and the node that checks approvals. Errors use the server's [`crate::ErrorBody`].
//!
//! Request bodies refuse unknown fields. Leaf bytes and envelopes travel as standard base64 of
//! their exact bytes, so that a client hashes what the store hashed.

use serde::{Deserialize, Serialize};

/// Most log entries one `GET /api/log/entries` returns.
pub const MAX_LOG_ENTRIES_PAGE: u64 = 1000;

/// A role of a store account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreRole {
    Administrator,
    Developer,
    Reviewer,
}

impl StoreRole {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreRole::Administrator => "administrator",
            StoreRole::Developer => "developer",
            StoreRole::Reviewer => "reviewer",
        }
    }

    pub fn parse(s: &str) -> Option<StoreRole> {
        match s {
            "administrator" => Some(StoreRole::Administrator),
            "developer" => Some(StoreRole::Developer),
            "reviewer" => Some(StoreRole::Reviewer),
            _ => None,
        }
    }
}

/// A version's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    Submitted,
    UnderReview,
    Approved,
    Rejected,
    Revoked,
    Replaced,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Submitted => "submitted",
            VersionState::UnderReview => "under_review",
            VersionState::Approved => "approved",
            VersionState::Rejected => "rejected",
            VersionState::Revoked => "revoked",
            VersionState::Replaced => "replaced",
        }
    }

    pub fn parse(s: &str) -> Option<VersionState> {
        [
            VersionState::Submitted,
            VersionState::UnderReview,
            VersionState::Approved,
            VersionState::Rejected,
            VersionState::Revoked,
            VersionState::Replaced,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What a log leaf records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Submission,
    Approval,
    Rejection,
    Revocation,
    Reinstatement,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Submission => "submission",
            EntryKind::Approval => "approval",
            EntryKind::Rejection => "rejection",
            EntryKind::Revocation => "revocation",
            EntryKind::Reinstatement => "reinstatement",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        [
            EntryKind::Submission,
            EntryKind::Approval,
            EntryKind::Rejection,
            EntryKind::Revocation,
            EntryKind::Reinstatement,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Argument kind of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionKind {
    Central,
    Partial,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argument {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean`, `array` or `object`.
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    pub name: String,
    pub kind: FunctionKind,
    #[serde(default)]
    pub arguments: Vec<Argument>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRules {
    pub min_approvals: u32,
    pub min_organizations: u32,
    pub reviewers_from_other_organization: bool,
    pub replaced_remain_valid: bool,
}

/// `GET /api/store`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    pub name: String,
    /// The checkpoint origin (`warden-store/<name>`), also the note key name.
    pub origin: String,
    /// PEM of the store's Ed25519 public key.
    pub public_key: String,
    /// sha256 of the key's DER SubjectPublicKeyInfo, hex.
    pub key_id: String,
    /// The C2SP note verifier key (`origin+hash+base64`).
    pub note_key: String,
    pub review: ReviewRules,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub account: Account,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub organization: String,
    pub roles: Vec<StoreRole>,
    /// The registered public key (PEM) reviews must verify against.
    pub public_key: Option<String>,
    pub key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub username: String,
    pub password: String,
    pub organization: String,
    pub roles: Vec<StoreRole>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterKey {
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: i64,
    pub name: String,
}

/// `POST /api/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    pub algorithm: String,
    #[serde(default)]
    pub description: String,
    /// Source repository URL.
    pub source: String,
    /// `repo@sha256:...` or `repo:tag` (resolved once by the store).
    pub image: String,
    /// Source commit (40 or 64 lowercase hex).
    pub commit: String,
    /// The version's name; the store numbers versions 1, 2, ... when absent.
    #[serde(default)]
    pub version: Option<String>,
    pub functions: Vec<Function>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Algorithm {
    pub name: String,
    pub description: String,
    pub source: String,
    pub organization: String,
    pub versions: Vec<Version>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    pub reviewer: String,
    pub organization: String,
    pub decision: String,
    pub comment: Option<String>,
    pub leaf_index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub id: i64,
    pub algorithm: String,
    pub version: String,
    pub repository: String,
    pub digest: String,
    /// The tag given at submission, if any (never identity).
    pub tag: Option<String>,
    pub commit: String,
    pub source: String,
    pub functions: Vec<Function>,
    pub state: VersionState,
    pub submitter: String,
    pub organization: String,
    pub assigned: Vec<String>,
    pub reviews: Vec<ReviewRecord>,
    /// Why it was revoked, replaced or reinstated.
    pub reason: Option<String>,
    /// Leaf index of its submission.
    pub leaf_index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    pub reviewer: String,
}

/// `POST /api/versions/{id}/reviews`: the DSSE envelope JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitReview {
    /// Standard base64 of the exact envelope bytes.
    pub envelope: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    pub reason: String,
    /// A reviewer's signed revocation (base64 of the envelope bytes); absent for an
    /// administrator, whose revocation the store signs.
    #[serde(default)]
    pub envelope: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reinstate {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub index: u64,
    pub kind: EntryKind,
    /// Standard base64 of the exact leaf bytes (a DSSE envelope).
    pub leaf: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntries {
    pub entries: Vec<LogEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    pub leaf_hash: String,
    /// Hex hashes, leaf to root.
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceEntry {
    pub index: u64,
    pub kind: EntryKind,
    pub version_id: i64,
    pub algorithm: String,
    pub version: String,
    /// Standard base64 of the exact leaf bytes (the DSSE envelope).
    pub leaf: String,
    /// Inclusion proof at the evidence's `size`, hex.
    pub hashes: Vec<String>,
}

/// `GET /api/evidence/{digest}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub store: String,
    /// The signed note text of the checkpoint the proofs are at.
    pub checkpoint: String,
    pub size: u64,
    pub entries: Vec<EvidenceEntry>,
}

/// A store's evidence for one digest as `warden image export` fetched it, carried in an image
/// archive to an air-gapped node (an OCI referrer of the image): the store's answer to
/// `GET /api/evidence/{digest}`, and consistency proofs from the log sizes the exporter was
/// told an offline node last verified (`--store-since`). The node verifies it all as if the
/// store had answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEvidence {
    pub evidence: Evidence,
    #[serde(default)]
    pub consistency: Vec<ConsistencyProof>,
}

/// Predicate type of the store-signed submission statement (a `submission` leaf).
pub const SUBMISSION_PREDICATE_V1: &str = "https://warden.dev/store/submission/v1";
/// Predicate type of the store-signed reinstatement statement (a `reinstatement` leaf).
pub const REINSTATEMENT_PREDICATE_V1: &str = "https://warden.dev/store/reinstatement/v1";
/// The checkpoint origin (and note key name) of a store named `name`.
pub fn origin(name: &str) -> String {
    format!("warden-store/{name}")
}

/// Largest relayed checkpoint note, in bytes (a C2SP note is at most 64 KiB).
pub const MAX_RELAYED_CHECKPOINT: usize = 64 << 10;
/// Largest verifier key string of a relayed checkpoint, in bytes.
pub const MAX_RELAYED_KEY: usize = 512;

/// A checkpoint of an algorithm store that a node verified, relayed through the coordination
/// server so that nodes shown different histories find out (split views). The server keeps
/// the latest one of each node per store name and key, and hands them to every node; it cannot
/// forge one (each node verifies the note under the key it pins), only withhold them.
/// `PUT /api/store-checkpoints` (a node reports its own) and, in
/// [`RelayedCheckpoints`], `GET /api/store-checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RelayedCheckpoint {
    /// The store's name (its `[store] name`; the note's origin is `warden-store/<name>`).
    pub store: String,
    /// The C2SP verifier key the reporting node verified the note under
    /// (`warden-store/<name>+<hex>+<base64>`).
    pub key: String,
    /// The signed note, as the store served it.
    pub checkpoint: String,
}

/// `GET /api/store-checkpoints`: the latest checkpoint each node reported, per store and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RelayedCheckpoints {
    pub checkpoints: Vec<RelayedCheckpoint>,
}
