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
/// `POST` an OCI image layout archive (`warden image export`) to an offline node
/// (`[registry] offline = true`): it is verified against the node's policy as a run would be,
/// for the requester named by the query (`organization`, `user`, `collaboration`, `function`,
/// each optional), loaded into the engine by digest and kept; answers [`Imported`].
pub const IMPORT_PATH: &str = "/v1/images/import";
/// Largest image archive the node takes, in bytes.
pub const MAX_IMPORT_BYTES: u64 = 8 << 30;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Imported {
    /// The image as the archive names it (`registry/path:tag`, or `@digest`).
    pub image: String,
    /// The manifest digest the node resolved from the archive and will run.
    pub digest: String,
    /// The engine's image ID (the config digest of the platform manifest).
    pub image_id: String,
    /// The rule that permitted it (`allow[N] name`).
    pub rule: String,
    /// Verified cosign signers (key IDs).
    pub signers: Vec<String>,
    /// Store approvals that counted, as `store: key (organization) at index N`.
    pub approvals: Vec<String>,
    /// Build attestations that verified, as `key built COMMIT PATH`.
    pub builds: Vec<String>,
    /// Evidence found that did not count, and why.
    pub not_counted: Vec<String>,
}

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

/// `GET`: the policy in force, as the node parsed it at start, a [`PolicyView`].
pub const POLICY_PATH: &str = "/v1/policy";
/// `GET ?kind=&run=&outcome=&after=&before=&since=&until=&limit=`: audit records, newest
/// first, an [`AuditPage`]. Unknown parameters are refused (400).
pub const AUDIT_PATH: &str = "/v1/audit";
/// `GET`: the audit log verified with the node's key as `warden audit verify` does, an
/// [`AuditVerification`].
pub const AUDIT_VERIFY_PATH: &str = "/v1/audit/verify";
/// Records in one [`AuditPage`] when `limit` is not given.
pub const DEFAULT_AUDIT_LIMIT: usize = 50;
/// The largest `limit` of an audit page.
pub const MAX_AUDIT_LIMIT: usize = 500;

/// The answer to `GET /v1/policy`: the file, its hash and every rule as the node holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyView {
    pub file: String,
    /// `sha256:<hex>` of the file's bytes as loaded at start.
    pub sha256: String,
    /// The policy format version.
    pub version: i64,
    /// `[[allow]]` rules in file order (the first that holds admits).
    pub allow: Vec<RuleView>,
    /// `[[deny]]` rules in file order (any that holds denies).
    pub deny: Vec<RuleView>,
}

/// One rule, each condition as the node parsed it; `None` is a condition not stated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleView {
    /// `allow[1]`, `deny[2]`: the name audit records and reasons use.
    pub name: String,
    /// The line of its `[[allow]]`/`[[deny]]` header.
    pub line: usize,
    /// Exactly this normalised repository, or every one the whole regex matches.
    pub repository: Option<String>,
    pub repository_regex: Option<String>,
    pub digests: Option<Vec<String>>,
    pub signed_by: Option<SignedByView>,
    pub approved_by: Option<ApprovedByView>,
    /// `reproduced_by`: independent builders' provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproduced_by: Option<ReproducedByView>,
    pub organizations: Option<Vec<String>>,
    pub users: Option<Vec<String>>,
    pub collaborations: Option<Vec<String>>,
    pub functions: Option<Vec<String>>,
    /// The output rules (`[allow.output]`), in the words `warden policy check` prints;
    /// `none (release automatic)` when unrestricted.
    pub output: String,
}

/// A key a condition counts, and the files that held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyView {
    /// `sha256:<hex>` of its DER SubjectPublicKeyInfo.
    pub id: String,
    pub files: Vec<String>,
}

/// `signed_by`: at least `threshold` of these distinct keys signed the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedByView {
    pub threshold: usize,
    pub keys: Vec<KeyView>,
    /// `signed_by.notary`: Notary Project signers the condition counts with the keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notary: Option<NotaryView>,
}

/// `signed_by.notary`: signatures chained to `trust_store` from a certificate matching one of
/// `identities` (`x509.subject: ...`, or `*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotaryView {
    pub trust_store: String,
    pub identities: Vec<String>,
}

/// `reproduced_by`: at least `min` of these distinct builder keys attest a build of the digest
/// from one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReproducedByView {
    pub min: usize,
    /// The `keys` entries as written, and the distinct keys they hold.
    pub patterns: Vec<String>,
    pub keys: Vec<KeyView>,
}

/// `approved_by`: reviews in an algorithm store's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovedByView {
    pub store: String,
    pub min_approvals: usize,
    pub min_organizations: usize,
    /// The `reviewers` entries as written, and the distinct keys they hold.
    pub patterns: Vec<String>,
    pub reviewers: Vec<KeyView>,
}

/// One audit record with its line number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339, as the log writes it.
    pub time: String,
    /// `decision`, `run`, `view`, `release`, `refuse`, `approve`, `refuse_digest`, `logs`,
    /// `store_refused`, `cancel`.
    pub event: String,
    pub outcome: String,
    pub run_id: Option<i64>,
    pub task_id: Option<i64>,
    pub organization: Option<String>,
    pub user: Option<String>,
    pub function: Option<String>,
    pub image: String,
    pub digest: Option<String>,
    pub rule: Option<String>,
    pub signers: Vec<String>,
    pub reason: Option<String>,
    /// The local user of an airlock event: `alice (uid 1000)`.
    pub by: Option<String>,
}

/// The answer to `GET /v1/audit`: the matching records, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// When older records match: pass it as `before` for the next page.
    pub next_before: Option<u64>,
    /// Lines in the log when it was read.
    pub lines: u64,
}

/// The answer to `GET /v1/audit/verify`, with `warden audit verify`'s meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditVerification {
    pub path: String,
    /// The node key's id the checkpoints were checked against.
    pub key: String,
    /// `intact`, `uncovered` (entries after the last signed checkpoint), `incomplete` (a torn
    /// last line) or `tampered`.
    pub status: String,
    /// `warden audit verify`'s exit status for it (0 intact or uncovered, 1 otherwise).
    pub exit: u8,
    /// For a chain that links: record entries, those a checkpoint covers, checkpoints, the
    /// uncovered ones.
    pub entries: Option<u64>,
    pub covered: Option<u64>,
    pub checkpoints: Option<u64>,
    pub uncovered: Option<u64>,
    /// The line a tampering was found at.
    pub line: Option<u64>,
    /// What verification found, in Warden's words.
    pub problems: Vec<String>,
}
