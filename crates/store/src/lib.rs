//! The Warden algorithm store (docs/store.md).
//!
//! Developers submit versions (an image by digest, its source commit and functions), reviewers
//! of other organizations approve or reject them with DSSE envelopes they sign on their own
//! machines, and every submission, approval, rejection, revocation and reinstatement is a leaf
//! of an RFC 6962 Merkle log whose checkpoints the store signs. Layers: [`http`] (parse) ->
//! [`service`] (transaction, who asks, [`domain::permit`], envelope checks, log append) ->
//! [`storage`] (SQLite or PostgreSQL); [`log`] holds the tree.

#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod http;
pub mod log;
pub mod service;
pub mod storage;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warden_trust::SigningKey;

use crate::config::Config;
use crate::service::{RegistryResolver, Resolver, Service, ServiceError};
use crate::storage::{ConnectOptions, Db, StorageError};

const TOKEN_SWEEP_EVERY: Duration = Duration::from_secs(600);
/// Largest key or password file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("cannot write the admin password file {path}: {source}")]
    WritePassword {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}; is another process using the port?")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the registry client: {0}")]
    Registry(String),
    #[error("the store stopped with an error: {0}")]
    Serve(std::io::Error),
}

fn read_small(what: &'static str, path: &Path) -> Result<String, StoreError> {
    let err = |source| StoreError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.len() > MAX_SECRET_FILE {
        return Err(StoreError::Key {
            path: path.to_path_buf(),
            message: format!(
                "{} bytes is too large for {what}; is it the right file?",
                meta.len()
            ),
        });
    }
    std::fs::read_to_string(path).map_err(err)
}

/// Read the store's signing key: an encrypted key file and its password file (first line).
pub fn load_signing_key(key: &Path, password_file: &Path) -> Result<SigningKey, StoreError> {
    let pem = read_small("the store's signing key", key)?;
    let pw = read_small("the signing key's password file", password_file)?;
    let pw = pw.lines().next().unwrap_or_default();
    let k = SigningKey::from_encrypted_pem(&pem, pw.as_bytes()).map_err(|e| StoreError::Key {
        path: key.to_path_buf(),
        message: format!(
            "{e}; the signing key is an encrypted key file (`warden keys generate --kind ed25519 --out store.key`) and password_file holds its password"
        ),
    })?;
    if !matches!(k, SigningKey::Ed25519(_)) {
        return Err(StoreError::Key {
            path: key.to_path_buf(),
            message: "the store's signing key must be Ed25519 (checkpoints are C2SP notes with Ed25519 signatures); make one with `warden keys generate --kind ed25519 --out store.key`".into(),
        });
    }
    Ok(k)
}

/// What the first start did about the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    AlreadyDone,
    FromFile(PathBuf),
    WroteFile(PathBuf),
    Generated(String),
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

/// Create `admin` on an empty database.
pub async fn bootstrap(service: &Service, file: Option<&Path>) -> Result<Bootstrap, StoreError> {
    if service.has_accounts().await? {
        return Ok(Bootstrap::AlreadyDone);
    }
    let (pw, outcome) = match file {
        Some(p) if p.exists() => {
            let text = read_small("the admin password file", p)?;
            (
                text.trim_end_matches(['\n', '\r']).to_owned(),
                Bootstrap::FromFile(p.to_path_buf()),
            )
        }
        Some(p) => {
            let pw = warden_accounts::token::random_secret();
            write_secret(p, &pw).map_err(|source| StoreError::WritePassword {
                path: p.to_path_buf(),
                source,
            })?;
            (pw, Bootstrap::WroteFile(p.to_path_buf()))
        }
        None => {
            let pw = warden_accounts::token::random_secret();
            (pw.clone(), Bootstrap::Generated(pw))
        }
    };
    if service.bootstrap_admin(&pw).await? {
        Ok(outcome)
    } else {
        Ok(Bootstrap::AlreadyDone)
    }
}

/// A store listening in this process.
#[derive(Debug)]
pub struct RunningStore {
    pub addr: SocketAddr,
    pub service: Service,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), std::io::Error>>,
}

impl RunningStore {
    pub async fn stop(mut self) -> Result<(), StoreError> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        let r = (&mut self.task).await;
        self.service.db().close().await;
        match r {
            Ok(r) => r.map_err(StoreError::Serve),
            Err(e) => Err(StoreError::Serve(std::io::Error::other(e))),
        }
    }

    pub async fn wait(mut self, shutdown: impl Future<Output = ()>) -> Result<(), StoreError> {
        tokio::select! {
            _ = shutdown => self.stop().await,
            r = &mut self.task => match r {
                Ok(r) => r.map_err(StoreError::Serve),
                Err(e) => Err(StoreError::Serve(std::io::Error::other(e))),
            }
        }
    }
}

/// Serve `service` on `listen`.
pub async fn serve(
    listen: SocketAddr,
    service: Service,
    max_body: usize,
) -> Result<RunningStore, StoreError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StoreError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StoreError::Bind {
        addr: listen,
        source,
    })?;
    let app = http::router(service.clone(), max_body);
    let (tx, rx) = oneshot::channel::<()>();
    let sweeper = service.clone();
    tokio::spawn(async move {
        let mut t = tokio::time::interval(TOKEN_SWEEP_EVERY);
        loop {
            t.tick().await;
            if let Err(e) = sweeper.sweep_tokens().await {
                tracing::debug!(error = %e, "token sweep failed");
            }
        }
    });
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = rx.await;
        })
        .await
    });
    tracing::info!(%addr, store = service.name(), log_size = service.log_size(), "warden store listening");
    Ok(RunningStore {
        addr,
        service,
        shutdown: Some(tx),
        task,
    })
}

/// Open the database and build the service (no listening).
pub async fn open(
    config: &Config,
    options: &ConnectOptions,
    resolver: Option<Box<dyn Resolver>>,
) -> Result<Service, StoreError> {
    // The key first: a bad key file refuses the start before the database is touched.
    let key = load_signing_key(
        &config.resolve(&config.store.signing_key),
        &config.resolve(&config.store.password_file),
    )?;
    let resolver = match resolver {
        Some(r) => r,
        None => Box::new(RegistryResolver(
            warden_registry::Client::new(warden_registry::ClientOptions {
                credentials: warden_registry::DockerConfig::load_default().unwrap_or_default(),
                ..warden_registry::ClientOptions::default()
            })
            .map_err(|e| StoreError::Registry(e.to_string()))?,
        )),
    };
    let db = Db::connect(&config.database.url, &config.base_dir, options).await?;
    Ok(Service::new(
        db,
        &config.store.name,
        key,
        config.review.clone(),
        config.auth.clone(),
        resolver,
    )
    .await?)
}

/// Everything `warden store start` does: key, database, bootstrap, listen.
pub async fn start(config: &Config) -> Result<(RunningStore, Bootstrap), StoreError> {
    let options = ConnectOptions {
        max_connections: config.database.max_connections,
        sqlite_durability: config.database.sqlite_durability,
        pg_schema: None,
    };
    let service = open(config, &options, None).await?;
    let pw = config
        .bootstrap
        .admin_password_file
        .as_deref()
        .map(|p| config.resolve(p));
    let outcome = bootstrap(&service, pw.as_deref()).await?;
    let store = serve(
        config.http.listen,
        service,
        config.limits.max_body_bytes as usize,
    )
    .await?;
    Ok((store, outcome))
}
