//! `warden audit verify` and `warden audit show`, run as the real binary on logs written by
//! `warden-audit`.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use warden_audit::{AuditLog, Event, Outcome, Record};
use warden_trust::{KeyAlgorithm, SigningKey};

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn record(run: i64, outcome: Outcome, reason: Option<&str>) -> Record {
    Record {
        time: time_of(run),
        event: if matches!(outcome, Outcome::Admitted | Outcome::Rejected) {
            Event::Decision
        } else {
            Event::Run
        },
        run_id: Some(run),
        task_id: Some(10),
        organization: Some("org-a".into()),
        user: Some("alice".into()),
        collaboration: Some("collab".into()),
        function: Some("mean".into()),
        image: "registry.example.org/team/mean:1".into(),
        digest: Some(format!("sha256:{}", "ab".repeat(32))),
        rule: Some("reviewed".into()),
        signers: vec![format!("sha256:{}", "cd".repeat(32))],
        input_sha256: None,
        output_sha256: None,
        outcome,
        reason: reason.map(str::to_owned),
        by: None,
        approvals: Vec::new(),
    }
}

fn time_of(run: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_790_000_000 + run).unwrap()
}

/// A log with runs 1..=3 (a decision and a run each), closed with a checkpoint; returns the
/// node key and the path of its public key file.
fn write_log(dir: &Path) -> (SigningKey, std::path::PathBuf, std::path::PathBuf) {
    let key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let pubfile = dir.join("node.pub");
    std::fs::write(&pubfile, key.public_key().to_pem()).unwrap();
    let path = dir.join("audit.log");
    let copy = SigningKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap();
    let mut log = AuditLog::open(&path, copy, 4).unwrap();
    for run in 1..=3 {
        log.append(record(run, Outcome::Admitted, None)).unwrap();
        let outcome = if run == 2 {
            Outcome::Failed
        } else {
            Outcome::Completed
        };
        let reason = (run == 2).then_some("timed out after 60 s");
        log.append(record(run, outcome, reason)).unwrap();
    }
    log.close().unwrap();
    (key, pubfile, path)
}

#[test]
fn an_intact_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (_, pubfile, log) = write_log(dir.path());
    let out = warden(&["audit", "verify", "--key", s(&pubfile), s(&log)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout} {out:?}");
    assert!(
        stdout.contains(": intact\n6 entries, 6 covered by 2 signed checkpoints"),
        "{stdout}"
    );

    let out = warden(&["audit", "verify", "--key", s(&pubfile), s(&log), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "intact");
    assert_eq!(v["report"]["entries"], 6);
    assert_eq!(v["report"]["checkpoints"], 2);
    assert_eq!(v["report"]["uncovered"], 0);
    assert_eq!(v["problems"], serde_json::json!([]));
}

#[test]
fn an_edited_log_exits_1_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, pubfile, log) = write_log(dir.path());
    let text = std::fs::read_to_string(&log).unwrap();
    // line 4 is run 2's failed run; make it look completed
    let edited = text.replacen("\"outcome\":\"failed\"", "\"outcome\":\"completed\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&log, edited).unwrap();
    let out = warden(&["audit", "verify", "--key", s(&pubfile), s(&log), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "tampered");
    assert_eq!(v["line"], 4);
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("line 4: the line was altered"),
        "{v}"
    );
    let out = warden(&["audit", "verify", "--key", s(&pubfile), s(&log)]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": tampered\nline 4: "), "{stdout}");
}

/// Entries after the last checkpoint (a running node between two checkpoints, or a tail cut
/// right after one: the two look alike) are reported, not failed; `--require-covered` fails
/// them. A torn last line exits 1.
#[test]
fn uncovered_entries_are_reported_and_a_torn_line_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_, pubfile, log) = write_log(dir.path());
    let text = std::fs::read_to_string(&log).unwrap();
    // drop the final checkpoint: entries 5 and 6 (lines 6 and 7) are no longer covered
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 8);
    std::fs::write(&log, lines[..7].concat()).unwrap();
    let out = warden(&["audit", "verify", "--key", s(&pubfile), s(&log)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(": uncovered\n")
            && stdout.contains("2 entries after the last signed checkpoint are not covered")
            && stdout.contains("the chain is intact"),
        "{stdout}"
    );
    let out = warden(&["audit", "verify", "--key", s(&pubfile), s(&log), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "uncovered");
    assert_eq!(v["report"]["uncovered"], 2);
    let out = warden(&[
        "audit",
        "verify",
        "--require-covered",
        "--key",
        s(&pubfile),
        s(&log),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // a torn last line
    let mut torn = text.clone().into_bytes();
    torn.truncate(torn.len() - 5);
    std::fs::write(&log, torn).unwrap();
    let out = warden(&["audit", "verify", "--key", s(&pubfile), s(&log), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["report"]["torn_tail"]["line"], 8);
    assert!(
        v["problems"].to_string().contains("line 8: torn last line"),
        "{v}"
    );
}

#[test]
fn the_wrong_key_is_tampering_and_bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, log) = write_log(dir.path());
    let other = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let other_pub = dir.path().join("other.pub");
    std::fs::write(&other_pub, other.public_key().to_pem()).unwrap();
    let out = warden(&["audit", "verify", "--key", s(&other_pub), s(&log)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not the node key"),
        "{out:?}"
    );

    let out = warden(&[
        "audit",
        "verify",
        "--key",
        s(&other_pub),
        "/nonexistent/audit.log",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read audit log"),
        "{out:?}"
    );
    let out = warden(&["audit", "verify", "--key", s(&log), s(&log)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a PEM public key"),
        "{out:?}"
    );
}

#[test]
fn show_prints_records_and_filters_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, log) = write_log(dir.path());
    let out = warden(&["audit", "show", s(&log)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 6, "{stdout}");
    assert!(stdout.contains(" run failed run=2 "), "{stdout}");
    assert!(
        stdout.contains("reason=\"timed out after 60 s\""),
        "{stdout}"
    );

    let out = warden(&["audit", "show", s(&log), "--run", "2", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["seq"], 3);
    assert_eq!(items[0]["record"]["event"], "decision");
    assert_eq!(items[1]["record"]["outcome"], "failed");
    assert_eq!(items[1]["record"]["run_id"], 2);
}

/// A run admitted by store approvals: `show` names each approval (store, reviewer key, the
/// node's organization for it, log index); `--json` keeps them as the record holds them.
#[test]
fn show_names_the_approvals_that_admitted_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let path = dir.path().join("audit.log");
    let mut log = AuditLog::open(&path, key, 4).unwrap();
    let mut r = record(1, Outcome::Admitted, None);
    r.approvals = vec![warden_audit::Approval {
        store: "community".into(),
        key_id: format!("sha256:{}", "ef".repeat(32)),
        organization: "org-b".into(),
        index: 5,
    }];
    log.append(r).unwrap();
    log.close().unwrap();
    let out = warden(&["audit", "show", s(&path)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = format!(" approvals=community:sha256:{}(org-b)@5", "ef".repeat(32));
    assert!(stdout.contains(&want), "{stdout}");
    let out = warden(&["audit", "show", s(&path), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["record"]["approvals"][0]["index"], 5);
    assert_eq!(v[0]["record"]["approvals"][0]["organization"], "org-b");
}
