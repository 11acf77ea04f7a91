//! A lying server in front of a real node: the node speaks to the real server through
//! `warden_testkit::lying::LyingProxy`, which rewrites the server's answers on demand, while the
//! researcher speaks to the real server directly. The proxy flips the collaboration's
//! `encrypted` flag and serves a plaintext input, names another image in the events and the
//! task, names another requesting organization, and replays another task's sealed input, with
//! and without that task's nonce. The honest path still completes with the result sealed; every
//! lie is refused with a reason that names it, recorded in the audit log, and nothing runs for
//! it.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::World;
use common::attack::{HELLO, audit_records, echo_image, refused};
use serde_json::{Value, json};
use warden_api::RunState;
use warden_testkit::lying::{LyingProxy, RequestInfo};

/// Every event in an events answer (a list, or a page of `items`).
fn events(v: &mut Value) -> Vec<&mut Value> {
    match v {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(o) => match o.get_mut("items") {
            Some(Value::Array(a)) => a.iter_mut().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Whether the request reads a task by id (`GET /api/tasks/{id}`).
fn reads_task(req: &RequestInfo) -> bool {
    req.is("GET", "/api/tasks/*")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_behind_a_lying_server_runs_nothing_it_was_not_asked_for() {
    common::init_tracing();
    let mut w = World::new().await;
    let (image, _) = echo_image(&mut w, "liar-echo").await;
    let (other, _) = echo_image(&mut w, "liar-other").await;
    let proxy = LyingProxy::start(&w.base).await.unwrap();
    // The node's policy admits both images: only the binding tells them apart.
    let policy = format!(
        "{}{}",
        w.signed_policy_for(&image),
        w.signed_policy_for(&other)
    );
    let config = w.node_config(&w.a, &policy, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let honest = format!("url = \"{}\"", w.base);
    assert!(text.contains(&honest), "{text}");
    std::fs::write(
        &config,
        text.replace(&honest, &format!("url = \"{}\"", proxy.url())),
    )
    .unwrap();
    let node = w.start_node(&config).await;
    let input: Value = serde_json::from_slice(HELLO).unwrap();

    // 1. The server says the collaboration is not encrypted. The node seals all the same: the
    //    run completes, and what the server stores is a sealed message, not the output.
    let flip = proxy.rewrite_json(|req, v| {
        if req.is("GET", "/api/collaborations/*") {
            v["encrypted"] = json!(false);
        }
    });
    let honest_task = w.create_task(&image, &input, &[&w.a]).await;
    let honest_run = honest_task.runs[0].id;
    let r = w.wait_final(honest_run, Duration::from_secs(90)).await;
    assert_eq!(r.state, RunState::Completed, "{:?}", r.reason);
    assert!(
        proxy.count("GET", "/api/collaborations/*") > 0,
        "the node asked through the proxy"
    );
    let stored = w
        .http
        .get(w.url(&format!("/api/runs/{honest_run}/result")))
        .bearer_auth(&w.rita.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored[0], warden_seal::envelope::VERSION, "sealed");
    assert!(
        !stored.windows(5).any(|x| x == b"echo:"),
        "the server holds the output in plaintext"
    );
    let out = w.result(honest_run).await;
    assert!(
        out.starts_with(b"env-ok echo:"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // ... and a plaintext input the server serves instead of the sealed one is refused.
    let plaintext = proxy.swap_body("GET", "/api/runs/*/input", HELLO.to_vec());
    let t = w.create_task(&image, &input, &[&w.a]).await;
    refused(&w, &config, t.runs[0].id, "requires sealed inputs", None).await;
    proxy.remove(plaintext);
    proxy.remove(flip);

    // 2. The server names another image, in the events and in the task, that the node's policy
    //    would admit: the input is bound to the researcher's image, and the other is never
    //    pulled.
    let other_image = other.clone();
    let swap = proxy.rewrite_json(move |req, v| {
        if req.path.starts_with("/api/events") {
            for e in events(v) {
                e["image"] = json!(other_image);
            }
        } else if reads_task(req) {
            v["task"]["image"] = json!(other_image);
        }
    });
    let t = w.create_task(&image, &input, &[&w.a]).await;
    let reason = refused(
        &w,
        &config,
        t.runs[0].id,
        "the input is bound to image",
        Some(&other),
    )
    .await;
    assert!(reason.contains("liar-other"), "{reason}");
    proxy.remove(swap);

    // 3. The server names another requesting organization: the node takes the requester from
    //    the certificate and refuses the mismatch.
    let b_id = w.b.id;
    let requester = proxy.rewrite_json(move |req, v| {
        if reads_task(req) {
            v["task"]["organization_id"] = json!(b_id);
        }
    });
    let t = w.create_task(&image, &input, &[&w.a]).await;
    let reason = refused(
        &w,
        &config,
        t.runs[0].id,
        "refusing a requester mismatch",
        None,
    )
    .await;
    assert!(
        reason.contains(&w.b.name) && reason.contains(&w.a.name),
        "{reason}"
    );
    proxy.remove(requester);

    // 4. The server replays the honest task's sealed input into a new task: the binding names
    //    the other task's nonce. Rewriting the new task's nonce to match is caught by the
    //    node's replay cache.
    let first_input = proxy
        .exchanges()
        .into_iter()
        .find(|e| e.is("GET", &format!("/api/runs/{honest_run}/input")))
        .expect("the node fetched the honest input through the proxy")
        .body;
    let honest_nonce = honest_task.task.nonce.clone().unwrap();
    let replay = proxy.swap_body("GET", "/api/runs/*/input", first_input.clone());
    let t = w.create_task(&image, &input, &[&w.a]).await;
    let reason = refused(
        &w,
        &config,
        t.runs[0].id,
        "the input is bound to task nonce",
        None,
    )
    .await;
    assert!(reason.contains(&honest_nonce), "{reason}");

    let seen = Arc::new(Mutex::new(0usize));
    let seen_in_rule = seen.clone();
    let nonce = honest_nonce.clone();
    let renonce = proxy.rewrite_json(move |req, v| {
        if reads_task(req) {
            v["task"]["nonce"] = json!(nonce);
            *seen_in_rule.lock().unwrap() += 1;
        }
    });
    let t = w.create_task(&image, &input, &[&w.a]).await;
    let reason = refused(&w, &config, t.runs[0].id, "was already used by run", None).await;
    assert!(reason.contains(&honest_run.to_string()), "{reason}");
    assert!(
        *seen.lock().unwrap() > 0,
        "the node read the rewritten task"
    );
    proxy.remove(renonce);
    proxy.remove(replay);

    // Through it all the honest run is the only one the audit log shows as run.
    let runs: Vec<Value> = audit_records(&config, honest_run);
    assert!(
        runs.iter()
            .any(|r| r["event"] == "run" && r["outcome"] == "completed"),
        "{runs:?}"
    );
    node.stop().await;
    proxy.stop().await;
}

/// With the event push refused (the proxy answers every WebSocket upgrade 503) the node polls
/// `GET /api/events` every `poll_secs` and retries the push with exponential backoff up to
/// `max_backoff_secs`, rather than polling every 250 ms; a run created meanwhile still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_push_refused_the_node_polls_every_poll_secs() {
    common::init_tracing();
    let mut w = World::new().await;
    let (image, _) = echo_image(&mut w, "poll-echo").await;
    let proxy = LyingProxy::start(&w.base).await.unwrap();
    let config = w.node_config(&w.a, &w.signed_policy_for(&image), "");
    let text = std::fs::read_to_string(&config).unwrap();
    let honest = format!("url = \"{}\"", w.base);
    assert!(text.contains(&honest), "{text}");
    assert!(text.contains("poll_secs = 1\n"), "{text}");
    assert!(text.contains("max_backoff_secs = 1\n"), "{text}");
    std::fs::write(
        &config,
        text.replace(&honest, &format!("url = \"{}\"", proxy.url()))
            .replace("max_backoff_secs = 1\n", "max_backoff_secs = 8\n"),
    )
    .unwrap();
    let node = w.start_node(&config).await;

    // Let the intake settle into polling, then count over about 4 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        proxy.count("GET", "/api/events/ws") > 0,
        "the node tried the push"
    );
    proxy.clear_exchanges();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let polls = proxy.count("GET", "/api/events");
    let pushes = proxy.count("GET", "/api/events/ws");
    assert!(
        (1..=8).contains(&polls),
        "{polls} event polls in about 4 s with poll_secs = 1"
    );
    assert!(
        pushes <= 4,
        "{pushes} push attempts in about 4 s with backoff from 250 ms"
    );

    // A run created meanwhile is picked up by the poll and completes.
    let input: Value = serde_json::from_slice(HELLO).unwrap();
    let t = w.create_task(&image, &input, &[&w.a]).await;
    let r = w.wait_final(t.runs[0].id, Duration::from_secs(90)).await;
    assert_eq!(r.state, RunState::Completed, "{:?}", r.reason);
    assert!(
        proxy.count("GET", "/api/events/ws") <= pushes + 3,
        "the push backoff kept growing while polls succeeded"
    );
    node.stop().await;
    proxy.stop().await;
}
