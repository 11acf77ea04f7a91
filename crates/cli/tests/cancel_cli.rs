//! `warden task cancel` as a researcher runs it, end to end: the real binary, the real server, a
//! real registry, the Docker engine and a `warden node start` process running a sleeping
//! algorithm. The node kills the container, nothing of the run reaches the server, and the
//! node's audit log (its chain verified) records the cancellation; a second cancel changes
//! nothing. A lying server (events planted in its SQLite database) cannot make a node act on a
//! run it does not have.
//!
//! The time from the cancel request to the container being gone is printed
//! (`cancel-to-gone-ms`) for BENCHMARKS.md; nothing here asserts a duration.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod researcher;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use researcher::{PASSWORD, World};
use serde_json::Value;
use warden_runtime::{DockerEngine, Engine as _, LABEL_NODE, LABEL_RUN};

/// Longest wait for a state or a container to appear or go (a bound for polling, not a figure).
const WAIT: Duration = Duration::from_secs(120);

fn node_dir(w: &World, name: &str) -> PathBuf {
    w.dir.path().join(format!("node-{name}"))
}

/// The label `World::start_node` gives the node of `name`.
fn label(name: &str) -> String {
    format!("cli{}-{name}", std::process::id())
}

/// IDs of the containers of `run` the node labelled `label` has, asked of the Docker API.
async fn containers(docker: &DockerEngine, label: &str, run: i64) -> Vec<String> {
    let mut out = Vec::new();
    for id in docker.list_containers(LABEL_NODE, label).await.unwrap() {
        if let Ok(info) = docker.inspect_container(&id).await
            && info.labels.get(LABEL_RUN).map(String::as_str) == Some(&format!("run-{run}"))
        {
            out.push(id);
        }
    }
    out
}

