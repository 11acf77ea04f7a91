//! A session outlives its access token: the client renews it with the refresh token. Against
//! the real server in this process, over HTTP, with a one-second access token.

// Test code: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use warden_client::{Client, ClientError};
use warden_server::config::{AuthConfig, LimitsConfig};
use warden_server::storage::ConnectOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_longer_than_the_access_token_renews_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("server.db").display());
    let auth = AuthConfig {
        access_token_ttl_secs: 1,
        ..AuthConfig::default()
    };
    let service = warden_server::open(
        &url,
        dir.path(),
        &ConnectOptions::default(),
        auth,
        LimitsConfig::default(),
    )
    .await
    .unwrap();
    let pw = dir.path().join("admin.pw");
    std::fs::write(&pw, "a long enough admin password\n").unwrap();
    warden_server::bootstrap(&service, Some(&pw)).await.unwrap();
    let server = warden_server::serve("127.0.0.1:0".parse().unwrap(), service)
        .await
        .unwrap();
    let base = format!("http://{}", server.addr);

    let client = Client::login(&base, "admin", "a long enough admin password")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The first access token has expired: a 401 would say the session was not renewed; the
    // server's answer about the (missing) task says it was.
    for _ in 0..3 {
        match client.task(987_654).await {
            Err(ClientError::Api { status, .. }) => assert_eq!(status, 404),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    server.stop().await.unwrap();
}
