//! The router against its description: every error (405 and a failed WebSocket upgrade
//! included) carries the JSON error body, and the OpenAPI document lists exactly the
//! (method, path) pairs the router serves.

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use std::collections::BTreeSet;

use kit::Kit;
use reqwest::{Method, StatusCode};
use serde_json::Value;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

/// The (method, path) pairs of the OpenAPI document, methods upper case.
async fn documented(kit: &Kit) -> BTreeSet<(String, String)> {
    let (s, doc) = kit.call(Method::GET, None, "/api/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    let mut set = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            set.insert((method.to_uppercase(), path.clone()));
        }
    }
    set
}

#[tokio::test]
async fn wrong_methods_get_405_with_the_error_body_and_the_allowed_methods() {
    let kit = Kit::start().await;
    for (method, path, allowed) in [
        (Method::DELETE, "/api/tasks", "GET,HEAD,POST"),
        (Method::PUT, "/api/auth/login", "POST"),
        (Method::GET, "/api/auth/login", "POST"),
        (Method::POST, "/api/runs/1", "GET,HEAD,PATCH"),
        (Method::DELETE, "/api/runs/1/result", "GET,HEAD,PUT"),
        (Method::PATCH, "/api/organizations/7", "GET,HEAD"),
        (Method::POST, "/api/events/ws", "GET,HEAD"),
        (Method::POST, "/metrics", "GET,HEAD"),
    ] {
        let resp = kit
            .client
            .request(method.clone(), kit.url(path))
            .bearer_auth(&kit.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
        let mut got: Vec<&str> = allow.split(',').map(str::trim).collect();
        got.sort_unstable();
        assert_eq!(got.join(","), allowed, "{method} {path}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "application/json",
            "{method} {path}"
        );
        let v: Value = resp.json().await.unwrap();
        assert_eq!(code(&v), "method_not_allowed", "{method} {path}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(method.as_str()) && message.contains(path),
            "{message}"
        );
    }
    kit.stop().await;
}

#[tokio::test]
async fn a_failed_websocket_upgrade_gets_the_error_body() {
    let kit = Kit::start().await;
    let org = kit.org("one").await;
    let collab = kit.collab("c", &[org]).await;
    let (_, key) = kit.node(org, collab).await;
    let node = kit.node_token(&key).await;
    // A plain GET (no upgrade headers) by an authenticated node.
    let (s, v) = kit.get(&node, "/api/events/ws").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "invalid_request", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WebSocket"),
        "{v}"
    );
    // Without a credential, the credential is what is wrong.
    let (s, v) = kit.call(Method::GET, None, "/api/events/ws", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(code(&v), "unauthenticated", "{v}");
    kit.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let kit = Kit::start().await;
    let doc = documented(&kit).await;
    let served: BTreeSet<(String, String)> = warden_server::http::served_routes()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_owned(), p.to_owned()))
        .collect();
    let missing: Vec<_> = served.difference(&doc).collect();
    let extra: Vec<_> = doc.difference(&served).collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    assert!(extra.is_empty(), "documented but not served: {extra:?}");

    // The table is what the live router does: every documented pair is routed (anything but
    // the fallbacks' 404 "no such endpoint" and 405), every other method on a documented
    // path is 405.
    let paths: BTreeSet<&String> = doc.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = path.replace("{id}", "1");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let (s, v) = kit.call(m, None, &url, None).await;
            let routed = doc.contains(&(method.to_owned(), path.clone()));
            if routed {
                assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {v}");
                let fallback = s == StatusCode::NOT_FOUND
                    && v["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("no such endpoint"));
                assert!(!fallback, "{method} {path} is documented but not routed");
            } else {
                assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {v}");
            }
        }
    }
    kit.stop().await;
}

/// The query parameters each list route documents are the fields of its query type in
/// `warden-api` (which the handler parses, refusing any other), so a filter cannot be added to
/// one and forgotten in the other.
#[tokio::test]
async fn the_documented_query_parameters_are_the_ones_parsed() {
    fn fields<T: serde::Serialize + Default>() -> BTreeSet<String> {
        serde_json::to_value(T::default())
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }
    let kit = Kit::start().await;
    let (_, doc) = kit.call(Method::GET, None, "/api/openapi.json", None).await;
    for (path, parsed) in [
        (
            "/api/organizations",
            fields::<warden_api::OrganizationQuery>(),
        ),
        (
            "/api/collaborations",
            fields::<warden_api::CollaborationQuery>(),
        ),
        ("/api/users", fields::<warden_api::UserQuery>()),
        ("/api/nodes", fields::<warden_api::NodeQuery>()),
        ("/api/tasks", fields::<warden_api::TaskQuery>()),
        ("/api/runs", fields::<warden_api::RunQuery>()),
        ("/api/events", fields::<warden_api::EventQuery>()),
        ("/api/events/ws", fields::<warden_api::EventQuery>()),
    ] {
        let documented: BTreeSet<String> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} documents no parameters"))
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(documented, parsed, "{path}");
        // And the server really accepts each of them (an unknown one is a 400).
        let (s, v) = kit.get(&kit.admin, &format!("{path}?not_a_filter=1")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
    }
    kit.stop().await;
}