/// The run's state at the server (as the researcher reads it).
async fn state(w: &World, token: &str, run: i64) -> Value {
    let (s, v) = w
        .call(
            reqwest::Method::GET,
            token,
            &format!("/api/runs/{run}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Polls until the run is running at the server and its container exists.
async fn until_running(w: &World, docker: &DockerEngine, token: &str, run: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = state(w, token, run).await;
        if v["state"] == "running"
            && !containers(docker, &label("hospital-b"), run)
                .await
                .is_empty()
        {
            return;
        }
        assert!(
            Instant::now() < deadline
                && !matches!(
                    v["state"].as_str(),
                    Some("completed" | "failed" | "rejected" | "cancelled")
                ),
            "run {run} never ran: {v}\n{}",
            w.node_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every audit record of the node's log.
fn audit(w: &World, name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(node_dir(w, name).join("audit/audit.log")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|e| e.get("record").cloned())
        .collect()
}

/// `warden audit verify` on the node's log with the public half of its signing key.
async fn verify_audit(w: &World, name: &str) -> Value {
    let d = node_dir(w, name);
    let pem = std::fs::read_to_string(d.join("audit.key")).unwrap();
    let password = std::fs::read_to_string(d.join("audit.pw")).unwrap();
    let key =
        warden_trust::SigningKey::from_encrypted_pem(&pem, password.trim().as_bytes()).unwrap();
    let public = d.join("audit.pub");
    std::fs::write(&public, key.public_key().to_pem()).unwrap();
    let out = w
        .warden(
            &[
                "audit",
                "verify",
                "--key",
                public.to_str().unwrap(),
                d.join("audit/audit.log").to_str().unwrap(),
                "--json",
            ],
            &[],
        )
        .await;
    // Exit 0: every line links and every checkpoint verifies (the newest entries may not be
    // under a checkpoint yet: `uncovered`).
    assert_eq!(out.code, 0, "{out}");
    let v = out.json();
    assert!(
        matches!(v["status"].as_str(), Some("intact" | "uncovered")),
        "{v}"
    );
    v
}

/// Creates a task at hospital-b that sleeps `secs`; returns its id and its run's id.
async fn sleeping_task(w: &World, profile: &str, image: &str, secs: u32) -> (String, i64) {
    let input = format!(r#"{{"function":"f","args":{{"sleep":{secs}}}}}"#);
    let out = w
        .warden(
            &[
                "task",
                "create",
                "--profile-file",
                profile,
                "--image",
                image,
                "--org",
                "hospital-b",
                "--input",
                &input,
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    let task = out.task_id();
    let run = w.query(&format!("SELECT id FROM runs WHERE task_id = {task}"));
    (task, run[0].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_container_keeps_nothing_of_the_run_and_is_audited_and_idempotent() {
    let mut w = World::with_registry().await;
    let docker = DockerEngine::connect().await.unwrap();
    let (repo, _) = w.push_signed("slow", "cancel-slow", "v1").await;
    w.start_node("hospital-b", &w.signed_policy(&repo));
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let image = format!("{repo}:v1");
    let token = w.login("rita", PASSWORD).await;
    let (task, run) = sleeping_task(&w, p, &image, 50).await;
    until_running(&w, &docker, &token, run).await;

    // The researcher cancels; the container is gone soon after (the figure is printed).
    let asked = Instant::now();
    let out = w
        .warden(&["task", "cancel", "--profile-file", p, &task], &[])
        .await;
    assert_eq!(out.code, 0, "{out}\n{}", w.node_logs());
    assert!(
        out.stdout
            .starts_with(&format!("task {task} cancelled by rita at ")),
        "{out}"
    );
    assert!(
        out.stdout
            .contains(&format!("hospital-b: run {run} cancelled")),
        "{out}"
    );
    let deadline = asked + WAIT;
    while !containers(&docker, &label("hospital-b"), run)
        .await
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the container stays\n{}",
            w.node_logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let gone = asked.elapsed();
    println!(
        "cancel-to-gone-ms {:.0} (warden task cancel started -> the run's container gone, Docker API polled every 10 ms)",
        gone.as_secs_f64() * 1e3
    );

    // At the server: cancelled, no result, no logs; the task says who cancelled it.
    let v = state(&w, &token, run).await;
    assert_eq!(
        (&v["state"], &v["has_result"]),
        (&"cancelled".into(), &false.into()),
        "{v}"
    );
    // The node does not upload anything afterwards (nor report another state): wait out what
    // a node that ignored the cancel would have needed to finish and deliver.
    let node_log = node_dir(&w, "hospital-b").join("node.log");
    let until = Instant::now() + WAIT;
    loop {
        let log = std::fs::read_to_string(&node_log).unwrap_or_default();
        if log.contains("run cancelled at the server's request")
            && log.contains("the run was cancelled; its outcome is discarded")
        {
            break;
        }
        assert!(Instant::now() < until, "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = w.query(&format!(
        "SELECT count(*) FROM results WHERE run_id = {run}; \
         SELECT count(*) FROM run_logs WHERE run_id = {run}"
    ));
    assert_eq!(stored, ["0", "0"], "{}", w.node_logs());
    let spool = node_dir(&w, "hospital-b").join(format!("spool/runs/{run}"));
    assert!(
        !spool.exists(),
        "the node keeps nothing of the run in {}",
        spool.display()
    );

    // The node's audit log records the cancellation with who cancelled it, as the server
    // claims it; the chain verifies.
    let records = audit(&w, "hospital-b");
    let cancels: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "cancel" && r["run_id"] == run)
        .collect();
    assert_eq!(cancels.len(), 1, "{records:?}");
    assert_eq!(cancels[0]["outcome"], "cancelled", "{:?}", cancels[0]);
    let reason = cancels[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("by rita (the server's claim)") && reason.contains("stopped"),
        "{reason}"
    );
    // No record says the run completed or failed.
    assert!(
        !records.iter().any(|r| r["run_id"] == run
            && r["event"] == "run"
            && matches!(r["outcome"].as_str(), Some("completed" | "failed"))),
        "{records:?}"
    );
    verify_audit(&w, "hospital-b").await;

    // Again: the same answer, no second audit record; --json says the same.
    let again = w
        .warden(
            &["task", "cancel", "--profile-file", p, &task, "--json"],
            &[],
        )
        .await;
    assert_eq!(again.code, 0, "{again}");
    let j = again.json();
    assert_eq!(j["task"]["cancelled_by"], "rita", "{j}");
    assert_eq!(j["runs"][0]["state"], "cancelled", "{j}");
    assert_eq!(j["runs"][0]["organization"], "hospital-b", "{j}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cancels = audit(&w, "hospital-b")
        .into_iter()
        .filter(|r| r["event"] == "cancel")
        .count();
    assert_eq!(cancels, 1);

    // `task wait` sees a final state at once: a cancelled run is not a completed one (exit 1).
    let waited = w
        .warden(
            &[
                "task",
                "wait",
                "--profile-file",
                p,
                &task,
                "--timeout",
                "30",
            ],
            &[],
        )
        .await;
    assert_eq!(waited.code, 1, "{waited}");
    assert!(
        waited.stdout.contains("\ncancelled by rita at "),
        "{waited}"
    );
    assert!(
        waited
            .stdout
            .contains(&format!("hospital-b: run {run} cancelled")),
        "{waited}"
    );
    assert!(
        waited
            .stderr
            .contains(&format!("hospital-b: run {run} cancelled")),
        "{waited}"
    );

    // Refusals are exit 1 with the server's reason: a task that had ended, an unknown task.
    let (done, done_run) = sleeping_task(&w, p, &image, 0).await;
    let ended = w.run_state(done_run, WAIT).await;
    assert_eq!(ended["state"], "completed", "{ended}\n{}", w.node_logs());
    let refused = w
        .warden(&["task", "cancel", "--profile-file", p, &done], &[])
        .await;
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("nothing to cancel"), "{refused}");
    assert!(refused.stdout.is_empty(), "{refused}");
    let unknown = w
        .warden(&["task", "cancel", "--profile-file", p, "999999"], &[])
        .await;
    assert_eq!(unknown.code, 1, "{unknown}");
    assert!(unknown.stderr.contains("no such task"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_ignores_a_cancel_for_a_run_it_does_not_have() {
    let mut w = World::with_registry().await;
    let docker = DockerEngine::connect().await.unwrap();
    let (repo, _) = w.push_signed("slow", "cancel-lying", "v1").await;
    w.start_node("hospital-b", &w.signed_policy(&repo));
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let image = format!("{repo}:v1");
    let token = w.login("rita", PASSWORD).await;
    let (_, own) = sleeping_task(&w, p, &image, 50).await;
    until_running(&w, &docker, &token, own).await;
    // A run of hospital-a (which has no node here): pending at the server.
    let out = w
        .warden(
            &[
                "task",
                "create",
                "--profile-file",
                p,
                "--image",
                &image,
                "--org",
                "hospital-a",
                "--input",
                r#"{"function":"f","args":{"sleep":1}}"#,
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    let other: i64 = w.query(&format!(
        "SELECT id FROM runs WHERE task_id = {}",
        out.task_id()
    ))[0]
        .parse()
        .unwrap();

    // The lying server tells hospital-b's node that hospital-a's run was cancelled, and that
    // a run that does not exist was; then a real new run wakes the node's event push.
    w.tamper(&format!(
        "INSERT INTO events (collaboration_id, organization_id, kind, run_id, created_at) \
         VALUES ({c}, {b}, 'run_cancelled', {other}, 0)",
        c = w.collab,
        b = w.b.id
    ));
    let (_, woke) = sleeping_task(&w, p, &image, 1).await;
    let ended = w.run_state(woke, WAIT).await;
    assert_eq!(ended["state"], "completed", "{ended}\n{}", w.node_logs());

    // It ignored the cancel, saying so: its own run still runs, the other organization's run
    // was neither started nor touched, and no cancellation is in its audit log.
    let log = w.node_logs();
    assert!(
        log.contains("the server cancelled a run this node does not have; ignored"),
        "{log}"
    );
    assert_eq!(state(&w, &token, own).await["state"], "running");
    assert_eq!(
        containers(&docker, &label("hospital-b"), own).await.len(),
        1
    );
    assert_eq!(state(&w, &token, other).await["state"], "pending");
    assert!(
        containers(&docker, &label("hospital-b"), other)
            .await
            .is_empty()
    );
    let records = audit(&w, "hospital-b");
    assert!(
        !records
            .iter()
            .any(|r| r["event"] == "cancel" || r["run_id"] == other),
        "{records:?}"
    );
    verify_audit(&w, "hospital-b").await;
}

/// `text` without the terminal colour sequences the node's log may hold.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `warden node status --json` of hospital-b's node.
async fn node_status(w: &World) -> Value {
    let socket = node_dir(w, "hospital-b").join("spool/local.sock");
    let out = w
        .warden(
            &[
                "node",
                "status",
                "--socket",
                socket.to_str().unwrap(),
                "--json",
            ],
            &[],
        )
        .await;
    out.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_drops_a_result_held_at_the_airlock_and_a_queued_run_never_starts() {
    let mut w = World::with_registry().await;
    let docker = DockerEngine::connect().await.unwrap();
    let (repo, _) = w.push_signed("slow", "cancel-held", "v1").await;
    // Results wait for the data owner's release; one run at a time, so a second one queues.
    let policy = format!(
        "{}[allow.output]\nrelease = \"manual\"\n",
        w.signed_policy(&repo)
    );
    w.start_node_with("hospital-b", &policy, "concurrent_runs = 1\n");
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let image = format!("{repo}:v1");
    let token = w.login("rita", PASSWORD).await;

    // A result held at the airlock, a run in its container, and one queued behind it.
    let (held_task, held) = sleeping_task(&w, p, &image, 0).await;
    let deadline = Instant::now() + WAIT;
    while state(&w, &token, held).await["state"] != "awaiting_release" {
        assert!(Instant::now() < deadline, "{}", w.node_logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (running_task, running) = sleeping_task(&w, p, &image, 50).await;
    until_running(&w, &docker, &token, running).await;
    let (queued_task, queued) = sleeping_task(&w, p, &image, 50).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let s = node_status(&w).await;
        if s["runs"]["queued"]["ids"] == serde_json::json!([queued]) {
            assert_eq!(
                s["runs"]["held_results"]["ids"],
                serde_json::json!([held]),
                "{s}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{s}\n{}", w.node_logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The held result is dropped: nothing is pending at the node, nothing at the server.
    for task in [&held_task, &queued_task] {
        let out = w
            .warden(&["task", "cancel", "--profile-file", p, task], &[])
            .await;
        assert_eq!(out.code, 0, "{out}");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let s = node_status(&w).await;
        if s["runs"]["held_results"]["count"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{s}\n{}", w.node_logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let socket = node_dir(&w, "hospital-b").join("spool/local.sock");
    let pending = w
        .warden(
            &[
                "node",
                "pending",
                "--socket",
                socket.to_str().unwrap(),
                "--json",
            ],
            &[],
        )
        .await;
    assert_eq!(pending.code, 0, "{pending}");
    assert_eq!(
        pending.json()["results"],
        serde_json::json!([]),
        "{pending}"
    );
    // Releasing it now finds nothing to release.
    let release = w
        .warden(
            &[
                "node",
                "release",
                &held.to_string(),
                "--socket",
                socket.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_ne!(release.code, 0, "{release}");

    // Cancelling the running one frees the slot; the queued run leaves the queue unstarted.
    let out = w
        .warden(&["task", "cancel", "--profile-file", p, &running_task], &[])
        .await;
    assert_eq!(out.code, 0, "{out}");
    let deadline = Instant::now() + WAIT;
    while !plain(&w.node_logs()).contains(&format!(
        "a cancelled run left the queue without starting run={queued}"
    )) {
        assert!(Instant::now() < deadline, "{}", w.node_logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        containers(&docker, &label("hospital-b"), queued)
            .await
            .is_empty()
    );
    assert!(
        containers(&docker, &label("hospital-b"), running)
            .await
            .is_empty()
    );
    for run in [held, running, queued] {
        let v = state(&w, &token, run).await;
        assert_eq!(
            (&v["state"], &v["has_result"]),
            (&"cancelled".into(), &false.into()),
            "{v}"
        );
    }
    let stored = w.query("SELECT count(*) FROM results; SELECT count(*) FROM run_logs");
    assert_eq!(stored, ["0", "0"]);

    // One cancel record each, saying what became of the run; the queued run never had a
    // container, the held result never a release.
    let records = audit(&w, "hospital-b");
    let reason = |run: i64| -> String {
        let r: Vec<&Value> = records
            .iter()
            .filter(|r| r["event"] == "cancel" && r["run_id"] == run)
            .collect();
        assert_eq!(r.len(), 1, "{run}: {records:?}");
        r[0]["reason"].as_str().unwrap().to_owned()
    };
    assert!(
        reason(held).contains("held for release was dropped"),
        "{records:?}"
    );
    assert!(reason(running).contains("stopped"), "{records:?}");
    assert!(reason(queued).contains("stopped"), "{records:?}");
    assert!(
        !records
            .iter()
            .any(|r| r["run_id"] == queued && r["event"] == "run"),
        "{records:?}"
    );
    assert!(
        !records
            .iter()
            .any(|r| r["run_id"] == held && r["event"] == "release"),
        "{records:?}"
    );
    verify_audit(&w, "hospital-b").await;
}
