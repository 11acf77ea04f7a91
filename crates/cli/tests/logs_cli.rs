//! Logs are output too (issue 9), with the real binaries: `warden node start` processes, the
//! real server, a real registry and the Docker engine. A node releases what an algorithm printed
//! only under `logs = "release"` (and no `"withhold"` in its default output section), sealed for
//! the researcher like a result, within `max_bytes`, and under `release = "manual"` only with a
//! released result; the researcher reads them with `warden task logs`, escaped. The server's
//! reason and database never hold a byte of them in plaintext; every release and withhold is in
//! the node's audit log.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod researcher;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use researcher::{Out, PASSWORD, World, warden_in};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);
/// What the algorithm prints on standard output (`crates/node/tests/programs/talk.c`).
const MARKER: &str = "ROW-7f3a-CONFIDENTIAL";

fn node_dir(w: &World, name: &str) -> PathBuf {
    w.dir.path().join(format!("node-{name}"))
}

fn socket(w: &World, name: &str) -> String {
    node_dir(w, name)
        .join("spool/local.sock")
        .display()
        .to_string()
}

/// The node's audit records of event `logs` for `run`.
fn logs_records(w: &World, name: &str, run: i64) -> Vec<Value> {
    let text = std::fs::read_to_string(node_dir(w, name).join("audit/audit.log")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|l| l.get("record").cloned())
        .filter(|r| r["event"] == "logs" && r["run_id"] == run)
        .collect()
}

/// Whether any file of the server's database (SQLite and its journal) holds `needle`.
fn database_holds(w: &World, needle: &str) -> bool {
    std::fs::read_dir(w.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("server.db"))
        .any(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            bytes
                .windows(needle.len())
                .any(|win| win == needle.as_bytes())
        })
}

fn profile(w: &World) -> PathBuf {
    w.profile(&w.dir.path().join("profile"), &[&w.a, &w.b], PASSWORD)
}

