//! The output rules of the allow rule that admitted a run, enforced by a real node (issue 9): a
//! result that breaks `max_bytes`, a `schema` or `min_count` never leaves the node (the run
//! fails with a reason naming the rule and the check, never a value of the result; the result
//! is kept under `<spool>/withheld/`; the audit record says failed with the same reason); the
//! rule's `max_subtasks` caps the proxy; its `runs_per_day` is counted per organization and rule
//! and survives a restart. What the airlock enforces (manual release, checkers, first-run
//! approval) is tested with the real binaries in crates/cli/tests/airlock_cli.rs.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use common::World;
use common::attack::{audit_records, spool};
use serde_json::{Value, json};
use warden_api::RunState;

const WAIT: Duration = Duration::from_secs(120);

/// The output-rule section of the tests' rule: every check at once.
const OUTPUT: &str = r#"[allow.output]
max_bytes = 64
schema = "result.schema.json"
min_count = { paths = ["counts.*"], k = 5 }
"#;

const SCHEMA: &str = r#"{"type": "object", "required": ["counts"],
  "properties": {"counts": {"type": "object"}}}"#;

/// Checks that `run` failed for breaking its output rules: the reason contains `says` and not
/// `secret`, no result was uploaded, the result is kept in `withheld/` (0600, in 0700) with
/// `expect` as its bytes, and the audit says failed with the same reason and the withheld
/// bytes' hash.
async fn withheld(w: &World, config: &std::path::Path, run: i64, says: &str, secret: &str) {
    let r = w.wait_final(run, WAIT).await;
    assert_eq!(r.state, RunState::Failed, "{:?}", r.reason);
    let reason = r.reason.clone().unwrap();
    assert!(reason.contains(says), "{reason}");
    assert!(
        reason.contains("allow[1]") && reason.contains("withheld"),
        "{reason}"
    );
    assert!(
        !reason.contains(secret),
        "a reason never quotes the result: {reason}"
    );
    assert!(!r.has_result, "nothing is uploaded");
    let dir = spool(config).join("withheld");
    let file = dir.join(format!("run-{run}"));
    let kept = std::fs::read(&file).unwrap();
    assert!(String::from_utf8_lossy(&kept).contains(secret));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let records = audit_records(config, run);
    let last = records.last().unwrap();
    assert_eq!(last["outcome"], "failed", "{records:?}");
    assert_eq!(last["reason"], reason.as_str());
    let hash = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&kept))
    );
    assert_eq!(last["output_sha256"], hash.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_breaks_its_rules_output_rules_stays_at_the_node() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("json_out", "json-out", "v1");
    w.sign(&repo, &digest).await;
    let policy = format!("{}{OUTPUT}", w.signed_policy(&repo));
    let config = w.node_config(&w.a, &policy, "");
    std::fs::write(config.parent().unwrap().join("result.schema.json"), SCHEMA).unwrap();
    let _node = w.start_node(&config).await;
    let image = format!("{repo}:v1");

    let cases = [
        (
            json!({"counts": {"a": 10}, "pad": "SECRETPAD".repeat(8)}),
            "larger than max_bytes = 64 of allow[1]",
            "SECRETPAD",
        ),
        (
            json!({"SECRETKEY": 7}),
            "does not validate against schema `result.schema.json` of allow[1] (keyword `/required` fails)",
            "SECRETKEY",
        ),
        (
            json!({"counts": {"SECRETCELL": 3}}),
            "a count at `counts.*` is below k = 5 (min_count of allow[1])",
            "SECRETCELL",
        ),
    ];
    let mut tasks = Vec::new();
    for (args, _, _) in &cases {
        let input = json!({"function": "f", "args": args});
        tasks.push(w.create_task(&image, &input, &[&w.a]).await);
    }
    let fine = json!({"counts": {"a": 10, "b": 0}});
    let ok = w
        .create_task(&image, &json!({"function": "f", "args": fine}), &[&w.a])
        .await;
    for (task, (_, says, secret)) in tasks.iter().zip(&cases) {
        withheld(&w, &config, task.runs[0].id, says, secret).await;
    }
    let run = w.wait_final(ok.runs[0].id, WAIT).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    let result: Value = serde_json::from_slice(&w.result(run.id).await).unwrap();
    assert_eq!(result, fine);
    assert!(
        !spool(&config)
            .join(format!("withheld/run-{}", run.id))
            .exists()
    );
    assert_eq!(
        audit_records(&config, run.id).last().unwrap()["outcome"],
        "completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_with_max_subtasks_0_refuses_the_first_subtask() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script", "v1");
    w.sign(&repo, &digest).await;
    let policy = format!(
        "{}[allow.output]\nmax_subtasks = 0\n",
        w.signed_policy(&repo)
    );
    let config = w.node_config(&w.a, &policy, "");
    let _node = w.start_node(&config).await;
    let script = format!(
        "POST /v1/subtasks {{'function':'part','args':'GET /v1/organizations','organizations':[{b}]}}",
        b = w.b.id
    );
    let task = w
        .create_task(
            &format!("{repo}:v1"),
            &json!({"function": "script", "args": script}),
            &[&w.a],
        )
        .await;
    let run = w.wait_final(task.runs[0].id, WAIT).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    let out = String::from_utf8(w.result(run.id).await).unwrap();
    let line = out.lines().next().unwrap();
    assert!(line.starts_with("403 "), "{out}");
    assert!(
        line.contains("already created 0 subtasks, the limit of allow[1] (max_subtasks = 0)"),
        "{line}"
    );
}

