//! HTTP JSON wire types of the Warden coordination server.
//!
//! This is the only crate that defines what travels over HTTP: request and response bodies, the
//! error body, pagination, and the events a node receives. The server, the node and the CLI all
//! depend on it, so a change here is a change of the protocol.
//!
//! Request bodies refuse unknown fields. Binary payloads (encrypted inputs) travel as standard
//! base64 in JSON; results travel as raw `application/octet-stream` bodies.

#![forbid(unsafe_code)]

pub mod display;
pub mod local;
pub mod proxy;
pub mod store;
pub mod strict;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Version prefix of every API path.
pub const API_PREFIX: &str = "/api";

/// Largest page a list endpoint returns; a larger `limit` is refused.
pub const MAX_PAGE_LIMIT: u32 = 500;

/// Longest organization or collaboration name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest task name, in characters.
pub const MAX_TASK_NAME_CHARS: usize = 200;
/// Longest reason of a failed or rejected run, in characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// What the server accepts, as JSON Schema patterns in the OpenAPI document (ECMA-262 syntax;
/// the server's own checks decide, these describe them).
pub mod patterns {
    /// An organization or collaboration name: no control character, line or paragraph
    /// separator or bidirectional control, and no whitespace at either end.
    pub const NAME: &str = r"^[^\x00-\x20\x7f-\xa0\u061c\u1680\u2000-\u200a\u200e\u200f\u2028-\u202f\u205f\u2066-\u2069\u3000](?:[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]*[^\x00-\x20\x7f-\xa0\u061c\u1680\u2000-\u200a\u200e\u200f\u2028-\u202f\u205f\u2066-\u2069\u3000])?$";
    /// A task name: no control character, line or paragraph separator or bidirectional
    /// control; empty allowed.
    pub const TASK_NAME: &str =
        r"^[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$";
    /// A reason: not only whitespace; no control character but line breaks and tabs.
    pub const REASON: &str = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x08\x0b-\x1f\x7f-\x9f]*$";
    /// A user name.
    pub const USERNAME: &str = r"^[a-z0-9._@-]{1,64}$";
    /// A 32-byte X25519 public key in standard base64 (canonical: the last character's
    /// unused bits are zero).
    pub const PUBLIC_KEY: &str = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$";
    /// Standard base64 with padding.
    pub const BASE64: &str =
        r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";
    /// An image reference the server accepts (a subset of them: lower-case registry hosts, a
    /// port of 1 to 4 digits, no `.` in the repository path, sha256 digests), at most 200
    /// characters.
    pub const IMAGE: &str = r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[1-9][0-9]{0,3})?/)?[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$";
    /// A manifest digest.
    pub const DIGEST: &str = r"^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$";
    /// A task nonce (`warden_seal::valid_nonce`: 32 to 128 of these).
    pub const NONCE: &str = r"^[0-9A-Za-z_-]+$";
}

/// Page size when `limit` is absent.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Machine-readable error class; each maps to exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request body or a parameter is malformed or violates a limit.
    InvalidRequest,
    /// 401: no credential, or the credential is unknown, expired or revoked.
    Unauthenticated,
    /// 403: the credential is valid but does not allow this action on this resource.
    Forbidden,
    /// 404: no such resource (or it is not visible to the caller).
    NotFound,
    /// 405: the path exists but not with this method (the `Allow` header lists those that do).
    MethodNotAllowed,
    /// 409: the request conflicts with the current state (duplicate name, illegal transition).
    Conflict,
    /// 413: the body exceeds the size limit.
    PayloadTooLarge,
    /// 429: too many attempts; the account is temporarily locked.
    TooManyRequests,
    /// 500: a server fault; the details are in the server log, not in the body.
    Internal,
    /// 503: the server cannot reach its database.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status code for this class.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

/// The body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Code, human message and (for invalid requests) the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                field: None,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared enums
// ---------------------------------------------------------------------------------------------

/// A user's role. Root is global; the others are scoped to the user's organization and to the
/// collaborations that organization is a member of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Root,
    OrgAdmin,
    Researcher,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Root, Role::OrgAdmin, Role::Researcher, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::OrgAdmin => "org_admin",
            Role::Researcher => "researcher",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned when a role, state or similar name is not one of the known values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName(pub String);

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown name `{}`", self.0)
    }
}

