//! `warden node status` with the real binaries: a `warden node start` process, the real server,
//! a real registry and the Docker engine. The node's health and what it holds over its local
//! socket: a held result, a run in flight and one queued behind it, then its audit directory
//! made read-only (a bind mount, so the test needs root) and its server stopped, each reported
//! as a problem with exit status 1.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod researcher;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use researcher::{Out, PASSWORD, World};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn node_dir(w: &World, name: &str) -> PathBuf {
    w.dir.path().join(format!("node-{name}"))
}

/// A read-only bind mount of a directory over itself, undone when dropped.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> ReadOnly {
        let run = |args: &[&str]| {
            let out = Command::new("mount").args(args).arg(dir).output().unwrap();
            assert!(
                out.status.success(),
                "mount {args:?} {} (the test needs root): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["--bind", dir.to_str().unwrap()]);
        let guard = ReadOnly(dir.to_path_buf());
        run(&["-o", "remount,bind,ro"]);
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

async fn status(w: &World, socket: &str) -> Out {
    w.warden(&["node", "status", "--socket", socket, "--json"], &[])
        .await
}

/// Polls `warden node status --json` until `ok` holds for its document.
async fn until_status(w: &World, socket: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Out {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = status(w, socket).await;
        if let Ok(v) = serde_json::from_str::<Value>(&out.stdout)
            && ok(&v)
        {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "the status never showed {what}: {out}\n{}",
            w.node_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(v: &Value, set: &str) -> Vec<i64> {
    v["runs"][set]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_status_shows_the_node_its_runs_and_each_problem() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("slow", "status-slow", "v1").await;
    let policy = format!(
        "{}[allow.output]\nrelease = \"manual\"\n\n[[deny]]\nrepository_regex = '.+/experimental/.+'\n",
        w.signed_policy(&repo)
    );
    w.start_node_with("hospital-b", &policy, "concurrent_runs = 1\n");
    let profile = w.profile(&w.dir.path().join("profile"), &[&w.a, &w.b], PASSWORD);
    let image = format!("{repo}:v1");
    let socket = node_dir(&w, "hospital-b")
        .join("spool/local.sock")
        .display()
        .to_string();
    let create = |sleep: u32| {
        let input = format!(r#"{{"function":"f","args":{{"sleep":{sleep}}}}}"#);
        let profile = profile.clone();
        let image = image.clone();
        let w = &w;
        async move {
            let out = w
                .warden(
                    &[
                        "task",
                        "create",
                        "--profile-file",
                        profile.to_str().unwrap(),
                        "--image",
                        &image,
                        "--org",
                        "hospital-b",
                        "--input",
                        &input,
                    ],
                    &[],
                )
                .await;
            assert_eq!(out.code, 0, "{out}");
        }
    };

    // A healthy node with nothing yet.
    let first = until_status(&w, &socket, "a connected server", |v| {
        v["server"]["connected"] == true
    })
    .await;
    assert_eq!(first.code, 0, "{first}");
    let v = first.json();
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    assert_eq!(v["node"]["organization"], "hospital-b", "{v}");
    assert_eq!(v["server"]["url"], w.base.as_str(), "{v}");
    assert!(v["server"]["last_contact"].is_i64(), "{v}");
    let policy_file = node_dir(&w, "hospital-b").join("policy.toml");
    let sum = Command::new("sha256sum")
        .arg(&policy_file)
        .output()
        .unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    let sum = sum.split_whitespace().next().unwrap();
    assert_eq!(
        v["policy"]["sha256"],
        format!("sha256:{sum}").as_str(),
        "{v}"
    );
    assert_eq!(v["policy"]["file"], policy_file.to_str().unwrap(), "{v}");
    assert_eq!(
        (
            &v["policy"]["version"],
            &v["policy"]["allow_rules"],
            &v["policy"]["deny_rules"]
        ),
        (&Value::from(1), &Value::from(1), &Value::from(1)),
        "{v}"
    );
    assert_eq!(v["self_check"]["passed"], true, "{v}");
    assert!(v["self_check"]["at"].is_i64(), "{v}");
    // The node's directory has no probe: it ran the one built into it.
    let probe = v["self_check"]["probe"].as_str().unwrap();
    assert!(probe.starts_with("built-in (sha256:"), "{v}");
    assert_eq!(v["audit"]["writable"], true, "{v}");
    assert_eq!(v["audit"]["problem"], Value::Null, "{v}");
    assert!(v["audit"]["entries"].is_u64(), "{v}");
    assert_eq!(v["runs"]["concurrent_runs"], 1, "{v}");

    // A held result, then a run in flight with one queued behind it (one run slot).
    create(0).await;
    let held = until_status(&w, &socket, "a held result", |v| {
        v["runs"]["held_results"]["count"] == 1
    })
    .await
    .json();
    let held_run = ids(&held, "held_results")[0];
    create(300).await;
    create(300).await;
    let busy = until_status(&w, &socket, "a run in flight and one queued", |v| {
        v["runs"]["in_flight"]["count"] == 1 && v["runs"]["queued"]["count"] == 1
    })
    .await;
    assert_eq!(busy.code, 0, "{busy}");
    let v = busy.json();
    let (running, queued) = (ids(&v, "in_flight")[0], ids(&v, "queued")[0]);
    assert!(running != queued && running != held_run, "{v}");
    assert_eq!(ids(&v, "held_results"), [held_run], "{v}");
    assert_eq!(v["runs"]["awaiting_approval"]["count"], 0, "{v}");

    // The text block says the same, found from the node's configuration.
    let config = node_dir(&w, "hospital-b").join("node.toml");
    let text = w
        .warden(
            &["node", "status", "--config", config.to_str().unwrap()],
            &[],
        )
        .await;
    assert_eq!(text.code, 0, "{text}");
    for needle in [
        "status:      healthy".to_owned(),
        format!("server:      {} connected", w.base),
        "1 allow rule(s), 1 deny rule(s)".to_owned(),
        format!("in flight 1 (runs {running}), queued 1 (runs {queued})"),
        format!("held results 1 (runs {held_run})"),
        "self-check:  passed".to_owned(),
        "audit.log: writable, ".to_owned(),
    ] {
        assert!(text.stdout.contains(&needle), "no `{needle}`: {text}");
    }

    // The audit directory made read-only: the node reports it, exit 1.
    let audit_dir = node_dir(&w, "hospital-b").join("audit");
    let ro = ReadOnly::mount(&audit_dir);
    let bad = status(&w, &socket).await;
    assert_eq!(bad.code, 1, "{bad}");
    let v = bad.json();
    assert_eq!(v["healthy"], false, "{v}");
    assert_eq!(v["audit"]["writable"], false, "{v}");
    let problem = v["audit"]["problem"].as_str().unwrap();
    assert!(
        problem.starts_with("audit log unavailable: ") && problem.contains("Read-only"),
        "{v}"
    );
    assert_eq!(v["problems"], serde_json::json!([problem]), "{v}");
    let text = w
        .warden(&["node", "status", "--socket", &socket], &[])
        .await;
    assert_eq!(text.code, 1, "{text}");
    assert!(
        text.stdout.contains("status:      PROBLEM")
            && text.stdout.contains("problem:   audit log unavailable")
            && text.stdout.contains("audit.log: audit log unavailable, "),
        "{text}"
    );
    // Writable again: healthy again.
    drop(ro);
    let again = status(&w, &socket).await;
    assert_eq!(again.code, 0, "{again}");

    // The server gone: not connected, the last error in Warden's words, exit 1.
    drop(w.server.take());
    let gone = until_status(&w, &socket, "the server unreachable", |v| {
        v["server"]["connected"] == false
            && v["server"]["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot connect"))
    })
    .await;
    assert_eq!(gone.code, 1, "{gone}");
    let v = gone.json();
    assert_eq!(v["healthy"], false, "{v}");
    assert!(v["server"]["last_error"]["at"].is_i64(), "{v}");
    assert!(
        v["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap()
            .starts_with("the server is unreachable: ")),
        "{v}"
    );
    let text = w
        .warden(&["node", "status", "--socket", &socket], &[])
        .await;
    assert_eq!(text.code, 1, "{text}");
    assert!(
        text.stdout.contains("NOT CONNECTED") && text.stdout.contains("last error:"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_status_without_a_socket_is_bad_input_and_without_a_node_fails() {
    let dir = tempfile::tempdir().unwrap();
    let none = researcher::warden_in(dir.path(), &["node", "status"], &[]).await;
    assert_eq!(none.code, 2, "{none}");
    assert!(none.stderr.contains("--socket PATH"), "{none}");
    let missing = dir.path().join("nothing.sock");
    let gone = researcher::warden_in(
        dir.path(),
        &["node", "status", "--socket", missing.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(gone.code, 1, "{gone}");
    assert!(
        gone.stderr.contains("cannot reach the node's local socket"),
        "{gone}"
    );
}
