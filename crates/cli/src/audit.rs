//! `warden audit`: verify and read a node's audit log, without the server.
//!
//! `warden audit verify --key NODE.pub FILE [--json] [--require-covered]` exits 0 when the chain
//! is intact and every checkpoint verifies under the node key (status `intact`, or `uncovered`
//! when entries written after the last checkpoint are not signed yet, as on a running node
//! between two checkpoints), 1 when the log was altered (`tampered`), its last line is torn
//! (`incomplete`), or, with `--require-covered`, entries are not covered; 2 for bad input (an
//! unreadable file or key). `warden audit show FILE [--run ID] [--json]` prints the records without checking
//! them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::common::Outcome;
use anyhow::{Context as _, bail};
use clap::Subcommand;
use warden_audit::{LogLine, Report, Verdict, VerifyError};
use warden_trust::PublicKey;

/// Largest public key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Prove an audit log unaltered: the hash chain links and the checkpoints verify under the
    /// node's key. Exit 0 intact (newer entries not yet under a checkpoint are reported, not
    /// failed), 1 tampered or torn, 2 bad input.
    ///
    /// Example: `warden audit verify --key audit.pub /var/lib/warden/audit/audit.log`
    Verify {
        /// The node's public signing key (PEM `PUBLIC KEY`).
        #[arg(long, value_name = "NODE_PUBKEY")]
        key: PathBuf,
        /// The audit log file.
        file: PathBuf,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
        /// Fail (exit 1) when entries after the last signed checkpoint are not covered, e.g.
        /// for a log copied from a node that was stopped (a stopped node signs a closing
        /// checkpoint).
        #[arg(long)]
        require_covered: bool,
    },
    /// Print the records of an audit log (not verified: use `warden audit verify`).
    ///
    /// Example: warden audit show --run 42 /var/lib/warden/audit/audit.log
    Show {
        /// The audit log file.
        file: PathBuf,
        /// Only the records of this run.
        #[arg(long, value_name = "ID")]
        run: Option<i64>,
        /// Print JSON (one array of `{"seq", "record"}`).
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `warden audit` subcommand.
pub fn run(command: AuditCommand) -> anyhow::Result<Outcome> {
    match command {
        AuditCommand::Verify {
            key,
            file,
            json,
            require_covered,
        } => verify(&key, &file, json, require_covered),
        AuditCommand::Show { file, run, json } => show(&file, run, json),
    }
}

fn read_key(path: &Path) -> anyhow::Result<PublicKey> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read node key {}", path.display()))?;
    if meta.len() > MAX_KEY_FILE {
        bail!(
            "node key {} is {} bytes; a PEM public key is far smaller, pass the node's .pub file",
            path.display(),
            meta.len()
        );
    }
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read node key {}", path.display()))?;
    PublicKey::from_pem(&pem).with_context(|| {
        format!(
            "node key {} is not a PEM public key; pass the node's public signing key",
            path.display()
        )
    })
}

fn verify(key: &Path, file: &Path, json: bool, require_covered: bool) -> anyhow::Result<Outcome> {
    let key = read_key(key)?;
    let result = warden_audit::verify(file, &key);
    let Some(verdict) = Verdict::of(&result) else {
        return Err(match result {
            Err(e) => e.into(),
            Ok(_) => anyhow::anyhow!("cannot verify {}", file.display()),
        });
    };
    let (status, exit) = (verdict.as_str(), verdict.exit(require_covered));
    let (report, failure) = match result {
        Ok(report) => (Some(report), None),
        Err(e) => (None, Some(e)),
    };
    let output = if json {
        let mut v = serde_json::json!({
            "file": file.display().to_string(),
            "key": key.id().to_string(),
            "status": status,
        });
        if let Some(r) = &report {
            v["report"] = serde_json::to_value(r)?;
            v["problems"] = serde_json::to_value(r.problems())?;
        }
        if let Some(e) = &failure {
            v["line"] = serde_json::json!(e.line());
            v["problems"] = serde_json::json!([e.to_string()]);
        }
        serde_json::to_string_pretty(&v)?
    } else {
        human_verify(file, status, report.as_ref(), failure.as_ref())
    };
    Ok(Outcome { output, exit })
}

fn human_verify(
    file: &Path,
    status: &str,
    report: Option<&Report>,
    failure: Option<&VerifyError>,
) -> String {
    let mut out = format!("{}: {status}", file.display());
    if let Some(r) = report {
        let _ = write!(
            out,
            "\n{} entries, {} covered by {} signed checkpoints; head {}",
            r.entries, r.covered, r.checkpoints, r.head
        );
        for p in r.problems() {
            let _ = write!(out, "\n{p}");
        }
        if status == "uncovered" {
            let _ = write!(
                out,
                "\nthe chain is intact and every checkpoint verifies; a running node signs the \
                 newer entries at its next checkpoint (every checkpoint_every entries, and at \
                 shutdown). A tail cut right after a checkpoint looks the same: verify again \
                 later, or with --require-covered on a stopped node's log"
            );
        }
    }
    if let Some(e) = failure {
        let _ = write!(out, "\n{e}");
    }
    out
}

fn show(file: &Path, run: Option<i64>, json: bool) -> anyhow::Result<Outcome> {
    let lines = warden_audit::read(file)?;
    let entries = lines.iter().filter_map(|l| match l {
        LogLine::Entry { seq, record, .. } if run.is_none() || record.run_id == run => {
            Some((*seq, record))
        }
        _ => None,
    });
    let output = if json {
        let items: Vec<serde_json::Value> = entries
            .map(|(seq, record)| serde_json::json!({"seq": seq, "record": record}))
            .collect();
        serde_json::to_string_pretty(&items)?
    } else {
        let mut out = String::new();
        for (seq, r) in entries {
            let v = serde_json::to_value(r)?;
            let text = |k: &str| v[k].as_str().map(str::to_owned);
            let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = write!(
                out,
                "{seq} {} {} {} run={} task={} org={} user={} image={} digest={} rule={}",
                opt(text("time")),
                opt(text("event")),
                opt(text("outcome")),
                opt(r.run_id.map(|i| i.to_string())),
                opt(r.task_id.map(|i| i.to_string())),
                opt(r.organization.clone()),
                opt(r.user.clone()),
                r.image,
                opt(r.digest.clone()),
                opt(r.rule.clone()),
            );
            if !r.signers.is_empty() {
                let _ = write!(out, " signers={}", r.signers.join(","));
            }
            if let Some(by) = &r.by {
                let _ = write!(out, " by={}", warden_api::display::safe(&by.to_string()));
            }
            if !r.approvals.is_empty() {
                let list: Vec<String> = r
                    .approvals
                    .iter()
                    .map(|a| {
                        warden_api::display::safe(&format!(
                            "{}:{}({})@{}",
                            a.store, a.key_id, a.organization, a.index
                        ))
                        .into_owned()
                    })
                    .collect();
                let _ = write!(out, " approvals={}", list.join(","));
            }
            if let Some(reason) = &r.reason {
                let _ = write!(out, " reason={reason:?}");
            }
        }
        out
    };
    Ok(Outcome { output, exit: 0 })
}
