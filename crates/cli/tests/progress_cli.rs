//! Live progress of `warden task create --wait` and `warden task wait` with the real binaries:
//! the real server, a real registry, the Docker engine and `warden node start` processes. The
//! commands' standard error is a pipe here, so the progress comes as one plain line per change,
//! which these tests read; and Ctrl-C (SIGINT sent to the waiting process) stops the wait only.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod researcher;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use researcher::{Out, PASSWORD, World};
use warden_api::display::safe;

const BIN: &str = env!("CARGO_BIN_EXE_warden");
const WAIT: Duration = Duration::from_secs(120);
const STATES: [&str; 8] = [
    "pending",
    "admitted",
    "running",
    "awaiting_approval",
    "awaiting_release",
    "completed",
    "failed",
    "rejected",
];

/// One progress line: (organization, run, state, the rest).
fn parse(line: &str) -> Option<(String, i64, String, String)> {
    let (org, rest) = line.split_once(": run ")?;
    let (id, rest) = rest.split_once(' ')?;
    let state = rest
        .split([' ', ':'])
        .next()
        .filter(|s| STATES.contains(s))?;
    Some((
        org.to_owned(),
        id.parse().ok()?,
        state.to_owned(),
        rest[state.len()..].to_owned(),
    ))
}

/// The progress lines of one run, in order.
fn lines_of(stderr: &str, org: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{org}: run ")))
        .map(str::to_owned)
        .collect()
}

/// Every line of standard error is a progress line, each a change of its run (never the same
/// line twice in a row for a run), with nothing a terminal acts on.
fn only_changes(out: &Out) {
    assert!(!out.stderr.contains('\u{1b}'), "{out}");
    let mut last: std::collections::BTreeMap<i64, String> = Default::default();
    for line in out.stderr.lines() {
        let (_, id, _, _) = parse(line).unwrap_or_else(|| panic!("not a run line `{line}`: {out}"));
        assert_ne!(last.get(&id), Some(&line.to_owned()), "repeated: {out}");
        last.insert(id, line.to_owned());
    }
}

