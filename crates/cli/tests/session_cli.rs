//! A researcher's long wait outlives the access token: `warden task wait` and `task create
//! --wait` renew the session kept beside the profile (under its lock, written back at once)
//! instead of failing with 401. Against the real server with a two-second access token, a real
//! registry, Docker and a `warden node start` process started only after the token expired.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod researcher;

use std::time::Duration;

use researcher::{PASSWORD, World, warden_in};
use warden_client::admin::load_session;
use warden_server::config::AuthConfig;

/// The access token's lifetime at the server of this test, in seconds.
const ACCESS_TTL: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_waits_longer_than_the_access_token_renew_the_kept_session() {
    let mut w = World::with_registry_and_auth(AuthConfig {
        access_token_ttl_secs: ACCESS_TTL,
        ..AuthConfig::default()
    })
    .await;
    let (repo, _) = w.push_signed("echo", "echo", "v1").await;
    let policy = w.signed_policy(&repo);
    let dir = w.dir.path().join("rita");
    let profile = w.profile(&dir, &[&w.a], PASSWORD);
    let p = profile.to_str().unwrap().to_owned();
    let login = w
        .warden(
            &[
                "login",
                "--server",
                &w.base,
                "--username",
                "rita",
                "--password-file",
                dir.join("rita.pw").to_str().unwrap(),
                "--profile-file",
                &p,
            ],
            &[],
        )
        .await;
    assert_eq!(login.code, 0, "{login}");
    // From here on only the kept session authenticates: no password to fall back on.
    let text = std::fs::read_to_string(&profile).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("password_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&profile, text).unwrap();
    std::fs::remove_file(dir.join("rita.pw")).unwrap();
    let session = dir.join("rita.session");
    let first = load_session(&session).unwrap().unwrap();

    let image = format!("{repo}:v1");
    let input = r#"{"function":"f","args":{"n":1}}"#;
    let created = w
        .warden(
            &[
                "task",
                "create",
                "--profile-file",
                &p,
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
    assert_eq!(created.code, 0, "{created}");
    let task = created.task_id();

    // Both waits start while no node runs, so their runs stay pending past the token's life.
    let cwd = w.dir.path().to_path_buf();
    let state = w.state_home();
    let env = [("XDG_STATE_HOME", state.to_str().unwrap().to_owned())];
    let wait = {
        let (cwd, p, task, env) = (cwd.clone(), p.clone(), task.clone(), env.clone());
        tokio::spawn(async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            warden_in(
                &cwd,
                &[
                    "task",
                    "wait",
                    "--profile-file",
                    &p,
                    "--timeout",
                    "120",
                    &task,
                ],
                &env,
            )
            .await
        })
    };
    let create_wait = {
        let (cwd, p, image, env) = (cwd.clone(), p.clone(), image.clone(), env.clone());
        tokio::spawn(async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            warden_in(
                &cwd,
                &[
                    "task",
                    "create",
                    "--profile-file",
                    &p,
                    "--image",
                    &image,
                    "--org",
                    "hospital-a",
                    "--input",
                    input,
                    "--wait",
                    "--timeout",
                    "120",
                ],
                &env,
            )
            .await
        })
    };
    // Three lifetimes of the access token pass with both commands polling.
    tokio::time::sleep(Duration::from_secs(3 * ACCESS_TTL + 1)).await;
    w.start_node("hospital-a", &policy);
    let waited = wait.await.unwrap();
    assert_eq!(waited.code, 0, "{waited}\n{}", w.node_logs());
    assert!(waited.stdout.contains("env-ok echo:"), "{waited}");
    let created = create_wait.await.unwrap();
    assert_eq!(created.code, 0, "{created}\n{}", w.node_logs());
    assert!(created.stdout.contains("env-ok echo:"), "{created}");
    for out in [&waited, &created] {
        assert!(!out.stderr.contains("401"), "{out}");
    }

    // The session on disk was renewed (its refresh token rotated) and still works: neither
    // command left a spent refresh token behind, which the server would answer by revoking
    // the whole session.
    let now = load_session(&session).unwrap().unwrap();
    assert_ne!(now.refresh_token, first.refresh_token);
    tokio::time::sleep(Duration::from_secs(ACCESS_TTL + 1)).await;
    let me = w
        .warden(&["whoami", "--profile-file", &p, "--json"], &[])
        .await;
    assert_eq!(me.code, 0, "{me}");
    assert!(me.stdout.contains("\"rita\""), "{me}");
}
