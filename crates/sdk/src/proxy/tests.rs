use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::testing::{Seen, Server, json_answer};

const TOKEN: &str = "run-token-0123456789abcdef";

/// A proxy server that answers its connections with `answers`, in order.
fn scripted(answers: Vec<Vec<u8>>) -> Server {
    let mut answers = answers.into_iter();
    let n = answers.len();
    Server::start(n, move |_, s| {
        let _ = s.write_all(&answers.next().unwrap());
    })
}

fn proxy(server: &Server) -> Proxy {
    Proxy::new(server.path(), TOKEN).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[track_caller]
fn assert_authorized(seen: &Seen) {
    assert_eq!(
        seen.header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(seen.header("accept"), Some("application/json"));
}

#[test]
fn organizations_are_listed_with_the_token() {
    let server = scripted(vec![json_answer(
        200,
        r#"{"organizations": [{"id": 1, "name": "hospital-a"}, {"id": 2, "name": "hospital-b"}]}"#,
    )]);
    let orgs = proxy(&server).organizations().unwrap();
    assert_eq!(
        orgs,
        [
            Organization {
                id: 1,
                name: "hospital-a".into()
            },
            Organization {
                id: 2,
                name: "hospital-b".into()
            }
        ]
    );
    let seen = server.finish();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("GET", "/v1/organizations")
    );
    assert_authorized(&seen[0]);
}

#[test]
fn a_subtask_is_created_with_the_contract_body() {
    let server = scripted(vec![
        json_answer(201, r#"{"task_id": 17}"#),
        json_answer(200, r#"{"task_id": 18}"#),
    ]);
    let p = proxy(&server);
    let args = json!({"column": "age", "data": "records"});
    assert_eq!(
        p.create_subtask("partial_mean", &args, &[1, 2]).unwrap(),
        TaskId(17)
    );
    let named = NewSubtask {
        function: "count".into(),
        args: json!({"data": "records"}),
        organizations: vec![3],
        name: Some("counting".into()),
    };
    assert_eq!(p.create(&named).unwrap(), TaskId(18));
    let seen = server.finish();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("POST", "/v1/subtasks")
    );
    assert_authorized(&seen[0]);
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        json!({"function": "partial_mean", "args": args, "organizations": [1, 2]})
    );
    let body: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(body["name"], "counting");
}

#[test]
fn refusals_carry_the_error_body() {
    let server = scripted(vec![
        json_answer(
            403,
            r#"{"error": {"code": "forbidden", "message": "organization 9 is not in the collaboration"}}"#,
        ),
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_vec(),
        b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_vec(),
        json_answer(
            429,
            r#"{"error": {"code": "too_many_requests", "message": "slow down"}}"#,
        ),
    ]);
    let p = proxy(&server);
    let e = p.create_subtask("f", &json!(null), &[9]).unwrap_err();
    match &e {
        ProxyError::Refused {
            request,
            status,
            code,
            message,
        } => {
            assert_eq!(request, "POST /v1/subtasks");
            assert_eq!((*status, code.as_str()), (403, "forbidden"));
            assert_eq!(message, "organization 9 is not in the collaboration");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.status(), Some(403));
    assert!(
        e.to_string()
            .contains("organization 9 is not in the collaboration"),
        "{e}"
    );

    let e = p.organizations().unwrap_err();
    assert!(
        matches!(&e, ProxyError::Refused { status: 404, code, message, .. }
            if code == "unknown" && message == "not found"),
        "{e:?}"
    );
    let e = p.organizations().unwrap_err();
    assert!(
        matches!(&e, ProxyError::Refused { status: 500, message, .. } if message == "no error body"),
        "{e:?}"
    );
    let e = p.results(TaskId(1), Duration::ZERO).unwrap_err();
    assert!(
        matches!(&e, ProxyError::Refused { status: 429, .. }),
        "{e:?}"
    );
    server.finish();
}

#[test]
fn a_long_error_body_is_cut_and_cleaned_in_the_message() {
    let body = format!("{}\x1b[31m", "e".repeat(1000));
    let server = scripted(vec![json_answer(502, &body)]);
    let e = proxy(&server).organizations().unwrap_err();
    server.finish();
    let ProxyError::Refused { message, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(message, format!("{}...", "e".repeat(MAX_ERROR_EXCERPT)));
}

#[test]
fn answers_of_the_wrong_shape_are_bad_answers() {
    let server = scripted(vec![
        json_answer(200, r#"{"orgs": []}"#),
        json_answer(200, r#"{"organizations": [{"id": 1"#),
        json_answer(201, r#"{"task_id": "seventeen"}"#),
        json_answer(
            200,
            r#"{"complete": false, "runs": [{"organization_id": 1, "state": "exploded"}]}"#,
        ),
        json_answer(
            200,
            r#"{"complete": true, "runs": [{"organization_id": 1, "state": "completed", "result": "not base64!"}]}"#,
        ),
        json_answer(
            200,
            r#"{"complete": true, "runs": [{"organization_id": 4, "state": "running"}]}"#,
        ),
    ]);
    let p = proxy(&server);
    let mut errors = vec![
        p.organizations().unwrap_err(),
        p.organizations().unwrap_err(),
        p.create_subtask("f", &json!({}), &[1]).unwrap_err(),
    ];
    for _ in 0..3 {
        errors.push(p.results(TaskId(5), Duration::ZERO).unwrap_err());
    }
    server.finish();
    let needles = [
        "missing field `organizations`",
        "EOF while parsing",
        "invalid type",
        "unknown variant `exploded`",
        "organization 1 is not base64",
        "complete, yet the run of organization 4 is running",
    ];
    for (e, needle) in errors.iter().zip(needles) {
        assert!(matches!(e, ProxyError::BadAnswer { .. }), "{e:?}");
        assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
    }
}

#[test]
fn results_are_decoded_and_failures_keep_their_reason() {
    let body = json!({
        "complete": true,
        "runs": [
            {"organization_id": 1, "state": "completed", "result": b64(br#"{"sum": 3.0}"#), "reason": null},
            {"organization_id": 2, "state": "rejected", "result": null, "reason": "policy: rule `only-reviewed` denies"},
            {"organization_id": 3, "state": "failed", "reason": "exit status 1: error: no column age"},
            {"organization_id": 4, "state": "completed", "result": null}
        ]
    });
    let server = scripted(vec![json_answer(200, &body.to_string())]);
    let answer = proxy(&server)
        .results(TaskId(17), Duration::from_millis(1500))
        .unwrap();
    let seen = server.finish();
    // Waits are whole seconds, rounded up.
    assert_eq!(seen[0].target, "/v1/subtasks/17/results?wait=2");
    assert_authorized(&seen[0]);
    assert!(answer.complete);
    let [ok, rejected, failed, empty] = answer.runs.as_slice() else {
        panic!("{answer:?}")
    };
    assert_eq!(ok.bytes().unwrap(), br#"{"sum": 3.0}"#);
    assert_eq!(ok.json::<serde_json::Value>().unwrap(), json!({"sum": 3.0}));
    assert_eq!(empty.bytes().unwrap(), b"");
    assert!(matches!(
        empty.json::<serde_json::Value>(),
        Err(ResultError::Json {
            organization_id: 4,
            ..
        })
    ));
    let e = rejected.json::<serde_json::Value>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "the run at organization 2 ended rejected: policy: rule `only-reviewed` denies; check \
         that node's policy and logs"
    );
    assert!(
        failed
            .bytes()
            .unwrap_err()
            .to_string()
            .contains("no column age")
    );
    assert_eq!(failed.result, None);
}

#[test]
fn wait_results_polls_until_complete_with_capped_waits() {
    let pending = json!({"complete": false, "runs": [
        {"organization_id": 1, "state": "running"},
        {"organization_id": 2, "state": "completed", "result": b64(b"2")}
    ]});
    let done = json!({"complete": true, "runs": [
        {"organization_id": 1, "state": "completed", "result": b64(b"1")},
        {"organization_id": 2, "state": "completed", "result": b64(b"2")}
    ]});
    let server = scripted(vec![
        json_answer(200, &pending.to_string()),
        json_answer(200, &done.to_string()),
    ]);
    let runs = proxy(&server)
        .wait_results(TaskId(9), Duration::from_secs(600))
        .unwrap();
    let seen = server.finish();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].bytes().unwrap(), b"1");
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.target, "/v1/subtasks/9/results?wait=60");
    }
}

#[test]
fn wait_results_gives_up_at_the_deadline_without_hammering_the_proxy() {
    let pending = json!({"complete": false, "runs": [
        {"organization_id": 1, "state": "pending"},
        {"organization_id": 2, "state": "failed", "reason": "oom"},
        {"organization_id": 3, "state": "admitted"}
    ]})
    .to_string();
    // A proxy that ignores `wait` and answers at once, for as many polls as come.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = polls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s.write_all(&json_answer(200, &pending));
        }
    });
    let timeout = Duration::from_millis(1200);
    let started = Instant::now();
    let e = Proxy::new(&path, TOKEN)
        .unwrap()
        .wait_results(TaskId(4), timeout)
        .unwrap_err();
    let ProxyError::Timeout {
        task_id,
        waited,
        pending,
        total,
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!((task_id, pending, total), (TaskId(4), 2, 3));
    assert!(
        waited >= timeout && started.elapsed() >= timeout,
        "{waited:?}"
    );
    let polls = polls.load(std::sync::atomic::Ordering::SeqCst);
    // At most one poll per MIN_POLL_INTERVAL (plus the first).
    assert!((2..=5).contains(&polls), "{polls} polls in {timeout:?}");
}

#[test]
fn caps_and_timeouts_of_the_client_apply() {
    let big = format!(
        r#"{{"organizations": [{{"id": 1, "name": "{}"}}]}}"#,
        "n".repeat(5000)
    );
    let server = scripted(vec![json_answer(200, &big)]);
    let e = proxy(&server)
        .with_max_answer_bytes(4096)
        .organizations()
        .unwrap_err();
    assert!(
        matches!(e, ProxyError::Http(HttpError::TooLarge { limit: 4096 })),
        "{e:?}"
    );
    server.finish();

    let server = Server::start(1, |_, _| std::thread::sleep(Duration::from_millis(1000)));
    let e = proxy(&server)
        .with_timeout(Duration::from_millis(150))
        .organizations()
        .unwrap_err();
    assert!(
        matches!(e, ProxyError::Http(HttpError::Timeout(_))),
        "{e:?}"
    );
    server.finish();
}

#[test]
fn tokens_that_would_break_the_header_are_refused() {
    for bad in ["", "two words", "line\r\nX-Evil: 1", "tök"] {
        let e = Proxy::new("/nonexistent.sock", bad).unwrap_err();
        assert!(matches!(e, ProxyError::Token(_)), "{bad:?}: {e:?}");
    }
    let p = Proxy::new("/nonexistent.sock", TOKEN).unwrap();
    assert!(!format!("{p:?}").contains(TOKEN));
    // Nothing listens there: a connect error that names the socket.
    let e = p.organizations().unwrap_err();
    assert!(e.to_string().contains("/nonexistent.sock"), "{e}");
}

#[test]
fn wait_results_retries_rate_limits_and_unavailability_but_not_refusals() {
    let done = json!({"complete": true, "runs": [
        {"organization_id": 1, "state": "completed", "result": b64(b"1")}
    ]})
    .to_string();
    let server = scripted(vec![
        json_answer(
            503,
            r#"{"error": {"code": "unavailable", "message": "retry later"}}"#,
        ),
        json_answer(
            429,
            r#"{"error": {"code": "too_many_requests", "message": "slow down"}}"#,
        ),
        json_answer(200, &done),
    ]);
    let runs = proxy(&server)
        .wait_results(TaskId(2), Duration::from_secs(30))
        .unwrap();
    assert_eq!(runs[0].bytes().unwrap(), b"1");
    assert_eq!(server.finish().len(), 3);

    let server = scripted(vec![json_answer(
        403,
        r#"{"error": {"code": "forbidden", "message": "task 2 is not a subtask created by this run"}}"#,
    )]);
    let e = proxy(&server)
        .wait_results(TaskId(2), Duration::from_secs(30))
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert!(
        e.to_string().contains("not a subtask created by this run"),
        "{e}"
    );
    assert_eq!(server.finish().len(), 1);

    // Still unavailable at the deadline: the last refusal is the answer.
    let unavailable = json_answer(
        503,
        r#"{"error": {"code": "unavailable", "message": "down"}}"#,
    );
    let server = scripted(vec![unavailable.clone(), unavailable.clone(), unavailable]);
    let e = proxy(&server)
        .wait_results(TaskId(2), Duration::from_millis(1200))
        .unwrap_err();
    assert_eq!(e.status(), Some(503), "{e:?}");
    // Two or three polls depending on scheduling; the server thread is left to its fate.
    drop(server);
}
