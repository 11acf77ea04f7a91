//! Test kit: starts the real server in-process on port 0 over a fresh database and hands the
//! test an HTTP client.
//!
//! The database comes from `WARDEN_TEST_DATABASE_URL`: unset means a fresh SQLite file in a
//! temporary directory; a `postgres://` URL means a fresh schema in that database per test.

// Test support code: a failure here is a test failure, so unwrap is the right answer.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use warden_server::config::{AuthConfig, LimitsConfig};
use warden_server::metrics::MetricsAccess;
use warden_server::storage::ConnectOptions;
use warden_server::{Bootstrap, RunningServer};

pub const ADMIN_PASSWORD: &str = "admin password for tests";
pub const PASSWORD: &str = "a long enough password";
/// A syntactically valid X25519 public key (32 bytes, base64).
pub const PUBLIC_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct Kit {
    pub server: RunningServer,
    pub base: String,
    pub client: reqwest::Client,
    pub admin: String,
    pub dir: TempDir,
    /// PostgreSQL url and the per-test schema, dropped by `stop`.
    pub pg: Option<(String, String)>,
}

pub fn database_url(dir: &Path) -> (String, ConnectOptions) {
    match std::env::var("WARDEN_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            (
                url,
                ConnectOptions {
                    max_connections: 8,
                    pg_schema: Some(schema),
                    ..Default::default()
                },
            )
        }
        _ => (
            format!("sqlite://{}", dir.join("server.db").display()),
            ConnectOptions {
                max_connections: 8,
                pg_schema: None,
                ..Default::default()
            },
        ),
    }
}

