//! Split views (issue 10): nodes report the latest checkpoint of each algorithm store they
//! verified and read every node's back. The server keeps the latest per store, key and node
//! (a smaller one does not replace it), checks only the shape (it cannot verify a note: the
//! nodes do, under the key they pin), and answers nodes only. On the real server over HTTP,
//! SQLite or PostgreSQL (`WARDEN_TEST_DATABASE_URL`).

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use kit::{Kit, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "warden-store/community+0a0b0c0d+AU8mpsGrRQPD8srSnS027ThaZ07oRBWRRNkrClM/ax6s";
const PATH: &str = "/api/store-checkpoints";

fn note(size: u64, root: &str) -> String {
    format!("warden-store/community\n{size}\n{root}\n\n— warden-store/community AAAAAAA=\n")
}

fn report(store: &str, key: &str, checkpoint: &str) -> Value {
    json!({"store": store, "key": key, "checkpoint": checkpoint})
}

async fn put(kit: &Kit, token: &str, body: Value) -> (StatusCode, Value) {
    kit.call(Method::PUT, Some(token), PATH, Some(body)).await
}

#[tokio::test]
async fn nodes_relay_store_checkpoints_through_the_server() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let a5 = note(5, "root-a");
    let b5 = note(5, "root-b");
    assert_eq!(
        put(&kit, &w.node1, report("community", KEY, &a5)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put(&kit, &w.node2, report("community", KEY, &b5)).await.0,
        StatusCode::NO_CONTENT
    );
    // a smaller checkpoint of the same node does not replace its latest
    assert_eq!(
        put(
            &kit,
            &w.node1,
            report("community", KEY, &note(4, "root-a4"))
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let (s, v) = kit.get(&w.node2_in_c23, PATH).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let got: Vec<&str> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["store"], "community");
            assert_eq!(c["key"], KEY);
            c["checkpoint"].as_str().unwrap()
        })
        .collect();
    assert_eq!(got.len(), 2, "{v}");
    assert!(
        got.contains(&a5.as_str()) && got.contains(&b5.as_str()),
        "{v}"
    );
    // a larger one does
    let a6 = note(6, "root-a6");
    put(&kit, &w.node1, report("community", KEY, &a6)).await;
    let (_, v) = kit.get(&w.node1, PATH).await;
    assert_eq!(v["checkpoints"][0]["checkpoint"], a6.as_str(), "{v}");
    assert_eq!(v["checkpoints"][1]["checkpoint"], b5.as_str(), "{v}");

    // nodes only
    for (status, token) in [
        (StatusCode::FORBIDDEN, Some(w.researcher1.as_str())),
        (StatusCode::UNAUTHORIZED, None),
    ] {
        let (s, v) = kit.call(Method::GET, token, PATH, None).await;
        assert_eq!(s, status, "{v}");
        let (s, v) = kit
            .call(
                Method::PUT,
                token,
                PATH,
                Some(report("community", KEY, &a6)),
            )
            .await;
        assert_eq!(s, status, "{v}");
    }

    // the shape is checked, each refusal says why
    let other_key = KEY.replace("community", "other");
    for (body, field, says) in [
        (report("Bad Name", KEY, &a6), "store", "a store name is"),
        (report("community", &other_key, &a6), "key", "verifier key"),
        (
            report(
                "community",
                KEY,
                &a6.replace("warden-store/community\n6", "warden-store/other\n6"),
            ),
            "checkpoint",
            "first line",
        ),
        (
            report("community", KEY, &note(6, "r").replace("\n6\n", "\n06\n")),
            "checkpoint",
            "tree size",
        ),
        (
            report("community", KEY, &"x".repeat(70_000)),
            "checkpoint",
            "larger than",
        ),
    ] {
        let (s, v) = put(&kit, &w.node1, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["field"], field, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    let mut extra = report("community", KEY, &a6);
    extra["size"] = json!(6);
    assert_eq!(put(&kit, &w.node1, extra).await.0, StatusCode::BAD_REQUEST);
    kit.stop().await;
}
