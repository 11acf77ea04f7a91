//! `warden server start --config FILE`: the coordination server (crates/server). The
//! configuration reference is docs/server.md.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use warden_server::Bootstrap;
use warden_server::config::Config;

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Open (and migrate) the database, create the administrator on first start, and serve
    /// the API until interrupted (SIGINT or SIGTERM).
    ///
    /// Example: warden server start --config /etc/warden/server.toml
    Start {
        /// The server configuration (TOML); relative paths in it are relative to this file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

pub fn run(command: ServerCommand) -> anyhow::Result<()> {
    let ServerCommand::Start { config } = command;
    crate::common::init_logging("info");
    let config = Config::load(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (server, bootstrap) = warden_server::start(&config).await?;
        match bootstrap {
            Bootstrap::AlreadyDone => {}
            Bootstrap::FromFile(p) => {
                eprintln!("created user `admin` with the password in {}", p.display());
            }
            Bootstrap::WroteFile(p) => {
                eprintln!(
                    "created user `admin`; its generated password is in {} (mode 0600)",
                    p.display()
                );
            }
            Bootstrap::Generated(pw) => {
                // Shown exactly once: the database keeps only its argon2id hash, so a closed
                // stdout is an error here rather than a password silently lost.
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                writeln!(out, "admin password: {pw}")
                    .and_then(|()| out.flush())
                    .context(
                        "cannot show the generated admin password on stdout; start the server \
                         with [bootstrap] admin_password_file on a new database instead",
                    )?;
                eprintln!("created user `admin`; store the password above, it is not shown again");
            }
        }
        eprintln!("warden server listening on http://{}", server.addr);
        server.wait(shutdown()).await?;
        eprintln!("warden server stopped");
        Ok(())
    })
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
