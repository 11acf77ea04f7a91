//! The service layer: for every operation it opens the transaction, resolves who is asking
//! from the presented credential, gathers the facts, asks [`permissions::check`], and then calls
//! storage. Handlers only parse HTTP and call one method here.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use warden_api as api;
use warden_api::{Role, RunState};
use warden_reference::{Digest, Reference};

use crate::auth::{self, AuthError};
use crate::config::{AuthConfig, LimitsConfig};
use crate::events::{Committed, EventHub, Wake};
use crate::metrics::Metrics;
use crate::permissions::{self, Actor, Denied, Op};
use crate::storage::{
    Db, NewTask, RunFilter, RunRow, StorageError, TaskFilter, TaskRow, TokenKind, TokenRow, Tx,
    UserRow,
};
use crate::throttle::{Rate, SessionSlots, Throttle};

/// Longest user, organization or collaboration name.
pub const MAX_NAME_CHARS: usize = api::MAX_NAME_CHARS;
/// Longest task name.
pub const MAX_TASK_NAME_CHARS: usize = api::MAX_TASK_NAME_CHARS;
/// Longest rejection or failure reason.
pub const MAX_REASON_CHARS: usize = api::MAX_REASON_CHARS;
/// Most member organizations of a collaboration.
pub const MAX_MEMBERS: usize = 10_000;
/// The one message of every failed login.
pub const LOGIN_FAILED: &str = "invalid user name or password";
/// A disabled account (said only to whoever knows its password or holds one of its tokens).
pub const DISABLED: &str = "this account is disabled; ask an administrator to enable it";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{message}")]
    Invalid {
        field: Option<&'static str>,
        message: String,
    },
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(#[from] Denied),
    #[error("{0}")]
    NotFound(&'static str),
    /// A body names something that does not exist: 404 with the field.
    #[error("{message}")]
    Missing {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// Too many wrong passwords: the account is locked for a while.
    #[error("{0}")]
    Locked(String),
    #[error(transparent)]
    Storage(StorageError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict => {
                ServiceError::Conflict("a resource with this name already exists".into())
            }
            e => ServiceError::Storage(e),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

fn missing(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Missing {
        field,
        message: message.into(),
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field: Some(field),
        message: message.into(),
    }
}

/// A bearer credential as presented; only parsed, never logged.
#[derive(Clone)]
pub struct Bearer(pub String);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

/// Pagination as parsed at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<i64>,
    pub limit: u32,
}

impl PageRequest {
    pub fn parse(after: Option<i64>, limit: Option<u32>) -> Result<Self> {
        let limit = limit.unwrap_or(api::DEFAULT_PAGE_LIMIT);
        if limit == 0 || limit > api::MAX_PAGE_LIMIT {
            return Err(invalid(
                "limit",
                format!("limit must be between 1 and {}", api::MAX_PAGE_LIMIT),
            ));
        }
        if after.is_some_and(|a| a <= 0) {
            return Err(invalid("after", "after must be a positive id"));
        }
        Ok(PageRequest { after, limit })
    }

    /// Fetch one row more than the page to know whether there is a next page.
    fn fetch(&self) -> u32 {
        self.limit + 1
    }

    fn page<T, U>(
        &self,
        mut rows: Vec<T>,
        id: impl Fn(&T) -> i64,
        f: impl FnMut(T) -> U,
    ) -> api::Page<U> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next = if more { rows.last().map(&id) } else { None };
        api::Page {
            items: rows.into_iter().map(f).collect(),
            next,
        }
    }
}

/// A validated task creation request: what the core sees after the edge parsed the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    pub collaboration_id: i64,
    pub name: String,
    pub image: Reference,
    pub inputs: Vec<(i64, Vec<u8>)>,
    pub parent_task_id: Option<i64>,
    /// Well-formed (see [`check_nonce`]); unique in the collaboration is checked at insertion.
    pub nonce: Option<String>,
}

impl TaskRequest {
    /// Validate a wire request; `max_targets` bounds the number of target organizations.
    pub fn parse(req: api::CreateTask, max_targets: usize) -> Result<TaskRequest> {
        if req.collaboration_id <= 0 {
            return Err(invalid(
                "collaboration_id",
                "collaboration_id must be a positive id",
            ));
        }
        check_name_chars("name", &req.name, MAX_TASK_NAME_CHARS, true)?;
        if let Some(nonce) = &req.nonce {
            check_nonce(nonce)?;
        }
        let image = Reference::parse(&req.image)
            .map_err(|e| invalid("image", format!("image is not a valid reference: {e}")))?;
        if req.inputs.is_empty() {
            return Err(invalid(
                "inputs",
                "inputs must name at least one organization",
            ));
        }
        if req.inputs.len() > max_targets {
            return Err(invalid(
                "inputs",
                format!("a task may target at most {max_targets} organizations"),
            ));
        }
        let mut inputs = Vec::with_capacity(req.inputs.len());
        for i in req.inputs {
            if i.organization_id <= 0 {
                return Err(invalid("inputs", "organization_id must be a positive id"));
            }
            // 409, not 400: JSON Schema cannot say "each organization once" of an array of
            // objects, so the OpenAPI document states it in words.
            if inputs.iter().any(|(o, _)| *o == i.organization_id) {
                return Err(ServiceError::Conflict(format!(
                    "organization {} is targeted twice; give one input per organization",
                    i.organization_id
                )));
            }
            let bytes = STANDARD.decode(i.input.as_bytes()).map_err(|_| {
                invalid(
                    "inputs",
                    format!(
                        "input for organization {} is not standard base64",
                        i.organization_id
                    ),
                )
            })?;
            inputs.push((i.organization_id, bytes));
        }
        if req.parent_task_id.is_some_and(|p| p <= 0) {
            return Err(invalid(
                "parent_task_id",
                "parent_task_id must be a positive id",
            ));
        }
        Ok(TaskRequest {
            collaboration_id: req.collaboration_id,
            name: req.name,
            image,
            inputs,
            parent_task_id: req.parent_task_id,
            nonce: req.nonce,
        })
    }
}

/// A validated run update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunUpdate {
    Admitted { digest: Digest },
    Running,
    AwaitingApproval,
    AwaitingRelease,
    Completed,
    Failed { reason: String },
    Rejected { reason: String },
}

impl RunUpdate {
    pub fn parse(req: api::UpdateRun) -> Result<RunUpdate> {
        let reason = |r: Option<String>| -> Result<String> {
            let r = r.ok_or_else(|| invalid("reason", "a reason is required for this state"))?;
            check_text("reason", &r, MAX_REASON_CHARS, false)?;
            Ok(r)
        };
        let no_reason = |r: &Option<String>| {
            if r.is_some() {
                Err(invalid(
                    "reason",
                    "a reason is only allowed for failed and rejected",
                ))
            } else {
                Ok(())
            }
        };
        if req.digest.is_some() && req.state != RunState::Admitted {
            return Err(invalid("digest", "a digest is only allowed for admitted"));
        }
        Ok(match req.state {
            RunState::Pending => {
                return Err(invalid("state", "a run cannot go back to pending"));
            }
            RunState::Admitted => {
                no_reason(&req.reason)?;
                let d = req
                    .digest
                    .ok_or_else(|| invalid("digest", "admitted requires the admitted digest"))?;
                let digest = Digest::parse(&d)
                    .map_err(|e| invalid("digest", format!("digest is not valid: {e}")))?;
                RunUpdate::Admitted { digest }
            }
            RunState::Running => {
                no_reason(&req.reason)?;
                RunUpdate::Running
            }
            RunState::AwaitingApproval => {
                no_reason(&req.reason)?;
                RunUpdate::AwaitingApproval
            }
            RunState::AwaitingRelease => {
                no_reason(&req.reason)?;
                RunUpdate::AwaitingRelease
            }
            RunState::Completed => {
                no_reason(&req.reason)?;
                RunUpdate::Completed
            }
            RunState::Failed => RunUpdate::Failed {
                reason: reason(req.reason)?,
            },
            RunState::Rejected => RunUpdate::Rejected {
                reason: reason(req.reason)?,
            },
            RunState::Cancelled => {
                return Err(invalid(
                    "state",
                    "a node cannot cancel a run; the task's requester cancels it with \
                     POST /api/tasks/{id}/cancel",
                ));
            }
        })
    }

    pub fn state(&self) -> RunState {
        match self {
            RunUpdate::Admitted { .. } => RunState::Admitted,
            RunUpdate::Running => RunState::Running,
            RunUpdate::AwaitingApproval => RunState::AwaitingApproval,
            RunUpdate::AwaitingRelease => RunState::AwaitingRelease,
            RunUpdate::Completed => RunState::Completed,
            RunUpdate::Failed { .. } => RunState::Failed,
            RunUpdate::Rejected { .. } => RunState::Rejected,
        }
    }
}

