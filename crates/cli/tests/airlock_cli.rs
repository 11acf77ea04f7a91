//! The airlock (issue 9) with the real binaries: `warden node start` processes, the real server,
//! a real registry and the Docker engine, the researcher's `warden task create --wait`, and the
//! data owner's `warden node pending|show|release|refuse|approve|refuse-digest` over the node's
//! local socket, run as root and as other local users (`setpriv`), who are created here.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod researcher;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use researcher::{Out, PASSWORD, World, warden_in};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_warden");
const WAIT: Duration = Duration::from_secs(120);

fn node_dir(w: &World, name: &str) -> PathBuf {
    w.dir.path().join(format!("node-{name}"))
}

fn default_socket(w: &World, name: &str) -> String {
    node_dir(w, name)
        .join("spool/local.sock")
        .display()
        .to_string()
}

/// Every audit record of a node's log.
fn audit(w: &World, name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(node_dir(w, name).join("audit/audit.log")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|l| l.get("record").cloned())
        .collect()
}

/// `warden ARGS` as root (the test's user).
async fn warden(w: &World, args: &[&str]) -> Out {
    warden_in(w.dir.path(), args, &[]).await
}

/// `warden ARGS` as uid:gid with no supplementary groups.
async fn warden_as(uid: u32, gid: u32, args: &[&str]) -> Out {
    let out = tokio::process::Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(BIN)
        .args(args)
        .current_dir("/")
        .env_remove("WARDEN_PASSWORD")
        .output()
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The researcher's `warden task create --wait`, running in the background; what it printed on
/// standard error so far is readable while it waits.
struct Waiting {
    child: tokio::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Waiting {
    /// Waits until the researcher's command has printed `needle` on standard error.
    async fn saw(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stderr.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the researcher never saw `{needle}`: {}",
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The researcher's `warden task create --wait` for `org`, started in the background.
fn create_and_wait(w: &World, profile: &Path, image: &str, org: &str) -> Waiting {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(BIN)
        .current_dir(w.dir.path())
        .args(["task", "create", "--profile-file"])
        .arg(profile)
        .args(["--image", image, "--org", org])
        .args(["--input", r#"{"function":"f","args":{"n":1}}"#])
        .args(["--wait", "--timeout", "120"])
        .env_remove("WARDEN_PASSWORD")
        .env_remove("XDG_CONFIG_HOME")
        .env("XDG_STATE_HOME", w.state_home())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = stderr.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    Waiting {
        child,
        stderr,
        reader,
    }
}

async fn finished(waiting: Waiting) -> Out {
    let out = tokio::time::timeout(WAIT, waiting.child.wait_with_output())
        .await
        .expect("the researcher's wait ended")
        .unwrap();
    waiting.reader.await.unwrap();
    let stderr = waiting.stderr.lock().unwrap().clone();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// Polls `warden node pending --json` until `pick` finds something in it.
async fn until_pending<T>(w: &World, socket: &str, mut pick: impl FnMut(&Value) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = warden(w, &["node", "pending", "--socket", socket, "--json"]).await;
        if out.code == 0
            && let Some(t) = pick(&out.json())
        {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "nothing pending: {out}\n{}",
            w.node_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn first_result(v: &Value) -> Option<i64> {
    v["results"].as_array()?.first()?["run_id"].as_i64()
}

fn first_approval(v: &Value) -> Option<(i64, String)> {
    let a = v["approvals"].as_array()?.first()?.clone();
    Some((a["run_id"].as_i64()?, a["digest"].as_str()?.to_owned()))
}

async fn state_now(w: &World, run: i64) -> Value {
    let token = w.login("rita", PASSWORD).await;
    let (s, v) = w
        .call(
            reqwest::Method::GET,
            &token,
            &format!("/api/runs/{run}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// The run as the server shows it once it reaches `state`: a node reports a wait after it holds
/// the run (and, after a restart, at its next sweep), so the server may lag the socket a little.
async fn until_state(w: &World, run: i64, state: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = state_now(w, run).await;
        if v["state"] == state {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} never reached {state}: {v}\n{}",
            w.node_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn manual(repo: &warden_reference::Repository, w: &World, extra: &str) -> String {
    format!(
        "{}[allow.output]\nrelease = \"manual\"\n{extra}",
        w.signed_policy(repo)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_result_waits_for_its_release_while_the_researcher_waits() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("echo", "air-echo", "v1").await;
    w.start_node("hospital-b", &manual(&repo, &w, ""));
    let profile = w.profile(&w.dir.path().join("profile"), &[&w.a, &w.b], PASSWORD);
    let image = format!("{repo}:v1");
    let socket = default_socket(&w, "hospital-b");
    let child = create_and_wait(&w, &profile, &image, "hospital-b");

    let run = until_pending(&w, &socket, first_result).await;
    // Held: the server shows the wait and holds no result, not even sealed.
    let r = until_state(&w, run, "awaiting_release").await;
    assert_eq!(r["has_result"], false, "{r}");
    assert!(w.query("SELECT run_id FROM results").is_empty());
    // The socket is the node's user's only, and the plaintext too.
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    let held = node_dir(&w, "hospital-b").join(format!("spool/pending/run-{run}/result"));
    assert_eq!(mode(held.to_str().unwrap()), 0o600);
    let text = warden(&w, &["node", "pending", "--socket", &socket]).await;
    assert_eq!(text.code, 0, "{text}");
    assert!(
        text.stdout.contains(&format!("run {run} ")) && text.stdout.contains("released by 0 of 1"),
        "{text}"
    );
    // The data owner reads it in plaintext, at the node (found from the node's configuration).
    let config = node_dir(&w, "hospital-b").join("node.toml");
    let shown = warden(
        &w,
        &[
            "node",
            "show",
            &run.to_string(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(shown.code, 0, "{shown}");
    assert!(shown.stdout.contains("env-ok echo:"), "{shown}");
    // With --json: one document of the held result's fields and its bytes (a second view).
    let shown = warden(
        &w,
        &[
            "node",
            "show",
            &run.to_string(),
            "--socket",
            &socket,
            "--json",
        ],
    )
    .await;
    assert_eq!(shown.code, 0, "{shown}");
    let v: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!((&v["run_id"], &v["checkers"]), (&run.into(), &1.into()));
    assert_eq!(v["released_by"], serde_json::json!([]));
    assert!(v["sha256"].as_str().unwrap().starts_with("sha256:"), "{v}");
    assert!(v["out"].is_null(), "{v}");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["result_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(v["bytes"], bytes.len());
    assert!(
        String::from_utf8_lossy(&bytes).contains("env-ok echo:"),
        "{v}"
    );
    let file = w.dir.path().join("result.bin");
    let shown = warden(
        &w,
        &[
            "node",
            "show",
            &run.to_string(),
            "--socket",
            &socket,
            "--out",
            file.to_str().unwrap(),
            "--json",
        ],
    )
    .await;
    assert_eq!(shown.code, 0, "{shown}");
    let v: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(v["out"], file.to_str().unwrap());
    assert!(v["result_base64"].is_null(), "{v}");
    assert_eq!(std::fs::read(&file).unwrap(), bytes);

    // The researcher sees the run wait at the node before it is released.
    child
        .saw(&format!("hospital-b: run {run} awaiting_release"))
        .await;
    let released = warden(
        &w,
        &[
            "node",
            "release",
            &run.to_string(),
            "--socket",
            &socket,
            "--json",
        ],
    )
    .await;
    assert_eq!(released.code, 0, "{released}");
    let v: Value = serde_json::from_str(&released.stdout).unwrap();
    assert_eq!(
        (&v["action"], &v["run_id"], &v["done"], &v["runs"]),
        (
            &"release".into(),
            &run.into(),
            &true.into(),
            &serde_json::json!([run])
        )
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("released by root (uid 0)"),
        "{released}"
    );
    // The researcher saw the wait, then the result, opened and checked.
    let out = finished(child).await;
    assert_eq!(out.code, 0, "{out}\n{}", w.node_logs());
    assert!(
        out.stderr
            .contains(&format!("hospital-b: run {run} awaiting_release")),
        "{out}"
    );
    assert!(
        out.stdout.contains("result: env-ok echo:") && out.stdout.contains(" completed"),
        "{out}"
    );
    // Nothing is left held; a second release finds nothing (the same exit and error with
    // --json, and nothing on stdout).
    let again = warden(
        &w,
        &["node", "release", &run.to_string(), "--socket", &socket],
    )
    .await;
    assert_eq!(again.code, 1, "{again}");
    assert!(again.stderr.contains("holds no result of run"), "{again}");
    let again = warden(
        &w,
        &[
            "node",
            "release",
            &run.to_string(),
            "--socket",
            &socket,
            "--json",
        ],
    )
    .await;
    assert_eq!(again.code, 1, "{again}");
    assert!(again.stdout.is_empty(), "{again}");
    assert!(again.stderr.contains("holds no result of run"), "{again}");
    assert!(!held.exists());

    // The audit log names who viewed and who released, and when.
    let records = audit(&w, "hospital-b");
    let of = |event: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["event"] == event && r["run_id"] == run)
            .collect()
    };
    let view = of("view");
    assert_eq!(view.len(), 3, "{records:?}");
    assert_eq!(view[0]["by"]["uid"], 0);
    assert_eq!(view[0]["by"]["name"], "root");
    assert!(view[0]["time"].is_string());
    let release = of("release");
    assert_eq!(release.len(), 1, "{records:?}");
    assert_eq!(
        (&release[0]["outcome"], &release[0]["by"]["uid"]),
        (&Value::from("done"), &Value::from(0))
    );
    let runs = of("run");
    let outcomes: Vec<&str> = runs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["awaiting_release", "completed"], "{records:?}");
}

/// A user of this machine, created once (the tests run as root); its uid.
fn user(name: &str, group: Option<&str>) -> u32 {
    let exists = std::process::Command::new("id")
        .arg("-u")
        .arg(name)
        .output()
        .unwrap();
    if !exists.status.success() {
        let mut cmd = std::process::Command::new("useradd");
        cmd.args(["--no-create-home", "--shell", "/usr/sbin/nologin"]);
        if let Some(g) = group {
            cmd.args(["--groups", g]);
        }
        let out = cmd.arg(name).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let id = std::process::Command::new("id")
        .arg("-u")
        .arg(name)
        .output()
        .unwrap();
    String::from_utf8_lossy(&id.stdout).trim().parse().unwrap()
}

fn group_id(name: &str) -> u32 {
    let exists = std::process::Command::new("getent")
        .args(["group", name])
        .output()
        .unwrap();
    if !exists.status.success() {
        let out = std::process::Command::new("groupadd")
            .arg(name)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = std::process::Command::new("getent")
        .args(["group", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&line.stdout)
        .split(':')
        .nth(2)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_checkers_must_be_two_users_of_the_group_and_a_refusal_reaches_the_researcher() {
    let gid = group_id("warden9chk");
    let alice = user("warden9a", Some("warden9chk"));
    let bob = user("warden9b", Some("warden9chk"));
    let mallory = user("warden9x", None);
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("echo", "air-check", "v1").await;
    // The socket outside the spool, in a directory other users may traverse.
    let sock_dir = PathBuf::from(format!("/tmp/warden9-{}", std::process::id()));
    std::fs::create_dir_all(&sock_dir).unwrap();
    std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = sock_dir.join("node.sock").display().to_string();
    w.start_node_with(
        "hospital-b",
        &manual(&repo, &w, "checkers = 2\n"),
        &format!("[local]\nsocket = \"{socket}\"\ngroup = \"warden9chk\"\n"),
    );
    let profile = w.profile(&w.dir.path().join("profile"), &[&w.a, &w.b], PASSWORD);
    let image = format!("{repo}:v1");
    let child = create_and_wait(&w, &profile, &image, "hospital-b");
    let run = until_pending(&w, &socket, first_result).await;
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), gid);
    let run_s = run.to_string();
    let release = [
        "node",
        "release",
        run_s.as_str(),
        "--socket",
        socket.as_str(),
    ];

    // Alice (a member, her own primary group) releases: one of two.
    let first = warden_as(alice, gid, &release).await;
    assert_eq!(first.code, 0, "{first}");
    assert!(
        first.stdout.contains("1 of 2 checkers") && first.stdout.contains("warden9a"),
        "{first}"
    );
    // Alice again: the same user does not count twice.
    let twice = warden_as(alice, gid, &release).await;
    assert_eq!(twice.code, 1, "{twice}");
    assert!(
        twice.stderr.contains("already released") && twice.stderr.contains("another local user"),
        "{twice}"
    );
    // Mallory is in no group: the socket's mode keeps him out...
    let outside = warden_as(mallory, mallory, &release).await;
    assert_eq!(outside.code, 1, "{outside}");
    assert!(
        outside
            .stderr
            .contains("cannot reach the node's local socket"),
        "{outside}"
    );
    // ... and when the mode lets him in, the node's own check of his credentials does.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    for args in [
        release.to_vec(),
        vec!["node", "show", run_s.as_str(), "--socket", socket.as_str()],
        vec!["node", "pending", "--socket", socket.as_str()],
    ] {
        let denied = warden_as(mallory, mallory, &args).await;
        assert_eq!(denied.code, 1, "{denied}");
        assert!(
            denied.stderr.contains("warden9x")
                && denied
                    .stderr
                    .contains("may not use this node's local socket")
                && denied.stderr.contains("`warden9chk`"),
            "{denied}"
        );
        assert!(!denied.stdout.contains("env-ok"), "{denied}");
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660)).unwrap();
    let r = state_now(&w, run).await;
    assert_eq!(r["state"], "awaiting_release", "nothing left yet: {r}");
    // Bob, a second member, releases it: it leaves.
    let second = warden_as(bob, gid, &release).await;
    assert_eq!(second.code, 0, "{second}");
    assert!(
        second.stdout.contains("warden9a") && second.stdout.contains("warden9b"),
        "{second}"
    );
    let out = finished(child).await;
    assert_eq!(out.code, 0, "{out}\n{}", w.node_logs());
    assert!(out.stdout.contains("result: env-ok echo:"), "{out}");

    // A refusal: the run fails with the data owner's reason, cleaned of control characters.
    let child = create_and_wait(&w, &profile, &image, "hospital-b");
    let run2 = until_pending(&w, &socket, |v| {
        v["results"]
            .as_array()?
            .iter()
            .find_map(|r| r["run_id"].as_i64().filter(|id| *id != run))
    })
    .await;
    let refused = warden_as(
        bob,
        gid,
        &[
            "node",
            "refuse",
            &run2.to_string(),
            "--socket",
            &socket,
            "--reason",
            "too detailed\u{1b}[2J for release",
            "--json",
        ],
    )
    .await;
    assert_eq!(refused.code, 0, "{refused}");
    let v: Value = serde_json::from_str(&refused.stdout).unwrap();
    assert_eq!(
        (&v["action"], &v["run_id"], &v["done"], &v["runs"]),
        (
            &"refuse".into(),
            &run2.into(),
            &true.into(),
            &serde_json::json!([run2])
        )
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("refused by warden9b"),
        "{refused}"
    );
    let out = finished(child).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains(&format!("run {run2} failed"))
            && out.stdout.contains(
                "the data owner refused to release the result: too detailed [2J for release"
            ),
        "{out}"
    );
    assert!(!out.stdout.contains("env-ok"), "{out}");
    // The plaintext stays at the node, withheld.
    let withheld = node_dir(&w, "hospital-b").join(format!("spool/withheld/run-{run2}"));
    assert!(
        std::fs::read_to_string(withheld)
            .unwrap()
            .contains("env-ok echo:")
    );

    // Who did what is on record: two releases by two users, the refused second try, the
    // strangers, the refusal.
    let records = audit(&w, "hospital-b");
    let by = |event: &str, outcome: &str, uid: u32| {
        records
            .iter()
            .filter(|r| r["event"] == event && r["outcome"] == outcome && r["by"]["uid"] == uid)
            .count()
    };
    assert_eq!(by("release", "done", alice), 1, "{records:?}");
    assert_eq!(by("release", "denied", alice), 1, "{records:?}");
    assert_eq!(by("release", "done", bob), 1, "{records:?}");
    assert_eq!(by("release", "denied", mallory), 1, "{records:?}");
    assert_eq!(by("view", "denied", mallory), 2, "{records:?}");
    assert_eq!(by("refuse", "done", bob), 1, "{records:?}");
    let named = records.iter().find(|r| r["event"] == "refuse").unwrap();
    assert_eq!(named["by"]["name"], "warden9b");
    assert_eq!(named["run_id"], run2);
    drop(w);
    let _ = std::fs::remove_dir_all(&sock_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_result_survives_a_restart_and_one_held_too_long_is_refused() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("echo", "air-restart", "v1").await;
    w.start_node("hospital-b", &manual(&repo, &w, ""));
    w.start_node_with(
        "hospital-a",
        &manual(&repo, &w, ""),
        "[airlock]\nrelease_timeout_secs = 2\n",
    );
    let profile = w.profile(&w.dir.path().join("profile"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap().to_owned();
    let image = format!("{repo}:v1");
    let socket = default_socket(&w, "hospital-b");
    let xdg = w.state_home().display().to_string();
    let env_ref = [("XDG_STATE_HOME", xdg.as_str())];
    let dir = w.dir.path().to_path_buf();
    let create = |org: &'static str| {
        let (p, image, dir, xdg) = (p.clone(), image.clone(), dir.clone(), xdg.clone());
        async move {
            let out = warden_in(
                &dir,
                &[
                    "task",
                    "create",
                    "--profile-file",
                    &p,
                    "--image",
                    &image,
                    "--org",
                    org,
                    "--input",
                    r#"{"function":"f"}"#,
                ],
                &[("XDG_STATE_HOME", xdg.as_str())],
            )
            .await;
            assert_eq!(out.code, 0, "{out}");
            out.task_id()
        }
    };
    let task = create("hospital-b").await;
    let run = until_pending(&w, &socket, first_result).await;

    // The node is killed and started again: the result is still held, the run still waits.
    let b = w
        .nodes
        .iter()
        .position(|n| n.label.ends_with("hospital-b"))
        .unwrap();
    w.nodes.remove(b);
    w.restart_node("hospital-b");
    let again = until_pending(&w, &socket, first_result).await;
    assert_eq!(again, run);
    until_state(&w, run, "awaiting_release").await;
    let released = warden(
        &w,
        &["node", "release", &run.to_string(), "--socket", &socket],
    )
    .await;
    assert_eq!(released.code, 0, "{released}\n{}", w.node_logs());
    let out = warden_in(
        &dir,
        &[
            "task",
            "wait",
            "--profile-file",
            &p,
            &task,
            "--timeout",
            "60",
        ],
        &env_ref,
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("result: env-ok echo:"), "{out}");

    // At hospital-a nobody releases: refused by itself after 2 s, with a reason saying so.
    let task = create("hospital-a").await;
    let out = warden_in(
        &dir,
        &[
            "task",
            "wait",
            "--profile-file",
            &p,
            &task,
            "--timeout",
            "90",
        ],
        &env_ref,
    )
    .await;
    assert_eq!(out.code, 1, "{out}\n{}", w.node_logs());
    assert!(
        out.stdout.contains("failed")
            && out.stdout.contains("waited 2 s for its release")
            && out.stdout.contains("airlock.release_timeout_secs"),
        "{out}"
    );
    let records = audit(&w, "hospital-a");
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "refuse" && r["by"].is_null() && r["outcome"] == "done"),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_digest_waits_for_approval_once_and_a_refused_one_fails() {
    let mut w = World::with_registry().await;
    let (repo, digest) = w.push_signed("echo", "air-first", "v1").await;
    let (other, other_digest) = w.push_signed("json_out", "air-other", "v1").await;
    let policy = format!(
        "{}[allow.output]\nfirst_run = \"approve\"\n{}[allow.output]\nfirst_run = \"approve\"\n",
        w.signed_policy(&repo),
        w.signed_policy(&other)
    );
    w.start_node("hospital-b", &policy);
    let profile = w.profile(&w.dir.path().join("profile"), &[&w.a, &w.b], PASSWORD);
    let socket = default_socket(&w, "hospital-b");
    let image = format!("{repo}:v1");

    let child = create_and_wait(&w, &profile, &image, "hospital-b");
    let (run, waiting) = until_pending(&w, &socket, first_approval).await;
    assert_eq!(waiting, digest.to_string());
    until_state(&w, run, "awaiting_approval").await;
    // Nothing ran: no container was made for it.
    assert!(
        !node_dir(&w, "hospital-b")
            .join(format!("spool/logs/run-{run}.log"))
            .exists()
    );
    child
        .saw(&format!("hospital-b: run {run} awaiting_approval"))
        .await;
    let ok = warden(
        &w,
        &["node", "approve", &waiting, "--socket", &socket, "--json"],
    )
    .await;
    assert_eq!(ok.code, 0, "{ok}");
    let v: Value = serde_json::from_str(&ok.stdout).unwrap();
    assert_eq!(
        (&v["action"], &v["digest"], &v["runs"]),
        (
            &"approve".into(),
            &waiting.as_str().into(),
            &serde_json::json!([run])
        )
    );
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("approved by root (uid 0)") && message.contains("1 waiting run"),
        "{ok}"
    );
    let out = finished(child).await;
    assert_eq!(out.code, 0, "{out}\n{}", w.node_logs());
    assert!(out.stderr.contains("awaiting_approval"), "{out}");
    assert!(out.stdout.contains("result: env-ok echo:"), "{out}");

    // The approval is remembered: the next run of that digest does not wait.
    let child = create_and_wait(&w, &profile, &image, "hospital-b");
    let out = finished(child).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.stderr.contains("awaiting_approval"), "{out}");
    let approved =
        std::fs::read_to_string(node_dir(&w, "hospital-b").join("spool/approved.jsonl")).unwrap();
    assert_eq!(approved.lines().count(), 1, "{approved}");

    // Another digest waits; its refusal fails the run with the data owner's reason.
    let child = create_and_wait(&w, &profile, &format!("{other}:v1"), "hospital-b");
    let (run2, waiting) = until_pending(&w, &socket, first_approval).await;
    assert_eq!(waiting, other_digest.to_string());
    let bad = warden(
        &w,
        &[
            "node",
            "refuse-digest",
            &waiting,
            "--socket",
            &socket,
            "--reason",
            " ",
            "--json",
        ],
    )
    .await;
    assert_eq!(bad.code, 1, "{bad}");
    assert!(bad.stdout.is_empty(), "{bad}");
    assert!(bad.stderr.contains("give a reason"), "{bad}");
    let no = warden(
        &w,
        &[
            "node",
            "refuse-digest",
            &waiting,
            "--socket",
            &socket,
            "--reason",
            "not reviewed here",
            "--json",
        ],
    )
    .await;
    assert_eq!(no.code, 0, "{no}");
    let v: Value = serde_json::from_str(&no.stdout).unwrap();
    assert_eq!(
        (&v["action"], &v["digest"], &v["runs"]),
        (
            &"refuse_digest".into(),
            &waiting.as_str().into(),
            &serde_json::json!([run2])
        )
    );
    let out = finished(child).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout.contains(&format!("run {run2} failed"))
            && out.stdout.contains(&format!(
                "the data owner refused to run image digest {other_digest}: not reviewed here"
            )),
        "{out}"
    );
    let records = audit(&w, "hospital-b");
    let approve = records.iter().find(|r| r["event"] == "approve").unwrap();
    assert_eq!(
        (&approve["digest"], &approve["by"]["name"]),
        (&Value::from(digest.to_string()), &Value::from("root"))
    );
    let refuse = records
        .iter()
        .find(|r| r["event"] == "refuse_digest")
        .unwrap();
    assert_eq!(refuse["reason"], "not reviewed here");
    assert!(
        records
            .iter()
            .any(|r| r["run_id"] == run && r["outcome"] == "awaiting_approval"),
        "{records:?}"
    );
}
