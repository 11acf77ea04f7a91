//! Storage: one enum over SQLite and PostgreSQL, each with its own migrations, as the server's.
//! Every operation runs inside a [`Tx`] the service opens and commits, so a decision and its log
//! leaf are written together or not at all. The SQL text is shared (`$N` placeholders,
//! `RETURNING`); SQLite runs in WAL mode with `synchronous = FULL` by default and one writer.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, Postgres, Sqlite, Transaction};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Advisory lock that orders log appends on PostgreSQL (SQLite has one writer).
const LOG_LOCK: i64 = 0x5741_5244_4c4f; // "WARDLO"

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database url `{0}` is not supported; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory {path}: {source}; check permissions")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a row with the same unique value already exists")]
    Conflict,
    #[error("a referenced row does not exist")]
    MissingReference,
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

/// How hard SQLite makes each commit durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `synchronous = FULL`: the WAL is fsynced at every commit.
    #[default]
    Full,
    /// `synchronous = NORMAL`: fsync at checkpoints only.
    Normal,
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub sqlite_durability: Durability,
    /// PostgreSQL only: a schema to create and use (tests give each run its own).
    pub pg_schema: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 16,
            sqlite_durability: Durability::Full,
            pg_schema: None,
        }
    }
}

/// Path of the SQLite file named by `url`, relative paths against `base`.
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

#[derive(Debug, Clone)]
pub enum Db {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

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

impl Db {
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
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                // Password and token hashes live here: owner only.
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
            SQLITE_MIGRATOR.run(&write).await?;
            let read = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .connect_with(opts.read_only(true))
                .await?;
            Ok(Db::Sqlite { write, read })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts = PgConnectOptions::from_str(url)?;
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

