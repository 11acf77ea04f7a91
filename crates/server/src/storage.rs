//! Storage: one enum over a SQLite and a PostgreSQL backend, each with its own migrations.
//!
//! Every operation runs inside a [`Tx`] that the service layer opens and commits, so a
//! multi-step write is all-or-nothing. The SQL text is shared (both engines accept `$N`
//! placeholders, `RETURNING` and `ON CONFLICT`); where the engines differ (event ordering and
//! notification) the backend arm says so.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`: a commit returns only after the WAL frame
//! is on disk, so an acknowledged write survives a power loss, not only a process crash. Writes
//! go through a single-connection pool (SQLite has one writer anyway; a single writer connection
//! also avoids `SQLITE_BUSY` on lock upgrades), reads through a separate pool that WAL lets run
//! concurrently with the writer.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, Postgres, Sqlite, Transaction};
use warden_api::{Role, RunState};

/// The PostgreSQL channel on which committed events are announced to every replica, as SQL
/// the connection evaluates: one channel per schema (`warden_events_` and 16 hex digits of the
/// MD5 of the schema's name, a name and not a secret), so that deployments in different
/// schemas of one database do not wake each other's sessions. The trigger that writes events
/// at the commit (migration `0011_events_at_commit`) names it the same way.
macro_rules! event_channel {
    () => {
        "('warden_events_' || left(md5(current_schema()), 16))"
    };
}

/// The query that names this connection's event channel (see [`event_channel`]), for LISTEN.
pub const EVENT_CHANNEL_QUERY: &str = concat!("SELECT ", event_channel!());
/// Payload prefix of a notification on the event channel that a node's credentials were
/// revoked (`revoked:<collaboration>:<organization>`).
pub const REVOKED_PREFIX: &str = "revoked:";
/// Payload prefix of a notification on the event channel that names the nodes whose events a
/// commit added: `nodes:<c>:<o>;<c>:<o>...`. A commit that concerns more nodes than fit in a
/// payload sends several.
pub const NODES_PREFIX: &str = "nodes:";
/// The longest payload of a nodes notification (PostgreSQL's limit is 8,000 bytes).
const MAX_NODES_PAYLOAD: usize = 7_900;
/// Rows of run inputs per SQLite statement (two bound values each).
const INPUT_CHUNK: usize = 128;
/// Advisory lock key that serialises disabling accounts on PostgreSQL, so that two roots who
/// disable each other at the same moment cannot leave no enabled root (SQLite has one writer).
const ACCOUNT_LOCK: i64 = 0x5741_5244_4143; // "WARDAC"

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database url `{0}` is not supported; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory {path}: {source}; check permissions")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create or restrict the database file {path}: {source}; check permissions")]
    DatabaseFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a row with the same unique value already exists")]
    Conflict,
    #[error("a referenced row does not exist")]
    MissingReference,
    #[error("stored value `{0}` is not valid; the database may have been edited by hand")]
    Corrupt(String),
    #[error("database migration failed: {0}; check the database url and permissions")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e {
            if d.is_unique_violation() {
                return StorageError::Conflict;
            }
            if d.is_foreign_key_violation() {
                return StorageError::MissingReference;
            }
        }
        StorageError::Database(e)
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

/// Connection options beyond the URL.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    /// SQLite only: fsync every commit (`Full`, survives power loss) or only at checkpoints
    /// (`Normal`, survives a process crash; the last commits may be lost on power loss).
    pub sqlite_durability: Durability,
    /// PostgreSQL only: a schema to create and use (tests give each run a fresh one).
    pub pg_schema: Option<String>,
    /// PostgreSQL only: a transaction of this server left idle this long is ended by
    /// PostgreSQL (`idle_in_transaction_session_timeout`). A replica stopped (SIGSTOP, a hung
    /// host) between its event insert and its commit would otherwise hold the event-order
    /// lock, and every replica's task creation would wait for it for as long as it hangs.
    /// The server's own transactions never wait on anything but the database.
    pub pg_idle_in_transaction: Duration,
}

/// [`ConnectOptions::pg_idle_in_transaction`] by default.
pub const PG_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(10);

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 16,
            sqlite_durability: Durability::Full,
            pg_schema: None,
            pg_idle_in_transaction: PG_IDLE_IN_TRANSACTION,
        }
    }
}

/// How hard SQLite makes each commit durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `synchronous = FULL`: the WAL is fsynced at every commit.
    #[default]
    Full,
    /// `synchronous = NORMAL`: the WAL is fsynced at checkpoints only.
    Normal,
}

/// Path of the SQLite file named by `url` (`sqlite://PATH`, `sqlite:PATH`); relative paths are
/// resolved against `base`.
pub fn sqlite_path(url: &str, base: &Path) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let rest = rest.split('?').next().unwrap_or(rest);
    if rest.is_empty() {
        return None;
    }
    let p = Path::new(rest);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    })
}

/// The SQLite file holds password and token hashes and every ciphertext: a new one is created
/// readable by its owner only (SQLite gives its `-wal` and `-shm` files the database's mode), and
/// an existing one that others can read loses those permissions (with a warning).
fn private_database_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let err = |source| StorageError::DatabaseFile {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    for p in [
        path.to_path_buf(),
        PathBuf::from(format!("{}-wal", path.display())),
        PathBuf::from(format!("{}-shm", path.display())),
    ] {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            tracing::warn!(
                path = %p.display(),
                mode = format!("{:o}", mode & 0o777),
                "the database file was readable by others; removing their permissions"
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o770))
                .map_err(err)?;
        }
    }
    Ok(())
}