/// Refuse empty (unless allowed), over-long, or control-character text.
fn check_text(field: &'static str, s: &str, max: usize, allow_empty: bool) -> Result<()> {
    if !allow_empty && s.trim().is_empty() {
        return Err(invalid(field, format!("{field} must not be empty")));
    }
    if s.chars().count() > max {
        return Err(invalid(
            field,
            format!("{field} is longer than {max} characters"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid(
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(())
}

/// Whether `c` may not appear in a name: every control character (line breaks and tabs
/// included), the Unicode line and paragraph separators, and the bidirectional controls (which
/// make two different names look alike, or a name look like something else).
fn forbidden_in_name(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// The rules of every name (organizations, collaborations, tasks): [`check_text`]'s, and no
/// character at all that [`forbidden_in_name`] refuses.
fn check_name_chars(field: &'static str, s: &str, max: usize, allow_empty: bool) -> Result<()> {
    if let Some(c) = s.chars().find(|c| forbidden_in_name(*c)) {
        return Err(invalid(
            field,
            format!(
                "{field} contains the character U+{:04X}; a name may not hold control \
                 characters, line breaks, tabs or bidirectional controls",
                u32::from(c)
            ),
        ));
    }
    check_text(field, s, max, allow_empty)
}

/// Task nonces: [`warden_seal::valid_nonce`], the rule the sealing side uses.
pub fn check_nonce(nonce: &str) -> Result<()> {
    if warden_seal::valid_nonce(nonce) {
        Ok(())
    } else {
        Err(invalid(
            "nonce",
            format!(
                "nonce must be {} to {} characters of 0-9, a-z, A-Z, '_', '-'",
                warden_seal::envelope::MIN_NONCE,
                warden_seal::envelope::MAX_NONCE
            ),
        ))
    }
}

/// Organization and collaboration names.
fn check_name(field: &'static str, s: &str) -> Result<()> {
    check_name_chars(field, s, MAX_NAME_CHARS, false)?;
    if s.trim() != s {
        return Err(invalid(
            field,
            format!("{field} has leading or trailing spaces"),
        ));
    }
    Ok(())
}

/// User names: 1 to 64 of `a-z 0-9 . _ - @`.
pub fn check_username(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "username",
            "username must be 1 to 64 characters of a-z, 0-9, '.', '_', '-', '@'",
        ))
    }
}

/// The strength rules of every password that is set (creation, change, reset).
pub fn check_new_password(p: &str) -> Result<()> {
    check_password_field("password", p)
}

fn check_password_field(field: &'static str, p: &str) -> Result<()> {
    if p.len() > auth::MAX_PASSWORD_BYTES {
        return Err(invalid(
            field,
            format!("{field} is longer than {} bytes", auth::MAX_PASSWORD_BYTES),
        ));
    }
    if p.chars().count() < auth::MIN_PASSWORD_CHARS {
        return Err(invalid(
            field,
            format!(
                "{field} must have at least {} characters",
                auth::MIN_PASSWORD_CHARS
            ),
        ));
    }
    Ok(())
}

fn now_micros() -> i64 {
    micros(OffsetDateTime::now_utc())
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX / 2_000_000) * 1_000_000
}

pub fn time_of(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn opt_time(us: Option<i64>) -> Option<OffsetDateTime> {
    us.map(time_of)
}

fn run_view(r: RunRow) -> api::Run {
    api::Run {
        id: r.id,
        task_id: r.task_id,
        collaboration_id: r.collaboration_id,
        organization_id: r.organization_id,
        state: r.state,
        reason: r.reason,
        digest: r.digest,
        has_result: r.has_result,
        created_at: time_of(r.created_at),
        admitted_at: opt_time(r.admitted_at),
        started_at: opt_time(r.started_at),
        finished_at: opt_time(r.finished_at),
        acked_at: opt_time(r.acked_at),
    }
}

fn task_view(t: TaskRow) -> api::Task {
    api::Task {
        id: t.id,
        collaboration_id: t.collaboration_id,
        name: t.name,
        image: t.image,
        organization_id: t.organization_id,
        creator_user_id: t.creator_user_id,
        creator_username: t.creator_username,
        creator_run_id: t.creator_run_id,
        parent_task_id: t.parent_task_id,
        nonce: t.nonce,
        created_at: time_of(t.created_at),
        cancelled_at: opt_time(t.cancelled_at),
        cancelled_by: t.cancelled_by_username,
    }
}

fn user_view(u: UserRow) -> api::User {
    api::User {
        id: u.id,
        username: u.username,
        role: u.role,
        organization_id: u.organization_id,
        created_at: time_of(u.created_at),
        disabled: u.disabled,
    }
}

fn node_view(n: crate::storage::NodeRow) -> api::Node {
    api::Node {
        id: n.id,
        organization_id: n.organization_id,
        collaboration_id: n.collaboration_id,
        created_at: time_of(n.created_at),
        last_seen_at: opt_time(n.last_seen_at),
    }
}

/// Filters of the task list, parsed at the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskQuery {
    pub collaboration_id: Option<i64>,
    pub parent_task_id: Option<i64>,
    pub creator_user_id: Option<i64>,
    /// The organization that created the task.
    pub organization_id: Option<i64>,
    /// The normalised image reference (parsed at the edge).
    pub image: Option<String>,
}

/// Filters of the organization list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganizationQuery {
    pub name: Option<String>,
}

/// Filters of the collaboration list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollaborationQuery {
    pub name: Option<String>,
    /// Only collaborations this organization is a member of.
    pub organization_id: Option<i64>,
}

/// Filters of the run list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunQuery {
    pub collaboration_id: Option<i64>,
    pub organization_id: Option<i64>,
    pub task_id: Option<i64>,
    pub state: Option<RunState>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    hub: EventHub,
    auth: AuthConfig,
    limits: LimitsConfig,
    metrics: Metrics,
    dummy_hash: String,
    /// SQLite: task creations are group-committed by one batcher task.
    batcher: Option<mpsc::Sender<TaskJob>>,
    /// Per-address buckets of `POST /api/auth/login` and `POST /api/auth/node`.
    login_throttle: Throttle,
    node_login_throttle: Throttle,
    /// Caps on open event WebSockets.
    session_slots: SessionSlots,
}

/// A created task and its committed events, to announce to the nodes' sessions.
type CreatedTask = (api::TaskDetail, Vec<Committed>);

/// One task creation waiting for the next group commit.
struct TaskJob {
    bearer: Option<Bearer>,
    req: TaskRequest,
    reply: oneshot::Sender<Result<CreatedTask>>,
}

/// Most task creations committed together.
const MAX_BATCH: usize = 128;

