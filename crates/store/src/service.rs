//! The service layer: opens the transaction, resolves who is asking, asks [`domain::permit`],
//! checks signed envelopes against the signer's registered key, and appends every decision to
//! the log in the same transaction. No HTTP here.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use time::OffsetDateTime;
use warden_accounts::lockout::Lockout;
use warden_accounts::password::{self, AuthError, MAX_PASSWORD_BYTES};
use warden_accounts::throttle::{Rate, Throttle};
use warden_accounts::token;
use warden_api::store::{self as wire, EntryKind, Function, FunctionKind, StoreRole, VersionState};
use warden_reference::{Digest, Reference, Repository};
use warden_tlog::{Hash, leaf_hash};
use warden_trust::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1};
use warden_trust::review::{Decision, Review, ReviewPredicate, verify_review};
use warden_trust::{PublicKey, SigningKey};

use crate::config::{AuthConfig, ReviewConfig};
use crate::domain::{self, Action, Actor, Denied, ReviewerFacts, Tally, VersionFacts, Vote};
use crate::log::{Log, LogError};
use crate::storage::{AccountRow, Db, NewLeaf, StorageError, Tx, VersionRow};

/// Store access tokens are told apart from the server's.
pub const ACCESS_PREFIX: &str = "wsa_";
pub const REFRESH_PREFIX: &str = "wsr_";
/// Longest free text (description, reason, comment) accepted.
pub const MAX_TEXT: usize = 4096;
/// Most functions of a version, and arguments of a function.
pub const MAX_FUNCTIONS: usize = 64;
pub const MAX_ARGUMENTS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many login attempts from this address; retry in {0} s")]
    Throttled(u64),
    #[error("{0}")]
    Locked(String),
    #[error("the registry could not resolve the image: {0}")]
    Registry(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl From<Denied> for ServiceError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::State(s) => ServiceError::Conflict(s),
            other => ServiceError::Denied(other.to_string()),
        }
    }
}

type Result<T, E = ServiceError> = std::result::Result<T, E>;