/// `warden task create` (not waiting) for `orgs` with `mode` in the input; the task id.
async fn create(w: &World, profile: &Path, image: &str, orgs: &[&str], mode: &str) -> String {
    let input = format!(r#"{{"function":"f","args":{{"mode":"{mode}"}}}}"#);
    let mut args = vec![
        "task",
        "create",
        "--profile-file",
        profile.to_str().unwrap(),
        "--image",
        image,
        "--input",
        &input,
    ];
    for o in orgs {
        args.extend(["--org", o]);
    }
    let out = w.warden(&args, &[]).await;
    assert_eq!(out.code, 0, "{out}");
    out.task_id()
}

/// The runs of a task once every one is final, by organization id.
async fn final_runs(w: &World, task: &str) -> Vec<Value> {
    let token = w.login("rita", PASSWORD).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, v) = w
            .call(
                reqwest::Method::GET,
                &token,
                &format!("/api/tasks/{task}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let runs = v["runs"].as_array().unwrap().clone();
        if runs.iter().all(|r| {
            matches!(
                r["state"].as_str(),
                Some("completed" | "failed" | "rejected")
            )
        }) {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "task {task} not final: {v}\n{}",
            w.node_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn run_of(runs: &[Value], org: i64) -> Value {
    runs.iter()
        .find(|r| r["organization_id"] == org)
        .unwrap()
        .clone()
}

async fn task_logs(w: &World, profile: &Path, task: &str, extra: &[&str]) -> Out {
    let mut args = vec![
        "task",
        "logs",
        "--profile-file",
        profile.to_str().unwrap(),
        task,
    ];
    args.extend_from_slice(extra);
    w.warden(&args, &[]).await
}

/// The run's entry in `warden task logs --json`.
fn json_run(out: &Out, run: i64) -> Value {
    out.json()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == run)
        .unwrap_or_else(|| panic!("no run {run}: {out}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_logs_of_a_failed_run_reach_only_the_researcher_sealed() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("talk", "logs-talk", "v1").await;
    let policy = format!(
        "{}[allow.output]\nlogs = \"release\"\n",
        w.signed_policy(&repo)
    );
    w.start_node("hospital-b", &policy);
    let profile = profile(&w);
    let image = format!("{repo}:v1");
    let task = create(&w, &profile, &image, &["hospital-b"], "fail").await;
    let runs = final_runs(&w, &task).await;
    let run = run_of(&runs, w.b.id);
    let id = run["id"].as_i64().unwrap();
    // The run failed with Warden's own words; none of what the algorithm printed.
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["reason"], "the algorithm exited with code 1", "{run}");
    // The server holds the logs, sealed only: not a byte of them in its database files.
    let stored = w.query(&format!(
        "SELECT length(data) FROM run_logs WHERE run_id = {id}"
    ));
    assert_eq!(stored.len(), 1, "{stored:?}\n{}", w.node_logs());
    assert!(!database_holds(&w, MARKER));
    assert!(!database_holds(&w, "talk line"));
    // The researcher reads them, opened with her key, escaped for the terminal.
    let out = task_logs(&w, &profile, &task, &[]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains(&format!("hospital-b: run {id} failed")),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!("  | talk line one: {MARKER}")),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("  | talk line two: \\u{1b}[31mred\\u{1b}[0m on stderr"),
        "{out}"
    );
    assert!(!out.stdout.contains('\u{1b}'), "{out}");
    // The same as JSON, and for one organization.
    let json = task_logs(&w, &profile, &task, &["--org", "hospital-b", "--json"]).await;
    assert_eq!(json.code, 0, "{json}");
    let r = json_run(&json, id);
    assert_eq!(r["logs"], "released", "{json}");
    assert!(r["text"].as_str().unwrap().contains(MARKER), "{json}");
    assert!(!json.stdout.contains('\u{1b}'), "{json}");
    // An organization without a run is bad input.
    let none = task_logs(&w, &profile, &task, &["--org", "hospital-a"]).await;
    assert_eq!(none.code, 2, "{none}");
    assert!(
        none.stderr
            .contains("no run at an organization named `hospital-a`"),
        "{none}"
    );
    // Another user of the researcher's organization cannot open them without her key: the
    // server gives them only to who may read the result, and they are sealed to her key.
    let records = logs_records(&w, "hospital-b", id);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "released", "{records:?}");
    assert!(
        records[0]["reason"]
            .as_str()
            .unwrap()
            .contains("logs = \"release\" of allow[1]"),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_logs_stay_at_the_node_and_a_node_default_of_withhold_wins() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("talk", "logs-withheld", "v1").await;
    // hospital-b: no logs key (withhold is the default).
    w.start_node("hospital-b", &w.signed_policy(&repo));
    // hospital-a: the rule releases, its node's default output section withholds.
    let releasing = format!(
        "{}[allow.output]\nlogs = \"release\"\n",
        w.signed_policy(&repo)
    );
    w.start_node_with(
        "hospital-a",
        &releasing,
        "\n[output]\nlogs = \"withhold\"\n",
    );
    let profile = profile(&w);
    let image = format!("{repo}:v1");
    let task = create(&w, &profile, &image, &["hospital-a", "hospital-b"], "fail").await;
    let runs = final_runs(&w, &task).await;
    for org in [w.a.id, w.b.id] {
        let run = run_of(&runs, org);
        assert_eq!(run["state"], "failed", "{run}\n{}", w.node_logs());
        assert_eq!(run["reason"], "the algorithm exited with code 1", "{run}");
    }
    // Nothing at the server.
    assert!(w.query("SELECT run_id FROM run_logs").is_empty());
    assert!(!database_holds(&w, MARKER));
    // The researcher is told they were withheld.
    let out = task_logs(&w, &profile, &task, &["--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    for org in [w.a.id, w.b.id] {
        let id = run_of(&runs, org)["id"].as_i64().unwrap();
        let r = json_run(&out, id);
        assert_eq!(r["logs"], "withheld", "{out}");
        assert!(
            r["why"]
                .as_str()
                .unwrap()
                .contains("withheld by the node's policy")
        );
    }
    let text = task_logs(&w, &profile, &task, &["--org", "hospital-b"]).await;
    assert_eq!(text.code, 0, "{text}");
    assert!(
        text.stdout.contains("logs: withheld by the node's policy"),
        "{text}"
    );
    assert!(!text.stdout.contains(MARKER), "{text}");
    // Each node kept them and says why in its audit log.
    let b = run_of(&runs, w.b.id)["id"].as_i64().unwrap();
    let a = run_of(&runs, w.a.id)["id"].as_i64().unwrap();
    let kept =
        std::fs::read_to_string(node_dir(&w, "hospital-b").join(format!("spool/logs/run-{b}.log")))
            .unwrap();
    assert!(kept.contains(MARKER), "{kept}");
    let rb = logs_records(&w, "hospital-b", b);
    assert_eq!(rb.len(), 1, "{rb:?}");
    assert_eq!(rb[0]["outcome"], "withheld");
    assert!(
        rb[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no rule sets logs = \"release\""),
        "{rb:?}"
    );
    let ra = logs_records(&w, "hospital-a", a);
    assert_eq!(ra.len(), 1, "{ra:?}");
    assert_eq!(ra[0]["outcome"], "withheld");
    assert!(
        ra[0]["reason"]
            .as_str()
            .unwrap()
            .contains("logs = \"withhold\" of default"),
        "{ra:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_over_max_bytes_are_withheld_and_the_run_still_completes() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("talk", "logs-big", "v1").await;
    // hospital-a: released within 1000 bytes; hospital-b: released, no limit.
    let capped = format!(
        "{}[allow.output]\nlogs = \"release\"\nmax_bytes = 1000\n",
        w.signed_policy(&repo)
    );
    let open = format!(
        "{}[allow.output]\nlogs = \"release\"\n",
        w.signed_policy(&repo)
    );
    w.start_node("hospital-a", &capped);
    w.start_node("hospital-b", &open);
    let profile = profile(&w);
    let image = format!("{repo}:v1");
    let task = create(&w, &profile, &image, &["hospital-a", "hospital-b"], "big").await;
    let runs = final_runs(&w, &task).await;
    let a = run_of(&runs, w.a.id);
    let b = run_of(&runs, w.b.id);
    // Both completed: a result of 6 bytes passes max_bytes; the logs do not fail the run.
    assert_eq!(a["state"], "completed", "{a}\n{}", w.node_logs());
    assert_eq!(b["state"], "completed", "{b}");
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    assert_eq!(w.query("SELECT run_id FROM run_logs"), [b.to_string()]);
    let out = task_logs(&w, &profile, &task, &["--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(json_run(&out, a)["logs"], "withheld", "{out}");
    let rb = json_run(&out, b);
    assert_eq!(rb["logs"], "released", "{out}");
    assert!(
        rb["text"].as_str().unwrap().contains("padding line 63"),
        "{out}"
    );
    let ra = logs_records(&w, "hospital-a", a);
    assert_eq!(ra.len(), 1, "{ra:?}");
    assert_eq!(ra[0]["outcome"], "withheld");
    let reason = ra[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("larger than max_bytes = 1000 of allow[1]")
            && reason.contains("the run is not failed for it"),
        "{reason}"
    );
    // The results themselves were released as usual.
    let wait = w
        .warden(
            &[
                "task",
                "wait",
                "--profile-file",
                profile.to_str().unwrap(),
                &task,
            ],
            &[],
        )
        .await;
    assert_eq!(wait.code, 0, "{wait}");
    assert!(wait.stdout.contains("result: talked"), "{wait}");
    // A lying server cannot pass a result off as logs, nor another task's logs as these.
    w.tamper(&format!(
        "UPDATE run_logs SET data = (SELECT data FROM results WHERE run_id = {b}) \
         WHERE run_id = {b}"
    ));
    let swapped = task_logs(&w, &profile, &task, &["--org", "hospital-b"]).await;
    assert_eq!(swapped.code, 1, "{swapped}");
    assert!(swapped.stderr.contains("does not open"), "{swapped}");
    assert!(swapped.stdout.is_empty(), "{swapped}");
    let task2 = create(&w, &profile, &image, &["hospital-b"], "ok").await;
    let b2 = run_of(&final_runs(&w, &task2).await, w.b.id)["id"]
        .as_i64()
        .unwrap();
    w.tamper(&format!(
        "UPDATE run_logs SET data = (SELECT data FROM run_logs WHERE run_id = {b2}) \
         WHERE run_id = {b}"
    ));
    let replayed = task_logs(&w, &profile, &task, &["--org", "hospital-b"]).await;
    assert_eq!(replayed.code, 1, "{replayed}");
    assert!(
        replayed.stderr.contains("is bound to the task nonce"),
        "{replayed}"
    );
}

/// The run of a one-run task once it awaits release at its node.
async fn held_run(w: &World, token: &str, task: &str) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, v) = w
            .call(
                reqwest::Method::GET,
                token,
                &format!("/api/tasks/{task}"),
                None,
            )
            .await;
        let r = v["runs"][0].clone();
        if r["state"] == "awaiting_release" {
            return r["id"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "{v}\n{}", w.node_logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `warden node pending` once the (restarted) node answers on its socket.
async fn wait_for_socket(w: &World, socket: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = warden_in(w.dir.path(), &["node", "pending", "--socket", socket], &[]).await;
        if out.code == 0 && out.stdout.contains("run ") {
            return out.stdout;
        }
        assert!(Instant::now() < deadline, "{out}\n{}", w.node_logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_manual_release_logs_leave_only_with_a_released_result_even_after_a_restart() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("talk", "logs-manual", "v1").await;
    let policy = format!(
        "{}[allow.output]\nlogs = \"release\"\nrelease = \"manual\"\n",
        w.signed_policy(&repo)
    );
    w.start_node("hospital-b", &policy);
    let profile = profile(&w);
    let image = format!("{repo}:v1");
    let sock = socket(&w, "hospital-b");
    let token = w.login("rita", PASSWORD).await;

    // Held: no logs at the server; the researcher is told they are not there yet.
    let task = create(&w, &profile, &image, &["hospital-b"], "ok").await;
    let run = held_run(&w, &token, &task).await;
    assert!(w.query("SELECT run_id FROM run_logs").is_empty());
    let out = task_logs(&w, &profile, &task, &["--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(json_run(&out, run)["logs"], "not_yet", "{out}");
    assert!(logs_records(&w, "hospital-b", run).is_empty());
    // The node is killed and started again: the logs wait with the held result.
    let b = w
        .nodes
        .iter()
        .position(|n| n.label.ends_with("hospital-b"))
        .unwrap();
    w.nodes.remove(b);
    w.restart_node("hospital-b");
    assert_eq!(held_run(&w, &token, &task).await, run);
    let pending = wait_for_socket(&w, &sock).await;
    assert!(pending.contains(&format!("run {run} ")), "{pending}");
    // Released: the result and the logs leave together.
    let released = warden_in(
        w.dir.path(),
        &["node", "release", &run.to_string(), "--socket", &sock],
        &[],
    )
    .await;
    assert_eq!(released.code, 0, "{released}");
    final_runs(&w, &task).await;
    let out = task_logs(&w, &profile, &task, &[]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .contains(&format!("hospital-b: run {run} completed")),
        "{out}"
    );
    assert!(out.stdout.contains(MARKER), "{out}");
    let records = logs_records(&w, "hospital-b", run);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "released");

    // Refused: no logs leave.
    let task = create(&w, &profile, &image, &["hospital-b"], "ok").await;
    let refused_run = held_run(&w, &token, &task).await;
    let refused = warden_in(
        w.dir.path(),
        &[
            "node",
            "refuse",
            &refused_run.to_string(),
            "--socket",
            &sock,
            "--reason",
            "not today",
        ],
        &[],
    )
    .await;
    assert_eq!(refused.code, 0, "{refused}");
    let runs = final_runs(&w, &task).await;
    assert_eq!(runs[0]["state"], "failed", "{runs:?}");
    assert_eq!(w.query("SELECT run_id FROM run_logs"), [run.to_string()]);
    let out = task_logs(&w, &profile, &task, &["--json"]).await;
    assert_eq!(json_run(&out, refused_run)["logs"], "withheld", "{out}");
    let records = logs_records(&w, "hospital-b", refused_run);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "withheld");
    assert!(
        records[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the held result was refused"),
        "{records:?}"
    );
    // A failed run under manual release has no result to release: its logs stay too.
    let task = create(&w, &profile, &image, &["hospital-b"], "fail").await;
    let runs = final_runs(&w, &task).await;
    let failed = runs[0]["id"].as_i64().unwrap();
    assert_eq!(runs[0]["state"], "failed", "{runs:?}");
    let records = logs_records(&w, "hospital-b", failed);
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0]["reason"]
            .as_str()
            .unwrap()
            .contains("release = \"manual\""),
        "{records:?}"
    );
    assert_eq!(w.query("SELECT run_id FROM run_logs"), [run.to_string()]);
}
