//! `warden node start --config FILE`: the node (crates/node). The configuration reference is
//! docs/node.md.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use warden_node::Node;
use warden_node::config::Config;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Check the policy, keys, audit log, container isolation and the server, then take runs
    /// until interrupted (SIGINT or SIGTERM).
    Start {
        /// The node configuration (TOML); relative paths in it are relative to this file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

pub fn run(command: NodeCommand) -> anyhow::Result<()> {
    let NodeCommand::Start { config } = command;
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
            "warden node {} (organization {}, collaboration {}) started; audit log: {}",
            me.node_id,
            me.organization_id,
            me.collaboration_id,
            node.audit_path().display()
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