impl std::error::Error for UnknownName {}

impl FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// The state of one run (one target organization of a task).
///
/// `pending -> admitted -> running -> completed | failed`, and `rejected` when the node's policy
/// refuses the run (from `pending` or `admitted`). `failed` is reachable from every non-final
/// state. The final states are `completed`, `failed` and `rejected`.
///
/// Two waits belong to the data owner's node (its airlock, docs/node.md): `awaiting_approval`
/// (from `admitted` or `running`, back to `running` once the node's owner approves the image
/// digest, or `failed` when they refuse it) and `awaiting_release` (from `running`, to
/// `completed` once the result is released, or `failed` when it is refused). Neither is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Pending,
    Admitted,
    Running,
    /// The node holds the image until its owner approves the digest (`first_run = "approve"`).
    AwaitingApproval,
    /// The node holds the result until its owner releases it (`release = "manual"`).
    AwaitingRelease,
    Completed,
    Failed,
    Rejected,
    /// The task's requester (or an administrator over it) cancelled the run before it ended
    /// (`POST /api/tasks/{id}/cancel`). Final: the node stops it and no result of it is taken.
    Cancelled,
}

impl RunState {
    pub const ALL: [RunState; 9] = [
        RunState::Pending,
        RunState::Admitted,
        RunState::Running,
        RunState::AwaitingApproval,
        RunState::AwaitingRelease,
        RunState::Completed,
        RunState::Failed,
        RunState::Rejected,
        RunState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Admitted => "admitted",
            RunState::Running => "running",
            RunState::AwaitingApproval => "awaiting_approval",
            RunState::AwaitingRelease => "awaiting_release",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Rejected => "rejected",
            RunState::Cancelled => "cancelled",
        }
    }

    /// A final state never changes again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Completed | RunState::Failed | RunState::Rejected | RunState::Cancelled
        )
    }

    /// Whether the state machine allows `self -> next` as a node's report. `cancelled` is
    /// never a node's report: only a cancellation (`POST /api/tasks/{id}/cancel`) moves a
    /// non-final run there.
    pub fn can_become(self, next: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, next),
            (Pending, Admitted)
                | (Pending, Rejected)
                | (Pending, Failed)
                | (Admitted, Running)
                | (Admitted, Rejected)
                | (Admitted, Failed)
                | (Admitted, AwaitingApproval)
                | (Running, AwaitingApproval)
                | (AwaitingApproval, Running)
                | (AwaitingApproval, Failed)
                | (Running, Completed)
                | (Running, Failed)
                | (Running, AwaitingRelease)
                | (AwaitingRelease, Completed)
                | (AwaitingRelease, Failed)
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------------
// Pagination
// ---------------------------------------------------------------------------------------------

/// One page of a list, newest first. `next` is the opaque cursor for the following page
/// (pass it as `?after=`); it is absent on the last page. No total count is computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", schemars(rename = "PageOf{T}"))]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    #[cfg_attr(feature = "schema", schemars(length(max = 256)))]
    pub password: String,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshRequest(<redacted>)")
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeLoginRequest {
    pub api_key: String,
}

impl fmt::Debug for NodeLoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeLoginRequest(<redacted>)")
    }
}

/// Tokens issued by a login or a refresh. `refresh_token` is absent for node and run tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenResponse {
    pub access_token: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Who the presented credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WhoAmI {
    User {
        id: i64,
        username: String,
        role: Role,
        organization_id: Option<i64>,
    },
    Node {
        id: i64,
        organization_id: i64,
        collaboration_id: i64,
    },
    Run {
        run_id: i64,
        task_id: i64,
        collaboration_id: i64,
    },
}

// ---------------------------------------------------------------------------------------------
// Organizations, collaborations, users, nodes
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = MAX_NAME_CHARS), pattern(patterns::NAME)))]
    pub name: String,
    /// The organization's X25519 public encryption key, standard base64 of 32 bytes.
    #[cfg_attr(feature = "schema", schemars(pattern(patterns::PUBLIC_KEY)))]
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Organization {
    pub id: i64,
    pub name: String,
    pub public_key: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateCollaboration {
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = MAX_NAME_CHARS), pattern(patterns::NAME)))]
    pub name: String,
    /// Member organization ids; at least one, no duplicates.
    #[cfg_attr(feature = "schema", schemars(length(min = 1), inner(range(min = 1)), extend("uniqueItems" = true)))]
    pub organizations: Vec<i64>,
    /// Whether inputs and results must be encrypted (defaults to true).
    #[serde(default = "default_true")]
    pub encrypted: bool,
}