/// Remove a per-test PostgreSQL schema.
pub async fn drop_schema(url: &str, schema: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// A database migrated up to `version` only, with `seed` inserted: what an older server left.
pub async fn old_database(url: &str, opts: &ConnectOptions, version: i64, seed: &[&str]) {
    use std::str::FromStr;

    use sqlx::migrate::Migrator;

    let backend = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    // The running test's package directory (set by cargo and nextest) rather than the one
    // compiled in, which may name another checkout sharing the target directory.
    let migrations = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
        .join("migrations")
        .join(backend);
    let mut first = Migrator::new(migrations.as_path()).await.unwrap();
    first.migrations = first
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    assert_eq!(first.migrations.len(), version as usize);
    match &opts.pg_schema {
        None => {
            let o = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(o).await.unwrap();
            first.run(&pool).await.unwrap();
            for s in seed {
                sqlx::query(s).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        Some(schema) => {
            let admin = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let o = sqlx::postgres::PgConnectOptions::from_str(url)
                .unwrap()
                .options([("search_path", schema.as_str())]);
            let pool = sqlx::PgPool::connect_with(o).await.unwrap();
            first.run(&pool).await.unwrap();
            for s in seed {
                sqlx::query(s).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
}

impl Kit {
    pub async fn start() -> Kit {
        Kit::start_with(AuthConfig::default(), LimitsConfig::default()).await
    }

    pub async fn start_with(auth: AuthConfig, limits: LimitsConfig) -> Kit {
        Kit::start_on(auth, limits, None, MetricsAccess::Open).await
    }

    /// A server whose `/metrics` only this bearer token opens.
    pub async fn start_with_metrics_token(token: &str) -> Kit {
        Kit::start_on(
            AuthConfig::default(),
            LimitsConfig::default(),
            None,
            MetricsAccess::token(token),
        )
        .await
    }

    /// Serve a database that an older server left: migrated up to `version` only, with `seed`
    /// inserted, which must create the `admin` root user with [`ADMIN_PASSWORD`].
    pub async fn start_on_old_database(version: i64, seed: &[&str]) -> Kit {
        Kit::start_on(
            AuthConfig::default(),
            LimitsConfig::default(),
            Some((version, seed)),
            MetricsAccess::Open,
        )
        .await
    }

    async fn start_on(
        auth: AuthConfig,
        limits: LimitsConfig,
        old: Option<(i64, &[&str])>,
        metrics: MetricsAccess,
    ) -> Kit {
        let dir = tempfile::tempdir().unwrap();
        let (url, options) = database_url(dir.path());
        let pg = options.pg_schema.clone().map(|s| (url.clone(), s));
        if let Some((version, seed)) = old {
            old_database(&url, &options, version, seed).await;
        }
        let service = warden_server::open(&url, dir.path(), &options, auth, limits)
            .await
            .unwrap();
        let pw = dir.path().join("admin.pw");
        std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
        let outcome = warden_server::bootstrap(&service, Some(&pw)).await.unwrap();
        if old.is_some() {
            assert_eq!(outcome, Bootstrap::AlreadyDone);
        } else {
            assert_eq!(outcome, Bootstrap::FromFile(pw));
        }
        let server = warden_server::serve_with("127.0.0.1:0".parse().unwrap(), service, metrics)
            .await
            .unwrap();
        let base = format!("http://{}", server.addr);
        let client = reqwest::Client::new();
        let mut kit = Kit {
            server,
            base,
            client,
            admin: String::new(),
            dir,
            pg,
        };
        kit.admin = kit.login("admin", ADMIN_PASSWORD).await;
        kit
    }

    /// Another replica over this kit's PostgreSQL schema (a second `warden server start`
    /// over the same database), its admin logged in; stopping it leaves the schema.
    pub async fn replica(&self) -> Kit {
        let (url, schema) = self
            .pg
            .clone()
            .expect("replicas share a PostgreSQL database");
        let dir = tempfile::tempdir().unwrap();
        let options = ConnectOptions {
            max_connections: 8,
            pg_schema: Some(schema),
            ..Default::default()
        };
        let service = warden_server::open(
            &url,
            dir.path(),
            &options,
            AuthConfig::default(),
            LimitsConfig::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            warden_server::bootstrap(&service, None).await.unwrap(),
            Bootstrap::AlreadyDone
        );
        let server =
            warden_server::serve_with("127.0.0.1:0".parse().unwrap(), service, MetricsAccess::Open)
                .await
                .unwrap();
        let mut kit = Kit {
            base: format!("http://{}", server.addr),
            server,
            client: reqwest::Client::new(),
            admin: String::new(),
            dir,
            pg: None,
        };
        kit.admin = kit.login("admin", ADMIN_PASSWORD).await;
        kit
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Send a JSON request; returns the status and the parsed body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        token: Option<&str>,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, v)
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, Some(token), path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, Some(token), path, Some(body)).await
    }

    /// The run token of `run` at its node: the run reported admitted with `digest`, then
    /// running, then its token asked for.
    pub async fn run_token(&self, node: &str, run: i64, digest: &str) -> String {
        let path = format!("/api/runs/{run}");
        let (s, v) = self
            .patch(node, &path, json!({"state": "admitted", "digest": digest}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = self.patch(node, &path, json!({"state": "running"})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = self
            .post(node, &format!("/api/runs/{run}/token"), json!(null))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, Some(token), path, Some(body))
            .await
    }

    pub async fn put_bytes(&self, token: &str, path: &str, body: Vec<u8>) -> StatusCode {
        self.client
            .put(self.url(path))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    pub async fn get_bytes(&self, token: &str, path: &str) -> (StatusCode, Vec<u8>) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status(), r.bytes().await.unwrap().to_vec())
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let (s, v) = self
            .call(
                Method::POST,
                None,
                "/api/auth/login",
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn org(&self, name: &str) -> i64 {
        let (s, v) = self
            .post(
                &self.admin,
                "/api/organizations",
                json!({"name": name, "public_key": PUBLIC_KEY}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    pub async fn collab(&self, name: &str, orgs: &[i64]) -> i64 {
        let (s, v) = self
            .post(
                &self.admin,
                "/api/collaborations",
                json!({"name": name, "organizations": orgs}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// Create a user and return an access token for it.
    pub async fn user(&self, name: &str, role: &str, org: i64) -> String {
        let (s, v) = self
            .post(
                &self.admin,
                "/api/users",
                json!({"username": name, "password": PASSWORD, "role": role, "organization_id": org}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        self.login(name, PASSWORD).await
    }

    /// Create a node and return (node id, API key).
    pub async fn node(&self, org: i64, collab: i64) -> (i64, String) {
        let (s, v) = self
            .post(
                &self.admin,
                "/api/nodes",
                json!({"organization_id": org, "collaboration_id": collab}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (
            v["node"]["id"].as_i64().unwrap(),
            v["api_key"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn node_token(&self, api_key: &str) -> String {
        let (s, v) = self
            .call(
                Method::POST,
                None,
                "/api/auth/node",
                Some(json!({"api_key": api_key})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// Create a task targeting `orgs`; returns the task detail.
    pub async fn task(&self, token: &str, collab: i64, orgs: &[i64]) -> Value {
        let inputs: Vec<Value> = orgs
            .iter()
            .map(|o| json!({"organization_id": o, "input": "aGVsbG8="}))
            .collect();
        let (s, v) = self
            .post(
                token,
                "/api/tasks",
                json!({"collaboration_id": collab, "name": "t", "image": "registry.example.org/team/avg:1.0", "inputs": inputs}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn stop(self) {
        self.server.stop().await.unwrap();
        if let Some((url, schema)) = self.pg {
            drop_schema(&url, &schema).await;
        }
    }
}

/// Two organizations in one collaboration plus an outsider in another: the usual world.
pub struct World {
    pub org1: i64,
    pub org2: i64,
    pub org3: i64,
    /// {org1, org2}
    pub c12: i64,
    /// {org2, org3}
    pub c23: i64,
    pub researcher1: String,
    pub node1: String,
    pub node2: String,
    pub node2_in_c23: String,
}

impl World {
    pub async fn build(kit: &Kit) -> World {
        let org1 = kit.org("one").await;
        let org2 = kit.org("two").await;
        let org3 = kit.org("three").await;
        let c12 = kit.collab("c12", &[org1, org2]).await;
        let c23 = kit.collab("c23", &[org2, org3]).await;
        let researcher1 = kit.user("res1", "researcher", org1).await;
        let (_, k1) = kit.node(org1, c12).await;
        let (_, k2) = kit.node(org2, c12).await;
        let (_, k3) = kit.node(org2, c23).await;
        World {
            org1,
            org2,
            org3,
            c12,
            c23,
            researcher1,
            node1: kit.node_token(&k1).await,
            node2: kit.node_token(&k2).await,
            node2_in_c23: kit.node_token(&k3).await,
        }
    }
}
