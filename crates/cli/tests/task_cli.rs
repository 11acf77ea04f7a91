//! `warden task` as a researcher runs it: the real binary against the real server, real nodes,
//! a real registry and the Docker engine (crates/node/tests/common). Inputs are sealed to keys
//! the profile pins; results are opened with the researcher's organization's key.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../node/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Org, PASSWORD, World};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_warden");

/// What a `warden` run gave: exit status, stdout, stderr.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `warden ARGS` with `env` (and no inherited WARDEN_PASSWORD).
async fn warden(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args).env_remove("WARDEN_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes a profile for the researcher `rita` of organization A into `dir` and returns its path.
/// `pinned` are the organizations whose real key fingerprints it pins; `key` is the secret key
/// it names (organization A's in the usual case).
fn write_profile(w: &World, dir: &Path, pinned: &[&Org], key: &Org, password: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("org.key"), key.secret.to_pem()).unwrap();
    std::fs::write(dir.join("rita.pw"), format!("{password}\n")).unwrap();
    let pins: String = pinned
        .iter()
        .map(|o| format!("{} = \"{}\"\n", o.name, o.secret.public_key().fingerprint()))
        .collect();
    let text = format!(
        "[server]\nurl = \"{}\"\nusername = \"rita\"\npassword_file = \"rita.pw\"\n\n\
         [organization]\nsecret_key = \"org.key\"\n\n[collaboration]\nname = \"study\"\n\n\
         [organizations]\n{pins}",
        w.base
    );
    let path = dir.join("rita.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs SQL against the server's SQLite file, as a compromised server (or its operator) would.
fn tamper(w: &World, sql: &str) {
    let db = w.dir.path().join("server.db");
    let out = Command::new("sqlite3").arg(&db).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every blob of `column` in `table` of the server's database, as upper-case hex.
fn blobs(w: &World, table: &str, column: &str) -> Vec<String> {
    let db = w.dir.path().join("server.db");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg(format!("SELECT hex({column}) FROM {table}"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// How many tasks the server holds.
async fn task_count(w: &World) -> usize {
    let (s, v) = w
        .call(reqwest::Method::GET, &w.admin, "/api/tasks", None)
        .await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().len()
}

fn json(out: &Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_at_two_organizations_completes_and_the_opened_results_are_printed() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "echo", "v1");
    w.sign(&repo, &digest).await;
    let na = w
        .start_node(&w.node_config(&w.a, &w.signed_policy(&repo), ""))
        .await;
    let nb = w
        .start_node(&w.node_config(&w.b, &w.signed_policy(&repo), ""))
        .await;
    // The profile as a named profile under XDG_CONFIG_HOME/warden.
    let xdg = w.dir.path().join("xdg");
    let profile = write_profile(&w, &xdg.join("warden"), &[&w.a, &w.b], &w.a, PASSWORD);
    let p = profile.to_str().unwrap();
    let image = format!("{repo}:v1");
    let input = r#"{"function":"f","args":{"n":1}}"#;

    let out = warden(
        &[
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
            "--name",
            "cli",
            "--wait",
            "--timeout",
            "120",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let expected = format!("result: env-ok echo:{input}");
    assert_eq!(out.stdout.matches(&expected).count(), 2, "{out}");
    assert!(
        out.stdout.contains("hospital-a: run") && out.stdout.contains("hospital-b: run"),
        "{out}"
    );
    assert_eq!(out.stdout.matches(" completed").count(), 2, "{out}");
    let task_id: i64 = out
        .stdout
        .strip_prefix("task ")
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let task_id = task_id.to_string();
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

    // `show --json` through the named profile: both runs completed at the right organizations.
    let xdg_env = [("XDG_CONFIG_HOME", xdg.to_str().unwrap())];
    let out = warden(
        &["task", "show", "--profile", "rita", "--json", &task_id],
        &xdg_env,
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let v = json(&out);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{out}");
    let mut orgs: Vec<&str> = runs
        .iter()
        .map(|r| r["organization"].as_str().unwrap())
        .collect();
    orgs.sort();
    assert_eq!(orgs, ["hospital-a", "hospital-b"]);
    for r in runs {
        assert_eq!(r["state"], "completed", "{out}");
        assert_eq!(r["has_result"], true, "{out}");
        assert!(r["result"].is_null(), "show downloads no result: {out}");
    }

    // `wait --out`: every result in DIR/<org>-run-<id>, opened.
    let dir = w.dir.path().join("results");
    let out = warden(
        &[
            "task",
            "wait",
            "--profile-file",
            p,
            "--out",
            dir.to_str().unwrap(),
            &task_id,
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    for r in runs {
        let file = dir.join(format!(
            "{}-run-{}",
            r["organization"].as_str().unwrap(),
            r["id"]
        ));
        let got = std::fs::read_to_string(&file).unwrap();
        assert_eq!(got, format!("env-ok echo:{input}"), "{}", file.display());
    }

    // `wait --json`, the input from a file and the password from WARDEN_PASSWORD.
    let text = std::fs::read_to_string(&profile)
        .unwrap()
        .replace("password_file = \"rita.pw\"\n", "");
    let env_profile = xdg.join("warden/env.toml");
    std::fs::write(&env_profile, text).unwrap();
    let input_file = w.dir.path().join("input.json");
    std::fs::write(&input_file, "{\"function\": \"g\"}\n").unwrap();
    let out = warden(
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
    let v = json(&out);
    assert_eq!(v["runs"][0]["organization"], "hospital-b");
    assert_eq!(
        v["runs"][0]["result"], "env-ok echo:{\"function\": \"g\"}\n",
        "{out}"
    );

    // A result opens only with the organization's key: with B's key it is an error naming
    // the run.
    let wrong = write_profile(
        &w,
        &w.dir.path().join("wrong"),
        &[&w.a, &w.b],
        &w.b,
        PASSWORD,
    );
    let out = warden(
        &[
            "task",
            "wait",
            "--profile-file",
            wrong.to_str().unwrap(),
            &task_id,
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("the result of run") && out.stderr.contains("does not open"),
        "{out}"
    );
    // and creating with it is refused before anything is sent.
    let before = task_count(&w).await;
    let out = warden(
        &[
            "task",
            "create",
            "--profile-file",
            wrong.to_str().unwrap(),
            "--image",
            &image,
            "--org",
            "hospital-a",
            "--input",
            input,
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("results would not open"), "{out}");
    assert_eq!(task_count(&w).await, before);
    na.stop().await;
    nb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_image_comes_back_rejected_with_the_node_reason() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "echo", "v1");
    w.sign(&repo, &digest).await;
    // The same program under a repository the policy does not allow, signed all the same.
    let (denied, denied_digest) = w.push_program("echo", "denied", "v1");
    w.sign(&denied, &denied_digest).await;
    let nb = w
        .start_node(&w.node_config(&w.b, &w.signed_policy(&repo), ""))
        .await;
    let profile = write_profile(&w, &w.dir.path().join("p"), &[&w.a, &w.b], &w.a, PASSWORD);
    let p = profile.to_str().unwrap();

    let out = warden(
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
            "{}",
            "--wait",
            "--timeout",
            "120",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    let v = json(&out);
    let run = &v["runs"][0];
    assert_eq!(run["state"], "rejected", "{out}");
    let id = run["id"].as_i64().unwrap();
    let reason = w.run(id).await.reason.unwrap();
    assert_eq!(run["reason"], reason.as_str());
    assert!(reason.contains("denied"), "{reason}");

    // The text form prints the reason, and `show` exits 1 too.
    let task_id = v["task"]["id"].to_string();
    let out = warden(&["task", "show", "--profile-file", p, &task_id], &[]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains(&format!("hospital-b: run {id} rejected"))
            && out.stdout.contains(&format!("reason: {reason}")),
        "{out}"
    );
    nb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_differs_from_the_pin_is_refused_before_anything_is_sent() {
    let w = World::new().await;
    let profile = write_profile(&w, &w.dir.path().join("p"), &[&w.a, &w.b], &w.a, PASSWORD);
    let p = profile.to_str().unwrap();
    let image = "registry.example.org/warden/echo:v1";
    // The server hands out another key for hospital-b.
    let attacker = warden_seal::SecretKey::generate().public_key();
    tamper(
        &w,
        &format!(
            "UPDATE organizations SET public_key = '{}' WHERE id = {}",
            attacker.to_base64(),
            w.b.id
        ),
    );
    let out = warden(
        &[
            "task",
            "create",
            "--profile-file",
            p,
            "--image",
            image,
            "--org",
            "hospital-a",
            "--org",
            "hospital-b",
            "--input",
            "{}",
        ],
        &[],
    )
    .await;
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
    assert_eq!(task_count(&w).await, 0, "no task was created");

    // An organization without a pin is refused too, never trusted on first use.
    let only_a = write_profile(&w, &w.dir.path().join("only-a"), &[&w.a], &w.a, PASSWORD);
    tamper(
        &w,
        &format!(
            "UPDATE organizations SET public_key = '{}' WHERE id = {}",
            w.b.secret.public_key().to_base64(),
            w.b.id
        ),
    );
    let out = warden(
        &[
            "task",
            "create",
            "--profile-file",
            only_a.to_str().unwrap(),
            "--image",
            image,
            "--org",
            "hospital-b",
            "--input",
            "{}",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("`hospital-b` has no pinned key fingerprint"),
        "{out}"
    );
    assert_eq!(task_count(&w).await, 0, "no task was created");

    // The pinned, untampered key goes through (the task is created; no node runs it here).
    let out = warden(
        &[
            "task",
            "create",
            "--profile-file",
            p,
            "--image",
            image,
            "--org",
            "hospital-b",
            "--input",
            "{}",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let v = json(&out);
    assert_eq!(v["runs"][0]["state"], "pending", "{out}");
    assert_eq!(task_count(&w).await, 1);
    // No node takes it: waiting gives up after --timeout, naming the run and its state.
    let task_id = v["task"]["id"].to_string();
    let out = warden(
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
async fn bad_passwords_profiles_and_inputs_exit_2_with_a_clear_message() {
    let w = World::new().await;
    let dir = w.dir.path();
    let image = "registry.example.org/warden/echo:v1";
    let create = |p: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "task",
            "create",
            "--profile-file",
            p.to_str().unwrap(),
            "--image",
            image,
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
        warden(&a, &e).await
    };
    let check = |out: Out, needle: &str| {
        assert_eq!(out.code, 2, "{out}");
        assert!(out.stderr.contains(needle), "wanted `{needle}`: {out}");
    };

    // A wrong password.
    let wrong = write_profile(&w, &dir.join("wrong"), &[&w.a], &w.a, "not the password");
    check(
        run(create(&wrong, &["--input", "{}"]), vec![]).await,
        "login as `rita` refused",
    );

    // No password at all.
    let good = write_profile(&w, &dir.join("good"), &[&w.a, &w.b], &w.a, PASSWORD);
    let text = std::fs::read_to_string(&good).unwrap();
    let nopw = dir.join("good/nopw.toml");
    std::fs::write(&nopw, text.replace("password_file = \"rita.pw\"\n", "")).unwrap();
    check(
        run(create(&nopw, &["--input", "{}"]), vec![]).await,
        "no password for `rita`",
    );

    // A missing key, at its file, line and column.
    let missing = dir.join("good/missing.toml");
    std::fs::write(&missing, text.replace("secret_key = \"org.key\"\n", "")).unwrap();
    check(
        run(create(&missing, &["--input", "{}"]), vec![]).await,
        &format!(
            "{}:6:1: key `organization`: missing field `secret_key`",
            missing.display()
        ),
    );
    // An unknown key.
    let unknown = dir.join("good/unknown.toml");
    std::fs::write(
        &unknown,
        text.replace("[organization]\n", "[organization]\nkey = 1\n"),
    )
    .unwrap();
    check(
        run(create(&unknown, &["--input", "{}"]), vec![]).await,
        ":7:1: key `organization.key`: unknown field `key`",
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

    // A bad input, an unreadable input file, a bad image reference, an unknown organization.
    check(
        run(create(&good, &["--input", "{\"function\": "]), vec![]).await,
        "--input is not JSON",
    );
    check(
        run(
            create(&good, &["--input-file", "/nonexistent/input.json"]),
            vec![],
        )
        .await,
        "cannot read /nonexistent/input.json",
    );
    let mut bad_image = create(&good, &["--input", "{}"]);
    bad_image[5] = "Not A Reference".into();
    check(run(bad_image, vec![]).await, "is not an image reference");
    check(
        run(
            create(&good, &["--input", "{}", "--org", "hospital-z"]),
            vec![],
        )
        .await,
        "`hospital-z` is not a member of collaboration `study`",
    );
    check(
        run(
            create(&good, &["--input", "{}", "--org", "hospital-a"]),
            vec![],
        )
        .await,
        "`hospital-a` is named twice",
    );
    // Neither --input nor --input-file: clap refuses it, also with 2.
    let out = run(create(&good, &[]), vec![]).await;
    assert_eq!(out.code, 2, "{out}");
    assert_eq!(task_count(&w).await, 0, "nothing was created");
}