/// An organization added to a collaboration (`POST /api/collaborations/{id}/members`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CollaborationMember {
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub organization_id: i64,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Collaboration {
    pub id: i64,
    pub name: String,
    pub encrypted: bool,
    pub organizations: Vec<i64>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub created_at: OffsetDateTime,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", schemars(extend("oneOf" = [
    {"properties": {"role": {"const": "root"}, "organization_id": {"type": "null"}}},
    {"properties": {"role": {"enum": ["org_admin", "researcher", "viewer"]}, "organization_id": {"not": {"type": "null"}}}, "required": ["organization_id"]}
])))]
pub struct CreateUser {
    #[cfg_attr(feature = "schema", schemars(pattern(patterns::USERNAME)))]
    pub username: String,
    #[cfg_attr(
        feature = "schema",
        schemars(
            length(min = 12, max = 256),
            description = "12 characters to 256 bytes of UTF-8"
        )
    )]
    pub password: String,
    pub role: Role,
    /// Required for every role except root.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub organization_id: Option<i64>,
}

impl fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateUser")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("organization_id", &self.organization_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub organization_id: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub created_at: OffsetDateTime,
    /// A disabled user cannot log in and holds no working token.
    #[serde(default)]
    pub disabled: bool,
}

/// `PATCH /api/users/{id}`: change an account's state. An absent field is left as it is; at
/// least one field must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", schemars(extend("minProperties" = 1)))]
pub struct UpdateUser {
    /// `true` disables the account (login refused, every token revoked at once), `false`
    /// enables it again.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "bool"))]
    pub disabled: Option<bool>,
}

/// `POST /api/users/me/password`: the caller changes their own password. Every session of the
/// user is revoked; the answer is a fresh [`TokenResponse`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    #[cfg_attr(feature = "schema", schemars(length(max = 256)))]
    pub current_password: String,
    #[cfg_attr(
        feature = "schema",
        schemars(
            length(min = 12, max = 256),
            description = "12 characters to 256 bytes of UTF-8; not the current password"
        )
    )]
    pub new_password: String,
}

impl fmt::Debug for ChangePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChangePassword(<redacted>)")
    }
}

/// `POST /api/users/{id}/password`: an administrator sets another user's password. Every
/// session of that user is revoked and its login lockout cleared.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    #[cfg_attr(
        feature = "schema",
        schemars(
            length(min = 12, max = 256),
            description = "12 characters to 256 bytes of UTF-8"
        )
    )]
    pub password: String,
}

impl fmt::Debug for ResetPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResetPassword(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateNode {
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub organization_id: i64,
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub collaboration_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: i64,
    pub organization_id: i64,
    pub collaboration_id: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>", extend("format" = "date-time")))]
    pub last_seen_at: Option<OffsetDateTime>,
}

/// The answer to node creation and to a key rotation (`POST /api/nodes/{id}/key`): the API key
/// is shown exactly once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreatedNode {
    pub node: Node,
    /// `wdn_<node id>_<secret>`; only its hash is stored.
    pub api_key: String,
}

impl fmt::Debug for CreatedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedNode")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks, runs, results
// ---------------------------------------------------------------------------------------------

