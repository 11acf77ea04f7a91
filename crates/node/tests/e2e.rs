//! End to end against real parts: the server in-process, a registry on loopback, the Docker
//! engine, signed and unsigned FROM-scratch images.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{World, containers, image_present};
use serde_json::json;
use warden_api::RunState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_admitted_image_runs_and_its_sealed_result_opens_at_the_researcher() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "echo", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let node = w.start_node(&config).await;

    let input = json!({"function": "hello", "args": {"x": 1}});
    let task = w.create_task(&format!("{repo}:v1"), &input, &[&w.a]).await;
    let run = w
        .wait_final(task.runs[0].id, Duration::from_secs(120))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    assert_eq!(run.digest.as_deref(), Some(digest.to_string().as_str()));
    let result = w.result(run.id).await;
    let text = String::from_utf8(result).unwrap();
    assert!(text.starts_with("env-ok echo:"), "{text}");
    assert!(text.contains("\"function\":\"hello\""), "{text}");
    assert!(
        containers(&node.label).is_empty(),
        "no container left behind"
    );

    // The audit log holds the decision, the run's logs (withheld: the policy does not release
    // them) and the run, and verifies with the node's key.
    let audit_path = node.node.audit_path().to_path_buf();
    node.stop().await;
    let log = std::fs::read_to_string(&audit_path).unwrap();
    assert!(log.contains("\"outcome\":\"admitted\""), "{log}");
    assert!(log.contains("\"outcome\":\"completed\""), "{log}");
    assert!(log.contains(&digest.to_string()), "{log}");
    let key_pem = std::fs::read_to_string(config.parent().unwrap().join("audit.pub")).unwrap();
    let key = warden_trust::PublicKey::from_pem(&key_pem).unwrap();
    let report = warden_audit::verify(&audit_path, &key).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems());
    assert_eq!(report.entries, 3);
    assert!(log.contains("\"event\":\"logs\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_denied_images_are_rejected_and_nothing_is_pulled_or_created() {
    let mut w = World::new().await;
    let (signed_repo, _) = w.push_program("echo", "unsigned", "v1");
    let (denied_repo, denied_digest) = w.push_program("echo", "denied", "v1");
    // signed so that only the policy's naming can deny it
    w.sign(&denied_repo, &denied_digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&signed_repo), "");
    let node = w.start_node(&config).await;

    let input = json!({"function": "hello", "args": null});
    let unsigned = w
        .create_task(&format!("{signed_repo}:v1"), &input, &[&w.a])
        .await;
    let denied = w
        .create_task(&format!("{denied_repo}:v1"), &input, &[&w.a])
        .await;
    let unsigned = w
        .wait_final(unsigned.runs[0].id, Duration::from_secs(60))
        .await;
    let denied = w
        .wait_final(denied.runs[0].id, Duration::from_secs(60))
        .await;

    assert_eq!(unsigned.state, RunState::Rejected);
    let reason = unsigned.reason.unwrap();
    assert!(
        reason.contains("allow[1]") && reason.contains("signed"),
        "{reason}"
    );
    assert!(reason.contains("(decision)"), "{reason}");
    assert_eq!(
        unsigned.digest, None,
        "a rejected run reports no admitted digest"
    );

    assert_eq!(denied.state, RunState::Rejected);
    let reason = denied.reason.unwrap();
    assert!(
        reason.contains("no allow rule names repository"),
        "{reason}"
    );
    assert!(reason.contains("(precheck)"), "{reason}");

    // Nothing was pulled and nothing was created.
    for image in &w.images {
        assert!(!image_present(image), "{image} was pulled");
    }
    assert!(containers(&node.label).is_empty());
    let audit_path = node.node.audit_path().to_path_buf();
    node.stop().await;
    let log = std::fs::read_to_string(&audit_path).unwrap();
    assert_eq!(log.matches("\"outcome\":\"rejected\"").count(), 2, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sources_are_mounted_read_only_by_name() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("cat_data", "cat-data", "v1");
    w.sign(&repo, &digest).await;
    let data = w.dir.path().join("records.csv");
    std::fs::write(&data, "age\n41\n").unwrap();
    // world-writable: only the read-only mount may stop a write
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let extra = format!("\n[data]\nrecords = \"{}\"\n", data.display());
    let config = w.node_config(&w.a, &w.signed_policy(&repo), &extra);
    let node = w.start_node(&config).await;
    let task = w
        .create_task(
            &format!("{repo}:v1"),
            &json!({"function": "cat", "args": "records"}),
            &[&w.a],
        )
        .await;
    let run = w.wait_final(task.runs[0].id, Duration::from_secs(60)).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    let out = String::from_utf8(w.result(run.id).await).unwrap();
    assert_eq!(out, "write: Read-only file system\nage\n41\n");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "age\n41\n");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_when_isolation_does_not_hold() {
    let w = World::new().await;
    let config = w.node_config(&w.a, "", "");
    // Replace the probe by one that reports a failed check.
    common::compile("false_probe", config.parent().unwrap());
    std::fs::rename(
        config.parent().unwrap().join("false_probe"),
        config.parent().unwrap().join("probe"),
    )
    .unwrap();
    let parsed = warden_node::config::Config::load(&config).unwrap();
    let err = warden_node::Node::start(parsed).await.unwrap_err();
    let text = err.to_string();
    // The override is named as the cause, with the way back to the built-in probe.
    assert!(
        matches!(err, warden_node::StartError::ProbeOverride { .. }),
        "{text}"
    );
    assert!(text.contains("FAIL network"), "{text}");
    assert!(text.contains("will not run algorithms"), "{text}");
    assert!(
        text.contains(&format!(
            "the probe {} that `[node] probe` names failed",
            config.parent().unwrap().join("probe").display()
        )),
        "{text}"
    );
    assert!(text.contains("remove `[node] probe`"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_override_that_is_no_program_is_a_refusal_to_start() {
    let w = World::new().await;
    let config = w.node_config(&w.a, "", "");
    std::fs::write(
        config.parent().unwrap().join("probe"),
        b"#!/bin/sh\nexit 0\n",
    )
    .unwrap();
    let parsed = warden_node::config::Config::load(&config).unwrap();
    let err = warden_node::Node::start(parsed).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, warden_node::StartError::ProbeOverride { .. }),
        "{text}"
    );
    assert!(text.contains("`[node] probe` names failed"), "{text}");
    assert!(text.contains("will not run algorithms"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_on_a_bad_policy() {
    let w = World::new().await;
    let config = w.node_config(
        &w.a,
        "[[allow]]\nrepository = \"x\"\nsigned_by = { keys = [\"missing.pub\"], threshold = 1 }",
        "",
    );
    let parsed = warden_node::config::Config::load(&config).unwrap();
    let err = warden_node::Node::start(parsed).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("policy.toml:") && text.contains("missing.pub"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_restricted_to_a_user_admits_that_users_task_and_rejects_anothers() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "users", "v1");
    w.sign(&repo, &digest).await;
    let policy = format!("{}users = [\"rita\"]\n", w.signed_policy(&repo));
    let config = w.node_config(&w.a, &policy, "");
    let node = w.start_node(&config).await;
    let bob = w.researcher_of_a("bob").await;

    let input = json!({"function": "hello", "args": null});
    let image = format!("{repo}:v1");
    let rita = w.create_task(&image, &input, &[&w.a]).await;
    assert_eq!(rita.task.creator_username.as_deref(), Some("rita"));
    let bobs = w.create_task_as(&bob, &image, &input, &[&w.a]).await;
    assert_eq!(bobs.task.creator_username.as_deref(), Some("bob"));
    let rita = w
        .wait_final(rita.runs[0].id, Duration::from_secs(120))
        .await;
    let bobs = w.wait_final(bobs.runs[0].id, Duration::from_secs(60)).await;

    assert_eq!(rita.state, RunState::Completed, "{:?}", rita.reason);
    assert_eq!(bobs.state, RunState::Rejected);
    let reason = bobs.reason.unwrap();
    assert!(reason.contains("user `bob` is not listed"), "{reason}");
    assert!(reason.contains("(precheck)"), "{reason}");
    assert_eq!(bobs.digest, None);

    // The audit log names each requesting user by name.
    let audit_path = node.node.audit_path().to_path_buf();
    node.stop().await;
    let log = std::fs::read_to_string(&audit_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|l| l.get("record").cloned())
        .collect();
    let of = |run: i64| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["run_id"] == run).collect()
    };
    let rita_lines = of(rita.id);
    assert!(!rita_lines.is_empty(), "{log}");
    assert!(rita_lines.iter().all(|l| l["user"] == "rita"), "{log}");
    let bob_lines = of(bobs.id);
    assert_eq!(bob_lines.len(), 1, "{log}");
    assert_eq!(bob_lines[0]["user"], "bob", "{log}");
    assert_eq!(bob_lines[0]["outcome"], "rejected", "{log}");
}

/// Runs the spool knew as received or admitted (no container yet) when the node stopped are
/// failed at the next start, with the reason, and never run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_spooled_before_their_container_are_failed_at_restart() {
    use warden_node::spool::{Phase, RunRecord, Spool};

    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "echo", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let image = format!("{repo}:v1");
    let mut runs = Vec::new();
    let spool = Spool::open(&config.parent().unwrap().join("spool")).unwrap();
    for phase in [Phase::Received, Phase::Admitted] {
        let task = w
            .create_task(&image, &json!({"function": "f"}), &[&w.a])
            .await;
        spool
            .save(&RunRecord {
                phase,
                ..RunRecord::received(
                    task.runs[0].id,
                    task.task.id,
                    task.task.collaboration_id,
                    task.task.organization_id,
                    &image,
                )
            })
            .unwrap();
        runs.push(task.runs[0].id);
    }
    drop(spool);

    let node = w.start_node(&config).await;
    for run in runs {
        let r = w.wait_final(run, Duration::from_secs(60)).await;
        assert_eq!(r.state, RunState::Failed, "{:?}", r.reason);
        assert_eq!(
            r.reason.as_deref(),
            Some("node restarted before the run started")
        );
    }
    assert!(containers(&node.label).is_empty());
    node.stop().await;
}

/// The value of the sample `name` (with its labels) in a Prometheus text answer.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_counts_runs_admissions_and_audit_appends() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "metrics", "v1");
    w.sign(&repo, &digest).await;
    let (unsigned, _) = w.push_program("echo", "metrics-unsigned", "v1");
    let config = w.node_config(
        &w.a,
        &w.signed_policy(&repo),
        "\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let node = w.start_node(&config).await;
    let addr = node.node.metrics_addr().expect("metrics listen is set");
    assert!(addr.ip().is_loopback(), "{addr}");
    let url = format!("http://{addr}/metrics");
    let scrape = || async {
        let resp = reqwest::get(&url).await.unwrap();
        assert_eq!(resp.status(), 200);
        let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        resp.text().await.unwrap()
    };
    let before = scrape().await;
    assert_eq!(
        sample(&before, "warden_node_runs_total{outcome=\"completed\"}"),
        0.0
    );
    assert_eq!(sample(&before, "warden_node_admission_seconds_count"), 0.0);
    assert_eq!(sample(&before, "warden_node_queue_depth"), 0.0);
    let appends = sample(&before, "warden_node_audit_appends_total{result=\"ok\"}");

    let input = json!({"function": "hello", "args": null});
    let ok = w.create_task(&format!("{repo}:v1"), &input, &[&w.a]).await;
    let ok = w.wait_final(ok.runs[0].id, Duration::from_secs(120)).await;
    assert_eq!(ok.state, RunState::Completed, "{:?}", ok.reason);
    let refused = w
        .create_task(&format!("{unsigned}:v1"), &input, &[&w.a])
        .await;
    let refused = w
        .wait_final(refused.runs[0].id, Duration::from_secs(60))
        .await;
    assert_eq!(refused.state, RunState::Rejected, "{:?}", refused.reason);

    let after = scrape().await;
    assert_eq!(
        sample(&after, "warden_node_runs_total{outcome=\"completed\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "warden_node_runs_total{outcome=\"rejected\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "warden_node_runs_total{outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(sample(&after, "warden_node_admission_seconds_count"), 2.0);
    assert_eq!(
        sample(&after, "warden_node_admission_seconds_bucket{le=\"+Inf\"}"),
        2.0
    );
    assert!(
        sample(&after, "warden_node_admission_seconds_sum") > 0.0,
        "{after}"
    );
    // The completed run's decision, logs and run, and the rejection, are on record.
    assert!(
        sample(&after, "warden_node_audit_appends_total{result=\"ok\"}") >= appends + 4.0,
        "{after}"
    );
    assert_eq!(sample(&after, "warden_node_queue_depth"), 0.0);
    assert!(sample(&after, "warden_node_spool_bytes") > 0.0, "{after}");
    // Only GET /metrics is served.
    let other = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(other.status(), 404);
    node.stop().await;
    // The listener stops with the node.
    assert!(reqwest::get(&url).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_override_is_the_probe_that_runs_and_the_status_names_it() {
    let mut w = World::new().await;
    // The test configuration names `probe = "probe"`, a static build of probe.c in the node's
    // directory: the override.
    let config = w.node_config(&w.a, "", "");
    let probe = config.parent().unwrap().join("probe");
    let node = w.start_node(&config).await;
    let socket = node.node.local_socket().unwrap();
    let status =
        tokio::task::spawn_blocking(move || warden_node::local::LocalClient::new(socket).status())
            .await
            .unwrap()
            .unwrap();
    assert!(status.self_check.passed);
    assert_eq!(
        status.self_check.probe,
        probe.canonicalize().unwrap().display().to_string()
    );
    node.stop().await;
    // Without the key the node runs the probe built into it, and says so.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("probe = \"probe\"\n", "");
    std::fs::write(&config, text).unwrap();
    std::fs::remove_file(&probe).unwrap();
    let node = w.start_node(&config).await;
    let socket = node.node.local_socket().unwrap();
    let status =
        tokio::task::spawn_blocking(move || warden_node::local::LocalClient::new(socket).status())
            .await
            .unwrap()
            .unwrap();
    assert!(status.self_check.passed);
    assert_eq!(status.self_check.probe, warden_node::embedded_probe_name());
    node.stop().await;
}