/// `GET /metrics` with this bearer token (if any): status, content type, body text.
async fn metrics(kit: &Kit, token: Option<&str>) -> (StatusCode, String, String) {
    let mut req = kit.client.get(kit.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let ty = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ty, resp.text().await.unwrap())
}

const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef0123456789";

#[tokio::test]
async fn with_a_token_metrics_need_exactly_that_bearer_token() {
    let kit = Kit::start_with_metrics_token(METRICS_TOKEN).await;
    for (token, what) in [
        (None, "no header"),
        (
            Some("metrics-token-0123456789abcdef012345678X"),
            "wrong token",
        ),
        (Some(&kit.admin[..]), "a user's access token"),
    ] {
        let (s, ty, body) = metrics(&kit, token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(ty, "application/json", "{what}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(code(&v), "unauthenticated", "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("token_file"),
            "{what}: {v}"
        );
        assert!(!body.contains("warden_"), "{what}: {body}");
    }
    let (s, ty, body) = metrics(&kit, Some(METRICS_TOKEN)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(ty.starts_with("text/plain"), "{ty}");
    assert!(body.contains("warden_"), "{body}");
    kit.stop().await;
}

#[tokio::test]
async fn without_a_token_metrics_stay_open() {
    let kit = Kit::start().await;
    let (s, ty, body) = metrics(&kit, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(ty.starts_with("text/plain"), "{ty}");
    assert!(body.contains("warden_"), "{body}");
    kit.stop().await;
}

#[tokio::test]
async fn the_openapi_document_puts_the_metrics_token_on_metrics() {
    let kit = Kit::start().await;
    let (s, doc) = kit.call(Method::GET, None, "/api/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    let security = &doc["paths"]["/metrics"]["get"]["security"];
    assert_eq!(security, &serde_json::json!([{"metricsToken": []}, {}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["metricsToken"]["scheme"],
        "bearer"
    );
    assert!(doc["paths"]["/metrics"]["get"]["responses"]["401"].is_object());
    kit.stop().await;
}

/// Every route that takes no query parameters, from the route table that builds the router:
/// `?bogus=1` is refused with 400 naming it. The check runs before authentication (as the
/// list routes' query types do), so it is the answer with and without a credential.
#[tokio::test]
async fn routes_without_query_parameters_refuse_any() {
    let kit = Kit::start_with_metrics_token(METRICS_TOKEN).await;
    let plain = warden_server::http::routes_without_query();
    let served = warden_server::http::served_routes();
    // Only the list routes and the event routes take a query string.
    let with_query: BTreeSet<&str> = served
        .iter()
        .filter(|r| !plain.contains(r))
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(
        with_query,
        BTreeSet::from([
            "/api/collaborations",
            "/api/events",
            "/api/events/ws",
            "/api/nodes",
            "/api/organizations",
            "/api/runs",
            "/api/tasks",
            "/api/users",
        ])
    );
    // Their documented parameters agree: a route in the table without a query has none.
    let (_, doc) = kit.call(Method::GET, None, "/api/openapi.json", None).await;
    let gets = plain.iter().filter(|(m, _)| m == Method::GET).count();
    assert!(gets >= 12, "{plain:?}");
    for (method, path) in &plain {
        let op = &doc["paths"][*path][method.as_str().to_lowercase()];
        let in_query = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["in"] == "query");
        assert!(!in_query, "{method} {path} documents query parameters");
        let path = path.replace("{id}", "1").replace("{org}", "2");
        let url = format!("{path}?bogus=1");
        for token in [Some(kit.admin.as_str()), None] {
            let (s, v) = kit.call(method.clone(), token, &url, None).await;
            let who = if token.is_some() {
                "admin"
            } else {
                "anonymous"
            };
            assert_eq!(s, StatusCode::BAD_REQUEST, "{who} {method} {url}: {v}");
            assert_eq!(code(&v), "invalid_request", "{who} {method} {url}: {v}");
            assert_eq!(v["error"]["field"], "bogus", "{who} {method} {url}: {v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("`bogus`") && message.contains(path.as_str()),
                "{message}"
            );
        }
    }
    // The same reads without a query string are not refused for it; an empty one is none.
    for url in ["/api/tasks/1", "/api/tasks/1?", "/api/auth/whoami?"] {
        let (s, v) = kit.get(&kit.admin, url).await;
        assert_ne!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
    }
    // The first parameter is named, percent-decoded.
    let (s, v) = kit.get(&kit.admin, "/api/health?b%C3%A9=1&x=2").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "bé", "{v}");
    // A list route still refuses only its unknown parameters.
    let (s, v) = kit.get(&kit.admin, "/api/tasks?bogus=1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = kit.get(&kit.admin, "/api/tasks?limit=1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    kit.stop().await;
}
