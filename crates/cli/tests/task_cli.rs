//! `warden task` as a researcher runs it: the real binary against the real server, and for the
//! end-to-end runs real nodes (`warden node start` processes), a real registry and the Docker
//! engine (tests/researcher). Inputs are sealed with the researcher's certified key for keys
//! the profile pins; results are opened with the researcher's key and checked against the run,
//! the pinned key of its organization, the task's nonce and the digest resolved at creation.
//! A lying server is played by editing the server's SQLite database directly.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod researcher;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use researcher::{Out, PASSWORD, World};
use serde_json::Value;
use warden_seal::{Certificate, Kind, ResultBinding, SecretKey};

/// An image named by digest: `create` needs no registry for it.
fn by_digest() -> (String, String) {
    let digest = format!("sha256:{}", "d".repeat(64));
    (format!("registry.example.org/warden/echo@{digest}"), digest)
}

/// Every blob of `column` in `table` of the server's database, as upper-case hex.
fn blobs(w: &World, table: &str, column: &str) -> Vec<String> {
    w.query(&format!("SELECT hex({column}) FROM {table}"))
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Exit 1, the message on stderr, and nothing of the task on stdout.
#[track_caller]
fn not_verified(out: &Out, needle: &str) {
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains(needle), "wanted `{needle}`: {out}");
    assert!(out.stdout.is_empty(), "nothing is printed: {out}");
}

