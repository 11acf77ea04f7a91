//! The proxy against real parts: subtasks at another organization's node, results opened by the
//! node, and an algorithm that calls what it may not. The scripted client is
//! tests/programs/proxy_script.c; each request it makes is one output line `<status> <body>`.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{World, containers};
use serde_json::{Value, json};
use warden_api::RunState;

/// The output lines of a finished proxy_script run at organization A.
async fn script_lines(w: &World, image: &str, script: &str) -> Vec<String> {
    let task = w
        .create_task(
            image,
            &json!({"function": "script", "args": script}),
            &[&w.a],
        )
        .await;
    let run = w
        .wait_final(task.runs[0].id, Duration::from_secs(120))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    String::from_utf8(w.result(run.id).await)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn status_and_body(line: &str) -> (u16, Value) {
    let (status, body) = line.split_once(' ').unwrap();
    (
        status.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_central_run_creates_a_subtask_at_another_node_and_reads_its_opened_result() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script", "v1");
    w.sign(&repo, &digest).await;
    let policy = w.signed_policy(&repo);
    let config_a = w.node_config(&w.a, &policy, "");
    let config_b = w.node_config(&w.b, &policy, "");
    let node_a = w.start_node(&config_a).await;
    let node_b = w.start_node(&config_b).await;

    let script = format!(
        "GET /v1/organizations;\
         POST /v1/subtasks {{'function':'part','args':'GET /v1/organizations','organizations':[{b}]}};\
         GET /v1/subtasks/LAST/results?wait=60",
        b = w.b.id
    );
    let lines = script_lines(&w, &format!("{repo}:v1"), &script).await;
    assert_eq!(lines.len(), 3, "{lines:?}");

    let (s, orgs) = status_and_body(&lines[0]);
    assert_eq!(s, 200, "{lines:?}");
    let names: Vec<&str> = orgs["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hospital-a", "hospital-b"]);

    let (s, created) = status_and_body(&lines[1]);
    assert_eq!(s, 200, "{lines:?}");
    let subtask = created["task_id"].as_i64().unwrap();

    let (s, results) = status_and_body(&lines[2]);
    assert_eq!(s, 200, "{lines:?}");
    assert_eq!(results["complete"], true, "{results}");
    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["organization_id"], w.b.id);
    assert_eq!(runs[0]["state"], "completed");
    let inner = base64::engine::general_purpose::STANDARD
        .decode(runs[0]["result"].as_str().unwrap())
        .unwrap();
    let inner = String::from_utf8(inner).unwrap();
    assert!(
        inner.starts_with("200 ") && inner.contains("hospital-b"),
        "{inner}"
    );

    // The subtask is a child of the central task, pinned to the same digest, and what the
    // server stores is ciphertext: it does not parse as the plaintext line.
    let (s, detail) = w
        .call(
            reqwest::Method::GET,
            &w.researcher,
            &format!("/api/tasks/{subtask}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{detail}");
    assert_eq!(
        detail["task"]["image"].as_str().unwrap(),
        format!("{repo}@{digest}")
    );
    assert!(containers(&node_a.label).is_empty());
    assert!(containers(&node_b.label).is_empty());
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_algorithm_that_abuses_the_proxy_is_refused_each_time_and_the_node_stays_up() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script", "v1");
    w.sign(&repo, &digest).await;
    let policy = w.signed_policy(&repo);
    let config = w.node_config(&w.a, &policy, "proxy_request_bytes = 1024\n");
    let node = w.start_node(&config).await;
    let image = format!("{repo}:v1");

    // A first run reveals its token; it is dead once that run ended.
    let first = script_lines(&w, &image, "TOKEN").await;
    let old_token = first[0].strip_prefix("TOKEN ").unwrap().to_owned();
    assert_eq!(old_token.len(), 64);
    let (s, other_task) = w
        .call(
            reqwest::Method::GET,
            &w.researcher,
            "/api/tasks?limit=1",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let other_task = other_task["items"][0]["id"].as_i64().unwrap();

    let big = "x".repeat(2000);
    let script = [
        "T=NONE GET /v1/organizations".to_owned(),
        "T=0000000000000000000000000000000000000000000000000000000000000000 GET /v1/organizations".to_owned(),
        format!("T={old_token} GET /v1/organizations"),
        "GET /api/tasks".to_owned(),
        // The vantage6 API is served only to runs under the vantage6 contract.
        "GET /api/organization".to_owned(),
        "GET /v1/subtasks".to_owned(),
        format!("GET /v1/subtasks/{other_task}/results"),
        format!("POST /v1/subtasks {{'function':'f','args':1,'organizations':[{}],'image':'evil.example/x:1'}}", w.b.id),
        "POST /v1/subtasks {'function':'f','args':1,'organizations':[99999]}".to_owned(),
        "POST /v1/subtasks {'function':'f','args':1,'organizations':[]}".to_owned(),
        format!("POST /v1/subtasks {{'function':'f','args':'{big}','organizations':[{}]}}", w.b.id),
        "GET /v1/subtasks/1/results?wait=999".to_owned(),
        "GET /v1/organizations".to_owned(),
    ]
    .join(";");
    let lines = script_lines(&w, &image, &script).await;
    let statuses: Vec<u16> = lines.iter().map(|l| status_and_body(l).0).collect();
    assert_eq!(
        statuses,
        [
            401, 401, 401, 404, 404, 404, 403, 400, 403, 400, 413, 400, 200
        ],
        "{lines:#?}"
    );
    for line in &lines[..12] {
        let (_, body) = status_and_body(line);
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "every refusal has a reason: {line}");
    }
    assert!(lines[2].contains("token"), "{}", lines[2]);
    assert!(
        lines[6].contains("not a subtask created by this run"),
        "{}",
        lines[6]
    );
    assert!(lines[7].contains("unknown field `image`"), "{}", lines[7]);
    assert!(lines[8].contains("not a member"), "{}", lines[8]);

    // No subtask was created by any of it, and the node still runs algorithms.
    let (_, tasks) = w
        .call(
            reqwest::Method::GET,
            &w.researcher,
            "/api/tasks?limit=50",
            None,
        )
        .await;
    assert!(
        tasks["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["parent_task_id"].is_null()),
        "{tasks}"
    );
    let after = script_lines(&w, &image, "GET /v1/organizations").await;
    assert!(after[0].starts_with("200 "), "{after:?}");
    assert!(containers(&node.label).is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_requests_are_rate_limited() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(
        &w.a,
        &w.signed_policy(&repo),
        "proxy_requests_per_second = 3\n",
    );
    let node = w.start_node(&config).await;
    let script = ["GET /v1/nothing"; 10].join(";");
    let lines = script_lines(&w, &format!("{repo}:v1"), &script).await;
    let statuses: Vec<u16> = lines.iter().map(|l| status_and_body(l).0).collect();
    assert_eq!(&statuses[..3], [404, 404, 404], "{lines:?}");
    assert!(statuses.contains(&429), "{lines:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subtask_another_node_rejects_comes_back_with_its_reason_and_no_result() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script", "v1");
    w.sign(&repo, &digest).await;
    let config_a = w.node_config(&w.a, &w.signed_policy(&repo), "");
    // B's data owner admits nothing from this repository.
    let config_b = w.node_config(&w.b, "[[allow]]\nrepository = \"example.org/other\"\n", "");
    let node_a = w.start_node(&config_a).await;
    let node_b = w.start_node(&config_b).await;
    let script = format!(
        "POST /v1/subtasks {{'function':'part','args':'GET /v1/organizations','organizations':[{b}]}};\
         GET /v1/subtasks/LAST/results?wait=60",
        b = w.b.id
    );
    let lines = script_lines(&w, &format!("{repo}:v1"), &script).await;
    let (s, results) = status_and_body(&lines[1]);
    assert_eq!(s, 200, "{lines:?}");
    assert_eq!(results["complete"], true);
    let run = &results["runs"][0];
    assert_eq!(run["state"], "rejected", "{results}");
    assert!(run["result"].is_null());
    let reason = run["reason"].as_str().unwrap();
    assert!(
        reason.contains("no allow rule names repository"),
        "{reason}"
    );
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_body_times_out_and_a_body_that_is_not_an_object_is_refused() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let node = w.start_node(&config).await;
    let b = w.b.id;
    let script = [
        // Announces 200 bytes, sends fewer and keeps the connection open.
        format!("L=200 POST /v1/subtasks {{'function':'f','args':1,'organizations':[{b}]}}"),
        format!("POST /v1/subtasks [{{'function':'f','args':1,'organizations':[{b}]}}]"),
        format!("POST /v1/subtasks ['f',1,[{b}],null]"),
        "POST /v1/subtasks 'f'".to_owned(),
        "GET /v1/organizations".to_owned(),
    ]
    .join(";");
    let started = std::time::Instant::now();
    let lines = script_lines(&w, &format!("{repo}:v1"), &script).await;
    let statuses: Vec<u16> = lines.iter().map(|l| status_and_body(l).0).collect();
    assert_eq!(statuses, [408, 400, 400, 400, 200], "{lines:#?}");
    let message = |i: usize| {
        status_and_body(&lines[i]).1["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        message(0).contains("did not arrive within 3 s") && message(0).contains("of 200"),
        "{}",
        message(0)
    );
    for i in 1..4 {
        assert!(
            message(i).contains("must be a JSON object"),
            "{}",
            message(i)
        );
    }
    // Answered after the timeout, not at the run's end.
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "{:?}",
        started.elapsed()
    );
    // Nothing was created.
    let (_, tasks) = w
        .call(
            reqwest::Method::GET,
            &w.researcher,
            "/api/tasks?limit=50",
            None,
        )
        .await;
    assert!(
        tasks["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["parent_task_id"].is_null()),
        "{tasks}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subtask_count_and_the_result_size_caps_are_enforced() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script", "v1");
    w.sign(&repo, &digest).await;
    let policy = w.signed_policy(&repo);
    let config_a = w.node_config(&w.a, &policy, "max_subtasks = 1\nproxy_result_bytes = 16\n");
    let config_b = w.node_config(&w.b, &policy, "");
    let node_a = w.start_node(&config_a).await;
    let node_b = w.start_node(&config_b).await;
    let script = format!(
        "POST /v1/subtasks {{'function':'part','args':'GET /v1/organizations','organizations':[{b}]}};\
         POST /v1/subtasks {{'function':'part','args':'GET /v1/organizations','organizations':[{b}]}};\
         GET /v1/subtasks/LAST/results?wait=60",
        b = w.b.id
    );
    let lines = script_lines(&w, &format!("{repo}:v1"), &script).await;
    let statuses: Vec<u16> = lines.iter().map(|l| status_and_body(l).0).collect();
    assert_eq!(statuses, [200, 403, 413], "{lines:#?}");
    assert!(
        lines[1].contains("already created 1 subtasks, the node's limit"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("larger than the node's cap of 16 bytes"),
        "{}",
        lines[2]
    );
    // Exactly one subtask exists, and its run at B completed: only its delivery was capped.
    let (_, tasks) = w
        .call(
            reqwest::Method::GET,
            &w.researcher,
            "/api/tasks?limit=50",
            None,
        )
        .await;
    let children: Vec<&Value> = tasks["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["parent_task_id"].is_null())
        .collect();
    assert_eq!(children.len(), 1, "{tasks}");
    node_a.stop().await;
    node_b.stop().await;
}

/// The output lines of the result of the first subtask run in a results answer `line`.
fn nested_lines(line: &str) -> Vec<String> {
    let (s, body) = status_and_body(line);
    assert_eq!(s, 200, "{line}");
    let result = body["runs"][0]["result"]
        .as_str()
        .unwrap_or_else(|| panic!("no result: {line}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(result)
        .unwrap();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recursive_algorithm_stops_at_the_nodes_subtask_depth() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "max_subtask_depth = 2\n");
    let node = w.start_node(&config).await;
    let lines = script_lines(&w, &format!("{repo}:v1"), &format!("DEEP {}", w.a.id)).await;
    // Depth 0 and 1 create their subtask; the run at depth 2 is refused.
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(status_and_body(&lines[0]).0, 200, "{lines:#?}");
    let depth1 = nested_lines(&lines[1]);
    assert_eq!(depth1.len(), 2, "{depth1:#?}");
    assert_eq!(status_and_body(&depth1[0]).0, 200, "{depth1:#?}");
    let depth2 = nested_lines(&depth1[1]);
    assert_eq!(depth2.len(), 1, "{depth2:#?}");
    let (s, body) = status_and_body(&depth2[0]);
    assert_eq!(s, 403, "{depth2:#?}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("subtask depth 2, the node's limit of 2 (limits.max_subtask_depth)"),
        "{message}"
    );
    // Three tasks in the chain, no fourth.
    let (_, tasks) = w
        .call(
            reqwest::Method::GET,
            &w.researcher,
            "/api/tasks?limit=50",
            None,
        )
        .await;
    assert_eq!(tasks["items"].as_array().unwrap().len(), 3, "{tasks}");
    assert!(containers(&node.label).is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subtask_over_the_memory_budget_fails_naming_the_budget() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script-mem", "v1");
    w.sign(&repo, &digest).await;
    // Room for eight containers, but memory for one: the central run's container, waiting
    // for its subtask, still counts its memory limit, so the subtask's finds none.
    let config = w.node_config(
        &w.a,
        &w.signed_policy(&repo),
        "concurrent_runs = 1\nmax_containers = 8\nmemory_budget_bytes = 100000000\n\
         container_wait_secs = 2\n",
    );
    let node = w.start_node(&config).await;
    let script = format!(
        "POST /v1/subtasks {{'function':'part','args':'GET /v1/organizations','organizations':[{a}]}};\
         GET /v1/subtasks/LAST/results?wait=60",
        a = w.a.id
    );
    let lines = script_lines(&w, &format!("{repo}:v1"), &script).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let (s, results) = status_and_body(&lines[1]);
    assert_eq!(s, 200, "{lines:#?}");
    let run = &results["runs"][0];
    assert_eq!(run["state"], "failed", "{results}");
    let reason = run["reason"].as_str().unwrap();
    assert!(
        reason.contains("the node's memory budget of 100000000 bytes (limits.memory_budget_bytes)")
            && reason.contains("67108864 bytes each"),
        "{reason}"
    );
    // The central run itself completed: the budget held one container.
    assert!(containers(&node.label).is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subtask_that_finds_no_room_for_a_container_fails_naming_the_cap() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script", "v1");
    w.sign(&repo, &digest).await;
    // One run computes at a time and one container may be alive: the central run lends its
    // slot while it waits, but its container keeps the only room.
    let config = w.node_config(
        &w.a,
        &w.signed_policy(&repo),
        "concurrent_runs = 1\nmax_containers = 1\ncontainer_wait_secs = 2\n",
    );
    let node = w.start_node(&config).await;
    let script = format!(
        "POST /v1/subtasks {{'function':'part','args':'GET /v1/organizations','organizations':[{a}]}};\
         GET /v1/subtasks/LAST/results?wait=60",
        a = w.a.id
    );
    let lines = script_lines(&w, &format!("{repo}:v1"), &script).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let (s, results) = status_and_body(&lines[1]);
    assert_eq!(s, 200, "{lines:#?}");
    assert_eq!(results["complete"], true, "{results}");
    let run = &results["runs"][0];
    assert_eq!(run["state"], "failed", "{results}");
    assert!(run["result"].is_null());
    let reason = run["reason"].as_str().unwrap();
    assert!(
        reason.contains("the node's limit of 1 containers alive is reached"),
        "{reason}"
    );
    assert!(containers(&node.label).is_empty());
    node.stop().await;
}