/// Input for one target organization: ciphertext sealed for that organization, in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub organization_id: i64,
    /// Standard base64 of the (encrypted) input bytes.
    #[cfg_attr(feature = "schema", schemars(pattern(patterns::BASE64), extend("contentEncoding" = "base64")))]
    pub input: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub collaboration_id: i64,
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(length(max = MAX_TASK_NAME_CHARS), pattern(patterns::TASK_NAME)))]
    pub name: String,
    /// OCI image reference; validated and normalised by the server.
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 1, max = 200), pattern(patterns::IMAGE))
    )]
    pub image: String,
    /// One entry per target organization; at least one, no duplicates.
    #[cfg_attr(
        feature = "schema",
        schemars(
            length(min = 1),
            extend("uniqueItems" = true),
            description = "one sealed input per target organization, each organization once"
        )
    )]
    pub inputs: Vec<TaskInput>,
    /// Parent task for a subtask.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub parent_task_id: Option<i64>,
    /// Chosen by whoever seals the inputs (32 to 128 of `0-9 a-z A-Z _ -`) and bound inside
    /// each sealed input; the server stores it and shows it on the task, and a node refuses an
    /// input whose binding names another nonce than its task.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 32, max = 128), pattern(patterns::NONCE))
    )]
    pub nonce: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub id: i64,
    pub collaboration_id: i64,
    pub name: String,
    pub image: String,
    pub organization_id: i64,
    #[serde(default)]
    pub creator_user_id: Option<i64>,
    /// The user on whose behalf the task runs: for a task created by a user, that user's
    /// name; for a subtask created by a run, the name of the user who created the root task
    /// of the chain (so `creator_user_id` is null but this is not). Null only when that user
    /// no longer exists. Nodes pass it to their policy as the requesting user.
    #[serde(default)]
    pub creator_username: Option<String>,
    #[serde(default)]
    pub creator_run_id: Option<i64>,
    #[serde(default)]
    pub parent_task_id: Option<i64>,
    /// The nonce given at creation (see [`CreateTask::nonce`]).
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub created_at: OffsetDateTime,
    /// When the task was cancelled (`POST /api/tasks/{id}/cancel`), null if it never was.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>", extend("format" = "date-time")))]
    pub cancelled_at: Option<OffsetDateTime>,
    /// The user who cancelled it, as the server recorded them.
    #[serde(default)]
    pub cancelled_by: Option<String>,
}

/// A task with its runs, as returned by creation and `GET /api/tasks/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskDetail {
    pub task: Task,
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub id: i64,
    pub task_id: i64,
    pub collaboration_id: i64,
    pub organization_id: i64,
    pub state: RunState,
    /// The node's reason for a rejection or a failure.
    #[serde(default)]
    pub reason: Option<String>,
    /// The manifest digest the node resolved and admitted.
    #[serde(default)]
    pub digest: Option<String>,
    pub has_result: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>", extend("format" = "date-time")))]
    pub admitted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>", extend("format" = "date-time")))]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>", extend("format" = "date-time")))]
    pub finished_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>", extend("format" = "date-time")))]
    pub acked_at: Option<OffsetDateTime>,
}

/// A node reports a state transition of one of its runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", schemars(extend("oneOf" = [
    {"properties": {"state": {"const": "admitted"}, "digest": {"type": "string", "pattern": patterns::DIGEST}, "reason": {"type": "null"}}, "required": ["state", "digest"]},
    {"properties": {"state": {"enum": ["running", "awaiting_approval", "awaiting_release", "completed"]}, "digest": {"type": "null"}, "reason": {"type": "null"}}},
    {"properties": {"state": {"enum": ["failed", "rejected"]}, "digest": {"type": "null"}, "reason": {"type": "string", "maxLength": MAX_REASON_CHARS, "pattern": patterns::REASON}}, "required": ["state", "reason"]}
])))]
pub struct UpdateRun {
    pub state: RunState,
    /// Required for `rejected` and `failed`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Required for `admitted`: the `sha256:<hex>` manifest digest the node admitted.
    #[serde(default)]
    pub digest: Option<String>,
}

/// What a node receives when it starts a run: the run's own token for the algorithm.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RunToken {
    pub token: String,
    /// Upper bound in seconds; the token dies earlier when the run reaches a final state.
    pub expires_in: u64,
}

impl fmt::Debug for RunToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunToken")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Node events
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new run for the node's organization in its collaboration.
    RunCreated,
    /// One of the node's runs was cancelled: the node stops it and sends nothing of it. The
    /// server's word can only stop a run at a node, never start or release anything.
    RunCancelled,
}

/// One event for a node. `id` increases monotonically; a node resumes with `?after=<last id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub id: i64,
    pub kind: EventKind,
    pub run_id: i64,
    pub task_id: i64,
    pub image: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub created_at: OffsetDateTime,
    /// For `run_cancelled`: who cancelled, as the server claims it (recorded in the node's
    /// audit log as a claim, never trusted for anything else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Query strings of the list endpoints (all optional; unknown parameters are refused)
// ---------------------------------------------------------------------------------------------

/// `?after=&limit=` of lists without further filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

