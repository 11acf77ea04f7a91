//! What the lying-server suites share: editing the server's database as its operator could,
//! reading a node's audit log and spool, and checking that a run was refused before anything
//! ran for it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use warden_api::RunState;

use super::{Researcher, World, containers, image_present};

/// Runs SQL against the server's SQLite file, as a compromised server (or its operator) would.
pub fn tamper(w: &World, sql: &str) {
    let db = w.dir.path().join("server.db");
    let out = Command::new("sqlite3").arg(&db).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The audit records of `run` in the log next to `config`.
pub fn audit_records(config: &Path, run: i64) -> Vec<Value> {
    let log = std::fs::read_to_string(config.parent().unwrap().join("audit/audit.log")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|l| l.get("record").cloned())
        .filter(|r| r["run_id"] == run)
        .collect()
}

pub fn spool(config: &Path) -> PathBuf {
    config.parent().unwrap().join("spool")
}

/// Waits for `run` and checks that it was refused before anything ran: `rejected` with a reason
/// that contains `says`, no admitted digest, no container and no log at the node, `image` (when
/// given) never pulled, and one audit record, rejected with the same reason. Returns the reason.
pub async fn refused(
    w: &World,
    config: &Path,
    run: i64,
    says: &str,
    image: Option<&str>,
) -> String {
    let r = w.wait_final(run, Duration::from_secs(60)).await;
    assert_eq!(r.state, RunState::Rejected, "run {run}: {:?}", r.reason);
    let reason = r.reason.unwrap();
    assert!(
        reason.contains(says),
        "run {run}: {reason}\nexpected: {says}"
    );
    assert_eq!(r.digest, None, "a refused run reports no admitted digest");
    assert!(!r.has_result);
    assert!(containers(&World::label_of(config)).is_empty());
    assert!(
        !spool(config).join(format!("logs/run-{run}.log")).exists(),
        "nothing ran for run {run}"
    );
    if let Some(image) = image {
        assert!(!image_present(image), "{image} was pulled");
    }
    let records = audit_records(config, run);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["event"], "decision");
    assert_eq!(records[0]["outcome"], "rejected");
    assert_eq!(records[0]["reason"], reason.as_str(), "{records:?}");
    reason
}

/// A signed `echo` image at `<registry>/node/<name>:v1`: its reference and `repo@digest`.
pub async fn echo_image(w: &mut World, name: &str) -> (String, String) {
    let (repo, digest) = w.push_program("echo", name, "v1");
    w.sign(&repo, &digest).await;
    (format!("{repo}:v1"), format!("{repo}@{digest}"))
}

/// A task of `who` for A whose one input is `bytes` as they are, with `nonce`: its run id.
pub async fn hand_made(
    w: &World,
    who: &Researcher,
    image: &str,
    nonce: &str,
    bytes: Vec<u8>,
) -> i64 {
    let (s, v) = w
        .post_task(&who.token, w.collab, image, Some(nonce), &[(w.a.id, bytes)])
        .await;
    assert_eq!(s, 201, "{v}");
    v["runs"][0]["id"].as_i64().unwrap()
}

/// What a researcher's client seals for A, for `image`, with `function` and `body`.
pub async fn sealed_for_a(
    w: &World,
    who: &Researcher,
    image: &str,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let digest = w.resolve(image).await;
    let function = warden_api::strict::parse_input(body).unwrap().function;
    let b = w.binding(who, image, &digest, &function, &w.a, nonce);
    w.seal(who, &w.a, &b, body)
}

pub const HELLO: &[u8] = br#"{"function":"hello"}"#;
