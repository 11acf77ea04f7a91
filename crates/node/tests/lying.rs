//! A lying server, or anyone who can create tasks, against a real node: inputs in plaintext, in
//! the old format, from unproven senders, replayed from another task, bound to another image, a
//! digest or a requester than the run's, not strict JSON; subtask results forged for a central
//! run; an algorithm that prints the data owner's secret. Tasks are made by hand (CreateTask
//! bodies and sealed bytes) and, where the server's own checks stand in the way, by editing its
//! database. Each refused run is `rejected` with a reason that names what did not match, in the
//! audit log with the same reason, and nothing ran for it.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use common::attack::{
    HELLO, audit_records, echo_image, hand_made, refused, sealed_for_a, spool, tamper,
};
use common::{Org, World, image_present, now_unix};
use serde_json::{Value, json};
use warden_api::{RunState, UpdateRun};
use warden_seal::{Kind, ResultBinding, SecretKey, Sender, new_nonce};
use warden_trust::{KeyAlgorithm, SigningKey};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_input_is_refused_unless_the_node_lists_the_collaboration() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "echo", "v1");
    w.sign(&repo, &digest).await;
    // A second repository that only a named user may run: in plaintext mode nobody is named.
    let (users_repo, users_digest) = w.push_program("echo", "for-rita", "v1");
    w.sign(&users_repo, &users_digest).await;
    let policy = format!(
        "{}\n[[allow]]\nrepository = \"{users_repo}\"\nusers = [\"rita\"]\n",
        w.signed_policy(&repo)
    );
    let open = w.collaboration("open-study", false).await;
    let key = w.node_key_in(w.a.id, open).await;
    let config = w.node_config_in(&w.a, &key, "open-a", &policy, "");
    let node = w.start_node(&config).await;
    let image = format!("{repo}:v1");
    let plain = br#"{"args": {"b": 1, "a": 2}, "function": "hello"}"#.to_vec();

    // The server says the collaboration does not encrypt; this node requires sealed inputs.
    let (s, v) = w
        .post_task(
            &w.researcher,
            open,
            &image,
            None,
            &[(w.a.id, plain.clone())],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let run = v["runs"][0]["id"].as_i64().unwrap();
    let reason = refused(
        &w,
        &config,
        run,
        "the server says collaboration `open-study` does not encrypt, but this node requires \
         sealed inputs for it ([encryption] require, plaintext_collaborations)",
        Some(&format!("{repo}@{digest}")),
    )
    .await;
    assert!(reason.ends_with("refusing a plaintext input"), "{reason}");
    node.stop().await;

    // Listed: plaintext, strictly parsed (the algorithm reads the canonical form), and the
    // result is plaintext too.
    let config = w.node_config_in(
        &w.a,
        &key,
        "open-a",
        &policy,
        "\n[encryption]\nplaintext_collaborations = [\"open-study\"]\n",
    );
    let node = w.start_node(&config).await;
    let (s, v) = w
        .post_task(
            &w.researcher,
            open,
            &image,
            None,
            &[(w.a.id, plain.clone())],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let run = w
        .wait_final(
            v["runs"][0]["id"].as_i64().unwrap(),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    let resp = w
        .http
        .get(w.url(&format!("/api/runs/{}/result", run.id)))
        .bearer_auth(&w.researcher)
        .send()
        .await
        .unwrap();
    let out = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    assert_eq!(
        out,
        "env-ok echo:{\"args\":{\"a\":2,\"b\":1},\"function\":\"hello\"}"
    );
    // The policy sees no proven user in plaintext mode: a rule for `rita` does not hold.
    let (s, v) = w
        .post_task(
            &w.researcher,
            open,
            &format!("{users_repo}:v1"),
            None,
            &[(w.a.id, plain)],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let reason = refused(
        &w,
        &config,
        v["runs"][0]["id"].as_i64().unwrap(),
        "names no user",
        Some(&format!("{users_repo}@{users_digest}")),
    )
    .await;
    assert!(reason.contains("(precheck)"), "{reason}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_in_the_old_format_or_from_unproven_senders_are_refused() {
    let mut w = World::new().await;
    let (image, pinned) = echo_image(&mut w, "echo").await;
    let config = w.node_config(&w.a, &w.signed_policy_for(&image), "");
    let node = w.start_node(&config).await;
    let digest = w.resolve(&image).await;

    // The old format: sealed to A's key, bound to nothing, sender unknown.
    let v1 = warden_seal::seal(
        &w.a.secret.public_key(),
        &warden_seal::input_context(w.collab, w.a.id),
        HELLO,
    )
    .unwrap();
    let run = hand_made(&w, &w.rita, &image, &new_nonce(), v1).await;
    let reason = refused(
        &w,
        &config,
        run,
        "sealed in format version 1",
        Some(&pinned),
    )
    .await;
    assert!(reason.contains("seal it again"), "{reason}");

    // A key nobody certified, sent as an organization's.
    let mallory = SecretKey::generate();
    let nonce = new_nonce();
    let mut b = w.binding(&w.rita, &image, &digest, "hello", &w.a, &nonce);
    b.reply_key = mallory.public_key().to_base64();
    let sealed = warden_seal::seal_input(
        &mallory,
        &Sender::Organization(mallory.public_key()),
        &w.a.secret.public_key(),
        &b,
        HELLO,
    )
    .unwrap();
    let run = hand_made(&w, &w.rita, &image, &nonce, sealed).await;
    refused(
        &w,
        &config,
        run,
        &format!(
            "refusing the input: the sender of the sealed message is not proven: the input is \
             sealed by organization key {}, which is not pinned here",
            mallory.public_key().fingerprint()
        ),
        Some(&pinned),
    )
    .await;

    // A certificate for `rita` of A, from a certification key A's node does not pin.
    let rogue = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let cert = warden_seal::Certificate::issue(
        &rogue,
        "hospital-a",
        "rita",
        &mallory.public_key(),
        now_unix() - 60,
        3600,
    )
    .unwrap();
    let nonce = new_nonce();
    let sealed = warden_seal::seal_input(
        &mallory,
        &Sender::Researcher(Box::new(cert)),
        &w.a.secret.public_key(),
        &warden_seal::InputBinding {
            nonce: nonce.clone(),
            ..b.clone()
        },
        HELLO,
    )
    .unwrap();
    let run = hand_made(&w, &w.rita, &image, &nonce, sealed).await;
    refused(
        &w,
        &config,
        run,
        &format!(
            "the certificate of `rita` is signed by certification key {}, but the pinned \
             certification key of organization `hospital-a` is {}",
            rogue.public_key().id(),
            w.a.certifier.public_key().id()
        ),
        Some(&pinned),
    )
    .await;
    node.stop().await;

    // Rita's own certificate, once her organization revoked it at this node.
    let serial = w.rita.cert.statement().serial.clone();
    let config = w.node_config(
        &w.a,
        &w.signed_policy_for(&image),
        &format!("\n[encryption]\nrevoked = [\"{serial}\"]\n"),
    );
    let node = w.start_node(&config).await;
    let nonce = new_nonce();
    let sealed = sealed_for_a(&w, &w.rita, &image, &nonce, HELLO).await;
    let run = hand_made(&w, &w.rita, &image, &nonce, sealed).await;
    refused(
        &w,
        &config,
        run,
        &format!("the certificate of `rita` of `hospital-a` (serial {serial}) is revoked here"),
        Some(&pinned),
    )
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_replayed_into_another_task_is_refused() {
    let mut w = World::new().await;
    let (image, _) = echo_image(&mut w, "echo").await;
    let config = w.node_config(&w.a, &w.signed_policy_for(&image), "");
    let node = w.start_node(&config).await;

    // Task A, as the researcher made it: it runs.
    let nonce_a = new_nonce();
    let sealed = sealed_for_a(&w, &w.rita, &image, &nonce_a, HELLO).await;
    let run_a = hand_made(&w, &w.rita, &image, &nonce_a, sealed.clone()).await;
    let r = w.wait_final(run_a, Duration::from_secs(60)).await;
    assert_eq!(r.state, RunState::Completed, "{:?}", r.reason);

    // The same sealed bytes in task B under another nonce.
    let nonce_b = new_nonce();
    let run_b = hand_made(&w, &w.rita, &image, &nonce_b, sealed.clone()).await;
    refused(
        &w,
        &config,
        run_b,
        &format!(
            "the input is bound to task nonce `{nonce_a}`, but the server's task carries \
             `{nonce_b}`: refusing a replayed or moved input"
        ),
        None,
    )
    .await;

    // Under A's own nonce: the server refuses it; a lying server stores it anyway. The node,
    // restarted meanwhile, still remembers the nonce.
    let (s, v) = w
        .post_task(
            &w.researcher,
            w.collab,
            &image,
            Some(&nonce_a),
            &[(w.a.id, sealed.clone())],
        )
        .await;
    assert_eq!(s, 409, "{v}");
    node.stop().await;
    let run_c = hand_made(&w, &w.rita, &image, &new_nonce(), sealed).await;
    let task_a = w.run(run_a).await.task_id;
    let task_c = w.run(run_c).await.task_id;
    tamper(
        &w,
        &format!(
            "UPDATE tasks SET nonce = 'moved-' || nonce WHERE id = {task_a}; \
             UPDATE tasks SET nonce = '{nonce_a}' WHERE id = {task_c};"
        ),
    );
    let cache = std::fs::read_to_string(spool(&config).join("replay.jsonl")).unwrap();
    assert!(
        cache.contains(&format!("{{\"nonce\":\"{nonce_a}\",\"run_id\":{run_a},")),
        "{cache}"
    );
    let node = w.start_node(&config).await;
    refused(
        &w,
        &config,
        run_c,
        &format!(
            "the input's nonce `{nonce_a}` was already used by run {run_a} at this node: \
             refusing a replayed input"
        ),
        None,
    )
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_for_another_image_or_digest_is_refused() {
    let mut w = World::new().await;
    let (image, pinned) = echo_image(&mut w, "echo").await;
    let (other, other_pinned) = echo_image(&mut w, "other").await;
    let policy = format!(
        "{}{}",
        w.signed_policy_for(&image),
        w.signed_policy_for(&other)
    );
    let config = w.node_config(&w.a, &policy, "");
    let node = w.start_node(&config).await;

    // Sealed for `other`, the task names `echo`.
    let nonce = new_nonce();
    let sealed = sealed_for_a(&w, &w.rita, &other, &nonce, HELLO).await;
    let run = hand_made(&w, &w.rita, &image, &nonce, sealed).await;
    refused(
        &w,
        &config,
        run,
        &format!(
            "the input is bound to image `{other}`, but the server's task names `{image}`: \
             refusing a swapped image"
        ),
        Some(&pinned),
    )
    .await;

    // Sealed for `echo` with `other`'s digest: found once the node resolved the tag itself.
    let nonce = new_nonce();
    let other_digest = w.resolve(&other).await;
    let digest = w.resolve(&image).await;
    let b = w.binding(&w.rita, &image, &other_digest, "hello", &w.a, &nonce);
    let sealed = w.seal(&w.rita, &w.a, &b, HELLO);
    let run = hand_made(&w, &w.rita, &image, &nonce, sealed).await;
    refused(
        &w,
        &config,
        run,
        &format!(
            "the input is bound to image digest `{other_digest}`, but this node resolved \
             `{image}` to {digest}: refusing to run an image the requester did not choose"
        ),
        Some(&pinned),
    )
    .await;
    assert_eq!(audit_records(&config, run)[0]["digest"], digest.as_str());
    assert!(!image_present(&other_pinned));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_the_server_names_differently_is_refused() {
    let mut w = World::new().await;
    let (image, pinned) = echo_image(&mut w, "echo").await;
    let config = w.node_config(&w.a, &w.signed_policy_for(&image), "");
    let node = w.start_node(&config).await;
    let bert = w.researcher_of(&w.b, "bert").await;
    let bob = w.researcher_of_a("bob").await;

    // Sealed by Rita of A, created at the server by Bert of B.
    let nonce = new_nonce();
    let sealed = sealed_for_a(&w, &w.rita, &image, &nonce, HELLO).await;
    let run = hand_made(&w, &bert, &image, &nonce, sealed).await;
    refused(
        &w,
        &config,
        run,
        "the input is sealed by its researcher, of organization `hospital-a`, but the server \
         says the task was created by organization `hospital-b`: refusing a requester mismatch",
        Some(&pinned),
    )
    .await;

    // Sealed by Rita, created by Bob of the same organization.
    let nonce = new_nonce();
    let sealed = sealed_for_a(&w, &w.rita, &image, &nonce, HELLO).await;
    let run = hand_made(&w, &bob, &image, &nonce, sealed).await;
    refused(
        &w,
        &config,
        run,
        "the input is sealed on behalf of user `rita` of `hospital-a`, but the server says the \
         task runs for user `bob`: refusing a requester mismatch",
        Some(&pinned),
    )
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_with_a_duplicate_key_is_refused_and_nothing_runs() {
    let mut w = World::new().await;
    let (image, pinned) = echo_image(&mut w, "echo").await;
    let config = w.node_config(&w.a, &w.signed_policy_for(&image), "");
    let node = w.start_node(&config).await;
    // A policy that reads the first `function` and an algorithm that reads the last would
    // disagree: the node parses once, strictly.
    let nonce = new_nonce();
    let digest = w.resolve(&image).await;
    let b = w.binding(&w.rita, &image, &digest, "noop", &w.a, &nonce);
    let sealed = w.seal(
        &w.rita,
        &w.a,
        &b,
        br#"{"function":"leak","function":"noop"}"#,
    );
    let run = hand_made(&w, &w.rita, &image, &nonce, sealed).await;
    let reason = refused(
        &w,
        &config,
        run,
        "refusing the input: the input is not strict JSON: the key \"function\" appears twice \
         in one object",
        Some(&pinned),
    )
    .await;
    assert!(reason.len() < 200, "{reason}");
    let record = &audit_records(&config, run)[0];
    assert_eq!(record["user"], "rita");
    assert_eq!(record["organization"], "hospital-a");
    node.stop().await;
}

/// The subtask tasks of `task` (as the administrator sees them), by id.
async fn subtasks(w: &World, task: i64) -> Vec<warden_api::TaskDetail> {
    let (s, v) = w
        .call(
            reqwest::Method::GET,
            &w.admin,
            &format!("/api/tasks?parent_task_id={task}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut ids: Vec<i64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        let (s, d) = w
            .call(
                reqwest::Method::GET,
                &w.admin,
                &format!("/api/tasks/{id}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{d}");
        out.push(serde_json::from_value(d).unwrap());
    }
    out
}

/// Acts as B's node for `run`: admitted with `digest`, running, `result` uploaded, completed.
async fn complete_as(b: &Org, base: &str, run: i64, digest: &str, result: &[u8]) {
    let node =
        warden_node::server::ServerClient::new(base, zeroize::Zeroizing::new(b.api_key.clone()))
            .unwrap();
    node.login().await.unwrap();
    let update = |state, digest: Option<&str>| UpdateRun {
        state,
        reason: None,
        digest: digest.map(str::to_owned),
    };
    node.update(run, &update(RunState::Admitted, Some(digest)))
        .await
        .unwrap();
    node.update(run, &update(RunState::Running, None))
        .await
        .unwrap();
    node.put_result(run, result).await.unwrap();
    node.update(run, &update(RunState::Completed, None))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtask_results_not_sealed_and_bound_by_their_node_are_refused_by_the_proxy() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let node = w.start_node(&config).await;
    // B's node is not running: the test answers B's subtask runs as a lying server would.
    let script = format!(
        "POST /v1/subtasks {{'function':'part','args':'x','organizations':[{b}]}};\
         GET /v1/subtasks/LAST/results?wait=60;\
         POST /v1/subtasks {{'function':'part','args':'x','organizations':[{b}]}};\
         GET /v1/subtasks/LAST/results?wait=60",
        b = w.b.id
    );
    let central = w
        .create_task(
            &format!("{repo}:v1"),
            &json!({"function": "script", "args": script}),
            &[&w.a],
        )
        .await;
    let a_key = w.a.secret.public_key();
    let digest = digest.to_string();
    let forge = async {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut forged = Vec::new();
        let mut first: Option<(String, i64)> = None;
        while forged.len() < 2 {
            assert!(Instant::now() < deadline, "the subtasks did not appear");
            for sub in subtasks(&w, central.task.id).await {
                let run = &sub.runs[0];
                if forged.contains(&run.id) || run.state != RunState::Pending {
                    continue;
                }
                let nonce = sub.task.nonce.clone().unwrap();
                let sealed = match &first {
                    // 1. Sealed by a key that is not B's pinned key, bound as B's would be.
                    None => {
                        let mallory = SecretKey::generate();
                        let binding = ResultBinding {
                            nonce: nonce.clone(),
                            run_id: run.id,
                            organization: w.b.name.clone(),
                            digest: digest.clone(),
                        };
                        warden_seal::seal_result(
                            &mallory,
                            Kind::Result,
                            &a_key,
                            &binding,
                            b"\"forged-by-mallory\"",
                        )
                        .unwrap()
                    }
                    // 2. B's genuine result of the first subtask, replayed for the second.
                    Some((first_nonce, first_run)) => {
                        let binding = ResultBinding {
                            nonce: first_nonce.clone(),
                            run_id: *first_run,
                            organization: w.b.name.clone(),
                            digest: digest.clone(),
                        };
                        warden_seal::seal_result(&w.b.secret, Kind::Result, &a_key, &binding, b"1")
                            .unwrap()
                    }
                };
                complete_as(&w.b, &w.base, run.id, &digest, &sealed).await;
                forged.push(run.id);
                first.get_or_insert((nonce, run.id));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (forged, first.unwrap().0)
    };
    let (run, (forged, first_nonce)) = tokio::join!(
        w.wait_final(central.runs[0].id, Duration::from_secs(120)),
        forge
    );
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    let out = String::from_utf8(w.result(run.id).await).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let body = |l: &str| -> (u16, Value) {
        let (s, b) = l.split_once(' ').unwrap();
        (s.parse().unwrap(), serde_json::from_str(b).unwrap())
    };
    let (s, _) = body(lines[0]);
    assert_eq!(s, 200, "{out}");
    let (s, refusal) = body(lines[1]);
    assert_eq!(s, 403, "{out}");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "the result of run {} does not open as `hospital-b`'s: the sealed message is sealed by",
            forged[0]
        )) && message.contains(&w.b.secret.public_key().fingerprint().to_string()),
        "{message}"
    );
    let (s, refusal) = body(lines[3]);
    assert_eq!(s, 403, "{out}");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("the result of run {} (subtask", forged[1]))
            && message.contains(&format!(
                "is bound to nonce `{first_nonce}`, but this node sent the subtask with nonce"
            )),
        "{message}"
    );
    assert!(!out.contains("forged-by-mallory"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_algorithm_leaves_its_secret_only_in_the_nodes_log() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("leak_fail", "leak", "v1");
    w.sign(&repo, &digest).await;
    let secret = "patient 4711: HIV positive";
    let data = w.dir.path().join("records.txt");
    std::fs::write(&data, secret).unwrap();
    let config = w.node_config(
        &w.a,
        &w.signed_policy(&repo),
        &format!("\n[data]\nrecords = \"{}\"\n", data.display()),
    );
    let node = w.start_node(&config).await;
    let task = w
        .create_task(&format!("{repo}:v1"), &json!({"function": "f"}), &[&w.a])
        .await;
    let run = w.wait_final(task.runs[0].id, Duration::from_secs(60)).await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(
        run.reason.as_deref(),
        Some("the algorithm exited with code 1")
    );
    // Nowhere at the server: not in the run, not in the task's listing.
    let (_, detail) = w
        .call(
            reqwest::Method::GET,
            &w.researcher,
            &format!("/api/tasks/{}", task.task.id),
            None,
        )
        .await;
    // (Its words, not "4711" alone: four digits can occur in any hash or time stamp.)
    let detail = detail.to_string();
    assert!(
        !detail.contains("patient 4711") && !detail.contains("HIV"),
        "{detail}"
    );
    // At the node, for its owner only.
    let log = spool(&config).join(format!("logs/run-{}.log", run.id));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("about to fail; the data is: {secret}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("error: cannot go on with {secret}")),
        "{text}"
    );
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Admitted, its logs withheld (the policy does not release them: only their hash is on
    // record), failed.
    let records = audit_records(&config, run.id);
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(
        (&records[1]["event"], &records[1]["outcome"]),
        (&json!("logs"), &json!("withheld"))
    );
    assert_eq!(records[2]["outcome"], "failed");
    assert_eq!(records[2]["reason"], "the algorithm exited with code 1");
    node.stop().await;
    let audit = std::fs::read_to_string(config.parent().unwrap().join("audit/audit.log")).unwrap();
    assert!(
        !audit.contains("patient 4711") && !audit.contains("HIV"),
        "{audit}"
    );
}
