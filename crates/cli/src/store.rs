//! `warden store start|login|register-key|log verify`: the algorithm store (crates/store) and
//! its client (warden_client::store). docs/store.md is the reference.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use warden_client::store::{self as client, StoreClient, StoreClientError};
use warden_store::Bootstrap;
use warden_store::config::Config;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Read the signing key, open (and migrate) the database, create `admin` on first start,
    /// and serve until interrupted.
    ///
    /// Example: warden store start --config /etc/warden/store.toml
    Start {
        /// The store configuration (TOML); relative paths are relative to this file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Log in to a store and save its profile (the store's checkpoint key is pinned at the
    /// first login). The password is read from --password-file or WARDEN_PASSWORD.
    ///
    /// Example: warden store login --store https://store.example.org --username rev --password-file rev.pw
    Login {
        #[arg(long, value_name = "URL")]
        store: String,
        #[arg(long)]
        username: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Print one JSON document (`store`, `url`, `username`, `note_key`, `profile`; never a
        /// token) on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Register your public key (PEM) with your account, once; reviews must verify against it.
    ///
    /// Example: warden store register-key --store https://store.example.org --public-key rev.pub
    RegisterKey {
        #[arg(long, value_name = "URL|NAME")]
        store: String,
        /// The public key file (e.g. KEY.pub from `warden keys generate`).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// Print one JSON document (`username`, `organization`, `roles`, `key_id`,
        /// `public_key_file`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The store's transparency log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Fetch the whole log, recompute the tree against the signed checkpoint, check every
    /// entry's signature, and (with --checkpoint) its consistency with the checkpoint saved
    /// there before; then save the new checkpoint there. Exit 1 when anything fails.
    ///
    /// Example: warden store log verify --store https://store.example.org --checkpoint store.checkpoint
    Verify {
        #[arg(long, value_name = "URL|NAME")]
        store: String,
        /// A checkpoint note saved by an earlier run; created when missing.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn out(text: &str) -> u8 {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{text}").and_then(|()| o.flush());
    0
}

pub fn fail(e: &StoreClientError) -> u8 {
    eprintln!("error: {e}");
    e.exit_code()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Run a store command; the exit status.
pub fn run(command: StoreCommand) -> u8 {
    match command {
        StoreCommand::Start { config } => match start(&config) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        },
        StoreCommand::Login {
            store,
            username,
            password_file,
            json,
        } => {
            let pw = match crate::common::password(
                password_file.as_deref(),
                "give the account's password",
            ) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return 2;
                }
            };
            let pw = String::from_utf8_lossy(&pw).into_owned();
            let rt = match runtime() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return 1;
                }
            };
            match rt.block_on(client::login(&store, &username, &pw)) {
                Ok((path, p)) => {
                    eprintln!(
                        "logged in to store `{}` as {}; profile {}",
                        warden_api::display::safe(&p.name),
                        p.username,
                        path.display()
                    );
                    if json {
                        out(&crate::common::json_document(&serde_json::json!({
                            "store": p.name,
                            "url": p.url,
                            "username": p.username,
                            "note_key": p.note_key,
                            "profile": path.display().to_string(),
                        })))
                    } else {
                        0
                    }
                }
                Err(e) => fail(&e),
            }
        }
        StoreCommand::RegisterKey {
            store,
            public_key,
            json,
        } => {
            let pem = match std::fs::read_to_string(&public_key) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!(
                        "error: {}: cannot read the public key: {e}",
                        public_key.display()
                    );
                    return 2;
                }
            };
            let r = runtime().map_err(|e| StoreClientError::Unreachable(e.to_string()));
            let r = r.and_then(|rt| {
                rt.block_on(async {
                    let (c, _) = StoreClient::from_store_arg(&store)?;
                    c.put::<_, warden_api::store::Account>(
                        "/api/me/key",
                        &warden_api::store::RegisterKey { public_key: pem },
                        "registering the key",
                    )
                    .await
                })
            });
            match r {
                Ok(a) if json => out(&crate::common::json_document(&serde_json::json!({
                    "username": a.username,
                    "organization": a.organization,
                    "roles": a.roles,
                    "key_id": a.key_id,
                    "public_key_file": public_key.display().to_string(),
                }))),
                Ok(a) => out(&format!(
                    "registered key {} for {}",
                    a.key_id.as_deref().unwrap_or("?"),
                    warden_api::display::safe(&a.username)
                )),
                Err(e) => fail(&e),
            }
        }
        StoreCommand::Log {
            command:
                LogCommand::Verify {
                    store,
                    checkpoint,
                    json,
                },
        } => log_verify(&store, checkpoint.as_deref(), json),
    }
}

fn log_verify(store: &str, checkpoint: Option<&Path>, json: bool) -> u8 {
    let saved = match checkpoint {
        Some(p) if p.exists() => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!(
                    "error: {}: cannot read the saved checkpoint: {e}",
                    p.display()
                );
                return 2;
            }
        },
        _ => None,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 1;
        }
    };
    let r = rt.block_on(async {
        let (c, profile) = StoreClient::from_store_arg(store)?;
        client::verify_log(
            &c,
            profile.as_ref().map(|p| p.note_key.as_str()),
            saved.as_deref(),
        )
        .await
    });
    match r {
        Ok((report, note)) => {
            if let Some(p) = checkpoint {
                let tmp = p.with_extension("tmp");
                if let Err(e) = std::fs::write(&tmp, &note).and_then(|()| std::fs::rename(&tmp, p))
                {
                    eprintln!("error: {}: cannot save the checkpoint: {e}", p.display());
                    return 1;
                }
            }
            if json {
                out(&serde_json::to_string_pretty(&report).unwrap_or_default())
            } else {
                let kinds: Vec<String> = report
                    .by_kind
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect();
                let cons = match report.consistent_with {
                    Some(s) => format!("; consistent with the saved checkpoint of size {s}"),
                    None => String::new(),
                };
                out(&format!(
                    "log verified: {} entries ({}), root {}; every entry's signature checked{cons}",
                    report.size,
                    kinds.join(", "),
                    report.root
                ))
            }
        }
        Err(e) => fail(&e),
    }
}

fn start(config: &Path) -> anyhow::Result<()> {
    crate::common::init_logging("info");
    let config = Config::load(config)?;
    runtime()?.block_on(async move {
        let (store, bootstrap) = warden_store::start(&config).await?;
        match bootstrap {
            Bootstrap::AlreadyDone => {}
            Bootstrap::FromFile(p) => {
                eprintln!("created account `admin` with the password in {}", p.display());
            }
            Bootstrap::WroteFile(p) => eprintln!(
                "created account `admin`; its generated password is in {} (mode 0600)",
                p.display()
            ),
            Bootstrap::Generated(pw) => {
                use std::io::Write as _;
                let mut o = std::io::stdout().lock();
                writeln!(o, "admin password: {pw}")
                    .and_then(|()| o.flush())
                    .context("cannot show the generated admin password on stdout; set [bootstrap] admin_password_file on a new database instead")?;
                eprintln!("created account `admin`; store the password above, it is not shown again");
            }
        }
        eprintln!("warden store listening on http://{}", store.addr);
        store.wait(shutdown()).await?;
        eprintln!("warden store stopped");
        Ok(())
    })
}

async fn shutdown() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