    pub async fn read(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite { read, .. } => Tx::Sqlite(read.begin().await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// A transaction that may write; on PostgreSQL it takes the log's advisory lock, so log
    /// appends are ordered across connections.
    pub async fn write(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite { write, .. } => Tx::Sqlite(write.begin().await?),
            Db::Postgres(p) => {
                let mut t = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(LOG_LOCK)
                    .execute(&mut *t)
                    .await?;
                Tx::Postgres(t)
            }
        })
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

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AccountRow {
    pub id: i64,
    pub username: String,
    pub organization_id: i64,
    pub organization: String,
    pub roles: String,
    pub password_hash: String,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub public_key: Option<String>,
    pub key_id: Option<String>,
}

const ACCOUNT_COLUMNS: &str = "accounts.id, accounts.username, accounts.organization_id, \
    organizations.name AS organization, accounts.roles, accounts.password_hash, \
    accounts.failed_logins, accounts.locked_until, accounts.public_key, accounts.key_id";
const ACCOUNT_FROM: &str =
    "accounts JOIN organizations ON organizations.id = accounts.organization_id";

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TokenRow {
    pub account_id: i64,
    pub kind: String,
    pub family: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AlgorithmRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub source: String,
    pub organization_id: i64,
    pub organization: String,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct VersionRow {
    pub id: i64,
    pub algorithm_id: i64,
    pub algorithm: String,
    pub source: String,
    pub organization_id: i64,
    pub organization: String,
    pub version: String,
    pub repository: String,
    pub digest: String,
    pub tag: Option<String>,
    pub commit_sha: String,
    pub functions: String,
    pub state: String,
    pub submitter_id: i64,
    pub submitter: String,
    pub reason: Option<String>,
    pub leaf_index: i64,
}

const VERSION_COLUMNS: &str = "versions.id, versions.algorithm_id, algorithms.name AS algorithm, \
    algorithms.source, algorithms.organization_id, organizations.name AS organization, \
    versions.version, versions.repository, versions.digest, versions.tag, versions.commit_sha, \
    versions.functions, versions.state, versions.submitter_id, accounts.username AS submitter, \
    versions.reason, versions.leaf_index";
const VERSION_FROM: &str = "versions JOIN algorithms ON algorithms.id = versions.algorithm_id \
    JOIN organizations ON organizations.id = algorithms.organization_id \
    JOIN accounts ON accounts.id = versions.submitter_id";

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ReviewRow {
    pub version_id: i64,
    pub reviewer_id: i64,
    pub reviewer: String,
    pub organization_id: i64,
    pub organization: String,
    pub decision: String,
    pub comment: Option<String>,
    pub leaf_index: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct LeafRow {
    pub idx: i64,
    pub kind: String,
    pub version_id: i64,
    pub leaf: Vec<u8>,
    pub leaf_hash: Vec<u8>,
}

/// A new log leaf.
#[derive(Debug, Clone)]
pub struct NewLeaf<'a> {
    pub idx: i64,
    pub kind: &'a str,
    pub version_id: i64,
    pub digest: &'a str,
    pub leaf: &'a [u8],
    pub leaf_hash: &'a [u8],
    pub now: i64,
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Opens the savepoint one decision of a group commit runs in.
    pub async fn savepoint(&mut self) -> Result<()> {
        on!(self, c => sqlx::query("SAVEPOINT decision").execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Keeps what the decision wrote (it is committed with the batch).
    pub async fn release_savepoint(&mut self) -> Result<()> {
        on!(self, c => sqlx::query("RELEASE SAVEPOINT decision").execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Undoes what the decision wrote, keeping the batch's earlier decisions.
    pub async fn rollback_to_savepoint(&mut self) -> Result<()> {
        on!(self, c => sqlx::query("ROLLBACK TO SAVEPOINT decision").execute(&mut *c).await.map(|r| r.rows_affected()))?;
        on!(self, c => sqlx::query("RELEASE SAVEPOINT decision").execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn ping(&mut self) -> Result<()> {
        on!(self, c => sqlx::query("SELECT 1").execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // --- organizations and accounts ---

    pub async fn create_organization(&mut self, name: &str, now: i64) -> Result<i64> {
        let sql = "INSERT INTO organizations (name, created_at) VALUES ($1, $2) RETURNING id";
        Ok(
            on!(self, c => sqlx::query_scalar::<_, i64>(sql).bind(name).bind(now).fetch_one(c).await)?,
        )
    }

    pub async fn organization_id(&mut self, name: &str) -> Result<Option<i64>> {
        let sql = "SELECT id FROM organizations WHERE name = $1";
        Ok(on!(self, c => sqlx::query_scalar::<_, i64>(sql).bind(name).fetch_optional(c).await)?)
    }

    pub async fn organizations(&mut self) -> Result<Vec<(i64, String)>> {
        let sql = "SELECT id, name FROM organizations ORDER BY id";
        Ok(on!(self, c => sqlx::query_as::<_, (i64, String)>(sql).fetch_all(c).await)?)
    }

    pub async fn account_count(&mut self) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM accounts";
        Ok(on!(self, c => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await)?)
    }

    pub async fn create_account(
        &mut self,
        username: &str,
        organization_id: i64,
        roles: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<i64> {
        let sql = "INSERT INTO accounts (username, organization_id, roles, password_hash, created_at) \
                   VALUES ($1, $2, $3, $4, $5) RETURNING id";
        Ok(on!(self, c => sqlx::query_scalar::<_, i64>(sql)
            .bind(username).bind(organization_id).bind(roles).bind(password_hash).bind(now)
            .fetch_one(c).await)?)
    }

    pub async fn account_by_name(&mut self, username: &str) -> Result<Option<AccountRow>> {
        let sql =
            format!("SELECT {ACCOUNT_COLUMNS} FROM {ACCOUNT_FROM} WHERE accounts.username = $1");
        Ok(
            on!(self, c => sqlx::query_as::<_, AccountRow>(&sql).bind(username).fetch_optional(c).await)?,
        )
    }

    pub async fn account(&mut self, id: i64) -> Result<Option<AccountRow>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM {ACCOUNT_FROM} WHERE accounts.id = $1");
        Ok(on!(self, c => sqlx::query_as::<_, AccountRow>(&sql).bind(id).fetch_optional(c).await)?)
    }

    pub async fn accounts(&mut self) -> Result<Vec<AccountRow>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM {ACCOUNT_FROM} ORDER BY accounts.id");
        Ok(on!(self, c => sqlx::query_as::<_, AccountRow>(&sql).fetch_all(c).await)?)
    }

    /// Register a key once: refused (0 rows) when the account already has one.
    pub async fn set_key(&mut self, id: i64, pem: &str, key_id: &str) -> Result<bool> {
        let sql =
            "UPDATE accounts SET public_key = $1, key_id = $2 WHERE id = $3 AND public_key IS NULL";
        let n = on!(self, c => sqlx::query(sql).bind(pem).bind(key_id).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Count one failed login; at `threshold` the account is locked until `lock_until` and the
    /// counter restarts. Atomic.
    pub async fn login_failed(&mut self, id: i64, threshold: i64, lock_until: i64) -> Result<()> {
        let sql = "UPDATE accounts SET \
                   locked_until = CASE WHEN failed_logins + 1 >= $1 THEN $2 ELSE locked_until END, \
                   failed_logins = CASE WHEN failed_logins + 1 >= $1 THEN 0 ELSE failed_logins + 1 END \
                   WHERE id = $3";
        on!(self, c => sqlx::query(sql).bind(threshold).bind(lock_until).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn login_ok(&mut self, id: i64) -> Result<()> {
        let sql = "UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = $1";
        on!(self, c => sqlx::query(sql).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // --- tokens ---

    pub async fn insert_token(
        &mut self,
        hash: &str,
        account_id: i64,
        kind: &str,
        family: &str,
        expires_at: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO tokens (hash, account_id, kind, family, expires_at) VALUES ($1, $2, $3, $4, $5)";
        on!(self, c => sqlx::query(sql).bind(hash).bind(account_id).bind(kind).bind(family).bind(expires_at).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn token(&mut self, hash: &str) -> Result<Option<TokenRow>> {
        let sql = "SELECT account_id, kind, family, expires_at FROM tokens WHERE hash = $1";
        Ok(on!(self, c => sqlx::query_as::<_, TokenRow>(sql).bind(hash).fetch_optional(c).await)?)
    }

    /// Delete one token; whether it existed (a refresh token is spent once).
    pub async fn delete_token(&mut self, hash: &str) -> Result<bool> {
        let sql = "DELETE FROM tokens WHERE hash = $1";
        Ok(
            on!(self, c => sqlx::query(sql).bind(hash).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    pub async fn delete_family(&mut self, family: &str) -> Result<()> {
        let sql = "DELETE FROM tokens WHERE family = $1";
        on!(self, c => sqlx::query(sql).bind(family).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn sweep_tokens(&mut self, now: i64) -> Result<u64> {
        let sql = "DELETE FROM tokens WHERE expires_at <= $1";
        Ok(on!(self, c => sqlx::query(sql).bind(now).execute(c).await.map(|r| r.rows_affected()))?)
    }

    // --- algorithms and versions ---

    pub async fn algorithm(&mut self, name: &str) -> Result<Option<AlgorithmRow>> {
        let sql = "SELECT algorithms.id, algorithms.name, algorithms.description, algorithms.source, \
                   algorithms.organization_id, organizations.name AS organization FROM algorithms \
                   JOIN organizations ON organizations.id = algorithms.organization_id WHERE algorithms.name = $1";
        Ok(
            on!(self, c => sqlx::query_as::<_, AlgorithmRow>(sql).bind(name).fetch_optional(c).await)?,
        )
    }

    pub async fn algorithms(&mut self) -> Result<Vec<AlgorithmRow>> {
        let sql = "SELECT algorithms.id, algorithms.name, algorithms.description, algorithms.source, \
                   algorithms.organization_id, organizations.name AS organization FROM algorithms \
                   JOIN organizations ON organizations.id = algorithms.organization_id ORDER BY algorithms.name";
        Ok(on!(self, c => sqlx::query_as::<_, AlgorithmRow>(sql).fetch_all(c).await)?)
    }

    pub async fn create_algorithm(
        &mut self,
        name: &str,
        description: &str,
        source: &str,
        organization_id: i64,
        now: i64,
    ) -> Result<i64> {
        let sql = "INSERT INTO algorithms (name, description, source, organization_id, created_at) \
                   VALUES ($1, $2, $3, $4, $5) RETURNING id";
        Ok(on!(self, c => sqlx::query_scalar::<_, i64>(sql)
            .bind(name).bind(description).bind(source).bind(organization_id).bind(now)
            .fetch_one(c).await)?)
    }

    pub async fn version_count(&mut self, algorithm_id: i64) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM versions WHERE algorithm_id = $1";
        Ok(on!(self, c => sqlx::query_scalar::<_, i64>(sql).bind(algorithm_id).fetch_one(c).await)?)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_version(
        &mut self,
        algorithm_id: i64,
        version: &str,
        repository: &str,
        digest: &str,
        tag: Option<&str>,
        commit: &str,
        functions: &str,
        submitter_id: i64,
        leaf_index: i64,
        now: i64,
    ) -> Result<i64> {
        let sql = "INSERT INTO versions (algorithm_id, version, repository, digest, tag, commit_sha, \
                   functions, state, submitter_id, leaf_index, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, 'submitted', $8, $9, $10) RETURNING id";
        Ok(on!(self, c => sqlx::query_scalar::<_, i64>(sql)
            .bind(algorithm_id).bind(version).bind(repository).bind(digest).bind(tag)
            .bind(commit).bind(functions).bind(submitter_id).bind(leaf_index).bind(now)
            .fetch_one(c).await)?)
    }

    pub async fn version(&mut self, id: i64) -> Result<Option<VersionRow>> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM {VERSION_FROM} WHERE versions.id = $1");
        Ok(on!(self, c => sqlx::query_as::<_, VersionRow>(&sql).bind(id).fetch_optional(c).await)?)
    }

    /// Versions, newest first, optionally of one algorithm, in one state, or assigned to one
    /// reviewer.
    pub async fn versions(
        &mut self,
        algorithm: Option<&str>,
        state: Option<&str>,
        reviewer: Option<i64>,
    ) -> Result<Vec<VersionRow>> {
        let mut sql = format!("SELECT {VERSION_COLUMNS} FROM {VERSION_FROM} WHERE 1 = 1");
        let mut n = 0;
        if algorithm.is_some() {
            n += 1;
            sql.push_str(&format!(" AND algorithms.name = ${n}"));
        }
        if state.is_some() {
            n += 1;
            sql.push_str(&format!(" AND versions.state = ${n}"));
        }
        if reviewer.is_some() {
            n += 1;
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM assignments WHERE assignments.version_id = versions.id AND assignments.reviewer_id = ${n})"
            ));
        }
        sql.push_str(" ORDER BY versions.id DESC LIMIT 1000");
        Ok(on!(self, c => {
            let mut q = sqlx::query_as::<_, VersionRow>(&sql);
            if let Some(a) = algorithm { q = q.bind(a); }
            if let Some(s) = state { q = q.bind(s); }
            if let Some(r) = reviewer { q = q.bind(r); }
            q.fetch_all(c).await
        })?)
    }

    pub async fn set_state(&mut self, id: i64, state: &str, reason: Option<&str>) -> Result<()> {
        let sql = "UPDATE versions SET state = $1, reason = COALESCE($2, reason) WHERE id = $3";
        on!(self, c => sqlx::query(sql).bind(state).bind(reason).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Approved versions of an algorithm other than `except`.
    pub async fn approved_versions(&mut self, algorithm_id: i64, except: i64) -> Result<Vec<i64>> {
        let sql = "SELECT id FROM versions WHERE algorithm_id = $1 AND id <> $2 AND state = 'approved' ORDER BY id";
        Ok(
            on!(self, c => sqlx::query_scalar::<_, i64>(sql).bind(algorithm_id).bind(except).fetch_all(c).await)?,
        )
    }

    pub async fn assign(&mut self, version_id: i64, reviewer_id: i64) -> Result<()> {
        let sql = "INSERT INTO assignments (version_id, reviewer_id) VALUES ($1, $2)";
        on!(self, c => sqlx::query(sql).bind(version_id).bind(reviewer_id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn assigned(&mut self, version_id: i64) -> Result<Vec<(i64, String)>> {
        let sql = "SELECT accounts.id, accounts.username FROM assignments JOIN accounts ON \
                   accounts.id = assignments.reviewer_id WHERE assignments.version_id = $1 ORDER BY accounts.id";
        Ok(
            on!(self, c => sqlx::query_as::<_, (i64, String)>(sql).bind(version_id).fetch_all(c).await)?,
        )
    }

    pub async fn add_review(
        &mut self,
        version_id: i64,
        reviewer_id: i64,
        decision: &str,
        comment: Option<&str>,
        leaf_index: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO reviews (version_id, reviewer_id, decision, comment, leaf_index) VALUES ($1, $2, $3, $4, $5)";
        on!(self, c => sqlx::query(sql).bind(version_id).bind(reviewer_id).bind(decision).bind(comment).bind(leaf_index).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn reviews(&mut self, version_id: i64) -> Result<Vec<ReviewRow>> {
        let sql = "SELECT reviews.version_id, reviews.reviewer_id, accounts.username AS reviewer, \
                   accounts.organization_id, organizations.name AS organization, reviews.decision, \
                   reviews.comment, reviews.leaf_index FROM reviews \
                   JOIN accounts ON accounts.id = reviews.reviewer_id \
                   JOIN organizations ON organizations.id = accounts.organization_id \
                   WHERE reviews.version_id = $1 ORDER BY reviews.leaf_index";
        Ok(on!(self, c => sqlx::query_as::<_, ReviewRow>(sql).bind(version_id).fetch_all(c).await)?)
    }

    // --- the log ---

    pub async fn append_leaf(&mut self, l: &NewLeaf<'_>) -> Result<()> {
        let sql = "INSERT INTO log_entries (idx, kind, version_id, digest, leaf, leaf_hash, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        on!(self, c => sqlx::query(sql).bind(l.idx).bind(l.kind).bind(l.version_id).bind(l.digest)
            .bind(l.leaf).bind(l.leaf_hash).bind(l.now).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The number of leaves (the next index).
    pub async fn log_size(&mut self) -> Result<i64> {
        let sql = "SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries";
        Ok(on!(self, c => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await)?)
    }

    /// Leaves with `start <= idx < end`, in order.
    pub async fn leaves(&mut self, start: i64, end: i64) -> Result<Vec<LeafRow>> {
        let sql = "SELECT idx, kind, version_id, leaf, leaf_hash FROM log_entries \
                   WHERE idx >= $1 AND idx < $2 ORDER BY idx";
        Ok(
            on!(self, c => sqlx::query_as::<_, LeafRow>(sql).bind(start).bind(end).fetch_all(c).await)?,
        )
    }

    /// Every leaf hash in order, with its index (to rebuild the tree at start).
    pub async fn leaf_hashes(&mut self) -> Result<Vec<(i64, Vec<u8>, Vec<u8>)>> {
        let sql = "SELECT idx, leaf, leaf_hash FROM log_entries ORDER BY idx";
        Ok(on!(self, c => sqlx::query_as::<_, (i64, Vec<u8>, Vec<u8>)>(sql).fetch_all(c).await)?)
    }

    /// Approval, rejection and revocation leaves naming `digest`.
    pub async fn evidence(&mut self, digest: &str) -> Result<Vec<LeafRow>> {
        let sql = "SELECT idx, kind, version_id, leaf, leaf_hash FROM log_entries WHERE digest = $1 \
                   AND kind IN ('approval', 'rejection', 'revocation') ORDER BY idx";
        Ok(on!(self, c => sqlx::query_as::<_, LeafRow>(sql).bind(digest).fetch_all(c).await)?)
    }
}
