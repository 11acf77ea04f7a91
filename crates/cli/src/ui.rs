//! `warden ui`: the local web console (`warden-console`, docs/ui.md). It serves on loopback
//! only, prints the address to open (with this launch's token, exchanged for a session cookie
//! at once) and, with `--open`, opens it. With a profile it is the researcher's console (the
//! profile's session, as `warden task`); with `--node-socket` or `--node-config` the data
//! owner's (the node's local socket, as `warden node pending|release|...`); with both, both.
//!
//! Exit status: 0 stopped (SIGINT or SIGTERM), 2 bad input.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use warden_client::{Profile, RecordStore, Researcher};
use warden_console::{Console, ResearcherSide, Sources};
use warden_node::local::LocalClient;

use crate::common::Outcome;
use crate::login::{self, ProfileChoice};

#[derive(Debug, Args)]
pub struct UiArgs {
    #[command(flatten)]
    pub profile: ProfileChoice,
    /// The node's local socket, for the data owner's pages (the airlock, approvals).
    #[arg(long, value_name = "PATH", conflicts_with = "node_config")]
    pub node_socket: Option<PathBuf>,
    /// The node's configuration, to find its local socket ([local] socket, or
    /// <spool_dir>/local.sock).
    #[arg(long, value_name = "FILE")]
    pub node_config: Option<PathBuf>,
    /// Where to listen: a loopback address only (127.0.0.1 or [::1]); port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Open the address in the desktop's browser (xdg-open).
    #[arg(long)]
    pub open: bool,
}

impl UiArgs {
    /// Whether the researcher's side is asked for: a profile named, or no node given.
    fn wants_profile(&self) -> bool {
        self.profile.profile.is_some()
            || self.profile.profile_file.is_some()
            || std::env::var_os(login::PROFILE_ENV).is_some_and(|v| !v.is_empty())
            || (self.node_socket.is_none() && self.node_config.is_none())
    }

    fn node(&self) -> anyhow::Result<Option<LocalClient>> {
        let path = match (&self.node_socket, &self.node_config) {
            (Some(s), _) => s.clone(),
            (None, Some(c)) => {
                let config = warden_node::config::Config::load(c)?;
                config.local.socket_path(&config.node.spool_dir)
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(LocalClient::new(path)))
    }
}

/// Runs `warden ui` until interrupted.
pub fn run(args: UiArgs) -> anyhow::Result<Outcome> {
    warden_console::check_listen(args.listen).map_err(anyhow::Error::msg)?;
    crate::common::init_logging("warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let node = args.node()?;
        let mut session = None;
        let researcher = if args.wants_profile() {
            let (path, _) = args.profile.path()?;
            let profile = Profile::load(&path)?;
            let key = Researcher::load(&profile.researcher.key, &profile.researcher.certificate)?;
            let records = RecordStore::default_location()?;
            let (client, file, before) = login::connect(&args.profile).await?;
            session = Some((file, before));
            Some(ResearcherSide {
                client,
                profile,
                researcher: key,
                records,
            })
        } else {
            None
        };
        let console = Console::bind(args.listen, Sources { researcher, node })
            .await
            .map_err(anyhow::Error::msg)?;
        crate::emit(&console.url());
        eprintln!("warden ui: open the address above; stop with Ctrl-C");
        if args.open {
            if let Err(e) = std::process::Command::new("xdg-open")
                .arg(console.url())
                .spawn()
            {
                eprintln!(
                    "warning: cannot open a browser (xdg-open: {e}); open the address yourself"
                );
            }
        }
        let app = console
            .serve(shutdown())
            .await
            .map_err(anyhow::Error::msg)?;
        if let (Some((file, before)), Some(r)) = (session, &app.sources.researcher) {
            login::finish(&r.client, &file, before.as_ref())?;
        }
        Ok(Outcome {
            output: String::new(),
            exit: 0,
        })
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
