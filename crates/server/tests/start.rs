//! What `warden server start` does: load the config, create the SQLite file next to it,
//! bootstrap the administrator once, and start again on the existing database.

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use serde_json::json;
use warden_server::Bootstrap;
use warden_server::config::Config;

const CONFIG: &str = r#"
[http]
listen = "127.0.0.1:0"
[database]
url = "sqlite://state/db/server.db"
[bootstrap]
admin_password_file = "secrets/admin.pw"
"#;

async fn login(addr: std::net::SocketAddr, password: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("http://{addr}/api/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn first_start_creates_the_database_and_the_admin_then_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let config = Config::load(&path).unwrap();

    let (server, outcome) = warden_server::start(&config).await.unwrap();
    let pw_file = dir.path().join("secrets/admin.pw");
    assert_eq!(outcome, Bootstrap::WroteFile(pw_file.clone()));
    assert!(dir.path().join("state/db/server.db").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pw_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let password = std::fs::read_to_string(&pw_file).unwrap();
    let password = password.trim_end();
    assert_eq!(login(server.addr, password).await, reqwest::StatusCode::OK);
    server.stop().await.unwrap();

    // Second start: the admin exists; the file is neither read nor rewritten.
    std::fs::remove_file(&pw_file).unwrap();
    let t = Instant::now();
    let (server, outcome) = warden_server::start(&config).await.unwrap();
    eprintln!("restart on an existing database took {:?}", t.elapsed());
    assert_eq!(outcome, Bootstrap::AlreadyDone);
    assert!(!pw_file.exists());
    assert_eq!(login(server.addr, password).await, reqwest::StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_admin_password_is_read_from_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(&path, CONFIG).unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/admin.pw"),
        "chosen by the operator\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let (server, outcome) = warden_server::start(&config).await.unwrap();
    assert!(matches!(outcome, Bootstrap::FromFile(_)));
    assert_eq!(
        login(server.addr, "chosen by the operator").await,
        reqwest::StatusCode::OK
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_password_file_a_generated_password_is_returned_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(
        &path,
        "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite:server.db\"\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let (server, outcome) = warden_server::start(&config).await.unwrap();
    let Bootstrap::Generated(pw) = outcome else {
        panic!("expected a generated password, got {outcome:?}");
    };
    assert!(pw.len() >= 32);
    assert!(dir.path().join("server.db").is_file());
    assert_eq!(login(server.addr, &pw).await, reqwest::StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_metrics_token_file_is_read_at_start_and_a_short_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(
        &path,
        format!("{CONFIG}[metrics]\ntoken_file = \"secrets/metrics.token\"\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    let token_file = dir.path().join("secrets/metrics.token");
    let config = Config::load(&path).unwrap();

    std::fs::write(&token_file, "too-short-0123456789\n").unwrap();
    let e = warden_server::start(&config).await.unwrap_err().to_string();
    assert!(
        e.contains("metrics token file") && e.contains("needs 32"),
        "{e}"
    );
    // Refused before the database is touched.
    assert!(!dir.path().join("state/db/server.db").exists(), "{e}");

    std::fs::remove_file(&token_file).unwrap();
    let e = warden_server::start(&config).await.unwrap_err().to_string();
    assert!(e.starts_with("cannot read the metrics token file"), "{e}");

    let token = "0123456789abcdef0123456789abcdef";
    std::fs::write(&token_file, format!("\n {token} \n")).unwrap();
    let (server, _) = warden_server::start(&config).await.unwrap();
    let get = |t: Option<&'static str>| {
        let mut req = reqwest::Client::new().get(format!("http://{}/metrics", server.addr));
        if let Some(t) = t {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(get(None).await, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(Some("0123456789abcdef0123456789abcdeX")).await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(Some(token)).await, reqwest::StatusCode::OK);
    server.stop().await.unwrap();
}
