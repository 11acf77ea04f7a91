//! `warden ui`: the local web console (`warden-console`, docs/ui.md). It serves on loopback
//! only, prints the address to open (with this launch's token, exchanged for a session cookie
//! at once) and, with `--open`, opens it. With a profile it is the researcher's console (the
//! profile's session, as `warden task`) and the administrator's (the same session, as `warden
//! admin`; a profile with only `[server]` has no researcher's pages, which then say why); with
//! `--node-socket` or `--node-config` the data owner's (the node's local socket, as `warden node
//! pending|release|...`); with both, both.
//!
//! Exit status: 0 stopped (SIGINT or SIGTERM), 2 bad input.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use warden_api::WhoAmI;
use warden_client::{Client, Profile, RecordStore, Researcher};
use warden_console::{Account, Console, ResearcherSide, Sources};
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
    /// Where to listen: a loopback address (127.0.0.1 or [::1]); port 0 picks a free one.
    /// Another address (named, not 0.0.0.0) only with a password, asked by a login form.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// A file holding the console's password (at least 12 characters; one trailing newline
    /// dropped), asked before the session cookie; else WARDEN_UI_PASSWORD. Required to
    /// listen beyond loopback.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The algorithm store (a store profile's name or a URL, as `warden algorithm list --store`),
    /// for the administrator's page of algorithms and their review state.
    #[arg(long, value_name = "NAME|URL")]
    pub store: Option<String>,
    /// Open the address in the desktop's browser (xdg-open).
    #[arg(long)]
    pub open: bool,
}

impl UiArgs {
    /// Whether the researcher's side is asked for: a profile named, or no node nor store given.
    fn wants_profile(&self) -> bool {
        self.profile.profile.is_some()
            || self.profile.profile_file.is_some()
            || std::env::var_os(login::PROFILE_ENV).is_some_and(|v| !v.is_empty())
            || (self.node_socket.is_none() && self.node_config.is_none() && self.store.is_none())
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

/// The environment variable that may hold the console's password.
pub const PASSWORD_ENV: &str = "WARDEN_UI_PASSWORD";

/// The console's password: `--password-file` (one trailing newline dropped), else
/// `WARDEN_UI_PASSWORD`, else none.
fn password(args: &UiArgs) -> anyhow::Result<Option<String>> {
    let p = match &args.password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the password file {}", path.display()))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            text.strip_suffix('\r').unwrap_or(text).to_owned()
        }
        None => match std::env::var(PASSWORD_ENV) {
            Ok(p) if !p.is_empty() => p,
            _ => return Ok(None),
        },
    };
    warden_console::check_password(&p).map_err(anyhow::Error::msg)?;
    Ok(Some(p))
}

/// Runs `warden ui` until interrupted.
pub fn run(args: UiArgs) -> anyhow::Result<Outcome> {
    let password = password(&args)?;
    warden_console::check_listen(args.listen, password.is_some()).map_err(anyhow::Error::msg)?;
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "warning: warden ui listens on {} in plain HTTP: the network between carries the \
             password, the session cookie and every page; prefer an SSH tunnel",
            args.listen
        );
    }
    crate::common::init_logging("warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let node = args.node()?;
        let mut session = None;
        let store = match &args.store {
            Some(name) => {
                let (client, _) = warden_client::store::StoreClient::from_store_arg(name)
                    .map_err(|e| anyhow::anyhow!("--store: {e}"))?;
                Some(warden_console::store::StoreSide {
                    client,
                    name: name.clone(),
                })
            }
            None => None,
        };
        let mut sources = Sources {
            node,
            store,
            ..Sources::default()
        };
        if args.wants_profile() {
            let (path, _) = args.profile.path()?;
            let (client, file, before) = login::connect(&args.profile).await?;
            session = Some((file, before));
            let client = Arc::new(client);
            let role = match client.whoami().await? {
                WhoAmI::User { role, .. } => Some(role),
                _ => None,
            };
            // An administrator's profile has only [server]: the researcher's pages then say
            // what is missing, and the rest of the console works.
            match researcher_side(&path, &client) {
                Ok(r) => sources.researcher = Some(r),
                Err(why) => {
                    eprintln!("warden ui: no researcher's pages: {why}");
                    sources.researcher_missing = Some(why);
                }
            }
            sources.account = Some(Account { client, role });
        }
        let console = Console::bind(args.listen, sources, password.as_deref())
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
        if let (Some((file, before)), Some(a)) = (session, &app.sources.account) {
            login::finish(&a.client, &file, before.as_ref())?;
        }
        Ok(Outcome {
            output: String::new(),
            exit: 0,
        })
    })
}

/// The researcher's side of the profile at `path`, or why it has none.
fn researcher_side(path: &Path, client: &Arc<Client>) -> Result<ResearcherSide, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let has_section = text
        .parse::<toml_edit::DocumentMut>()
        .is_ok_and(|doc| doc.contains_key("researcher"));
    if !has_section {
        return Err(format!(
            "the profile {} has no [researcher] section (an administrator's profile)",
            path.display()
        ));
    }
    let profile = Profile::load(path).map_err(|e| e.to_string())?;
    let researcher = Researcher::load(&profile.researcher.key, &profile.researcher.certificate)
        .map_err(|e| e.to_string())?;
    let records = RecordStore::default_location().map_err(|e| e.to_string())?;
    Ok(ResearcherSide {
        client: client.clone(),
        profile,
        researcher,
        records,
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