/// The node-wide `[output] max_subtasks` caps a rule without its own, and the refusal names
/// `default`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_output_section_caps_subtasks_and_is_named() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("proxy_script", "script-default", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(
        &w.a,
        &w.signed_policy(&repo),
        "[output]\nmax_subtasks = 0\n",
    );
    let _node = w.start_node(&config).await;
    let script = format!(
        "POST /v1/subtasks {{'function':'part','args':'GET /v1/organizations','organizations':[{b}]}}",
        b = w.b.id
    );
    let task = w
        .create_task(
            &format!("{repo}:v1"),
            &json!({"function": "script", "args": script}),
            &[&w.a],
        )
        .await;
    let run = w.wait_final(task.runs[0].id, WAIT).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    let out = String::from_utf8(w.result(run.id).await).unwrap();
    let line = out.lines().next().unwrap();
    assert!(line.starts_with("403 "), "{out}");
    assert!(
        line.contains("already created 0 subtasks, the limit of default (max_subtasks = 0)"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_per_day_is_counted_per_organization_and_rule_and_survives_a_restart() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "echo", "v1");
    w.sign(&repo, &digest).await;
    let policy = format!(
        "{}[allow.output]\nruns_per_day = 1\n",
        w.signed_policy(&repo)
    );
    let config = w.node_config(&w.a, &policy, "");
    let node = w.start_node(&config).await;
    let image = format!("{repo}:v1");
    let input = json!({"function": "hello", "args": null});

    let first = w.create_task(&image, &input, &[&w.a]).await;
    let first = w.wait_final(first.runs[0].id, WAIT).await;
    assert_eq!(first.state, RunState::Completed, "{:?}", first.reason);

    let says = format!(
        "organization `{}` already ran 1 run under allow[1] within the last 24 hours, its budget \
         of runs_per_day = 1",
        w.a.name
    );
    let second = w.create_task(&image, &input, &[&w.a]).await;
    let second = w.wait_final(second.runs[0].id, WAIT).await;
    assert_eq!(second.state, RunState::Rejected, "{:?}", second.reason);
    let reason = second.reason.unwrap();
    assert!(reason.contains(&says), "{reason}");
    let records = audit_records(&config, second.id);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "rejected");
    assert_eq!(records[0]["reason"], reason.as_str());
    assert_eq!(records[0]["rule"], "allow[1]");

    node.stop().await;
    let _node = w.start_node(&config).await;
    let third = w.create_task(&image, &input, &[&w.a]).await;
    let third = w.wait_final(third.runs[0].id, WAIT).await;
    assert_eq!(third.state, RunState::Rejected, "{:?}", third.reason);
    assert!(third.reason.unwrap().contains(&says));
}

/// The node-wide `[output]` section (named `default`) applies to a rule without output rules,
/// and the stricter of it and a rule's own applies: here the rule's smaller `max_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_wide_default_output_section_applies_with_the_stricter_rule_winning() {
    let mut w = World::new().await;
    let (plain, digest) = w.push_program("json_out", "json-default", "v1");
    w.sign(&plain, &digest).await;
    let (strict, digest) = w.push_program("json_out", "json-strict", "v1");
    w.sign(&strict, &digest).await;
    let policy = format!(
        "{}{}[allow.output]\nmax_bytes = 5\n",
        w.signed_policy(&plain),
        w.signed_policy(&strict)
    );
    let config = w.node_config(&w.a, &policy, "[output]\nmax_bytes = 10\n");
    let _node = w.start_node(&config).await;
    let task = |image: String, args: Value| {
        let w = &w;
        async move {
            let input = json!({"function": "f", "args": args});
            w.create_task(&format!("{image}:v1"), &input, &[&w.a])
                .await
                .runs[0]
                .id
        }
    };
    // 20 bytes under a rule with no output rules: the default's 10 applies.
    let big = task(plain.to_string(), json!("SECRETPAD-SECRETPAD")).await;
    // 7 bytes under the rule with max_bytes = 5: the rule's, smaller, applies.
    let small_strict = task(strict.to_string(), json!({"a": 1})).await;
    // The same 7 bytes under the plain rule fit the default.
    let small_plain = task(plain.to_string(), json!({"a": 1})).await;

    for (run, says) in [
        (big, "larger than max_bytes = 10 of default"),
        (small_strict, "larger than max_bytes = 5 of allow[2]"),
    ] {
        let r = w.wait_final(run, WAIT).await;
        assert_eq!(r.state, RunState::Failed, "{:?}", r.reason);
        let reason = r.reason.unwrap();
        assert!(
            reason.contains(says) && reason.contains("withheld"),
            "{reason}"
        );
        assert!(!reason.contains("SECRETPAD"), "{reason}");
        assert!(!r.has_result, "nothing is uploaded");
        assert!(spool(&config).join(format!("withheld/run-{run}")).exists());
    }
    let r = w.wait_final(small_plain, WAIT).await;
    assert_eq!(r.state, RunState::Completed, "{:?}", r.reason);
    let result: Value = serde_json::from_slice(&w.result(small_plain).await).unwrap();
    assert_eq!(result, json!({"a": 1}));
}
