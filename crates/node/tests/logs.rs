//! Released logs at a real node (issue 9), with the real server, a real registry and the Docker
//! engine: sealed for the researcher as kind `logs` and bound to the run, on a failed run; and
//! never released in plaintext, even when the rule says `logs = "release"`.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::World;
use serde_json::{Value, json};
use warden_api::RunState;

/// What `crates/node/tests/programs/talk.c` prints on standard output.
const MARKER: &str = "ROW-7f3a-CONFIDENTIAL";

fn logs_records(config: &std::path::Path, run: i64) -> Vec<Value> {
    let audit = config.parent().unwrap().join("audit/audit.log");
    std::fs::read_to_string(audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|l| l.get("record").cloned())
        .filter(|r| r["event"] == "logs" && r["run_id"] == run)
        .collect()
}

async fn get_logs(w: &World, run: i64) -> (u16, Vec<u8>) {
    let resp = w
        .http
        .get(w.url(&format!("/api/runs/{run}/logs")))
        .bearer_auth(&w.researcher)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_releases_sealed_logs_bound_to_it() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("talk", "logs-node", "v1");
    w.sign(&repo, &digest).await;
    let policy = format!(
        "{}[allow.output]\nlogs = \"release\"\n",
        w.signed_policy(&repo)
    );
    let config = w.node_config(&w.a, &policy, "");
    let node = w.start_node(&config).await;
    let image = format!("{repo}:v1");
    let task = w
        .create_task(
            &image,
            &json!({"function": "f", "args": {"mode": "fail"}}),
            &[&w.a],
        )
        .await;
    let run = w.wait_final(task.runs[0].id, Duration::from_secs(60)).await;
    assert_eq!(run.state, RunState::Failed, "{:?}", run.reason);
    assert_eq!(
        run.reason.as_deref(),
        Some("the algorithm exited with code 1")
    );
    let (status, sealed) = get_logs(&w, run.id).await;
    assert_eq!(status, 200);
    assert!(!sealed.windows(MARKER.len()).any(|x| x == MARKER.as_bytes()));
    // Opens as logs, never as a result, from this organization's key, bound to this run.
    let key = w.a.secret.public_key();
    assert!(
        warden_seal::open_result(&w.rita.key, &key, warden_seal::Kind::Result, &sealed).is_err()
    );
    let (binding, body) =
        warden_seal::open_result(&w.rita.key, &key, warden_seal::Kind::Logs, &sealed).unwrap();
    assert_eq!(binding.run_id, run.id);
    assert_eq!(binding.organization, w.a.name);
    assert_eq!(binding.digest, digest.to_string());
    assert_eq!(binding.nonce, task.task.nonce.clone().unwrap());
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains(&format!("talk line one: {MARKER}")), "{text}");
    let records = logs_records(&config, run.id);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "released");
    assert_eq!(
        records[0]["output_sha256"],
        format!("sha256:{}", sha256_hex(&sealed))
    );
    node.stop().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_collaboration_never_releases_logs() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("talk", "logs-plain", "v1");
    w.sign(&repo, &digest).await;
    let policy = format!(
        "{}[allow.output]\nlogs = \"release\"\n",
        w.signed_policy(&repo)
    );
    let open = w.collaboration("open-study", false).await;
    let key = w.node_key_in(w.a.id, open).await;
    let config = w.node_config_in(
        &w.a,
        &key,
        "open-a",
        &policy,
        "\n[encryption]\nplaintext_collaborations = [\"open-study\"]\n",
    );
    let node = w.start_node(&config).await;
    let plain = br#"{"args": {"mode": "fail"}, "function": "f"}"#.to_vec();
    let (s, v) = w
        .post_task(
            &w.researcher,
            open,
            &format!("{repo}:v1"),
            None,
            &[(w.a.id, plain)],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let run = w
        .wait_final(
            v["runs"][0]["id"].as_i64().unwrap(),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(run.state, RunState::Failed, "{:?}", run.reason);
    assert_eq!(
        run.reason.as_deref(),
        Some("the algorithm exited with code 1")
    );
    assert_eq!(get_logs(&w, run.id).await.0, 404);
    let records = logs_records(&config, run.id);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "withheld");
    assert!(
        records[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the collaboration is plaintext"),
        "{records:?}"
    );
    node.stop().await;
}