fn invalid(s: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(s.into())
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Counters behind `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub logins_ok: AtomicU64,
    pub logins_failed: AtomicU64,
    pub submissions: AtomicU64,
    pub approvals: AtomicU64,
    pub rejections: AtomicU64,
    pub revocations: AtomicU64,
    pub reinstatements: AtomicU64,
    pub refused_envelopes: AtomicU64,
}

/// Resolves a tag to a digest, once, at submission.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync + std::fmt::Debug {
    async fn resolve(&self, reference: &Reference) -> Result<Digest, String>;
}

/// The real registry, through `warden-registry`.
#[derive(Debug)]
pub struct RegistryResolver(pub warden_registry::Client);

#[async_trait::async_trait]
impl Resolver for RegistryResolver {
    async fn resolve(&self, reference: &Reference) -> Result<Digest, String> {
        self.0
            .resolve(reference)
            .await
            .map(|r| r.digest)
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
struct Inner {
    db: Db,
    name: String,
    key: SigningKey,
    public: PublicKey,
    log: Log,
    /// The open group commit of decisions (held while one decision runs).
    append: tokio::sync::Mutex<Batch>,
    /// Decisions waiting for [`Inner::append`].
    queued: AtomicUsize,
    rules: ReviewConfig,
    auth: AuthConfig,
    throttle: Throttle,
    dummy_hash: String,
    resolver: Box<dyn Resolver>,
    counters: Counters,
}

/// The store's services. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

/// Decisions written in one open transaction and committed together (group commit): each ran
/// in its own savepoint (an error undoes that decision alone); the batch is committed when no
/// decision is waiting for the lock, or at [`MAX_BATCH`], and each decision answers once the
/// commit holding it is durable.
#[derive(Default)]
struct Batch {
    tx: Option<Tx>,
    /// Leaf hashes written in `tx`, in index order, not yet in the in-memory tree.
    pending: Vec<Hash>,
    /// The decisions in `tx`, told when it is committed (or failed).
    waiters: Vec<tokio::sync::oneshot::Sender<std::result::Result<(), String>>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("open", &self.tx.is_some())
            .field("pending", &self.pending.len())
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

/// Most decisions committed together.
const MAX_BATCH: usize = 64;

fn not_committed(why: &str) -> ServiceError {
    ServiceError::Storage(StorageError::Database(sqlx::Error::Protocol(format!(
        "the decision was not committed ({why}); nothing of it is in the log; retry"
    ))))
}

/// A leaf to append with the decision.
struct Pending {
    kind: EntryKind,
    version_id: i64,
    digest: String,
    bytes: Vec<u8>,
}

fn roles_text(roles: &BTreeSet<StoreRole>) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_roles(s: &str) -> BTreeSet<StoreRole> {
    s.split(',').filter_map(StoreRole::parse).collect()
}

fn actor_of(a: &AccountRow) -> Actor {
    Actor {
        id: a.id,
        username: a.username.clone(),
        organization: a.organization_id,
        roles: parse_roles(&a.roles),
    }
}

fn account_wire(a: &AccountRow) -> wire::Account {
    wire::Account {
        id: a.id,
        username: a.username.clone(),
        organization: a.organization.clone(),
        roles: parse_roles(&a.roles).into_iter().collect(),
        public_key: a.public_key.clone(),
        key_id: a.key_id.clone(),
    }
}

fn state_of(v: &VersionRow) -> Result<VersionState> {
    VersionState::parse(&v.state).ok_or_else(|| {
        ServiceError::Storage(StorageError::Database(sqlx::Error::Protocol(format!(
            "stored version state `{}` is not valid",
            v.state
        ))))
    })
}

fn facts(v: &VersionRow) -> Result<VersionFacts> {
    Ok(VersionFacts {
        state: state_of(v)?,
        submitter: v.submitter_id,
        organization: v.organization_id,
    })
}

/// A name: 1 to 128 bytes, no whitespace or control characters (the review predicate's rule).
fn check_name(field: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(format!(
            "{field} must be 1 to 128 bytes without spaces or control characters"
        )));
    }
    Ok(())
}

fn check_text(field: &str, s: &str) -> Result<()> {
    if s.len() > MAX_TEXT {
        return Err(invalid(format!("{field} is longer than {MAX_TEXT} bytes")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid(format!(
            "{field} must not contain control characters other than newline and tab"
        )));
    }
    Ok(())
}

fn check_commit(s: &str) -> Result<()> {
    let ok = (s.len() == 40 || s.len() == 64)
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if !ok {
        return Err(invalid(
            "commit must be the full source commit: 40 or 64 lowercase hex digits",
        ));
    }
    Ok(())
}

fn check_source(s: &str) -> Result<()> {
    let ok = (s.starts_with("https://") || s.starts_with("http://") || s.starts_with("ssh://"))
        && s.len() <= 2048
        && !s.chars().any(|c| c.is_control() || c.is_whitespace());
    if !ok {
        return Err(invalid(
            "source must be the repository URL (https://, http:// or ssh://, at most 2048 bytes, no spaces)",
        ));
    }
    Ok(())
}

const ARG_TYPES: &[&str] = &["string", "integer", "number", "boolean", "array", "object"];

fn check_functions(fs: &[Function]) -> Result<()> {
    if fs.is_empty() || fs.len() > MAX_FUNCTIONS {
        return Err(invalid(format!(
            "a version has 1 to {MAX_FUNCTIONS} functions"
        )));
    }
    let mut names = BTreeSet::new();
    for f in fs {
        check_name("function name", &f.name)?;
        if !names.insert(f.name.as_str()) {
            return Err(invalid(format!(
                "function `{}` is named twice",
                f.name.escape_debug()
            )));
        }
        if f.arguments.len() > MAX_ARGUMENTS {
            return Err(invalid(format!(
                "a function has at most {MAX_ARGUMENTS} arguments"
            )));
        }
        let mut args = BTreeSet::new();
        for a in &f.arguments {
            check_name("argument name", &a.name)?;
            if !args.insert(a.name.as_str()) {
                return Err(invalid(format!(
                    "argument `{}` of `{}` is named twice",
                    a.name.escape_debug(),
                    f.name.escape_debug()
                )));
            }
            if !ARG_TYPES.contains(&a.kind.as_str()) {
                return Err(invalid(format!(
                    "argument `{}` has type `{}`; use one of {}",
                    a.name.escape_debug(),
                    a.kind.escape_debug(),
                    ARG_TYPES.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// The envelope bytes of a store-signed statement about `repository@digest`.
fn store_statement(
    key: &SigningKey,
    repository: &str,
    digest: &Digest,
    predicate_type: &str,
    predicate: serde_json::Value,
) -> Vec<u8> {
    let statement = json!({
        "_type": STATEMENT_V1,
        "subject": [{"name": repository, "digest": {"sha256": digest.hex()}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    let payload = serde_json::to_vec(&statement).unwrap_or_default();
    Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, &[key]).to_json()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What a review envelope must say, from the version and the reviewer.
struct Expect<'a> {
    store: &'a str,
    version: &'a VersionRow,
    reviewer: &'a AccountRow,
    decision: Decision,
}

fn check_review(review: &Review, e: &Expect<'_>) -> Result<(), String> {
    let v = e.version;
    let p = &review.predicate;
    if review.repository.to_string() != v.repository {
        return Err(format!(
            "the envelope names repository `{}`, not the version's `{}`",
            review.repository.to_string().escape_debug(),
            v.repository
        ));
    }
    if review.digest.to_string() != v.digest {
        return Err(format!(
            "the envelope names digest {}, not the version's {}",
            review.digest, v.digest
        ));
    }
    let fields: [(&str, &str, &str); 7] = [
        ("store", &p.store, e.store),
        ("algorithm", &p.algorithm, &v.algorithm),
        ("version", &p.version, &v.version),
        ("reviewer", &p.reviewer, &e.reviewer.username),
        ("organization", &p.organization, &e.reviewer.organization),
        ("sourceRepository", &p.source_repository, &v.source),
        ("sourceCommit", &p.source_commit, &v.commit_sha),
    ];
    for (field, got, want) in fields {
        if got != want {
            return Err(format!(
                "the envelope's {field} is `{}`, expected `{}`",
                got.escape_debug(),
                want.escape_debug()
            ));
        }
    }
    if p.decision != e.decision {
        return Err(format!(
            "the envelope's decision is {}, this route takes {}",
            p.decision, e.decision
        ));
    }
    if p.decision == Decision::Approve {
        let fs: Vec<Function> = serde_json::from_str(&v.functions).unwrap_or_default();
        let want: BTreeSet<&str> = fs.iter().map(|f| f.name.as_str()).collect();
        let got: BTreeSet<&str> = p.functions.iter().map(String::as_str).collect();
        if want != got {
            return Err(format!(
                "an approval names every function of the version ({}), this one names {}",
                want.into_iter().collect::<Vec<_>>().join(", "),
                got.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(())
}

impl Service {
    /// Build the service over an open database: rebuild the log tree from it.
    pub async fn new(
        db: Db,
        name: &str,
        key: SigningKey,
        rules: ReviewConfig,
        auth: AuthConfig,
        resolver: Box<dyn Resolver>,
    ) -> Result<Service> {
        let SigningKey::Ed25519(ed) = &key else {
            return Err(invalid(
                "the store's signing key must be Ed25519 (C2SP note signatures); make one with `warden keys generate --kind ed25519 --out store.key`",
            ));
        };
        let origin = wire::origin(name);
        let signer = warden_tlog::NoteSigner::new(&origin, ed.clone())
            .map_err(|e| invalid(format!("cannot use the store name as a note key name: {e}")))?;
        let rows = {
            let mut tx = db.read().await?;
            tx.leaf_hashes().await?
        };
        let log = Log::rebuild(&origin, signer, &rows)?;
        let throttle = Throttle::new(
            Rate::per_minute(auth.login_rate_per_minute, auth.login_burst),
            &auth.rate_limit_exempt,
        );
        let dummy_hash = password::dummy_hash().await?;
        let public = key.public_key();
        Ok(Service {
            inner: Arc::new(Inner {
                db,
                name: name.to_owned(),
                key,
                public,
                log,
                append: tokio::sync::Mutex::new(Batch::default()),
                queued: AtomicUsize::new(0),
                rules,
                auth,
                throttle,
                dummy_hash,
                resolver,
                counters: Counters::default(),
            }),
        })
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub fn log_size(&self) -> u64 {
        self.inner.log.size()
    }

    pub fn info(&self) -> wire::StoreInfo {
        let origin = self.inner.log.origin().to_owned();
        let note_key = match &self.inner.public {
            PublicKey::Ed25519(v) => warden_tlog::NoteVerifier::new(&origin, *v)
                .map(|v| v.to_string())
                .unwrap_or_default(),
            PublicKey::EcdsaP256(_) => String::new(),
        };
        let r = &self.inner.rules;
        wire::StoreInfo {
            name: self.inner.name.clone(),
            origin,
            public_key: self.inner.public.to_pem(),
            key_id: self.inner.public.id().to_string(),
            note_key,
            review: wire::ReviewRules {
                min_approvals: r.min_approvals,
                min_organizations: r.min_organizations,
                reviewers_from_other_organization: r.reviewers_from_other_organization,
                replaced_remain_valid: r.replaced_remain_valid,
            },
        }
    }

    pub async fn health(&self) -> Result<()> {
        let mut tx = self.inner.db.read().await?;
        tx.ping().await?;
        Ok(())
    }

    /// Runs one decision in the group commit: `body` gets the open transaction and the index
    /// of its first leaf, and returns its answer and its leaves (indexes from that one on). The
    /// leaves are appended in the decision's savepoint; an error undoes the decision alone. The
    /// answer is returned once the batch holding the decision is committed (durable) and its
    /// leaves are in the tree. Callers run it in a task of its own ([`Service::uncancelled`]),
    /// so a decision is never dropped half-way with the lock released.
    async fn decide<T>(
        &self,
        body: impl AsyncFnOnce(&mut Tx, i64) -> Result<(T, Vec<Pending>)>,
    ) -> Result<T> {
        let inner = &self.inner;
        inner.queued.fetch_add(1, Ordering::SeqCst);
        let mut batch = inner.append.lock().await;
        inner.queued.fetch_sub(1, Ordering::SeqCst);
        let outcome = self.run_decision(&mut batch, body).await;
        let waiter = match outcome {
            Ok((value, rx)) => Some((value, rx)),
            Err(e) => {
                if batch.tx.is_some() && batch.waiters.is_empty() && batch.pending.is_empty() {
                    // Nothing else in the batch: start afresh.
                    batch.tx = None;
                }
                // The decisions before this one still commit (below).
                if inner.queued.load(Ordering::SeqCst) == 0 {
                    Self::flush(&inner.log, &mut batch).await;
                }
                return Err(e);
            }
        };
        if inner.queued.load(Ordering::SeqCst) == 0 || batch.waiters.len() >= MAX_BATCH {
            Self::flush(&inner.log, &mut batch).await;
        }
        drop(batch);
        let Some((value, rx)) = waiter else {
            return Err(not_committed("no answer"));
        };
        match rx.await {
            Ok(Ok(())) => Ok(value),
            Ok(Err(why)) => Err(not_committed(&why)),
            Err(_) => Err(not_committed("the store stopped")),
        }
    }

    /// The decision in its savepoint; on success it waits in the batch.
    #[allow(clippy::type_complexity)]
    async fn run_decision<T>(
        &self,
        batch: &mut Batch,
        body: impl AsyncFnOnce(&mut Tx, i64) -> Result<(T, Vec<Pending>)>,
    ) -> Result<(
        T,
        tokio::sync::oneshot::Receiver<std::result::Result<(), String>>,
    )> {
        if batch.tx.is_none() {
            batch.tx = Some(self.inner.db.write().await?);
        }
        let pending = batch.pending.len() as i64;
        let Some(tx) = batch.tx.as_mut() else {
            return Err(not_committed("no transaction"));
        };
        // The next leaf index, checked against the database (a second writer on the same
        // database would show here). A statement that fails outside the decision's savepoint
        // leaves the transaction unusable (PostgreSQL would turn its COMMIT into a rollback):
        // the whole batch fails.
        let db_size = match tx.log_size().await {
            Ok(n) => n,
            Err(e) => return Err(Self::abort(batch, e.into())),
        };
        let mem = self.inner.log.size() as i64 + pending;
        if db_size != mem {
            return Err(ServiceError::Conflict(format!(
                "the log in the database has {db_size} entries but this store process serves {mem}; another process writes to the same database; restart the store"
            )));
        }
        if let Err(e) = tx.savepoint().await {
            return Err(Self::abort(batch, e.into()));
        }
        let Some(tx) = batch.tx.as_mut() else {
            return Err(not_committed("no transaction"));
        };
        let first = db_size;
        let written = match body(tx, first).await {
            Ok((value, leaves)) => Self::append_leaves(tx, &leaves, first)
                .await
                .map(|hashes| (value, hashes)),
            Err(e) => Err(e),
        };
        match written {
            Ok((value, hashes)) => {
                if let Err(e) = tx.release_savepoint().await {
                    return Err(Self::abort(batch, e.into()));
                }
                batch.pending.extend(hashes);
                let (send, recv) = tokio::sync::oneshot::channel();
                batch.waiters.push(send);
                Ok((value, recv))
            }
            Err(e) => {
                if let Err(r) = tx.rollback_to_savepoint().await {
                    tracing::error!(error = %r, "cannot undo a failed decision");
                    Self::abort(batch, r.into());
                }
                Err(e)
            }
        }
    }

    /// The batch's transaction is unusable: roll it back (by dropping it) and fail every
    /// decision in it. Returns `e` for the decision that found it.
    fn abort(batch: &mut Batch, e: ServiceError) -> ServiceError {
        tracing::error!(error = %e, decisions = batch.waiters.len(), "the batch of decisions is rolled back");
        batch.tx = None;
        batch.pending.clear();
        for w in batch.waiters.drain(..) {
            let _ = w.send(Err(format!("the batch was rolled back: {e}")));
        }
        e
    }

    async fn append_leaves(tx: &mut Tx, leaves: &[Pending], first: i64) -> Result<Vec<Hash>> {
        let t = now();
        let mut hashes: Vec<Hash> = Vec::with_capacity(leaves.len());
        for (i, l) in leaves.iter().enumerate() {
            let h = leaf_hash(&l.bytes);
            tx.append_leaf(&NewLeaf {
                idx: first + i as i64,
                kind: l.kind.as_str(),
                version_id: l.version_id,
                digest: &l.digest,
                leaf: &l.bytes,
                leaf_hash: &h,
                now: t,
            })
            .await?;
            hashes.push(h);
        }
        Ok(hashes)
    }

    /// Commits the batch (if any decision is in it), then puts its leaves in the tree and
    /// answers its decisions.
    async fn flush(log: &Log, batch: &mut Batch) {
        let Some(tx) = batch.tx.take() else {
            return;
        };
        let waiters = std::mem::take(&mut batch.waiters);
        let pending = std::mem::take(&mut batch.pending);
        if waiters.is_empty() {
            // Nothing to keep (a failed decision alone): roll back by dropping.
            drop(tx);
            return;
        }
        match tx.commit().await {
            Ok(()) => {
                log.push(&pending);
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, decisions = waiters.len(), "a batch of decisions could not be committed");
                for w in waiters {
                    let _ = w.send(Err(e.to_string()));
                }
            }
        }
    }

    /// Runs `f` in a task of its own, so that a decision runs to its end even when the
    /// request that asked for it goes away.
    async fn uncancelled<T: Send + 'static>(
        f: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        tokio::spawn(f)
            .await
            .unwrap_or_else(|e| Err(not_committed(&format!("the decision's task ended: {e}"))))
    }

    // ---------------------------------------------------------------------------------------
    // Accounts
    // ---------------------------------------------------------------------------------------

    pub async fn has_accounts(&self) -> Result<bool> {
        let mut tx = self.inner.db.read().await?;
        Ok(tx.account_count().await? > 0)
    }

    /// Create organization `admin` and account `admin` (administrator) on an empty database.
    pub async fn bootstrap_admin(&self, password: &str) -> Result<bool> {
        let hash = password::hash_password(password.to_owned()).await?;
        let mut tx = self.inner.db.write().await?;
        if tx.account_count().await? > 0 {
            return Ok(false);
        }
        let t = now();
        let org = match tx.organization_id("admin").await? {
            Some(id) => id,
            None => tx.create_organization("admin", t).await?,
        };
        tx.create_account("admin", org, StoreRole::Administrator.as_str(), &hash, t)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Who holds this access token.
    pub async fn authenticate(&self, bearer: &str) -> Result<AccountRow> {
        const BAD: &str = "the access token is unknown, expired or revoked; log in again";
        let mut tx = self.inner.db.read().await?;
        let t = tx
            .token(&token::token_hash(bearer))
            .await?
            .ok_or(ServiceError::Unauthenticated(BAD))?;
        if t.kind != "access" || t.expires_at <= now() {
            return Err(ServiceError::Unauthenticated(BAD));
        }
        tx.account(t.account_id)
            .await?
            .ok_or(ServiceError::Unauthenticated(BAD))
    }

    async fn issue(
        &self,
        tx: &mut Tx,
        account: &AccountRow,
        family: &str,
    ) -> Result<wire::Session> {
        let access = token::new_token(ACCESS_PREFIX);
        let refresh = token::new_token(REFRESH_PREFIX);
        let t = now();
        let a = &self.inner.auth;
        tx.insert_token(
            &token::token_hash(&access),
            account.id,
            "access",
            family,
            t + a.access_token_ttl_secs as i64,
        )
        .await?;
        tx.insert_token(
            &token::token_hash(&refresh),
            account.id,
            "refresh",
            family,
            t + a.refresh_token_ttl_secs as i64,
        )
        .await?;
        Ok(wire::Session {
            access_token: access,
            refresh_token: refresh,
            expires_in: a.access_token_ttl_secs,
            account: account_wire(account),
        })
    }

    /// Password login: one generic failure for unknown user, wrong password; the lock says so.
    pub async fn login(&self, ip: IpAddr, req: wire::LoginRequest) -> Result<wire::Session> {
        const BAD: &str = "wrong user name or password";
        if let Err(wait) = self.inner.throttle.check(ip, Instant::now()) {
            return Err(ServiceError::Throttled(wait.as_secs().max(1)));
        }
        if req.password.len() > MAX_PASSWORD_BYTES || req.username.len() > 128 {
            return Err(ServiceError::Unauthenticated(BAD));
        }
        let account = {
            let mut tx = self.inner.db.read().await?;
            tx.account_by_name(&req.username).await?
        };
        let Some(account) = account else {
            password::verify_password(req.password, self.inner.dummy_hash.clone()).await?;
            self.inner
                .counters
                .logins_failed
                .fetch_add(1, Ordering::Relaxed);
            return Err(ServiceError::Unauthenticated(BAD));
        };
        let lockout = Lockout {
            threshold: self.inner.auth.lockout_threshold,
            duration: self.inner.auth.lockout_secs as i64,
        };
        let state = warden_accounts::lockout::LoginState {
            failed: account.failed_logins,
            locked_until: account.locked_until,
        };
        let t = now();
        if let Some(rem) = lockout.remaining(state, t) {
            return Err(ServiceError::Locked(Lockout::message(rem)));
        }
        let ok = password::verify_password(req.password, account.password_hash.clone()).await?;
        let mut tx = self.inner.db.write().await?;
        if !ok {
            tx.login_failed(
                account.id,
                i64::from(lockout.threshold),
                t + lockout.duration,
            )
            .await?;
            tx.commit().await?;
            self.inner
                .counters
                .logins_failed
                .fetch_add(1, Ordering::Relaxed);
            return Err(ServiceError::Unauthenticated(BAD));
        }
        tx.login_ok(account.id).await?;
        let s = self
            .issue(&mut tx, &account, &token::random_secret())
            .await?;
        tx.commit().await?;
        self.inner
            .counters
            .logins_ok
            .fetch_add(1, Ordering::Relaxed);
        Ok(s)
    }

    /// Spend a refresh token for a new pair of the same session.
    pub async fn refresh(&self, req: wire::RefreshRequest) -> Result<wire::Session> {
        const BAD: &str = "the refresh token is unknown, spent or expired; log in again";
        let hash = token::token_hash(&req.refresh_token);
        let mut tx = self.inner.db.write().await?;
        let t = tx
            .token(&hash)
            .await?
            .ok_or(ServiceError::Unauthenticated(BAD))?;
        if t.kind != "refresh" || t.expires_at <= now() || !tx.delete_token(&hash).await? {
            return Err(ServiceError::Unauthenticated(BAD));
        }
        let account = tx
            .account(t.account_id)
            .await?
            .ok_or(ServiceError::Unauthenticated(BAD))?;
        let s = self.issue(&mut tx, &account, &t.family).await?;
        tx.commit().await?;
        Ok(s)
    }

    pub async fn logout(&self, bearer: &str) -> Result<()> {
        let mut tx = self.inner.db.write().await?;
        if let Some(t) = tx.token(&token::token_hash(bearer)).await? {
            tx.delete_family(&t.family).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn sweep_tokens(&self) -> Result<u64> {
        let mut tx = self.inner.db.write().await?;
        let n = tx.sweep_tokens(now()).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub async fn create_organization(
        &self,
        who: &AccountRow,
        req: wire::CreateOrganization,
    ) -> Result<wire::Organization> {
        domain::permit(
            &actor_of(who),
            &Action::CreateOrganization,
            &self.inner.rules,
        )?;
        check_name("organization name", &req.name)?;
        let mut tx = self.inner.db.write().await?;
        let id = match tx.create_organization(&req.name, now()).await {
            Err(StorageError::Conflict) => {
                return Err(ServiceError::Conflict(format!(
                    "organization `{}` exists already",
                    req.name
                )));
            }
            r => r?,
        };
        tx.commit().await?;
        Ok(wire::Organization { id, name: req.name })
    }

    pub async fn organizations(&self) -> Result<Vec<wire::Organization>> {
        let mut tx = self.inner.db.read().await?;
        Ok(tx
            .organizations()
            .await?
            .into_iter()
            .map(|(id, name)| wire::Organization { id, name })
            .collect())
    }

    pub async fn create_account(
        &self,
        who: &AccountRow,
        req: wire::CreateAccount,
    ) -> Result<wire::Account> {
        domain::permit(&actor_of(who), &Action::CreateAccount, &self.inner.rules)?;
        check_name("username", &req.username)?;
        password::check_new_password("password", &req.password).map_err(invalid)?;
        if req.roles.is_empty() {
            return Err(invalid(
                "an account needs at least one role: administrator, developer or reviewer",
            ));
        }
        let roles: BTreeSet<StoreRole> = req.roles.iter().copied().collect();
        let hash = password::hash_password(req.password).await?;
        let mut tx = self.inner.db.write().await?;
        let org = tx
            .organization_id(&req.organization)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "no organization `{}`; create it first",
                    req.organization
                ))
            })?;
        let id = match tx
            .create_account(&req.username, org, &roles_text(&roles), &hash, now())
            .await
        {
            Err(StorageError::Conflict) => {
                return Err(ServiceError::Conflict(format!(
                    "account `{}` exists already",
                    req.username
                )));
            }
            r => r?,
        };
        let row = tx
            .account(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("the account just created is gone".into()))?;
        tx.commit().await?;
        Ok(account_wire(&row))
    }

    pub async fn accounts(&self) -> Result<Vec<wire::Account>> {
        let mut tx = self.inner.db.read().await?;
        Ok(tx.accounts().await?.iter().map(account_wire).collect())
    }

    pub fn me(&self, who: &AccountRow) -> wire::Account {
        account_wire(who)
    }

    /// Register the caller's public key, once.
    pub async fn register_key(
        &self,
        who: &AccountRow,
        req: wire::RegisterKey,
    ) -> Result<wire::Account> {
        domain::permit(&actor_of(who), &Action::RegisterOwnKey, &self.inner.rules)?;
        let key = PublicKey::from_pem(&req.public_key).map_err(|e| {
            invalid(format!(
                "public_key is not a PEM public key (P-256 or Ed25519): {e}"
            ))
        })?;
        let mut tx = self.inner.db.write().await?;
        let set = match tx
            .set_key(who.id, &key.to_pem(), &key.id().to_string())
            .await
        {
            Err(StorageError::Conflict) => {
                return Err(ServiceError::Conflict(
                    "this key is registered by another account already; use your own key".into(),
                ));
            }
            r => r?,
        };
        if !set {
            return Err(ServiceError::Conflict(
                "your account has a registered key already; a registered key is never replaced (reviews signed with it must stay verifiable); ask an administrator for a new account".into(),
            ));
        }
        let row = tx
            .account(who.id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("your account is gone".into()))?;
        tx.commit().await?;
        Ok(account_wire(&row))
    }

    // ---------------------------------------------------------------------------------------
    // Algorithms and versions
    // ---------------------------------------------------------------------------------------

    async fn version_wire(&self, tx: &mut Tx, v: &VersionRow) -> Result<wire::Version> {
        let assigned = tx
            .assigned(v.id)
            .await?
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        let reviews = tx
            .reviews(v.id)
            .await?
            .into_iter()
            .map(|r| wire::ReviewRecord {
                reviewer: r.reviewer,
                organization: r.organization,
                decision: r.decision,
                comment: r.comment,
                leaf_index: r.leaf_index as u64,
            })
            .collect();
        Ok(wire::Version {
            id: v.id,
            algorithm: v.algorithm.clone(),
            version: v.version.clone(),
            repository: v.repository.clone(),
            digest: v.digest.clone(),
            tag: v.tag.clone(),
            commit: v.commit_sha.clone(),
            source: v.source.clone(),
            functions: serde_json::from_str(&v.functions).unwrap_or_default(),
            state: state_of(v)?,
            submitter: v.submitter.clone(),
            organization: v.organization.clone(),
            assigned,
            reviews,
            reason: v.reason.clone(),
            leaf_index: v.leaf_index as u64,
        })
    }

    /// Submit a version: the image resolved once (a tag against the registry), the algorithm
    /// created at its first version, a store-signed submission leaf.
    /// A developer submits a version (a decision: its leaf is committed with it).
    pub async fn submit(&self, who: &AccountRow, req: wire::Submission) -> Result<wire::Version> {
        let (svc, who) = (self.clone(), who.clone());
        Self::uncancelled(async move { svc.submit_now(&who, req).await }).await
    }

    async fn submit_now(&self, who: &AccountRow, req: wire::Submission) -> Result<wire::Version> {
        check_name("algorithm", &req.algorithm)?;
        check_text("description", &req.description)?;
        check_source(&req.source)?;
        check_commit(&req.commit)?;
        check_functions(&req.functions)?;
        if let Some(v) = &req.version {
            check_name("version", v)?;
        }
        let reference = Reference::parse(&req.image).map_err(|e| {
            invalid(format!(
                "image `{}` is not an image reference: {e}",
                req.image.escape_debug()
            ))
        })?;
        // Permission before the registry is asked anything.
        let existing = {
            let mut tx = self.inner.db.read().await?;
            tx.algorithm(&req.algorithm).await?
        };
        domain::permit(
            &actor_of(who),
            &Action::Submit {
                maintainer: existing.as_ref().map(|a| a.organization_id),
            },
            &self.inner.rules,
        )?;
        if let Some(a) = &existing {
            if a.source != req.source {
                return Err(invalid(format!(
                    "algorithm `{}` is built from {}; a version names the same source repository",
                    a.name, a.source
                )));
            }
        }
        let (digest, tag) = match reference.digest() {
            Some(d) => (d.clone(), None),
            None => {
                let d = self
                    .inner
                    .resolver
                    .resolve(&reference)
                    .await
                    .map_err(ServiceError::Registry)?;
                (d, reference.tag().map(str::to_owned))
            }
        };
        if digest.algorithm() != warden_reference::Algorithm::Sha256 {
            return Err(invalid("the image digest must be sha256"));
        }
        let repository: &Repository = reference.repository();
        let repository = repository.to_string();
        let functions = serde_json::to_string(&req.functions)
            .map_err(|e| invalid(format!("functions: {e}")))?;

        let (out, id, algorithm_name, idx) = self
            .decide(async |tx: &mut Tx, idx: i64| {
        let t = now();
        let algorithm = match tx.algorithm(&req.algorithm).await? {
            Some(a) => a,
            None => {
                tx.create_algorithm(
                    &req.algorithm,
                    &req.description,
                    &req.source,
                    who.organization_id,
                    t,
                )
                .await?;
                tx.algorithm(&req.algorithm).await?.ok_or_else(|| {
                    ServiceError::NotFound("the algorithm just created is gone".into())
                })?
            }
        };
        if algorithm.organization_id != who.organization_id {
            return Err(ServiceError::Denied(
                "the algorithm is maintained by another organization; only its members submit versions of it".into(),
            ));
        }
        let version = match &req.version {
            Some(v) => v.clone(),
            None => (tx.version_count(algorithm.id).await? + 1).to_string(),
        };
        let id = match tx
            .create_version(
                algorithm.id,
                &version,
                &repository,
                &digest.to_string(),
                tag.as_deref(),
                &req.commit,
                &functions,
                who.id,
                idx,
                t,
            )
            .await
        {
            Err(StorageError::Conflict) => {
                return Err(ServiceError::Conflict(format!(
                    "algorithm `{}` has a version `{version}` already",
                    algorithm.name
                )));
            }
            r => r?,
        };
        let leaf = store_statement(
            &self.inner.key,
            &repository,
            &digest,
            wire::SUBMISSION_PREDICATE_V1,
            json!({
                "store": self.inner.name,
                "algorithm": algorithm.name,
                "version": version,
                "source": algorithm.source,
                "commit": req.commit,
                "tag": tag,
                "functions": req.functions,
                "submitter": who.username,
                "organization": who.organization,
                "time": rfc3339(OffsetDateTime::now_utc()),
            }),
        );
        let row = tx
            .version(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("the version just created is gone".into()))?;
        let out = self.version_wire(tx, &row).await?;
        Ok(((out, id, algorithm.name.clone(), idx), vec![Pending {
                kind: EntryKind::Submission,
                version_id: id,
                digest: digest.to_string(),
                bytes: leaf,
            }]))
            })
            .await?;
        self.inner
            .counters
            .submissions
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(version = id, algorithm = %algorithm_name, %digest, leaf = idx, "version submitted");
        Ok(out)
    }

    pub async fn version(&self, id: i64) -> Result<wire::Version> {
        let mut tx = self.inner.db.read().await?;
        let v = tx
            .version(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no version {id}")))?;
        self.version_wire(&mut tx, &v).await
    }

    pub async fn versions(
        &self,
        algorithm: Option<&str>,
        state: Option<VersionState>,
        reviewer: Option<&str>,
    ) -> Result<Vec<wire::Version>> {
        let mut tx = self.inner.db.read().await?;
        let reviewer = match reviewer {
            Some(name) => match tx.account_by_name(name).await? {
                Some(a) => Some(a.id),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let rows = tx
            .versions(algorithm, state.map(VersionState::as_str), reviewer)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for v in &rows {
            out.push(self.version_wire(&mut tx, v).await?);
        }
        Ok(out)
    }

    pub async fn algorithms(&self) -> Result<Vec<wire::Algorithm>> {
        let names: Vec<String> = {
            let mut tx = self.inner.db.read().await?;
            tx.algorithms().await?.into_iter().map(|a| a.name).collect()
        };
        let mut out = Vec::new();
        for n in names {
            out.push(self.algorithm(&n).await?);
        }
        Ok(out)
    }

    pub async fn algorithm(&self, name: &str) -> Result<wire::Algorithm> {
        let mut tx = self.inner.db.read().await?;
        let a = tx
            .algorithm(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no algorithm `{name}`")))?;
        let rows = tx.versions(Some(name), None, None).await?;
        let mut versions = Vec::new();
        for v in &rows {
            versions.push(self.version_wire(&mut tx, v).await?);
        }
        Ok(wire::Algorithm {
            name: a.name,
            description: a.description,
            source: a.source,
            organization: a.organization,
            versions,
        })
    }

    async fn load_version(tx: &mut Tx, id: i64) -> Result<VersionRow> {
        tx.version(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no version {id}")))
    }

    pub async fn assign(
        &self,
        who: &AccountRow,
        id: i64,
        req: wire::Assign,
    ) -> Result<wire::Version> {
        let mut tx = self.inner.db.write().await?;
        let v = Self::load_version(&mut tx, id).await?;
        let reviewer = tx
            .account_by_name(&req.reviewer)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no account `{}`", req.reviewer)))?;
        let assigned = tx.assigned(id).await?;
        let facts = facts(&v)?;
        domain::permit(
            &actor_of(who),
            &Action::Assign {
                version: &facts,
                reviewer: &ReviewerFacts {
                    id: reviewer.id,
                    organization: reviewer.organization_id,
                    roles: parse_roles(&reviewer.roles),
                    has_key: reviewer.public_key.is_some(),
                },
                already_assigned: assigned.iter().any(|(i, _)| *i == reviewer.id),
            },
            &self.inner.rules,
        )?;
        tx.assign(id, reviewer.id).await?;
        if facts.state == VersionState::Submitted {
            tx.set_state(id, VersionState::UnderReview.as_str(), None)
                .await?;
        }
        let v = Self::load_version(&mut tx, id).await?;
        let out = self.version_wire(&mut tx, &v).await?;
        tx.commit().await?;
        tracing::info!(version = id, reviewer = %reviewer.username, by = %who.username, "reviewer assigned");
        Ok(out)
    }

    /// Verify an uploaded envelope: against the caller's registered key, naming this store,
    /// the version and the caller.
    fn verify_envelope(
        &self,
        who: &AccountRow,
        v: &VersionRow,
        b64: &str,
        decision: Decision,
    ) -> Result<(Vec<u8>, Review)> {
        let refused = |why: String| {
            self.inner
                .counters
                .refused_envelopes
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(version = v.id, reviewer = %who.username, %why, "review envelope refused");
            ServiceError::Denied(format!("review envelope refused: {why}"))
        };
        let bytes = STANDARD
            .decode(b64.trim())
            .map_err(|e| invalid(format!("envelope is not standard base64: {e}")))?;
        let pem = who.public_key.as_deref().ok_or_else(|| {
            refused("you have no registered public key; register one with PUT /api/me/key".into())
        })?;
        let key = PublicKey::from_pem(pem)
            .map_err(|e| refused(format!("your registered key cannot be read: {e}")))?;
        let verified = verify_review(&bytes, &[key]).map_err(|e| refused(e.to_string()))?;
        check_review(
            &verified.review,
            &Expect {
                store: &self.inner.name,
                version: v,
                reviewer: who,
                decision,
            },
        )
        .map_err(refused)?;
        Ok((bytes, verified.review))
    }

    /// Record an approval or rejection signed by the caller.
    pub async fn review(
        &self,
        who: &AccountRow,
        id: i64,
        req: wire::SubmitReview,
    ) -> Result<wire::Version> {
        let (svc, who) = (self.clone(), who.clone());
        Self::uncancelled(async move { svc.review_now(&who, id, req).await }).await
    }

    async fn review_now(
        &self,
        who: &AccountRow,
        id: i64,
        req: wire::SubmitReview,
    ) -> Result<wire::Version> {
        let (out, decision, idx) = self
            .decide(async |tx: &mut Tx, idx: i64| {
                let v = Self::load_version(tx, id).await?;
                let assigned = tx.assigned(id).await?;
                let facts = facts(&v)?;
                domain::permit(
                    &actor_of(who),
                    &Action::Review {
                        version: &facts,
                        assigned: assigned.iter().any(|(i, _)| *i == who.id),
                    },
                    &self.inner.rules,
                )?;
                // The decision is the envelope's; parse it first to know which to expect.
                let bytes = STANDARD
                    .decode(req.envelope.trim())
                    .map_err(|e| invalid(format!("envelope is not standard base64: {e}")))?;
                let decision = warden_trust::review::parse_review_envelope(&bytes)
                    .map(|(_, r)| r.predicate.decision)
                    .map_err(|e| ServiceError::Denied(format!("review envelope refused: {e}")))?;
                if decision == Decision::Revoke {
                    return Err(invalid(
                        "a revocation goes to POST /api/versions/{id}/revoke, not to reviews",
                    ));
                }
                let (bytes, review) = self.verify_envelope(who, &v, &req.envelope, decision)?;
                let prior = tx.reviews(id).await?;
                if prior.iter().any(|r| r.reviewer_id == who.id) {
                    return Err(ServiceError::Conflict(
                        "you reviewed this version already; one review per reviewer".into(),
                    ));
                }
                let (kind, dtext) = match decision {
                    Decision::Approve => (EntryKind::Approval, "approve"),
                    _ => (EntryKind::Rejection, "reject"),
                };
                tx.add_review(id, who.id, dtext, review.predicate.comment.as_deref(), idx)
                    .await?;
                let mut leaves = vec![Pending {
                    kind,
                    version_id: id,
                    digest: v.digest.clone(),
                    bytes,
                }];
                let mut votes: Vec<Vote> = prior
                    .iter()
                    .map(|r| Vote {
                        reviewer: r.reviewer_id,
                        organization: r.organization_id,
                        approve: r.decision == "approve",
                    })
                    .collect();
                votes.push(Vote {
                    reviewer: who.id,
                    organization: who.organization_id,
                    approve: decision == Decision::Approve,
                });
                match domain::tally(&votes, &self.inner.rules) {
                    Tally::Rejected => {
                        tx.set_state(id, VersionState::Rejected.as_str(), None)
                            .await?;
                    }
                    Tally::Approved => {
                        tx.set_state(id, VersionState::Approved.as_str(), None)
                            .await?;
                        // The previous approved versions are replaced (or revoked, by configuration).
                        for old in tx.approved_versions(v.algorithm_id, id).await? {
                            let reason = format!("replaced by version {}", v.version);
                            if self.inner.rules.replaced_remain_valid {
                                tx.set_state(old, VersionState::Replaced.as_str(), Some(&reason))
                                    .await?;
                            } else {
                                let ov = Self::load_version(tx, old).await?;
                                let leaf = self.store_revocation(&ov, who, &reason)?;
                                tx.set_state(old, VersionState::Revoked.as_str(), Some(&reason))
                                    .await?;
                                leaves.push(Pending {
                                    kind: EntryKind::Revocation,
                                    version_id: old,
                                    digest: ov.digest.clone(),
                                    bytes: leaf,
                                });
                            }
                        }
                    }
                    Tally::Pending { .. } => {}
                }
                let v2 = Self::load_version(tx, id).await?;
                let out = self.version_wire(tx, &v2).await?;
                Ok(((out, decision, idx), leaves))
            })
            .await?;
        match decision {
            Decision::Approve => self
                .inner
                .counters
                .approvals
                .fetch_add(1, Ordering::Relaxed),
            _ => self
                .inner
                .counters
                .rejections
                .fetch_add(1, Ordering::Relaxed),
        };
        tracing::info!(version = id, reviewer = %who.username, %decision, state = out.state.as_str(), leaf = idx, "review recorded");
        Ok(out)
    }

    /// A revocation signed by the store's key on behalf of `who`.
    fn store_revocation(&self, v: &VersionRow, who: &AccountRow, reason: &str) -> Result<Vec<u8>> {
        let digest: Digest = v
            .digest
            .parse()
            .map_err(|e| invalid(format!("stored digest: {e}")))?;
        let repository: Repository = v
            .repository
            .parse()
            .map_err(|e| invalid(format!("stored repository: {e}")))?;
        let review = Review {
            repository,
            digest,
            predicate: ReviewPredicate {
                store: self.inner.name.clone(),
                algorithm: v.algorithm.clone(),
                version: v.version.clone(),
                decision: Decision::Revoke,
                reviewer: who.username.clone(),
                organization: who.organization.clone(),
                source_repository: v.source.clone(),
                source_commit: v.commit_sha.clone(),
                functions: Vec::new(),
                time: OffsetDateTime::now_utc()
                    .replace_nanosecond(0)
                    .unwrap_or_else(|_| OffsetDateTime::now_utc()),
                comment: Some(reason.to_owned()),
                rebuilt: None,
            },
        };
        let env = review
            .sign(&self.inner.key)
            .map_err(|e| invalid(format!("cannot sign the revocation: {e}")))?;
        Ok(env.to_json())
    }

    /// Revoke an approved (or replaced) version: with a reviewer's signed envelope, or by an
    /// administrator (the store signs).
    pub async fn revoke(
        &self,
        who: &AccountRow,
        id: i64,
        req: wire::Revoke,
    ) -> Result<wire::Version> {
        let (svc, who) = (self.clone(), who.clone());
        Self::uncancelled(async move { svc.revoke_now(&who, id, req).await }).await
    }

    async fn revoke_now(
        &self,
        who: &AccountRow,
        id: i64,
        req: wire::Revoke,
    ) -> Result<wire::Version> {
        check_text("reason", &req.reason)?;
        if req.reason.trim().is_empty() {
            return Err(invalid("a revocation needs a reason"));
        }
        let (out, idx) = self
            .decide(async |tx: &mut Tx, idx: i64| {
                let v = Self::load_version(tx, id).await?;
                let facts = facts(&v)?;
                domain::permit(
                    &actor_of(who),
                    &Action::Revoke {
                        version: &facts,
                        signed: req.envelope.is_some(),
                    },
                    &self.inner.rules,
                )?;
                let leaf = match &req.envelope {
                    Some(b64) => self.verify_envelope(who, &v, b64, Decision::Revoke)?.0,
                    None => self.store_revocation(&v, who, &req.reason)?,
                };
                tx.set_state(id, VersionState::Revoked.as_str(), Some(&req.reason))
                    .await?;
                let v2 = Self::load_version(tx, id).await?;
                let out = self.version_wire(tx, &v2).await?;
                Ok((
                    (out, idx),
                    vec![Pending {
                        kind: EntryKind::Revocation,
                        version_id: id,
                        digest: v.digest.clone(),
                        bytes: leaf,
                    }],
                ))
            })
            .await?;
        self.inner
            .counters
            .revocations
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(version = id, by = %who.username, reason = %req.reason, leaf = idx, "version revoked");
        Ok(out)
    }

    /// Reinstate a replaced version (administrator), logged as a store-signed entry.
    pub async fn reinstate(
        &self,
        who: &AccountRow,
        id: i64,
        req: wire::Reinstate,
    ) -> Result<wire::Version> {
        let (svc, who) = (self.clone(), who.clone());
        Self::uncancelled(async move { svc.reinstate_now(&who, id, req).await }).await
    }

    async fn reinstate_now(
        &self,
        who: &AccountRow,
        id: i64,
        req: wire::Reinstate,
    ) -> Result<wire::Version> {
        check_text("reason", &req.reason)?;
        if req.reason.trim().is_empty() {
            return Err(invalid("a reinstatement needs a reason"));
        }
        let (out, idx) = self
            .decide(async |tx: &mut Tx, idx: i64| {
                let v = Self::load_version(tx, id).await?;
                let facts = facts(&v)?;
                domain::permit(
                    &actor_of(who),
                    &Action::Reinstate { version: &facts },
                    &self.inner.rules,
                )?;
                let digest: Digest = v
                    .digest
                    .parse()
                    .map_err(|e| invalid(format!("stored digest: {e}")))?;
                let leaf = store_statement(
                    &self.inner.key,
                    &v.repository,
                    &digest,
                    wire::REINSTATEMENT_PREDICATE_V1,
                    json!({
                        "store": self.inner.name,
                        "algorithm": v.algorithm,
                        "version": v.version,
                        "administrator": who.username,
                        "reason": req.reason,
                        "time": rfc3339(OffsetDateTime::now_utc()),
                    }),
                );
                tx.set_state(id, VersionState::Approved.as_str(), Some(&req.reason))
                    .await?;
                let v2 = Self::load_version(tx, id).await?;
                let out = self.version_wire(tx, &v2).await?;
                Ok((
                    (out, idx),
                    vec![Pending {
                        kind: EntryKind::Reinstatement,
                        version_id: id,
                        digest: v.digest.clone(),
                        bytes: leaf,
                    }],
                ))
            })
            .await?;
        self.inner
            .counters
            .reinstatements
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(version = id, by = %who.username, reason = %req.reason, leaf = idx, "version reinstated");
        Ok(out)
    }

    // ---------------------------------------------------------------------------------------
    // The log
    // ---------------------------------------------------------------------------------------

    pub fn checkpoint(&self) -> Result<String> {
        Ok(self.inner.log.checkpoint()?.1)
    }

    pub async fn entries(&self, start: u64, end: u64) -> Result<wire::LogEntries> {
        let size = self.inner.log.size();
        if start > end {
            return Err(invalid("start must not be above end"));
        }
        let end = end
            .min(size)
            .min(start.saturating_add(wire::MAX_LOG_ENTRIES_PAGE));
        let mut tx = self.inner.db.read().await?;
        let rows = tx.leaves(start as i64, end as i64).await?;
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            let kind = EntryKind::parse(&r.kind).ok_or_else(|| {
                ServiceError::Invalid(format!("stored entry {} has kind `{}`", r.idx, r.kind))
            })?;
            entries.push(wire::LogEntry {
                index: r.idx as u64,
                kind,
                leaf: STANDARD.encode(&r.leaf),
            });
        }
        Ok(wire::LogEntries { entries })
    }

    pub fn inclusion(&self, index: u64, size: u64) -> Result<wire::InclusionProof> {
        let (leaf, hashes) = self
            .inner
            .log
            .inclusion(index, size)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(wire::InclusionProof {
            index,
            size,
            leaf_hash: hex::encode(leaf),
            hashes: hashes.iter().map(hex::encode).collect(),
        })
    }

    pub fn consistency(&self, from: u64, to: u64) -> Result<wire::ConsistencyProof> {
        let hashes = self
            .inner
            .log
            .consistency(from, to)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(wire::ConsistencyProof {
            from,
            to,
            hashes: hashes.iter().map(hex::encode).collect(),
        })
    }

    /// Every approval, rejection and revocation of `digest` with inclusion proofs at the
    /// checkpoint served with them.
    pub async fn evidence(&self, digest: &str) -> Result<wire::Evidence> {
        let d: Digest = digest
            .parse()
            .map_err(|e| invalid(format!("`{}` is not a digest: {e}", digest.escape_debug())))?;
        let (rows, meta) = {
            let mut tx = self.inner.db.read().await?;
            let rows = tx.evidence(&d.to_string()).await?;
            let mut meta = Vec::with_capacity(rows.len());
            for r in &rows {
                let v = tx.version(r.version_id).await?;
                meta.push(v.map(|v| (v.algorithm, v.version)).unwrap_or_default());
            }
            (rows, meta)
        };
        let size_now = self.inner.log.size();
        let keep: Vec<usize> = (0..rows.len())
            .filter(|i| (rows[*i].idx as u64) < size_now)
            .collect();
        let indexes: Vec<u64> = keep.iter().map(|i| rows[*i].idx as u64).collect();
        let (size, checkpoint, proofs) = self.inner.log.checkpoint_with_proofs(&indexes)?;
        let mut entries = Vec::with_capacity(keep.len());
        for (n, i) in keep.into_iter().enumerate() {
            let r = &rows[i];
            let kind = EntryKind::parse(&r.kind).unwrap_or(EntryKind::Revocation);
            entries.push(wire::EvidenceEntry {
                index: r.idx as u64,
                kind,
                version_id: r.version_id,
                algorithm: meta[i].0.clone(),
                version: meta[i].1.clone(),
                leaf: STANDARD.encode(&r.leaf),
                hashes: proofs[n].iter().map(hex::encode).collect(),
            });
        }
        Ok(wire::Evidence {
            store: self.inner.name.clone(),
            checkpoint,
            size,
            entries,
        })
    }
}

/// Parse `NAME:KIND[:ARG=TYPE[?],...]` (the CLI's `--function`): `?` marks an optional
/// argument.
pub fn parse_function(s: &str) -> Result<Function, String> {
    let mut parts = s.splitn(3, ':');
    let name = parts.next().unwrap_or_default();
    let kind = parts.next().ok_or_else(|| {
        format!("--function `{s}` has no kind; write NAME:central or NAME:partial[:ARG=TYPE,...]")
    })?;
    let kind = match kind {
        "central" => FunctionKind::Central,
        "partial" => FunctionKind::Partial,
        other => {
            return Err(format!(
                "--function `{s}`: kind `{other}` is neither central nor partial"
            ));
        }
    };
    let mut arguments = Vec::new();
    if let Some(args) = parts.next() {
        for a in args.split(',').filter(|a| !a.is_empty()) {
            let (n, t) = a
                .split_once('=')
                .ok_or_else(|| format!("--function `{s}`: argument `{a}` is not ARG=TYPE"))?;
            let (t, required) = match t.strip_suffix('?') {
                Some(t) => (t, false),
                None => (t, true),
            };
            arguments.push(wire::Argument {
                name: n.to_owned(),
                kind: t.to_owned(),
                required,
            });
        }
    }
    let f = Function {
        name: name.to_owned(),
        kind,
        arguments,
    };
    check_functions(std::slice::from_ref(&f)).map_err(|e| format!("--function `{s}`: {e}"))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_specs_parse() {
        let f = parse_function("mean:central:column=string,limit=integer?").unwrap();
        assert_eq!(f.name, "mean");
        assert_eq!(f.kind, FunctionKind::Central);
        assert_eq!(f.arguments.len(), 2);
        assert!(f.arguments[0].required && !f.arguments[1].required);
        assert_eq!(parse_function("p:partial").unwrap().arguments.len(), 0);
        for bad in [
            "mean",
            "mean:sideways",
            "mean:central:x",
            "mean:central:x=float",
            ":central",
        ] {
            assert!(parse_function(bad).is_err(), "{bad}");
        }
    }
}