/// No control character other than the line breaks between lines, and no bidi control.
#[track_caller]
fn terminal_clean(s: &str) {
    for c in s.chars() {
        assert!(
            c == '\n'
                || !(c.is_control()
                    || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
            "{c:?} reaches the terminal in {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_at_two_organizations_completes_and_the_checked_results_are_printed() {
    let mut w = World::with_registry().await;
    let (repo, digest) = w.push_signed("echo", "echo", "v1").await;
    let policy = w.signed_policy(&repo);
    let orgs = [w.a.name.clone(), w.b.name.clone()];
    // Both nodes pin both organizations' encryption keys and certification keys.
    w.start_node("hospital-a", &policy);
    w.start_node("hospital-b", &policy);
    // The profile as a named profile under XDG_CONFIG_HOME/warden.
    let xdg = w.dir.path().join("xdg");
    let profile = w.profile(&xdg.join("warden"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let image = format!("{repo}:v1");
    let input = r#"{"function":"f","args":{"n":1}}"#;
    let canonical = r#"{"args":{"n":1},"function":"f"}"#;

    let out = w
        .warden(
            &[
                "task",
                "create",
                "--profile-file",
                p,
                "--image",
                &image,
                "--org",
                &orgs[0],
                "--org",
                &orgs[1],
                "--input",
                input,
                "--name",
                "cli",
                "--wait",
                "--timeout",
                "120",
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, 0, "{out}\n{}", w.node_logs());
    let expected = format!("result: env-ok echo:{canonical}");
    assert_eq!(out.stdout.matches(&expected).count(), 2, "{out}");
    assert!(
        out.stdout.contains("hospital-a: run") && out.stdout.contains("hospital-b: run"),
        "{out}"
    );
    assert_eq!(out.stdout.matches(" completed").count(), 2, "{out}");
    let task_id = out.task_id();

    // The record of what was sent: private, and the nonce the server shows.
    let tasks = w.state_home().join("warden/tasks");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tasks), 0o700);
    let files: Vec<_> = std::fs::read_dir(&tasks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    let record: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let nonce = w.query(&format!("SELECT nonce FROM tasks WHERE id = {task_id}"));
    assert_eq!(record["nonce"].as_str(), Some(nonce[0].as_str()));
    assert_eq!(record["image"], image.as_str());
    assert_eq!(record["digest"], digest.to_string());

    // The server holds ciphertext only: neither the input nor the results appear in its
    // database, and each input is sealed separately (no two alike).
    let inputs = blobs(&w, "run_inputs", "input");
    let results = blobs(&w, "results", "data");
    assert_eq!((inputs.len(), results.len()), (2, 2));
    assert_ne!(inputs[0], inputs[1]);
    for blob in inputs.iter().chain(&results) {
        assert!(
            !blob.contains(&hex_upper(b"function")),
            "plaintext on the server"
        );
        assert!(
            !blob.contains(&hex_upper(b"echo:")),
            "plaintext on the server"
        );
    }

    // `show --json` through the named profile: both runs completed at the right organizations,
    // with the digest resolved at creation.
    let xdg_env = [("XDG_CONFIG_HOME", xdg.to_str().unwrap())];
    let out = w
        .warden(
            &["task", "show", "--profile", "rita", "--json", &task_id],
            &xdg_env,
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    let v = out.json();
    assert_eq!(v["task"]["nonce"].as_str(), Some(nonce[0].as_str()));
    let runs = v["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 2, "{out}");
    let mut names: Vec<&str> = runs
        .iter()
        .map(|r| r["organization"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["hospital-a", "hospital-b"]);
    for r in &runs {
        assert_eq!(r["state"], "completed", "{out}");
        assert_eq!(r["digest"], digest.to_string(), "{out}");
        assert_eq!(r["has_result"], true, "{out}");
        assert!(r["result"].is_null(), "show downloads no result: {out}");
    }

    // `task results --output` (the same command as `wait --out`): every result in
    // DIR/<org>-run-<id>, opened and checked.
    let dir = w.dir.path().join("results");
    let out = w
        .warden(
            &[
                "task",
                "results",
                "--profile-file",
                p,
                "--output",
                dir.to_str().unwrap(),
                &task_id,
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.stderr.contains("no local record"), "{out}");
    for r in &runs {
        let file = dir.join(format!(
            "{}-run-{}",
            r["organization"].as_str().unwrap(),
            r["id"]
        ));
        let got = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            got,
            format!("env-ok echo:{canonical}"),
            "{}",
            file.display()
        );
        assert_eq!(mode(&file) & 0o077, 0, "{}", file.display());
    }
    // Written whole: no temporary file is left beside the results.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), runs.len());

    // `task list --state`: the task is completed, not active.
    let list = |state: &'static str| {
        let w = &w;
        async move {
            let out = w
                .warden(
                    &[
                        "task",
                        "list",
                        "--profile-file",
                        p,
                        "--state",
                        state,
                        "--json",
                    ],
                    &[],
                )
                .await;
            assert_eq!(out.code, 0, "{out}");
            out.json()
        }
    };
    let done = list("completed").await;
    assert_eq!(done.as_array().unwrap().len(), 1, "{done}");
    assert_eq!(done[0]["id"].to_string(), task_id);
    assert_eq!(done[0]["state"], "completed");
    assert_eq!(list("active").await, Value::Array(Vec::new()));

    // On another machine (no record), `wait` says so and checks against the server's echo,
    // the tag resolved again at the registry.
    let elsewhere = w.dir.path().join("elsewhere");
    let out = w
        .warden(
            &["task", "wait", "--profile-file", p, &task_id],
            &[("XDG_STATE_HOME", elsewhere.to_str().unwrap())],
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains(&format!("no local record of task {task_id}"))
            && out.stderr.contains("the server shows instead"),
        "{out}"
    );
    assert_eq!(out.stdout.matches(&expected).count(), 2, "{out}");

    // `create --wait --json`, the input from a file and the password from WARDEN_PASSWORD.
    let text = std::fs::read_to_string(&profile)
        .unwrap()
        .replace("password_file = \"rita.pw\"\n", "");
    std::fs::write(xdg.join("warden/env.toml"), text).unwrap();
    let input_file = w.dir.path().join("input.json");
    std::fs::write(&input_file, "{\"function\": \"g\"}\n").unwrap();
    let out = w
        .warden(
            &[
                "task",
                "create",
                "--profile",
                "env",
                "--image",
                &image,
                "--org",
                "hospital-b",
                "--input-file",
                input_file.to_str().unwrap(),
                "--wait",
                "--json",
            ],
            &[xdg_env[0], ("WARDEN_PASSWORD", PASSWORD)],
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    let v = out.json();
    assert_eq!(v["runs"][0]["organization"], "hospital-b");
    assert_eq!(
        v["runs"][0]["result"], "env-ok echo:{\"function\":\"g\"}",
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_image_comes_back_rejected_with_the_node_reason() {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("echo", "echo", "v1").await;
    // The same program under a repository the policy does not allow, signed all the same.
    let (denied, _) = w.push_signed("echo", "denied", "v1").await;
    let policy = w.signed_policy(&repo);
    w.start_node("hospital-b", &policy);
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();

    let out = w
        .warden(
            &[
                "task",
                "create",
                "--profile-file",
                p,
                "--image",
                &format!("{denied}:v1"),
                "--org",
                "hospital-b",
                "--input",
                r#"{"function":"f"}"#,
                "--wait",
                "--timeout",
                "120",
                "--json",
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, 1, "{out}\n{}", w.node_logs());
    let v = out.json();
    let run = &v["runs"][0];
    assert_eq!(run["state"], "rejected", "{out}");
    let id = run["id"].as_i64().unwrap();
    let reason = w.run_state(id, Duration::from_secs(1)).await["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(run["reason"], reason.as_str());
    assert!(reason.contains("denied"), "{reason}");

    // The text form prints the reason, and `show` exits 1 too.
    let task_id = v["task"]["id"].to_string();
    // `task list --state failed` holds it, in its STATE column.
    let out = w
        .warden(
            &["task", "list", "--profile-file", p, "--state", "failed"],
            &[],
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].ends_with("STATE"), "{out}");
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1].starts_with(&format!("{task_id} ")) && lines[1].ends_with("failed"),
        "{out}"
    );
    let out = w
        .warden(&["task", "show", "--profile-file", p, &task_id], &[])
        .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains(&format!("hospital-b: run {id} rejected"))
            && out
                .stdout
                .contains(&format!("reason: {}", warden_api::display::safe(&reason))),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_researcher_flow_works_with_keys_made_by_warden_keys() {
    warden_testkit::require_docker().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let k = keys.path();
    let run = |args: Vec<String>| async move {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = researcher::warden_in(k, &a, &[]).await;
        assert_eq!(out.code, 0, "warden {args:?}: {out}");
        out.json()
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    std::fs::write(k.join("ca.pw"), "certification password\n").unwrap();
    // Each organization: an encryption key and a certification key.
    let mut made = Vec::new();
    for org in ["a", "b"] {
        let enc = run(s(&[
            "keys",
            "generate",
            "--kind",
            "x25519",
            "--out",
            &format!("{org}.key"),
        ]))
        .await;
        let ca = run(s(&[
            "keys",
            "generate",
            "--kind",
            "ed25519",
            "--out",
            &format!("{org}-ca"),
            "--password-file",
            "ca.pw",
        ]))
        .await;
        let secret =
            SecretKey::from_pem(&std::fs::read_to_string(k.join(format!("{org}.key"))).unwrap())
                .unwrap();
        let fp = run(s(&["keys", "fingerprint", &format!("{org}.key.pub")])).await;
        assert_eq!(fp["fingerprint"], enc["fingerprint"]);
        assert_eq!(
            fp["fingerprint"],
            secret.public_key().fingerprint().to_string()
        );
        let certifier = warden_trust::SigningKey::from_encrypted_pem(
            &std::fs::read_to_string(k.join(format!("{org}-ca.key"))).unwrap(),
            b"certification password",
        )
        .unwrap();
        let id = run(s(&["keys", "fingerprint", &format!("{org}-ca.pub")])).await;
        assert_eq!(id["key_id"], ca["key_id"]);
        assert_eq!(id["key_id"], certifier.public_key().id().to_string());
        made.push((secret, certifier));
    }
    let b = made.pop().unwrap();
    let a = made.pop().unwrap();
    let mut w = World::with_keys(a, b).await;
    w.registry = Some(warden_testkit::Registry::start().unwrap());
    // Rita's own key, certified by hospital-a.
    run(s(&[
        "keys", "generate", "--kind", "x25519", "--out", "rita.key",
    ]))
    .await;
    let cert = run(s(&[
        "keys",
        "certify",
        "--certifier",
        "a-ca.key",
        "--password-file",
        "ca.pw",
        "--org",
        "hospital-a",
        "--user",
        "rita",
        "--key",
        "rita.key.pub",
        "--out",
        "rita.cert",
    ]))
    .await;
    assert_eq!(
        cert["certifier_key_id"],
        w.a.certifier.public_key().id().to_string()
    );
    let rita_key =
        SecretKey::from_pem(&std::fs::read_to_string(k.join("rita.key")).unwrap()).unwrap();
    let rita_cert = Certificate::parse(&std::fs::read(k.join("rita.cert")).unwrap()).unwrap();
    assert_eq!(rita_cert.key(), &rita_key.public_key());

    let (repo, _) = w.push_signed("echo", "echo", "v1").await;
    let policy = w.signed_policy(&repo);
    w.start_node("hospital-a", &policy);
    w.start_node("hospital-b", &policy);
    let dir = w.dir.path().join("profile");
    let profile = w.profile_with(&dir, &[&w.a, &w.b], PASSWORD, &rita_key, &rita_cert);
    // The profile names the very files `warden keys` wrote.
    std::fs::copy(k.join("rita.key"), dir.join("rita.key")).unwrap();
    std::fs::copy(k.join("rita.cert"), dir.join("rita.cert")).unwrap();
    let out = w
        .warden(
            &[
                "task",
                "create",
                "--profile-file",
                profile.to_str().unwrap(),
                "--image",
                &format!("{repo}:v1"),
                "--org",
                "hospital-a",
                "--org",
                "hospital-b",
                "--input",
                r#"{"function":"f"}"#,
                "--wait",
                "--timeout",
                "120",
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, 0, "{out}\n{}", w.node_logs());
    assert_eq!(
        out.stdout
            .matches(r#"result: env-ok echo:{"function":"f"}"#)
            .count(),
        2,
        "{out}"
    );
}

/// A change to a result's binding.
type Edit = Box<dyn Fn(&mut ResultBinding)>;

/// `warden task wait` of `task` with the profile `p` (5 s at most), in JSON when `json`.
async fn wait_for(w: &World, p: &str, task: &str, json: bool) -> Out {
    let mut args = vec!["task", "wait", "--profile-file", p, "--timeout", "5", task];
    if json {
        args.push("--json");
    }
    w.warden(&args, &[]).await
}

/// A task at hospital-b, created by the real client (no node takes it); returns the profile,
/// the task id, its run id, its nonce and the digest.
async fn created(w: &World) -> (std::path::PathBuf, String, i64, String, String) {
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let (image, digest) = by_digest();
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
                r#"{"function":"f"}"#,
                "--json",
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    let v = out.json();
    assert_eq!(v["runs"][0]["state"], "pending", "{out}");
    let task = v["task"]["id"].to_string();
    let run = v["runs"][0]["id"].as_i64().unwrap();
    let nonce = v["task"]["nonce"].as_str().unwrap().to_owned();
    (profile, task, run, nonce, digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_does_not_verify_exits_1_and_prints_nothing_of_it() {
    let w = World::new().await;
    let (profile, task, run, nonce, digest) = created(&w).await;
    let p = profile.to_str().unwrap();
    let rita = w.rita_key.public_key();
    let binding = ResultBinding {
        nonce: nonce.clone(),
        run_id: run,
        organization: "hospital-b".into(),
        digest: digest.clone(),
    };
    let seal = |by: &SecretKey, b: &ResultBinding| {
        warden_seal::seal_result(by, Kind::Result, &rita, b, b"forty-two").unwrap()
    };
    let wait_json = || wait_for(&w, p, &task, true);
    let wait = || wait_for(&w, p, &task, false);

    // The pin matches the key the server shows for hospital-b, but the result is sealed by
    // another key (anyone can seal to rita's public key).
    let mallory = SecretKey::generate();
    w.plant_result(run, &digest, &seal(&mallory, &binding));
    not_verified(
        &wait().await,
        &format!("the result of run {run} at `hospital-b` does not open"),
    );
    not_verified(&wait_json().await, "does not open");

    // Sealed by hospital-b, but bound to something else than this run of this task.
    let cases: [(&str, Edit); 4] = [
        ("the task nonce", Box::new(|b| b.nonce = "0".repeat(32))),
        ("bound to run", Box::new(|b| b.run_id += 1000)),
        (
            "organization `hospital-a`",
            Box::new(|b| b.organization = "hospital-a".into()),
        ),
        (
            "the image digest",
            Box::new(|b| b.digest = format!("sha256:{}", "e".repeat(64))),
        ),
    ];
    for (needle, edit) in cases {
        let mut b = binding.clone();
        edit(&mut b);
        w.plant_result(run, &digest, &seal(&w.b.secret, &b));
        not_verified(&wait().await, needle);
    }

    // The genuine result, but the run reports that another image ran.
    let other = format!("sha256:{}", "f".repeat(64));
    w.plant_result(run, &other, &seal(&w.b.secret, &binding));
    not_verified(
        &wait().await,
        &format!("run {run} at `hospital-b` reports the image digest {other}"),
    );
    // and `show` says so too.
    let show = w
        .warden(&["task", "show", "--profile-file", p, &task], &[])
        .await;
    not_verified(&show, "reports the image digest");

    // The genuine result as it should be: printed.
    w.plant_result(run, &digest, &seal(&w.b.secret, &binding));
    let out = wait().await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("hospital-b: run") && out.stdout.contains("result: forty-two"),
        "{out}"
    );

    // The server changes what the task says: another nonce, another image.
    w.tamper(&format!(
        "UPDATE tasks SET nonce = '{}' WHERE id = {task}",
        "1".repeat(32)
    ));
    not_verified(
        &wait().await,
        &format!("task {task}: the server shows nonce"),
    );
    let show = w
        .warden(&["task", "show", "--profile-file", p, &task], &[])
        .await;
    not_verified(&show, "the server shows nonce");
    // Without the local record the server's nonce is all there is: the result, bound to the
    // nonce really sent, does not match it either.
    let elsewhere = w.dir.path().join("elsewhere");
    let env = [("XDG_STATE_HOME", elsewhere.to_str().unwrap())];
    let out = w
        .warden(&["task", "wait", "--profile-file", p, &task], &env)
        .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("no local record") && out.stderr.contains("the task nonce"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    w.tamper(&format!(
        "UPDATE tasks SET nonce = '{nonce}' WHERE id = {task}"
    ));
    let out = w
        .warden(&["task", "wait", "--profile-file", p, &task], &env)
        .await;
    assert_eq!(out.code, 0, "the echo matches what was sent: {out}");
    w.tamper(&format!(
        "UPDATE tasks SET image = 'registry.example.org/warden/evil@{digest}' WHERE id = {task}"
    ));
    not_verified(
        &wait().await,
        "the server shows image `registry.example.org/warden/evil@",
    );
    // A task without any nonce cannot be checked at all.
    w.tamper(&format!("UPDATE tasks SET nonce = NULL WHERE id = {task}"));
    let out = w
        .warden(&["task", "wait", "--profile-file", p, &task], &env)
        .await;
    not_verified(&out, &format!("task {task} shows no nonce"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_reasons_and_server_messages_are_printed_escaped() {
    let w = World::new().await;
    let (profile, task, run, _, _) = created(&w).await;
    let p = profile.to_str().unwrap();
    // A lying server plants terminal controls: a forged line, a line erase, an OSC title, a
    // right-to-left override.
    w.tamper(&format!(
        "UPDATE runs SET state = 'rejected', \
         reason = 'denied' || char(10) || 'hospital-a: run 1 completed' || char(27) || '[2K' || char(8238) \
         WHERE id = {run}; \
         UPDATE tasks SET name = 't' || char(13) || char(27) || ']0;owned' || char(7) WHERE id = {task}; \
         UPDATE organizations SET name = 'hospital-b' || char(155) || '31m' WHERE id = {};",
        w.b.id
    ));
    let out = w
        .warden(&["task", "show", "--profile-file", p, &task], &[])
        .await;
    assert_eq!(out.code, 1, "{out}");
    terminal_clean(&out.stdout);
    assert!(
        out.stdout
            .contains(r"  reason: denied\nhospital-a: run 1 completed\u{1b}[2K\u{202e}")
            && out.stdout.contains(r"`t\r\u{1b}]0;owned\u{7}`")
            && out
                .stdout
                .contains(&format!(r"hospital-b\u{{9b}}31m: run {run} rejected")),
        "{out}"
    );
    assert_eq!(out.stdout.lines().count(), 3, "one line per thing: {out}");
    // The JSON form: the same strings, nothing a terminal acts on.
    let out = w
        .warden(&["task", "show", "--profile-file", p, "--json", &task], &[])
        .await;
    assert_eq!(out.code, 1, "{out}");
    terminal_clean(&out.stdout);
    let v = out.json();
    assert_eq!(
        v["runs"][0]["reason"],
        "denied\nhospital-a: run 1 completed\u{1b}[2K\u{202e}"
    );
    assert_eq!(v["runs"][0]["organization"], "hospital-b\u{9b}31m");

    // Strings from the server inside an error message: the collaboration's name.
    w.tamper(&format!(
        "UPDATE collaborations SET name = 'study' || char(10) || 'error: none' || char(27) || '[31m' \
         WHERE id = {}",
        w.collab
    ));
    let text = std::fs::read_to_string(&profile)
        .unwrap()
        .replace("name = \"study\"", &format!("id = {}", w.collab));
    let by_id = profile.with_file_name("by-id.toml");
    std::fs::write(&by_id, text).unwrap();
    let (image, _) = by_digest();
    let out = w
        .warden(
            &[
                "task",
                "create",
                "--profile-file",
                by_id.to_str().unwrap(),
                "--image",
                &image,
                "--org",
                "hospital-z",
                "--input",
                r#"{"function":"f"}"#,
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, 2, "{out}");
    terminal_clean(&out.stderr);
    assert!(
        out.stderr
            .contains(r"collaboration `study\nerror: none\u{1b}[31m`"),
        "{out}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_differs_from_the_pin_is_refused_before_anything_is_sent() {
    let world = World::new().await;
    let w = &world;
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let (image, _) = by_digest();
    // The server hands out another key for hospital-b.
    let attacker = SecretKey::generate().public_key();
    w.tamper(&format!(
        "UPDATE organizations SET public_key = '{}' WHERE id = {}",
        attacker.to_base64(),
        w.b.id
    ));
    let create = |p: &str, orgs: &[&str]| {
        let mut args: Vec<String> = ["task", "create", "--profile-file", p, "--image", &image]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        for o in orgs {
            args.push("--org".into());
            args.push((*o).to_owned());
        }
        args.extend([
            "--input".into(),
            r#"{"function":"f"}"#.into(),
            "--json".into(),
        ]);
        args
    };
    let run = |args: Vec<String>| async move {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        w.warden(&a, &[]).await
    };
    let out = run(create(p, &["hospital-a", "hospital-b"])).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("organization `hospital-b`")
            && out.stderr.contains(&attacker.fingerprint().to_string())
            && out
                .stderr
                .contains(&w.b.secret.public_key().fingerprint().to_string())
            && out.stderr.contains("nothing was sent"),
        "{out}"
    );
    assert_eq!(w.task_count(), 0, "no task was created");

    // An organization without a pin is refused too, never trusted on first use.
    let only_a = w.profile(&w.dir.path().join("only-a"), &[&w.a], PASSWORD);
    w.tamper(&format!(
        "UPDATE organizations SET public_key = '{}' WHERE id = {}",
        w.b.secret.public_key().to_base64(),
        w.b.id
    ));
    let out = run(create(only_a.to_str().unwrap(), &["hospital-b"])).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("`hospital-b` has no pinned key fingerprint"),
        "{out}"
    );
    assert_eq!(w.task_count(), 0, "no task was created");

    // The pinned, untampered key goes through (the task is created; no node runs it here).
    let out = run(create(p, &["hospital-b"])).await;
    assert_eq!(out.code, 0, "{out}");
    let v = out.json();
    assert_eq!(v["runs"][0]["state"], "pending", "{out}");
    assert_eq!(w.task_count(), 1);
    // Its key changes after creation: the result cannot be checked, and `wait` says why.
    let task_id = v["task"]["id"].to_string();
    w.tamper(&format!(
        "UPDATE organizations SET public_key = '{}' WHERE id = {}",
        attacker.to_base64(),
        w.b.id
    ));
    w.tamper(&format!(
        "UPDATE runs SET state = 'completed', has_result = 1, digest = '{}' WHERE id = {}",
        by_digest().1,
        v["runs"][0]["id"]
    ));
    w.tamper(&format!(
        "INSERT INTO results (run_id, data, created_at) VALUES ({}, X'00', 0)",
        v["runs"][0]["id"]
    ));
    let out = w
        .warden(&["task", "wait", "--profile-file", p, &task_id], &[])
        .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("the profile pins"), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    // No node takes a task: waiting gives up after --timeout, naming the run and its state.
    let out = run(create(p, &["hospital-a"])).await;
    assert_eq!(out.code, 0, "{out}");
    let v = out.json();
    let task_id = v["task"]["id"].to_string();
    let out = w
        .warden(
            &[
                "task",
                "wait",
                "--profile-file",
                p,
                "--timeout",
                "1",
                &task_id,
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("1 run(s) not final after 1 s")
            && out
                .stderr
                .contains(&format!("run {} pending", v["runs"][0]["id"])),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_passwords_profiles_keys_and_inputs_exit_2_with_a_clear_message() {
    let world = World::new().await;
    let w = &world;
    let dir = w.dir.path();
    let (image, _) = by_digest();
    let create = |p: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "task",
            "create",
            "--profile-file",
            p.to_str().unwrap(),
            "--image",
            &image,
            "--org",
            "hospital-a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>, env: Vec<(String, String)>| async move {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        w.warden(&a, &e).await
    };
    let check = |out: Out, needle: &str| {
        assert_eq!(out.code, 2, "{out}");
        assert!(out.stderr.contains(needle), "wanted `{needle}`: {out}");
    };
    let input = r#"{"function":"f"}"#;

    // A wrong password.
    let wrong = w.profile(&dir.join("wrong"), &[&w.a], "not the password");
    check(
        run(create(&wrong, &["--input", input]), vec![]).await,
        "login as `rita` refused",
    );

    // No password at all.
    let good = w.profile(&dir.join("good"), &[&w.a, &w.b], PASSWORD);
    let text = std::fs::read_to_string(&good).unwrap();
    let variant = |name: &str, text: String| {
        let p = dir.join("good").join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let nopw = variant(
        "nopw.toml",
        text.replace("password_file = \"rita.pw\"\n", ""),
    );
    check(
        run(create(&nopw, &["--input", input]), vec![]).await,
        "no password for `rita`",
    );

    // A missing key, at its file, line and column; an unknown key.
    let missing = variant(
        "missing.toml",
        text.replace("certificate = \"rita.cert\"\n", ""),
    );
    check(
        run(create(&missing, &["--input", input]), vec![]).await,
        &format!(
            "{}:6:1: key `researcher`: missing field `certificate`",
            missing.display()
        ),
    );
    let unknown = variant(
        "unknown.toml",
        text.replace("[researcher]\n", "[researcher]\nsecret = 1\n"),
    );
    check(
        run(create(&unknown, &["--input", input]), vec![]).await,
        ":7:1: key `researcher.secret`: unknown field `secret`",
    );
    // A profile of the first form, with the organization's secret key: how to move.
    let old = variant(
        "old.toml",
        text.replace(
            "[researcher]\nkey = \"rita.key\"\ncertificate = \"rita.cert\"\n",
            "[organization]\nsecret_key = \"org.key\"\n",
        ),
    );
    let out = run(create(&old, &["--input", input]), vec![]).await;
    check(
        out,
        &format!(
            "{}:6:1: key `organization`: [organization] secret_key is no longer used",
            old.display()
        ),
    );
    let out = run(create(&old, &["--input", input]), vec![]).await;
    assert!(
        out.stderr.contains("warden keys generate --kind x25519")
            && out.stderr.contains("warden keys certify"),
        "{out}"
    );

    // The researcher's key and certificate: for another key, another organization, another
    // user, expired, in OpenSSL's format.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let with_cert = |name: &str, key: &SecretKey, cert: Certificate| {
        w.profile_with(&dir.join(name), &[&w.a, &w.b], PASSWORD, key, &cert)
    };
    let other = SecretKey::generate();
    let p = with_cert(
        "other-key",
        &w.rita_key,
        Certificate::issue(
            &w.a.certifier,
            "hospital-a",
            "rita",
            &other.public_key(),
            now,
            600,
        )
        .unwrap(),
    );
    check(
        run(create(&p, &["--input", input]), vec![]).await,
        "is for the key",
    );
    let p = with_cert(
        "other-org",
        &w.rita_key,
        Certificate::issue(
            &w.b.certifier,
            "hospital-b",
            "rita",
            &w.rita_key.public_key(),
            now,
            600,
        )
        .unwrap(),
    );
    check(
        run(create(&p, &["--input", input]), vec![]).await,
        "the certificate is for organization `hospital-b`, but this account's organization is `hospital-a`",
    );
    let p = with_cert(
        "other-user",
        &w.rita_key,
        Certificate::issue(
            &w.a.certifier,
            "hospital-a",
            "bob",
            &w.rita_key.public_key(),
            now,
            600,
        )
        .unwrap(),
    );
    check(
        run(create(&p, &["--input", input]), vec![]).await,
        "user `bob`",
    );
    let p = with_cert(
        "expired",
        &w.rita_key,
        Certificate::issue(
            &w.a.certifier,
            "hospital-a",
            "rita",
            &w.rita_key.public_key(),
            now - 3 * 86_400,
            86_400,
        )
        .unwrap(),
    );
    check(
        run(create(&p, &["--input", input]), vec![]).await,
        "expired",
    );
    let openssl = dir.join("good/openssl.key");
    let st = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "x25519", "-out"])
        .arg(&openssl)
        .status()
        .unwrap();
    assert!(st.success());
    let p = variant(
        "openssl.toml",
        text.replace("\"rita.key\"", "\"openssl.key\""),
    );
    check(
        run(create(&p, &["--input", input]), vec![]).await,
        "OpenSSL's format",
    );

    // A named profile that does not exist names the file it looked for.
    let xdg = dir.join("xdg");
    check(
        run(
            vec![
                "task".into(),
                "show".into(),
                "--profile".into(),
                "nobody".into(),
                "1".into(),
            ],
            vec![("XDG_CONFIG_HOME".into(), xdg.display().to_string())],
        )
        .await,
        &format!("{}", xdg.join("warden/nobody.toml").display()),
    );

    // Inputs that are not strict JSON, an unreadable input file, a bad image reference, an
    // unknown organization, an organization named twice.
    check(
        run(create(&good, &["--input", "{\"function\": "]), vec![]).await,
        "--input: the input is not accepted",
    );
    check(
        run(
            create(&good, &["--input", r#"{"function":"f","function":"g"}"#]),
            vec![],
        )
        .await,
        "appears twice",
    );
    check(
        run(
            create(&good, &["--input", r#"{"function":"f","extra":1}"#]),
            vec![],
        )
        .await,
        "nothing was sent",
    );
    check(
        run(
            create(&good, &["--input-file", "/nonexistent/input.json"]),
            vec![],
        )
        .await,
        "cannot read /nonexistent/input.json",
    );
    let mut bad_image = create(&good, &["--input", input]);
    bad_image[5] = "Not A Reference".into();
    check(run(bad_image, vec![]).await, "is not an image reference");
    check(
        run(
            create(&good, &["--input", input, "--org", "hospital-z"]),
            vec![],
        )
        .await,
        "`hospital-z` is not a member of collaboration `study`",
    );
    check(
        run(
            create(&good, &["--input", input, "--org", "hospital-a"]),
            vec![],
        )
        .await,
        "`hospital-a` is named twice",
    );
    // A tag that cannot be resolved: nothing is sent, and the message says what to do.
    let mut tag = create(&good, &["--input", input]);
    tag[5] = "127.0.0.1:9/warden/echo:v1".into();
    check(run(tag, vec![]).await, "name the image by digest");
    // Neither --input nor --input-file: clap refuses it, also with 2.
    let out = run(create(&good, &[]), vec![]).await;
    assert_eq!(out.code, 2, "{out}");
    assert_eq!(w.task_count(), 0, "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_keep_the_task_as_sent_is_caught_at_creation() {
    use warden_testkit::lying::LyingProxy;

    let w = World::new().await;
    let proxy = LyingProxy::start(&w.base).await.unwrap();
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let text = std::fs::read_to_string(&profile)
        .unwrap()
        .replace(&w.base, &proxy.url());
    std::fs::write(&profile, text).unwrap();
    let (image, _) = by_digest();
    let p = profile.to_str().unwrap();
    let args = [
        "task",
        "create",
        "--profile-file",
        p,
        "--image",
        &image,
        "--org",
        "hospital-b",
        "--input",
        r#"{"function":"f"}"#,
    ];
    let create = || w.warden(&args, &[]);
    let is_create = |req: &warden_testkit::lying::RequestInfo| req.is("POST", "/api/tasks");

    // The server answers with another nonce than it was sent.
    let rule = proxy.rewrite_json(move |req, v| {
        if is_create(req) {
            v["task"]["nonce"] = Value::from("2".repeat(32));
        }
    });
    not_verified(&create().await, "the server shows nonce `22222222");
    proxy.remove(rule);
    // The server drops the nonce (it stores none).
    let rule = proxy.rewrite_request_json(move |req, v| {
        if is_create(req) {
            v.as_object_mut().unwrap().remove("nonce");
        }
    });
    not_verified(&create().await, "the server shows nonce `(none)`");
    proxy.remove(rule);
    // The server stores another image than the one asked for.
    let rule = proxy.rewrite_request_json(move |req, v| {
        if is_create(req) {
            v["image"] = Value::from(format!(
                "registry.example.org/warden/evil@sha256:{}",
                "d".repeat(64)
            ));
        }
    });
    not_verified(
        &create().await,
        "the server shows image `registry.example.org/warden/evil",
    );
    proxy.remove(rule);
    // Each time the task was created (the server did what it liked), but nothing of it was
    // printed or recorded: no later `wait` trusts it.
    assert_eq!(w.task_count(), 3);
    let tasks = w.state_home().join("warden/tasks");
    assert_eq!(
        std::fs::read_dir(&tasks).map(|d| d.count()).unwrap_or(0),
        0,
        "no record of a task that did not verify"
    );
    // With the proxy honest, the same command creates and records the task.
    let out = create().await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(std::fs::read_dir(&tasks).unwrap().count(), 1);
    proxy.stop().await;
}
