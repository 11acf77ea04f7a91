//! The local socket's reading endpoints against a real node (the server in this process, a
//! registry, Docker), one run admitted and one denied: `GET /v1/policy` answers the rules as the
//! node parsed them, `GET /v1/audit` the records newest first with its filters and paging (an
//! unknown parameter or a limit out of range is a 400 that says why), and `GET
//! /v1/audit/verify` the chain verified with the node's key; after a line of the log file is
//! edited, `tampered` at that line.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::World;
use serde_json::json;
use warden_api::RunState;
use warden_api::local as wire;
use warden_node::local::LocalClient;

async fn local<T: Send + 'static>(
    socket: PathBuf,
    f: impl FnOnce(LocalClient) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(move || f(LocalClient::new(socket)))
        .await
        .unwrap()
}

/// A raw GET on the socket: status and body.
async fn raw(socket: PathBuf, path: &str) -> (u16, serde_json::Value) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let a = warden_sdk::http::Client::new(socket)
            .send(
                &warden_sdk::http::Request {
                    method: "GET",
                    path: &path,
                    headers: &[],
                    body: None,
                },
                Duration::from_secs(30),
            )
            .unwrap();
        (a.status, serde_json::from_slice(&a.body).unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_answers_the_policy_the_audit_records_filtered_and_paged_and_a_tampered_chain() {
    let mut w = World::new().await;
    let (allowed, digest) = w.push_program("echo", "inspect-allowed", "v1");
    w.sign(&allowed, &digest).await;
    let (denied, denied_digest) = w.push_program("echo", "inspect-denied", "v1");
    w.sign(&denied, &denied_digest).await;
    let policy = format!(
        "{}[[allow]]\nrepository_regex = '.+/never/.+'\norganizations = [\"org-x\"]\n\
         functions = [\"mean\", \"sum\"]\n\n[[deny]]\nrepository = \"{denied}\"\n",
        w.signed_policy(&allowed)
    );
    let config = w.node_config(&w.a, &policy, "");
    let node = w.start_node(&config).await;
    let socket = node.node.local_socket().unwrap().to_path_buf();

    let input = json!({"function": "hello", "args": null});
    let ok = w
        .create_task(&format!("{allowed}:v1"), &input, &[&w.a])
        .await;
    let ok = w.wait_final(ok.runs[0].id, Duration::from_secs(120)).await;
    assert_eq!(ok.state, RunState::Completed, "{:?}", ok.reason);
    let no = w
        .create_task(&format!("{denied}:v1"), &input, &[&w.a])
        .await;
    let no = w.wait_final(no.runs[0].id, Duration::from_secs(60)).await;
    assert_eq!(no.state, RunState::Rejected);

    // The policy as the node parsed it, with the hash its status reports.
    let p = local(socket.clone(), |c| c.policy()).await.unwrap();
    let status = local(socket.clone(), |c| c.status()).await.unwrap();
    assert_eq!(p.sha256, status.policy.sha256);
    assert_eq!(
        (p.version, p.file.as_str()),
        (1, status.policy.file.as_str())
    );
    assert_eq!((p.allow.len(), p.deny.len()), (2, 1));
    let a1 = &p.allow[0];
    assert_eq!(a1.name, "allow[1]");
    assert_eq!(a1.repository.as_deref(), Some(allowed.to_string().as_str()));
    let signed = a1.signed_by.as_ref().unwrap();
    assert_eq!((signed.threshold, signed.keys.len()), (1, 1));
    assert_eq!(signed.keys[0].files, vec!["image.pub".to_owned()]);
    assert!(signed.keys[0].id.starts_with("sha256:"), "{signed:?}");
    assert_eq!(a1.organizations, None);
    assert_eq!(a1.output, "none (release automatic)");
    let a2 = &p.allow[1];
    assert_eq!(a2.repository_regex.as_deref(), Some(".+/never/.+"));
    assert_eq!(a2.organizations, Some(vec!["org-x".to_owned()]));
    assert_eq!(
        a2.functions,
        Some(vec!["mean".to_owned(), "sum".to_owned()])
    );
    assert_eq!(p.deny[0].name, "deny[1]");
    assert_eq!(
        p.deny[0].repository.as_deref(),
        Some(denied.to_string().as_str())
    );

    // The decisions, newest first: the denial with the node's reason, then the admission.
    let d = local(socket.clone(), |c| c.audit("kind=decision"))
        .await
        .unwrap();
    assert_eq!(d.entries.len(), 2, "{d:?}");
    assert!(d.entries[0].seq > d.entries[1].seq);
    let (denial, admission) = (&d.entries[0], &d.entries[1]);
    assert_eq!(
        (denial.run_id, denial.outcome.as_str()),
        (Some(no.id), "rejected")
    );
    let reason = denial.reason.as_deref().unwrap();
    assert!(reason.contains("deny[1]"), "{reason}");
    assert!(
        no.reason.as_deref().unwrap().contains(reason),
        "{:?}",
        no.reason
    );
    assert_eq!(denial.image, format!("{denied}:v1"));
    assert_eq!(denial.user.as_deref(), Some("rita"));
    assert_eq!(
        (admission.run_id, admission.outcome.as_str()),
        (Some(ok.id), "admitted")
    );
    assert_eq!(
        admission.digest.as_deref(),
        Some(digest.to_string().as_str())
    );
    assert_eq!(admission.rule.as_deref(), Some("allow[1]"));
    assert_eq!(d.next_before, None);

    // Paging: one a page, the second page from the first's next_before.
    let first = local(socket.clone(), |c| c.audit("kind=decision&limit=1"))
        .await
        .unwrap();
    assert_eq!(first.entries, d.entries[..1]);
    let before = first.next_before.unwrap();
    let second = local(socket.clone(), move |c| {
        c.audit(&format!("kind=decision&limit=1&before={before}"))
    })
    .await
    .unwrap();
    assert_eq!(second.entries, d.entries[1..]);
    assert_eq!(second.next_before, None);

    // One run's records; an outcome; a sequence range; a time range.
    let run = ok.id;
    let of_run = local(socket.clone(), move |c| c.audit(&format!("run={run}")))
        .await
        .unwrap();
    assert!(of_run.entries.len() >= 3, "{of_run:?}");
    assert!(of_run.entries.iter().all(|e| e.run_id == Some(run)));
    assert!(
        of_run
            .entries
            .iter()
            .any(|e| e.event == "run" && e.outcome == "completed")
    );
    let rejected = local(socket.clone(), |c| c.audit("outcome=rejected"))
        .await
        .unwrap();
    assert_eq!(rejected.entries, d.entries[..1]);
    let (lo, hi) = (admission.seq, denial.seq);
    let range = local(socket.clone(), move |c| {
        c.audit(&format!("after={lo}&before={hi}"))
    })
    .await
    .unwrap();
    assert!(
        range.entries.iter().all(|e| e.seq > lo && e.seq < hi),
        "{range:?}"
    );
    let all = local(socket.clone(), |c| c.audit("")).await.unwrap();
    assert_eq!(all.entries.len() as u64, status.audit.entries.unwrap());
    let future = local(socket.clone(), |c| c.audit("since=2999-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert!(future.entries.is_empty());
    let past = local(socket.clone(), |c| c.audit("until=2000-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert!(past.entries.is_empty());

    // Refused with a reason: an unknown parameter, a limit out of range, an unknown event.
    for (query, says) in [
        ("/v1/audit?colour=red", "colour"),
        ("/v1/audit?kind=decision&runn=3", "runn"),
        ("/v1/audit?limit=501", "1 to 500"),
        ("/v1/audit?limit=0", "1 to 500"),
        ("/v1/audit?kind=nope", "not an audit event"),
        ("/v1/audit?since=yesterday", "RFC 3339"),
        ("/v1/audit?run=x", "run"),
        ("/v1/audit/verify?deep=1", "no query"),
    ] {
        let (status, body) = raw(socket.clone(), query).await;
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message}");
    }
    assert_eq!(wire::MAX_AUDIT_LIMIT, 500);

    // The chain verifies while the node runs; the entries after its last checkpoint are named.
    let v = local(socket.clone(), |c| c.verify_audit()).await.unwrap();
    assert!(matches!(v.status.as_str(), "intact" | "uncovered"), "{v:?}");
    assert_eq!(v.exit, 0);
    assert_eq!(v.entries, status.audit.entries);
    assert_eq!(v.path, node.node.audit_path().display().to_string());

    // One field of line 1 edited in the file: tampered at line 1, exit 1, as the CLI says.
    let path = node.node.audit_path().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    let (line1, rest) = text.split_once('\n').unwrap();
    assert!(line1.contains("\"event\":\"decision\""), "{line1}");
    let edited = line1.replacen("\"event\":\"decision\"", "\"event\":\"run\"", 1);
    std::fs::write(&path, format!("{edited}\n{rest}")).unwrap();
    let v = local(socket.clone(), |c| c.verify_audit()).await.unwrap();
    assert_eq!(
        (v.status.as_str(), v.exit, v.line),
        ("tampered", 1, Some(1)),
        "{v:?}"
    );
    assert!(v.problems[0].contains("altered"), "{v:?}");
    node.stop().await;
}
