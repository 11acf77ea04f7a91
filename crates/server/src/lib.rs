//! The Warden coordination server.
//!
//! Researchers and nodes talk to it; it routes work and stores ciphertext, and it is never
//! trusted with plaintext or with admission decisions. Layers: [`http`] (axum handlers that
//! only parse) -> [`service`] (opens the transaction, resolves who asks, checks
//! [`permissions`]) -> [`storage`] (SQLite or PostgreSQL).

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod events;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod permissions;
pub mod service;
pub mod storage;
pub mod throttle;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{AuthConfig, Config, LimitsConfig};
use crate::metrics::MetricsAccess;
use crate::service::{Service, ServiceError};
use crate::storage::{ConnectOptions, Db, StorageError};

/// How often expired tokens are removed.
const TOKEN_SWEEP_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot listen on {addr}: {source}; is another process using the port?")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the admin password file {path}: {source}")]
    ReadPassword {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the admin password file {path}: {source}")]
    WritePassword {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    MetricsToken(#[from] metrics::TokenFileError),
    #[error("the server stopped with an error: {0}")]
    Serve(std::io::Error),
}

/// What the first start did about the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Users already exist; nothing was done.
    AlreadyDone,
    /// `admin` was created with the password read from this file.
    FromFile(PathBuf),
    /// `admin` was created with a generated password written to this file (mode 0600).
    WroteFile(PathBuf),
    /// `admin` was created with this generated password, to be shown once.
    Generated(String),
}

/// Create the administrator on an empty database.
pub async fn bootstrap(
    service: &Service,
    password_file: Option<&Path>,
) -> Result<Bootstrap, ServerError> {
    if service.has_users().await? {
        return Ok(Bootstrap::AlreadyDone);
    }
    let (password, outcome) = match password_file {
        Some(path) if path.exists() => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ServerError::ReadPassword {
                    path: path.to_path_buf(),
                    source,
                })?;
            let pw = text.trim_end_matches(['\n', '\r']).to_owned();
            (pw, Bootstrap::FromFile(path.to_path_buf()))
        }
        Some(path) => {
            let pw = auth::random_secret();
            write_secret(path, &pw).map_err(|source| ServerError::WritePassword {
                path: path.to_path_buf(),
                source,
            })?;
            (pw, Bootstrap::WroteFile(path.to_path_buf()))
        }
        None => {
            let pw = auth::random_secret();
            (pw.clone(), Bootstrap::Generated(pw))
        }
    };
    if service.bootstrap_admin(&password).await? {
        Ok(outcome)
    } else {
        Ok(Bootstrap::AlreadyDone)
    }
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{secret}")?;
    f.sync_all()
}

/// A server listening in this process.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub service: Service,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), std::io::Error>>,
}

impl RunningServer {
    /// Stop accepting, finish in-flight requests, close the database.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        let r = (&mut self.task).await;
        self.service.db().close().await;
        match r {
            Ok(r) => r.map_err(ServerError::Serve),
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    }

    /// Serve until the task ends (for the CLI: until `shutdown` resolves).
    pub async fn wait(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        tokio::select! {
            _ = shutdown => self.stop().await,
            r = &mut self.task => {
                match r {
                    Ok(r) => r.map_err(ServerError::Serve),
                    Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
                }
            }
        }
    }
}

/// Start serving `service` on `listen` (port 0 picks a free port), `/metrics` open to anyone.
pub async fn serve(listen: SocketAddr, service: Service) -> Result<RunningServer, ServerError> {
    serve_with(listen, service, MetricsAccess::Open).await
}

/// Raise this process's soft limit on open files (`RLIMIT_NOFILE`) to its hard limit, since
/// every connected node holds a socket; returns the (soft, hard) limits now in force (`None`
/// for unlimited). Raising the hard limit is the operator's part (docs/server.md).
pub fn raise_open_file_limit() -> (Option<u64>, Option<u64>) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        let wanted = rustix::process::Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => l = getrlimit(Resource::Nofile),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
    (l.current, l.maximum)
}

/// Start serving `service` on `listen`, `/metrics` guarded by `metrics`.
pub async fn serve_with(
    listen: SocketAddr,
    service: Service,
    metrics: MetricsAccess,
) -> Result<RunningServer, ServerError> {
    let (soft, hard) = raise_open_file_limit();
    tracing::info!(
        open_files = soft,
        hard_limit = hard,
        "open-file limit (each connected node holds one)"
    );
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: listen,
        source,
    })?;
    if metrics == MetricsAccess::Open {
        tracing::warn!(
            "GET /metrics is open to anyone who can reach the server; set [metrics] token_file to require a bearer token"
        );
    }
    let app = http::router(service.clone(), metrics);
    let (tx, rx) = oneshot::channel::<()>();
    let sweeper = service.clone();
    tokio::spawn(async move {
        let mut t = tokio::time::interval(TOKEN_SWEEP_EVERY);
        loop {
            t.tick().await;
            if sweeper.db().pg_pool().is_some_and(|p| p.is_closed()) {
                return;
            }
            if let Err(e) = sweeper.sweep_tokens().await {
                tracing::debug!(error = %e, "token sweep failed");
            }
        }
    });
    let task = tokio::spawn(async move {
        // The peer address feeds the per-address login limits.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = rx.await;
        })
        .await
    });
    tracing::info!(%addr, "warden server listening");
    Ok(RunningServer {
        addr,
        service,
        shutdown: Some(tx),
        task,
    })
}

/// Connect the database, run migrations and build the service.
pub async fn open(
    url: &str,
    base: &Path,
    options: &ConnectOptions,
    auth: AuthConfig,
    limits: LimitsConfig,
) -> Result<Service, ServerError> {
    let db = Db::connect(url, base, options).await?;
    Ok(Service::new(db, auth, limits).await?)
}

/// Everything `warden server start` does before serving: open, bootstrap, listen.
pub async fn start(config: &Config) -> Result<(RunningServer, Bootstrap), ServerError> {
    // Before the database: a bad token file is refused without touching anything.
    let metrics = match &config.metrics.token_file {
        Some(p) => MetricsAccess::from_file(&config.resolve(p))?,
        None => MetricsAccess::Open,
    };
    let options = ConnectOptions {
        max_connections: config.database.max_connections,
        sqlite_durability: config.database.sqlite_durability,
        pg_schema: None,
        ..ConnectOptions::default()
    };
    let service = open(
        &config.database.url,
        &config.base_dir,
        &options,
        config.auth.clone(),
        config.limits.clone(),
    )
    .await?;
    let pw_file = config
        .bootstrap
        .admin_password_file
        .as_deref()
        .map(|p| config.resolve(p));
    let outcome = bootstrap(&service, pw_file.as_deref()).await?;
    let server = serve_with(config.http.listen, service, metrics).await?;
    Ok((server, outcome))
}