/// Group commit: take every waiting task creation, run each inside a savepoint of one
/// transaction, commit once (one fsync), then answer each. An answer is only sent after the
/// commit, so an acknowledged task is durable.
async fn batcher(inner: Weak<Inner>, mut rx: mpsc::Receiver<TaskJob>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let svc = Service { inner };
        let mut results = Vec::with_capacity(jobs.len());
        // A batch of one (the sequential case) needs no savepoint: the transaction itself is
        // the unit, dropped (rolled back) when the creation fails. Two statements fewer.
        let alone = jobs.len() == 1;
        let outcome: Result<()> = async {
            let mut tx = svc.inner.db.write().await?;
            for job in &jobs {
                if !alone {
                    tx.savepoint().await?;
                }
                let r = svc
                    .create_task_in(&mut tx, job.bearer.as_ref(), &job.req)
                    .await;
                if !alone {
                    if r.is_ok() {
                        tx.release_savepoint().await?;
                    } else {
                        tx.rollback_to_savepoint().await?;
                    }
                }
                results.push(r);
            }
            if alone && results.iter().any(|r| r.is_err()) {
                drop(tx);
            } else {
                tx.commit().await?;
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                // Announced in the order of the commit's ids, before any answer: the hub pushes
                // them only when they follow every id announced before.
                for (job, r) in jobs.drain(..).zip(results) {
                    let r = r.map(|(detail, events)| {
                        svc.task_committed(events);
                        (detail, Vec::new())
                    });
                    let _ = job.reply.send(r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                let msg = e.to_string();
                for job in jobs.drain(..) {
                    let _ = job
                        .reply
                        .send(Err(ServiceError::Storage(StorageError::Database(
                            sqlx::Error::Protocol(msg.clone()),
                        ))));
                }
            }
        }
    }
}

/// The service handle shared by all handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl Service {
    pub async fn new(db: Db, auth: AuthConfig, limits: LimitsConfig) -> Result<Service> {
        let hub = match db.pg_pool() {
            Some(pool) => {
                let hub = EventHub::default();
                hub.spawn_pg_listener(pool.clone());
                hub
            }
            // One writer, AUTOINCREMENT ids: committed events may be pushed to the sessions
            // (crate::events). Nothing is in flight before the service exists.
            None => EventHub::ordered(db.read().await?.last_event_id().await?),
        };
        let dummy_hash = auth::dummy_hash().await?;
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        // SQLite has one writer, so without batching every creation waits for its own fsync
        // in turn. PostgreSQL commits concurrent transactions in parallel by itself; a batch
        // there would run every statement on one connection (measured slower per request).
        let group_commit = db.backend() == crate::storage::Backend::Sqlite;
        let login_throttle = Throttle::new(
            Rate::per_minute(auth.login_rate_per_minute, auth.login_burst),
            &auth.rate_limit_exempt,
        );
        let node_login_throttle = Throttle::new(
            Rate::per_minute(auth.node_login_rate_per_minute, auth.node_login_burst),
            &auth.rate_limit_exempt,
        );
        let session_slots = SessionSlots::new(
            limits.max_event_sessions_per_node,
            limits.max_event_sessions,
        );
        let inner = Arc::new(Inner {
            db,
            hub,
            auth,
            limits,
            metrics: Metrics::default(),
            dummy_hash,
            batcher: group_commit.then_some(tx),
            login_throttle,
            node_login_throttle,
            session_slots,
        });
        if group_commit {
            tokio::spawn(batcher(Arc::downgrade(&inner), rx));
        }
        Ok(Service { inner })
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn hub(&self) -> &EventHub {
        &self.inner.hub
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn limits(&self) -> &LimitsConfig {
        &self.inner.limits
    }

    pub fn login_throttle(&self) -> &Throttle {
        &self.inner.login_throttle
    }

    pub fn node_login_throttle(&self) -> &Throttle {
        &self.inner.node_login_throttle
    }

    pub fn session_slots(&self) -> &SessionSlots {
        &self.inner.session_slots
    }

    // ---- identity ----------------------------------------------------------------------------

    /// Resolve a bearer token to an actor inside `tx`. Unknown, expired, refresh-only, or
    /// run tokens of finished runs are all "unauthenticated".
    async fn actor(&self, tx: &mut Tx, bearer: Option<&Bearer>) -> Result<Actor> {
        const BAD: &str = "the access token is missing, expired or revoked; log in again";
        let bearer = bearer.ok_or(ServiceError::Unauthenticated(BAD))?;
        // The token, and a user's row and collaborations with it: one statement.
        let (token, user) = tx
            .token_and_user(&auth::token_hash(&bearer.0))
            .await?
            .ok_or(ServiceError::Unauthenticated(BAD))?;
        if token.expires_at <= now_micros() {
            return Err(ServiceError::Unauthenticated(BAD));
        }
        match token.kind {
            TokenKind::Access => {
                let (user, collaborations) = user.ok_or(ServiceError::Unauthenticated(BAD))?;
                // Disabling and password changes delete the user's tokens too; the generation
                // also catches a token that a concurrent login or refresh was issuing.
                if user.disabled {
                    return Err(ServiceError::Unauthenticated(DISABLED));
                }
                if token.generation != user.token_generation {
                    return Err(ServiceError::Unauthenticated(BAD));
                }
                Ok(Actor::User {
                    id: user.id,
                    username: user.username,
                    role: user.role,
                    organization_id: user.organization_id,
                    collaborations,
                })
            }
            TokenKind::Node => {
                let id = token.node_id.ok_or(ServiceError::Unauthenticated(BAD))?;
                let node = tx
                    .node(id)
                    .await?
                    .ok_or(ServiceError::Unauthenticated(BAD))?;
                if token.generation != node.key_generation {
                    return Err(ServiceError::Unauthenticated(
                        "the node's api key was replaced; log in with the new key",
                    ));
                }
                Ok(Actor::Node {
                    id: node.id,
                    organization_id: node.organization_id,
                    collaboration_id: node.collaboration_id,
                })
            }
            TokenKind::Run => {
                let id = token.run_id.ok_or(ServiceError::Unauthenticated(BAD))?;
                let run = tx
                    .run(id)
                    .await?
                    .ok_or(ServiceError::Unauthenticated(BAD))?;
                if run.run.state.is_final() {
                    return Err(ServiceError::Unauthenticated(
                        "the run has ended, so its token has expired",
                    ));
                }
                // Stored images are normalised references; one that does not parse (it cannot
                // happen) keeps its whole text, which no requested repository equals.
                let repository = Reference::parse(&run.image)
                    .map(|r| r.repository().to_string())
                    .unwrap_or(run.image);
                Ok(Actor::Run {
                    run_id: run.run.id,
                    task_id: run.run.task_id,
                    organization_id: run.run.organization_id,
                    collaboration_id: run.run.collaboration_id,
                    digest: run.run.digest,
                    repository,
                })
            }
            TokenKind::Refresh => Err(ServiceError::Unauthenticated(
                "a refresh token cannot be used as an access token",
            )),
        }
    }

    fn check(&self, actor: &Actor, op: &Op<'_>) -> Result<permissions::Permit> {
        permissions::check(actor, op).map_err(|d| {
            tracing::info!(actor = ?actor, op = ?op, reason = d.0, "denied");
            ServiceError::Forbidden(d)
        })
    }

    pub async fn whoami(&self, bearer: Option<&Bearer>) -> Result<api::WhoAmI> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        Ok(match actor {
            Actor::User {
                id,
                role,
                organization_id,
                ..
            } => {
                let user = tx
                    .user(id)
                    .await?
                    .ok_or(ServiceError::NotFound("no such user"))?;
                api::WhoAmI::User {
                    id,
                    username: user.username,
                    role,
                    organization_id,
                }
            }
            Actor::Node {
                id,
                organization_id,
                collaboration_id,
            } => api::WhoAmI::Node {
                id,
                organization_id,
                collaboration_id,
            },
            Actor::Run {
                run_id,
                task_id,
                collaboration_id,
                ..
            } => api::WhoAmI::Run {
                run_id,
                task_id,
                collaboration_id,
            },
        })
    }

    // ---- login -------------------------------------------------------------------------------

    /// Issue an access and a refresh token for `user_id`, stamped with the user's token
    /// `generation` as read before the credential was checked.
    async fn issue_session(
        &self,
        tx: &mut Tx,
        user_id: i64,
        generation: i64,
        family: &str,
    ) -> Result<api::TokenResponse> {
        let now = now_micros();
        let access = auth::new_token(auth::ACCESS_PREFIX);
        let refresh = auth::new_token(auth::REFRESH_PREFIX);
        for (token, kind, ttl) in [
            (
                &access,
                TokenKind::Access,
                self.inner.auth.access_token_ttl_secs,
            ),
            (
                &refresh,
                TokenKind::Refresh,
                self.inner.auth.refresh_token_ttl_secs,
            ),
        ] {
            tx.insert_token(&TokenRow {
                hash: auth::token_hash(token),
                kind,
                user_id: Some(user_id),
                node_id: None,
                run_id: None,
                family: Some(family.to_owned()),
                consumed: false,
                expires_at: now.saturating_add(secs(ttl)),
                generation,
            })
            .await?;
        }
        Ok(api::TokenResponse {
            access_token: access,
            expires_in: self.inner.auth.access_token_ttl_secs,
            refresh_token: Some(refresh),
        })
    }

    /// Password login. Every failure (unknown user, wrong password, locked account) answers
    /// with the same message; unknown users cost one dummy verification.
    pub async fn login(&self, req: api::LoginRequest) -> Result<api::TokenResponse> {
        let fail = || {
            Metrics::inc(&self.inner.metrics.logins_failed);
            ServiceError::Unauthenticated(LOGIN_FAILED)
        };
        if req.password.len() > auth::MAX_PASSWORD_BYTES || req.username.len() > 64 {
            return Err(fail());
        }
        let user = {
            let mut tx = self.inner.db.read().await?;
            tx.user_by_name(&req.username).await?
        };
        let Some(user) = user else {
            auth::verify_password(req.password, self.inner.dummy_hash.clone()).await?;
            return Err(fail());
        };
        let now = now_micros();
        if user.locked_until.is_some_and(|t| t > now) {
            tracing::info!(user = user.id, "login refused: account locked");
            return Err(fail());
        }
        let ok = auth::verify_password(req.password, user.password_hash.clone()).await?;
        let mut tx = self.inner.db.write().await?;
        if !ok {
            let a = &self.inner.auth;
            tx.record_login_failure(
                user.id,
                i64::from(a.lockout_threshold),
                now.saturating_add(secs(a.lockout_secs)),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(user = user.id, "login failed");
            return Err(fail());
        }
        if user.disabled {
            // Only someone who knows the password learns that the account is disabled.
            tracing::info!(user = user.id, "login refused: account disabled");
            Metrics::inc(&self.inner.metrics.logins_failed);
            return Err(ServiceError::Forbidden(Denied(DISABLED)));
        }
        if user.failed_logins != 0 || user.locked_until.is_some() {
            tx.reset_login_failures(user.id).await?;
        }
        let family = auth::random_secret();
        // The generation read with the hash: if the password was changed or the user
        // disabled while we verified, these tokens are born revoked.
        let tokens = self
            .issue_session(&mut tx, user.id, user.token_generation, &family)
            .await?;
        tx.commit().await?;
        Metrics::inc(&self.inner.metrics.logins_ok);
        Ok(tokens)
    }

    /// Rotate a refresh token. Presenting one that was already used revokes the whole session.
    pub async fn refresh(&self, req: api::RefreshRequest) -> Result<api::TokenResponse> {
        const BAD: &str = "the refresh token is unknown, expired or revoked; log in again";
        let mut tx = self.inner.db.write().await?;
        let hash = auth::token_hash(&req.refresh_token);
        let token = tx
            .token(&hash)
            .await?
            .ok_or(ServiceError::Unauthenticated(BAD))?;
        let (Some(user_id), Some(family), TokenKind::Refresh) =
            (token.user_id, token.family.clone(), token.kind)
        else {
            return Err(ServiceError::Unauthenticated(BAD));
        };
        if token.expires_at <= now_micros() {
            return Err(ServiceError::Unauthenticated(BAD));
        }
        if !tx.consume_token(&hash).await? {
            tx.delete_token_family(&family).await?;
            tx.commit().await?;
            tracing::warn!(user = user_id, "refresh token replayed; session revoked");
            return Err(ServiceError::Unauthenticated(BAD));
        }
        let user = tx.user(user_id).await?;
        let live = user
            .as_ref()
            .is_some_and(|u| !u.disabled && u.token_generation == token.generation);
        if !live {
            tx.delete_token_family(&family).await?;
            tx.commit().await?;
            tracing::info!(
                user = user_id,
                "refresh refused: the user's tokens were revoked"
            );
            return Err(ServiceError::Unauthenticated(BAD));
        }
        let tokens = self
            .issue_session(&mut tx, user_id, token.generation, &family)
            .await?;
        tx.commit().await?;
        Ok(tokens)
    }

    /// Revoke the session of the presented access token.
    pub async fn logout(&self, bearer: Option<&Bearer>) -> Result<()> {
        let mut tx = self.inner.db.write().await?;
        // An unknown, expired or revoked token is refused like everywhere else.
        self.actor(&mut tx, bearer).await?;
        let b = bearer.ok_or(ServiceError::Unauthenticated("no access token"))?;
        let token = tx.token(&auth::token_hash(&b.0)).await?;
        if let Some(family) = token.and_then(|t| t.family) {
            tx.delete_token_family(&family).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Exchange a node API key for a node token.
    pub async fn node_login(&self, req: api::NodeLoginRequest) -> Result<api::TokenResponse> {
        const BAD: &str = "invalid node api key";
        let (id, secret) =
            auth::parse_node_key(&req.api_key).ok_or(ServiceError::Unauthenticated(BAD))?;
        let mut tx = self.inner.db.write().await?;
        let node = tx
            .node(id)
            .await?
            .ok_or(ServiceError::Unauthenticated(BAD))?;
        if !auth::hashes_equal(&auth::token_hash(secret), &node.api_key_hash) {
            return Err(ServiceError::Unauthenticated(BAD));
        }
        if !matches!(
            tx.membership(node.collaboration_id, node.organization_id)
                .await?,
            Some(None)
        ) {
            return Err(ServiceError::Forbidden(Denied(
                "this node's organization was removed from its collaboration; a root user can add it again (warden admin collab add-org) and rotate the node's key",
            )));
        }
        let now = now_micros();
        let token = auth::new_token(auth::ACCESS_PREFIX);
        tx.insert_token(&TokenRow {
            hash: auth::token_hash(&token),
            kind: TokenKind::Node,
            user_id: None,
            node_id: Some(node.id),
            run_id: None,
            family: None,
            consumed: false,
            expires_at: now.saturating_add(secs(self.inner.auth.node_token_ttl_secs)),
            // The generation of the key just checked: if the key is rotated meanwhile, this
            // token is born revoked.
            generation: node.key_generation,
        })
        .await?;
        tx.touch_node(node.id, now).await?;
        tx.commit().await?;
        Metrics::inc(&self.inner.metrics.node_logins);
        Ok(api::TokenResponse {
            access_token: token,
            expires_in: self.inner.auth.node_token_ttl_secs,
            refresh_token: None,
        })
    }

    /// Create the `admin` root user if there are no users at all. Returns whether it did.
    pub async fn bootstrap_admin(&self, password: &str) -> Result<bool> {
        check_new_password(password)?;
        let hash = auth::hash_password(password.to_owned()).await?;
        let mut tx = self.inner.db.write().await?;
        if tx.count_users().await? > 0 {
            return Ok(false);
        }
        tx.insert_user("admin", None, Role::Root, &hash, now_micros())
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn has_users(&self) -> Result<bool> {
        let mut tx = self.inner.db.read().await?;
        Ok(tx.count_users().await? > 0)
    }

    /// Remove expired tokens.
    pub async fn sweep_tokens(&self) -> Result<u64> {
        let mut tx = self.inner.db.write().await?;
        let n = tx.delete_expired_tokens(now_micros()).await?;
        tx.commit().await?;
        Ok(n)
    }

    // ---- organizations -----------------------------------------------------------------------

    pub async fn create_organization(
        &self,
        bearer: Option<&Bearer>,
        req: api::CreateOrganization,
    ) -> Result<api::Organization> {
        check_name("name", &req.name)?;
        let key = STANDARD
            .decode(req.public_key.as_bytes())
            .map_err(|_| invalid("public_key", "public_key is not standard base64"))?;
        if key.len() != 32 {
            return Err(invalid(
                "public_key",
                "public_key must be a 32-byte X25519 public key",
            ));
        }
        let mut tx = self.inner.db.write().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let _permit = self.check(&actor, &Op::CreateOrganization)?;
        let now = now_micros();
        let id = tx
            .insert_organization(&req.name, &req.public_key, now)
            .await?;
        tx.commit().await?;
        Ok(api::Organization {
            id,
            name: req.name,
            public_key: req.public_key,
            created_at: time_of(now),
        })
    }

    pub async fn organization(
        &self,
        bearer: Option<&Bearer>,
        id: i64,
    ) -> Result<api::Organization> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let org = tx
            .organization(id)
            .await?
            .ok_or(ServiceError::NotFound("no such organization"))?;
        let collaborations = tx.collaborations_of(id).await?;
        let _permit = self.check(
            &actor,
            &Op::ReadOrganization {
                organization_id: id,
                collaborations: &collaborations,
            },
        )?;
        Ok(api::Organization {
            id: org.id,
            name: org.name,
            public_key: org.public_key,
            created_at: time_of(org.created_at),
        })
    }

    pub async fn list_organizations(
        &self,
        bearer: Option<&Bearer>,
        q: OrganizationQuery,
        page: PageRequest,
    ) -> Result<api::Page<api::Organization>> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let visible = match &actor {
            Actor::User {
                role: Role::Root, ..
            } => None,
            Actor::User {
                organization_id: Some(o),
                ..
            } => Some(tx.partners_of(*o).await?),
            Actor::User { .. } => Some(Vec::new()),
            Actor::Node {
                collaboration_id, ..
            }
            | Actor::Run {
                collaboration_id, ..
            } => Some(tx.members(*collaboration_id).await?),
        };
        let rows = tx
            .list_organizations(
                visible.as_deref(),
                q.name.as_deref(),
                page.after,
                page.fetch(),
            )
            .await?;
        Ok(page.page(
            rows,
            |r| r.id,
            |o| api::Organization {
                id: o.id,
                name: o.name,
                public_key: o.public_key,
                created_at: time_of(o.created_at),
            },
        ))
    }

    // ---- collaborations ----------------------------------------------------------------------

    pub async fn create_collaboration(
        &self,
        bearer: Option<&Bearer>,
        req: api::CreateCollaboration,
    ) -> Result<api::Collaboration> {
        check_name("name", &req.name)?;
        if req.organizations.is_empty() {
            return Err(invalid(
                "organizations",
                "a collaboration needs at least one organization",
            ));
        }
        if req.organizations.len() > MAX_MEMBERS {
            return Err(invalid(
                "organizations",
                format!("a collaboration has at most {MAX_MEMBERS} organizations"),
            ));
        }
        let mut members = req.organizations.clone();
        members.sort_unstable();
        members.dedup();
        if members.len() != req.organizations.len() {
            return Err(invalid("organizations", "an organization is listed twice"));
        }
        let mut tx = self.inner.db.write().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let _permit = self.check(&actor, &Op::CreateCollaboration)?;
        for o in &members {
            if tx.organization(*o).await?.is_none() {
                return Err(missing(
                    "organizations",
                    format!("organization {o} does not exist"),
                ));
            }
        }
        let now = now_micros();
        let id = tx
            .insert_collaboration(&req.name, req.encrypted, now)
            .await?;
        for o in &members {
            tx.add_member(id, *o).await?;
        }
        tx.commit().await?;
        Ok(api::Collaboration {
            id,
            name: req.name,
            encrypted: req.encrypted,
            organizations: members,
            created_at: time_of(now),
        })
    }

    /// Adds an organization to a collaboration (root): its users see the collaboration and new
    /// tasks may target it from now on; its node needs `POST /api/nodes` for this collaboration.
    pub async fn add_member(
        &self,
        bearer: Option<&Bearer>,
        id: i64,
        req: api::CollaborationMember,
    ) -> Result<api::Collaboration> {
        let mut tx = self.inner.db.write().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let _permit = self.check(&actor, &Op::AddMember)?;
        let c = tx
            .collaboration(id)
            .await?
            .ok_or(ServiceError::NotFound("no such collaboration"))?;
        let org = req.organization_id;
        if org <= 0 {
            return Err(invalid(
                "organization_id",
                "organization_id must be a positive id",
            ));
        }
        if tx.organization(org).await?.is_none() {
            return Err(missing(
                "organization_id",
                format!("organization {org} does not exist"),
            ));
        }
        let members = tx.members(id).await?;
        if members.contains(&org) {
            return Err(ServiceError::Conflict(format!(
                "organization {org} is already a member of collaboration {id}"
            )));
        }
        if members.len() >= MAX_MEMBERS {
            return Err(invalid(
                "organization_id",
                format!("a collaboration has at most {MAX_MEMBERS} organizations"),
            ));
        }
        tx.add_member(id, org).await?;
        let organizations = tx.members(id).await?;
        tx.commit().await?;
        Ok(api::Collaboration {
            id,
            name: c.name,
            encrypted: c.encrypted,
            organizations,
            created_at: time_of(c.created_at),
        })
    }

    /// Removes an organization from a collaboration (root). The membership is marked removed,
    /// not deleted (its runs and node reference it): from this commit on no task targets the
    /// organization there, its users no longer see the collaboration, and its node's key for
    /// it is revoked as by a rotation (tokens, run tokens and event sockets included) with a
    /// key nobody holds. Refused while a run of the organization there has not ended.
    pub async fn remove_member(
        &self,
        bearer: Option<&Bearer>,
        id: i64,
        org: i64,
    ) -> Result<api::Collaboration> {
        /// Runs named in the refusal.
        const SHOWN: u32 = 10;
        let mut tx = self.inner.db.write().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let _permit = self.check(&actor, &Op::RemoveMember)?;
        let c = tx
            .collaboration(id)
            .await?
            .ok_or(ServiceError::NotFound("no such collaboration"))?;
        if tx.organization(org).await?.is_none() {
            return Err(ServiceError::NotFound("no such organization"));
        }
        match tx.membership(id, org).await? {
            None => {
                return Err(ServiceError::Conflict(format!(
                    "organization {org} is not a member of collaboration {id}"
                )));
            }
            Some(Some(_)) => {
                return Err(ServiceError::Conflict(format!(
                    "organization {org} was already removed from collaboration {id}"
                )));
            }
            Some(None) => {}
        }
        let unfinished = tx.unfinished_runs(id, org, SHOWN + 1).await?;
        if !unfinished.is_empty() {
            let shown: Vec<String> = unfinished
                .iter()
                .take(SHOWN as usize)
                .map(|(run, task)| format!("run {run} of task {task}"))
                .collect();
            let more = if unfinished.len() > SHOWN as usize {
                " and more"
            } else {
                ""
            };
            return Err(ServiceError::Conflict(format!(
                "organization {org} still has runs in collaboration {id} that have not ended ({}{more}); wait until they end, or cancel their tasks first (`warden task cancel TASK`, POST /api/tasks/{{id}}/cancel: root, the task's requester or an org admin of its organization may), then remove it",
                shown.join(", ")
            )));
        }
        let now = now_micros();
        if !tx.remove_member(id, org, now).await? {
            return Err(ServiceError::Conflict(format!(
                "organization {org} is not a member of collaboration {id}"
            )));
        }
        // The node's key is replaced by one nobody holds: revoked as by a rotation.
        let node = tx.node_of_member(id, org).await?;
        let mut revoked = 0;
        if let Some(n) = &node {
            let (_, hash) = auth::new_node_key(n.id);
            tx.rotate_node_key(n.id, &hash).await?;
            revoked = tx.delete_node_tokens(n.id).await?;
            tx.notify_revoked(id, org).await?;
        }
        let organizations = tx.members(id).await?;
        tx.commit().await?;
        if node.is_some() {
            self.inner.hub.wake(Wake::Revoked(id, org));
        }
        tracing::info!(
            collaboration = id,
            organization = org,
            node = node.as_ref().map(|n| n.id),
            tokens = revoked,
            by = ?actor,
            "organization removed from the collaboration; its node's key revoked"
        );
        Ok(api::Collaboration {
            id,
            name: c.name,
            encrypted: c.encrypted,
            organizations,
            created_at: time_of(c.created_at),
        })
    }

    pub async fn collaboration(
        &self,
        bearer: Option<&Bearer>,
        id: i64,
    ) -> Result<api::Collaboration> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let c = tx
            .collaboration(id)
            .await?
            .ok_or(ServiceError::NotFound("no such collaboration"))?;
        let _permit = self.check(
            &actor,
            &Op::ReadCollaboration {
                collaboration_id: id,
            },
        )?;
        let organizations = tx.members(id).await?;
        Ok(api::Collaboration {
            id,
            name: c.name,
            encrypted: c.encrypted,
            organizations,
            created_at: time_of(c.created_at),
        })
    }

    pub async fn list_collaborations(
        &self,
        bearer: Option<&Bearer>,
        q: CollaborationQuery,
        page: PageRequest,
    ) -> Result<api::Page<api::Collaboration>> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let visible = actor.visible_collaborations();
        let rows = tx
            .list_collaborations(
                visible.as_deref(),
                q.name.as_deref(),
                q.organization_id,
                page.after,
                page.fetch(),
            )
            .await?;
        let mut members = Vec::with_capacity(rows.len());
        for r in rows.iter().take(page.limit as usize) {
            members.push(tx.members(r.id).await?);
        }
        let mut members = members.into_iter();
        Ok(page.page(
            rows,
            |r| r.id,
            |c| api::Collaboration {
                id: c.id,
                name: c.name,
                encrypted: c.encrypted,
                organizations: members.next().unwrap_or_default(),
                created_at: time_of(c.created_at),
            },
        ))
    }

    // ---- users -------------------------------------------------------------------------------

    pub async fn create_user(
        &self,
        bearer: Option<&Bearer>,
        req: api::CreateUser,
    ) -> Result<api::User> {
        check_username(&req.username)?;
        check_new_password(&req.password)?;
        match (req.role, req.organization_id) {
            (Role::Root, Some(_)) => {
                return Err(invalid(
                    "organization_id",
                    "a root user has no organization",
                ));
            }
            (Role::Root, None) => {}
            (_, None) => {
                return Err(invalid(
                    "organization_id",
                    "this role needs an organization_id",
                ));
            }
            (_, Some(_)) => {}
        }
        // Check the caller before spending an argon2 hash on the request.
        {
            let mut tx = self.inner.db.read().await?;
            let actor = self.actor(&mut tx, bearer).await?;
            let _permit = self.check(
                &actor,
                &Op::CreateUser {
                    organization_id: req.organization_id,
                    role: req.role,
                },
            )?;
        }
        let hash = auth::hash_password(req.password).await?;
        let mut tx = self.inner.db.write().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let _permit = self.check(
            &actor,
            &Op::CreateUser {
                organization_id: req.organization_id,
                role: req.role,
            },
        )?;
        if let Some(o) = req.organization_id {
            if tx.organization(o).await?.is_none() {
                return Err(missing(
                    "organization_id",
                    format!("organization {o} does not exist"),
                ));
            }
        }
        let now = now_micros();
        let id = tx
            .insert_user(&req.username, req.organization_id, req.role, &hash, now)
            .await
            .map_err(|e| match e {
                StorageError::Conflict => {
                    ServiceError::Conflict("this user name is taken; choose another".into())
                }
                e => e.into(),
            })?;
        tx.commit().await?;
        Ok(api::User {
            id,
            username: req.username,
            role: req.role,
            organization_id: req.organization_id,
            created_at: time_of(now),
            disabled: false,
        })
    }

    pub async fn user(&self, bearer: Option<&Bearer>, id: i64) -> Result<api::User> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let u = tx
            .user(id)
            .await?
            .ok_or(ServiceError::NotFound("no such user"))?;
        let _permit = self.check(
            &actor,
            &Op::ReadUser {
                user_id: id,
                organization_id: u.organization_id,
            },
        )?;
        Ok(user_view(u))
    }

    pub async fn list_users(
        &self,
        bearer: Option<&Bearer>,
        organization_id: Option<i64>,
        page: PageRequest,
    ) -> Result<api::Page<api::User>> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let rows = match &actor {
            Actor::User {
                role: Role::Root, ..
            } => {
                tx.list_users(organization_id, page.after, page.fetch())
                    .await?
            }
            Actor::User {
                role: Role::OrgAdmin,
                organization_id: Some(own),
                ..
            } => {
                if organization_id.is_some_and(|o| o != *own) {
                    return Err(ServiceError::Forbidden(Denied(
                        "this belongs to another organization",
                    )));
                }
                tx.list_users(Some(*own), page.after, page.fetch()).await?
            }
            Actor::User { id, .. } => {
                let me = tx.user(*id).await?;
                me.into_iter()
                    .filter(|u| page.after.is_none_or(|a| u.id < a))
                    .filter(|u| organization_id.is_none_or(|o| u.organization_id == Some(o)))
                    .collect()
            }
            _ => return Err(ServiceError::Forbidden(Denied("only users may list users"))),
        };
        Ok(page.page(rows, |u| u.id, user_view))
    }

    /// The caller changes their own password, giving the current one. A wrong current
    /// password counts as a failed login towards the lockout. Every session of the user is
    /// revoked (the presented token's included) and a fresh session is returned.
    pub async fn change_own_password(
        &self,
        bearer: Option<&Bearer>,
        req: api::ChangePassword,
    ) -> Result<api::TokenResponse> {
        check_password_field("new_password", &req.new_password)?;
        let same = req.new_password == req.current_password;
        let user = {
            let mut tx = self.inner.db.read().await?;
            let actor = self.actor(&mut tx, bearer).await?;
            let _permit = self.check(&actor, &Op::ChangeOwnPassword)?;
            let Actor::User { id, .. } = actor else {
                return Err(ServiceError::Forbidden(Denied("only users have passwords")));
            };
            tx.user(id)
                .await?
                .ok_or(ServiceError::NotFound("no such user"))?
        };
        let now = now_micros();
        if let Some(until) = user.locked_until.filter(|t| *t > now) {
            let minutes = (until - now).saturating_add(59_999_999) / 60_000_000;
            return Err(ServiceError::Locked(format!(
                "too many wrong passwords: the account is locked; try again in {minutes} minute(s)"
            )));
        }
        let ok = req.current_password.len() <= auth::MAX_PASSWORD_BYTES
            && auth::verify_password(req.current_password, user.password_hash.clone()).await?;
        if !ok {
            let a = &self.inner.auth;
            let mut tx = self.inner.db.write().await?;
            tx.record_login_failure(
                user.id,
                i64::from(a.lockout_threshold),
                now.saturating_add(secs(a.lockout_secs)),
            )
            .await?;
            tx.commit().await?;
            Metrics::inc(&self.inner.metrics.logins_failed);
            tracing::info!(
                user = user.id,
                "password change refused: wrong current password"
            );
            return Err(ServiceError::Forbidden(Denied(
                "current_password is wrong; a wrong password counts towards the login lockout",
            )));
        }
        // Only once the current password is proven: nobody else learns anything from it.
        if same {
            return Err(invalid(
                "new_password",
                "new_password must differ from the current password",
            ));
        }
        let hash = auth::hash_password(req.new_password).await?;
        let mut tx = self.inner.db.write().await?;
        // Only if nobody revoked the user's tokens (disable, reset) while we hashed.
        let generation = tx
            .set_password(user.id, &hash, Some(user.token_generation))
            .await?
            .ok_or_else(|| {
                ServiceError::Conflict(
                    "the account changed meanwhile (disabled or its password reset); log in again"
                        .into(),
                )
            })?;
        let revoked = tx.delete_user_tokens(user.id).await?;
        let family = auth::random_secret();
        let tokens = self
            .issue_session(&mut tx, user.id, generation, &family)
            .await?;
        tx.commit().await?;
        tracing::info!(
            user = user.id,
            tokens = revoked,
            "password changed; every earlier session revoked"
        );
        Ok(tokens)
    }

    /// Resolve the caller and the target user and check that the caller may reset the
    /// target's password.
    async fn password_reset_target(
        &self,
        tx: &mut Tx,
        bearer: Option<&Bearer>,
        id: i64,
    ) -> Result<UserRow> {
        let actor = self.actor(tx, bearer).await?;
        let target = tx
            .user(id)
            .await?
            .ok_or(ServiceError::NotFound("no such user"))?;
        let _permit = self.check(
            &actor,
            &Op::ResetPassword {
                user_id: id,
                organization_id: target.organization_id,
            },
        )?;
        Ok(target)
    }

    /// An administrator sets another user's password: the same strength rules and hashing
    /// as creation; the user's lockout is cleared and every session revoked.
    pub async fn reset_password(
        &self,
        bearer: Option<&Bearer>,
        id: i64,
        req: api::ResetPassword,
    ) -> Result<()> {
        check_new_password(&req.password)?;
        // Check the caller before spending an argon2 hash on the request.
        {
            let mut tx = self.inner.db.read().await?;
            self.password_reset_target(&mut tx, bearer, id).await?;
        }
        let hash = auth::hash_password(req.password).await?;
        let mut tx = self.inner.db.write().await?;
        self.password_reset_target(&mut tx, bearer, id).await?;
        tx.set_password(id, &hash, None)
            .await?
            .ok_or(ServiceError::NotFound("no such user"))?;
        let revoked = tx.delete_user_tokens(id).await?;
        tx.commit().await?;
        tracing::info!(
            user = id,
            tokens = revoked,
            "password reset by an administrator; every session revoked"
        );
        Ok(())
    }

    /// Disable or enable a user. Disabling revokes every token of the user at once; nobody
    /// disables themselves or the last enabled root.
    pub async fn update_user(
        &self,
        bearer: Option<&Bearer>,
        id: i64,
        req: api::UpdateUser,
    ) -> Result<api::User> {
        let Some(disabled) = req.disabled else {
            return Err(invalid(
                "disabled",
                "nothing to change; give \"disabled\": true or false",
            ));
        };
        let mut tx = self.inner.db.write().await?;
        // Before anything is read: two roots disabling each other must not both pass the
        // last-root check.
        tx.lock_accounts().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let mut target = tx
            .user(id)
            .await?
            .ok_or(ServiceError::NotFound("no such user"))?;
        let last_enabled_root = disabled
            && target.role == Role::Root
            && !target.disabled
            && tx.count_enabled_roots_except(id).await? == 0;
        let _permit = self.check(
            &actor,
            &Op::SetUserDisabled {
                user_id: id,
                organization_id: target.organization_id,
                disabled,
                last_enabled_root,
            },
        )?;
        if target.disabled == disabled {
            return Ok(user_view(target));
        }
        tx.set_user_disabled(id, disabled).await?;
        let revoked = if disabled {
            tx.delete_user_tokens(id).await?
        } else {
            0
        };
        tx.commit().await?;
        tracing::info!(
            user = id,
            disabled,
            tokens = revoked,
            by = ?actor,
            "user account state changed"
        );
        target.disabled = disabled;
        Ok(user_view(target))
    }

    // ---- nodes -------------------------------------------------------------------------------

    /// Replace a node's API key. The new key is returned once; the old key and every node
    /// token issued under it stop working at once, and the node's open event sessions close.
    pub async fn rotate_node_key(
        &self,
        bearer: Option<&Bearer>,
        id: i64,
    ) -> Result<api::CreatedNode> {
        let mut tx = self.inner.db.write().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let n = tx
            .node(id)
            .await?
            .ok_or(ServiceError::NotFound("no such node"))?;
        let _permit = self.check(
            &actor,
            &Op::RotateNodeKey {
                node_id: id,
                organization_id: n.organization_id,
            },
        )?;
        if matches!(
            tx.membership(n.collaboration_id, n.organization_id).await?,
            Some(Some(_))
        ) {
            return Err(ServiceError::Conflict(format!(
                "organization {} was removed from collaboration {}, so its node has no key there; add the organization again first (POST /api/collaborations/{}/members)",
                n.organization_id, n.collaboration_id, n.collaboration_id
            )));
        }
        let (api_key, hash) = auth::new_node_key(id);
        tx.rotate_node_key(id, &hash)
            .await?
            .ok_or(ServiceError::NotFound("no such node"))?;
        let revoked = tx.delete_node_tokens(id).await?;
        tx.notify_revoked(n.collaboration_id, n.organization_id)
            .await?;
        tx.commit().await?;
        self.inner
            .hub
            .wake(Wake::Revoked(n.collaboration_id, n.organization_id));
        tracing::info!(node = id, tokens = revoked, by = ?actor, "node api key rotated; its tokens revoked");
        Ok(api::CreatedNode {
            node: node_view(n),
            api_key,
        })
    }

    pub async fn create_node(
        &self,
        bearer: Option<&Bearer>,
        req: api::CreateNode,
    ) -> Result<api::CreatedNode> {
        let mut tx = self.inner.db.write().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let _permit = self.check(
            &actor,
            &Op::CreateNode {
                organization_id: req.organization_id,
            },
        )?;
        if tx.collaboration(req.collaboration_id).await?.is_none() {
            return Err(missing("collaboration_id", "no such collaboration"));
        }
        if !tx
            .members(req.collaboration_id)
            .await?
            .contains(&req.organization_id)
        {
            if tx.organization(req.organization_id).await?.is_none() {
                return Err(missing("organization_id", "no such organization"));
            }
            return Err(ServiceError::Conflict(
                "the organization is not a member of the collaboration; a root user adds it with POST /api/collaborations/{id}/members".into(),
            ));
        }
        let now = now_micros();
        let id = tx
            .insert_node(req.organization_id, req.collaboration_id, "", now)
            .await
            .map_err(|e| match e {
                StorageError::Conflict => ServiceError::Conflict(
                    "this organization already has a node in this collaboration".into(),
                ),
                e => e.into(),
            })?;
        let (api_key, hash) = auth::new_node_key(id);
        tx.set_node_key(id, &hash).await?;
        tx.commit().await?;
        Ok(api::CreatedNode {
            node: api::Node {
                id,
                organization_id: req.organization_id,
                collaboration_id: req.collaboration_id,
                created_at: time_of(now),
                last_seen_at: None,
            },
            api_key,
        })
    }

    pub async fn node(&self, bearer: Option<&Bearer>, id: i64) -> Result<api::Node> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let n = tx
            .node(id)
            .await?
            .ok_or(ServiceError::NotFound("no such node"))?;
        let _permit = self.check(
            &actor,
            &Op::ReadNode {
                node_id: id,
                organization_id: n.organization_id,
            },
        )?;
        Ok(node_view(n))
    }

    pub async fn list_nodes(
        &self,
        bearer: Option<&Bearer>,
        collaboration_id: Option<i64>,
        page: PageRequest,
    ) -> Result<api::Page<api::Node>> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let rows = match &actor {
            Actor::User {
                role: Role::Root, ..
            } => {
                tx.list_nodes(None, collaboration_id, page.after, page.fetch())
                    .await?
            }
            Actor::User {
                organization_id: Some(own),
                ..
            } => {
                tx.list_nodes(Some(*own), collaboration_id, page.after, page.fetch())
                    .await?
            }
            Actor::Node { id, .. } => tx
                .node(*id)
                .await?
                .into_iter()
                .filter(|n| page.after.is_none_or(|a| n.id < a))
                .collect(),
            _ => {
                return Err(ServiceError::Forbidden(Denied(
                    "this token may not list nodes",
                )));
            }
        };
        Ok(page.page(rows, |n| n.id, node_view))
    }

    // ---- tasks -------------------------------------------------------------------------------

    pub async fn create_task(
        &self,
        bearer: Option<&Bearer>,
        req: TaskRequest,
    ) -> Result<api::TaskDetail> {
        if let Some(batcher) = &self.inner.batcher {
            let (reply, answer) = oneshot::channel();
            let job = TaskJob {
                bearer: bearer.cloned(),
                req,
                reply,
            };
            let gone = || ServiceError::Storage(StorageError::Database(sqlx::Error::PoolClosed));
            batcher.send(job).await.map_err(|_| gone())?;
            let (detail, _) = answer.await.map_err(|_| gone())??;
            return Ok(detail);
        }
        let mut tx = self.inner.db.write().await?;
        let (detail, events) = self.create_task_in(&mut tx, bearer, &req).await?;
        tx.commit().await?;
        self.task_committed(events);
        Ok(detail)
    }

    /// Refuses a subtask of `parent` deeper than `[limits] max_subtask_depth`: a root task has
    /// depth 0, its subtasks 1, and so on. The walk up the chain stops one past the cap.
    async fn check_depth(&self, tx: &mut Tx, parent: &TaskRow) -> Result<()> {
        let max = self.inner.limits.max_subtask_depth;
        let mut depth: u32 = 1;
        let mut up = parent.parent_task_id;
        while let Some(id) = up {
            depth += 1;
            if depth > max {
                return Err(ServiceError::Forbidden(Denied(
                    "the subtask would be deeper than the server's max_subtask_depth",
                )));
            }
            up = tx.task(id).await?.and_then(|t| t.parent_task_id);
        }
        Ok(())
    }

    /// Metrics and the announcement of its events after a task's transaction committed.
    fn task_committed(&self, events: Vec<Committed>) {
        let m = &self.inner.metrics;
        Metrics::inc(&m.tasks_created);
        Metrics::add(&m.runs_created, events.len() as u64);
        self.inner.hub.announce(events);
    }

    /// Everything of a task creation inside `tx`; returns the task and the (collaboration,
    /// organization) pairs whose nodes get an event.
    async fn create_task_in(
        &self,
        tx: &mut Tx,
        bearer: Option<&Bearer>,
        req: &TaskRequest,
    ) -> Result<CreatedTask> {
        let actor = self.actor(tx, bearer).await?;
        // The collaboration, and which of the targets are its members: one statement.
        let targets: Vec<i64> = req.inputs.iter().map(|(o, _)| *o).collect();
        let (collab, members) = tx
            .collaboration_and_members_among(req.collaboration_id, &targets)
            .await?
            .ok_or(ServiceError::NotFound("no such collaboration"))?;
        let digest = req.image.digest().map(|d| d.to_string());
        let repository = req.image.repository().to_string();
        let _permit = self.check(
            &actor,
            &Op::CreateTask {
                collaboration_id: collab.id,
                digest: digest.as_deref(),
                repository: &repository,
                parent_task_id: req.parent_task_id,
            },
        )?;
        let (organization_id, creator, creator_run_id, parent) = match &actor {
            Actor::User {
                id,
                username,
                organization_id: Some(o),
                ..
            } => (*o, Some((*id, username.clone())), None, req.parent_task_id),
            Actor::Run {
                run_id,
                task_id,
                organization_id,
                ..
            } => (*organization_id, None, Some(*run_id), Some(*task_id)),
            _ => {
                return Err(ServiceError::Forbidden(Denied(
                    "this caller cannot create tasks",
                )));
            }
        };
        if let Some((o, _)) = req
            .inputs
            .iter()
            .find(|(o, _)| members.binary_search(o).is_err())
        {
            if tx.organization(*o).await?.is_none() {
                return Err(missing(
                    "inputs",
                    format!("organization {o} does not exist"),
                ));
            }
            return Err(ServiceError::Conflict(format!(
                "organization {o} is not a member of the collaboration"
            )));
        }
        let parent_row = match parent {
            Some(p) => match tx.task(p).await? {
                Some(t) if t.collaboration_id == collab.id => Some(t),
                _ => {
                    return Err(missing(
                        "parent_task_id",
                        "the parent task does not exist in this collaboration",
                    ));
                }
            },
            None => None,
        };
        if let Some(p) = &parent_row {
            self.check_depth(tx, p).await?;
        }
        // The requesting user: the creator, or for a subtask created by a run the parent's
        // requester (so, transitively, the user who created the root task). Id and name are
        // copied into the row (user names never change) so that reading them costs nothing.
        let creator_user_id = creator.as_ref().map(|(id, _)| *id);
        let (requester_user_id, creator_username) = match (creator, &parent_row) {
            (Some((u, name)), _) => (Some(u), Some(name)),
            (None, Some(p)) => (p.requester_user_id, p.creator_username.clone()),
            (None, None) => (None, None),
        };
        let now = now_micros();
        let image = req.image.to_string();
        let task = NewTask {
            collaboration_id: collab.id,
            name: &req.name,
            image: &image,
            organization_id,
            creator_user_id,
            requester_user_id,
            requester_username: creator_username.as_deref(),
            creator_run_id,
            parent_task_id: parent,
            nonce: req.nonce.as_deref(),
            created_at: now,
        };
        let task_id = tx.insert_task(&task).await.map_err(|e| match e {
            // The only unique constraint of a task: (collaboration, nonce).
            StorageError::Conflict => ServiceError::Conflict(
                "nonce is already used by another task in this collaboration; \
                 seal the inputs again with a new nonce"
                    .into(),
            ),
            e => e.into(),
        })?;
        let (run_ids, ids) = tx
            .insert_runs_and_events(task_id, collab.id, &req.inputs, now)
            .await?;
        let mut runs = Vec::with_capacity(req.inputs.len());
        let mut keys = Vec::with_capacity(req.inputs.len());
        for (&run_id, (org, _)) in run_ids.iter().zip(&req.inputs) {
            runs.push(RunRow {
                id: run_id,
                task_id,
                collaboration_id: collab.id,
                organization_id: *org,
                state: RunState::Pending,
                reason: None,
                digest: None,
                has_result: false,
                created_at: now,
                admitted_at: None,
                started_at: None,
                finished_at: None,
                acked_at: None,
            });
            keys.push((run_id, collab.id, *org));
        }
        // The events exactly as a read returns them (Service::events), for the sessions,
        // where their ids are known before the commit (SQLite).
        let events = keys
            .iter()
            .zip(ids)
            .map(|(&(run_id, c, o), id)| Committed {
                node: (c, o),
                id,
                event: id.map(|id| api::Event {
                    id,
                    kind: api::EventKind::RunCreated,
                    run_id,
                    task_id,
                    image: image.clone(),
                    created_at: time_of(now),
                    cancelled_by: None,
                }),
            })
            .collect();
        tracing::info!(task = task_id, collaboration = collab.id, image = %image, runs = runs.len(), "task created");
        let detail = api::TaskDetail {
            task: api::Task {
                id: task_id,
                collaboration_id: collab.id,
                name: req.name.clone(),
                image,
                organization_id,
                creator_user_id,
                creator_username,
                creator_run_id,
                parent_task_id: parent,
                nonce: req.nonce.clone(),
                created_at: time_of(now),
                cancelled_at: None,
                cancelled_by: None,
            },
            runs: runs.into_iter().map(run_view).collect(),
        };
        Ok((detail, events))
    }

    pub async fn task(&self, bearer: Option<&Bearer>, id: i64) -> Result<api::TaskDetail> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let t = tx
            .task(id)
            .await?
            .ok_or(ServiceError::NotFound("no such task"))?;
        let _permit = self.check(
            &actor,
            &Op::ReadTask {
                collaboration_id: t.collaboration_id,
                creator_run_id: t.creator_run_id,
            },
        )?;
        let runs = tx
            .runs_of_task(id)
            .await?
            .into_iter()
            .filter(|r| {
                permissions::check(
                    &actor,
                    &Op::ReadRun {
                        collaboration_id: r.collaboration_id,
                        organization_id: r.organization_id,
                        creator_run_id: t.creator_run_id,
                    },
                )
                .is_ok()
            })
            .map(run_view)
            .collect();
        Ok(api::TaskDetail {
            task: task_view(t),
            runs,
        })
    }

    /// Cancel a task (its requester, an org admin of its organization, root): every run that
    /// has not ended becomes `cancelled` and its node gets a `run_cancelled` event; final runs
    /// keep their state. Cancelling a cancelled task again answers it unchanged; a task whose
    /// runs had all ended before is a conflict.
    pub async fn cancel_task(&self, bearer: Option<&Bearer>, id: i64) -> Result<api::TaskDetail> {
        let mut tx = self.inner.db.write().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let t = tx
            .task(id)
            .await?
            .ok_or(ServiceError::NotFound("no such task"))?;
        let _permit = self.check(
            &actor,
            &Op::CancelTask {
                collaboration_id: t.collaboration_id,
                task_organization_id: t.organization_id,
                requester_user_id: t.requester_user_id,
            },
        )?;
        let user_id = match &actor {
            Actor::User { id, .. } => Some(*id),
            _ => None,
        };
        let now = now_micros();
        let mut moved = Vec::new();
        let mut ids = Vec::new();
        if t.cancelled_at.is_none() {
            let runs = tx.runs_of_task(id).await?;
            if runs.iter().all(|r| r.state.is_final()) {
                let states: Vec<String> = runs
                    .iter()
                    .map(|r| format!("run {} {}", r.id, r.state))
                    .collect();
                return Err(ServiceError::Conflict(format!(
                    "task {id} has already ended ({}); there is nothing to cancel",
                    states.join(", ")
                )));
            }
            let username = match user_id {
                Some(u) => tx.user(u).await?.map(|u| u.username),
                None => None,
            };
            tx.cancel_task(id, user_id, username.as_deref(), now)
                .await?;
            moved = tx.cancel_runs(id, now).await?;
            ids = tx.insert_events("run_cancelled", &moved, now).await?;
            // Its subtasks, and theirs, go with it: a central run cancelled would otherwise
            // leave the partial runs it asked for running at their nodes, for a result no
            // one reads. Cancelled by the same person, in the same transaction.
            let mut parents = vec![id];
            while let Some(parent) = parents.pop() {
                for sub in tx.live_subtasks(parent).await? {
                    tx.cancel_task(sub, user_id, username.as_deref(), now)
                        .await?;
                    let m = tx.cancel_runs(sub, now).await?;
                    ids.extend(tx.insert_events("run_cancelled", &m, now).await?);
                    moved.extend(m);
                    parents.push(sub);
                }
            }
        }
        let t = tx
            .task(id)
            .await?
            .ok_or(ServiceError::NotFound("no such task"))?;
        let runs = tx.runs_of_task(id).await?;
        // The sessions read these events (the cancellation's name and images are not at hand).
        let events: Vec<Committed> = moved
            .iter()
            .zip(&ids)
            .map(|(&(_, c, o), &id)| Committed {
                node: (c, o),
                id,
                event: None,
            })
            .collect();
        // The commit and its announcement in a task of their own, so that a request dropped
        // in between cannot commit events that are never announced.
        let hub = self.inner.hub.clone();
        tokio::spawn(async move {
            tx.commit().await?;
            hub.announce(events);
            Ok::<_, StorageError>(())
        })
        .await
        .map_err(|e| {
            ServiceError::Storage(StorageError::Database(sqlx::Error::Protocol(format!(
                "the commit of the cancellation did not finish: {e}"
            ))))
        })??;
        if !moved.is_empty() {
            Metrics::add(&self.inner.metrics.run_transitions, moved.len() as u64);
        }
        tracing::info!(task = id, by = ?user_id, runs = ?moved.iter().map(|(r, ..)| *r).collect::<Vec<_>>(), "task cancelled");
        Ok(api::TaskDetail {
            task: task_view(t),
            runs: runs.into_iter().map(run_view).collect(),
        })
    }

    pub async fn list_tasks(
        &self,
        bearer: Option<&Bearer>,
        q: TaskQuery,
        page: PageRequest,
    ) -> Result<api::Page<api::Task>> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let visible = actor.visible_collaborations();
        let creator_run_id = match &actor {
            Actor::Run { run_id, .. } => Some(*run_id),
            _ => None,
        };
        let filter = TaskFilter {
            collaborations: visible.as_deref(),
            collaboration_id: q.collaboration_id,
            parent_task_id: q.parent_task_id,
            creator_run_id,
            creator_user_id: q.creator_user_id,
            organization_id: q.organization_id,
            image: q.image.as_deref(),
        };
        let rows = tx.list_tasks(&filter, page.after, page.fetch()).await?;
        Ok(page.page(rows, |t| t.id, task_view))
    }

    // ---- runs --------------------------------------------------------------------------------

    pub async fn run(&self, bearer: Option<&Bearer>, id: i64) -> Result<api::Run> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let r = tx
            .run(id)
            .await?
            .ok_or(ServiceError::NotFound("no such run"))?;
        let _permit = self.check(
            &actor,
            &Op::ReadRun {
                collaboration_id: r.run.collaboration_id,
                organization_id: r.run.organization_id,
                creator_run_id: r.task_creator_run_id,
            },
        )?;
        Ok(run_view(r.run))
    }

    pub async fn list_runs(
        &self,
        bearer: Option<&Bearer>,
        q: RunQuery,
        page: PageRequest,
    ) -> Result<api::Page<api::Run>> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let visible = actor.visible_collaborations();
        let mut filter = RunFilter {
            collaborations: visible.as_deref(),
            collaboration_id: q.collaboration_id,
            organization_id: q.organization_id,
            task_id: q.task_id,
            state: q.state,
            creator_run_id: None,
        };
        match &actor {
            Actor::Node {
                organization_id, ..
            } => {
                if q.organization_id.is_some_and(|o| o != *organization_id) {
                    return Err(ServiceError::Forbidden(Denied(
                        "this run is not for your node",
                    )));
                }
                filter.organization_id = Some(*organization_id);
            }
            Actor::Run { run_id, .. } => filter.creator_run_id = Some(*run_id),
            Actor::User { .. } => {}
        }
        let rows = tx.list_runs(&filter, page.after, page.fetch()).await?;
        Ok(page.page(rows, |r| r.id, run_view))
    }

    /// Load a run and require that the caller is its node.
    async fn operated_run(
        &self,
        tx: &mut Tx,
        bearer: Option<&Bearer>,
        id: i64,
    ) -> Result<crate::storage::RunWithTask> {
        Ok(self.operated_run_by(tx, bearer, id).await?.1)
    }

    /// [`Service::operated_run`], and who operates it.
    async fn operated_run_by(
        &self,
        tx: &mut Tx,
        bearer: Option<&Bearer>,
        id: i64,
    ) -> Result<(Actor, crate::storage::RunWithTask)> {
        let actor = self.actor(tx, bearer).await?;
        let r = tx
            .run(id)
            .await?
            .ok_or(ServiceError::NotFound("no such run"))?;
        let _permit = self.check(
            &actor,
            &Op::OperateRun {
                collaboration_id: r.run.collaboration_id,
                organization_id: r.run.organization_id,
            },
        )?;
        Ok((actor, r))
    }

    /// Acknowledge delivery of a run; repeating it changes nothing.
    pub async fn ack_run(&self, bearer: Option<&Bearer>, id: i64) -> Result<api::Run> {
        let mut tx = self.inner.db.write().await?;
        let r = self.operated_run(&mut tx, bearer, id).await?;
        let now = now_micros();
        tx.ack_run(id, now).await?;
        tx.commit().await?;
        let mut run = r.run;
        run.acked_at = run.acked_at.or(Some(now));
        Ok(run_view(run))
    }

    pub async fn run_input(&self, bearer: Option<&Bearer>, id: i64) -> Result<Vec<u8>> {
        let mut tx = self.inner.db.read().await?;
        self.operated_run(&mut tx, bearer, id).await?;
        tx.run_input(id)
            .await?
            .ok_or(ServiceError::NotFound("the run has no input"))
    }

    /// Apply a state transition reported by the run's node. Repeating the transition that put
    /// the run in its current state succeeds without change (at-least-once reporting).
    pub async fn update_run(
        &self,
        bearer: Option<&Bearer>,
        id: i64,
        update: RunUpdate,
    ) -> Result<api::Run> {
        let mut tx = self.inner.db.write().await?;
        let r = self.operated_run(&mut tx, bearer, id).await?;
        let current = r.run.state;
        let next = update.state();
        let (reason, digest) = match &update {
            RunUpdate::Admitted { digest } => (None, Some(digest.to_string())),
            RunUpdate::Failed { reason } | RunUpdate::Rejected { reason } => {
                (Some(reason.clone()), None)
            }
            RunUpdate::Running
            | RunUpdate::AwaitingApproval
            | RunUpdate::AwaitingRelease
            | RunUpdate::Completed => (None, None),
        };
        if current == next {
            let same = (reason.is_none() || reason == r.run.reason)
                && (digest.is_none() || digest == r.run.digest);
            if same {
                return Ok(run_view(r.run));
            }
            return Err(ServiceError::Conflict(format!(
                "the run is already {current} with different details"
            )));
        }
        if current == RunState::Cancelled {
            return Err(ServiceError::Conflict(format!(
                "the run was cancelled and cannot become {next}; stop it and send nothing of it"
            )));
        }
        if !current.can_become(next) {
            return Err(ServiceError::Conflict(format!(
                "the run is {current} and cannot become {next}"
            )));
        }
        if next == RunState::Completed && !r.run.has_result {
            return Err(ServiceError::Conflict(
                "upload the result before marking the run completed".into(),
            ));
        }
        if let (RunUpdate::Admitted { digest: d }, Ok(reference)) =
            (&update, Reference::parse(&r.image))
        {
            if reference.digest().is_some_and(|want| want != d) {
                return Err(invalid(
                    "digest",
                    "the digest differs from the one pinned in the task's image reference",
                ));
            }
        }
        let now = now_micros();
        let moved = tx
            .transition_run(id, current, next, reason.as_deref(), digest.as_deref(), now)
            .await?;
        if !moved {
            return Err(ServiceError::Conflict(
                "the run changed concurrently; read it again".into(),
            ));
        }
        tx.commit().await?;
        Metrics::inc(&self.inner.metrics.run_transitions);
        tracing::info!(run = id, from = %current, to = %next, reason = reason.as_deref().unwrap_or(""), "run transition");
        let mut run = r.run;
        run.state = next;
        if reason.is_some() {
            run.reason = reason;
        }
        if digest.is_some() {
            run.digest = digest;
        }
        match next {
            RunState::Admitted => run.admitted_at = Some(now),
            RunState::Running => run.started_at = Some(now),
            // The node's waits keep the times they had.
            RunState::AwaitingApproval | RunState::AwaitingRelease => {}
            _ => run.finished_at = Some(now),
        }
        Ok(run_view(run))
    }

    /// Store a run's (encrypted) result. Allowed while the run is running or its result awaits
    /// release at the node (the node uploads it once its owner released it).
    pub async fn put_result(&self, bearer: Option<&Bearer>, id: i64, data: &[u8]) -> Result<()> {
        let mut tx = self.inner.db.write().await?;
        self.uploading_run(&mut tx, bearer, id, "a result").await?;
        tx.put_result(id, data, now_micros()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn result(&self, bearer: Option<&Bearer>, id: i64) -> Result<Vec<u8>> {
        let mut tx = self.inner.db.read().await?;
        self.check_result_reader(&mut tx, bearer, id).await?;
        tx.result(id)
            .await?
            .ok_or(ServiceError::NotFound("the run has no result yet"))
    }

    /// Store a run's sealed logs, as its own node released them. Allowed while the run is
    /// running or awaiting release, like a result: the node uploads them before it reports the
    /// run's final state.
    pub async fn put_logs(&self, bearer: Option<&Bearer>, id: i64, data: &[u8]) -> Result<()> {
        let mut tx = self.inner.db.write().await?;
        self.uploading_run(&mut tx, bearer, id, "logs").await?;
        if data.is_empty() {
            return Err(invalid("logs", "the sealed logs are empty"));
        }
        tx.put_logs(id, data, now_micros()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A run's sealed logs, for whoever may read its result.
    pub async fn logs(&self, bearer: Option<&Bearer>, id: i64) -> Result<Vec<u8>> {
        let mut tx = self.inner.db.read().await?;
        self.check_result_reader(&mut tx, bearer, id).await?;
        tx.logs(id).await?.ok_or(ServiceError::NotFound(
            "the run's node released no logs (its policy withholds them, or the run has not ended)",
        ))
    }

    /// Requires that the caller is the run's node and that the run takes an upload of `what`
    /// (a result, logs): while it is running or awaiting release.
    async fn uploading_run(
        &self,
        tx: &mut Tx,
        bearer: Option<&Bearer>,
        id: i64,
        what: &str,
    ) -> Result<()> {
        let r = self.operated_run(tx, bearer, id).await?;
        if r.run.state == RunState::Cancelled {
            return Err(ServiceError::Conflict(format!(
                "the run was cancelled; {what} of a cancelled run is never stored: discard it"
            )));
        }
        if !matches!(r.run.state, RunState::Running | RunState::AwaitingRelease) {
            return Err(ServiceError::Conflict(format!(
                "the run is {}; {what} can only be uploaded while it is running or awaiting \
                 release",
                r.run.state
            )));
        }
        Ok(())
    }

    /// Requires that the caller may read the run's result (and so its released logs).
    async fn check_result_reader(
        &self,
        tx: &mut Tx,
        bearer: Option<&Bearer>,
        id: i64,
    ) -> Result<()> {
        let actor = self.actor(tx, bearer).await?;
        let r = tx
            .run(id)
            .await?
            .ok_or(ServiceError::NotFound("no such run"))?;
        let _permit = self.check(
            &actor,
            &Op::ReadResult {
                collaboration_id: r.run.collaboration_id,
                task_organization_id: r.task_organization_id,
                creator_run_id: r.task_creator_run_id,
            },
        )?;
        Ok(())
    }

    /// Issue the token for the algorithm container of a running run.
    pub async fn run_token(&self, bearer: Option<&Bearer>, id: i64) -> Result<api::RunToken> {
        let mut tx = self.inner.db.write().await?;
        let (actor, r) = self.operated_run_by(&mut tx, bearer, id).await?;
        if r.run.state != RunState::Running {
            return Err(ServiceError::Conflict(format!(
                "the run is {}; a run token is only issued while it is running",
                r.run.state
            )));
        }
        // Recorded under the node that asked, so that rotating its key revokes the run tokens
        // it was given as well (a leaked key's holder may have asked for some).
        let node_id = match actor {
            Actor::Node { id, .. } => Some(id),
            _ => None,
        };
        let token = auth::new_token(auth::RUN_PREFIX);
        let ttl = self.inner.auth.run_token_ttl_secs;
        tx.insert_token(&TokenRow {
            hash: auth::token_hash(&token),
            kind: TokenKind::Run,
            user_id: None,
            node_id,
            run_id: Some(id),
            family: None,
            consumed: false,
            expires_at: now_micros().saturating_add(secs(ttl)),
            generation: 0,
        })
        .await?;
        tx.commit().await?;
        Ok(api::RunToken {
            token,
            expires_in: ttl,
        })
    }

    // ---- events ------------------------------------------------------------------------------

    /// Who is receiving events: checked once at connection and on every poll.
    pub async fn event_subscriber(&self, bearer: Option<&Bearer>) -> Result<(i64, i64)> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let _permit = self.check(&actor, &Op::ReceiveEvents)?;
        match actor {
            Actor::Node {
                organization_id,
                collaboration_id,
                ..
            } => Ok((collaboration_id, organization_id)),
            _ => Err(ServiceError::Forbidden(Denied("only nodes receive events"))),
        }
    }

    /// Counts events a session sent as the hub handed them over (no read).
    /// One database read of a node's event session.
    pub fn event_read(&self) {
        Metrics::inc(&self.inner.metrics.event_reads);
    }

    pub fn events_pushed(&self, n: u64) {
        let m = &self.inner.metrics;
        Metrics::add(&m.events_delivered, n);
        Metrics::add(&m.events_pushed, n);
    }

    /// Events for the node after `after`, oldest first.
    pub async fn events(
        &self,
        node: (i64, i64),
        after: i64,
        limit: u32,
    ) -> Result<Vec<api::Event>> {
        let mut tx = self.inner.db.read().await?;
        let rows = tx.events_after(node.0, node.1, after, limit).await?;
        Metrics::add(&self.inner.metrics.events_delivered, rows.len() as u64);
        Ok(rows
            .into_iter()
            .map(|e| api::Event {
                id: e.id,
                kind: if e.kind == "run_cancelled" {
                    api::EventKind::RunCancelled
                } else {
                    api::EventKind::RunCreated
                },
                run_id: e.run_id,
                task_id: e.task_id,
                image: e.image,
                created_at: time_of(e.created_at),
                cancelled_by: e.cancelled_by,
            })
            .collect())
    }

    /// A node reports the latest checkpoint of an algorithm store it verified (split views).
    /// Only the shape is checked here (the server pins no store key and cannot verify the
    /// note; every node that receives it does): a store name, the verifier key named after its
    /// origin, a note of at most 64 KiB whose first two lines are that origin and a size. Kept
    /// per store, key and node when it is larger than the one kept.
    pub async fn report_store_checkpoint(
        &self,
        bearer: Option<&Bearer>,
        report: api::store::RelayedCheckpoint,
    ) -> Result<()> {
        let mut tx = self.inner.db.write().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let _permit = self.check(&actor, &Op::ReceiveEvents)?;
        let Actor::Node { id: node_id, .. } = actor else {
            return Err(ServiceError::Forbidden(Denied(
                "only nodes report store checkpoints",
            )));
        };
        let size = relayed_checkpoint_size(&report)?;
        tx.put_store_checkpoint(
            &report.store,
            &report.key,
            node_id,
            size,
            &report.checkpoint,
            now_micros(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The store checkpoints nodes reported, for a node to check against its own.
    pub async fn store_checkpoints(
        &self,
        bearer: Option<&Bearer>,
    ) -> Result<api::store::RelayedCheckpoints> {
        let mut tx = self.inner.db.read().await?;
        let actor = self.actor(&mut tx, bearer).await?;
        let _permit = self.check(&actor, &Op::ReceiveEvents)?;
        if !matches!(actor, Actor::Node { .. }) {
            return Err(ServiceError::Forbidden(Denied(
                "only nodes read relayed store checkpoints",
            )));
        }
        let rows = tx.store_checkpoints(MAX_RELAYED_CHECKPOINTS).await?;
        Ok(api::store::RelayedCheckpoints {
            checkpoints: rows
                .into_iter()
                .map(|(store, key, checkpoint)| api::store::RelayedCheckpoint {
                    store,
                    key,
                    checkpoint,
                })
                .collect(),
        })
    }

    pub fn session_opened(&self) {
        self.inner
            .metrics
            .ws_sessions
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_closed(&self) {
        self.inner
            .metrics
            .ws_sessions
            .fetch_sub(1, Ordering::Relaxed);
    }

    pub async fn health(&self) -> Result<()> {
        let mut tx = self.inner.db.read().await?;
        tx.ping().await?;
        Ok(())
    }
}

/// Most relayed store checkpoints handed to a node at once.
const MAX_RELAYED_CHECKPOINTS: u32 = 1000;

/// The tree size of a relayed checkpoint whose shape is right; a clear refusal otherwise.
fn relayed_checkpoint_size(r: &api::store::RelayedCheckpoint) -> Result<i64> {
    let name_ok = !r.store.is_empty()
        && r.store.len() <= 64
        && r.store
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if !name_ok {
        return Err(invalid("store", "a store name is 1 to 64 of `a-z0-9-._`"));
    }
    let origin = api::store::origin(&r.store);
    let key_ok = r.key.len() <= api::store::MAX_RELAYED_KEY
        && r.key
            .strip_prefix(origin.as_str())
            .is_some_and(|rest| rest.starts_with('+'))
        && !r.key.chars().any(|c| c.is_whitespace() || c.is_control());
    if !key_ok {
        return Err(invalid(
            "key",
            format!("the key must be the store's C2SP verifier key `{origin}+<hex>+<base64>`"),
        ));
    }
    if r.checkpoint.len() > api::store::MAX_RELAYED_CHECKPOINT {
        return Err(invalid(
            "checkpoint",
            format!(
                "the checkpoint is larger than {} bytes",
                api::store::MAX_RELAYED_CHECKPOINT
            ),
        ));
    }
    let mut lines = r.checkpoint.split('\n');
    if lines.next() != Some(origin.as_str()) {
        return Err(invalid(
            "checkpoint",
            format!("the checkpoint's first line must be its origin `{origin}`"),
        ));
    }
    lines
        .next()
        .filter(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_digit())
                && (l.len() == 1 || !l.starts_with('0'))
        })
        .and_then(|l| l.parse::<i64>().ok())
        .ok_or_else(|| {
            invalid(
                "checkpoint",
                "the checkpoint's second line must be its tree size",
            )
        })
}