/// `GET /api/organizations`: pagination and an exact name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OrganizationQuery {
    #[cfg_attr(
        feature = "schema",
        schemars(
            range(min = 1),
            description = "cursor: the `next` of the previous page"
        )
    )]
    pub after: Option<i64>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_PAGE_LIMIT)))]
    pub limit: Option<u32>,
    pub name: Option<String>,
}

/// `GET /api/collaborations`: pagination, an exact name and a member organization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CollaborationQuery {
    #[cfg_attr(
        feature = "schema",
        schemars(
            range(min = 1),
            description = "cursor: the `next` of the previous page"
        )
    )]
    pub after: Option<i64>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_PAGE_LIMIT)))]
    pub limit: Option<u32>,
    pub name: Option<String>,
    pub organization_id: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    #[cfg_attr(
        feature = "schema",
        schemars(
            range(min = 1),
            description = "cursor: the `next` of the previous page"
        )
    )]
    pub after: Option<i64>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_PAGE_LIMIT)))]
    pub limit: Option<u32>,
    pub organization_id: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeQuery {
    #[cfg_attr(
        feature = "schema",
        schemars(
            range(min = 1),
            description = "cursor: the `next` of the previous page"
        )
    )]
    pub after: Option<i64>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_PAGE_LIMIT)))]
    pub limit: Option<u32>,
    pub collaboration_id: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    #[cfg_attr(
        feature = "schema",
        schemars(
            range(min = 1),
            description = "cursor: the `next` of the previous page"
        )
    )]
    pub after: Option<i64>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_PAGE_LIMIT)))]
    pub limit: Option<u32>,
    pub collaboration_id: Option<i64>,
    pub parent_task_id: Option<i64>,
    pub creator_user_id: Option<i64>,
    /// The organization that created the task.
    #[serde(default)]
    pub organization_id: Option<i64>,
    /// The image reference, normalised by the server before it compares.
    #[serde(default)]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    #[cfg_attr(
        feature = "schema",
        schemars(
            range(min = 1),
            description = "cursor: the `next` of the previous page"
        )
    )]
    pub after: Option<i64>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_PAGE_LIMIT)))]
    pub limit: Option<u32>,
    pub collaboration_id: Option<i64>,
    pub organization_id: Option<i64>,
    pub task_id: Option<i64>,
    pub state: Option<RunState>,
}

/// `?after=` of the event poll and WebSocket: the last event id the node has seen (0 = all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    #[cfg_attr(
        feature = "schema",
        schemars(
            range(min = 0),
            description = "the last event id seen; 0: from the start"
        )
    )]
    pub after: Option<i64>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_PAGE_LIMIT)))]
    pub limit: Option<u32>,
}

/// Health probe answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: String,
    pub database: String,
}

#[cfg(test)]
mod tests;

/// The account-management bodies (`UpdateUser`, `ChangePassword`, `ResetPassword`).
#[cfg(test)]
mod account_tests {
    use super::*;

    #[test]
    fn account_bodies_refuse_unknown_fields_and_hide_passwords() {
        assert!(serde_json::from_str::<UpdateUser>(r#"{"disabled":true,"role":"root"}"#).is_err());
        assert!(serde_json::from_str::<UpdateUser>(r#"{"disabled":"yes"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<UpdateUser>("{}").unwrap(),
            UpdateUser { disabled: None }
        );
        assert!(
            serde_json::from_str::<ChangePassword>(
                r#"{"current_password":"a","new_password":"b","username":"c"}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<ChangePassword>(r#"{"new_password":"b"}"#).is_err());
        assert!(
            serde_json::from_str::<ResetPassword>(r#"{"password":"a","disabled":false}"#).is_err()
        );
        let c = ChangePassword {
            current_password: "hunter2hunter2".into(),
            new_password: "swordfish12345".into(),
        };
        let r = ResetPassword {
            password: "swordfish12345".into(),
        };
        for debug in [format!("{c:?}"), format!("{r:?}")] {
            assert!(
                !debug.contains("hunter2") && !debug.contains("swordfish"),
                "{debug}"
            );
        }
        // Older answers without `disabled` still parse (an enabled user).
        let u: User = serde_json::from_str(
            r#"{"id":1,"username":"a","role":"viewer","organization_id":2,"created_at":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert!(!u.disabled);
    }
}
