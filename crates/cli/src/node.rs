//! `warden node start --config FILE`: the node (crates/node). The configuration reference is
//! docs/node.md.
//!
//! `warden node status`: the running node's health over the same socket.
//!
//! `warden node pending|show|release|refuse|approve|refuse-digest`: the data owner's airlock,
//! spoken to the running node over its local socket (`[local] socket`; `--socket PATH`, or
//! `--config FILE` to read it from the node's configuration). The node knows who asks from the
//! socket's peer credentials and audits every view, release, refusal and approval.

pub(crate) mod init;

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
    ///
    /// Example: warden node start --config /etc/warden/node/node.toml
    Start {
        /// The node configuration (TOML); relative paths in it are relative to this file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Set up a node's directory for a data owner: the organization's encryption key (X25519)
    /// and certification key (Ed25519), the audit signing key, a deny-all policy and a node
    /// configuration; prints the fingerprints to hand to the operator and researchers.
    /// Refuses to overwrite any file.
    ///
    /// Example: warden node init --org hospital-b --dir /etc/warden/node --server https://warden.example.org
    Init {
        /// The organization's name, as the server knows it ([A-Za-z0-9._-], 1 to 64).
        #[arg(long, value_name = "NAME")]
        org: String,
        /// The directory to write (made 0700 when it does not exist).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The coordination server's URL (http:// or https://); a placeholder otherwise.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the running node's health: its server connection, policy, runs, last isolation
    /// self-check and audit log. Exit 0 when healthy, 1 when the node reports a problem (or
    /// cannot be reached).
    ///
    /// Example: warden node status --config /etc/warden/node.toml
    Status {
        #[command(flatten)]
        socket: SocketArgs,
        /// Print one JSON object (docs/node.md) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the results held for release and the runs waiting for a digest's approval.
    ///
    /// Example: warden node pending --config /etc/warden/node/node.toml
    Pending {
        #[command(flatten)]
        socket: SocketArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a held result in plaintext (at the node only; audited as a view).
    ///
    /// Example: warden node show --config /etc/warden/node/node.toml 42 --out run-42.json
    Show {
        #[command(flatten)]
        socket: SocketArgs,
        /// Write the result's bytes to FILE instead of printing them.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print one JSON document: the held result's fields (`run_id`, `task_id`, `image`,
        /// `digest`, `rule`, `bytes`, `sha256`, `held_at`, `deadline`, `checkers`,
        /// `released_by`), `out` (the file written, or null) and `result_base64` (the result's
        /// bytes, null when written to `out`).
        #[arg(long)]
        json: bool,
        run: i64,
    },
    /// Release a held result (it leaves once `checkers` different local users released it).
    ///
    /// Example: warden node release --config /etc/warden/node/node.toml 42
    Release {
        #[command(flatten)]
        socket: SocketArgs,
        /// Print one JSON document (`action`, `run_id`, and the node's `message`, `done` and
        /// `runs`) instead of text.
        #[arg(long)]
        json: bool,
        run: i64,
    },
    /// Refuse a held result: the run fails with your reason, which the researcher sees.
    ///
    /// Example: warden node refuse --config /etc/warden/node/node.toml --reason "rows under 10" 42
    Refuse {
        #[command(flatten)]
        socket: SocketArgs,
        /// Why (sent to the researcher as the run's reason).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Print one JSON document (`action`, `run_id`, and the node's `message`, `done` and
        /// `runs`) instead of text.
        #[arg(long)]
        json: bool,
        run: i64,
    },
    /// Approve an image digest (`first_run = "approve"`): the runs waiting for it start, and it
    /// runs without asking from now on.
    ///
    /// Example: warden node approve --config /etc/warden/node/node.toml sha256:DIGEST
    Approve {
        #[command(flatten)]
        socket: SocketArgs,
        /// Print one JSON document (`action`, `digest`, and the node's `message`, `done` and
        /// `runs`) instead of text.
        #[arg(long)]
        json: bool,
        /// sha256:<64 hex>, as `warden node pending` lists it.
        digest: String,
    },
    /// Refuse an image digest: the runs waiting for its approval fail with your reason.
    ///
    /// Example: warden node refuse-digest --config /etc/warden/node/node.toml --reason "not reviewed" sha256:DIGEST
    RefuseDigest {
        #[command(flatten)]
        socket: SocketArgs,
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Print one JSON document (`action`, `digest`, and the node's `message`, `done` and
        /// `runs`) instead of text.
        #[arg(long)]
        json: bool,
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
    pub(crate) fn client(&self) -> anyhow::Result<LocalClient> {
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
        NodeCommand::Status { socket, json } => return status(&socket.client()?, json),
        NodeCommand::Init {
            org,
            dir,
            server,
            json,
        } => {
            let made = init::init(&org, &dir, server.as_deref())?;
            if json {
                crate::emit(&serde_json::to_string_pretty(&made)?);
            } else {
                crate::emit(&init::text(&made));
            }
            return Ok(0);
        }
        NodeCommand::Pending { socket, json } => {
            let c = socket.client()?;
            (c.clone(), c.pending().map(|p| pending_text(&p, json)))
        }
        NodeCommand::Show {
            socket,
            out,
            json,
            run,
        } => {
            let c = socket.client()?;
            let shown = c
                .show(run)
                .and_then(|h| show_text(&h, out.as_deref(), json));
            (c, shown)
        }
        NodeCommand::Release { socket, json, run } => {
            let c = socket.client()?;
            let what = serde_json::json!({"action": "release", "run_id": run});
            (c.clone(), c.release(run).map(|a| answer(json, what, a)))
        }
        NodeCommand::Refuse {
            socket,
            reason,
            json,
            run,
        } => {
            let c = socket.client()?;
            let what = serde_json::json!({"action": "refuse", "run_id": run});
            (
                c.clone(),
                c.refuse(run, &reason).map(|a| answer(json, what, a)),
            )
        }
        NodeCommand::Approve {
            socket,
            json,
            digest,
        } => {
            let c = socket.client()?;
            let what = serde_json::json!({"action": "approve", "digest": digest});
            (c.clone(), c.approve(&digest).map(|a| answer(json, what, a)))
        }
        NodeCommand::RefuseDigest {
            socket,
            reason,
            json,
            digest,
        } => {
            let c = socket.client()?;
            let what = serde_json::json!({"action": "refuse_digest", "digest": digest});
            (
                c.clone(),
                c.refuse_digest(&digest, &reason)
                    .map(|a| answer(json, what, a)),
            )
        }
    };
    drop(client);
    match text {
        // Already made safe for a terminal: text line by line, JSON by `json_document`.
        Ok(t) => {
            crate::emit(&t);
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

/// A release, refusal or approval as printed: the node's words, or with `--json` one document
/// of what was decided on (`action`, and `run_id` or `digest`) with the node's answer
/// (`message`; `done`, whether it took effect, for a release whether the result left the node;
/// `runs`, the runs it moved).
fn answer(json: bool, mut what: serde_json::Value, a: warden_api::local::Answer) -> String {
    if !json {
        return safe_lines(&a.message);
    }
    what["message"] = a.message.into();
    what["done"] = a.done.into();
    what["runs"] = a.runs.into();
    crate::common::json_document(&what)
}

fn when(at: i64) -> String {
    warden_node::airlock::when(at)
}

/// `warden node status`: 0 healthy, 1 when the node reports a problem or cannot be reached.
fn status(client: &LocalClient, json: bool) -> anyhow::Result<u8> {
    let st = match client.status() {
        Ok(st) => st,
        Err(e) => {
            eprintln!("error: {}", safe(&e));
            return Ok(EXIT_REFUSED);
        }
    };
    if json {
        crate::emit(&serde_json::to_string_pretty(&st)?);
    } else {
        crate::emit(&safe_lines(&status_text(&st, now())));
    }
    Ok(if st.healthy { 0 } else { EXIT_REFUSED })
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A time with how long ago it was.
fn ago(at: i64, now: i64) -> String {
    let secs = (now - at).max(0);
    let span = match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86400),
    };
    format!("{} ({span} ago)", when(at))
}

fn run_set(r: &warden_api::local::RunSet) -> String {
    if r.ids.is_empty() {
        return r.count.to_string();
    }
    let ids: Vec<String> = r.ids.iter().map(|i| i.to_string()).collect();
    format!("{} (runs {})", r.count, ids.join(", "))
}

fn status_text(st: &warden_api::local::Status, now: i64) -> String {
    let mut out = String::new();
    let n = &st.node;
    let _ = writeln!(
        out,
        "node {} of {} (organization {}, collaboration {}), label {}, up since {}",
        n.node_id,
        n.organization,
        n.organization_id,
        n.collaboration_id,
        n.label,
        ago(n.started_at, now)
    );
    let _ = writeln!(
        out,
        "status:      {}",
        if st.healthy { "healthy" } else { "PROBLEM" }
    );
    for p in &st.problems {
        let _ = writeln!(out, "  problem:   {p}");
    }
    let sv = &st.server;
    let _ = writeln!(
        out,
        "server:      {} {}, event push {}",
        sv.url,
        if sv.connected {
            "connected"
        } else {
            "NOT CONNECTED"
        },
        if sv.event_push {
            "connected"
        } else {
            "down (polling)"
        }
    );
    let _ = writeln!(
        out,
        "  last contact: {}",
        sv.last_contact.map_or("never".to_owned(), |t| ago(t, now))
    );
    if let Some(e) = &sv.last_error {
        let _ = writeln!(out, "  last error:   {} at {}", e.message, ago(e.at, now));
    }
    let p = &st.policy;
    let _ = writeln!(
        out,
        "policy:      {} (version {}, {}), {} allow rule(s), {} deny rule(s)",
        p.file, p.version, p.sha256, p.allow_rules, p.deny_rules
    );
    let r = &st.runs;
    let _ = writeln!(
        out,
        "runs:        in flight {}, queued {} (concurrent_runs = {})",
        run_set(&r.in_flight),
        run_set(&r.queued),
        r.concurrent_runs
    );
    let _ = writeln!(
        out,
        "airlock:     held results {}, awaiting approval {}",
        run_set(&r.held_results),
        run_set(&r.awaiting_approval)
    );
    let c = &st.self_check;
    let _ = writeln!(
        out,
        "self-check:  {} at {} (probe {})",
        if c.passed { "passed" } else { "FAILED" },
        ago(c.at, now),
        c.probe
    );
    let a = &st.audit;
    let count = |v: Option<u64>| v.map_or("unknown".to_owned(), |v| v.to_string());
    let _ = writeln!(
        out,
        "audit log:   {}: {}, {} entries, {} after the last checkpoint, last checkpoint {}",
        a.path,
        if a.writable {
            "writable"
        } else {
            "audit log unavailable"
        },
        count(a.entries),
        count(a.uncovered),
        a.last_checkpoint_at
            .map_or("none since start".to_owned(), |t| ago(t, now))
    );
    out.trim_end().to_owned()
}

fn pending_text(p: &warden_api::local::Pending, json: bool) -> String {
    if json {
        return crate::common::json_document(p);
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
    safe_lines(out.trim_end())
}

fn show_text(
    h: &warden_api::local::HeldResult,
    out: Option<&std::path::Path>,
    json: bool,
) -> Result<String, String> {
    let bytes = LocalClient::result_bytes(h)?;
    if let Some(path) = out {
        std::fs::write(path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if json {
        let mut v = serde_json::to_value(&h.pending).map_err(|e| e.to_string())?;
        v["out"] = out.map(|p| p.display().to_string()).into();
        v["result_base64"] = match out {
            Some(_) => serde_json::Value::Null,
            None => h.result_base64.clone().into(),
        };
        return Ok(crate::common::json_document(&v));
    }
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
    Ok(safe_lines(&text))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use warden_api::local as wire;

    fn sample() -> wire::Status {
        wire::Status {
            healthy: false,
            problems: vec!["audit log unavailable: its last write failed".into()],
            node: wire::NodeStatus {
                node_id: 3,
                organization: "hospital-b".into(),
                organization_id: 7,
                collaboration_id: 2,
                label: "b-node".into(),
                started_at: 1_000,
            },
            server: wire::ServerStatus {
                url: "https://warden.example.org".into(),
                connected: false,
                event_push: false,
                last_contact: Some(1_100),
                last_error: Some(wire::ContactError {
                    at: 1_190,
                    message: "list pending runs: cannot connect".into(),
                }),
            },
            policy: wire::PolicyStatus {
                file: "/etc/warden/policy.toml".into(),
                sha256: "sha256:ab".into(),
                version: 1,
                allow_rules: 2,
                deny_rules: 0,
            },
            runs: wire::RunsStatus {
                in_flight: wire::RunSet::of(vec![12]),
                queued: wire::RunSet::of(vec![14, 13]),
                held_results: wire::RunSet::of(vec![]),
                awaiting_approval: wire::RunSet::of(vec![]),
                concurrent_runs: 1,
            },
            self_check: wire::SelfCheckStatus {
                passed: true,
                at: 1_001,
                probe: "/usr/lib/warden/probe".into(),
            },
            audit: wire::AuditStatus {
                path: "/var/lib/warden/audit/audit.log".into(),
                writable: false,
                problem: Some("audit log unavailable: its last write failed".into()),
                entries: None,
                uncovered: None,
                last_checkpoint_at: None,
            },
        }
    }

    #[test]
    fn the_status_block_names_every_part_and_each_problem() {
        let text = status_text(&sample(), 1_200);
        for needle in [
            "node 3 of hospital-b (organization 7, collaboration 2), label b-node",
            "status:      PROBLEM",
            "  problem:   audit log unavailable: its last write failed",
            "server:      https://warden.example.org NOT CONNECTED, event push down (polling)",
            "(1 min ago)",
            "  last error:   list pending runs: cannot connect at ",
            "policy:      /etc/warden/policy.toml (version 1, sha256:ab), 2 allow rule(s), 0 deny",
            "runs:        in flight 1 (runs 12), queued 2 (runs 13, 14) (concurrent_runs = 1)",
            "airlock:     held results 0, awaiting approval 0",
            "self-check:  passed at ",
            "audit log unavailable, unknown entries, unknown after the last checkpoint, last \
             checkpoint none since start",
        ] {
            assert!(text.contains(needle), "no `{needle}` in:\n{text}");
        }
        // The JSON document is the wire type, field for field.
        let json = serde_json::to_value(sample()).unwrap();
        let back: wire::Status = serde_json::from_value(json).unwrap();
        assert_eq!(back, sample());
        assert_eq!(
            ago(1_000, 1_000 + 7_200),
            format!("{} (2 h ago)", when(1_000))
        );
    }
}
