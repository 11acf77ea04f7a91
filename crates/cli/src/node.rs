//! `warden node start --config FILE`: the node (crates/node). The configuration reference is
//! docs/node.md.
//!
//! `warden node pending|show|release|refuse|approve|refuse-digest`: the data owner's airlock,
//! spoken to the running node over its local socket (`[local] socket`; `--socket PATH`, or
//! `--config FILE` to read it from the node's configuration). The node knows who asks from the
//! socket's peer credentials and audits every view, release, refusal and approval.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use warden_api::display::safe;
use warden_node::Node;
use warden_node::config::Config;
use warden_node::local::LocalClient;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Check the policy, keys, audit log, container isolation and the server, then take runs
    /// until interrupted (SIGINT or SIGTERM).
    Start {
        /// The node configuration (TOML); relative paths in it are relative to this file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// List the results held for release and the runs waiting for a digest's approval.
    Pending {
        #[command(flatten)]
        socket: SocketArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a held result in plaintext (at the node only; audited as a view).
    Show {
        #[command(flatten)]
        socket: SocketArgs,
        /// Write the result's bytes to FILE instead of printing them.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        run: i64,
    },
    /// Release a held result (it leaves once `checkers` different local users released it).
    Release {
        #[command(flatten)]
        socket: SocketArgs,
        run: i64,
    },
    /// Refuse a held result: the run fails with your reason, which the researcher sees.
    Refuse {
        #[command(flatten)]
        socket: SocketArgs,
        /// Why (sent to the researcher as the run's reason).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        run: i64,
    },
    /// Approve an image digest (`first_run = "approve"`): the runs waiting for it start, and it
    /// runs without asking from now on.
    Approve {
        #[command(flatten)]
        socket: SocketArgs,
        /// sha256:<64 hex>, as `warden node pending` lists it.
        digest: String,
    },
    /// Refuse an image digest: the runs waiting for its approval fail with your reason.
    RefuseDigest {
        #[command(flatten)]
        socket: SocketArgs,
        #[arg(long, value_name = "TEXT")]
        reason: String,
        digest: String,
    },
}

#[derive(Debug, Args)]
pub struct SocketArgs {
    /// The node's local socket.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    socket: Option<PathBuf>,
    /// The node's configuration, to find its local socket ([local] socket, or
    /// <spool_dir>/local.sock).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl SocketArgs {
    fn client(&self) -> anyhow::Result<LocalClient> {
        let path = match (&self.socket, &self.config) {
            (Some(s), _) => s.clone(),
            (None, Some(c)) => {
                let config = Config::load(c)?;
                config.local.socket_path(&config.node.spool_dir)
            }
            (None, None) => bail!(
                "give the node's local socket (--socket PATH) or its configuration (--config FILE)"
            ),
        };
        Ok(LocalClient::new(path))
    }
}

/// Exit status when the node refused the request (or could not be reached).
const EXIT_REFUSED: u8 = 1;

/// Runs a `warden node` subcommand; the exit status (0 done, 1 refused by the node).
pub fn run(command: NodeCommand) -> anyhow::Result<u8> {
    let (client, text) = match command {
        NodeCommand::Start { config } => return start(config).map(|()| 0),
        NodeCommand::Pending { socket, json } => {
            let c = socket.client()?;
            (c.clone(), c.pending().map(|p| pending_text(&p, json)))
        }
        NodeCommand::Show { socket, out, run } => {
            let c = socket.client()?;
            let shown = c.show(run).and_then(|h| show_text(&h, out.as_deref()));
            (c, shown)
        }
        NodeCommand::Release { socket, run } => {
            let c = socket.client()?;
            (c.clone(), c.release(run).map(|a| a.message))
        }
        NodeCommand::Refuse {
            socket,
            reason,
            run,
        } => {
            let c = socket.client()?;
            (c.clone(), c.refuse(run, &reason).map(|a| a.message))
        }
        NodeCommand::Approve { socket, digest } => {
            let c = socket.client()?;
            (c.clone(), c.approve(&digest).map(|a| a.message))
        }
        NodeCommand::RefuseDigest {
            socket,
            reason,
            digest,
        } => {
            let c = socket.client()?;
            (
                c.clone(),
                c.refuse_digest(&digest, &reason).map(|a| a.message),
            )
        }
    };
    drop(client);
    match text {
        Ok(t) => {
            crate::emit(&safe_lines(&t));
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {}", safe(&e));
            Ok(EXIT_REFUSED)
        }
    }
}

/// Text from the node, one line at a time made safe for a terminal.
fn safe_lines(text: &str) -> String {
    text.lines().map(safe).collect::<Vec<_>>().join("\n")
}

fn when(at: i64) -> String {
    warden_node::airlock::when(at)
}

fn pending_text(p: &warden_api::local::Pending, json: bool) -> String {
    if json {
        return serde_json::to_string_pretty(p).unwrap_or_default();
    }
    let mut out = String::new();
    let _ = writeln!(out, "{} result(s) held for release", p.results.len());
    for r in &p.results {
        let _ = writeln!(
            out,
            "  run {} (task {}) {} {} rule={} {} bytes {} held since {}, refused at {}; released \
             by {} of {}{}",
            r.run_id,
            r.task_id,
            r.image,
            r.digest.as_deref().unwrap_or("-"),
            r.rule.as_deref().unwrap_or("-"),
            r.bytes,
            r.sha256,
            when(r.held_at),
            when(r.deadline),
            r.released_by.len(),
            r.checkers,
            if r.released_by.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.released_by.join(", "))
            }
        );
    }
    let _ = writeln!(
        out,
        "{} run(s) waiting for a digest's approval",
        p.approvals.len()
    );
    for a in &p.approvals {
        let _ = writeln!(
            out,
            "  run {} (task {}) {} {} rule={} waiting since {}, refused at {}",
            a.run_id,
            a.task_id,
            a.image,
            a.digest,
            a.rule.as_deref().unwrap_or("-"),
            when(a.waiting_since),
            when(a.deadline)
        );
    }
    out.trim_end().to_owned()
}

fn show_text(
    h: &warden_api::local::HeldResult,
    out: Option<&std::path::Path>,
) -> Result<String, String> {
    let bytes = LocalClient::result_bytes(h)?;
    let r = &h.pending;
    let mut text = format!(
        "run {} (task {}) {} {}: {} bytes {}, released by {} of {}\n",
        r.run_id,
        r.task_id,
        r.image,
        r.digest.as_deref().unwrap_or("-"),
        r.bytes,
        r.sha256,
        r.released_by.len(),
        r.checkers
    );
    match (out, std::str::from_utf8(&bytes)) {
        (Some(path), _) => {
            std::fs::write(path, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            let _ = write!(text, "result written to {}", path.display());
        }
        (None, Ok(s)) => text.push_str(s),
        (None, Err(_)) => {
            let _ = write!(
                text,
                "the result is not text; write it to a file with --out FILE (base64: {})",
                h.result_base64
            );
        }
    }
    Ok(text)
}

fn start(config: PathBuf) -> anyhow::Result<()> {
    crate::common::init_logging("info");
    let config = Config::load(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let node = Node::start(config).await?;
        let me = node.identity();
        eprintln!(
            "warden node {} (organization {}, collaboration {}) started; audit log: {}; local \
             socket: {}",
            me.node_id,
            me.organization_id,
            me.collaboration_id,
            node.audit_path().display(),
            node.local_socket()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        node.run(shutdown()).await;
        eprintln!("warden node stopped");
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