impl Db {
    /// Connect and run the backend's migrations. For SQLite the file and its directory are
    /// created when missing.
    pub async fn connect(url: &str, base: &Path, options: &ConnectOptions) -> Result<Db> {
        if url.starts_with("sqlite:") {
            let path = sqlite_path(url, base)
                .ok_or_else(|| StorageError::UnsupportedUrl(url.to_owned()))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            private_database_file(&path)?;
            let opts = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match options.sqlite_durability {
                    Durability::Full => SqliteSynchronous::Full,
                    Durability::Normal => SqliteSynchronous::Normal,
                })
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .connect_with(opts.clone())
                .await?;
            SQLITE_MIGRATOR.run(&write).await?;
            let read = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .connect_with(opts.read_only(true))
                .await?;
            Ok(Db::Sqlite { write, read })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts = PgConnectOptions::from_str(url)?.options([(
                "idle_in_transaction_session_timeout",
                format!("{}ms", options.pg_idle_in_transaction.as_millis().max(1)),
            )]);
            if let Some(schema) = &options.pg_schema {
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts.clone())
                    .await?;
                sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                    .execute(&admin)
                    .await?;
                admin.close().await;
                opts = opts.options([("search_path", schema.as_str())]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .connect_with(opts)
                .await?;
            POSTGRES_MIGRATOR.run(&pool).await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(StorageError::UnsupportedUrl(url.to_owned()))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// A transaction for reads only (SQLite: from the reader pool).
    pub async fn read(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite { read, .. } => Tx::Sqlite(read.begin().await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// A transaction that may write (SQLite: the single writer connection).
    pub async fn write(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite { write, .. } => Tx::Sqlite(write.begin().await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// The PostgreSQL pool, for LISTEN.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres(p) => Some(p),
            Db::Sqlite { .. } => None,
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }
}

/// An open transaction. Dropping it without [`Tx::commit`] rolls back.
#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Run the same body against whichever connection the transaction holds. Each arm is type
/// checked on its own, so the body must be valid for both engines.
macro_rules! on {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

/// A bind value of a dynamically built filter.
#[derive(Debug, Clone)]
enum Arg {
    I64(i64),
    Text(String),
}

/// Builds `WHERE ...` clauses with `$N` placeholders for keyset pagination and filters.
#[derive(Debug, Default)]
struct Filter {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Filter {
    fn next(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }
    fn eq(&mut self, col: &str, v: Option<i64>) {
        if let Some(v) = v {
            let p = self.next(Arg::I64(v));
            self.clauses.push(format!("{col} = {p}"));
        }
    }
    fn eq_str(&mut self, col: &str, v: Option<&str>) {
        if let Some(v) = v {
            let p = self.next(Arg::Text(v.to_owned()));
            self.clauses.push(format!("{col} = {p}"));
        }
    }
    fn lt(&mut self, col: &str, v: Option<i64>) {
        if let Some(v) = v {
            let p = self.next(Arg::I64(v));
            self.clauses.push(format!("{col} < {p}"));
        }
    }
    fn in_list(&mut self, col: &str, vs: Option<&[i64]>) {
        if let Some(vs) = vs {
            if vs.is_empty() {
                self.clauses.push("1 = 0".to_owned());
            } else {
                let ps: Vec<String> = vs.iter().map(|v| self.next(Arg::I64(*v))).collect();
                self.clauses.push(format!("{col} IN ({})", ps.join(", ")));
            }
        }
    }
    fn sql(&self, select: &str, order_col: &str, limit: u32) -> String {
        let mut s = select.to_owned();
        if !self.clauses.is_empty() {
            s.push_str(" WHERE ");
            s.push_str(&self.clauses.join(" AND "));
        }
        s.push_str(&format!(" ORDER BY {order_col} DESC LIMIT {limit}"));
        s
    }
}

macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::I64(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_str()),
            };
        }
        q
    }};
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct OrganizationRow {
    pub id: i64,
    pub name: String,
    pub public_key: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct CollaborationRow {
    pub id: i64,
    pub name: String,
    pub encrypted: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
struct RawUserRow {
    id: i64,
    username: String,
    organization_id: Option<i64>,
    role: String,
    password_hash: String,
    failed_logins: i64,
    locked_until: Option<i64>,
    created_at: i64,
    disabled: bool,
    token_generation: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub organization_id: Option<i64>,
    pub role: Role,
    pub password_hash: String,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
    /// A disabled user cannot log in and holds no working token.
    pub disabled: bool,
    /// Tokens issued to the user carry this value; it increases whenever the user's tokens
    /// are revoked (disable, password change or reset), which kills every earlier token.
    pub token_generation: i64,
}

impl TryFrom<RawUserRow> for UserRow {
    type Error = StorageError;
    fn try_from(r: RawUserRow) -> Result<Self> {
        let role = Role::from_str(&r.role).map_err(|_| StorageError::Corrupt(r.role.clone()))?;
        Ok(UserRow {
            id: r.id,
            username: r.username,
            organization_id: r.organization_id,
            role,
            password_hash: r.password_hash,
            failed_logins: r.failed_logins,
            locked_until: r.locked_until,
            created_at: r.created_at,
            disabled: r.disabled,
            token_generation: r.token_generation,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct NodeRow {
    pub id: i64,
    pub organization_id: i64,
    pub collaboration_id: i64,
    pub api_key_hash: String,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    /// Node tokens carry this value; it increases with every key rotation, which kills every
    /// token issued under an earlier key.
    pub key_generation: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TaskRow {
    pub id: i64,
    pub collaboration_id: i64,
    pub name: String,
    pub image: String,
    pub organization_id: i64,
    pub creator_user_id: Option<i64>,
    /// The user on whose behalf the task runs (the creator, or for a subtask the root task's
    /// creator).
    pub requester_user_id: Option<i64>,
    /// That user's name, copied from `users` when the task was inserted (user names never
    /// change), so that reading it costs no join (column `requester_username`).
    pub creator_username: Option<String>,
    pub creator_run_id: Option<i64>,
    pub parent_task_id: Option<i64>,
    /// The nonce given at creation (unique within the collaboration when present).
    pub nonce: Option<String>,
    pub created_at: i64,
    /// When the task was cancelled, and by whom (the name copied at cancellation).
    pub cancelled_at: Option<i64>,
    pub cancelled_by_username: Option<String>,
}

/// A task about to be inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask<'a> {
    pub collaboration_id: i64,
    pub name: &'a str,
    pub image: &'a str,
    pub organization_id: i64,
    pub creator_user_id: Option<i64>,
    /// The user on whose behalf the task runs: `creator_user_id` for a task created by a
    /// user, the parent's requester for a subtask created by a run.
    pub requester_user_id: Option<i64>,
    /// That user's name (from `users`, or the parent's copy).
    pub requester_username: Option<&'a str>,
    pub creator_run_id: Option<i64>,
    pub parent_task_id: Option<i64>,
    /// The nonce bound inside the task's sealed inputs. A second task with the same nonce in
    /// the same collaboration is refused by a unique index: [`Tx::insert_task`] answers
    /// [`StorageError::Conflict`].
    pub nonce: Option<&'a str>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
struct RawRunRow {
    id: i64,
    task_id: i64,
    collaboration_id: i64,
    organization_id: i64,
    state: String,
    reason: Option<String>,
    digest: Option<String>,
    has_result: bool,
    created_at: i64,
    admitted_at: Option<i64>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    acked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub task_id: i64,
    pub collaboration_id: i64,
    pub organization_id: i64,
    pub state: RunState,
    pub reason: Option<String>,
    pub digest: Option<String>,
    pub has_result: bool,
    pub created_at: i64,
    pub admitted_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub acked_at: Option<i64>,
}

impl TryFrom<RawRunRow> for RunRow {
    type Error = StorageError;
    fn try_from(r: RawRunRow) -> Result<Self> {
        let state =
            RunState::from_str(&r.state).map_err(|_| StorageError::Corrupt(r.state.clone()))?;
        Ok(RunRow {
            id: r.id,
            task_id: r.task_id,
            collaboration_id: r.collaboration_id,
            organization_id: r.organization_id,
            state,
            reason: r.reason,
            digest: r.digest,
            has_result: r.has_result,
            created_at: r.created_at,
            admitted_at: r.admitted_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            acked_at: r.acked_at,
        })
    }
}

/// A run together with the facts of its task that permission checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunWithTask {
    pub run: RunRow,
    pub task_organization_id: i64,
    pub task_creator_run_id: Option<i64>,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub run_id: i64,
    pub task_id: i64,
    pub image: String,
    pub created_at: i64,
    /// For `run_cancelled`: the name of the user who cancelled the task.
    pub cancelled_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
    Node,
    Run,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
            TokenKind::Node => "node",
            TokenKind::Run => "run",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "access" => TokenKind::Access,
            "refresh" => TokenKind::Refresh,
            "node" => TokenKind::Node,
            "run" => TokenKind::Run,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
struct RawTokenRow {
    hash: String,
    kind: String,
    user_id: Option<i64>,
    node_id: Option<i64>,
    run_id: Option<i64>,
    family: Option<String>,
    consumed: bool,
    expires_at: i64,
    generation: i64,
}

/// A token row joined with its user's (`u_`: null for a token of a node or a run, or a
/// user that is gone) and the user's organization's collaborations (a JSON array).
#[derive(Debug, FromRow)]
struct RawTokenUserRow {
    #[sqlx(flatten)]
    token: RawTokenRow,
    u_id: Option<i64>,
    u_username: Option<String>,
    u_organization_id: Option<i64>,
    u_role: Option<String>,
    u_password_hash: Option<String>,
    u_failed_logins: Option<i64>,
    u_locked_until: Option<i64>,
    u_created_at: Option<i64>,
    u_disabled: Option<bool>,
    u_token_generation: Option<i64>,
    u_collaborations: Option<String>,
}

impl TryFrom<RawTokenRow> for TokenRow {
    type Error = StorageError;
    fn try_from(r: RawTokenRow) -> Result<Self> {
        let kind = TokenKind::parse(&r.kind).ok_or_else(|| StorageError::Corrupt(r.kind))?;
        Ok(TokenRow {
            hash: r.hash,
            kind,
            user_id: r.user_id,
            node_id: r.node_id,
            run_id: r.run_id,
            family: r.family,
            consumed: r.consumed,
            expires_at: r.expires_at,
            generation: r.generation,
        })
    }
}

/// A stored token: only the sha256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub hash: String,
    pub kind: TokenKind,
    pub user_id: Option<i64>,
    pub node_id: Option<i64>,
    pub run_id: Option<i64>,
    pub family: Option<String>,
    pub consumed: bool,
    pub expires_at: i64,
    /// The owner's generation at issue time (user tokens: `users.token_generation`, node
    /// tokens: `nodes.key_generation`; 0 for run tokens). A token whose generation differs
    /// from its owner's current one is revoked.
    pub generation: i64,
}

/// Filters of `list_tasks`; `None` means "no restriction".
#[derive(Debug, Clone, Default)]
pub struct TaskFilter<'a> {
    /// Only tasks in these collaborations (the caller's visible set).
    pub collaborations: Option<&'a [i64]>,
    pub collaboration_id: Option<i64>,
    pub parent_task_id: Option<i64>,
    pub creator_run_id: Option<i64>,
    pub creator_user_id: Option<i64>,
    /// The organization that created the task.
    pub organization_id: Option<i64>,
    /// The normalised image reference, exactly.
    pub image: Option<&'a str>,
}

/// Filters of `list_runs`.
#[derive(Debug, Clone, Default)]
pub struct RunFilter<'a> {
    pub collaborations: Option<&'a [i64]>,
    pub collaboration_id: Option<i64>,
    pub organization_id: Option<i64>,
    pub task_id: Option<i64>,
    pub state: Option<RunState>,
    /// Only runs of tasks created by this run (subtasks).
    pub creator_run_id: Option<i64>,
}

const RUN_COLUMNS: &str = "runs.id, runs.task_id, runs.collaboration_id, runs.organization_id, \
    runs.state, runs.reason, runs.digest, runs.has_result, runs.created_at, runs.admitted_at, \
    runs.started_at, runs.finished_at, runs.acked_at";
/// Task columns with the requesting user's name, stored in the row at insertion: listing reads
/// no other table (a join with `users` measured +85 µs per page of 51 on PostgreSQL).
const TASK_COLUMNS: &str = "tasks.id, tasks.collaboration_id, tasks.name, tasks.image, \
    tasks.organization_id, tasks.creator_user_id, tasks.requester_user_id, \
    tasks.requester_username AS creator_username, tasks.creator_run_id, tasks.parent_task_id, \
    tasks.nonce, tasks.created_at, tasks.cancelled_at, tasks.cancelled_by_username";
const TASK_FROM: &str = "tasks";
const USER_COLUMNS: &str = "id, username, organization_id, role, password_hash, failed_logins, \
    locked_until, created_at, disabled, token_generation";
const NODE_COLUMNS: &str =
    "id, organization_id, collaboration_id, api_key_hash, created_at, last_seen_at, key_generation";

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }

    /// Open a savepoint; a failing step inside it can be undone without losing the rest of
    /// the transaction (used by group commit).
    pub async fn savepoint(&mut self) -> Result<()> {
        on!(self, c => sqlx::query("SAVEPOINT step").execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn release_savepoint(&mut self) -> Result<()> {
        on!(self, c => sqlx::query("RELEASE SAVEPOINT step").execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn rollback_to_savepoint(&mut self) -> Result<()> {
        on!(self, c => sqlx::query("ROLLBACK TO SAVEPOINT step").execute(&mut *c).await.map(|r| r.rows_affected()))?;
        self.release_savepoint().await
    }

    pub async fn ping(&mut self) -> Result<()> {
        on!(self, c => sqlx::query("SELECT 1").execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // ---- organizations -----------------------------------------------------------------------

    pub async fn insert_organization(
        &mut self,
        name: &str,
        public_key: &str,
        now: i64,
    ) -> Result<i64> {
        let sql = "INSERT INTO organizations (name, public_key, created_at) VALUES ($1, $2, $3) \
                   RETURNING id";
        Ok(
            on!(self, c => sqlx::query_scalar(sql).bind(name).bind(public_key).bind(now)
            .fetch_one(&mut *c).await)?,
        )
    }

    pub async fn organization(&mut self, id: i64) -> Result<Option<OrganizationRow>> {
        let sql = "SELECT id, name, public_key, created_at FROM organizations WHERE id = $1";
        Ok(on!(self, c => sqlx::query_as(sql).bind(id).fetch_optional(&mut *c).await)?)
    }

    /// Organizations, newest first; `ids` restricts to a visible set, `name` to one name
    /// (unique, so at most one row).
    pub async fn list_organizations(
        &mut self,
        ids: Option<&[i64]>,
        name: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OrganizationRow>> {
        let mut f = Filter::default();
        f.in_list("id", ids);
        f.eq_str("name", name);
        f.lt("id", after);
        let sql = f.sql(
            "SELECT id, name, public_key, created_at FROM organizations",
            "id",
            limit,
        );
        Ok(on!(self, c => bind_all!(sqlx::query_as(&sql), &f.args).fetch_all(&mut *c).await)?)
    }

    // ---- collaborations ----------------------------------------------------------------------

    pub async fn insert_collaboration(
        &mut self,
        name: &str,
        encrypted: bool,
        now: i64,
    ) -> Result<i64> {
        let sql = "INSERT INTO collaborations (name, encrypted, created_at) VALUES ($1, $2, $3) \
                   RETURNING id";
        Ok(
            on!(self, c => sqlx::query_scalar(sql).bind(name).bind(encrypted).bind(now)
            .fetch_one(&mut *c).await)?,
        )
    }

    /// Make the organization a member; a membership that was removed becomes current again
    /// (the same row, which its runs and node reference).
    pub async fn add_member(&mut self, collaboration_id: i64, organization_id: i64) -> Result<()> {
        let sql = "INSERT INTO collaboration_members (collaboration_id, organization_id) \
                   VALUES ($1, $2) ON CONFLICT (collaboration_id, organization_id) \
                   DO UPDATE SET removed_at = NULL";
        on!(self, c => sqlx::query(sql).bind(collaboration_id).bind(organization_id)
            .execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The membership row of an organization in a collaboration: `None` when it never was a
    /// member, `Some(None)` a member, `Some(Some(t))` removed at `t`.
    pub async fn membership(
        &mut self,
        collaboration_id: i64,
        organization_id: i64,
    ) -> Result<Option<Option<i64>>> {
        let sql = "SELECT removed_at FROM collaboration_members \
                   WHERE collaboration_id = $1 AND organization_id = $2";
        Ok(
            on!(self, c => sqlx::query_scalar(sql).bind(collaboration_id).bind(organization_id)
            .fetch_optional(&mut *c).await)?,
        )
    }

    /// Mark a current membership removed at `now`; false when it was not current.
    pub async fn remove_member(
        &mut self,
        collaboration_id: i64,
        organization_id: i64,
        now: i64,
    ) -> Result<bool> {
        let sql = "UPDATE collaboration_members SET removed_at = $1 \
                   WHERE collaboration_id = $2 AND organization_id = $3 AND removed_at IS NULL";
        let n = on!(self, c => sqlx::query(sql).bind(now).bind(collaboration_id)
            .bind(organization_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// The runs (id, task id) of an organization in a collaboration that are not in a final
    /// state, oldest first, at most `limit`.
    pub async fn unfinished_runs(
        &mut self,
        collaboration_id: i64,
        organization_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, i64)>> {
        let sql = "SELECT id, task_id FROM runs WHERE collaboration_id = $1 AND organization_id = $2 \
                   AND state NOT IN ('completed', 'failed', 'rejected', 'cancelled') \
                   ORDER BY id LIMIT $3";
        Ok(
            on!(self, c => sqlx::query_as(sql).bind(collaboration_id).bind(organization_id)
            .bind(i64::from(limit)).fetch_all(&mut *c).await)?,
        )
    }

    /// The node of an organization in a collaboration (at most one).
    pub async fn node_of_member(
        &mut self,
        collaboration_id: i64,
        organization_id: i64,
    ) -> Result<Option<NodeRow>> {
        let sql = format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE collaboration_id = $1 AND organization_id = $2"
        );
        Ok(
            on!(self, c => sqlx::query_as(&sql).bind(collaboration_id).bind(organization_id)
            .fetch_optional(&mut *c).await)?,
        )
    }

    pub async fn collaboration(&mut self, id: i64) -> Result<Option<CollaborationRow>> {
        let sql = "SELECT id, name, encrypted, created_at FROM collaborations WHERE id = $1";
        Ok(on!(self, c => sqlx::query_as(sql).bind(id).fetch_optional(&mut *c).await)?)
    }

    /// Member organizations of a collaboration, ascending.
    pub async fn members(&mut self, collaboration_id: i64) -> Result<Vec<i64>> {
        let sql = "SELECT organization_id FROM collaboration_members WHERE collaboration_id = $1 \
                   AND removed_at IS NULL ORDER BY organization_id";
        Ok(on!(self, c => sqlx::query_scalar(sql).bind(collaboration_id).fetch_all(&mut *c).await)?)
    }

    /// A collaboration and those of `organizations` that are its current members
    /// (ascending), in one statement: what a task creation checks its targets against.
    pub async fn collaboration_and_members_among(
        &mut self,
        id: i64,
        organizations: &[i64],
    ) -> Result<Option<(CollaborationRow, Vec<i64>)>> {
        let raw: Option<(i64, String, bool, i64, Option<String>)> = match self {
            Tx::Sqlite(t) => {
                let sql = "SELECT c.id, c.name, c.encrypted, c.created_at, \
                           (SELECT json_group_array(m.organization_id) \
                            FROM collaboration_members m WHERE m.collaboration_id = c.id \
                            AND m.removed_at IS NULL \
                            AND m.organization_id IN (SELECT value FROM json_each($2))) \
                           FROM collaborations c WHERE c.id = $1";
                let list = serde_json::to_string(organizations)
                    .map_err(|e| StorageError::Database(sqlx::Error::Encode(Box::new(e))))?;
                sqlx::query_as(sql)
                    .bind(id)
                    .bind(list)
                    .fetch_optional(&mut **t)
                    .await?
            }
            Tx::Postgres(t) => {
                let sql = "SELECT c.id, c.name, c.encrypted, c.created_at, \
                           (SELECT coalesce(json_agg(m.organization_id), '[]')::TEXT \
                            FROM collaboration_members m WHERE m.collaboration_id = c.id \
                            AND m.removed_at IS NULL AND m.organization_id = ANY($2)) \
                           FROM collaborations c WHERE c.id = $1";
                sqlx::query_as(sql)
                    .bind(id)
                    .bind(organizations)
                    .fetch_optional(&mut **t)
                    .await?
            }
        };
        let Some((id, name, encrypted, created_at, members)) = raw else {
            return Ok(None);
        };
        let members = id_list(members)?;
        let collaboration = CollaborationRow {
            id,
            name,
            encrypted,
            created_at,
        };
        Ok(Some((collaboration, members)))
    }

    /// Collaborations an organization is a member of, ascending.
    pub async fn collaborations_of(&mut self, organization_id: i64) -> Result<Vec<i64>> {
        let sql = "SELECT collaboration_id FROM collaboration_members WHERE organization_id = $1 \
                   AND removed_at IS NULL ORDER BY collaboration_id";
        Ok(on!(self, c => sqlx::query_scalar(sql).bind(organization_id).fetch_all(&mut *c).await)?)
    }

    /// Organizations that share at least one collaboration with `organization_id` (itself
    /// included).
    pub async fn partners_of(&mut self, organization_id: i64) -> Result<Vec<i64>> {
        let sql = "SELECT DISTINCT b.organization_id FROM collaboration_members a \
                   JOIN collaboration_members b ON a.collaboration_id = b.collaboration_id \
                   WHERE a.organization_id = $1 AND a.removed_at IS NULL \
                   AND b.removed_at IS NULL ORDER BY b.organization_id";
        let mut v: Vec<i64> = on!(self, c => sqlx::query_scalar(sql).bind(organization_id)
            .fetch_all(&mut *c).await)?;
        if !v.contains(&organization_id) {
            v.push(organization_id);
        }
        Ok(v)
    }

    /// Collaborations, newest first; `ids` restricts to a visible set, `name` to one name,
    /// `member` to those the organization belongs to (`collaboration_members_by_org`).
    pub async fn list_collaborations(
        &mut self,
        ids: Option<&[i64]>,
        name: Option<&str>,
        member: Option<i64>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<CollaborationRow>> {
        let mut f = Filter::default();
        f.in_list("id", ids);
        f.eq_str("name", name);
        if let Some(o) = member {
            let p = f.next(Arg::I64(o));
            f.clauses.push(format!(
                "id IN (SELECT collaboration_id FROM collaboration_members WHERE organization_id = {p} AND removed_at IS NULL)"
            ));
        }
        f.lt("id", after);
        let sql = f.sql(
            "SELECT id, name, encrypted, created_at FROM collaborations",
            "id",
            limit,
        );
        Ok(on!(self, c => bind_all!(sqlx::query_as(&sql), &f.args).fetch_all(&mut *c).await)?)
    }

    // ---- users -------------------------------------------------------------------------------

    pub async fn insert_user(
        &mut self,
        username: &str,
        organization_id: Option<i64>,
        role: Role,
        password_hash: &str,
        now: i64,
    ) -> Result<i64> {
        let sql = "INSERT INTO users (username, organization_id, role, password_hash, created_at) \
                   VALUES ($1, $2, $3, $4, $5) RETURNING id";
        Ok(
            on!(self, c => sqlx::query_scalar(sql).bind(username).bind(organization_id)
            .bind(role.as_str()).bind(password_hash).bind(now).fetch_one(&mut *c).await)?,
        )
    }

    pub async fn user(&mut self, id: i64) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let raw: Option<RawUserRow> =
            on!(self, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?;
        raw.map(UserRow::try_from).transpose()
    }

    pub async fn user_by_name(&mut self, username: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let raw: Option<RawUserRow> =
            on!(self, c => sqlx::query_as(&sql).bind(username).fetch_optional(&mut *c).await)?;
        raw.map(UserRow::try_from).transpose()
    }

    pub async fn count_users(&mut self) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM users";
        Ok(on!(self, c => sqlx::query_scalar(sql).fetch_one(&mut *c).await)?)
    }

    /// Count one failed login; at `threshold` failures in a row the account is locked until
    /// `lock_until` and the counter restarts. Atomic, so concurrent attempts all count.
    pub async fn record_login_failure(
        &mut self,
        user_id: i64,
        threshold: i64,
        lock_until: i64,
    ) -> Result<()> {
        let sql = "UPDATE users SET \
                   locked_until = CASE WHEN failed_logins + 1 >= $1 THEN $2 ELSE locked_until END, \
                   failed_logins = CASE WHEN failed_logins + 1 >= $1 THEN 0 \
                   ELSE failed_logins + 1 END WHERE id = $3";
        on!(self, c => sqlx::query(sql).bind(threshold).bind(lock_until).bind(user_id)
            .execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn reset_login_failures(&mut self, user_id: i64) -> Result<()> {
        let sql = "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1";
        on!(self, c => sqlx::query(sql).bind(user_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// PostgreSQL: serialise account changes that check other accounts (the last enabled
    /// root) until the transaction ends. SQLite: nothing to do, it has one writer.
    pub async fn lock_accounts(&mut self) -> Result<()> {
        if let Tx::Postgres(t) = self {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ACCOUNT_LOCK)
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    /// Enabled root users other than `except`.
    pub async fn count_enabled_roots_except(&mut self, except: i64) -> Result<i64> {
        let sql =
            "SELECT COUNT(*) FROM users WHERE role = 'root' AND disabled = FALSE AND id <> $1";
        Ok(on!(self, c => sqlx::query_scalar(sql).bind(except).fetch_one(&mut *c).await)?)
    }

    /// Disable a user (and increase its token generation, so that every token issued before
    /// is refused) or enable it. Returns whether the user exists.
    pub async fn set_user_disabled(&mut self, id: i64, disabled: bool) -> Result<bool> {
        let sql = if disabled {
            "UPDATE users SET disabled = TRUE, token_generation = token_generation + 1 \
             WHERE id = $1"
        } else {
            "UPDATE users SET disabled = FALSE WHERE id = $1"
        };
        let done = on!(self, c => sqlx::query(sql).bind(id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Replace a user's password hash, clear its lockout and increase its token generation
    /// (every earlier token is refused from now on). With `expected_generation`, only if the
    /// generation is still that value (nobody revoked the user's tokens meanwhile). Returns the
    /// new generation, or `None` when the user does not exist or the generation moved.
    pub async fn set_password(
        &mut self,
        id: i64,
        password_hash: &str,
        expected_generation: Option<i64>,
    ) -> Result<Option<i64>> {
        const SET: &str = "UPDATE users SET password_hash = $1, failed_logins = 0, \
                           locked_until = NULL, token_generation = token_generation + 1";
        Ok(match expected_generation {
            Some(g) => {
                let sql = format!(
                    "{SET} WHERE id = $2 AND token_generation = $3 RETURNING token_generation"
                );
                on!(self, c => sqlx::query_scalar(&sql).bind(password_hash).bind(id).bind(g)
                    .fetch_optional(&mut *c).await)?
            }
            None => {
                let sql = format!("{SET} WHERE id = $2 RETURNING token_generation");
                on!(self, c => sqlx::query_scalar(&sql).bind(password_hash).bind(id)
                    .fetch_optional(&mut *c).await)?
            }
        })
    }

    /// Delete every token of a user (all sessions). Returns how many were deleted.
    pub async fn delete_user_tokens(&mut self, user_id: i64) -> Result<u64> {
        let sql = "DELETE FROM tokens WHERE user_id = $1";
        let done = on!(self, c => sqlx::query(sql).bind(user_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }

    pub async fn list_users(
        &mut self,
        organization_id: Option<i64>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<UserRow>> {
        let mut f = Filter::default();
        f.eq("organization_id", organization_id);
        f.lt("id", after);
        let sql = f.sql(&format!("SELECT {USER_COLUMNS} FROM users"), "id", limit);
        let raw: Vec<RawUserRow> =
            on!(self, c => bind_all!(sqlx::query_as(&sql), &f.args).fetch_all(&mut *c).await)?;
        raw.into_iter().map(UserRow::try_from).collect()
    }

    // ---- nodes -------------------------------------------------------------------------------

    pub async fn insert_node(
        &mut self,
        organization_id: i64,
        collaboration_id: i64,
        api_key_hash: &str,
        now: i64,
    ) -> Result<i64> {
        let sql = "INSERT INTO nodes (organization_id, collaboration_id, api_key_hash, created_at) \
                   VALUES ($1, $2, $3, $4) RETURNING id";
        Ok(
            on!(self, c => sqlx::query_scalar(sql).bind(organization_id).bind(collaboration_id)
            .bind(api_key_hash).bind(now).fetch_one(&mut *c).await)?,
        )
    }

    pub async fn set_node_key(&mut self, id: i64, api_key_hash: &str) -> Result<()> {
        let sql = "UPDATE nodes SET api_key_hash = $1 WHERE id = $2";
        on!(self, c => sqlx::query(sql).bind(api_key_hash).bind(id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Replace a node's API key hash and increase its key generation, so that every node
    /// token issued under an earlier key is refused. Returns the new generation, `None` when
    /// the node does not exist.
    pub async fn rotate_node_key(&mut self, id: i64, api_key_hash: &str) -> Result<Option<i64>> {
        let sql = "UPDATE nodes SET api_key_hash = $1, key_generation = key_generation + 1 \
                   WHERE id = $2 RETURNING key_generation";
        Ok(
            on!(self, c => sqlx::query_scalar(sql).bind(api_key_hash).bind(id)
            .fetch_optional(&mut *c).await)?,
        )
    }

    /// Delete every token of a node.
    pub async fn delete_node_tokens(&mut self, node_id: i64) -> Result<u64> {
        let sql = "DELETE FROM tokens WHERE node_id = $1";
        let done = on!(self, c => sqlx::query(sql).bind(node_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }

    /// PostgreSQL: tell every replica (at commit) that the node of `(collaboration,
    /// organization)` lost its credentials, so that its open WebSocket sessions re-check their
    /// token now rather than at the next ping. SQLite: nothing (one process; the service wakes
    /// its own hub after the commit).
    pub async fn notify_revoked(
        &mut self,
        collaboration_id: i64,
        organization_id: i64,
    ) -> Result<()> {
        if let Tx::Postgres(t) = self {
            sqlx::query(concat!("SELECT pg_notify(", event_channel!(), ", $1)"))
                .bind(format!(
                    "{REVOKED_PREFIX}{collaboration_id}:{organization_id}"
                ))
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    pub async fn touch_node(&mut self, id: i64, now: i64) -> Result<()> {
        let sql = "UPDATE nodes SET last_seen_at = $1 WHERE id = $2";
        on!(self, c => sqlx::query(sql).bind(now).bind(id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn node(&mut self, id: i64) -> Result<Option<NodeRow>> {
        let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1");
        Ok(on!(self, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?)
    }

    pub async fn list_nodes(
        &mut self,
        organization_id: Option<i64>,
        collaboration_id: Option<i64>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<NodeRow>> {
        let mut f = Filter::default();
        f.eq("organization_id", organization_id);
        f.eq("collaboration_id", collaboration_id);
        // A node whose organization was removed from its collaboration is gone from lists.
        f.clauses.push(
            "EXISTS (SELECT 1 FROM collaboration_members m \
             WHERE m.collaboration_id = nodes.collaboration_id \
             AND m.organization_id = nodes.organization_id AND m.removed_at IS NULL)"
                .to_owned(),
        );
        f.lt("id", after);
        let sql = f.sql(&format!("SELECT {NODE_COLUMNS} FROM nodes"), "id", limit);
        Ok(on!(self, c => bind_all!(sqlx::query_as(&sql), &f.args).fetch_all(&mut *c).await)?)
    }

    // ---- tasks and runs ----------------------------------------------------------------------

    /// Insert a task. [`StorageError::Conflict`]: another task of the collaboration already has
    /// this nonce (the only unique constraint of `tasks`).
    pub async fn insert_task(&mut self, t: &NewTask<'_>) -> Result<i64> {
        let sql = "INSERT INTO tasks (collaboration_id, name, image, organization_id, \
                   creator_user_id, requester_user_id, requester_username, creator_run_id, \
                   parent_task_id, nonce, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";
        Ok(
            on!(self, c => sqlx::query_scalar(sql).bind(t.collaboration_id).bind(t.name)
            .bind(t.image).bind(t.organization_id).bind(t.creator_user_id)
            .bind(t.requester_user_id).bind(t.requester_username).bind(t.creator_run_id)
            .bind(t.parent_task_id).bind(t.nonce)
            .bind(t.created_at).fetch_one(&mut *c).await)?,
        )
    }

    /// Inserts one pending run per `(organization, input)` of a task, in the order given, and
    /// returns their ids in that order. A constant number of statements whatever the count (a
    /// task may target thousands of organizations): on PostgreSQL the runs and their inputs in
    /// one statement, on SQLite the runs in one and their inputs in a few. Ids are drawn in
    /// insertion order within one statement (the rows to insert are ordered explicitly), which
    /// the organizations read back confirm.
    pub async fn insert_runs(
        &mut self,
        task_id: i64,
        collaboration_id: i64,
        inputs: &[(i64, Vec<u8>)], // (organization, sealed input)
        now: i64,
    ) -> Result<Vec<i64>> {
        self.insert_runs_with(task_id, collaboration_id, inputs, now, false)
            .await
    }

    /// [`Tx::insert_runs`] and their `run_created` events ([`Tx::insert_events`]): the run
    /// ids and the event ids (where known before the commit) in the order given. On
    /// PostgreSQL the runs, their inputs and the queued events are one statement.
    pub async fn insert_runs_and_events(
        &mut self,
        task_id: i64,
        collaboration_id: i64,
        inputs: &[(i64, Vec<u8>)], // (organization, sealed input)
        now: i64,
    ) -> Result<(Vec<i64>, Vec<Option<i64>>)> {
        let runs = self
            .insert_runs_with(task_id, collaboration_id, inputs, now, true)
            .await?;
        let events = match self {
            Tx::Postgres(_) => vec![None; runs.len()],
            Tx::Sqlite(_) => {
                let keys: Vec<(i64, i64, i64)> = runs
                    .iter()
                    .zip(inputs)
                    .map(|(&r, (o, _))| (r, collaboration_id, *o))
                    .collect();
                self.insert_run_events(&keys, now).await?
            }
        };
        Ok((runs, events))
    }

    /// `events`: on PostgreSQL, also queue the runs' `run_created` events in the same
    /// statement (SQLite: the caller inserts them).
    async fn insert_runs_with(
        &mut self,
        task_id: i64,
        collaboration_id: i64,
        inputs: &[(i64, Vec<u8>)],
        now: i64,
        events: bool,
    ) -> Result<Vec<i64>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let orgs: Vec<i64> = inputs.iter().map(|(o, _)| *o).collect();
        let mut rows: Vec<(i64, i64)> = match self {
            Tx::Postgres(t) => {
                // The runs and their inputs in one statement (one round trip): the inputs
                // join the new runs on the organization, unique within a task. With the
                // events, one row of `event_batches` too (see `insert_events`), its runs in
                // id order, which is the order given (checked below; the statement is rolled
                // back with the transaction otherwise).
                const RUNS: &str = "WITH r AS (INSERT INTO runs \
                             (task_id, collaboration_id, organization_id, state, created_at) \
                             SELECT $1, $2, u.o, 'pending', $3 \
                             FROM unnest($4::BIGINT[]) WITH ORDINALITY AS u(o, n) ORDER BY u.n \
                             RETURNING id, organization_id), \
                           i AS (INSERT INTO run_inputs (run_id, input) \
                             SELECT r.id, u.input FROM r \
                             JOIN unnest($4::BIGINT[], $5::BYTEA[]) AS u(o, input) \
                             ON u.o = r.organization_id) ";
                const EVENTS: &str = ", e AS (INSERT INTO event_batches \
                             (kind, created_at, run_ids, collaboration_ids, organization_ids, nodes) \
                             SELECT 'run_created', $3, array_agg(id ORDER BY id), \
                             array_agg($2::BIGINT ORDER BY id), \
                             array_agg(organization_id ORDER BY id), $6 FROM r) ";
                const SELECT: &str = "SELECT id, organization_id FROM r";
                let blobs: Vec<&[u8]> = inputs.iter().map(|(_, i)| i.as_slice()).collect();
                let sql = if events {
                    [RUNS, EVENTS, SELECT].concat()
                } else {
                    [RUNS, SELECT].concat()
                };
                let mut q = sqlx::query_as(&sql)
                    .bind(task_id)
                    .bind(collaboration_id)
                    .bind(now)
                    .bind(&orgs)
                    .bind(&blobs);
                if events {
                    q = q.bind(nodes_payloads(orgs.iter().map(|&o| (collaboration_id, o))));
                }
                q.fetch_all(&mut **t).await?
            }
            Tx::Sqlite(t) => {
                let sql = "INSERT INTO runs (task_id, collaboration_id, organization_id, state, created_at) \
                           SELECT $1, $2, value, 'pending', $3 FROM json_each($4) ORDER BY key \
                           RETURNING id, organization_id";
                let list = serde_json::to_string(&orgs)
                    .map_err(|e| StorageError::Database(sqlx::Error::Encode(Box::new(e))))?;
                sqlx::query_as(sql)
                    .bind(task_id)
                    .bind(collaboration_id)
                    .bind(now)
                    .bind(list)
                    .fetch_all(&mut **t)
                    .await?
            }
        };
        rows.sort_unstable();
        if rows.len() != inputs.len() || rows.iter().zip(&orgs).any(|((_, o), want)| o != want) {
            return Err(StorageError::Database(sqlx::Error::Protocol(format!(
                "{} runs read back for {} organizations, or out of order",
                rows.len(),
                inputs.len()
            ))));
        }
        let ids: Vec<i64> = rows.into_iter().map(|(id, _)| id).collect();
        match self {
            // written with the runs
            Tx::Postgres(_) => {}
            Tx::Sqlite(t) => {
                // Blobs are bound as blobs, so many rows a statement; chunks of a power of two
                // rows keep the statements the connection caches to a handful.
                let mut rest: Vec<(i64, &[u8])> = ids
                    .iter()
                    .zip(inputs)
                    .map(|(id, (_, input))| (*id, input.as_slice()))
                    .collect();
                while !rest.is_empty() {
                    let n = INPUT_CHUNK.min(1 << rest.len().ilog2());
                    let sql = format!(
                        "INSERT INTO run_inputs (run_id, input) VALUES {}",
                        vec!["(?, ?)"; n].join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for (id, input) in rest.drain(..n) {
                        q = q.bind(id).bind(input);
                    }
                    q.execute(&mut **t).await?;
                }
            }
        }
        Ok(ids)
    }

    /// Append the node events for new runs (see [`Tx::insert_events`]).
    pub async fn insert_run_events(
        &mut self,
        runs: &[(i64, i64, i64)], // (run id, collaboration, organization)
        now: i64,
    ) -> Result<Vec<Option<i64>>> {
        self.insert_events("run_created", runs, now).await
    }

    /// Append one event of `kind` per run, in the order given; returns each one's id where
    /// it is known before the commit.
    ///
    /// Event ids must become visible in increasing order (a node resumes "after id N").
    /// SQLite has one writer, which orders commits by itself: the ids are drawn here, in one
    /// statement, and returned. PostgreSQL draws them at the commit (migration
    /// `0011_events_at_commit`): this queues the events in one row of `event_batches`, and a
    /// deferred trigger, inside the COMMIT, takes the event-order lock, inserts them in the
    /// order given, NOTIFYs the schema's event channel naming the nodes, and releases the lock
    /// only once the commit is visible. No lock is held between here and the commit, so a
    /// slow or stopped replica holds up no one else's creations; the ids are `None`.
    pub async fn insert_events(
        &mut self,
        kind: &str,
        runs: &[(i64, i64, i64)], // (run id, collaboration, organization)
        now: i64,
    ) -> Result<Vec<Option<i64>>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Tx::Postgres(t) => {
                let run_ids: Vec<i64> = runs.iter().map(|r| r.0).collect();
                let collabs: Vec<i64> = runs.iter().map(|r| r.1).collect();
                let orgs: Vec<i64> = runs.iter().map(|r| r.2).collect();
                // The notifications name the nodes, so that other replicas wake only their
                // sessions (several payloads for many nodes).
                let sql = "INSERT INTO event_batches \
                           (kind, created_at, run_ids, collaboration_ids, organization_ids, nodes) \
                           VALUES ($1, $2, $3, $4, $5, $6)";
                sqlx::query(sql)
                    .bind(kind)
                    .bind(now)
                    .bind(&run_ids)
                    .bind(&collabs)
                    .bind(&orgs)
                    .bind(nodes_payloads(runs.iter().map(|r| (r.1, r.2))))
                    .execute(&mut **t)
                    .await?;
                Ok(vec![None; runs.len()])
            }
            Tx::Sqlite(t) => {
                // One statement: the rows in the order given (ORDER BY key), each drawing the
                // next AUTOINCREMENT id as it is inserted.
                let sql = "INSERT INTO events \
                           (collaboration_id, organization_id, kind, run_id, created_at) \
                           SELECT value ->> 1, value ->> 2, $1, value ->> 0, $2 \
                           FROM json_each($3) ORDER BY key RETURNING id, run_id";
                let list = serde_json::to_string(runs)
                    .map_err(|e| StorageError::Database(sqlx::Error::Encode(Box::new(e))))?;
                let mut rows: Vec<(i64, i64)> = sqlx::query_as(sql)
                    .bind(kind)
                    .bind(now)
                    .bind(list)
                    .fetch_all(&mut **t)
                    .await?;
                rows.sort_unstable();
                if rows.len() != runs.len()
                    || rows.iter().zip(runs).any(|((_, r), want)| *r != want.0)
                {
                    return Err(StorageError::Database(sqlx::Error::Protocol(format!(
                        "{} events read back for {} runs, or out of order",
                        rows.len(),
                        runs.len()
                    ))));
                }
                Ok(rows.into_iter().map(|(id, _)| Some(id)).collect())
            }
        }
    }

    pub async fn task(&mut self, id: i64) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM {TASK_FROM} WHERE tasks.id = $1");
        Ok(on!(self, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?)
    }

    /// Tasks newest first, keyset paginated on the id.
    pub async fn list_tasks(
        &mut self,
        filter: &TaskFilter<'_>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<TaskRow>> {
        let mut f = Filter::default();
        f.in_list("tasks.collaboration_id", filter.collaborations);
        f.eq("tasks.collaboration_id", filter.collaboration_id);
        f.eq("tasks.parent_task_id", filter.parent_task_id);
        f.eq("tasks.creator_run_id", filter.creator_run_id);
        f.eq("tasks.creator_user_id", filter.creator_user_id);
        f.eq("tasks.organization_id", filter.organization_id);
        f.eq_str("tasks.image", filter.image);
        f.lt("tasks.id", after);
        let sql = f.sql(
            &format!("SELECT {TASK_COLUMNS} FROM {TASK_FROM}"),
            "tasks.id",
            limit,
        );
        Ok(on!(self, c => bind_all!(sqlx::query_as(&sql), &f.args).fetch_all(&mut *c).await)?)
    }

    pub async fn runs_of_task(&mut self, task_id: i64) -> Result<Vec<RunRow>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE task_id = $1 ORDER BY id");
        let raw: Vec<RawRunRow> =
            on!(self, c => sqlx::query_as(&sql).bind(task_id).fetch_all(&mut *c).await)?;
        raw.into_iter().map(RunRow::try_from).collect()
    }

    pub async fn run(&mut self, id: i64) -> Result<Option<RunWithTask>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS}, tasks.organization_id AS task_organization_id, \
             tasks.creator_run_id AS task_creator_run_id, tasks.image AS image \
             FROM runs JOIN tasks ON tasks.id = runs.task_id WHERE runs.id = $1"
        );
        #[derive(FromRow)]
        struct Joined {
            #[sqlx(flatten)]
            run: RawRunRow,
            task_organization_id: i64,
            task_creator_run_id: Option<i64>,
            image: String,
        }
        let j: Option<Joined> =
            on!(self, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?;
        j.map(|j| {
            Ok(RunWithTask {
                run: RunRow::try_from(j.run)?,
                task_organization_id: j.task_organization_id,
                task_creator_run_id: j.task_creator_run_id,
                image: j.image,
            })
        })
        .transpose()
    }

    pub async fn list_runs(
        &mut self,
        filter: &RunFilter<'_>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RunRow>> {
        let mut f = Filter::default();
        f.in_list("runs.collaboration_id", filter.collaborations);
        f.eq("runs.collaboration_id", filter.collaboration_id);
        f.eq("runs.organization_id", filter.organization_id);
        f.eq("runs.task_id", filter.task_id);
        f.eq_str("runs.state", filter.state.map(RunState::as_str));
        f.lt("runs.id", after);
        let select = if let Some(r) = filter.creator_run_id {
            f.eq("tasks.creator_run_id", Some(r));
            format!("SELECT {RUN_COLUMNS} FROM runs JOIN tasks ON tasks.id = runs.task_id")
        } else {
            format!("SELECT {RUN_COLUMNS} FROM runs")
        };
        let sql = f.sql(&select, "runs.id", limit);
        let raw: Vec<RawRunRow> =
            on!(self, c => bind_all!(sqlx::query_as(&sql), &f.args).fetch_all(&mut *c).await)?;
        raw.into_iter().map(RunRow::try_from).collect()
    }

    /// Move a run from `from` to `to` if it is still in `from`; returns whether it moved. The
    /// timestamp column that belongs to `to` is set to `now`.
    pub async fn transition_run(
        &mut self,
        id: i64,
        from: RunState,
        to: RunState,
        reason: Option<&str>,
        digest: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        // The node's waits (awaiting approval or release) keep the times the run had.
        let column = match to {
            RunState::Pending => Some("created_at"),
            RunState::Admitted => Some("admitted_at"),
            RunState::Running => Some("started_at"),
            RunState::AwaitingApproval | RunState::AwaitingRelease => None,
            RunState::Completed | RunState::Failed | RunState::Rejected | RunState::Cancelled => {
                Some("finished_at")
            }
        };
        let done = match column {
            Some(column) => {
                let sql = format!(
                    "UPDATE runs SET state = $1, {column} = $2, reason = COALESCE($3, reason), \
                     digest = COALESCE($4, digest) WHERE id = $5 AND state = $6"
                );
                on!(self, c => sqlx::query(&sql).bind(to.as_str()).bind(now).bind(reason)
                    .bind(digest).bind(id).bind(from.as_str()).execute(&mut *c).await.map(|r| r.rows_affected()))?
            }
            None => {
                let sql = "UPDATE runs SET state = $1, reason = COALESCE($2, reason), \
                           digest = COALESCE($3, digest) WHERE id = $4 AND state = $5";
                on!(self, c => sqlx::query(sql).bind(to.as_str()).bind(reason)
                    .bind(digest).bind(id).bind(from.as_str()).execute(&mut *c).await.map(|r| r.rows_affected()))?
            }
        };
        Ok(done == 1)
    }

    /// Record that a task was cancelled, by whom and when, unless it already was; returns
    /// whether this call recorded it.
    pub async fn cancel_task(
        &mut self,
        task_id: i64,
        user_id: Option<i64>,
        username: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let sql = "UPDATE tasks SET cancelled_at = $1, cancelled_by_user_id = $2, \
                   cancelled_by_username = $3 WHERE id = $4 AND cancelled_at IS NULL";
        let n = on!(self, c => sqlx::query(sql).bind(now).bind(user_id).bind(username)
            .bind(task_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// The subtasks of `parent` (tasks its runs created) not cancelled yet, oldest first.
    pub async fn live_subtasks(&mut self, parent: i64) -> Result<Vec<i64>> {
        let sql = "SELECT id FROM tasks WHERE parent_task_id = $1 AND cancelled_at IS NULL \
                   ORDER BY id";
        Ok(on!(self, c => sqlx::query_scalar(sql).bind(parent).fetch_all(&mut *c).await)?)
    }

    /// Move every run of the task that has not ended to `cancelled` (its `finished_at` set to
    /// `now`); returns (run id, collaboration, organization) of those it moved.
    pub async fn cancel_runs(&mut self, task_id: i64, now: i64) -> Result<Vec<(i64, i64, i64)>> {
        let sql = "UPDATE runs SET state = 'cancelled', finished_at = $1 WHERE task_id = $2 \
                   AND state NOT IN ('completed', 'failed', 'rejected', 'cancelled') \
                   RETURNING id, collaboration_id, organization_id";
        let mut moved: Vec<(i64, i64, i64)> = on!(self, c => sqlx::query_as(sql).bind(now)
            .bind(task_id).fetch_all(&mut *c).await)?;
        moved.sort_unstable();
        // A result or logs uploaded just before (the node uploads, then reports completed)
        // are not kept: nothing of a cancelled run is stored.
        for (run, ..) in &moved {
            for sql in [
                "DELETE FROM results WHERE run_id = $1",
                "DELETE FROM run_logs WHERE run_id = $1",
                "UPDATE runs SET has_result = FALSE WHERE id = $1",
            ] {
                on!(self, c => sqlx::query(sql).bind(run).execute(&mut *c).await.map(|r| r.rows_affected()))?;
            }
        }
        Ok(moved)
    }

    /// Record the first delivery acknowledgement; later ones change nothing.
    pub async fn ack_run(&mut self, id: i64, now: i64) -> Result<()> {
        let sql = "UPDATE runs SET acked_at = $1 WHERE id = $2 AND acked_at IS NULL";
        on!(self, c => sqlx::query(sql).bind(now).bind(id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn run_input(&mut self, run_id: i64) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT input FROM run_inputs WHERE run_id = $1";
        Ok(on!(self, c => sqlx::query_scalar(sql).bind(run_id).fetch_optional(&mut *c).await)?)
    }

    /// Store (or replace) the result bytes of a run and flag the run as having one.
    pub async fn put_result(&mut self, run_id: i64, data: &[u8], now: i64) -> Result<()> {
        let sql = "INSERT INTO results (run_id, data, created_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (run_id) DO UPDATE SET data = excluded.data, \
                   created_at = excluded.created_at";
        on!(self, c => sqlx::query(sql).bind(run_id).bind(data).bind(now).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        let sql = "UPDATE runs SET has_result = TRUE WHERE id = $1";
        on!(self, c => sqlx::query(sql).bind(run_id).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn result(&mut self, run_id: i64) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT data FROM results WHERE run_id = $1";
        Ok(on!(self, c => sqlx::query_scalar(sql).bind(run_id).fetch_optional(&mut *c).await)?)
    }

    /// Store (or replace) the sealed logs a run's node released.
    pub async fn put_logs(&mut self, run_id: i64, data: &[u8], now: i64) -> Result<()> {
        let sql = "INSERT INTO run_logs (run_id, data, created_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (run_id) DO UPDATE SET data = excluded.data, \
                   created_at = excluded.created_at";
        on!(self, c => sqlx::query(sql).bind(run_id).bind(data).bind(now).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The sealed logs a run's node released, if it released any.
    pub async fn logs(&mut self, run_id: i64) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT data FROM run_logs WHERE run_id = $1";
        Ok(on!(self, c => sqlx::query_scalar(sql).bind(run_id).fetch_optional(&mut *c).await)?)
    }

    // ---- store checkpoints (split views) ------------------------------------------------------

    /// Keeps `checkpoint` as node `node_id`'s latest of `store` under `note_key` when it is
    /// larger than the one kept (a node's verified checkpoints only grow).
    pub async fn put_store_checkpoint(
        &mut self,
        store: &str,
        note_key: &str,
        node_id: i64,
        size: i64,
        checkpoint: &str,
        now: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO store_checkpoints (store, note_key, node_id, size, checkpoint, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6) \
                   ON CONFLICT (store, note_key, node_id) DO UPDATE SET size = excluded.size, \
                   checkpoint = excluded.checkpoint, updated_at = excluded.updated_at \
                   WHERE excluded.size > store_checkpoints.size";
        on!(self, c => sqlx::query(sql).bind(store).bind(note_key).bind(node_id).bind(size)
            .bind(checkpoint).bind(now).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The kept checkpoints as (store, note key, note), at most `limit`, largest first within
    /// a store and key.
    pub async fn store_checkpoints(&mut self, limit: u32) -> Result<Vec<(String, String, String)>> {
        let sql = format!(
            "SELECT store, note_key, checkpoint FROM store_checkpoints \
             ORDER BY store, note_key, size DESC, node_id LIMIT {limit}"
        );
        Ok(on!(self, c => sqlx::query_as(&sql).fetch_all(&mut *c).await)?)
    }

    // ---- events ------------------------------------------------------------------------------

    /// Events for one node (organization in a collaboration) with an id above `after`,
    /// oldest first.
    pub async fn events_after(
        &mut self,
        collaboration_id: i64,
        organization_id: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventRow>> {
        let sql = format!(
            "SELECT events.id, events.kind, events.run_id, runs.task_id, tasks.image, \
             events.created_at, CASE WHEN events.kind = 'run_cancelled' \
             THEN tasks.cancelled_by_username END AS cancelled_by \
             FROM events JOIN runs ON runs.id = events.run_id \
             JOIN tasks ON tasks.id = runs.task_id \
             WHERE events.collaboration_id = $1 AND events.organization_id = $2 \
             AND events.id > $3 ORDER BY events.id LIMIT {limit}"
        );
        Ok(
            on!(self, c => sqlx::query_as(&sql).bind(collaboration_id).bind(organization_id)
            .bind(after).fetch_all(&mut *c).await)?,
        )
    }

    /// The highest event id, 0 when there is none.
    pub async fn last_event_id(&mut self) -> Result<i64> {
        let sql = "SELECT COALESCE(MAX(id), 0) FROM events";
        Ok(on!(self, c => sqlx::query_scalar(sql).fetch_one(&mut *c).await)?)
    }

    // ---- tokens ------------------------------------------------------------------------------

    pub async fn insert_token(&mut self, t: &TokenRow) -> Result<()> {
        let sql = "INSERT INTO tokens (hash, kind, user_id, node_id, run_id, family, consumed, \
                   expires_at, generation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        on!(self, c => sqlx::query(sql).bind(&t.hash).bind(t.kind.as_str()).bind(t.user_id)
            .bind(t.node_id).bind(t.run_id).bind(&t.family).bind(t.consumed).bind(t.expires_at)
            .bind(t.generation).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn token(&mut self, hash: &str) -> Result<Option<TokenRow>> {
        let sql = "SELECT hash, kind, user_id, node_id, run_id, family, consumed, expires_at, \
                   generation FROM tokens WHERE hash = $1";
        let raw: Option<RawTokenRow> =
            on!(self, c => sqlx::query_as(sql).bind(hash).fetch_optional(&mut *c).await)?;
        raw.map(TokenRow::try_from).transpose()
    }

    /// A token and, when it is a user's, the user and the collaborations of the user's
    /// organization (ascending; none without one): what every request of a user reads
    /// before anything else, in one statement.
    pub async fn token_and_user(
        &mut self,
        hash: &str,
    ) -> Result<Option<(TokenRow, Option<(UserRow, Vec<i64>)>)>> {
        // The collaborations as a JSON array of numbers (SQLite has no arrays).
        let collaborations = match self.backend() {
            Backend::Sqlite => {
                "(SELECT json_group_array(m.collaboration_id) FROM collaboration_members m \
                 WHERE m.organization_id = u.organization_id AND m.removed_at IS NULL)"
            }
            Backend::Postgres => {
                "(SELECT coalesce(json_agg(m.collaboration_id), '[]')::TEXT \
                 FROM collaboration_members m \
                 WHERE m.organization_id = u.organization_id AND m.removed_at IS NULL)"
            }
        };
        let sql = format!(
            "SELECT t.hash, t.kind, t.user_id, t.node_id, t.run_id, t.family, t.consumed, \
             t.expires_at, t.generation, u.id AS u_id, u.username AS u_username, \
             u.organization_id AS u_organization_id, u.role AS u_role, \
             u.password_hash AS u_password_hash, u.failed_logins AS u_failed_logins, \
             u.locked_until AS u_locked_until, u.created_at AS u_created_at, \
             u.disabled AS u_disabled, u.token_generation AS u_token_generation, \
             {collaborations} AS u_collaborations \
             FROM tokens t LEFT JOIN users u ON u.id = t.user_id WHERE t.hash = $1"
        );
        let raw: Option<RawTokenUserRow> =
            on!(self, c => sqlx::query_as(&sql).bind(hash).fetch_optional(&mut *c).await)?;
        let Some(r) = raw else {
            return Ok(None);
        };
        let token = TokenRow::try_from(r.token)?;
        // Every user column is NOT NULL, so all are there or none (no user).
        let raw_user = (|| {
            Some(RawUserRow {
                id: r.u_id?,
                username: r.u_username?,
                organization_id: r.u_organization_id,
                role: r.u_role?,
                password_hash: r.u_password_hash?,
                failed_logins: r.u_failed_logins?,
                locked_until: r.u_locked_until,
                created_at: r.u_created_at?,
                disabled: r.u_disabled?,
                token_generation: r.u_token_generation?,
            })
        })();
        let user = match raw_user {
            Some(raw) => Some((UserRow::try_from(raw)?, id_list(r.u_collaborations)?)),
            None => None,
        };
        Ok(Some((token, user)))
    }

    /// Mark a refresh token used; returns false if it was already used (a replay).
    pub async fn consume_token(&mut self, hash: &str) -> Result<bool> {
        let sql = "UPDATE tokens SET consumed = TRUE WHERE hash = $1 AND consumed = FALSE";
        let done = on!(self, c => sqlx::query(sql).bind(hash).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Revoke every token of a login session (access and refresh tokens share a family).
    pub async fn delete_token_family(&mut self, family: &str) -> Result<u64> {
        let sql = "DELETE FROM tokens WHERE family = $1";
        let done = on!(self, c => sqlx::query(sql).bind(family).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }

    pub async fn delete_expired_tokens(&mut self, now: i64) -> Result<u64> {
        let sql = "DELETE FROM tokens WHERE expires_at < $1";
        let done = on!(self, c => sqlx::query(sql).bind(now).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }
}

/// Ids aggregated by a query as a JSON array of numbers (null: none), ascending.
fn id_list(json: Option<String>) -> Result<Vec<i64>> {
    let Some(text) = json else {
        return Ok(Vec::new());
    };
    let mut ids: Vec<i64> =
        serde_json::from_str(&text).map_err(|_| StorageError::Corrupt(text.clone()))?;
    ids.sort_unstable();
    Ok(ids)
}

/// The payloads of the notifications that name `nodes` ([`NODES_PREFIX`]), each at most
/// [`MAX_NODES_PAYLOAD`] bytes: one for a few hundred nodes, more for more, so that a commit
/// of any size wakes only its nodes' sessions. Sorted, without duplicates.
pub fn nodes_payloads(nodes: impl Iterator<Item = (i64, i64)>) -> Vec<String> {
    let mut nodes: Vec<(i64, i64)> = nodes.collect();
    nodes.sort_unstable();
    nodes.dedup();
    let mut payloads = Vec::new();
    let mut payload = String::from(NODES_PREFIX);
    for (c, o) in nodes {
        let pair = format!("{c}:{o}");
        let first = payload.len() == NODES_PREFIX.len();
        if !first && payload.len() + 1 + pair.len() > MAX_NODES_PAYLOAD {
            payloads.push(std::mem::replace(&mut payload, String::from(NODES_PREFIX)));
        } else if !first {
            payload.push(';');
        }
        payload.push_str(&pair);
    }
    if payload.len() > NODES_PREFIX.len() {
        payloads.push(payload);
    }
    payloads
}