/// The rank of a state in a run's life, for checking that lines only move forward.
fn rank(state: &str) -> usize {
    match state {
        "pending" => 0,
        "admitted" => 1,
        "awaiting_approval" => 2,
        "running" => 3,
        "awaiting_release" => 4,
        _ => 5,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_prints_one_line_per_change_of_each_run_with_the_node_reason() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("echo", "progress-echo", "v1").await;
    let (other, _) = w.push_signed("echo", "progress-other", "v1").await;
    // hospital-a runs the image; hospital-b allows another repository only, so it rejects.
    let allow = w.signed_policy(&repo);
    let deny = w.signed_policy(&other);
    w.start_node("hospital-a", &allow);
    w.start_node("hospital-b", &deny);
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let image = format!("{repo}:v1");
    let input = r#"{"function":"f","args":{"n":1}}"#;
    let create = [
        "task",
        "create",
        "--profile-file",
        p,
        "--image",
        &image,
        "--org",
        "hospital-a",
        "--org",
        "hospital-b",
        "--input",
        input,
        "--wait",
        "--timeout",
        "120",
    ];

    let out = w.warden(&create, &[]).await;
    assert_eq!(out.code, 1, "{out}\n{}", w.node_logs());
    only_changes(&out);
    let a = lines_of(&out.stderr, "hospital-a");
    let b = lines_of(&out.stderr, "hospital-b");
    assert!(!a.is_empty() && !b.is_empty(), "{out}");
    for lines in [&a, &b] {
        let ranks: Vec<usize> = lines.iter().map(|l| rank(&parse(l).unwrap().2)).collect();
        assert!(ranks.windows(2).all(|r| r[0] <= r[1]), "{out}");
    }
    let (_, run_a, _, _) = parse(&a[0]).unwrap();
    let (_, run_b, _, _) = parse(&b[0]).unwrap();
    assert_eq!(
        a.last().unwrap(),
        &format!("hospital-a: run {run_a} completed"),
        "{out}"
    );
    // The rejection line carries the node's reason as the server has it, escaped.
    let reason = w.run_state(run_b, WAIT).await["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("denied"), "{reason}");
    assert_eq!(
        b.last().unwrap(),
        &format!("hospital-b: run {run_b} rejected: {}", safe(&reason)),
        "{out}"
    );
    // Standard output is the answer alone, as before.
    assert!(
        out.stdout
            .contains(&format!("hospital-a: run {run_a} completed"))
            && out.stdout.contains("result: env-ok echo:"),
        "{out}"
    );
    let task_id = out.task_id();

    // `task wait --json`: the final states at once on standard error, one JSON document on
    // standard output.
    let out = w
        .warden(
            &["task", "wait", "--profile-file", p, "--json", &task_id],
            &[],
        )
        .await;
    assert_eq!(out.code, 1, "{out}");
    only_changes(&out);
    assert_eq!(
        out.stderr.lines().collect::<Vec<_>>(),
        [
            format!("hospital-a: run {run_a} completed"),
            format!("hospital-b: run {run_b} rejected: {}", safe(&reason)),
        ],
        "{out}"
    );
    let v = out.json();
    assert_eq!(v["runs"].as_array().unwrap().len(), 2, "{out}");

    // `create --wait --json` keeps one document on standard output too.
    let mut json = create.to_vec();
    json.push("--json");
    let out = w.warden(&json, &[]).await;
    assert_eq!(out.code, 1, "{out}");
    only_changes(&out);
    let v = out.json();
    let states: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["completed", "rejected"], "{out}");
}

/// A `warden` command running in the background, its standard error readable while it runs.
struct Background {
    child: tokio::process::Child,
    stderr: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Background {
    fn start(w: &World, args: &[&str]) -> Background {
        use tokio::io::AsyncBufReadExt as _;
        let mut child = tokio::process::Command::new(BIN)
            .current_dir(w.dir.path())
            .args(args)
            .env_remove("WARDEN_PASSWORD")
            .env_remove("XDG_CONFIG_HOME")
            .env("XDG_STATE_HOME", w.state_home())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Background {
            child,
            stderr,
            reader,
        }
    }

    async fn saw(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stderr.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never saw `{needle}`: {}",
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGINT to the child, by its own (positive) process id, as Ctrl-C would send it.
    fn interrupt(&self) {
        let pid = self.child.id().expect("the child is running");
        assert!(pid > 0);
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn finished(self) -> Out {
        let out = tokio::time::timeout(WAIT, self.child.wait_with_output())
            .await
            .expect("the command ended")
            .unwrap();
        self.reader.await.unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        }
    }
}

fn socket(w: &World) -> String {
    w.dir
        .path()
        .join("node-hospital-b/spool/local.sock")
        .display()
        .to_string()
}

/// The id in "stopped waiting for task N".
fn stopped_task(out: &Out) -> String {
    out.stderr
        .split("stopped waiting for task ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no stop message: {out}"))
        .to_owned()
}

/// The interrupted command: exit 130, nothing on standard output, the way back named.
fn interrupted(out: &Out, profile: &Path) -> String {
    assert_eq!(out.code, 130, "{out}");
    assert_eq!(out.stdout, "", "{out}");
    let task = stopped_task(out);
    assert!(
        out.stderr.contains("nothing was cancelled")
            && out.stderr.contains(&format!(
                "`warden task wait --profile-file {} {task}`",
                profile.display()
            )),
        "{out}"
    );
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_wait_only_and_task_wait_comes_back_for_the_result() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("echo", "progress-held", "v1").await;
    // The node holds the result until its owner releases it: the run waits as long as the test
    // needs, with no clock involved.
    let policy = format!(
        "{}[allow.output]\nrelease = \"manual\"\n",
        w.signed_policy(&repo)
    );
    w.start_node("hospital-b", &policy);
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let image = format!("{repo}:v1");
    let create = [
        "task",
        "create",
        "--profile-file",
        p,
        "--image",
        &image,
        "--org",
        "hospital-b",
        "--input",
        r#"{"function":"f","args":{"n":1}}"#,
        "--wait",
        "--timeout",
        "120",
    ];

    let waiting = Background::start(&w, &create);
    waiting
        .saw("awaiting_release (the data owner's node holds")
        .await;
    waiting.interrupt();
    let out = waiting.finished().await;
    let task = interrupted(&out, &profile);

    // Nothing was cancelled: the run still waits for its release, and the task's record was
    // written whole (a later wait checks against it and says nothing of a missing record).
    let tasks = w.state_home().join("warden/tasks");
    let records: Vec<_> = std::fs::read_dir(&tasks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    assert_eq!(record["task_id"].to_string(), task, "{record}");
    let run = w.query(&format!(
        "SELECT id, state FROM runs WHERE task_id = {task}"
    ));
    assert_eq!(run.len(), 1, "{run:?}");
    assert!(run[0].ends_with("awaiting_release"), "{run:?}");
    let run_id = run[0].split('|').next().unwrap().to_owned();

    // `task wait` interrupted the same way, writing no result file.
    let results = w.dir.path().join("results");
    let again = Background::start(
        &w,
        &[
            "task",
            "wait",
            "--profile-file",
            p,
            "--out",
            results.to_str().unwrap(),
            &task,
        ],
    );
    again.saw("awaiting_release").await;
    again.interrupt();
    let out = again.finished().await;
    assert_eq!(interrupted(&out, &profile), task);
    assert!(!results.exists() || std::fs::read_dir(&results).unwrap().next().is_none());

    // The owner releases; `warden task wait ID` gets the result.
    let released = w
        .warden(&["node", "release", &run_id, "--socket", &socket(&w)], &[])
        .await;
    assert_eq!(released.code, 0, "{released}");
    let out = w
        .warden(&["task", "wait", "--profile-file", p, &task], &[])
        .await;
    assert_eq!(out.code, 0, "{out}\n{}", w.node_logs());
    assert!(!out.stderr.contains("no local record"), "{out}");
    assert!(
        out.stdout
            .contains(&format!("hospital-b: run {run_id} completed"))
            && out.stdout.contains("result: env-ok echo:"),
        "{out}"
    );
}

/// A tmux server of its own (its own socket name), ended on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is installed (scripts/prereqs.sh)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "w"])
    }

    /// Waits until the pane shows `needle`; the screen then.
    async fn until(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed `{needle}`:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// A single-quoted word for the pane's shell.
fn sh(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_display_redraws_each_run_in_place_and_ctrl_c_leaves_the_task() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("echo", "progress-tty", "v1").await;
    let policy = format!(
        "{}[allow.output]\nrelease = \"manual\"\n",
        w.signed_policy(&repo)
    );
    w.start_node("hospital-b", &policy);
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let image = format!("{repo}:v1");
    let command = [
        "env".to_owned(),
        "-u".to_owned(),
        "WARDEN_PASSWORD".to_owned(),
        format!("XDG_STATE_HOME={}", sh(w.state_home().to_str().unwrap())),
        sh(BIN),
        "task create --profile-file".to_owned(),
        sh(p),
        "--image".to_owned(),
        sh(&image),
        "--org hospital-b --input".to_owned(),
        sh(r#"{"function":"f","args":{"n":1}}"#),
        "--wait --timeout 120; echo exit=$?".to_owned(),
    ]
    .join(" ");
    let tmux = Tmux {
        socket: format!("warden-progress-{}", std::process::id()),
    };
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "w",
        "-x",
        "250",
        "-y",
        "40",
        "-c",
        w.dir.path().to_str().unwrap(),
    ]);
    tmux.run(&["set-option", "-t", "w", "remain-on-exit", "on"]);
    tmux.run(&["send-keys", "-t", "w", &command, "Enter"]);

    // The run's line is redrawn in place: once it waits for its release, the screen shows that
    // run on one line only (the plain form would have printed a line per change before it),
    // with the spinner's elapsed time.
    let screen = tmux
        .until("awaiting_release (the data owner's node holds")
        .await;
    let lines: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("hospital-b: run "))
        .collect();
    assert_eq!(lines.len(), 1, "{screen}");
    assert!(lines[0].trim_end().ends_with("s)"), "{screen}");

    // Ctrl-C from the terminal: the wait stops with the way back; the task is left as it was.
    tmux.run(&["send-keys", "-t", "w", "C-c"]);
    // (The typed command shows `exit=$?` too: the shell's answer is a line of its own.)
    let screen = tmux.until("\nexit=").await;
    assert!(
        screen.contains("\nexit=130\n") && screen.contains("nothing was cancelled"),
        "{screen}"
    );
    let joined: String = screen.lines().map(str::trim_end).collect();
    let task = joined
        .split("stopped waiting for task ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("{screen}"))
        .to_owned();
    assert!(
        joined.contains(&format!("`warden task wait --profile-file {p} {task}`")),
        "{screen}"
    );
    let run = w.query(&format!(
        "SELECT id, state FROM runs WHERE task_id = {task}"
    ));
    assert_eq!(run.len(), 1, "{run:?}");
    assert!(run[0].ends_with("awaiting_release"), "{run:?}");
    let run_id = run[0].split('|').next().unwrap().to_owned();

    let released = w
        .warden(&["node", "release", &run_id, "--socket", &socket(&w)], &[])
        .await;
    assert_eq!(released.code, 0, "{released}");
    let out = w
        .warden(&["task", "wait", "--profile-file", p, &task], &[])
        .await;
    assert_eq!(out.code, 0, "{out}\n{}", w.node_logs());
    assert!(out.stdout.contains("result: env-ok echo:"), "{out}");
}
